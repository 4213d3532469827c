//! Prometheus metrics of the edge, with bounded label sets: rejection reasons are the fixed
//! list of error codes, slow-subscriber outcomes a fixed pair. Nothing is labelled per tenant
//! or per channel, whose numbers have no bound. The health of the broker and the database is
//! probed when the page is scraped, so that an alert on them needs no other exporter.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use herald_core::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    outcome: String,
}

/// What `herald_slow_subscribers_total{outcome}` counts: a subscriber that fell behind its
/// live feed, and a live feed lost and re-read from history.
const SLOW_OUTCOMES: [&str; 2] = ["lagged", "resync"];

/// The edge's metrics.
pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub publishes: Counter,
    pub deliveries: Counter,
    rejected: Family<Reason, Counter>,
    slow: Family<Outcome, Counter>,
    publish_to_flush: Histogram,
    broker_up: Gauge,
    broker_ping: Gauge<f64, AtomicU64>,
    database_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let connections = Gauge::default();
        let publishes = Counter::default();
        let deliveries = Counter::default();
        let rejected = Family::<Reason, Counter>::default();
        let slow = Family::<Outcome, Counter>::default();
        let publish_to_flush = Histogram::new([
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]);
        registry.register(
            "connections",
            "Open subscriber streams",
            connections.clone(),
        );
        registry.register(
            "publishes",
            "Events accepted for publishing",
            publishes.clone(),
        );
        registry.register(
            "deliveries",
            "Events written to subscribers",
            deliveries.clone(),
        );
        registry.register(
            "rejected",
            "Requests refused, by error code",
            rejected.clone(),
        );
        registry.register(
            "slow_subscribers",
            "Subscribers that fell behind live delivery (lagged) or lost it (resync)",
            slow.clone(),
        );
        registry.register(
            "publish_to_flush_seconds",
            "From an event reaching this process to its frame being handed to a subscriber's connection (sampled)",
            publish_to_flush.clone(),
        );
        // Every series exists from the start, at zero: a rate over a series that appears with
        // its first increment misses that increment, and the page names everything it can hold.
        for code in ErrorCode::ALL {
            drop(rejected.get_or_create(&Reason {
                reason: code.as_str().to_owned(),
            }));
        }
        for outcome in SLOW_OUTCOMES {
            drop(slow.get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            }));
        }
        let broker_up = Gauge::default();
        let broker_ping = Gauge::<f64, AtomicU64>::default();
        let database_up = Gauge::default();
        registry.register(
            "broker_up",
            "Whether the broker (Redis) answered a ping when this page was scraped",
            broker_up.clone(),
        );
        registry.register(
            "broker_ping_seconds",
            "The round trip of that ping (the probe's timeout when it got no answer)",
            broker_ping.clone(),
        );
        registry.register(
            "database_up",
            "Whether the control-plane database answered a ping when this page was scraped",
            database_up.clone(),
        );
        Self {
            registry,
            broker_up,
            broker_ping,
            database_up,
            connections,
            publishes,
            deliveries,
            rejected,
            slow,
            publish_to_flush,
        }
    }
}

impl Metrics {
    pub fn rejected(&self, code: ErrorCode) {
        self.rejected
            .get_or_create(&Reason {
                reason: code.as_str().to_owned(),
            })
            .inc();
    }

    pub fn slow(&self, outcome: &'static str) {
        self.slow
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts `n` deliveries of one stream, with a sample of their publish-to-flush latency.
    pub fn delivered(&self, n: u64, latency: Option<Duration>) {
        self.deliveries.inc_by(n);
        if let Some(l) = latency {
            self.publish_to_flush.observe(l.as_secs_f64());
        }
    }

    /// Records what the health probes of a scrape found: the broker's ping (its round trip, or
    /// `None` when it failed) and whether the database answered.
    pub fn health(&self, broker_ping: Option<Duration>, timeout: Duration, database_up: bool) {
        self.broker_up.set(i64::from(broker_ping.is_some()));
        self.broker_ping
            .set(broker_ping.unwrap_or(timeout).as_secs_f64());
        self.database_up.set(i64::from(database_up));
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
