//! What the cluster tests share: a cluster on a fresh database and Redis key space, a tenant, a
//! minimal SSE reader cheap enough to run hundreds of, and a steady publisher.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herald_cluster::redis_cluster::RedisCluster;
use herald_cluster::{Cluster, Spec};
use herald_store::testing::TestDatabase;
use serde_json::{json, Value};

/// The plan the cluster's tenants get: no rate or quota in the way of a load test.
const ROOMY_PLAN: &str = "[plans.roomy]
max_connections = 100000
messages_per_day = 100000000
max_message_bytes = 65536
publish_per_second = 1000000
publish_burst = 1000000
channels_per_connection = 16
max_history_size = 10000
";

/// The binary under test, built by `cargo xtask test` (or `cargo build -p herald`).
pub fn herald_bin() -> PathBuf {
    if let Ok(p) = std::env::var("HERALD_TEST_BIN") {
        return p.into();
    }
    target_dir().join("debug/herald")
}

pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), |d| root.join(d))
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

pub fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Which Redis the edges share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisKind {
    /// The shared Redis (`HERALD_TEST_REDIS_URL`), a key prefix of the test's own.
    One,
    /// A private three-master Redis Cluster of the test's own.
    Cluster,
}

impl std::fmt::Display for RedisKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisKind::One => "one Redis",
            RedisKind::Cluster => "Redis Cluster (3 masters)",
        })
    }
}

/// A cluster of the test's own; its state directory (logs) is removed afterwards unless the test
/// failed, when its path is printed.
pub struct TestCluster {
    pub cluster: Cluster,
    /// The private Redis Cluster under the edges, on [`RedisKind::Cluster`]; dropped after them.
    pub redis_cluster: Option<RedisCluster>,
    pub http: reqwest::Client,
    /// The database this cluster created for itself, dropped with it.
    pub db: Option<TestDatabase>,
    state_dir: PathBuf,
}

impl TestCluster {
    /// Three edges on the shared Redis (a key prefix of their own) and a fresh database.
    pub async fn start() -> TestCluster {
        Self::start_with(&redis_url(), |_| {}).await
    }

    /// Three edges on `kind` and a fresh database.
    pub async fn start_on_redis(kind: RedisKind) -> TestCluster {
        Self::start_on_redis_with(kind, |_| {}).await
    }

    /// [`TestCluster::start_on_redis`], the spec tweaked first.
    pub async fn start_on_redis_with(
        kind: RedisKind,
        tweak: impl FnOnce(&mut Spec),
    ) -> TestCluster {
        match kind {
            RedisKind::One => Self::start_with(&redis_url(), tweak).await,
            RedisKind::Cluster => {
                let dir = target_dir()
                    .join("cluster-tests")
                    .join(format!("redis-cluster-{:016x}", rand_u64()));
                let redis =
                    tokio::task::spawn_blocking(move || RedisCluster::start(&dir, 3, false))
                        .await
                        .unwrap()
                        .expect("a private Redis Cluster starts (redis-server, redis-cli on PATH)");
                let mut tc = Self::start_with(&redis.seeds(), |spec| {
                    spec.redis_cluster = true;
                    tweak(spec);
                })
                .await;
                tc.redis_cluster = Some(redis);
                tc
            }
        }
    }

    pub async fn start_with(redis_url: &str, tweak: impl FnOnce(&mut Spec)) -> TestCluster {
        let db = TestDatabase::postgres().await;
        let url = db.url().to_owned();
        Self::start_on(&url, Some(db), redis_url, tweak).await
    }

    /// A cluster on `database_url`, a database the test owns (say, on a Postgres of its own that
    /// it stops and starts).
    pub async fn start_on_database(
        database_url: &str,
        redis_url: &str,
        tweak: impl FnOnce(&mut Spec),
    ) -> TestCluster {
        Self::start_on(database_url, None, redis_url, tweak).await
    }

    async fn start_on(
        database_url: &str,
        db: Option<TestDatabase>,
        redis_url: &str,
        tweak: impl FnOnce(&mut Spec),
    ) -> TestCluster {
        let id = format!("{:016x}", rand_u64());
        let state_dir = target_dir().join("cluster-tests").join(&id);
        let mut spec = Spec::new(herald_bin(), database_url, redis_url, state_dir.clone());
        spec.redis_prefix = format!("herald-cluster-test-{id}");
        spec.plans = Some((ROOMY_PLAN.to_owned(), "roomy".to_owned()));
        spec.retry_ms = 250;
        tweak(&mut spec);
        let cluster = tokio::task::spawn_blocking(move || Cluster::start(spec))
            .await
            .unwrap()
            .unwrap_or_else(|e| {
                panic!(
                    "the cluster starts: {e:#} (logs in {})",
                    state_dir.display()
                )
            });
        let state_dir = cluster.spec().state_dir.clone();
        TestCluster {
            cluster,
            redis_cluster: None,
            http: reqwest::Client::builder()
                .cookie_store(true)
                .pool_max_idle_per_host(512)
                .build()
                .unwrap(),
            db,
            state_dir,
        }
    }

