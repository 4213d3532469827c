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

/// An announcement: `epoch \n id \n type \n data`, where the type line of a traced publish
/// goes on with a space and the publish's `traceparent`. An untraced announcement is the format
/// of every earlier version; a trace context that cannot be read is dropped, not the event.
pub(super) fn parse_announcement(payload: &[u8]) -> Option<(Cursor, Event, Option<TraceParent>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(4, '\n');
    let epoch = parse_epoch(parts.next()?).ok()?;
    let position = parse_id(parts.next()?).ok()?;
    let head = parts.next()?;
    let (event_type, trace) = match head.split_once(' ') {
        Some((event_type, trace)) => (event_type, TraceParent::parse(trace)),
        None => (head, None),
    };
    let event_type = EventType::parse_any(event_type).ok()?;
    let data = EventData::from_stored(parts.next()?.to_owned()).ok()?;
    Some((
        Cursor::new(epoch, position),
        Event { event_type, data },
        trace,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn announcements_of_earlier_versions_still_read() {
        let (cursor, event, trace) =
            parse_announcement(b"7\n1700000000000-3\norder.created\n{\"a\":\"x\\ny\"}").unwrap();
        assert_eq!(
            cursor,
            Cursor::new(Epoch(7), Position::new(1_700_000_000_000, 3))
        );
        assert_eq!(event.event_type.as_str(), "order.created");
        assert_eq!(event.data.as_json(), "{\"a\":\"x\\ny\"}");
        assert_eq!(trace, None);
    }

    #[test]
    fn a_traced_announcement_carries_its_context_on_the_type_line() {
        let payload = format!("7\n1700000000000-3\nmessage {TRACE}\n\"hi\"");
        let (_, event, trace) = parse_announcement(payload.as_bytes()).unwrap();
        assert!(event.event_type.is_message());
        assert_eq!(trace.unwrap().to_string(), TRACE);
        // A context this version cannot read costs the trace, never the event.
        let (_, event, trace) =
            parse_announcement(b"7\n1700000000000-3\nmessage 01-future\n1").unwrap();
        assert!(event.event_type.is_message());
        assert_eq!(trace, None);
    }
}
