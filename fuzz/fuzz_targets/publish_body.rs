//! The publish body parser (one event and batches): any bytes are refused or give events whose
//! data is the published JSON value, stored compactly, that stream as exactly one SSE event.
//! The JSON shape is the edge's (`crates/edge/src/publish.rs`, which also describes it to the
//! OpenAPI document); the event in it goes through [`event_of`], as there.
#![no_main]

use herald_core::publish::event_of;
use herald_core::{sse, Event, EventData};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    event: Option<String>,
    data: Box<RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    events: Vec<BatchEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchEvent {
    #[allow(dead_code)]
    channel: String,
    event: Option<String>,
    data: Box<RawValue>,
}

fn check(event: &Event, raw: &str) {
    let published: serde_json::Value = serde_json::from_str(raw).expect("data was JSON");
    let stored: serde_json::Value =
        serde_json::from_str(event.data.as_json()).expect("stored JSON");
    assert_eq!(stored, published, "the data is the published value");
    assert_eq!(
        EventData::from_stored(event.data.as_json()).as_ref(),
        Ok(&event.data),
        "what is stored reads back"
    );
    let rendered = event.data.rendered();
    let frame = sse::event(Some("1-2-3"), &event.event_type, &rendered);
    let shown = (!event.event_type.is_message()).then_some(event.event_type.as_str());
    herald_fuzz::check_frame(&frame, Some("1-2-3"), shown, &rendered);
}

fuzz_target!(|body: &[u8]| {
    if let Ok(one) = serde_json::from_slice::<PublishBody>(body) {
        if let Ok(event) = event_of(one.event.as_deref(), &one.data) {
            check(&event, one.data.get());
        }
    }
    if let Ok(batch) = serde_json::from_slice::<BatchBody>(body) {
        for e in &batch.events {
            if let Ok(event) = event_of(e.event.as_deref(), &e.data) {
                check(&event, e.data.get());
            }
        }
    }
});
