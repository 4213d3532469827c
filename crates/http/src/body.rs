//! Request bodies: the media type, reading the bytes, and JSON, each failure in the API's own
//! error shape.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use herald_core::ErrorCode;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// The request's media type, lowercase and without parameters, if it names one.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Accepts `application/json` or no `Content-Type`; anything else is 415.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match media_type(headers).as_deref() {
        None | Some("application/json") => Ok(()),
        Some(other) => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("unsupported content type {other:?}; use application/json"),
        )),
    }
}

/// A body that could not be read: over the body limit (413), or cut off (400).
pub fn body_error(e: BytesRejection) -> ApiError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body too large")
        }
        _ => ApiError::invalid_body("could not read the request body"),
    }
}

/// Like `axum::Json`, but a body that is not the expected JSON is a 400 `invalid_body` (415 for
/// another media type, 413 over the limit) in the API's own error shape. Names inside are
/// parsed by the handler, so that a bad one is `invalid_name`.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ApiError::invalid_body(format!("invalid JSON body: {e}")))
    }
}
