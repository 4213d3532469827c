//! Faults on real processes: `herald admin`, three `herald edge` and nginx, started by the
//! launcher `cargo xtask cluster up` uses, on real Postgres and Redis.
//!
//! Each test prints what its subscribers lived through (events published and received, the
//! longest time a client was without its stream); `cargo nextest run -p herald-cluster
//! --no-capture` shows it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    check_sequence, eventually, spawn_publisher, spawn_reader, RedisKind, Shared, TestCluster,
};
use serde_json::{json, Value};

/// Publish on edge 1; subscribers on edges 2 and 3 and through nginx all receive every event,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_one_edge_reaches_every_edge_and_nginx_in_order() {
    cross_edge(RedisKind::One).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_an_event_published_on_one_edge_reaches_every_edge_and_nginx_in_order() {
    cross_edge(RedisKind::Cluster).await;
}

async fn cross_edge(kind: RedisKind) {
    let tc = TestCluster::start_on_redis(kind).await;
    let (t, key, _) = tc.tenant("acme").await;
    let edges = tc.edge_urls();
    let bases = [edges[1].clone(), edges[2].clone(), tc.cluster.url()];
    let readers: Vec<_> = bases
        .iter()
        .map(|b| {
            spawn_reader(
                tc.http.clone(),
                format!("{b}/v1/{t}/channels/orders/events"),
                Duration::from_millis(250),
            )
        })
        .collect();
    assert!(
        eventually(10, || readers
            .iter()
            .all(|(s, _)| s.lock().unwrap().connected))
        .await,
        "every subscriber is connected"
    );
    for seq in 0..50 {
        let r = tc
            .http
            .post(format!("{}/v1/{t}/channels/orders/events", edges[0]))
            .bearer_auth(&key)
            .json(&json!({"data": seq}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    assert!(
        eventually(10, || readers.iter().all(|(s, _)| s
            .lock()
            .unwrap()
            .events
            .len()
            >= 50))
        .await,
        "every subscriber received every event"
    );
    for ((state, task), base) in readers.iter().zip(&bases) {
        task.abort();
        let s = state.lock().unwrap();
        check_sequence(base, &s, 50).unwrap();
        assert_eq!(s.connects, 1, "{base}: one connection throughout");
    }
}

/// 300 subscribers through nginx on 10 channels, a publisher at 200 events/s, and `kill -9` of
/// one edge: every subscriber ends with the complete sequence of its channel, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_edge_under_load_loses_nothing() {
    kill_9(RedisKind::One).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_kill_9_of_an_edge_under_load_loses_nothing() {
    kill_9(RedisKind::Cluster).await;
}

async fn kill_9(kind: RedisKind) {
    let mut tc = TestCluster::start_on_redis(kind).await;
    let report = under_load(&mut tc, Fault::Kill).await;
    report.print(&format!("kill -9 of edge 2, on {kind}"));
    report.assert_complete();
    assert!(
        report.reconnected > 0,
        "the killed edge's subscribers reconnected elsewhere (or the test proved nothing)"
    );
}

/// The same load, and a rolling SIGTERM restart of all three edges, one after another: each
/// drains within `--drain-secs`, nothing is lost or doubled, and no client (subscriber or
/// publisher) sees an HTTP error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_sigterm_restart_of_every_edge_loses_nothing_and_shows_no_error() {
    rolling(RedisKind::One).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_a_rolling_sigterm_restart_of_every_edge_loses_nothing_and_shows_no_error()
{
    rolling(RedisKind::Cluster).await;
}

async fn rolling(kind: RedisKind) {
    let mut tc = TestCluster::start_on_redis(kind).await;
    let report = under_load(&mut tc, Fault::Rolling).await;
    report.print(&format!(
        "rolling SIGTERM restart of edges 1, 2, 3, on {kind}"
    ));
    report.assert_complete();
    assert!(report.reconnected > 0, "drained streams reconnected");
    let drain = Duration::from_secs(tc.cluster.spec().drain_secs);
    for took in &report.drains {
        assert!(
            *took <= drain,
            "an edge drained in {took:?}, over --drain-secs"
        );
    }
    assert!(
        report.reader_errors.is_empty(),
        "subscribers saw errors: {:?}",
        &report.reader_errors[..report.reader_errors.len().min(10)]
    );
    assert!(
        report.publisher_errors.is_empty(),
        "the publisher saw errors: {:?}",
        &report.publisher_errors[..report.publisher_errors.len().min(10)]
    );
}

/// On a three-master Redis Cluster, the slots of three of the ten channels move to another
/// master one after another while the publisher runs: nothing lost, nothing twice, in order, and
/// no client sees an error (the edges follow `ASK`/`MOVED`; their subscribers resync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_moving_channels_slots_under_load_loses_nothing() {
    let mut tc = TestCluster::start_on_redis(RedisKind::Cluster).await;
    let report = under_load(&mut tc, Fault::MoveSlots).await;
    report.print("slots of channels ch0, ch1, ch2 moved to another master, on Redis Cluster");
    report.assert_complete();
    assert_eq!(report.moved, 3, "three slots moved");
    assert!(
        report.reader_errors.is_empty(),
        "subscribers saw errors: {:?}",
        &report.reader_errors[..report.reader_errors.len().min(10)]
    );
}

enum Fault {
    Kill,
    Rolling,
    /// Redis Cluster only: the slots of `ch0`, `ch1` and `ch2` move to another master.
    MoveSlots,
}

const SUBSCRIBERS: usize = 300;
const CHANNELS: usize = 10;
const EVENTS_PER_SECOND: u32 = 200;

struct Report {
    published: Vec<usize>,
    received_min: usize,
    received_max: usize,
    subscribers: usize,
    reconnected: usize,
    longest_without: Duration,
    publisher_errors: Vec<String>,
    reader_errors: Vec<String>,
    drains: Vec<Duration>,
    /// Slots moved (`Fault::MoveSlots`).
    moved: usize,
    failures: Vec<String>,
}

impl Report {
    fn print(&self, what: &str) {
        eprintln!(
            "[cluster report] {what}: {} subscribers on {CHANNELS} channels; published per channel \
             {:?} ({} in all); received per subscriber min {} max {}; {} subscribers reconnected; \
             longest without a stream {:?}; publisher retries {}; subscriber connect/stream errors \
             {}; drains {:?}; slots moved {}; subscribers with their channel's exact sequence {}",
            self.subscribers,
            self.published,
            self.published.iter().sum::<usize>(),
            self.received_min,
            self.received_max,
            self.reconnected,
            self.longest_without,
            self.publisher_errors.len(),
            self.reader_errors.len(),
            self.drains,
            self.moved,
            self.subscribers - self.failures.len(),
        );
    }

    fn assert_complete(&self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} subscribers did not get their channel's exact sequence; first: {:?}",
            self.failures.len(),
            self.subscribers,
            &self.failures[..self.failures.len().min(5)]
        );
    }
}

