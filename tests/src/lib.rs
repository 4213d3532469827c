//! The black-box test harness: the real Herald server, started in-process on a random loopback
//! port, spoken to over HTTP. Every test gets its own database and its own Redis key space, so
//! tests run in parallel and leave nothing behind.
//!
//! [`both_backends!`] runs each test twice: on the embedded default (SQLite + in-process broker)
//! and on the cluster set-up (Postgres + Redis, from `HERALD_TEST_DATABASE_URL` and
//! `HERALD_TEST_REDIS_URL`).

mod sse;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::{App, Config, Routes};
use herald_store::testing::TestDatabase;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub use sse::{SseEvent, SseStream};

/// A clock a test moves by hand.
pub struct ManualClock(Mutex<time::OffsetDateTime>);

impl ManualClock {
    pub fn at(t: time::OffsetDateTime) -> Arc<Self> {
        Arc::new(Self(Mutex::new(t)))
    }

    pub fn set(&self, t: time::OffsetDateTime) {
        *self.0.lock().unwrap() = t;
    }
}

impl herald_store::Clock for ManualClock {
    fn now(&self) -> time::OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// Writes a plans file with one plan, `tiny`, of the given limits, and makes it the default.
pub fn tiny_plan(config: &mut Config, toml_body: &str) {
    write_plans(config, &format!("[plans.tiny]\n{toml_body}"), "tiny");
}

/// Writes the config's plans file: the test's own one if it has one already (removed with the
/// [`TestApp`]), else a new one.
fn write_plans(config: &mut Config, toml: &str, default: &str) {
    let path = match config.plans.as_deref().filter(|p| plans_dir(p).is_some()) {
        Some(p) => p.to_owned(),
        None => {
            let dir =
                std::env::temp_dir().join(format!("herald-plans-{:016x}", rand::random::<u64>()));
            std::fs::create_dir_all(&dir).unwrap();
            dir.join("plans.toml")
        }
    };
    std::fs::write(&path, toml).unwrap();
    config.plans = Some(path);
    config.default_plan = default.into();
}

/// The directory of a plans file this harness wrote, if `path` is one.
fn plans_dir(path: &std::path::Path) -> Option<&std::path::Path> {
    let dir = path.parent()?;
    let name = dir.file_name()?.to_str()?;
    (dir.parent() == Some(std::env::temp_dir().as_path()) && name.starts_with("herald-plans-"))
        .then_some(dir)
}

/// A plan with limits small enough for a test to reach each of them.
pub const TINY: &str = "max_connections = 3
messages_per_day = 20
max_message_bytes = 1024
publish_per_second = 5
publish_burst = 5
channels_per_connection = 3
max_history_size = 10
";

/// Name constructors for tests, where the input is known to be valid.
pub mod herald_core_names {
    pub fn slug(s: &str) -> herald_core::TenantSlug {
        herald_core::TenantSlug::parse(s).expect("a valid slug")
    }

    pub fn channel(s: &str) -> herald_core::ChannelName {
        herald_core::ChannelName::parse(s).expect("a valid channel name")
    }
}

/// Signs a subscriber token as a tenant's own server would.
pub fn sign_token(kid: Option<&str>, secret: &str, claims: &serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token")
}

/// Seconds since the epoch, for `exp` claims.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Which parts the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and the in-process broker: `herald` with no flags.
    Embedded,
    /// Postgres and Redis: a cluster node.
    Cluster,
}

/// Runs each named `async fn(TestApp)` on both backends, as `embedded::<name>` and
/// `cluster::<name>`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestApp::spawn($crate::Backend::Embedded).await).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestApp::spawn($crate::Backend::Cluster).await).await
                }
            )*
        }
    };
}

pub fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis key space of one test, deleted when dropped.
pub struct RedisSpace {
    pub prefix: String,
}

impl RedisSpace {
    pub fn new() -> Self {
        Self {
            prefix: format!("herald-test-{:016x}", rand::random::<u64>()),
        }
    }
}

impl Default for RedisSpace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisSpace {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

/// A running server and what it stands on.
pub struct TestApp {
    pub backend: Backend,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub config: Config,
    clock: Arc<dyn herald_store::Clock>,
    shutdown: CancellationToken,
    /// The server task; its error, formatted, if it failed.
    server: Option<tokio::task::JoinHandle<Result<(), String>>>,
    pub db: TestDatabase,
    pub redis: Option<RedisSpace>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts a server, letting the test adjust its configuration first.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_with_clock(backend, tweak, Arc::new(herald_store::SystemClock)).await
    }

