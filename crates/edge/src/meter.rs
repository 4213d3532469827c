//! Usage metering: what each tenant published and was delivered, counted where it happens and
//! written to SQL on an interval and at shutdown.
//!
//! A stream adds to its tenant's atomics once per write, however many events the write carries,
//! so the counters (and `/metrics`) move as deliveries happen, at the price of a relaxed atomic
//! add beside a socket write that costs a thousand times more. The counters only grow; the
//! flusher writes what they gained since its last write: after a graceful shutdown (every
//! stream ended, a last flush) the record is exact; after a crash it misses at most one
//! interval. The same counters are `/metrics`' per-tenant series (see [`Usage`] for their
//! labels), read when it is scraped: per-tenant metrics cost the delivery path nothing more.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_core::{ErrorCode, KeyId, TenantSlug};
use herald_store::{day_of, Clock, DailyUsage, Store, TenantId};
use time::OffsetDateTime;

use crate::metrics::Metrics;
use std::time::Instant;

/// Deliveries between two samples of a stream's publish-to-flush latency.
const SAMPLE_EVERY: u64 = 64;

/// How often the per-tenant labels are re-ranked: a tenant in `other` whose traffic in the
/// last window was more than twice that of the quietest labelled tenant takes its label.
pub const RANK_EVERY: Duration = Duration::from_secs(60);

/// The counters of a [`TenantMeter`], by index into [`Counts`].
pub const PUBLISHES: usize = 0;
pub const DELIVERIES: usize = 1;
pub const BYTES_OUT: usize = 2;
pub const LAGGED: usize = 3;
pub const RESYNCS: usize = 4;
const REJECTED: usize = 5;
/// How many counters a tenant has: the five above and one per error code.
pub const COUNTERS: usize = REJECTED + ErrorCode::ALL.len();

/// A reading of one tenant's counters, or a sum of several tenants' readings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts(pub [u64; COUNTERS]);

impl Default for Counts {
    fn default() -> Self {
        Counts([0; COUNTERS])
    }
}

impl Counts {
    pub fn get(&self, counter: usize) -> u64 {
        self.0[counter]
    }

    pub fn rejected(&self, code: ErrorCode) -> u64 {
        self.0[REJECTED + code_index(code)]
    }

    fn add(&mut self, other: Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// `self - other`, for readings taken after `other`: counters only grow, so nothing is
    /// negative (saturating all the same, should a caller mix them up).
    fn since(mut self, other: Counts) -> Counts {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.saturating_sub(b);
        }
        self
    }
}

fn code_index(code: ErrorCode) -> usize {
    ErrorCode::ALL
        .iter()
        .position(|c| *c == code)
        .expect("ErrorCode::ALL lists every code")
}

/// One tenant's use of this process. Every counter grows for the process's lifetime, so that
/// `/metrics` can show it; the flusher remembers what it already wrote to SQL and writes the
/// difference.
pub struct TenantMeter {
    counters: [AtomicU64; COUNTERS],
    /// The messages, deliveries and bytes out the flusher has written (only it touches these).
    flushed: [AtomicU64; 3],
    /// The most connections seen since the last flush, across processes where the broker knows.
    peak: AtomicU64,
    /// Streams of the tenant open on this process now.
    current: AtomicI64,
}

impl Default for TenantMeter {
    fn default() -> Self {
        Self {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            flushed: Default::default(),
            peak: AtomicU64::new(0),
            current: AtomicI64::new(0),
        }
    }
}

impl TenantMeter {
    pub fn published(&self, n: u64) {
        self.counters[PUBLISHES].fetch_add(n, Ordering::Relaxed);
    }

    pub fn connections_seen(&self, total: u64) {
        self.peak.fetch_max(total, Ordering::Relaxed);
    }

    fn count(&self, counter: usize, n: u64) {
        self.counters[counter].fetch_add(n, Ordering::Relaxed);
    }

    /// Every counter now.
    pub fn counts(&self) -> Counts {
        Counts(std::array::from_fn(|i| {
            self.counters[i].load(Ordering::Relaxed)
        }))
    }

