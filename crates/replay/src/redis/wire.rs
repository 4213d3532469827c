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
/// Read in place: a resume's page passes every entry here, so nothing is copied out of the
/// reply but the event's type and data, once each.
pub(super) fn parse_entry(v: &Value) -> Result<StoredEvent, BrokerError> {
    let bad = || BrokerError::Protocol("malformed stream entry".into());
    let Value::Array(parts) = v else {
        return Err(bad());
    };
    let [id, fields] = parts.as_slice() else {
        return Err(bad());
    };
    let position = parse_id(text(id).ok_or_else(bad)?)?;
    let (mut event_type, mut data) = (None, None);
    // A field read twice keeps its last value; fields of later versions are skipped.
    let mut take = |name: &Value, value: &Value| -> Option<()> {
        match bytes(name)? {
            b"e" => event_type = Some(EventType::parse_any(text(value)?).ok()?),
            b"d" => data = Some(EventData::from_stored(text(value)?).ok()?),
            _ => {}
        }
        Some(())
    };
    match fields {
        Value::Array(flat) if flat.len() % 2 == 0 => {
            for pair in flat.chunks_exact(2) {
                take(&pair[0], &pair[1]).ok_or_else(bad)?;
            }
        }
        Value::Map(pairs) => {
            for (name, value) in pairs {
                take(name, value).ok_or_else(bad)?;
            }
        }
        _ => return Err(bad()),
    }
    Ok(StoredEvent {
        position,
        event: Event {
            event_type: event_type.ok_or_else(bad)?,
            data: data.ok_or_else(bad)?,
        },
    })
}

/// The bytes of a string reply.
fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The text of a string reply.
fn text(v: &Value) -> Option<&str> {
    std::str::from_utf8(bytes(v)?).ok()
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
    let data = EventData::from_stored(parts.next()?).ok()?;
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

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn stream_entries_read_as_arrays_or_maps_and_skip_unknown_fields() {
        let flat = Value::Array(vec![
            bulk("1700000000000-3"),
            Value::Array(vec![
                bulk("e"),
                bulk("order.created"),
                bulk("x"),
                bulk("later"),
                bulk("d"),
                bulk("{\"a\":1}"),
            ]),
        ]);
        let entry = parse_entry(&flat).unwrap();
        assert_eq!(entry.position, Position::new(1_700_000_000_000, 3));
        assert_eq!(entry.event.event_type.as_str(), "order.created");
        assert_eq!(entry.event.data.as_json(), "{\"a\":1}");
        let map = Value::Array(vec![
            bulk("1700000000000-4"),
            Value::Map(vec![(bulk("d"), bulk("2")), (bulk("e"), bulk("message"))]),
        ]);
        assert_eq!(parse_entry(&map).unwrap().event.data.as_json(), "2");
    }

    #[test]
    fn malformed_stream_entries_are_protocol_errors() {
        let entry =
            |fields: Vec<Value>| Value::Array(vec![bulk("1700000000000-3"), Value::Array(fields)]);
        for bad in [
            entry(vec![bulk("e"), bulk("message")]),
            entry(vec![bulk("d"), bulk("1")]),
            entry(vec![bulk("e"), bulk("message"), bulk("d")]),
            entry(vec![bulk("e"), bulk("message"), bulk("d"), bulk("{")]),
            entry(vec![
                bulk("e"),
                bulk("message"),
                bulk("d"),
                Value::BulkString(vec![0xff]),
            ]),
            Value::Array(vec![
                bulk("not-an-id"),
                Value::Array(vec![bulk("e"), bulk("message"), bulk("d"), bulk("1")]),
            ]),
            Value::Array(vec![bulk("1700000000000-3")]),
            Value::Nil,
        ] {
            assert!(
                matches!(parse_entry(&bad), Err(BrokerError::Protocol(_))),
                "{bad:?}"
            );
        }
    }

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