    /// Starts a server whose quotas follow `clock`.
    pub async fn spawn_with_clock(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        clock: Arc<dyn herald_store::Clock>,
    ) -> TestApp {
        let (db, redis) = match backend {
            Backend::Embedded => (TestDatabase::sqlite(), None),
            Backend::Cluster => (TestDatabase::postgres().await, Some(RedisSpace::new())),
        };
        let mut config = base_config(db.url(), redis.as_ref());
        tweak(&mut config);
        let app = App::build_with_clock(&config, Routes::All, clock.clone())
            .await
            .expect("the server starts");
        let addr = app.local_addr();
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(async move { app.run().await.map_err(|e| format!("{e:#}")) });
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("a client");
        TestApp {
            backend,
            addr,
            client,
            config,
            clock,
            shutdown,
            server: Some(server),
            db,
            redis,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The origin the admin API accepts cookie-authenticated writes from.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    /// Starts a new server on the same database and Redis key space (after [`TestApp::stop`]).
    pub async fn restart(&mut self) {
        self.stop().await;
        let app = App::build_with_clock(&self.config, Routes::All, self.clock.clone())
            .await
            .expect("the server starts again");
        self.addr = app.local_addr();
        self.shutdown = app.shutdown_token();
        self.server = Some(tokio::spawn(async move {
            app.run().await.map_err(|e| format!("{e:#}"))
        }));
    }

    /// The control-plane store the server uses, for arranging what the admin API would.
    pub async fn store(&self) -> herald_store::Store {
        herald_store::Store::connect(self.db.url())
            .await
            .expect("the test database")
    }

    /// Makes a channel private (before anything has asked the edge about it: the edge caches
    /// channel settings for a second).
    pub async fn make_private(&self, slug: &str, channel: &str) {
        let store = self.store().await;
        let tenant = store
            .tenant_by_slug(&herald_core_names::slug(slug))
            .await
            .unwrap()
            .expect("the tenant");
        let settings = herald_store::ChannelSettings {
            visibility: herald_store::Visibility::Private,
            ..store
                .channel_settings(tenant.id, &herald_core_names::channel(channel))
                .await
                .unwrap()
        };
        store
            .put_channel(tenant.id, &herald_core_names::channel(channel), &settings)
            .await
            .unwrap();
    }

    /// The tenant's signing keys, newest first.
    pub async fn signing_keys(&self, slug: &str) -> Vec<herald_store::SigningKey> {
        let store = self.store().await;
        let tenant = store
            .tenant_by_slug(&herald_core_names::slug(slug))
            .await
            .unwrap()
            .expect("the tenant");
        store.signing_keys(tenant.id).await.unwrap()
    }

    /// Signs up an account owning `slug`, logging the app's client in.
    pub async fn signup(&self, slug: &str) -> Value {
        let r = self
            .client
            .post(self.url("/api/v1/signup"))
            .json(&json!({
                "email": format!("owner@{slug}.example"),
                "password": "correct horse battery staple",
                "tenant": {"slug": slug, "name": slug},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "signup: {}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// Creates an API key with `scopes` in a tenant the client owns; returns the secret.
    pub async fn create_key(&self, slug: &str, scopes: &[&str]) -> String {
        let r = self
            .client
            .post(self.url(&format!("/api/v1/tenants/{slug}/keys")))
            .header("origin", self.origin())
            .json(&json!({"name": "test", "scopes": scopes}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create key: {}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        body["secret"].as_str().unwrap().to_owned()
    }

    /// A tenant with a publish+subscribe key: `(slug, key)`. Unless the test chose its own
    /// plans, the tenant is on the roomy plan, so that rates and quotas stay out of tests that
    /// are not about them.
    pub async fn tenant(&self, slug: &str) -> (String, String) {
        self.signup(slug).await;
        if self.config.default_plan == "free" {
            self.store()
                .await
                .set_plan(&herald_core_names::slug(slug), ROOMY)
                .await
                .expect("the roomy plan");
        }
        let key = self.create_key(slug, &["publish", "subscribe"]).await;
        (slug.to_owned(), key)
    }

    /// The SDK's client of tenant `slug` with `key`, on this server; without retries, so
    /// that a refusal shows as it is.
    pub fn sdk_client(&self, slug: &str, key: &str) -> herald_client::Client {
        herald_client::Client::new(self.url(""), slug, key).with_retry(herald_client::Retry::NONE)
    }

    pub async fn publish(
        &self,
        key: &str,
        slug: &str,
        channel: &str,
        body: Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/{slug}/channels/{channel}/events")))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The process's `/metrics` page, as Prometheus text.
    pub async fn metrics(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200, "/metrics");
        r.text().await.unwrap()
    }

    /// A stream that reads nothing after its response head: a raw connection with a 4 KiB
    /// receive buffer, so the server meets backpressure after a few frames.
    pub async fn stalled_stream(&self, slug: &str, channel: &str) -> tokio::net::TcpStream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(self.addr).await.unwrap();
        let request = format!(
            "GET /v1/{slug}/channels/{channel}/events HTTP/1.1\r\nHost: {}\r\n\
             Accept: text/event-stream\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).await.unwrap();
        let head = String::from_utf8_lossy(&head[..n]);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stream
    }

    /// The tenant's usage today, as the admin API reports it (the operator's cookie).
    pub async fn usage_today(&self, slug: &str) -> Value {
        let days: Vec<Value> = self
            .client
            .get(self.url(&format!("/api/v1/tenants/{slug}/usage?days=1")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        days.last().cloned().unwrap_or_default()
    }

    /// Publishes and returns the event's id, asserting a 201.
    pub async fn publish_ok(&self, key: &str, slug: &str, channel: &str, body: Value) -> String {
        let r = self.publish(key, slug, channel, body).await;
        assert_eq!(r.status(), 201, "publish: {}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// Opens a stream; `last_event_id` is sent as the `Last-Event-ID` header.
    pub async fn subscribe(
        &self,
        slug: &str,
        channel: &str,
        last_event_id: Option<&str>,
    ) -> SseStream {
        let mut req = self
            .client
            .get(self.url(&format!("/v1/{slug}/channels/{channel}/events")));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "subscribe: {}", r.text().await.unwrap());
        SseStream::new(r)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(dir) = self.config.plans.as_deref().and_then(plans_dir) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A `herald` process of a test; killed when dropped, so a failing test leaves none behind.
pub struct HeraldProcess(Option<std::process::Child>);

impl HeraldProcess {
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit by itself (blocking).
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self.0.take() {
            Some(mut child) => child.wait(),
            None => Err(std::io::Error::other("the process was already reaped")),
        }
    }
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn base_config(database_url: &str, redis: Option<&RedisSpace>) -> Config {
    use clap::Parser;
    let cli = herald::Cli::parse_from(["herald", "--listen", "127.0.0.1:0"]);
    let mut config = cli.config;
    config.database_url = database_url.to_owned();
    config.redis_url = redis.map(|_| redis_url());
    if let Some(space) = redis {
        config.redis_prefix = space.prefix.clone();
    }
    config.drain_secs = 5;
    // The built-in plans, plus `roomy` for tenants of tests that are about the API and not
    // about limits (see [`TestApp::tenant`]); tests of limits set plans of their own.
    let mut plans = herald_store::Plans::builtin();
    let free = plans.get("free").expect("a built-in free plan").clone();
    plans.plans.insert(
        ROOMY.into(),
        herald_store::Plan {
            max_connections: 100_000,
            messages_per_day: 100_000_000,
            publish_per_second: 1_000_000,
            publish_burst: 1_000_000,
            connects_per_second: None,
            ..free
        },
    );
    write_plans(&mut config, &plans_toml(&plans), "free");
    config
}

/// The plan [`TestApp::tenant`] puts tenants on: the free plan's shape (64 KiB messages, 16
/// channels per connection) without its rates and quotas.
const ROOMY: &str = "roomy";

fn plans_toml(plans: &herald_store::Plans) -> String {
    let mut out = String::new();
    for (name, p) in &plans.plans {
        out += &format!(
            "[plans.{name}]\nmax_connections = {}\nmessages_per_day = {}\nmax_message_bytes = {}\n\
             publish_per_second = {}\npublish_burst = {}\nchannels_per_connection = {}\n\
             max_history_size = {}\n",
            p.max_connections,
            p.messages_per_day,
            p.max_message_bytes,
            p.publish_per_second,
            p.publish_burst,
            p.channels_per_connection,
            p.max_history_size,
        );
        if let Some(c) = p.connects_per_second {
            out += &format!("connects_per_second = {c}\n");
        }
    }
    out
}

/// Waits up to `secs` for `f` to hold, polling; for conditions another process settles.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The binary under test, built by `cargo xtask test` (or `cargo build -p herald`).
pub fn herald_bin() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("HERALD_TEST_BIN") {
        return p.into();
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), Into::into);
    target.join("debug/herald")
}

/// A real `herald` process on the test's database and Redis key space, with its plans.
pub fn spawn_process(app: &TestApp, port: u16, extra: &[&str]) -> HeraldProcess {
    spawn_process_logging(app, port, extra, std::process::Stdio::null())
}

/// [`spawn_process`], its stderr (where it logs) going to `log`.
pub fn spawn_process_logging(
    app: &TestApp,
    port: u16,
    extra: &[&str],
    log: impl Into<std::process::Stdio>,
) -> HeraldProcess {
    let mut cmd = std::process::Command::new(herald_bin());
    cmd.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--drain-secs",
        "5",
    ])
    .args(extra)
    .env("HERALD_DATABASE_URL", app.db.url())
    .env_remove("HERALD_REDIS_URL")
    .stdout(std::process::Stdio::null())
    .stderr(log);
    if let Some(plans) = &app.config.plans {
        cmd.arg("--plans")
            .arg(plans)
            .args(["--default-plan", &app.config.default_plan]);
    }
    if let Some(space) = &app.redis {
        cmd.env("HERALD_REDIS_URL", redis_url())
            .env("HERALD_REDIS_PREFIX", &space.prefix);
    }
    HeraldProcess(Some(
        cmd.spawn()
            .expect("the herald binary (cargo build -p herald)"),
    ))
}

pub async fn wait_ready(port: u16) {
    let url = format!("http://127.0.0.1:{port}/readyz");
    assert!(
        eventually(20, || async {
            reqwest::get(&url)
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        })
        .await,
        "herald came up"
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
