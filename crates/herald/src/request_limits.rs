//! What every request must respect before a route sees it, each refusal a problem+json:
//!
//! - a request target of at most [`MAX_URI_BYTES`] (414 `uri_too_long`), at most [`MAX_HEADERS`]
//!   header fields of at most [`MAX_HEADER_BYTES`] together (431 `headers_too_large`). hyper
//!   buffers more than this ([`crate::serve::MAX_HEAD_BYTES`]) precisely so that these answers
//!   are ours, in the API's error shape, rather than its bare ones;
//! - a body that arrives whole within `--body-read-timeout-secs` of its first read (408
//!   `request_timeout`, through [`herald_http::TimedBody`]);
//! - an answer within `--request-timeout-secs` (503 `unavailable`), for every route but the
//!   streams, `GET …/events`, which are long-lived by design;
//! - at most `--max-streams-per-ip` open streams per client address (429 `quota_exceeded`).
//!
//! And what a route refuses without an [`ApiError`] (an extractor of axum's that cannot read a
//! path that is not UTF-8, say) is turned into a problem of its status, so that every error
//! Herald answers is problem+json.
//!
//! The client address is the one [`crate::proxy`] resolved, so behind trusted proxies a stream
//! counts against the client that opened it, not the proxy. Behind a load balancer that is not
//! in `--trusted-proxies`, every client is the balancer's address, and the cap becomes a cap on
//! the whole process: set `--trusted-proxies`, or `--max-streams-per-ip 0`. The count is per
//! process: behind N edges one address may hold up to N times the cap.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use herald_core::ErrorCode;
use herald_http::{ApiError, TimedBody};
use http_body::{Frame, SizeHint};

/// The longest request target (path and query) read.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// The most header fields a request may have.
pub const MAX_HEADERS: usize = 100;
/// The most bytes of header fields (names, values, and four bytes of framing each).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The request-level limits, shared by every request of the process.
#[derive(Clone)]
pub struct RequestLimits(Arc<Inner>);

struct Inner {
    body_read_timeout: Duration,
    request_timeout: Duration,
    streams: Option<IpStreams>,
}

impl RequestLimits {
    pub fn new(limits: &crate::serve::ServerLimits) -> Self {
        Self(Arc::new(Inner {
            body_read_timeout: limits.body_read_timeout,
            request_timeout: limits.request_timeout,
            streams: (limits.max_streams_per_ip > 0).then(|| IpStreams {
                max: limits.max_streams_per_ip,
                open: Mutex::default(),
            }),
        }))
    }
}

impl<S> tower::Layer<S> for RequestLimits {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limited {
            inner,
            limits: self.clone(),
        }
    }
}

/// The middleware: [`RequestLimits`] around `S`. A route layer written out, not `from_fn`:
/// `from_fn` boxes its future and clones the boxed service beneath it for every request.
#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    limits: RequestLimits,
}