async fn under_load(tc: &mut TestCluster, fault: Fault) -> Report {
    let (t, key, _) = tc.tenant("acme").await;
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("ch{i}")).collect();
    let base = tc.cluster.url();
    let retry = Duration::from_millis(tc.cluster.spec().retry_ms);
    let readers: Vec<(usize, Shared, tokio::task::JoinHandle<()>)> = (0..SUBSCRIBERS)
        .map(|i| {
            let c = i % CHANNELS;
            let url = format!("{base}/v1/{t}/channels/{}/events", channels[c]);
            let (state, task) = spawn_reader(tc.http.clone(), url, retry);
            (c, state, task)
        })
        .collect();
    assert!(
        eventually(30, || readers
            .iter()
            .all(|(_, s, _)| s.lock().unwrap().connected))
        .await,
        "all {SUBSCRIBERS} subscribers connected"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (publisher, tasks) = spawn_publisher(
        tc.http.clone(),
        base.clone(),
        t.clone(),
        key.clone(),
        channels.clone(),
        EVENTS_PER_SECOND,
        stop.clone(),
    );
    // Load runs for a while before, during and after the fault: these sleeps are the test's
    // duration, not waits for a server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut drains = Vec::new();
    let mut moved = 0;
    match fault {
        Fault::Kill => {
            tokio::task::block_in_place(|| tc.cluster.kill_edge(1));
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        Fault::Rolling => {
            let limit = Duration::from_secs(tc.cluster.spec().drain_secs + 5);
            for i in 0..tc.cluster.edges.len() {
                let took = tokio::task::block_in_place(|| {
                    let took = tc
                        .cluster
                        .terminate_edge(i, limit)
                        .expect("the edge drains");
                    tc.cluster.restart_edge(i).expect("the edge starts again");
                    took
                });
                drains.push(took);
                // The next edge goes once this one serves again and nginx has had its
                // `fail_timeout` (1 s) to forgive the connects it refused while restarting, as
                // a Deployment with `maxUnavailable: 0` rolls (deploy/README.md).
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Fault::MoveSlots => {
            let redis = tc
                .redis_cluster
                .as_ref()
                .expect("slots move on Redis Cluster only");
            for channel in &channels[..3] {
                let tag = format!("{{{t}/{channel}}}");
                moved += tokio::task::block_in_place(|| {
                    let slot = redis.slot_of(&tag).unwrap();
                    let to = (redis.owner_of(slot).unwrap() + 1) % redis.masters.len();
                    redis.move_slot(slot, to).expect("the slot moves");
                    usize::from(redis.owner_of(slot).unwrap() == to)
                });
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("the publisher finished");
    }
    let published: Vec<usize> = {
        let p = publisher.lock().unwrap();
        channels
            .iter()
            .map(|c| p.published.get(c).copied().unwrap_or(0))
            .collect()
    };
    let caught_up = eventually(30, || {
        readers
            .iter()
            .all(|(c, s, _)| s.lock().unwrap().events.len() >= published[*c])
    })
    .await;

    let mut report = Report {
        published: published.clone(),
        received_min: usize::MAX,
        received_max: 0,
        subscribers: readers.len(),
        reconnected: 0,
        longest_without: Duration::ZERO,
        publisher_errors: publisher.lock().unwrap().errors.clone(),
        reader_errors: Vec::new(),
        drains,
        moved,
        failures: Vec::new(),
    };
    for (i, (c, state, task)) in readers.iter().enumerate() {
        task.abort();
        let s = state.lock().unwrap();
        report.received_min = report.received_min.min(s.events.len());
        report.received_max = report.received_max.max(s.events.len());
        report.reconnected += usize::from(s.connects > 1);
        report.longest_without = report.longest_without.max(s.longest_without);
        report.reader_errors.extend(s.errors.iter().cloned());
        if let Err(e) = check_sequence(
            &format!("subscriber {i} on {}", channels[*c]),
            &s,
            published[*c],
        ) {
            report.failures.push(e);
        }
    }
    if !caught_up && report.failures.is_empty() {
        report
            .failures
            .push("subscribers did not catch up within 30 s".into());
    }
    report
}

/// Revoking a key on the admin process: every edge refuses it within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_the_admin_is_refused_on_every_edge_within_a_second() {
    let tc = TestCluster::start().await;
    let (t, key, key_id) = tc.tenant("acme").await;
    let mut bases = tc.edge_urls();
    bases.push(tc.cluster.url());
    let publish = |base: String| {
        let (http, t, key) = (tc.http.clone(), t.clone(), key.clone());
        async move {
            http.post(format!("{base}/v1/{t}/channels/c/events"))
                .bearer_auth(&key)
                .json(&json!({"data": 1}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Every edge has seen (and cached) the key.
    for base in &bases {
        assert_eq!(publish(base.clone()).await, 201, "{base}");
    }
    let admin = tc.cluster.admin.url();
    let r = tc
        .http
        .delete(format!("{admin}/api/v1/tenants/{t}/keys/{key_id}"))
        .header("origin", &admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "revoke: {}", r.status());
    let revoked = Instant::now();
    // For each base, when the first request that was refused had been sent: a request sent a
    // second after the revocation must be refused.
    let refusals = bases.iter().map(|base| {
        let publish = &publish;
        async move {
            loop {
                let sent = revoked.elapsed();
                let status = publish(base.clone()).await;
                if status == 401 {
                    return (base.clone(), sent);
                }
                assert_eq!(
                    status, 201,
                    "{base}: before the refusal, the key still works"
                );
                assert!(
                    sent <= Duration::from_secs(1),
                    "{base} still accepted the key {sent:?} after its revocation"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let refusals = futures_util::future::join_all(refusals).await;
    eprintln!("[cluster report] revoked key first refused for a request sent after: {refusals:?}");
}

/// A Redis of this test's own, with an append-only file so that what was stored survives the
/// restart and the test can tell stored from not stored.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    fn start(dir: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let port = herald_cluster::free_port().unwrap();
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH (cargo xtask test makes sure of it)");
        self.child = Some(child);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        for _ in 0..200 {
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the private redis-server did not start");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stop the Redis under the cluster: publishes on every edge answer 503 with `Retry-After` and
/// store nothing, `/readyz` fails, open streams stay open with heartbeats; when Redis returns,
/// everything recovers by itself and the streams go on without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_503_with_streams_kept_alive_and_full_recovery() {
    let redis_dir = common::target_dir()
        .join("cluster-tests")
        .join(format!("redis-{}", herald_cluster::free_port().unwrap()));
    let mut redis = PrivateRedis::start(redis_dir);
    let tc = TestCluster::start_with(&redis.url(), |spec| spec.heartbeat_secs = 1).await;
    let (t, key, _) = tc.tenant("acme").await;
    let mut bases = tc.edge_urls();
    bases.push(tc.cluster.url());
    let readers: Vec<_> = bases
        .iter()
        .map(|b| {
            spawn_reader(
                tc.http.clone(),
                format!("{b}/v1/{t}/channels/c/events"),
                Duration::from_millis(250),
            )
        })
        .collect();
    assert!(
        eventually(10, || readers
            .iter()
            .all(|(s, _)| s.lock().unwrap().connected))
        .await
    );
    let publish = |base: String, data: Value| {
        let (http, t, key) = (tc.http.clone(), t.clone(), key.clone());
        async move {
            http.post(format!("{base}/v1/{t}/channels/c/events"))
                .bearer_auth(&key)
                .json(&json!({ "data": data }))
                .send()
                .await
                .unwrap()
        }
    };
    for seq in 0..5 {
        assert_eq!(
            publish(bases[seq % bases.len()].clone(), json!(seq))
                .await
                .status(),
            201
        );
    }
    assert!(
        eventually(10, || readers.iter().all(|(s, _)| s
            .lock()
            .unwrap()
            .events
            .len()
            == 5))
        .await
    );

    redis.kill();
    let down = Instant::now();
    for base in &bases {
        let r = publish(base.clone(), json!("lost")).await;
        assert_eq!(r.status(), 503, "{base}: a publish while Redis is down");
        assert!(
            r.headers().contains_key("retry-after"),
            "{base}: Retry-After"
        );
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "unavailable");
    }
    for edge in &tc.cluster.edges {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], edge.port));
        assert_eq!(
            herald_cluster::http_status(addr, "/readyz"),
            Some(503),
            "{} not ready",
            edge.name
        );
    }
    let comments: Vec<usize> = readers
        .iter()
        .map(|(s, _)| s.lock().unwrap().comments)
        .collect();
    // The outage lasts three heartbeats.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for ((state, _), (before, base)) in readers.iter().zip(comments.iter().zip(&bases)) {
        let s = state.lock().unwrap();
        assert!(
            s.connected && s.connects == 1,
            "{base}: the stream stayed open"
        );
        assert!(
            s.comments > *before,
            "{base}: heartbeats went on during the outage"
        );
    }

    tokio::task::block_in_place(|| redis.restart());
    let mut recovered_after = None;
    for seq in 5..10 {
        let base = bases[seq % bases.len()].clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = publish(base.clone(), json!(seq)).await;
            if r.status() == 201 {
                recovered_after.get_or_insert(down.elapsed());
                break;
            }
            assert_eq!(r.status(), 503, "{base}: while recovering, only 503");
            assert!(
                Instant::now() < deadline,
                "{base}: publishing never recovered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        eventually(20, || readers.iter().all(|(s, _)| s
            .lock()
            .unwrap()
            .events
            .len()
            >= 10))
        .await,
        "the streams deliver again"
    );
    for ((state, task), base) in readers.iter().zip(&bases) {
        task.abort();
        let s = state.lock().unwrap();
        check_sequence(base, &s, 10).unwrap();
    }
    let r = tc
        .http
        .get(format!("{}/v1/{t}/channels/c/history?limit=100", bases[0]))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    let stored: Vec<Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(
        stored,
        (0..10).map(|i| json!(i)).collect::<Vec<_>>(),
        "nothing half-stored"
    );
    for edge in &tc.cluster.edges {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], edge.port));
        assert_eq!(
            herald_cluster::http_status(addr, "/readyz"),
            Some(200),
            "{} ready again",
            edge.name
        );
    }
    eprintln!(
        "[cluster report] redis outage: publishing recovered {recovered_after:?} after the kill"
    );
}
