//! Usage metering: what each tenant published and was delivered, counted where it happens and
//! written to SQL on an interval and at shutdown.
//!
//! A stream adds to its tenant's atomics once per write, however many events the write carries,
//! so the counters (and `/metrics`) move as deliveries happen, at the price of a relaxed atomic
//! add beside a socket write that costs a thousand times more. The flusher swaps each tenant's
//! counters to zero and writes the difference: after a graceful shutdown (every stream ended, a
//! last flush) the record is exact; after a crash it misses at most one interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_core::KeyId;
use herald_store::{day_of, Clock, DailyUsage, Store, TenantId};
use time::OffsetDateTime;

use crate::metrics::Metrics;
use std::time::Instant;

/// Deliveries between two samples of a stream's publish-to-flush latency.
const SAMPLE_EVERY: u64 = 64;

/// One tenant's use since the last flush.
#[derive(Default)]
pub struct TenantMeter {
    messages: AtomicU64,
    deliveries: AtomicU64,
    bytes_out: AtomicU64,
    /// The most connections seen since the last flush, across processes where the broker knows.
    peak: AtomicU64,
    /// Streams of the tenant open on this process now.
    current: AtomicI64,
}

impl TenantMeter {
    pub fn published(&self, n: u64) {
        self.messages.fetch_add(n, Ordering::Relaxed);
    }

    pub fn connections_seen(&self, total: u64) {
        self.peak.fetch_max(total, Ordering::Relaxed);
    }

    fn take(&self) -> DailyUsage {
        let current = u64::try_from(self.current.load(Ordering::Relaxed)).unwrap_or(0);
        DailyUsage {
            messages: self.messages.swap(0, Ordering::Relaxed),
            deliveries: self.deliveries.swap(0, Ordering::Relaxed),
            bytes_out: self.bytes_out.swap(0, Ordering::Relaxed),
            peak_connections: self.peak.swap(0, Ordering::Relaxed).max(current),
        }
    }

    fn give_back(&self, u: DailyUsage) {
        self.messages.fetch_add(u.messages, Ordering::Relaxed);
        self.deliveries.fetch_add(u.deliveries, Ordering::Relaxed);
        self.bytes_out.fetch_add(u.bytes_out, Ordering::Relaxed);
        self.peak.fetch_max(u.peak_connections, Ordering::Relaxed);
    }
}

/// A stream's share of its tenant's meter and of the process metrics, while it is open.
pub struct StreamMeter {
    tenant: Arc<TenantMeter>,
    metrics: Arc<Metrics>,
    /// Deliveries since the last latency sample.
    unsampled: u64,
}

impl StreamMeter {
    pub fn new(tenant: Arc<TenantMeter>, metrics: Arc<Metrics>) -> Self {
        tenant.current.fetch_add(1, Ordering::Relaxed);
        metrics.connections.inc();
        Self {
            tenant,
            metrics,
            unsampled: 0,
        }
    }

    /// Counts one write of `bytes` carrying `events` events; `live_since` is when the oldest
    /// live event in it reached this process, for a sample of publish-to-flush latency.
    pub fn wrote(&mut self, bytes: usize, events: u64, live_since: Option<Instant>) {
        self.tenant
            .bytes_out
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if events == 0 {
            return;
        }
        self.tenant.deliveries.fetch_add(events, Ordering::Relaxed);
        self.unsampled += events;
        let sample = if self.unsampled >= SAMPLE_EVERY {
            self.unsampled = 0;
            live_since.map(|at| at.elapsed())
        } else {
            None
        };
        self.metrics.delivered(events, sample);
    }
}

impl Drop for StreamMeter {
    fn drop(&mut self) {
        self.tenant.current.fetch_sub(1, Ordering::Relaxed);
        self.metrics.connections.dec();
    }
}

/// Every tenant's meter, and the API keys used since the last flush.
#[derive(Default)]
pub struct Usage {
    tenants: Mutex<HashMap<TenantId, Arc<TenantMeter>>>,
    keys: Mutex<HashMap<KeyId, OffsetDateTime>>,
}

impl Usage {
    pub fn tenant(&self, id: TenantId) -> Arc<TenantMeter> {
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    /// Notes that a key was used; `last_used_at` is written with the next flush.
    pub fn key_used(&self, key: &KeyId, at: OffsetDateTime) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), at);
    }

    /// Writes what was counted since the last flush; what cannot be written is kept for the
    /// next one.
    pub async fn flush(&self, store: &Store, clock: &dyn Clock) {
        let day = day_of(clock.now());
        let meters: Vec<(TenantId, Arc<TenantMeter>)> = self
            .tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, m)| (*id, m.clone()))
            .collect();
        for (id, meter) in meters {
            let delta = meter.take();
            if delta == DailyUsage::default() {
                continue;
            }
            if let Err(e) = store.record_usage(id, day, delta).await {
                if matches!(e, herald_store::StoreError::NotFound) {
                    continue; // the tenant was deleted
                }
                tracing::warn!(error = %e, "cannot record usage; keeping it for the next flush");
                meter.give_back(delta);
            }
        }
        let used: Vec<(KeyId, OffsetDateTime)> = self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        if !used.is_empty() {
            if let Err(e) = store.touch_api_keys(&used).await {
                tracing::warn!(error = %e, "cannot record API key use");
            }
        }
    }
}

/// Flushes usage every `every` until `shutdown`, then once more when `done` fires (after the
/// server has drained, so that the last streams' counts are in).
pub fn spawn_flusher(
    usage: Arc<Usage>,
    store: Store,
    clock: Arc<dyn Clock>,
    every: Duration,
    done: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => usage.flush(&store, clock.as_ref()).await,
                () = done.cancelled() => break,
            }
        }
        usage.flush(&store, clock.as_ref()).await;
    })
}
