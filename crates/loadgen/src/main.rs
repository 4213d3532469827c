//! `herald-loadgen`: the load generator of `cargo xtask bench`.
//!
//! One thread, one tokio runtime, a minimal HTTP/1.1 reader per subscriber (connections spread
//! over source addresses 127.0.0.2–251), a publisher of several pipelined connections (each
//! owning a fixed share of the channels), and a check of every event's sequence number per
//! subscriber. Each run prints one JSON object: the server's CPU time and
//! memory read from `/proc` for the pids it is given, and the generator's own CPU share, so a
//! saturated generator is never mistaken for a slow server.
//!
//! ```text
//! herald-loadgen setup-herald --server ADDR                      → prints tenant and key
//! herald-loadgen fanout    --target T --server ADDR --pids P [--channels C --subscribers S
//!                          --rate R --seconds D --size B --publishers N --batch E]
//! herald-loadgen idle      --target T --server ADDR --pids P --streams N [--channels C]
//! herald-loadgen reconnect --target T --server ADDR --pids P --streams N --channels C
//!                          [--events E --back K --publishers N]
//! ```

mod http;
mod profile;
mod publisher;
mod resp;
mod stats;
mod subscriber;
mod suite;
mod target;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::stats::{cpu_seconds, rss_kib, sum, Totals};
use crate::subscriber::{Gate, Outcome, Plan, Shared};
use crate::target::Target;

/// Connections opened at once while a scenario sets up.
const CONNECTING: usize = 256;
/// How far (a fraction of the rate, or of the run's length in lag) the publisher may fall
/// behind before a run counts as generator-limited.
pub(crate) const GENERATOR_TOLERANCE: f64 = 0.03;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args
        .next()
        .context("a command: setup-herald, fanout, idle, reconnect")?;
    let flags = Flags::parse(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(async {
        match command.as_str() {
            "setup-herald" => setup_herald(&flags).await,
            "fanout" => fanout(&flags).await,
            "idle" => idle(&flags).await,
            "reconnect" => reconnect(&flags).await,
            "suite" => suite::run(&flags).await,
            other => bail!("unknown command {other:?}"),
        }
    })?;
    if !out.is_null() {
        println!("{out}");
    }
    Ok(())
}

struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self> {
        let mut map = HashMap::new();
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            let name = flag
                .strip_prefix("--")
                .with_context(|| format!("expected a --flag, got {flag:?}"))?;
            let value = args
                .next()
                .with_context(|| format!("--{name} needs a value"))?;
            map.insert(name.to_owned(), value);
        }
        Ok(Self(map))
    }

    fn of(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v.parse().ok().with_context(|| format!("--{name} {v:?}")),
        }
    }

    fn server(&self) -> Result<SocketAddr> {
        self.get("server")
            .context("--server ADDR")?
            .parse()
            .context("--server must be ip:port")
    }

    fn target(&self) -> Result<Target> {
        let kind = target::parse_kind(
            &self.get("target").context("--target herald|nchan")?,
            self.get("tenant"),
            self.get("key"),
        )?;
        Ok(Target {
            server: self.server()?,
            kind,
        })
    }

    fn pids(&self) -> Result<Vec<u32>> {
        self.get("pids")
            .context("--pids P[,P...]: the server's processes")?
            .split(',')
            .map(|p| p.trim().parse().context("--pids"))
            .collect()
    }
}

