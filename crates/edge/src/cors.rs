//! CORS per tenant: its `allowed_origins` (default `*`) decide whether a browser may read an
//! edge response. Allowed: the request's `Origin` is echoed (or `*` when the list is `*`);
//! not allowed: no `Access-Control-Allow-Origin` at all — the request is still served, and the
//! browser withholds the answer. Errors carry the headers too, so a page can read why.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_core::TenantSlug;

use crate::EdgeState;

const ALLOW_METHODS: &str = "GET, POST";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID";
const EXPOSE_HEADERS: &str = "Retry-After";

pub async fn cors(State(state): State<EdgeState>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allow = allow_origin(&state, request.uri().path(), origin.as_ref()).await;
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
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
        r
    } else {
        next.run(request).await
    };
    decorate(response.headers_mut(), allow);
    response
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
    path: &str,
    origin: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    let slug = path
        .strip_prefix("/v1/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|s| TenantSlug::parse(s).ok());
    let tenant = match slug {
        Some(slug) => state.view.tenant(&slug).await.ok().flatten(),
        None => None,
    };
    let origins = match &tenant {
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
