//! Logging, set up once. Request spans carry the method, the *matched route* and the tenant,
//! never the raw URI: query strings can hold subscriber tokens and cursors, headers hold keys
//! and cookies.

use axum::extract::MatchedPath;
use axum::http::Request;
use herald_http::tenant_of;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::request_id::RequestId;

/// Sets up logging. `otlp_endpoint` is where traces are to be exported (`--otlp-endpoint`);
/// the exporter itself is not built in yet, so a configured endpoint is announced, not used.
pub fn init(format: LogFormat, otlp_endpoint: Option<&axum::http::Uri>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr: stdout carries what commands print (`herald openapi`, `herald tenant`).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Some(endpoint) = otlp_endpoint {
        tracing::warn!(%endpoint, "--otlp-endpoint is set, but this build exports no traces yet");
    }
}

/// A span per request, named after the route it matched, with the request's id and, on routes
/// of one tenant, the tenant; one line per request when it is answered (status and latency),
/// inside that span, so that every request line names its route, tenant and request id.
pub fn layer<B>() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&Request<B>) -> tracing::Span + Clone,
> {
    TraceLayer::new_for_http()
        .make_span_with(|req: &Request<B>| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            let request_id = req
                .extensions()
                .get::<RequestId>()
                .map_or("", RequestId::as_str);
            let span = tracing::info_span!(
                "request",
                method = %req.method(),
                route,
                tenant = tracing::field::Empty,
                request_id
            );
            if let Some(tenant) = tenant_of(route, req.uri().path()) {
                span.record("tenant", tenant);
            }
            span
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO))
}

#[cfg(test)]
mod tests {
    use super::tenant_of;

    #[test]
    fn the_tenant_is_the_segment_the_route_names() {
        let edge = "/v1/{tenant}/channels/{channel}/events";
        assert_eq!(tenant_of(edge, "/v1/acme/channels/c/events"), Some("acme"));
        let admin = "/api/v1/tenants/{tenant}/keys";
        assert_eq!(tenant_of(admin, "/api/v1/tenants/acme/keys"), Some("acme"));
        assert_eq!(tenant_of("/api/v1/me", "/api/v1/me"), None);
        assert_eq!(tenant_of("unmatched", "/v1/acme"), None);
    }
}
