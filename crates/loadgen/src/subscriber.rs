//! One SSE subscriber: a raw HTTP/1.1 connection, a reused buffer, and a check of every event's
//! sequence number against the one expected next, so that a lost, repeated or reordered event
//! is counted, never averaged away.
//!
//! The response head must come within [`HEAD_TIMEOUT`]. The stream's reads after it wait for
//! as long as the scenario does: each scenario has a deadline by which every subscriber must
//! have seen its last event, stops the ones that have not, and reports what they missed.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::http::{self, Dechunker};
use crate::stats::{since_start, Totals};
use crate::target::{parse_payload, Target};

/// How long a subscribe request may wait for its response head (10,000 connecting at once
/// included).
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// What a subscriber is told to do.
pub struct Plan {
    pub channel: String,
    pub source: u8,
    pub last_event_id: Option<String>,
    /// The sequence number of the first event it must see.
    pub first: u64,
    /// It is done once it has seen the event before this one.
    pub end: u64,
    /// Remember the `id:` of this event (for a later resume).
    pub keep_id_of: Option<u64>,
    /// A slot of the connect throttle, given back once the response head is in.
    pub connecting: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// How it went.
#[derive(Debug, Default)]
pub struct Outcome {
    pub received: u64,
    pub lost: u64,
    /// Of `lost`, the events whose loss a `herald.gap` announced just before the next one.
    pub lost_announced: u64,
    pub duplicated: u64,
    pub first_seen: Option<u64>,
    pub kept_id: Option<String>,
    pub error: Option<String>,
}

/// Counts subscribers that reached a state (connected, finished) and wakes whoever waits.
#[derive(Default)]
pub struct Gate {
    pub count: AtomicUsize,
    pub notify: Notify,
}

impl Gate {
    pub fn pass(&self) {
        self.count.fetch_add(1, Relaxed);
        self.notify.notify_waiters();
    }

    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.notify.notified();
            if self.count.load(Relaxed) >= n {
                return;
            }
            notified.await;
        }
    }
}

