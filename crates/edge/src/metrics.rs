//! Prometheus metrics of the edge, with bounded label sets: rejection reasons are the fixed
//! list of error codes, slow-subscriber outcomes a fixed pair, caches a fixed four, and tenants
//! the top N and `other` (see [`Usage`] for how they are chosen and why every series stays
//! monotonic). Nothing is labelled per channel, whose number has no bound. The health of the
//! broker and the database is probed when the page is scraped, so that an alert on them needs
//! no other exporter; what the broker, the control-plane cache and the usage meters counted is
//! read then too, from their own atomics, so that none of them depends on this module.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::ErrorCode;
use herald_replay::{Broker, BrokerStats};
use herald_store::ControlView;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tokio_util::sync::CancellationToken;

use crate::meter::{self, Slow, Usage};
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

/// What the page reads from elsewhere when it is scraped.
pub struct Sources {
    pub usage: Arc<Usage>,
    pub broker: Arc<dyn Broker>,
    pub view: Arc<ControlView>,
    /// Cancelled when the process began to drain.
    pub shutdown: CancellationToken,
}

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

impl Metrics {
    pub fn new(sources: Sources) -> Self {
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
        for outcome in Slow::ALL {
            drop(slow.get_or_create(&Outcome {
                outcome: outcome.as_str().to_owned(),
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
        registry.register_collector(Box::new(Scraped(sources)));
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

    pub fn slow(&self, outcome: Slow) {
        self.slow
            .get_or_create(&Outcome {
                outcome: outcome.as_str().to_owned(),
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

/// The series read from their sources at each scrape.
struct Scraped(Sources);

impl fmt::Debug for Scraped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scraped").finish_non_exhaustive()
    }
}

/// The label value of every tenant without one of its own.
pub const OTHER: &str = "other";

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// Encodes the per-tenant series of `usage` (as of `now`) under `encoder`.
pub fn encode_tenants(
    usage: &Usage,
    now: Instant,
    encoder: &mut DescriptorEncoder,
) -> Result<(), fmt::Error> {
    let series = usage.series(now);
    let all = || {
        series
            .labelled
            .iter()
            .map(|(t, v)| (t.as_str(), v))
            .chain([(OTHER, &series.other)])
    };
    let mut e = encoder.encode_descriptor(
        "tenant_connections",
        "Open subscriber streams per tenant (the top N tenants by traffic, the rest as other)",
        None,
        MetricType::Gauge,
    )?;
    for (tenant, (_, open)) in all() {
        ConstGauge::new(*open).encode(e.encode_family(&[("tenant", tenant)])?)?;
    }
    for (name, help, which) in [
        (
            "tenant_publishes",
            "Events accepted for publishing per tenant",
            meter::PUBLISHES,
        ),
        (
            "tenant_deliveries",
            "Events written to subscribers per tenant",
            meter::DELIVERIES,
        ),
        (
            "tenant_bytes_out",
            "Bytes written to subscribers per tenant",
            meter::BYTES_OUT,
        ),
    ] {
        let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (tenant, (counts, _)) in all() {
            ConstCounter::new(counts.get(which)).encode(e.encode_family(&[("tenant", tenant)])?)?;
        }
    }
    let mut e = encoder.encode_descriptor(
        "tenant_slow_subscribers",
        "Subscribers that fell behind live delivery (lagged) or lost it (resync), per tenant",
        None,
        MetricType::Counter,
    )?;
    for (tenant, (counts, _)) in all() {
        for outcome in Slow::ALL {
            let which = match outcome {
                Slow::Lagged => meter::LAGGED,
                Slow::Resync => meter::RESYNCS,
            };
            let labels = [("tenant", tenant), ("outcome", outcome.as_str())];
            ConstCounter::new(counts.get(which)).encode(e.encode_family(&labels)?)?;
        }
    }
    // Only the codes a tenant met: 19 codes for each of N + 1 tenants would be mostly zeros.
    // `other` has every code from the start, as `herald_rejected_total` has.
    let mut e = encoder.encode_descriptor(
        "tenant_rejected",
        "Requests on a tenant's routes refused, by tenant and error code",
        None,
        MetricType::Counter,
    )?;
    for (tenant, (counts, _)) in all() {
        for code in ErrorCode::ALL {
            let n = counts.rejected(code);
            if n == 0 && tenant != OTHER {
                continue;
            }
            let labels = [("tenant", tenant), ("reason", code.as_str())];
            ConstCounter::new(n).encode(e.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Sources {
            usage,
            broker,
            view,
            shutdown,
        } = &self.0;
        encode_tenants(usage, Instant::now(), &mut encoder)?;
        let stats = broker.stats();
        let trips = stats.round_trips.snapshot();
        let mut e = encoder.encode_descriptor(
            "broker_round_trip_seconds",
            "Round trips of the broker's appends and history reads (Redis; none in-process)",
            None,
            MetricType::Histogram,
        )?;
        e.encode_histogram::<Vec<(String, String)>>(
            trips.sum_seconds,
            trips.count,
            &trips.buckets,
            None,
        )?;
        for (name, help, value) in [
            (
                "broker_reconnects",
                "Times the broker's pub/sub connection (or a Redis Cluster node's) was lost and made again",
                &stats.reconnects,
            ),
            (
                "broker_resyncs",
                "Channels whose live feed was interrupted and re-read from history by their subscribers",
                &stats.resyncs,
            ),
            (
                "history_reads",
                "History pages read from the broker (replay, catching up, history requests)",
                &stats.reads,
            ),
            (
                "history_read_errors",
                "History reads that failed",
                &stats.read_errors,
            ),
        ] {
            counter(&mut encoder, name, help, BrokerStats::load(value))?;
        }
        for (name, help, hits) in [
            (
                "control_cache_hits",
                "Control-plane reads (tenants, API keys, channels, signing keys) answered from memory",
                true,
            ),
            (
                "control_cache_misses",
                "Control-plane reads that loaded from the database",
                false,
            ),
        ] {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (cache, s) in view.cache_stats() {
                let n = if hits { s.hits() } else { s.misses() };
                ConstCounter::new(n).encode(e.encode_family(&[("cache", cache)])?)?;
            }
        }
        let draining = ConstGauge::new(i64::from(shutdown.is_cancelled()));
        draining.encode(encoder.encode_descriptor(
            "draining",
            "1 once this process began to drain (shutting down), else 0",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use herald_core::TenantSlug;
    use herald_store::TenantId;
    use prometheus_client::registry::Registry;

    use super::*;

    /// The per-tenant part of the page alone: no broker or database needed.
    #[derive(Debug)]
    struct Tenants(Arc<Usage>);

    impl Collector for Tenants {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
            encode_tenants(&self.0, Instant::now(), &mut encoder)
        }
    }

    #[test]
    fn ten_thousand_tenants_show_at_most_n_plus_one_label_values() {
        let usage = Arc::new(Usage::new(20));
        for i in 0..10_000 {
            let slug = TenantSlug::parse(&format!("tenant-{i}")).unwrap();
            let meter = usage.tenant(TenantId(i), &slug);
            meter.published(1 + (i as u64 % 7));
            usage.rejected(slug.as_str(), ErrorCode::RateLimited);
        }
        let mut registry = Registry::with_prefix("herald");
        registry.register_collector(Box::new(Tenants(usage)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let tenants: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.split("tenant=\"").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(tenants.len(), 21, "{tenants:?}");
        assert!(tenants.contains(OTHER));
        let published: u64 = text
            .lines()
            .filter(|l| l.starts_with("herald_tenant_publishes_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        let expected: u64 = (0..10_000u64).map(|i| 1 + i % 7).sum();
        assert_eq!(published, expected);
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        // 21 tenants × (connections, publishes, deliveries, bytes, 2 slow outcomes), every
        // code of `other`, and at most the one code each labelled tenant met.
        assert!(series <= 21 * 6 + ErrorCode::ALL.len() + 20, "{text}");
        assert!(series > 21 * 6 + ErrorCode::ALL.len(), "{text}");
    }
}
