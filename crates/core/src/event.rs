//! What a publisher sends and a subscriber receives.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::names::EventType;

/// One event: its type and its data. The data is kept as the compact JSON text of the published
/// value, which is what the history API returns; [`EventData::rendered`] is what goes on the
/// `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    pub data: EventData,
}

/// The data of an event: any JSON value, `null` included, held as compact JSON text. The text is
/// shared: a clone (a history page, a fan-out) is a reference count, never a copy of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event data is not valid JSON")]
pub struct InvalidData;

impl EventData {
    /// Data from a parsed JSON value.
    pub fn from_value(value: &serde_json::Value) -> Self {
        Self(value.to_string().into())
    }

    /// Data from raw JSON text, re-serialised compactly so that stored and streamed forms never
    /// carry the publisher's whitespace.
    pub fn from_raw(raw: &RawValue) -> Result<Self, InvalidData> {
        let value: serde_json::Value = serde_json::from_str(raw.get()).map_err(|_| InvalidData)?;
        Ok(Self::from_value(&value))
    }

    /// Data that is a plain string (a `text/plain` publish).
    pub fn from_text(text: &str) -> Self {
        Self(serde_json::Value::from(text).to_string().into())
    }

    /// Data read back from a store, trusted to be the compact JSON this type wrote (and checked
    /// to be JSON): copied once, straight from the reply it was read from.
    pub fn from_stored(json: &str) -> Result<Self, InvalidData> {
        serde_json::from_str::<&RawValue>(json).map_err(|_| InvalidData)?;
        Ok(Self(json.into()))
    }

    /// The compact JSON text of the value.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The published value, for an API answer that embeds it.
    pub fn to_raw(&self) -> Box<RawValue> {
        RawValue::from_string(self.0.to_string()).expect("EventData always holds valid JSON")
    }

    /// The text on the `data:` lines: a JSON string as its text, any other value as compact JSON.
    pub fn rendered(&self) -> std::borrow::Cow<'_, str> {
        if self.0.starts_with('"') {
            if let Ok(s) = serde_json::from_str::<String>(&self.0) {
                return s.into();
            }
        }
        (&*self.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_render_as_text_and_others_as_compact_json() {
        assert_eq!(EventData::from_value(&json!("a\nb")).rendered(), "a\nb");
        assert_eq!(
            EventData::from_value(&json!({"a": [1, 2], "b": null})).rendered(),
            r#"{"a":[1,2],"b":null}"#
        );
        assert_eq!(EventData::from_value(&json!(null)).rendered(), "null");
        assert_eq!(
            EventData::from_text("plain \"text\"").rendered(),
            "plain \"text\""
        );
    }

    #[test]
    fn raw_json_is_compacted() {
        let raw: Box<RawValue> = serde_json::from_str("{ \"a\" :  1 }").unwrap();
        assert_eq!(EventData::from_raw(&raw).unwrap().as_json(), r#"{"a":1}"#);
        assert!(EventData::from_stored("{").is_err());
    }

    /// Found by the `publish_body` fuzz target: a number with more digits than a double holds
    /// was stored as a neighbour of the nearest double, so the stored value was not the
    /// published one. Numbers are now parsed correctly rounded (serde_json `float_roundtrip`).
    #[test]
    fn long_numbers_are_stored_as_the_nearest_double() {
        for text in [
            "1411110000000000000000000000000001783065789968475022",
            "0.30000000000000004441",
            "2.2250738585072011e-308",
        ] {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            let stored = EventData::from_raw(&raw).unwrap();
            let nearest: f64 = text.parse().unwrap();
            assert_eq!(stored.as_json().parse::<f64>().unwrap(), nearest, "{text}");
        }
    }
}
