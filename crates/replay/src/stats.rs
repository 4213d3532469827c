//! What a broker counts about its own health, for the edge to read when `/metrics` is scraped:
//! relaxed atomics only, so that counting costs the broker's paths an add each and no lock, and
//! the replay crate needs no metrics library.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of the round-trip histogram's buckets (the last bucket, `+Inf`,
/// is implied): from a loopback Redis's tenth of a millisecond to a stalled one's seconds.
pub const ROUND_TRIP_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// A broker's counters. Every one only ever grows.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Times the pub/sub connection (one Redis) or one of its node connections (Redis
    /// Cluster) was lost and subscribed again.
    pub reconnects: AtomicU64,
    /// Channels whose live feed was interrupted, so that their subscribers re-read it from
    /// history (after a reconnect, every channel followed then).
    pub resyncs: AtomicU64,
    /// History reads asked of the broker (replay, catching up, `GET …/events/history`).
    pub reads: AtomicU64,
    /// Those that failed.
    pub read_errors: AtomicU64,
    /// The round trips of the broker's commands that carry traffic: appends and reads.
    pub round_trips: RoundTrips,
}

impl BrokerStats {
    /// Counts a history read and whether it failed.
    pub fn read<T, E>(&self, result: &Result<T, E>) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.read_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A fixed-bucket histogram of atomics: one add for the bucket, one for the sum.
#[derive(Debug, Default)]
pub struct RoundTrips {
    /// Observations per bucket of [`ROUND_TRIP_BUCKETS`], and past the last one.
    buckets: [AtomicU64; ROUND_TRIP_BUCKETS.len() + 1],
    /// Every observation added up, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// A reading of [`RoundTrips`].
#[derive(Debug, Clone, PartialEq)]
pub struct RoundTripSnapshot {
    pub sum_seconds: f64,
    pub count: u64,
    /// `(upper bound, observations in the bucket)` per bucket of [`ROUND_TRIP_BUCKETS`], then
    /// `(f64::INFINITY, the rest)`: per bucket, not cumulative (an exposition adds them up).
    pub buckets: Vec<(f64, u64)>,
}

impl RoundTrips {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let at = ROUND_TRIP_BUCKETS
            .iter()
            .position(|&upper| seconds <= upper)
            .unwrap_or(ROUND_TRIP_BUCKETS.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The histogram now. Its parts are read one by one, so a scrape racing an observation may
    /// see its bucket and not yet its sum: off for one scrape, never going backwards.
    pub fn snapshot(&self) -> RoundTripSnapshot {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let bounds = ROUND_TRIP_BUCKETS.iter().copied().chain([f64::INFINITY]);
        for (upper, n) in bounds.zip(&self.buckets) {
            let n = n.load(Ordering::Relaxed);
            count += n;
            buckets.push((upper, n));
        }
        RoundTripSnapshot {
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets_with_their_sum() {
        let trips = RoundTrips::default();
        trips.observe(Duration::from_micros(50));
        trips.observe(Duration::from_micros(100)); // on a bound: in that bucket
        trips.observe(Duration::from_millis(3));
        trips.observe(Duration::from_secs(10));
        let s = trips.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), ROUND_TRIP_BUCKETS.len() + 1);
        assert_eq!(s.buckets[0], (0.0001, 2));
        assert_eq!(s.buckets[1], (0.00025, 0));
        assert_eq!(s.buckets[5], (0.005, 1));
        assert_eq!(s.buckets[11], (2.5, 0));
        assert_eq!(s.buckets[12], (f64::INFINITY, 1));
        let total: u64 = s.buckets.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 4);
        assert!((s.sum_seconds - 10.00315).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn every_read_counts_and_a_failed_one_also_as_an_error() {
        let stats = BrokerStats::default();
        stats.read::<(), ()>(&Ok(()));
        stats.read::<(), ()>(&Err(()));
        assert_eq!(BrokerStats::load(&stats.reads), 2);
        assert_eq!(BrokerStats::load(&stats.read_errors), 1);
    }
}
