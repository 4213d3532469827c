//! A real Herald for the client's tests: the `herald` binary that `cargo xtask test` builds
//! (`HERALD_TEST_BIN`, else `target/debug/herald`), on a fresh SQLite database in a scratch
//! directory and port 0, optionally on a private `redis-server` the test can stop. The base URL
//! is read from the line the server prints once it listens, so nothing waits by sleeping.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub struct Herald {
    child: Child,
    dir: PathBuf,
    pub base: String,
}

impl Herald {
    /// Starts `herald serve` with `extra` flags.
    pub fn start(extra: &[&str]) -> Herald {
        let dir = std::env::temp_dir().join(format!(
            "herald-client-test-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(herald_bin())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.join("herald.db").display()))
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("HERALD_REDIS_URL")
            .env_remove("HERALD_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the herald binary (cargo build -p herald, or HERALD_TEST_BIN)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("herald admin: ")
            .and_then(|u| u.strip_suffix("/api/v1"))
            .unwrap_or_else(|| panic!("herald did not start: {line:?}"))
            .to_owned();
        // Keep draining stdout so that the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Herald { child, dir, base }
    }

    /// Signs up a tenant and returns a publish+subscribe key of it.
    pub async fn tenant(&self, slug: &str) -> String {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/api/v1/signup", self.base))
            .json(&json!({
                "email": format!("owner@{slug}.example"),
                "password": "correct horse battery staple",
                "tenant": {"slug": slug, "name": slug},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let r = http
            .post(format!("{}/api/v1/tenants/{slug}/keys", self.base))
            .header("cookie", cookie)
            .header("origin", &self.base)
            .json(&json!({"name": "sdk", "scopes": ["publish", "subscribe"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let key: Value = r.json().await.unwrap();
        key["secret"].as_str().unwrap().to_owned()
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a plans file whose default plan `sdk` allows `per_second` publishes per key.
pub fn plans_file(per_second: u32) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "herald-client-plans-{:016x}.toml",
        rand::random::<u64>()
    ));
    std::fs::write(
        &path,
        format!(
            "[plans.sdk]\nmax_connections = 100\nmessages_per_day = 100000\n\
             max_message_bytes = 65536\npublish_per_second = {per_second}\n\
             publish_burst = {per_second}\nchannels_per_connection = 16\nmax_history_size = 1000\n"
        ),
    )
    .unwrap();
    path
}

/// A `redis-server` of the test's own on a free port, so that it can be stopped and started
/// again without touching anyone else's.
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (cargo xtask test makes sure of it)");
        // redis-server logs "Ready to accept connections" once it listens.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("Ready to accept connections") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "redis-server exited before it was ready"
            );
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long an outage of the tests lasts.
pub const OUTAGE: Duration = Duration::from_millis(1500);

fn herald_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HERALD_TEST_BIN") {
        return p.into();
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    target.join("debug").join("herald")
}