/// Signs up tenant `bench` and creates a publish+subscribe key, through the admin API.
pub(crate) async fn setup_herald(flags: &Flags) -> Result<Value> {
    let server = flags.server()?;
    let origin = flags
        .get("public-url")
        .unwrap_or_else(|| format!("http://{server}"));
    let body = r#"{"email":"bench@example.com","password":"bench password 1","tenant":{"slug":"bench","name":"Bench"}}"#;
    let req = format!(
        "POST /api/v1/signup HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (head, text) = http::exchange(server, req.as_bytes()).await?;
    if head.status != 201 {
        bail!(
            "signup answered {}: {}",
            head.status,
            String::from_utf8_lossy(&text)
        );
    }
    let cookie = head
        .set_cookie
        .first()
        .and_then(|c| c.split(';').next())
        .context("signup set no cookie")?
        .to_owned();
    let body = r#"{"name":"bench","scopes":["publish","subscribe"]}"#;
    let req = format!(
        "POST /api/v1/tenants/bench/keys HTTP/1.1\r\nHost: {server}\r\nCookie: {cookie}\r\n\
         Origin: {origin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let (head, text) = http::exchange(server, req.as_bytes()).await?;
    if head.status != 201 {
        bail!(
            "key creation answered {}: {}",
            head.status,
            String::from_utf8_lossy(&text)
        );
    }
    let key: Value = serde_json::from_slice(&text)?;
    Ok(json!({"tenant": "bench", "key": key["secret"]}))
}

fn channels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

fn source(i: usize) -> u8 {
    (2 + i % 250) as u8
}

struct Run {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
}

impl Run {
    fn new(target: Target) -> Self {
        let (stop, rx) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                target,
                totals: Totals::new(),
                start: Instant::now(),
                connected: Gate::default(),
                finished: Gate::default(),
                stop: rx,
            }),
            stop,
            tasks: Vec::new(),
        }
    }

    /// Starts the subscribers, a bounded number connecting at a time, and waits until every
    /// one has its response head (and so is registered with the server).
    async fn subscribe(&mut self, plans: Vec<Plan>, timeout: Duration) -> Result<Duration> {
        let began = Instant::now();
        let base = self.shared.connected.count.load(Relaxed);
        let n = plans.len();
        let connecting = Arc::new(Semaphore::new(CONNECTING));
        for mut plan in plans {
            plan.connecting = Some(connecting.clone().acquire_owned().await?);
            self.tasks
                .push(tokio::spawn(subscriber::run(self.shared.clone(), plan)));
        }
        tokio::time::timeout(timeout, self.shared.connected.wait_for(base + n))
            .await
            .context("subscribers did not all connect in time")?;
        Ok(began.elapsed())
    }

    async fn finish(&mut self, timeout: Duration, expected: usize) -> bool {
        tokio::time::timeout(timeout, self.shared.finished.wait_for(expected))
            .await
            .is_ok()
    }

    async fn outcomes(&mut self) -> Vec<Outcome> {
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        for t in self.tasks.drain(..) {
            all.push(t.await.unwrap_or_default());
        }
        let _ = self.stop.send(false);
        all
    }
}

fn summarize(outcomes: &[Outcome]) -> Value {
    let errors: Vec<&String> = outcomes.iter().filter_map(|o| o.error.as_ref()).collect();
    json!({
        "subscribers": outcomes.len(),
        "received": outcomes.iter().map(|o| o.received).sum::<u64>(),
        "lost": outcomes.iter().map(|o| o.lost).sum::<u64>(),
        "lost_announced": outcomes.iter().map(|o| o.lost_announced).sum::<u64>(),
        "duplicated": outcomes.iter().map(|o| o.duplicated).sum::<u64>(),
        "errors": errors.len(),
        "first_error": errors.first(),
    })
}

