//! A Postgres outage on real processes: `herald admin` and two `herald edge` on a Postgres of
//! the test's own, which the test stops (`pg_ctl stop -m immediate`, as a crash would) and
//! starts again.
//!
//! The edges ride it out on their cached view of the control plane: publishes and new streams of
//! a tenant, key and channel they have seen go on; a key they have never seen gets 503 (the edge
//! cannot know whether it exists), never 401; `/readyz` stays 200 and says `degraded`. The admin
//! API answers 503 `unavailable` with `Retry-After` within a few seconds. When Postgres returns,
//! everything recovers by itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{check_sequence, eventually, spawn_reader, TestCluster};
use serde_json::{json, Value};

/// How long the outage lasts: several times the view's one-second TTL and its retry interval,
/// so that every cached entry has expired and been refreshed (or not) many times over.
const OUTAGE: Duration = Duration::from_secs(8);

/// The slowest a publish may answer during the outage (a debug build on a shared machine).
const SLOWEST_PUBLISH: Duration = Duration::from_secs(2);

/// The slowest the admin may answer its 503.
const SLOWEST_ADMIN_503: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_ridden_out_by_the_edges_and_recovered_from() {
    let dir = std::env::temp_dir().join(format!(
        "herald-pg-outage-{}",
        herald_cluster::free_port().unwrap()
    ));
    let mut pg = tokio::task::spawn_blocking(move || PrivatePostgres::create(dir))
        .await
        .unwrap();
    let url = herald_cluster::create_database(&pg.url(), "herald").unwrap();
    let tc = TestCluster::start_on_database(&url, &common::redis_url(), |spec| {
        spec.edges = 2;
        spec.heartbeat_secs = 1;
    })
    .await;
    let (t, key, _) = tc.tenant("acme").await;
    let admin = tc.cluster.admin.url();
    // A key that exists but that no edge has seen before the outage.
    let unseen = {
        let r = tc
            .http
            .post(format!("{admin}/api/v1/tenants/{t}/keys"))
            .header("origin", &admin)
            .json(&json!({"name": "unseen", "scopes": ["publish"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let edges = tc.edge_urls();
    let publish = |base: &str, key: &str, data: Value| {
        let (http, url, key) = (
            tc.http.clone(),
            format!("{base}/v1/{t}/channels/c/events"),
            key.to_owned(),
        );
        async move {
            let started = Instant::now();
            let r = http
                .post(url)
                .bearer_auth(&key)
                .json(&json!({ "data": data }))
                .send()
                .await
                .unwrap();
            (r, started.elapsed())
        }
    };
    let stream = |base: &str| {
        spawn_reader(
            tc.http.clone(),
            format!("{base}/v1/{t}/channels/c/events"),
            Duration::from_millis(250),
        )
    };
    // Every edge sees the tenant, the key and the channel (a public one: streams need no
    // credential), for publishing and for streaming.
    let mut readers: Vec<_> = edges.iter().map(|e| stream(e)).collect();
    assert!(
        eventually(10, || readers
            .iter()
            .all(|(s, _)| s.lock().unwrap().connected))
        .await,
        "the streams open"
    );
    let mut seq = 0;
    for base in &edges {
        let (r, _) = publish(base, &key, json!(seq)).await;
        assert_eq!(r.status(), 201, "{base}: before the outage");
        seq += 1;
    }

    tokio::task::block_in_place(|| pg.stop_immediately());
    let down = Instant::now();

    // The admin API: 503 `unavailable` with Retry-After, promptly.
    let started = Instant::now();
    let r = tc
        .http
        .get(format!("{admin}/api/v1/tenants/{t}/keys"))
        .send()
        .await
        .unwrap();
    let admin_503_after = started.elapsed();
    assert_eq!(r.status(), 503, "the admin API while Postgres is down");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unavailable");
    assert!(
        admin_503_after <= SLOWEST_ADMIN_503,
        "the admin took {admin_503_after:?} to answer 503"
    );
    let r = tc
        .http
        .get(format!("{admin}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        503,
        "the admin is not ready without its database"
    );

    // The edges: publishing goes on for the whole outage, on every edge.
    let mut slowest = Duration::ZERO;
    let mut opened_during = false;
    while down.elapsed() < OUTAGE {
        for base in &edges {
            let (r, took) = publish(base, &key, json!(seq)).await;
            if r.status() != 201 {
                panic!(
                    "{base}: a publish {:?} into the outage: {} {}",
                    down.elapsed(),
                    r.status(),
                    r.text().await.unwrap()
                );
            }
            slowest = slowest.max(took);
            seq += 1;
        }
        // New streams open too, once every entry has expired from the fresh cache.
        if !opened_during && down.elapsed() > Duration::from_secs(3) {
            readers.extend(edges.iter().map(|e| stream(e)));
            opened_during = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest <= SLOWEST_PUBLISH,
        "the slowest publish during the outage took {slowest:?}"
    );
    for base in &edges {
        let (r, took) = publish(base, &unseen, json!("unseen")).await;
        assert_eq!(r.status(), 503, "{base}: a key the edge has never seen");
        assert!(r.headers().contains_key("retry-after"));
        assert!(took <= SLOWEST_PUBLISH, "{base}: its 503 took {took:?}");
        let started = Instant::now();
        let r = tc
            .http
            .get(format!("{base}/readyz"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(r.status(), 200, "{base}: an edge stays ready");
        // Within the 1 s a Kubernetes readiness probe waits by default.
        assert!(
            took < Duration::from_secs(1),
            "{base}: /readyz took {took:?}"
        );
        let body = r.text().await.unwrap();
        assert!(
            body.starts_with("degraded"),
            "{base}: /readyz says {body:?}"
        );
    }
    let during = seq;
    assert!(
        eventually(10, || readers
            .iter()
            .all(|(s, _)| s.lock().unwrap().connected))
        .await,
        "the streams opened during the outage are open"
    );

    tokio::task::block_in_place(|| pg.start());
    let up = Instant::now();
    // Everything recovers by itself: the admin, the edges' readiness, the key no edge had seen.
    let mut recovered = Vec::new();
    for base in &edges {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (r, _) = publish(base, &unseen, json!(seq)).await;
            if r.status() == 201 {
                seq += 1;
                break;
            }
            assert_eq!(
                r.status(),
                503,
                "{base}: while Postgres comes back, only 503"
            );
            assert!(
                Instant::now() < deadline,
                "{base}: the unseen key never worked"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        recovered.push(up.elapsed());
        let r = tc.http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "ready\n", "{base}: ready again");
    }
    assert!(
        eventually(20, || herald_cluster::http_status(
            std::net::SocketAddr::from(([127, 0, 0, 1], tc.cluster.admin.port)),
            "/readyz"
        ) == Some(200))
        .await,
        "the admin is ready again"
    );
    let r = tc
        .http
        .get(format!("{admin}/api/v1/tenants/{t}/keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the admin API after the outage");

    // Every stream got every event in order: the first ones all of them, the ones opened
    // during the outage at least what was published after they connected.
    assert!(
        eventually(20, || readers[..edges.len()].iter().all(|(s, _)| s
            .lock()
            .unwrap()
            .events
            .len()
            >= seq))
        .await,
        "the streams deliver everything"
    );
    for (i, (state, task)) in readers.iter().enumerate() {
        task.abort();
        let s = state.lock().unwrap();
        if i < edges.len() {
            check_sequence(&format!("stream {i}"), &s, seq).unwrap();
        } else {
            let got: Vec<i64> = s
                .events
                .iter()
                .map(|e| e.data.parse().unwrap_or(-1))
                .collect();
            assert!(
                !got.is_empty(),
                "stream {i} opened during the outage got events"
            );
            let first = got[0];
            assert_eq!(
                got,
                (first..first + got.len() as i64).collect::<Vec<_>>(),
                "stream {i}: in order, none lost"
            );
        }
    }
    eprintln!(
        "[cluster report] postgres outage of {OUTAGE:?}: {} publishes accepted during it, the \
         slowest in {slowest:?}; the admin answered 503 after {admin_503_after:?}; the unseen \
         key worked again {recovered:?} after Postgres restarted",
        during - edges.len()
    );
}

/// A Postgres of this test's own, created in a scratch directory, on a free loopback port, trusting
/// every local connection.
struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
    /// Who runs the server: initdb refuses to run as root.
    user: Option<&'static str>,
    running: bool,
}

impl PrivatePostgres {
    fn create(dir: PathBuf) -> PrivatePostgres {
        let initdb = postgres_tool("initdb");
        let pg_ctl = postgres_tool("pg_ctl");
        let user = is_root().then_some("postgres");
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(user) = user {
            run(Command::new("chown").arg(user).arg(&dir), &dir);
        }
        let mut init = as_user(&initdb, user);
        init.arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync"]);
        run(&mut init, &dir);
        let mut pg = PrivatePostgres {
            port: herald_cluster::free_port().unwrap(),
            dir,
            pg_ctl,
            user,
            running: false,
        };
        pg.start();
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&mut self) {
        // No fsync (an OS crash is not the fault under test), but commits stay synchronous: an
        // immediate stop loses the WAL not yet written, and with it what was just committed.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let mut start = as_user(&self.pg_ctl, self.user);
        start
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &options, "-w", "start"]);
        run(&mut start, &self.dir);
        self.running = true;
    }

    /// As a crash would: no shutdown checkpoint, every connection cut.
    fn stop_immediately(&mut self) {
        let mut stop = as_user(&self.pg_ctl, self.user);
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        run(&mut stop, &self.dir);
        self.running = false;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            self.stop_immediately();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `initdb` or `pg_ctl`: on `PATH`, or in Debian's `/usr/lib/postgresql/<version>/bin`, which
/// is off `PATH`.
fn postgres_tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    let debian = || {
        let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin").join(name))
            .filter(|p| p.is_file())
            .collect();
        bins.sort_by_key(|p| {
            let version = p.components().nth(4).map(|c| c.as_os_str().to_owned());
            version.and_then(|v| v.to_str()?.parse::<u32>().ok())
        });
        bins.pop()
    };
    on_path
        .or_else(debian)
        .unwrap_or_else(|| panic!("{name} is neither on PATH nor in /usr/lib/postgresql"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn as_user(program: &Path, user: Option<&str>) -> Command {
    match user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Runs `cmd` in `dir` (which the Postgres user can enter), failing the test with its output.
fn run(cmd: &mut Command, dir: &Path) {
    let out = cmd
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}\nserver log:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}