impl<S> tower::Service<Request> for Limited<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = LimitedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if let Err(e) = check_size(&req) {
            return LimitedFuture::Refused {
                response: Some(e.into_response()),
            };
        }
        if is_stream(&req) {
            let slot = match (&self.limits.0.streams, client_ip(&req)) {
                (Some(streams), Some(ip)) => match streams.take(&self.limits, ip) {
                    Ok(slot) => Some(slot),
                    Err(e) => {
                        return LimitedFuture::Refused {
                            response: Some(e.into_response()),
                        }
                    }
                },
                _ => None,
            };
            return LimitedFuture::Stream {
                inner: self.inner.call(req),
                slot,
            };
        }
        let limits = &self.limits.0;
        let req = req.map(|body| TimedBody::wrap(body, limits.body_read_timeout));
        LimitedFuture::Timed {
            inner: tokio::time::timeout(limits.request_timeout, self.inner.call(req)),
            timeout: limits.request_timeout,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Limited`].
    #[project = Projected]
    pub enum LimitedFuture<F> {
        /// Refused before the route saw it.
        Refused { response: Option<Response> },
        /// A stream: no deadline (it is long-lived by design), and the address's slot, if the
        /// streams per address are capped, held by the body of a stream that opened.
        Stream {
            #[pin]
            inner: F,
            slot: Option<StreamSlot>,
        },
        /// Any other request: answered within the request timeout.
        Timed {
            #[pin]
            inner: tokio::time::Timeout<F>,
            timeout: Duration,
        },
    }
}

impl<F> Future for LimitedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project() {
            Projected::Refused { response } => response
                .take()
                .expect("`LimitedFuture` polled after completion"),
            Projected::Stream { inner, slot } => {
                let Ok(response) = ready!(inner.poll(cx));
                match slot.take() {
                    // Only a stream that opened holds its place; a refused one gives it back
                    // now (the slot is dropped here).
                    Some(slot) if response.status().is_success() => {
                        response.map(|body| Body::new(Held { body, _slot: slot }))
                    }
                    _ => response,
                }
            }
            Projected::Timed { inner, timeout } => match ready!(inner.poll(cx)) {
                Ok(Ok(response)) => response,
                Err(_) => ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        ErrorCode::Unavailable,
                        format!(
                            "the request was not answered within {} s",
                            timeout.as_secs()
                        ),
                    )
                }
                .into_response(),
            },
        };
        Poll::Ready(Ok(as_problem(response)))
    }
}

/// The client's address, as [`crate::proxy`] resolved it.
fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

/// An error response that is not a problem already becomes the problem of its status.
fn as_problem(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<ErrorCode>().is_some()
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == herald_core::problem::CONTENT_TYPE.as_bytes())
    {
        return response;
    }
    let code = match status.as_u16() {
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        413 => ErrorCode::PayloadTooLarge,
        414 => ErrorCode::UriTooLong,
        415 => ErrorCode::UnsupportedMediaType,
        431 => ErrorCode::HeadersTooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::InvalidBody,
        _ => ErrorCode::Internal,
    };
    let mut problem = ApiError::new(code, "the request could not be read").into_response();
    // The status stays the route's own (a 400 of an extractor is no `invalid_body` status
    // otherwise).
    *problem.status_mut() = status;
    let headers = response.headers();
    for name in [header::RETRY_AFTER, header::ALLOW] {
        if let Some(v) = headers.get(&name) {
            problem.headers_mut().insert(name, v.clone());
        }
    }
    problem
}

fn check_size(req: &Request) -> Result<(), ApiError> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(ApiError::new(
            ErrorCode::UriTooLong,
            format!("the request target is over {MAX_URI_BYTES} bytes"),
        ));
    }
    let headers = req.headers();
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!("over {MAX_HEADERS} header fields"),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!("the header fields are over {MAX_HEADER_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// `GET /v1/{tenant}/channels/{channel}/events` and `GET /v1/{tenant}/events`.
fn is_stream(req: &Request) -> bool {
    let path = req.uri().path();
    matches!(*req.method(), Method::GET | Method::HEAD)
        && path.starts_with("/v1/")
        && path.ends_with("/events")
}

/// Open streams per client address.
struct IpStreams {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl IpStreams {
    fn take(&self, limits: &RequestLimits, ip: IpAddr) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= self.max {
            return Err(ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    ErrorCode::QuotaExceeded,
                    format!("this address holds {} open streams already", self.max),
                )
            });
        }
        *n += 1;
        Ok(StreamSlot {
            limits: limits.clone(),
            ip,
        })
    }
}

/// One open stream of an address, given back when the stream's body is dropped.
struct StreamSlot {
    limits: RequestLimits,
    ip: IpAddr,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let Some(streams) = &self.limits.0.streams else {
            return;
        };
        let mut open = streams.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A stream's body, holding its address's slot.
struct Held {
    body: Body,
    _slot: StreamSlot,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn request(method: Method, uri: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn bare_errors_become_problems_of_their_status() {
        let bare = (StatusCode::BAD_REQUEST, "Invalid URL").into_response();
        let p = as_problem(bare);
        assert_eq!(p.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            p.headers()[header::CONTENT_TYPE],
            herald_core::problem::CONTENT_TYPE
        );
        assert_eq!(
            p.extensions().get::<ErrorCode>(),
            Some(&ErrorCode::InvalidBody)
        );
        let ours = ApiError::new(ErrorCode::Conflict, "taken").into_response();
        assert_eq!(
            as_problem(ours).extensions().get::<ErrorCode>(),
            Some(&ErrorCode::Conflict)
        );
        let fine = as_problem(StatusCode::NO_CONTENT.into_response());
        assert!(fine.extensions().get::<ErrorCode>().is_none());
    }

    #[test]
    fn only_subscriptions_are_streams() {
        assert!(is_stream(&request(
            Method::GET,
            "/v1/acme/channels/a/events?x=1"
        )));
        assert!(is_stream(&request(
            Method::GET,
            "/v1/acme/events?channel=a"
        )));
        assert!(!is_stream(&request(Method::POST, "/v1/acme/events")));
        assert!(!is_stream(&request(
            Method::POST,
            "/v1/acme/channels/a/events"
        )));
        assert!(!is_stream(&request(
            Method::GET,
            "/api/v1/tenants/acme/audit"
        )));
    }

    /// One-second deadlines and `max_streams_per_ip` streams per address.
    fn limits(max_streams_per_ip: usize) -> RequestLimits {
        RequestLimits::new(&crate::serve::ServerLimits {
            header_read_timeout: Duration::from_secs(1),
            keep_alive: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_connections: 10,
            max_streams_per_ip,
        })
    }

    #[tokio::test]
    async fn a_stream_holds_its_slot_only_while_its_body_lives() {
        use tower::{Layer, ServiceExt};

        let limits = limits(1);
        let route = tower::service_fn(|req: Request| async move {
            Ok::<_, Infallible>(if req.uri().path().contains("missing") {
                StatusCode::NOT_FOUND.into_response()
            } else {
                "data: x\n\n".into_response()
            })
        });
        let service = limits.layer(route);
        let stream = |path: &str| {
            let mut req = request(Method::GET, path);
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 1))));
            req
        };
        let open = || {
            limits
                .0
                .streams
                .as_ref()
                .unwrap()
                .open
                .lock()
                .unwrap()
                .len()
        };

        // A refused stream gives its place back at once, and its refusal is a problem.
        let refused = service
            .clone()
            .oneshot(stream("/v1/acme/channels/missing/events"))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            refused.extensions().get::<ErrorCode>(),
            Some(&ErrorCode::NotFound)
        );
        assert_eq!(open(), 0);

        // An open one holds it until its body is dropped; meanwhile the next is refused.
        let held = service
            .clone()
            .oneshot(stream("/v1/acme/channels/a/events"))
            .await
            .unwrap();
        assert!(held.status().is_success());
        let over = service
            .clone()
            .oneshot(stream("/v1/acme/channels/a/events"))
            .await
            .unwrap();
        assert_eq!(
            over.extensions().get::<ErrorCode>(),
            Some(&ErrorCode::QuotaExceeded)
        );
        drop(held);
        assert_eq!(open(), 0);
    }

    #[test]
    fn slots_are_counted_per_address_and_given_back() {
        let limits = limits(2);
        let streams = limits.0.streams.as_ref().unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let one = streams.take(&limits, a).unwrap();
        let _two = streams.take(&limits, a).unwrap();
        let refused = streams.take(&limits, a).err().unwrap();
        assert_eq!(refused.code, ErrorCode::QuotaExceeded);
        assert!(streams.take(&limits, b).is_ok(), "another address is apart");
        drop(one);
        let _three = streams.take(&limits, a).unwrap();
        drop(_two);
        drop(_three);
        assert!(
            streams.open.lock().unwrap().is_empty(),
            "nothing left behind"
        );
    }
}
