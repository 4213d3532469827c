//! The SSE encoder: any data, any valid type, any cursor gives exactly one well-formed event.
#![no_main]

use herald_core::{sse, Cursor, Epoch, EventType, Position};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u32, u64, u64, &str, &str)| {
    let (epoch, ms, seq, event_type, data) = input;
    let id = Cursor::new(Epoch(epoch), Position::new(ms, seq)).to_string();
    let event_type = EventType::parse_any(event_type).unwrap_or_else(|_| EventType::message());
    let frame = sse::event(Some(&id), &event_type, data);
    let shown = (!event_type.is_message()).then_some(event_type.as_str());
    herald_fuzz::check_frame(&frame, Some(&id), shown, data);
});