    pub fn edge_urls(&self) -> Vec<String> {
        self.cluster.edges.iter().map(|e| e.url()).collect()
    }

    /// Signs up on the admin process and creates a publish+subscribe key: `(slug, key, key id)`.
    pub async fn tenant(&self, slug: &str) -> (String, String, String) {
        let admin = self.cluster.admin.url();
        let r = self
            .http
            .post(format!("{admin}/api/v1/signup"))
            .json(&json!({
                "email": format!("owner@{slug}.example"),
                "password": "correct horse battery staple",
                "tenant": {"slug": slug, "name": slug},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "signup: {}", r.text().await.unwrap());
        let r = self
            .http
            .post(format!("{admin}/api/v1/tenants/{slug}/keys"))
            .header("origin", &admin)
            .json(&json!({"name": "test", "scopes": ["publish", "subscribe"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create key: {}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        (
            slug.to_owned(),
            body["secret"].as_str().unwrap().to_owned(),
            body["id"].as_str().unwrap().to_owned(),
        )
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cluster logs kept in {}", self.state_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
        // The edges first: a running one reports its connection counts again after the keys
        // are gone. A private Redis Cluster goes with its servers.
        self.cluster.stop();
        if !self.cluster.spec().redis_cluster {
            clean_redis(
                &self.cluster.spec().redis_url,
                &self.cluster.spec().redis_prefix,
            );
        }
    }
}

/// Removes a cluster's Redis keys (the shared Redis outlives the test).
fn clean_redis(url: &str, prefix: &str) {
    let Ok(mut con) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut con)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// One SSE event as a reader saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: String,
    pub event: String,
    pub data: String,
}

/// What one subscriber lived through.
#[derive(Debug, Default)]
pub struct ReaderState {
    pub events: Vec<Seen>,
    /// Connections that answered 200.
    pub connects: usize,
    /// Non-200 answers and transport errors on connect, and streams that broke mid-way (not a
    /// clean end).
    pub errors: Vec<String>,
    /// Comment lines (heartbeats).
    pub comments: usize,
    /// The longest time from losing the stream to having it again.
    pub longest_without: Duration,
    pub connected: bool,
}

pub type Shared = Arc<Mutex<ReaderState>>;

/// A subscriber that reads `url` for ever, reconnecting with its last id like `EventSource`
/// after `retry`; a minimal reader on reqwest, so that hundreds cost little.
pub fn spawn_reader(
    http: reqwest::Client,
    url: String,
    retry: Duration,
) -> (Shared, tokio::task::JoinHandle<()>) {
    let state: Shared = Arc::default();
    let shared = state.clone();
    let task = tokio::spawn(async move {
        let mut last_id: Option<String> = None;
        let mut lost_at: Option<Instant> = None;
        loop {
            let mut req = http.get(&url).header("accept", "text/event-stream");
            if let Some(id) = &last_id {
                req = req.header("last-event-id", id);
            }
            match req.send().await {
                Ok(r) if r.status() == 200 => {
                    {
                        let mut s = shared.lock().unwrap();
                        s.connects += 1;
                        s.connected = true;
                        if let Some(at) = lost_at.take() {
                            s.longest_without = s.longest_without.max(at.elapsed());
                        }
                    }
                    let clean = read_stream(r, &shared, &mut last_id).await;
                    let mut s = shared.lock().unwrap();
                    s.connected = false;
                    if let Err(e) = clean {
                        s.errors.push(format!("stream broke: {e}"));
                    }
                }
                Ok(r) => shared
                    .lock()
                    .unwrap()
                    .errors
                    .push(format!("connect answered {}", r.status())),
                Err(e) => shared
                    .lock()
                    .unwrap()
                    .errors
                    .push(format!("connect failed: {e}")),
            }
            lost_at.get_or_insert_with(Instant::now);
            tokio::time::sleep(retry).await;
        }
    });
    (state, task)
}

/// Reads one response's SSE events into `state`; `Ok` when the server ended the stream cleanly.
async fn read_stream(
    r: reqwest::Response,
    state: &Shared,
    last_id: &mut Option<String>,
) -> Result<(), String> {
    let mut body = r.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let (mut id, mut event, mut data) = (None::<String>, String::new(), Vec::<String>::new());
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("{e}"))?;
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if !data.is_empty() {
                    let seen = Seen {
                        id: id.clone().unwrap_or_default(),
                        event: if event.is_empty() {
                            "message".into()
                        } else {
                            event.clone()
                        },
                        data: data.join("\n"),
                    };
                    if let Some(i) = &id {
                        *last_id = Some(i.clone());
                    }
                    state.lock().unwrap().events.push(seen);
                }
                (id, event, data) = (None, String::new(), Vec::new());
            } else if line.starts_with(':') {
                state.lock().unwrap().comments += 1;
            } else {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => id = Some(value.to_owned()),
                    "event" => event = value.to_owned(),
                    "data" => data.push(value.to_owned()),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// What a publisher lived through, per channel.
#[derive(Debug, Default)]
pub struct PublisherState {
    /// Events that got a 201, in order, per channel: `seq` 0, 1, 2, ...
    pub published: HashMap<String, usize>,
    /// Answers other than 201 and transport errors, each followed by a retry with the same
    /// idempotency key.
    pub errors: Vec<String>,
}

/// Publishes `{"data": seq}` to each channel in turn, at `per_second` events per second in
/// all, until `stop` is set; each publish retries (same `Idempotency-Key`) until it gets 201, so
/// an answer lost with a dying edge is neither lost nor doubled.
pub fn spawn_publisher(
    http: reqwest::Client,
    base: String,
    slug: String,
    key: String,
    channels: Vec<String>,
    per_second: u32,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<PublisherState>>, Vec<tokio::task::JoinHandle<()>>) {
    let state: Arc<Mutex<PublisherState>> = Arc::default();
    let n = channels.len();
    let per_channel = Duration::from_secs_f64(n as f64 / f64::from(per_second));
    let tasks = channels
        .into_iter()
        .enumerate()
        .map(|(i, channel)| {
            let (http, base, slug, key, stop, state) = (
                http.clone(),
                base.clone(),
                slug.clone(),
                key.clone(),
                stop.clone(),
                state.clone(),
            );
            tokio::spawn(async move {
                // Spread the channels over the period rather than publishing in bursts.
                tokio::time::sleep(per_channel.mul_f64(i as f64 / n as f64)).await;
                let mut tick = tokio::time::interval(per_channel);
                // A slow answer is made up for by the next ones, so the rate holds on average.
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut seq = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    publish_until_ok(&http, &base, &slug, &key, &channel, seq, &state).await;
                    seq += 1;
                    state.lock().unwrap().published.insert(channel.clone(), seq);
                }
            })
        })
        .collect();
    (state, tasks)
}

async fn publish_until_ok(
    http: &reqwest::Client,
    base: &str,
    slug: &str,
    key: &str,
    channel: &str,
    seq: usize,
    state: &Mutex<PublisherState>,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http
            .post(format!("{base}/v1/{slug}/channels/{channel}/events"))
            .bearer_auth(key)
            .header("idempotency-key", format!("{channel}-{seq}"))
            .json(&json!({"data": seq}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 201 => return,
            Ok(r) => state
                .lock()
                .unwrap()
                .errors
                .push(format!("{channel}#{seq}: {}", r.status())),
            Err(e) => state
                .lock()
                .unwrap()
                .errors
                .push(format!("{channel}#{seq}: {e}")),
        }
        assert!(Instant::now() < deadline, "{channel}#{seq} never got a 201");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to `secs` for `f` to hold, polling.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// Checks that a subscriber got exactly `0..n` of its channel, in order, with no gap event.
pub fn check_sequence(who: &str, state: &ReaderState, n: usize) -> Result<(), String> {
    let got: Vec<String> = state.events.iter().map(|e| e.data.clone()).collect();
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    if got == want {
        return Ok(());
    }
    let gaps = state
        .events
        .iter()
        .filter(|e| e.event == "herald.gap")
        .count();
    let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
    Err(format!(
        "{who}: got {} events, want {n}; {gaps} gap events; first difference at {first_diff:?}: \
         {:?}",
        got.len(),
        first_diff.map(|i| &got[i.saturating_sub(2)..(i + 3).min(got.len())])
    ))
}
