//! The measurements behind deploy/README.md's sizing plan, on one edge process of a real cluster:
//! memory per idle open stream, and deliveries per second per core.
//!
//!     cargo build -p herald [--release] && cargo run -p herald-cluster --example sizing [--release] -- [STREAMS] [SECONDS] [--redis-cluster]
//!
//! It opens STREAMS (default 4000) raw-TCP SSE connections to the edge (20 channels), reads the
//! edge's resident memory before and after, then publishes to those channels for SECONDS
//! (default 10) and divides what the subscribers received by the CPU time the edge used.
//! `--redis-cluster` puts the edge on a private three-master Redis Cluster instead of one
//! Redis; Redis CPU is then the masters' sum.
//! `HERALD_TEST_BIN` picks the binary (default target/debug/herald, or target/release/herald
//! when built with --release).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use herald_cluster::{Cluster, Spec};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHANNELS: usize = 20;

#[tokio::main]
async fn main() -> Result<()> {
    let on_cluster = std::env::args().any(|a| a == "--redis-cluster");
    let mut args = std::env::args().skip(1).filter(|a| a != "--redis-cluster");
    let streams: usize = args.next().map_or(Ok(4000), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let bin = std::env::var("HERALD_TEST_BIN").map_or_else(
        |_| root.join("target").join(profile).join("herald"),
        Into::into,
    );
    let pg = std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    // A Redis (or Redis Cluster) of our own, so that its CPU time is this run's alone.
    let redis = OwnRedis::start(on_cluster, &root.join("target/sizing-redis")).await?;
    let database = herald_cluster::create_database(&pg, "herald_sizing")?;

    let mut spec = Spec::new(
        bin.clone(),
        &database,
        &redis.url,
        root.join("target/sizing"),
    );
    spec.edges = 1;
    spec.redis_cluster = on_cluster;
    spec.redis_prefix = format!("herald-sizing-{}", std::process::id());
    spec.plans = Some((
        "[plans.roomy]\nmax_connections = 1000000\nmessages_per_day = 1000000000\n\
         max_message_bytes = 65536\npublish_per_second = 1000000\npublish_burst = 1000000\n\
         channels_per_connection = 16\nmax_history_size = 10000\n"
            .into(),
        "roomy".into(),
    ));
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(spec)).await??;
    let edge = &cluster.edges[0];
    let pid = edge.pid().context("the edge runs")?;
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let admin = cluster.admin.url();
    let slug = format!("sizing-{}", std::process::id());
    http.post(format!("{admin}/api/v1/signup"))
        .json(&json!({"email": format!("{slug}@example.com"), "password": "correct horse battery staple",
                      "tenant": {"slug": slug, "name": slug}}))
        .send()
        .await?
        .error_for_status()?;
    let key: Value = http
        .post(format!("{admin}/api/v1/tenants/{slug}/keys"))
        .header("origin", &admin)
        .json(&json!({"name": "sizing", "scopes": ["publish", "subscribe"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = key["secret"].as_str().context("a secret")?.to_owned();

    let received = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    // Warm the process up (allocator arenas, caches) before the baseline.
    let mut tasks = Vec::new();
    for i in 0..100 {
        tasks.push(open(
            edge.port,
            &slug,
            i,
            received.clone(),
            connected.clone(),
        ));
    }
    wait_for(&connected, 100).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = rss_kib(pid)?;
    for i in 100..100 + streams {
        tasks.push(open(
            edge.port,
            &slug,
            i,
            received.clone(),
            connected.clone(),
        ));
    }
    wait_for(&connected, 100 + streams as u64).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = rss_kib(pid)?;
    println!(
        "{} ({profile} build): {streams} idle streams: RSS {rss0} KiB -> {rss1} KiB = {:.1} KiB per stream",
        bin.display(),
        (rss1 - rss0) as f64 / streams as f64
    );

    // Deliveries: publish round-robin to the channels, one publish in flight per channel.
    let cpu0 = cpu_ticks(pid)?;
    let redis_cpu0 = redis.cpu_ticks()?;
    let received0 = received.load(Ordering::Relaxed);
    let started = Instant::now();
    let published = Arc::new(AtomicU64::new(0));
    let publishers: Vec<_> = (0..CHANNELS)
        .map(|c| {
            let (http, url, key, published) = (
                http.clone(),
                format!("{}/v1/{slug}/channels/ch{c}/events", edge.url()),
                key.clone(),
                published.clone(),
            );
            tokio::spawn(async move {
                while started.elapsed() < Duration::from_secs(seconds) {
                    let r = http
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&json!({"data": {"n": 1}}))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 201) {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for p in publishers {
        p.await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid)? - cpu0) as f64 / 100.0; // USER_HZ
    let redis_cpu = (redis.cpu_ticks()? - redis_cpu0) as f64 / 100.0;
    let delivered = received.load(Ordering::Relaxed) - received0;
    let published = published.load(Ordering::Relaxed);
    println!(
        "{published} publishes in {elapsed:.1} s ({:.0}/s) to {CHANNELS} channels of ~{} streams each: \
         {delivered} deliveries, edge CPU {cpu:.2} s = {:.0} deliveries per CPU-second ({:.0} µs of edge CPU per publish, fan-out included)",
        published as f64 / elapsed,
        (100 + streams) / CHANNELS,
        delivered as f64 / cpu,
        cpu * 1e6 / published as f64,
    );
    println!(
        "Redis CPU {redis_cpu:.2} s = {:.0} publishes per Redis CPU-second (one edge subscribed, {})",
        published as f64 / redis_cpu,
        if on_cluster { "Redis Cluster, 3 masters" } else { "one Redis" }
    );
    for t in tasks {
        t.abort();
    }
    drop(cluster);
    drop(redis);
    Ok(())
}

/// The Redis of the run: one `redis-server`, or a three-master Redis Cluster.
struct OwnRedis {
    url: String,
    single: Option<std::process::Child>,
    cluster: Option<herald_cluster::redis_cluster::RedisCluster>,
}

impl OwnRedis {
    async fn start(on_cluster: bool, dir: &std::path::Path) -> Result<OwnRedis> {
        if on_cluster {
            let _ = std::fs::remove_dir_all(dir);
            let cluster = herald_cluster::redis_cluster::RedisCluster::start(dir, 3, false)?;
            return Ok(OwnRedis {
                url: cluster.seeds(),
                single: None,
                cluster: Some(cluster),
            });
        }
        let port = herald_cluster::free_port()?;
        let server = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("redis-server")?;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(OwnRedis {
            url: format!("redis://127.0.0.1:{port}"),
            single: Some(server),
            cluster: None,
        })
    }

    /// CPU ticks of every Redis process of the run.
    fn cpu_ticks(&self) -> Result<u64> {
        let pids: Vec<u32> = match (&self.single, &self.cluster) {
            (Some(s), _) => vec![s.id()],
            (_, Some(c)) => c.masters.iter().filter_map(|m| m.pid()).collect(),
            _ => Vec::new(),
        };
        pids.into_iter().map(cpu_ticks).sum()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut s) = self.single.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// A raw-TCP SSE subscriber that counts the events it receives.
fn open(
    port: u16,
    slug: &str,
    i: usize,
    received: Arc<AtomicU64>,
    connected: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let request = format!(
        "GET /v1/{slug}/channels/ch{}/events HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n",
        i % CHANNELS
    );
    tokio::spawn(async move {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            return;
        };
        if s.write_all(request.as_bytes()).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; 16 * 1024];
        let mut first = true;
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                return;
            }
            if first {
                first = false;
                connected.fetch_add(1, Ordering::Relaxed);
            }
            let events = buf[..n].windows(6).filter(|w| w == b"\ndata:").count();
            received.fetch_add(events as u64, Ordering::Relaxed);
        }
    })
}

async fn wait_for(counter: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rss_kib(pid: u32) -> Result<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("a number")?
        .parse()?)
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; after the command name, 12 and 13 (0-based 11, 12).
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}
