//! The event of a publish body (`{"event"?, "data"}`, alone or in a batch): its type checked,
//! its data compacted. No I/O, so that it can be fuzzed alone; the edge parses the body's JSON
//! shape and adds the media type, the size limits and the API's error shape.

use serde_json::value::RawValue;

use crate::event::{Event, EventData};
use crate::names::{EventType, InvalidName};

/// Why a parsed body holds no valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    /// `event` is not a valid type (or a reserved one).
    #[error(transparent)]
    Type(#[from] InvalidName),
    #[error("`data` is not valid JSON")]
    Data,
}

/// The event of a type (`message` when absent) and raw JSON data.
pub fn event_of(event_type: Option<&str>, data: &RawValue) -> Result<Event, InvalidEvent> {
    let event_type = match event_type {
        Some(t) => EventType::parse(t)?,
        None => EventType::message(),
    };
    let data = EventData::from_raw(data).map_err(|_| InvalidEvent::Data)?;
    Ok(Event { event_type, data })
}
