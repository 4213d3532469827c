//! Cursor and multi-cursor decoding: whatever a client sends as `Last-Event-ID` is refused or
//! read back exactly, and never panics.
#![no_main]

use herald_core::{Cursor, MultiCursor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(c) = Cursor::parse(text) {
        assert_eq!(Cursor::parse(&c.to_string()), Ok(c), "{text:?}");
    }
    if let Ok(m) = MultiCursor::parse(text) {
        let encoded = m.encode();
        assert_eq!(MultiCursor::parse(&encoded).as_ref(), Ok(&m), "{text:?}");
        // What the edge writes on `id:` lines must stay on one line.
        assert!(!encoded.contains(['\r', '\n', '\0']), "{encoded:?}");
    }
});
