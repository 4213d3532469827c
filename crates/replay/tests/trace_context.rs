//! The in-process broker's part of a publish's trace: its append span under the caller's, the
//! fan-out under the append, and nothing carried for a publish that was not sampled. (The Redis
//! path, across processes, is `crates/cluster/tests/traces.rs`.) A binary of its own: turning
//! propagation on is for the whole process.

use std::sync::{Arc, Mutex};

use herald_core::{ChannelName, Event, EventData, EventType, TenantSlug};
use herald_replay::{Broker, ChannelKey, InProcessBroker, Live, Retention, TraceParent};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// Keeps every span exported.
#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

fn traced(
    sampler: Sampler,
) -> (
    Collect,
    SdkTracerProvider,
    tracing::subscriber::DefaultGuard,
) {
    let spans = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .with_sampler(sampler)
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let guard = tracing::subscriber::set_default(subscriber);
    herald_replay::trace::enable();
    (spans, provider, guard)
}

fn key() -> ChannelKey {
    ChannelKey::new(
        TenantSlug::parse("acme").unwrap(),
        ChannelName::parse("orders").unwrap(),
    )
}

fn event() -> Event {
    Event {
        event_type: EventType::message(),
        data: EventData::from_text("hi"),
    }
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test]
async fn the_fanout_hangs_under_the_append_under_the_publish() {
    let (spans, provider, _guard) = traced(Sampler::AlwaysOn);
    let broker = InProcessBroker::new();
    let mut sub = broker.subscribe(&key()).await.unwrap();
    let publish = tracing::info_span!("publish");
    let cursor = broker
        .append(&key(), &event(), Retention::default())
        .instrument(publish)
        .await
        .unwrap();
    assert!(matches!(sub.rx.recv().await, Ok(Live::Event(e)) if e.cursor == cursor));
    provider.force_flush().unwrap();

    let spans = spans.0.lock().unwrap();
    let named = |name: &str| {
        let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} in {spans:#?}");
        found[0]
    };
    let (publish, append, fanout) = (named("publish"), named("broker.append"), named("fanout"));
    let trace = publish.span_context.trace_id();
    assert!([append, fanout]
        .iter()
        .all(|s| s.span_context.trace_id() == trace));
    assert_eq!(append.parent_span_id, publish.span_context.span_id());
    assert_eq!(fanout.parent_span_id, append.span_context.span_id());
    assert_eq!(attr(append, "broker").as_deref(), Some("memory"));
    assert_eq!(attr(fanout, "tenant").as_deref(), Some("acme"));
    assert_eq!(attr(fanout, "channel").as_deref(), Some("orders"));
    assert_eq!(attr(fanout, "cursor"), Some(cursor.to_string()));
}

#[tokio::test]
async fn an_unsampled_publish_carries_nothing_and_spans_nothing() {
    let (spans, provider, _guard) = traced(Sampler::AlwaysOff);
    let broker = InProcessBroker::new();
    let mut sub = broker.subscribe(&key()).await.unwrap();
    let publish = tracing::info_span!("publish");
    assert_eq!(publish.in_scope(TraceParent::current), None);
    broker
        .append(&key(), &event(), Retention::default())
        .instrument(publish)
        .await
        .unwrap();
    assert!(matches!(sub.rx.recv().await, Ok(Live::Event(_))));
    provider.force_flush().unwrap();
    assert!(spans.0.lock().unwrap().is_empty());
}