/// `--channels` × `--subscribers` streams, `--rate` events/s in total for `--seconds`.
async fn fanout(flags: &Flags) -> Result<Value> {
    let target = flags.target()?;
    let pids = flags.pids()?;
    let n_channels: usize = flags.num("channels", 1)?;
    let per_channel_subs: usize = flags.num("subscribers", 2000)?;
    let rate: f64 = flags.num("rate", 200.0)?;
    let seconds: f64 = flags.num("seconds", 10.0)?;
    let size: usize = flags.num("size", 256)?;
    let connections: usize = flags.num("publishers", publisher::DEFAULT_CONNECTIONS)?;
    let batch: usize = flags.num("batch", target.max_batch())?;
    let names = channels(n_channels);
    let per_channel = ((rate * seconds) / n_channels as f64).ceil().max(1.0) as u64;

    let mut run = Run::new(target);
    let plans = (0..n_channels * per_channel_subs)
        .map(|i| Plan {
            channel: names[i % n_channels].clone(),
            source: source(i),
            last_event_id: None,
            first: 0,
            end: per_channel,
            keep_id_of: None,
            connecting: None,
        })
        .collect();
    run.subscribe(plans, Duration::from_secs(60)).await?;
    // Let the server settle after the connect burst before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.shared.totals.latency.reset();

    let me = std::process::id();
    let (cpu0, gen0, wall0) = (sum(&pids, cpu_seconds)?, cpu_seconds(me)?, Instant::now());
    let published = publisher::run(
        run.shared.clone(),
        &names,
        per_channel,
        rate,
        size,
        connections,
        batch,
    )
    .await?;
    let complete = run
        .finish(Duration::from_secs(10), n_channels * per_channel_subs)
        .await;
    let (cpu1, gen1, wall) = (sum(&pids, cpu_seconds)?, cpu_seconds(me)?, wall0.elapsed());
    let rss = sum(&pids, rss_kib)?;
    let outcomes = run.outcomes().await;
    let totals = &run.shared.totals;
    let delivered = totals.delivered.load(Relaxed);
    let expected = per_channel * (n_channels * per_channel_subs) as u64;
    let server_cpu = cpu1 - cpu0;
    Ok(json!({
        "scenario": "fanout",
        "channels": n_channels,
        "subscribers_per_channel": per_channel_subs,
        "rate": rate,
        "seconds": seconds,
        "size": size,
        "published": published.sent,
        "accepted": published.accepted,
        "refused": published.refused,
        "first_refusal": published.first_refusal,
        "publisher_connections": published.connections,
        "publisher_requests": published.requests,
        "events_per_request": published.sent as f64 / published.requests.max(1) as f64,
        "publisher_reconnects": published.reconnects,
        "resent": published.resent,
        "resent_unsure": published.resent_unsure,
        "publisher_rate": published.achieved_rate,
        "publisher_worst_lag_ms": published.worst_lag_ms,
        // The publisher did not offer the rate asked for: a generator figure, not a server one.
        "generator_limited": published.fell_behind(rate, seconds, GENERATOR_TOLERANCE),
        "expected_deliveries": expected,
        "delivered": delivered,
        "complete": complete && delivered == expected,
        // Every expected delivery that did not arrive once: those skipped in a subscriber's
        // sequence (`totals.lost`) and those still missing at its end. (`delivered` counts
        // duplicates, and already lacks the skipped ones.)
        "lost": expected.saturating_sub(delivered.saturating_sub(totals.duplicated.load(Relaxed))),
        // Of `lost`, what the server announced with a `herald.gap`; the rest was lost silently
        // (or never arrived before the run ended).
        "lost_announced": totals.lost_announced.load(Relaxed),
        "duplicated": totals.duplicated.load(Relaxed),
        "foreign_frames": totals.foreign.load(Relaxed),
        "reads": totals.reads.load(Relaxed),
        "frames_per_read": delivered as f64 / totals.reads.load(Relaxed).max(1) as f64,
        "p50_ms": totals.latency.quantile_ms(0.50),
        "p99_ms": totals.latency.quantile_ms(0.99),
        "p999_ms": totals.latency.quantile_ms(0.999),
        "max_ms": totals.latency.quantile_ms(1.0),
        "server_cpu_s": server_cpu,
        "server_us_per_delivery": server_cpu * 1e6 / delivered.max(1) as f64,
        // With few subscribers per channel the publish, paid once per event, dominates.
        "server_us_per_event": server_cpu * 1e6 / published.sent.max(1) as f64,
        "server_core_share": server_cpu / wall.as_secs_f64(),
        "generator_core_share": (gen1 - gen0) / wall.as_secs_f64(),
        "server_rss_kib": rss,
        "streams": summarize(&outcomes),
    }))
}

