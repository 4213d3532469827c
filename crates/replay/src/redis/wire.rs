//! Reading what Redis answers: epochs, stream ids, stream entries and announcements. Anything
//! malformed is a [`BrokerError::Protocol`].

use super::*;

pub(super) fn parse_epoch(s: &str) -> Result<Epoch, BrokerError> {
    s.parse()
        .map(Epoch)
        .map_err(|_| BrokerError::Protocol(format!("bad epoch {s:?}")))
}

pub(super) fn parse_id(s: &str) -> Result<Position, BrokerError> {
    Position::from_stream_id(s).ok_or_else(|| BrokerError::Protocol(format!("bad stream id {s:?}")))
}

/// One XRANGE entry: `[id, [field, value, ...]]` with fields `e` (type) and `d` (data JSON).
pub(super) fn parse_entry(v: Value) -> Result<StoredEvent, BrokerError> {
    let bad = || BrokerError::Protocol("malformed stream entry".into());
    let Value::Array(mut parts) = v else {
        return Err(bad());
    };
    if parts.len() != 2 {
        return Err(bad());
    }
    let fields = parts.pop().ok_or_else(bad)?;
    let id: String = redis::from_redis_value(parts.pop().ok_or_else(bad)?).map_err(|_| bad())?;
    let fields: HashMap<String, String> = redis::from_redis_value(fields).map_err(|_| bad())?;
    let event_type = EventType::parse_any(fields.get("e").ok_or_else(bad)?).map_err(|_| bad())?;
    let data =
        EventData::from_stored(fields.get("d").ok_or_else(bad)?.clone()).map_err(|_| bad())?;
    Ok(StoredEvent {
        position: parse_id(&id)?,
        event: Event { event_type, data },
    })
}

/// An announcement: `epoch \n id \n type \n data`.
pub(super) fn parse_announcement(payload: &[u8]) -> Option<(Cursor, Event)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(4, '\n');
    let epoch = parse_epoch(parts.next()?).ok()?;
    let position = parse_id(parts.next()?).ok()?;
    let event_type = EventType::parse_any(parts.next()?).ok()?;
    let data = EventData::from_stored(parts.next()?.to_owned()).ok()?;
    Some((Cursor::new(epoch, position), Event { event_type, data }))
}
