//! CORS per tenant: its `allowed_origins` (default `*`) decide whether a browser may read an
//! edge response. Allowed: the request's `Origin` is echoed (or `*` when the list is `*`);
//! not allowed: no `Access-Control-Allow-Origin` at all — the request is still served, and the
//! browser withholds the answer. Errors carry the headers too, so a page can read why.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald_core::TenantSlug;
use herald_store::Tenant;

use crate::EdgeState;

const ALLOW_METHODS: &str = "GET, POST";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID";
const EXPOSE_HEADERS: &str = "Retry-After";

/// The tenant a handler answered for, in its response's extensions: the layer then decides
/// without a lookup of its own. A response without it (an error, most often) is decided from
/// the path's tenant, looked up.
#[derive(Clone)]
pub(crate) struct AnsweredFor(pub Arc<Tenant>);

/// The layer: answers preflights and decorates every other response. Written out rather than
/// `from_fn`, which boxes its future and the route beneath it for every request; what still
/// boxes (a preflight, a response whose tenant must be looked up) is off the publish and
/// subscribe paths.
#[derive(Clone)]
pub(crate) struct CorsLayer {
    pub state: EdgeState,
}

impl<S> tower::Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cors {
            inner,
            state: self.state.clone(),
        }
    }
}

/// [`CorsLayer`] around `S`.
#[derive(Clone)]
pub(crate) struct Cors<S> {
    inner: S,
    state: EdgeState,
}

impl<S> tower::Service<Request> for Cors<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = CorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let origin = request.headers().get(header::ORIGIN).cloned();
        let preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            let (state, uri) = (self.state.clone(), request.uri().clone());
            return CorsFuture::Deciding {
                deciding: Box::pin(async move {
                    let allow = allow_origin(&state, &uri, origin.as_ref()).await;
                    let mut r = StatusCode::NO_CONTENT.into_response();
                    let h = r.headers_mut();
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_METHODS,
                        HeaderValue::from_static(ALLOW_METHODS),
                    );
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_HEADERS,
                        HeaderValue::from_static(ALLOW_HEADERS),
                    );
                    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(600));
                    decorate(h, allow);
                    r
                }),
            };
        }
        CorsFuture::Route {
            uri: request.uri().clone(),
            inner: self.inner.call(request),
            origin,
            state: self.state.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Cors`].
    #[project = Projected]
    pub(crate) enum CorsFuture<F> {
        /// The route is answering.
        Route {
            #[pin]
            inner: F,
            uri: Uri,
            origin: Option<HeaderValue>,
            state: EdgeState,
        },
        /// A preflight, or a response whose tenant is being looked up.
        Deciding { deciding: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F> Future for CorsFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (mut response, uri, origin, state) = match self.as_mut().project() {
            Projected::Route {
                inner,
                uri,
                origin,
                state,
            } => {
                let Ok(mut response) = ready!(inner.poll(cx));
                let origin = origin.take();
                // The handler named its tenant: decided here, nothing cloned for a lookup.
                if let Some(AnsweredFor(tenant)) = response.extensions_mut().remove::<AnsweredFor>()
                {
                    decorate(
                        response.headers_mut(),
                        allow_for(Some(&tenant), origin.as_ref()),
                    );
                    return Poll::Ready(Ok(response));
                }
                (response, std::mem::take(uri), origin, state.clone())
            }
            Projected::Deciding { deciding } => return deciding.as_mut().poll(cx).map(Ok),
        };
        self.set(CorsFuture::Deciding {
            deciding: Box::pin(async move {
                let allow = allow_origin(&state, &uri, origin.as_ref()).await;
                decorate(response.headers_mut(), allow);
                response
            }),
        });
        self.poll(cx)
    }
}

fn decorate(h: &mut HeaderMap, allow: Option<HeaderValue>) {
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(value) = allow {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
}

/// The `Access-Control-Allow-Origin` value for this request, if any. An unknown tenant, or
/// one that cannot be looked up right now, answers with `*` so the page can read the error.
async fn allow_origin(
    state: &EdgeState,
    uri: &Uri,
    origin: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    let slug = uri
        .path()
        .strip_prefix("/v1/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|s| TenantSlug::parse(s).ok());
    let tenant = match slug {
        Some(slug) => state.view.tenant(&slug).await.ok().flatten(),
        None => None,
    };
    allow_for(tenant.as_deref(), origin)
}

/// The `Access-Control-Allow-Origin` value for `origin` on `tenant`'s responses.
fn allow_for(tenant: Option<&Tenant>, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
    let origins = match tenant {
        Some(t) => t.allowed_origins.as_slice(),
        None => return Some(HeaderValue::from_static("*")),
    };
    if origins.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let origin = origin?;
    origins
        .iter()
        .any(|o| o.as_bytes() == origin.as_bytes())
        .then(|| origin.clone())
}
