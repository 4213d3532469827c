//! RFC 9457 problem details, the body of every error response of every Herald API.

use serde::Serialize;

use crate::ErrorCode;

/// `application/problem+json`.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem: `{"type", "title", "status", "detail", "code"}`.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            type_: "about:blank",
            title: code.title(),
            status: code.status(),
            detail: detail.into(),
            code: code.as_str(),
        }
    }
}
