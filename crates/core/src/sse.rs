//! Server-Sent Events framing.
//!
//! Every CR, LF or CRLF in a payload starts a new `data:` line, so no payload can end an event
//! early or smuggle in a field: the only line terminators a frame contains are the ones written
//! here. Frames are built once per event as [`Bytes`] and shared by every subscriber.

use bytes::{BufMut, Bytes, BytesMut};

use crate::names::EventType;

/// The comment sent when no event has flowed for a heartbeat interval.
pub const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// `retry: <ms>`, the first line of every stream: how long a browser waits before reconnecting.
pub fn retry(ms: u64) -> Bytes {
    Bytes::from(format!("retry: {ms}\n\n"))
}

/// One event. `id` is omitted for platform events that carry no position (`herald.gap`); the
/// `event:` line is omitted for the default type `message`.
pub fn event(id: Option<&str>, event_type: &EventType, data: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + 64);
    write_event(&mut buf, id, event_type, data);
    buf.freeze()
}

/// [`event`], appended to a buffer that may already hold other frames (a write being gathered).
pub fn write_event(buf: &mut BytesMut, id: Option<&str>, event_type: &EventType, data: &str) {
    buf.reserve(data.len() + 64);
    if let Some(id) = id {
        debug_assert!(!id.contains(['\r', '\n', '\0']));
        buf.put_slice(b"id: ");
        buf.put_slice(id.as_bytes());
        buf.put_u8(b'\n');
    }
    if !event_type.is_message() {
        buf.put_slice(b"event: ");
        buf.put_slice(event_type.as_str().as_bytes());
        buf.put_u8(b'\n');
    }
    for line in lines(data) {
        buf.put_slice(b"data: ");
        buf.put_slice(line.as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
}

/// An `id:` line on its own, for a frame body shared by streams whose ids differ.
pub fn write_id(buf: &mut BytesMut, id: &str) {
    debug_assert!(!id.contains(['\r', '\n', '\0']));
    buf.reserve(id.len() + 5);
    buf.put_slice(b"id: ");
    buf.put_slice(id.as_bytes());
    buf.put_u8(b'\n');
}

/// Splits on CRLF, CR and LF alike, the way an SSE parser does. An empty payload is one empty
/// line, so the event still carries `data:` and is dispatched (with empty data).
fn lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An event as the WHATWG `EventSource` parser dispatches it.
    #[derive(Debug, PartialEq)]
    struct Parsed {
        id: Option<String>,
        event: String,
        data: String,
    }

    /// The parsing rules of the HTML standard's "event stream interpretation", written out
    /// independently of the encoder so that the property test below checks one against the other.
    fn parse(stream: &str) -> (Vec<Parsed>, Option<u64>) {
        let (mut out, mut retry) = (Vec::new(), None);
        let (mut data, mut event, mut id, mut last_id) =
            (String::new(), String::new(), None::<String>, None);
        let mut rest = stream;
        while !rest.is_empty() {
            let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
            let line = &rest[..end];
            rest = &rest[end..];
            if rest.starts_with("\r\n") {
                rest = &rest[2..];
            } else if !rest.is_empty() {
                rest = &rest[1..];
            } else {
                break; // an unterminated last line is never dispatched
            }
            if line.is_empty() {
                if let Some(i) = id.take() {
                    last_id = Some(i);
                }
                if !data.is_empty() {
                    data.pop();
                    out.push(Parsed {
                        id: last_id.clone(),
                        event: if event.is_empty() {
                            "message".into()
                        } else {
                            event.clone()
                        },
                        data: std::mem::take(&mut data),
                    });
                }
                data.clear();
                event.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "event" => event = value.to_owned(),
                "id" if !value.contains('\0') => id = Some(value.to_owned()),
                "retry" => retry = value.parse().ok().or(retry),
                _ => {}
            }
        }
        (out, retry)
    }

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn every_line_break_starts_a_data_line() {
        let f = event(Some("c1"), &EventType::message(), "a\nb\rc\r\nd");
        assert_eq!(text(&f), "id: c1\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn injection_attempts_stay_data() {
        let evil = "x\n\nid: forged\nevent: admin\n\ndata: y\r\r";
        let f = event(Some("c9"), &EventType::parse("t").unwrap(), evil);
        let (events, _) = parse(text(&f));
        assert_eq!(
            events,
            vec![Parsed {
                id: Some("c9".into()),
                event: "t".into(),
                data: evil.replace('\r', "\n")
            }]
        );
    }

    #[test]
    fn empty_data_is_still_an_event() {
        let f = event(None, &EventType::message(), "");
        assert_eq!(text(&f), "data: \n\n");
        assert_eq!(parse(text(&f)).0.len(), 1);
    }

    #[test]
    fn retry_and_keepalive_are_not_events() {
        let mut s = text(&retry(2000)).to_owned();
        s.push_str(std::str::from_utf8(KEEPALIVE).unwrap());
        assert_eq!(parse(&s), (vec![], Some(2000)));
    }

    proptest! {
        /// Any payload, parsed back by a WHATWG parser, is the same payload (line breaks
        /// normalised to LF, which is all an `EventSource` can deliver).
        #[test]
        fn any_payload_round_trips(data in "(\\PC|[\r\n ]){0,200}", id in "[0-9a-z-]{1,20}", t in "[A-Za-z0-9._:-]{1,64}") {
            let event_type = EventType::parse_any(&t).unwrap();
            let f = event(Some(&id), &event_type, &data);
            let (events, _) = parse(text(&f));
            let expected = data.replace("\r\n", "\n").replace('\r', "\n");
            prop_assert_eq!(events, vec![Parsed { id: Some(id), event: t, data: expected }]);
        }

        #[test]
        fn consecutive_frames_stay_separate(a in "(\\PC|[\r\n]){0,50}", b in "(\\PC|[\r\n]){0,50}") {
            let mut s = text(&event(Some("1"), &EventType::message(), &a)).to_owned();
            s.push_str(text(&event(Some("2"), &EventType::message(), &b)));
            let (events, _) = parse(&s);
            prop_assert_eq!(events.len(), 2);
        }
    }
}