    /// Streams of the tenant open on this process.
    pub fn open_streams(&self) -> i64 {
        self.current.load(Ordering::Relaxed)
    }

    /// What the top-N ranking weighs: events in and out.
    fn traffic(&self) -> u64 {
        self.counters[PUBLISHES].load(Ordering::Relaxed)
            + self.counters[DELIVERIES].load(Ordering::Relaxed)
    }

    fn take(&self) -> DailyUsage {
        let current = u64::try_from(self.current.load(Ordering::Relaxed)).unwrap_or(0);
        let delta = |i: usize, counter: usize| {
            let now = self.counters[counter].load(Ordering::Relaxed);
            now - self.flushed[i].swap(now, Ordering::Relaxed)
        };
        DailyUsage {
            messages: delta(0, PUBLISHES),
            deliveries: delta(1, DELIVERIES),
            bytes_out: delta(2, BYTES_OUT),
            peak_connections: self.peak.swap(0, Ordering::Relaxed).max(current),
        }
    }

    fn give_back(&self, u: DailyUsage) {
        self.flushed[0].fetch_sub(u.messages, Ordering::Relaxed);
        self.flushed[1].fetch_sub(u.deliveries, Ordering::Relaxed);
        self.flushed[2].fetch_sub(u.bytes_out, Ordering::Relaxed);
        self.peak.fetch_max(u.peak_connections, Ordering::Relaxed);
    }
}

/// What happened to a slow subscriber's live feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slow {
    /// It fell behind and catches up from history.
    Lagged,
    /// The live feed was lost (the broker reconnected) and is re-read from history.
    Resync,
}

impl Slow {
    pub const ALL: [Slow; 2] = [Slow::Lagged, Slow::Resync];

    pub fn as_str(self) -> &'static str {
        match self {
            Slow::Lagged => "lagged",
            Slow::Resync => "resync",
        }
    }

    fn counter(self) -> usize {
        match self {
            Slow::Lagged => LAGGED,
            Slow::Resync => RESYNCS,
        }
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
        self.tenant.count(BYTES_OUT, bytes as u64);
        if events == 0 {
            return;
        }
        self.tenant.count(DELIVERIES, events);
        self.unsampled += events;
        let sample = if self.unsampled >= SAMPLE_EVERY {
            self.unsampled = 0;
            live_since.map(|at| at.elapsed())
        } else {
            None
        };
        self.metrics.delivered(events, sample);
    }

    /// Counts a lagged or resynced live feed, for the process and the tenant.
    pub fn slow(&self, what: Slow) {
        self.tenant.count(what.counter(), 1);
        self.metrics.slow(what);
    }
}

impl Drop for StreamMeter {
    fn drop(&mut self) {
        self.tenant.current.fetch_sub(1, Ordering::Relaxed);
        self.metrics.connections.dec();
    }
}

/// Every tenant's meter, the labels `/metrics` gives them, and the API keys used since the
/// last flush.
///
/// **Labels.** At most [`Usage::top`] tenants have a `tenant` label value of their own; every
/// other tenant is summed into `other`, so that the number of series is bounded whatever the
/// number of tenants. A tenant gets a label when it is first metered while one is free, and
/// keeps it until it is displaced: every [`RANK_EVERY`], the busiest unlabelled tenants of the
/// window (events published and delivered) take the labels of the quietest labelled ones, as
/// long as each had more than twice the traffic of the one it displaces (so that two tenants
/// of about equal traffic do not trade places every window).
///
/// Every series stays monotonic, so that `rate()` is right across a change: a labelled series
/// counts from when its tenant got the label (what it did before stays in `other`), and a
/// displaced tenant's series ends at the value the last scrape showed (it goes stale) while
/// `other` counts everything after that. `other` therefore never decreases, and nothing is
/// counted twice or lost: the series shown now, plus the last values of those that ended, add
/// up to the process's totals, so `sum(rate(...))` over `tenant` is the process's rate. A
/// tenant labelled a second time starts its series again from zero, which `rate()` reads as the
/// reset it is.
pub struct Usage {
    tenants: Mutex<Tenants>,
    keys: Mutex<HashMap<KeyId, OffsetDateTime>>,
    /// Rejections on a tenant's routes naming no tenant this process meters: `other`'s.
    unmetered: [AtomicU64; ErrorCode::ALL.len()],
}

