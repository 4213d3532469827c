//! Logs and traces, set up once. Request spans carry the method, the *matched route* and the
//! tenant, never the raw URI: query strings can hold subscriber tokens and cursors, headers hold
//! keys and cookies. What a span records is what a trace exports, so the same rule keeps secrets
//! out of both.
//!
//! Traces go out over OTLP (HTTP/protobuf) when an endpoint is configured: a batch exporter on
//! the tokio runtime, flushed at shutdown. One publish is one trace: its request span (the
//! child of a `traceparent` the client sent), the broker's append and its Redis script, and a
//! `fanout` span on every process that delivered the event (see `herald_replay::trace`). A
//! subscribe request's span ends when its stream is answered, not when the stream does: the
//! stream itself is logged under a span of its own that is never exported, since a span open
//! for hours is one no collector shows.

use std::io::IsTerminal;

use axum::extract::MatchedPath;
use axum::http::{HeaderMap, Method, Request};
use herald_http::tenant_of;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::LogFormat;
use crate::request_id::RequestId;

/// The name of a subscribe request's span: logged, never exported (see the module's doc).
const STREAM_SPAN: &str = "stream";

/// Where and how traces are exported.
#[derive(Debug, Clone, Default)]
pub struct TraceSettings {
    /// `--otlp-endpoint`: the collector's base URL; traces go to `<it>/v1/traces`, unless
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` names the full URL.
    pub endpoint: Option<axum::http::Uri>,
    /// `--trace-sample-ratio`: the share of new traces kept, a request whose client sent a
    /// `traceparent` following the client's decision. Unset: `OTEL_TRACES_SAMPLER` (and
    /// `_ARG`) decide, by default every trace.
    pub sample_ratio: Option<f64>,
}

impl TraceSettings {
    /// The URL spans are posted to, or `None` when traces are off. The per-signal variable
    /// wins over the base URL, as in every OpenTelemetry SDK; `OTEL_SDK_DISABLED=true` turns
    /// export off whatever is configured.
    fn traces_url(&self) -> Option<String> {
        let env = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return None;
        }
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
            let base = self.endpoint.as_ref()?.to_string();
            Some(format!("{}/v1/traces", base.trim_end_matches('/')))
        })
    }
}

/// What [`init`] installed; [`Telemetry::shutdown`] exports the spans still buffered.
#[must_use = "call shutdown() before exiting, or buffered spans are lost"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered and stops the exporter. A collector that does not answer
    /// costs at most the exporter's timeout.
    pub async fn shutdown(self) {
        let Some(provider) = self.tracer else {
            return;
        };
        // The provider waits for its batch task, which runs on this runtime: wait off it.
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            eprintln!("herald: exporting the last traces failed: {e}");
        }
    }
}

/// Sets up logging, and trace export when [`TraceSettings`] name an endpoint. Must run inside
/// the tokio runtime: the exporter is a task on it.
pub fn init(format: LogFormat, traces: &TraceSettings) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr: stdout carries what commands print (`herald openapi`, `herald tenant`).
    // Colours only for a person at a terminal: a log file or collector gets plain text, and
    // the escape codes were the largest single cost of a request's line.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colours());
    let logs = match format {
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
        LogFormat::Text => logs.with_filter(filter).boxed(),
    };
    let (tracer, problem) = match traces.traces_url().map(|url| tracer_provider(&url, traces)) {
        None => (None, None),
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(e)) => (None, Some(e)),
    };
    // Exported spans are chosen apart from the log filter: `RUST_LOG=warn` quiets the logs, not
    // the traces. Subscribe streams' own spans stay out (see the module's doc).
    let spans = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("herald"))
            .with_filter(LevelFilter::INFO)
            .with_filter(filter_fn(|meta| {
                !(meta.is_span() && meta.name() == STREAM_SPAN)
            }))
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    if let Some(e) = problem {
        tracing::error!(error = %e, "traces are not exported");
    } else if tracer.is_some() {
        herald_replay::trace::enable();
    }
    Telemetry { tracer }
}

/// Whether log lines are coloured: stderr is a terminal and `NO_COLOR` is not set.
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn tracer_provider(url: &str, traces: &TraceSettings) -> Result<SdkTracerProvider, String> {
    if !url.starts_with("http://") {
        return Err(format!(
            "{url}: this build posts traces over plain http only; run a collector (or an \
             agent) beside herald for TLS"
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let batches =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let mut provider = SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_resource(resource());
    if let Some(ratio) = traces.sample_ratio {
        provider = provider.with_sampler(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(ratio),
        )));
    }
    Ok(provider.build())
}

/// `service.name` herald and a `service.instance.id` of this process's own, so that the spans
/// of two edges tell their processes apart; `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`
/// override either.
fn resource() -> Resource {
    let instance = format!("{:016x}", rand::random::<u64>());
    let mut resource = Resource::builder_empty()
        .with_detector(Box::new(
            opentelemetry_sdk::resource::TelemetryResourceDetector,
        ))
        .with_service_name("herald")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            instance,
        ))
        .with_detector(Box::new(
            opentelemetry_sdk::resource::EnvResourceDetector::new(),
        ));
    if let Some(name) = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
    {
        resource = resource.with_service_name(name);
    }
    resource.build()
}

/// Reads `traceparent` and `tracestate` from request headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes the client's trace, when its request names one (`traceparent`), the parent of `span`.
fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !herald_replay::trace::enabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Whether the request opens an event stream: its span lasts as long as the stream.
fn opens_stream(method: &Method, route: &str) -> bool {
    method == Method::GET
        && matches!(
            route,
            "/v1/{tenant}/channels/{channel}/events" | "/v1/{tenant}/events"
        )
}

/// A span per request, with the route it matched, the request's id and, on routes of one
/// tenant, the tenant (`stream` for a subscribe request, `request` for any other); one line per request when it is answered (status and latency),
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
            let span = if opens_stream(req.method(), route) {
                tracing::info_span!(
                    STREAM_SPAN,
                    method = %req.method(),
                    route,
                    tenant = tracing::field::Empty,
                    request_id
                )
            } else {
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    route,
                    tenant = tracing::field::Empty,
                    request_id
                )
            };
            if let Some(tenant) = tenant_of(route, req.uri().path()) {
                span.record("tenant", tenant);
            }
            continue_trace(&span, req.headers());
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
