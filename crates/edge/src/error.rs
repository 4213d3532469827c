//! The edge's error type: every failure a client can see, as problem+json.
//!
//! Policy: the `code` and `detail` are for the client and never carry internal causes; an
//! internal cause is logged once, where the error is made, and the client gets `unavailable`
//! (the broker or the database could not be reached: retry) or `internal`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::{ErrorCode, InvalidName, Problem};

/// A client-facing error.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, detail)
    }

    /// A dependency failed; the operation did not happen and may be retried shortly.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        Self {
            retry_after: Some(1),
            ..Self::new(
                ErrorCode::Unavailable,
                "a backing service is unavailable; retry shortly",
            )
        }
    }

    pub fn invalid_body(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidBody, detail)
    }
}

impl From<InvalidName> for ApiError {
    fn from(e: InvalidName) -> Self {
        Self::new(ErrorCode::InvalidName, e.to_string())
    }
}

impl From<herald_store::StoreError> for ApiError {
    fn from(e: herald_store::StoreError) -> Self {
        Self::unavailable(&e)
    }
}

impl From<herald_replay::BrokerError> for ApiError {
    fn from(e: herald_replay::BrokerError) -> Self {
        Self::unavailable(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = problem_response(Problem::new(self.code, self.detail), self.retry_after);
        // For the rejection metrics: the code, without parsing the body again.
        response.extensions_mut().insert(self.code);
        response
    }
}

/// A problem+json response, with `Retry-After` when given.
pub fn problem_response(problem: Problem, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(herald_core::problem::CONTENT_TYPE),
    );
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