struct Tenants {
    top: usize,
    labelled: usize,
    ranked_at: Option<Instant>,
    by_id: HashMap<TenantId, Metered>,
    by_slug: HashMap<String, TenantId>,
}

struct Metered {
    meter: Arc<TenantMeter>,
    slug: TenantSlug,
    /// While the tenant holds a label: its counts when it got it.
    label: Option<Counts>,
    /// What its earlier labels showed, which `other` therefore does not.
    shown: Counts,
    /// Its counts as the last scrape read them (while labelled): a displaced label's series
    /// ends at the value last shown, and `other` counts everything after it.
    seen: Counts,
    /// Its traffic when the current ranking window began.
    window_start: u64,
}

/// What `/metrics` shows per tenant: the labelled tenants' series and `other`'s, each with
/// its counters and its open streams.
#[derive(Debug, Default, PartialEq)]
pub struct TenantSeries {
    pub labelled: BTreeMap<String, (Counts, i64)>,
    pub other: (Counts, i64),
}

impl Default for Usage {
    fn default() -> Self {
        Self::new(DEFAULT_TOP_TENANTS)
    }
}

/// How many tenants get a label of their own unless configured (`--metrics-top-tenants`).
pub const DEFAULT_TOP_TENANTS: usize = 20;

impl Usage {
    /// Usage metering with at most `top` tenants labelled in `/metrics`.
    pub fn new(top: usize) -> Self {
        Self {
            tenants: Mutex::new(Tenants {
                top,
                labelled: 0,
                ranked_at: None,
                by_id: HashMap::new(),
                by_slug: HashMap::new(),
            }),
            keys: Mutex::default(),
            unmetered: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tenants> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tenant's meter, created (and labelled, while a label is free) on first use.
    pub fn tenant(&self, id: TenantId, slug: &TenantSlug) -> Arc<TenantMeter> {
        let mut tenants = self.lock();
        let Tenants {
            top,
            labelled,
            by_id,
            by_slug,
            ..
        } = &mut *tenants;
        by_id
            .entry(id)
            .or_insert_with(|| {
                by_slug.insert(slug.as_str().to_owned(), id);
                // A new meter has counted nothing: its label starts from zero.
                let label = (*labelled < *top).then(Counts::default);
                *labelled += usize::from(label.is_some());
                Metered {
                    meter: Arc::default(),
                    slug: slug.clone(),
                    label,
                    shown: Counts::default(),
                    seen: Counts::default(),
                    window_start: 0,
                }
            })
            .meter
            .clone()
    }

    /// Counts a rejection on a route of the tenant called `slug` (as the request named it):
    /// on its meter when this process meters it, else on `other`, so that made-up slugs cost
    /// nothing.
    pub fn rejected(&self, slug: &str, code: ErrorCode) {
        let tenants = self.lock();
        match tenants
            .by_slug
            .get(slug)
            .and_then(|id| tenants.by_id.get(id))
        {
            Some(m) => m.meter.count(REJECTED + code_index(code), 1),
            None => {
                self.unmetered[code_index(code)].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The per-tenant series as of `now`, re-ranking the labels first when [`RANK_EVERY`]
    /// has passed since the last ranking.
    pub fn series(&self, now: Instant) -> TenantSeries {
        let mut tenants = self.lock();
        tenants.rank(now);
        let mut series = TenantSeries::default();
        for m in tenants.by_id.values_mut() {
            let counts = m.meter.counts();
            let open = m.meter.open_streams();
            match m.label {
                Some(base) => {
                    m.seen = counts;
                    let entry = series
                        .labelled
                        .entry(m.slug.as_str().to_owned())
                        .or_default();
                    entry.0.add(counts.since(base));
                    entry.1 += open;
                    series.other.0.add(base.since(m.shown));
                }
                None => {
                    series.other.0.add(counts.since(m.shown));
                    series.other.1 += open;
                }
            }
        }
        for (i, n) in self.unmetered.iter().enumerate() {
            series.other.0 .0[REJECTED + i] += n.load(Ordering::Relaxed);
        }
        series
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
            .lock()
            .by_id
            .iter()
            .map(|(id, m)| (*id, m.meter.clone()))
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

impl Tenants {
    /// Hands the labels of the quietest labelled tenants of the window that ends at `now` to
    /// the busiest unlabelled ones with more than twice their traffic; at most once per
    /// [`RANK_EVERY`].
    fn rank(&mut self, now: Instant) {
        if self
            .ranked_at
            .is_some_and(|at| now.saturating_duration_since(at) < RANK_EVERY)
        {
            return;
        }
        self.ranked_at = Some(now);
        let (mut holders, mut rivals) = (Vec::new(), Vec::new());
        for (id, m) in &mut self.by_id {
            let traffic = m.meter.traffic();
            let window = traffic - m.window_start;
            m.window_start = traffic;
            if m.label.is_some() {
                holders.push((window, *id));
            } else if window > 0 {
                rivals.push((window, *id));
            }
        }
        holders.sort_unstable();
        rivals.sort_unstable_by(|a, b| b.cmp(a));
        for ((held, holder), (rival_traffic, rival)) in holders.into_iter().zip(rivals) {
            if rival_traffic <= held.saturating_mul(2) {
                break;
            }
            if let Some(m) = self.by_id.get_mut(&holder) {
                if let Some(base) = m.label.take() {
                    m.shown.add(m.seen.since(base));
                }
            }
            if let Some(m) = self.by_id.get_mut(&rival) {
                let counts = m.meter.counts();
                m.label = Some(counts);
                m.seen = counts;
            }
        }
    }
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenants = self.lock();
        f.debug_struct("Usage")
            .field("tenants", &tenants.by_id.len())
            .field("labelled", &tenants.labelled)
            .finish_non_exhaustive()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(i: usize) -> TenantSlug {
        TenantSlug::parse(&format!("tenant-{i}")).unwrap()
    }

    fn meter(usage: &Usage, i: usize) -> Arc<TenantMeter> {
        usage.tenant(TenantId(i as i64), &slug(i))
    }

    /// Every series added up: what the process counted, whatever the labels.
    fn total(series: &TenantSeries) -> Counts {
        let mut sum = series.other.0;
        for (counts, _) in series.labelled.values() {
            sum.add(*counts);
        }
        sum
    }

    #[test]
    fn the_first_tenants_get_the_labels_and_count_from_zero() {
        let usage = Usage::new(2);
        for i in 0..3 {
            meter(&usage, i).published(10 + i as u64);
        }
        usage.rejected("tenant-0", ErrorCode::Unauthorized);
        usage.rejected("tenant-2", ErrorCode::Unauthorized);
        usage.rejected("nobody-here", ErrorCode::InvalidName);
        let series = usage.series(Instant::now());
        let labels: Vec<&str> = series.labelled.keys().map(String::as_str).collect();
        assert_eq!(labels, ["tenant-0", "tenant-1"]);
        assert_eq!(series.labelled["tenant-0"].0.get(PUBLISHES), 10);
        assert_eq!(series.labelled["tenant-1"].0.get(PUBLISHES), 11);
        assert_eq!(series.other.0.get(PUBLISHES), 12);
        let rejected = |c: &Counts| c.rejected(ErrorCode::Unauthorized);
        assert_eq!(rejected(&series.labelled["tenant-0"].0), 1);
        assert_eq!(rejected(&series.other.0), 1);
        assert_eq!(series.other.0.rejected(ErrorCode::InvalidName), 1);
    }

    #[test]
    fn ten_thousand_tenants_make_at_most_n_plus_one_series_that_never_decrease() {
        const N: usize = 20;
        let usage = Usage::new(N);
        let meters: Vec<_> = (0..10_000).map(|i| meter(&usage, i)).collect();
        let mut now = Instant::now();
        let mut last: HashMap<String, Counts> = HashMap::new();
        let mut ended = Counts::default();
        let mut expected = Counts::default();
        // Traffic moves from tenant to tenant, so that the ranking displaces labels each window.
        for round in 0..6u64 {
            for (i, m) in meters.iter().enumerate() {
                let weight = ((i as u64 * 7919 + round * 104_729) % 10_000) / 1000;
                m.published(weight);
                m.count(DELIVERIES, weight * 3);
                expected.0[PUBLISHES] += weight;
                expected.0[DELIVERIES] += weight * 3;
            }
            let series = usage.series(now);
            assert!(series.labelled.len() <= N, "{}", series.labelled.len());
            assert!(!series.labelled.contains_key(crate::metrics::OTHER));
            for (tenant, counts) in &last {
                if tenant != crate::metrics::OTHER && !series.labelled.contains_key(tenant) {
                    ended.add(*counts);
                }
            }
            let mut shown = total(&series);
            shown.add(ended);
            assert_eq!(shown, expected, "the series (and those that ended) add up");
            let other = series.other.0;
            let current = series
                .labelled
                .iter()
                .map(|(t, (c, _))| (t.clone(), *c))
                .chain([(crate::metrics::OTHER.to_owned(), other)]);
            for (tenant, counts) in current {
                if let Some(before) = last.get(&tenant) {
                    // A series that stayed never goes down (one that left and came back would
                    // be a reset, but none comes back within these few windows).
                    for (a, b) in counts.0.iter().zip(before.0) {
                        assert!(*a >= b, "{tenant} went from {b} to {a}");
                    }
                }
                last.insert(tenant, counts);
            }
            last.retain(|t, _| t == crate::metrics::OTHER || series.labelled.contains_key(t));
            now += RANK_EVERY;
        }
    }

    #[test]
    fn a_busier_tenant_displaces_the_quietest_once_a_window_has_passed() {
        let usage = Usage::new(1);
        let (quiet, busy) = (meter(&usage, 1), meter(&usage, 2));
        let start = Instant::now();
        quiet.published(5);
        busy.published(7);
        let series = usage.series(start);
        // Not twice as busy: the label stays.
        assert_eq!(series.labelled.keys().collect::<Vec<_>>(), ["tenant-1"]);
        busy.published(100);
        quiet.published(1);
        // Within the window nothing changes, however busy.
        let series = usage.series(start + RANK_EVERY / 2);
        assert_eq!(series.labelled.keys().collect::<Vec<_>>(), ["tenant-1"]);
        assert_eq!(series.other.0.get(PUBLISHES), 107);
        let series = usage.series(start + RANK_EVERY);
        assert_eq!(series.labelled.keys().collect::<Vec<_>>(), ["tenant-2"]);
        // tenant-2's label counts from its promotion; `other` keeps what it had and now
        // counts tenant-1 from the last value its series showed (6, at the second scrape).
        assert_eq!(series.labelled["tenant-2"].0.get(PUBLISHES), 0);
        assert_eq!(series.other.0.get(PUBLISHES), 107);
        busy.published(3);
        quiet.published(2);
        let series = usage.series(start + RANK_EVERY);
        assert_eq!(series.labelled["tenant-2"].0.get(PUBLISHES), 3);
        assert_eq!(series.other.0.get(PUBLISHES), 109);
        // With the 6 tenant-1's ended series last showed, nothing is missing.
        assert_eq!(total(&series).get(PUBLISHES) + 6, 5 + 7 + 100 + 1 + 3 + 2);
    }

    #[test]
    fn a_flush_takes_what_was_counted_since_the_last_and_keeps_a_failed_one() {
        let usage = Usage::new(1);
        let m = meter(&usage, 1);
        m.published(4);
        m.count(BYTES_OUT, 100);
        let first = m.take();
        assert_eq!((first.messages, first.bytes_out), (4, 100));
        m.published(1);
        let second = m.take();
        assert_eq!((second.messages, second.bytes_out), (1, 0));
        m.give_back(second);
        m.published(2);
        assert_eq!(m.take().messages, 3);
        // `/metrics` sees the lifetime counts throughout.
        assert_eq!(m.counts().get(PUBLISHES), 7);
    }
}
