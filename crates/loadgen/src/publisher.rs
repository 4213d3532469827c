//! One pipelined HTTP/1.1 connection that publishes on a schedule. Requests go out in order on
//! one connection, so every channel's events reach the server in sequence order however fast
//! the rate; responses are read by a second task and counted. Events whose time has come are
//! written together, so the publisher never needs a timer tick per event.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::http::{self, Dechunker};
use crate::stats::since_start;
use crate::subscriber::Shared;
use crate::target::payload;

/// Requests written but not yet answered, at most.
const IN_FLIGHT: usize = 4096;

#[derive(Debug, Default)]
pub struct Published {
    pub sent: u64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    /// The furthest the publisher fell behind its schedule, in ms (it cannot keep up when high).
    pub worst_lag_ms: f64,
}

/// Publishes `per_channel` events to each of `channels`, round robin, `rate` events per second
/// in total.
pub async fn run(
    shared: Arc<Shared>,
    channels: &[String],
    per_channel: u64,
    rate: f64,
    size: usize,
) -> Result<Published> {
    let conn = http::connect(shared.target.server, 1).await?;
    let (mut rd, mut wr) = conn.into_split();
    let window = Arc::new(Semaphore::new(IN_FLIGHT));
    let total = per_channel * channels.len() as u64;
    let mut published = Published::default();
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let reader = {
        let window = window.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut filled = 0;
            for _ in 0..total {
                let head = http::read_head(&mut rd, &mut buf, &mut filled).await?;
                skip_body(&mut rd, &mut buf, &mut filled, &head).await?;
                if (200..300).contains(&head.status) {
                    counts.0.fetch_add(1, Relaxed);
                } else {
                    counts.1.fetch_add(1, Relaxed);
                }
                window.add_permits(1);
            }
            anyhow::Ok(())
        })
    };
    let begin = Instant::now();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut i = 0u64;
    while i < total {
        let due = begin + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due).await;
        } else {
            let lag = (now - due).as_secs_f64() * 1000.0;
            published.worst_lag_ms = published.worst_lag_ms.max(lag);
        }
        // Everything due by now, in one write.
        let now = Instant::now();
        out.clear();
        let stamp = since_start(shared.start);
        while i < total && begin + Duration::from_secs_f64(i as f64 / rate) <= now {
            let permit = window.acquire().await?;
            permit.forget();
            let channel = &channels[(i % channels.len() as u64) as usize];
            let seq = i / channels.len() as u64;
            shared
                .target
                .publish_request(&mut out, channel, &payload(seq, stamp, size));
            i += 1;
        }
        wr.write_all(&out).await?;
    }
    published.sent = total;
    reader.await??;
    published.accepted = AtomicU64::new(counts.0.load(Relaxed));
    published.refused = AtomicU64::new(counts.1.load(Relaxed));
    Ok(published)
}

async fn skip_body(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut [u8],
    filled: &mut usize,
    head: &http::Head,
) -> Result<()> {
    use tokio::io::AsyncReadExt;
    if head.chunked {
        let mut d = Dechunker::default();
        loop {
            let (end, left) = d.decode(buf, 0, *filled)?;
            if d.done {
                // The decoder stops right after the last chunk; skip its final CRLF.
                let _ = end;
                let at = d.read_to + consumed_through_trailer(&buf[d.read_to..*filled]);
                buf.copy_within(at..*filled, 0);
                *filled -= at;
                return Ok(());
            }
            buf.copy_within(end..end + left, 0);
            *filled = left;
            let n = rd.read(&mut buf[*filled..]).await?;
            if n == 0 {
                bail!("publish connection closed");
            }
            *filled += n;
        }
    }
    let len = head.content_length.unwrap_or(0);
    while *filled < len {
        let n = rd.read(&mut buf[*filled..]).await?;
        if n == 0 {
            bail!("publish connection closed");
        }
        *filled += n;
    }
    buf.copy_within(len..*filled, 0);
    *filled -= len;
    Ok(())
}

fn consumed_through_trailer(rest: &[u8]) -> usize {
    if rest.starts_with(b"\r\n") {
        2
    } else {
        0
    }
}
