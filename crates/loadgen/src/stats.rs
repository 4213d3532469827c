//! Counters and a latency histogram shared by every task of the generator (one thread, so
//! relaxed atomics cost what plain adds cost), and the `/proc` readings of CPU time and memory.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use anyhow::{Context, Result};

/// Microsecond buckets up to 10 ms, then 100 µs buckets up to 10 s.
const FINE: u64 = 10_000;
const COARSE_STEP: u64 = 100;
const BUCKETS: usize = (FINE + (10_000_000 - FINE) / COARSE_STEP + 1) as usize;

pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn record(&self, micros: u64, count: u64) {
        let i = if micros < FINE {
            micros
        } else {
            (FINE + (micros - FINE) / COARSE_STEP).min(BUCKETS as u64 - 1)
        };
        self.buckets[i as usize].fetch_add(count, Relaxed);
    }

    pub fn reset(&self) {
        self.buckets.iter().for_each(|b| b.store(0, Relaxed));
    }

    /// The value at quantile `q` (0..=1), in milliseconds; `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let i = i as u64;
                let micros = if i < FINE {
                    i
                } else {
                    FINE + (i - FINE) * COARSE_STEP
                };
                return Some(micros as f64 / 1000.0);
            }
        }
        None
    }
}

/// What every subscriber adds to.
pub struct Totals {
    pub latency: Histogram,
    pub delivered: AtomicU64,
    pub lost: AtomicU64,
    /// Of `lost`, what a `herald.gap` announced.
    pub lost_announced: AtomicU64,
    pub duplicated: AtomicU64,
    /// `herald.gap` (or any frame whose data is not one of ours).
    pub foreign: AtomicU64,
    pub reads: AtomicU64,
}

impl Totals {
    pub fn new() -> Self {
        Self {
            latency: Histogram::new(),
            delivered: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            lost_announced: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }
}

/// The process-wide zero of the timestamps the publisher writes into each event.
pub fn since_start(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// CPU seconds (user + system) a process has used, all threads included.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields[11].parse()?;
    let stime: f64 = fields[12].parse()?;
    Ok((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on; reading it needs libc.
    100.0
}

/// Resident memory of a process in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Sockets a process holds open: its connections, listeners and clients of its own.
pub fn sockets(pid: u32) -> Result<usize> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("read /proc/{pid}/fd"))?;
    Ok(dir
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count())
}

/// The sum over several processes (nginx's workers, say).
pub fn sum<F: Fn(u32) -> Result<T>, T: std::iter::Sum>(pids: &[u32], f: F) -> Result<T> {
    pids.iter()
        .map(|&p| f(p))
        .collect::<Result<Vec<T>>>()
        .map(|v| v.into_iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_spread() {
        let h = Histogram::new();
        for v in 1..=1000 {
            h.record(v, 1);
        }
        assert_eq!(h.quantile_ms(0.5), Some(0.5));
        assert_eq!(h.quantile_ms(0.99), Some(0.99));
        h.record(50_000, 1000);
        assert_eq!(h.quantile_ms(0.99), Some(50.0));
    }
}
