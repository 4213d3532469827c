//! A request id on every request: the client's `X-Request-Id` when it is sane, else one made
//! here; returned in the response's `X-Request-Id`, in every problem+json body as `request_id`,
//! and recorded on the request's span, so that a client's complaint finds its log lines.
//!
//! The id is filled into problem bodies here, on the way out, rather than where they are built:
//! every error response of every router is problem+json, whoever built it, and error bodies are
//! small, so re-encoding one costs nothing the successful path pays for.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::Response;

/// The request and response header.
pub const HEADER: &str = "x-request-id";

/// The longest id accepted from a client; a longer one is replaced, not truncated.
pub const MAX_LEN: usize = 128;

/// The largest problem body that gets its id filled in (ours are a few hundred bytes).
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

/// A request's id, in its extensions for whoever logs about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored.
        self.0.to_str().unwrap_or_default()
    }
}

/// The layer: assigns each request its id, and puts it on the response. Written out rather
/// than `from_fn`, which boxes its future and the service beneath it for every request; only a
/// problem response, whose body is re-encoded, pays for a box.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssignRequestId;

impl<S> tower::Layer<S> for AssignRequestId {
    type Service = Assigned<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Assigned { inner }
    }
}

/// [`AssignRequestId`] around `S`.
#[derive(Debug, Clone)]
pub struct Assigned<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Assigned<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AssignedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = req
            .headers()
            .get(HEADER)
            .filter(|v| is_sane(v.as_bytes()))
            .cloned()
            .unwrap_or_else(generate);
        req.extensions_mut().insert(RequestId(id.clone()));
        AssignedFuture::Route {
            inner: self.inner.call(req),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Assigned`].
    #[project = Projected]
    pub enum AssignedFuture<F> {
        /// The route is answering.
        Route {
            #[pin]
            inner: F,
            id: Option<HeaderValue>,
        },
        /// It answered a problem, whose body gets the id.
        Problem { filling: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F> Future for AssignedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (response, id) = match self.as_mut().project() {
            Projected::Route { inner, id } => {
                let Ok(response) = ready!(inner.poll(cx));
                let id = id.take().expect("`AssignedFuture` polled after completion");
                (response, id)
            }
            Projected::Problem { filling } => return filling.as_mut().poll(cx).map(Ok),
        };
        if is_problem(&response) {
            self.set(AssignedFuture::Problem {
                filling: Box::pin(async move {
                    let mut response = with_request_id(response, &id).await;
                    response.headers_mut().insert(HEADER, id);
                    response
                }),
            });
            return self.poll(cx);
        }
        let mut response = response;
        response.headers_mut().insert(HEADER, id);
        Poll::Ready(Ok(response))
    }
}

/// 1 to [`MAX_LEN`] visible ASCII characters: nothing that could forge a log line or a header.
fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

/// 128 random bits in hex, the size of a W3C trace id.
fn generate() -> HeaderValue {
    let id = format!("{:032x}", rand::random::<u128>());
    HeaderValue::try_from(id).expect("hex is a valid header value")
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == herald_core::problem::CONTENT_TYPE.as_bytes())
}

/// `response` with `request_id` added to its problem+json body (left as it is when the body is
/// not a JSON object).
async fn with_request_id(response: Response, id: &HeaderValue) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_PROBLEM_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a problem body to add its request id");
            return Response::from_parts(parts, Body::empty());
        }
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut problem)) => {
            let id = id.to_str().unwrap_or_default().to_owned();
            problem.insert("request_id".to_owned(), serde_json::Value::String(id));
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(serde_json::Value::Object(problem).to_string())
        }
        _ => Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ascii_ids_are_accepted() {
        assert!(is_sane(b"abc-123_XYZ.:/"));
        assert!(is_sane(&[b'a'; MAX_LEN]));
        assert!(!is_sane(&[b'a'; MAX_LEN + 1]));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"with space"));
        assert!(!is_sane(b"line\nbreak"));
        assert!(!is_sane("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn generated_ids_are_distinct_and_sane() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(is_sane(a.as_bytes()));
    }
}
