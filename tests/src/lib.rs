//! The black-box test harness: the real Herald server, started in-process on a random loopback
//! port, spoken to over HTTP. Every test gets its own database and its own Redis key space, so
//! tests run in parallel and leave nothing behind.
//!
//! [`both_backends!`] runs each test twice: on the embedded default (SQLite + in-process broker)
//! and on the cluster set-up (Postgres + Redis, from `HERALD_TEST_DATABASE_URL` and
//! `HERALD_TEST_REDIS_URL`).

mod sse;

use std::net::SocketAddr;
use std::time::Duration;

use herald::{App, Config, Role};
use herald_store::testing::TestDatabase;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub use sse::{SseEvent, SseStream};

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
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow_free::Result>>,
    pub db: TestDatabase,
    pub redis: Option<RedisSpace>,
}

mod anyhow_free {
    pub type Result = std::result::Result<(), String>;
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts a server, letting the test adjust its configuration first.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let (db, redis) = match backend {
            Backend::Embedded => (TestDatabase::sqlite(), None),
            Backend::Cluster => (TestDatabase::postgres().await, Some(RedisSpace::new())),
        };
        let mut config = base_config(db.url(), redis.as_ref());
        tweak(&mut config);
        let app = App::build(&config, Role::All)
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
        let app = App::build(&self.config, Role::All)
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

    /// A tenant with a publish+subscribe key: `(slug, key)`.
    pub async fn tenant(&self, slug: &str) -> (String, String) {
        self.signup(slug).await;
        let key = self.create_key(slug, &["publish", "subscribe"]).await;
        (slug.to_owned(), key)
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
    config
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