/// Waits until the server holds at most `at_most` sockets; how long that took.
async fn wait_for_sockets(pids: &[u32], at_most: usize, timeout: Duration) -> Result<Duration> {
    let began = Instant::now();
    loop {
        let now = sum(pids, stats::sockets)?;
        if now <= at_most {
            return Ok(began.elapsed());
        }
        if began.elapsed() > timeout {
            bail!(
                "the server still holds {now} sockets {} s after the streams closed (at most \
                 {at_most} expected)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `--streams` idle streams over `--channels` channels: the server's memory per stream.
async fn idle(flags: &Flags) -> Result<Value> {
    let target = flags.target()?;
    let pids = flags.pids()?;
    let streams: usize = flags.num("streams", 10_000)?;
    let n_channels: usize = flags.num("channels", 1000)?;
    let names = channels(n_channels);
    let before = sum(&pids, rss_kib)?;
    let mut run = Run::new(target);
    let plans = (0..streams)
        .map(|i| Plan {
            channel: names[i % n_channels].clone(),
            source: source(i),
            last_event_id: None,
            first: 0,
            end: u64::MAX,
            keep_id_of: None,
            connecting: None,
        })
        .collect();
    let took = run.subscribe(plans, Duration::from_secs(120)).await?;
    // What holding idle streams costs the server's CPU (heartbeat timers, say): measured
    // after a second for the connect burst to settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu0, wall0) = (sum(&pids, cpu_seconds)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_share = (sum(&pids, cpu_seconds)? - cpu0) / wall0.elapsed().as_secs_f64();
    let after = sum(&pids, rss_kib)?;
    let outcomes = run.outcomes().await;
    let open = outcomes.iter().filter(|o| o.error.is_none()).count();
    Ok(json!({
        "scenario": "idle",
        "streams": streams,
        "open": open,
        "channels": n_channels,
        "connect_seconds": took.as_secs_f64(),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_stream": after as f64 / streams as f64,
        "delta_kib_per_stream": (after as f64 - before as f64) / streams as f64,
        "server_core_share_while_idle": idle_share,
        "streams_detail": summarize(&outcomes),
    }))
}

/// `--streams` subscribers over `--channels` channels receive `--events` events each; all
/// disconnect, then all reconnect at once with the id of the event `--back` before the last:
/// every one must get exactly the events after it.
async fn reconnect(flags: &Flags) -> Result<Value> {
    let target = flags.target()?;
    let pids = flags.pids()?;
    let streams: usize = flags.num("streams", 10_000)?;
    let n_channels: usize = flags.num("channels", 100)?;
    let events: u64 = flags.num("events", 100)?;
    let back: u64 = flags.num("back", 50)?;
    let rate: f64 = flags.num("rate", 5000.0)?;
    let connections: usize = flags.num("publishers", publisher::DEFAULT_CONNECTIONS)?;
    let names = channels(n_channels);
    let resume_after = events - back - 1;

    let sockets_before = sum(&pids, stats::sockets)?;
    let mut run = Run::new(target.clone());
    let plans = (0..streams)
        .map(|i| Plan {
            channel: names[i % n_channels].clone(),
            source: source(i),
            last_event_id: None,
            first: 0,
            end: events,
            keep_id_of: Some(resume_after),
            connecting: None,
        })
        .collect();
    run.subscribe(plans, Duration::from_secs(120)).await?;
    let published = publisher::run(
        run.shared.clone(),
        &names,
        events,
        rate,
        256,
        connections,
        1,
    )
    .await?;
    if published.refused > 0 {
        bail!("the server refused publishes of the first pass: {published:?}");
    }
    if !run.finish(Duration::from_secs(30), streams).await {
        bail!(
            "the first pass did not complete: {} (publisher: {published:?})",
            summarize(&run.outcomes().await)
        );
    }
    let first = run.outcomes().await;
    let ids: Vec<Option<String>> = first.iter().map(|o| o.kept_id.clone()).collect();
    if ids.iter().any(Option::is_none) {
        bail!("some subscribers saw no id for event {resume_after}");
    }

    // The server must have let go of the first pass's connections: with both generations
    // held at once, 20,000 connections would meet its connection cap (nine tenths of its
    // open-files limit) and some resumes would be refused for a cause this scenario does not
    // measure.
    let released = wait_for_sockets(&pids, sockets_before + 16, Duration::from_secs(30)).await?;

    // Everyone at once: no connect throttle beyond the generator's own.
    let mut again = Run::new(target);
    let me = std::process::id();
    let (cpu0, gen0) = (sum(&pids, cpu_seconds)?, cpu_seconds(me)?);
    let began = Instant::now();
    let plans: Vec<Plan> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| Plan {
            channel: names[i % n_channels].clone(),
            source: source(i + 7),
            last_event_id: id,
            first: resume_after + 1,
            end: events,
            keep_id_of: None,
            connecting: None,
        })
        .collect();
    let mut tasks = Vec::with_capacity(plans.len());
    for plan in plans {
        tasks.push(tokio::spawn(subscriber::run(again.shared.clone(), plan)));
    }
    again.tasks = tasks;
    let complete = again.finish(Duration::from_secs(30), streams).await;
    let took = began.elapsed();
    let (cpu1, gen1) = (sum(&pids, cpu_seconds)?, cpu_seconds(me)?);
    let outcomes = again.outcomes().await;
    let exact = outcomes
        .iter()
        .filter(|o| {
            o.error.is_none()
                && o.first_seen == Some(resume_after + 1)
                && o.received == back
                && o.lost == 0
                && o.duplicated == 0
        })
        .count();
    Ok(json!({
        "scenario": "reconnect",
        "streams": streams,
        "channels": n_channels,
        "events_per_channel": events,
        "back": back,
        "complete": complete,
        "exact": exact,
        "seconds_to_all_resumed": took.as_secs_f64(),
        "seconds_to_release_first_pass": released.as_secs_f64(),
        "server_cpu_s": cpu1 - cpu0,
        "generator_core_share": (gen1 - gen0) / took.as_secs_f64(),
        "foreign_frames": again.shared.totals.foreign.load(Relaxed),
        "publisher_connections": published.connections,
        "publisher_reconnects": published.reconnects,
        "resent": published.resent,
        "resent_unsure": published.resent_unsure,
        // The first pass only fills the history: its pace does not change what is measured.
        "publisher_rate": published.achieved_rate,
        "publisher_worst_lag_ms": published.worst_lag_ms,
        "streams_detail": summarize(&outcomes),
    }))
}
