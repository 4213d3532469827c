//! What the fuzz targets check, written from the contract (API.md) rather than from the code
//! under test, so that a target can catch the code disagreeing with it.

/// Reads one SSE frame as a browser's parser would (WHATWG: lines end at CR, LF or CRLF; a blank
/// line dispatches) and checks that it is exactly one event with this `id`, `event` and data:
/// whatever the data holds, it cannot end the event early or add a field.
pub fn check_frame(frame: &[u8], id: Option<&str>, event: Option<&str>, data: &str) {
    let text = std::str::from_utf8(frame).expect("a frame is UTF-8");
    assert!(
        text.ends_with("\n\n"),
        "a frame ends with a blank line: {text:?}"
    );
    let body = &text[..text.len() - 1];
    let lines = split_lines(body);
    // The last line is the empty one the frame ends with (its terminator was trimmed above).
    assert_eq!(lines.last(), Some(&""), "{text:?}");
    let lines = &lines[..lines.len() - 1];
    assert!(
        lines.iter().all(|l| !l.is_empty()),
        "only the last line is blank: {text:?}"
    );
    let (mut ids, mut events, mut datas) = (Vec::new(), Vec::new(), Vec::new());
    for line in lines {
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        match field {
            "id" => ids.push(value),
            "event" => events.push(value),
            "data" => datas.push(value),
            other => panic!("unexpected field {other:?} in {text:?}"),
        }
    }
    assert_eq!(ids.first().copied(), id, "{text:?}");
    assert!(ids.len() <= 1 && events.len() <= 1, "{text:?}");
    assert_eq!(events.first().copied(), event, "{text:?}");
    // A parser joins data lines with LF; every line break of the payload becomes one.
    let expected = split_lines(data).join("\n");
    assert_eq!(datas.join("\n"), expected, "{text:?}");
}

/// Splits on CRLF, CR and LF, keeping a last empty piece after a final terminator.
fn split_lines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        match rest.find(['\r', '\n']) {
            Some(i) => {
                out.push(&rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                out.push(rest);
                return out;
            }
        }
    }
}
