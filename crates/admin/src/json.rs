//! A JSON body extractor whose rejections are problem+json like every other error.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::Bytes;
use herald_core::ErrorCode;
use herald_edge::ApiError;
use serde::de::DeserializeOwned;

/// Like `axum::Json`, but a body that is not the expected JSON is a 400 `invalid_body` in the
/// API's own error shape. Names inside are parsed by the handler, so that a bad one is
/// `invalid_name`.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            });
        if !json_type {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "request body too large")
            } else {
                ApiError::invalid_body("could not read the request body")
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ApiError::invalid_body(format!("invalid JSON body: {e}")))
    }
}
