//! Request bodies: the media type, reading the bytes, and JSON, each failure in the API's own
//! error shape; and the deadline a body must arrive by.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use herald_core::ErrorCode;
use http_body::{Frame, SizeHint};
use serde::de::DeserializeOwned;
use tokio::time::Sleep;

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

/// A body that could not be read: over the body limit (413), too slow (408), or cut off (400).
pub fn body_error(e: BytesRejection) -> ApiError {
    if caused_by_timeout(&e) {
        return ApiError::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        );
    }
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body too large")
        }
        _ => ApiError::invalid_body("could not read the request body"),
    }
}

fn caused_by_timeout(e: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The error of a request body that did not arrive by its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// A request body that must arrive, whole, within a time from its first read: a client that
/// dribbles its body holds a connection and a handler no longer than that. Handlers see the
/// failure as any other body error, and [`body_error`] answers it 408 `request_timeout`.
pub struct TimedBody {
    inner: Body,
    limit: Duration,
    /// Armed at the first read.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    /// `body`, which must be read within `limit`.
    pub fn wrap(body: Body, limit: Duration) -> Body {
        Body::new(Self {
            inner: body,
            limit,
            deadline: None,
        })
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
