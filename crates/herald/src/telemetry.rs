//! Logging, set up once. Request spans carry the method and the *matched route*, never the raw
//! URI: query strings can hold subscriber tokens and cursors, headers hold keys and cookies.

use axum::extract::MatchedPath;
use axum::http::Request;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

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

/// A span per request, named after the route it matched.
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
            tracing::info_span!("request", method = %req.method(), route)
        })
        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
}