pub struct Shared {
    pub target: Target,
    pub totals: Totals,
    pub start: Instant,
    pub connected: Gate,
    pub finished: Gate,
    /// Cancelled when the scenario ends or wants every connection dropped.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

pub async fn run(shared: Arc<Shared>, mut plan: Plan) -> Outcome {
    let mut outcome = Outcome::default();
    let mut stop = shared.stop.clone();
    let result = tokio::select! {
        r = stream(&shared, &mut plan, &mut outcome) => r,
        _ = stop.wait_for(|s| *s) => Ok(()),
    };
    if let Err(e) = result {
        outcome.error = Some(format!("{e:#}"));
        // Never leave the scenario waiting for a subscriber that died.
        shared.connected.pass();
        shared.finished.pass();
    }
    outcome
}

async fn stream(shared: &Shared, plan: &mut Plan, outcome: &mut Outcome) -> Result<()> {
    let mut conn = http::connect(shared.target.server, plan.source).await?;
    conn.write_all(
        &shared
            .target
            .subscribe_request(&plan.channel, plan.last_event_id.as_deref()),
    )
    .await?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut filled = 0;
    let head = http::read_head(&mut conn, &mut buf, &mut filled, HEAD_TIMEOUT).await?;
    if head.status != 200 {
        let body = String::from_utf8_lossy(&buf[..filled.min(300)]).into_owned();
        bail!("subscribe answered {}: {body}", head.status);
    }
    plan.connecting = None;
    shared.connected.pass();
    let mut dechunk = head.chunked.then(Dechunker::default);
    let mut next = plan.first;
    // Whether a `herald.gap` came since the last event of ours.
    let mut gap_seen = false;
    let mut done = plan.first >= plan.end;
    if done {
        shared.finished.pass();
    }
    // buf[..frames] is decoded payload not yet split into frames; buf[frames..frames+raw] is
    // received bytes not yet decoded (an incomplete chunk-size line).
    let (mut frames, mut raw) = match &mut dechunk {
        Some(d) => {
            let (end, left) = d.decode(&mut buf, 0, filled)?;
            (end, left)
        }
        None => (filled, 0),
    };
    loop {
        // Split what is decoded into frames and check each.
        let now = since_start(shared.start);
        let mut at = 0;
        while let Some(len) = memchr::memmem::find(&buf[at..frames], b"\n\n") {
            let frame = &buf[at..at + len];
            at += len + 2;
            let Some(data_at) = data_line(frame) else {
                continue; // retry:, comments
            };
            let Some((seq, sent)) = parse_payload(&frame[data_at..]) else {
                shared.totals.foreign.fetch_add(1, Relaxed);
                gap_seen |= is_gap(frame);
                continue;
            };
            shared.totals.latency.record(now.saturating_sub(sent), 1);
            shared.totals.delivered.fetch_add(1, Relaxed);
            outcome.received += 1;
            outcome.first_seen.get_or_insert(seq);
            if seq < next {
                outcome.duplicated += 1;
                shared.totals.duplicated.fetch_add(1, Relaxed);
                continue;
            }
            if seq > next {
                outcome.lost += seq - next;
                shared.totals.lost.fetch_add(seq - next, Relaxed);
                // A loss the server said, as the API promises (a gap before the events after
                // it), is not a silent one.
                if gap_seen {
                    outcome.lost_announced += seq - next;
                    shared.totals.lost_announced.fetch_add(seq - next, Relaxed);
                }
            }
            gap_seen = false;
            next = seq + 1;
            if plan.keep_id_of == Some(seq) {
                outcome.kept_id = id_line(frame).map(|id| String::from_utf8_lossy(id).into_owned());
            }
            if !done && next >= plan.end {
                done = true;
                shared.finished.pass();
            }
        }
        // Keep the partial frame and the undecoded bytes at the front.
        buf.copy_within(at..frames + raw, 0);
        frames -= at;
        if frames + raw == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = conn.read(&mut buf[frames + raw..]).await?;
        if n == 0 {
            if dechunk.as_ref().is_some_and(|d| d.done) || done {
                return Ok(());
            }
            bail!(
                "stream closed by the server after {} events",
                outcome.received
            );
        }
        shared.totals.reads.fetch_add(1, Relaxed);
        match &mut dechunk {
            Some(d) => {
                let (end, left) = d.decode(&mut buf, frames, frames + raw + n)?;
                frames = end;
                raw = left;
            }
            None => frames += n,
        }
    }
}

/// Whether the frame is Herald's announcement of a gap.
fn is_gap(frame: &[u8]) -> bool {
    frame.starts_with(b"event: herald.gap\n")
        || memchr::memmem::find(frame, b"\nevent: herald.gap\n").is_some()
}

/// Where the data of the frame's `data:` line begins.
fn data_line(frame: &[u8]) -> Option<usize> {
    if frame.starts_with(b"data: ") {
        return Some(6);
    }
    memchr::memmem::find(frame, b"\ndata: ").map(|i| i + 7)
}

fn id_line(frame: &[u8]) -> Option<&[u8]> {
    let start = if frame.starts_with(b"id: ") {
        4
    } else {
        memchr::memmem::find(frame, b"\nid: ")? + 5
    };
    let end = memchr::memchr(b'\n', &frame[start..]).map_or(frame.len(), |e| start + e);
    Some(&frame[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_told_by_its_event_line() {
        assert!(is_gap(
            b"event: herald.gap\ndata: {\"reason\":\"truncated\"}"
        ));
        assert!(is_gap(b"id: 1-2-3\nevent: herald.gap\ndata: {}"));
        assert!(!is_gap(b"event: message\ndata: herald.gap"));
        assert!(!is_gap(b"event: herald.gaps\ndata: {}"));
    }
}
