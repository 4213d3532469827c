//! `cargo xtask schemathesis` (and the last step of `cargo xtask test`): Schemathesis, from PyPI,
//! against a live Herald using the committed `api-spec/openapi.json`, over every operation, with
//! an authenticated session and an admin API key. A 5xx, an undocumented status, content type or
//! header, or a body that does not match its documented schema fails the step.
//!
//! Schemathesis is installed with pip into a virtualenv under `target/` (once; later runs reuse
//! it). The server is the debug `herald` binary on a free loopback port with a fresh SQLite
//! database, so the run needs neither Postgres nor Redis and leaves nothing behind but its log.
//!
//! Three passes, so that every operation is exercised without one destroying what the others
//! need: (1) everything but the two below and the streams; (2) `DELETE /api/v1/tenants/{tenant}`
//! and `POST /api/v1/logout`, which end the tenant and the session; (3) the two SSE subscribe
//! operations, with a Bearer credential that is not valid: an accepted stream never ends, which
//! an HTTP fuzzer can only report as a timeout, so this pass checks their error answers.

use std::{
    fs,
    io::{BufRead, BufReader, Read},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::cmd::{self, say};

/// The Schemathesis release line the run is written for.
const SCHEMATHESIS: &str = "schemathesis>=4.32,<5";
/// Examples per operation and phase: enough to find the edges, short enough for every CI run.
const MAX_EXAMPLES: &str = "25";
/// A fixed seed: the same cases on every run, so a failure reproduces.
const SEED: &str = "20260301";
/// What a response must satisfy.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";
/// How long the server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Signs up (tenant `acme`, as in the document's examples), creates an admin key, and prints the
/// session cookie and the key, one per line. Only the standard library, so it runs on any python3.
const SETUP: &str = r#"
import json, sys, urllib.request
base = sys.argv[1]
def post(path, body, cookie=None):
    headers = {"content-type": "application/json", "origin": base}
    if cookie:
        headers["cookie"] = cookie
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers, json.load(r)
h, _ = post("/api/v1/signup", {"email": "ann@example.com", "password": "correct horse battery staple",
                               "tenant": {"slug": "acme", "name": "Acme"}})
cookie = h["set-cookie"].split(";")[0]
_, key = post("/api/v1/tenants/acme/keys",
              {"name": "schemathesis", "scopes": ["publish", "subscribe", "admin"]}, cookie)
print(cookie)
print(key["secret"])
"#;

/// Runs the three passes against a fresh server started from `herald_bin`.
pub fn run(root: &Path, target: &Path, herald_bin: &Path) -> Result<()> {
    let schemathesis = install(target)?;
    let dir = target.join("schemathesis-run");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let server = Server::start(herald_bin, &dir)?;
    let base = server.base.clone();
    say(format!(
        "herald for schemathesis at {base} (log: {})",
        dir.join("herald.log").display()
    ));

    let python = schemathesis.with_file_name("python3");
    let creds = cmd::output(Command::new(&python).args(["-c", SETUP, &base]))?;
    let mut lines = creds.lines();
    let (Some(cookie), Some(key)) = (lines.next(), lines.next()) else {
        bail!("the sign-up script printed no credentials: {creds}");
    };
    let spec = root.join("api-spec").join("openapi.json");
    let pass = |extra: &[&str], auth: &str, with_session: bool| {
        let mut c = Command::new(&schemathesis);
        // Schemathesis keeps its cache in `.schemathesis/` of its working directory: not the repository.
        c.current_dir(&dir)
            .arg("run")
            .arg(&spec)
            .args([
                "--url",
                &base,
                "--checks",
                CHECKS,
                "--max-examples",
                MAX_EXAMPLES,
            ])
            .args(["--seed", SEED, "--request-timeout", "10"])
            .args(["-H", &format!("Authorization: Bearer {auth}")])
            .args(["-H", &format!("Origin: {base}")])
            .args(extra);
        if with_session {
            c.args(["-H", &format!("Cookie: {cookie}")]);
        }
        cmd::run(&mut c)
    };
    let destructive = ["delete_tenant", "logout"];
    let streams = ["subscribe", "subscribe_many"];
    let exclude: Vec<String> = destructive
        .iter()
        .chain(&streams)
        .flat_map(|id| ["--exclude-operation-id".to_owned(), (*id).to_owned()])
        .collect();
    let include = |ids: &[&str]| -> Vec<String> {
        ids.iter()
            .flat_map(|id| ["--include-operation-id".to_owned(), (*id).to_owned()])
            .collect()
    };
    let exclude: Vec<&str> = exclude.iter().map(String::as_str).collect();
    let destructive = include(&destructive);
    let destructive: Vec<&str> = destructive.iter().map(String::as_str).collect();
    let streams = include(&streams);
    let streams: Vec<&str> = streams.iter().map(String::as_str).collect();

    pass(&exclude, key, true)?;
    pass(&destructive, key, true)?;
    let invalid_key = format!("hk_{}", "0".repeat(40));
    pass(&streams, &invalid_key, false)?;
    drop(server);
    Ok(())
}

/// The `schemathesis` executable in `target/schemathesis-venv`, installed with pip when missing.
fn install(target: &Path) -> Result<PathBuf> {
    let venv = target.join("schemathesis-venv");
    let bin = venv.join("bin").join("schemathesis");
    if bin.is_file() {
        return Ok(bin);
    }
    let python = cmd::which("python3").context(
        "python3 is needed for the schemathesis step (Debian: apt-get install python3 python3-venv)",
    )?;
    say(format!(
        "installing {SCHEMATHESIS} from PyPI into {}",
        venv.display()
    ));
    cmd::run(Command::new(&python).args(["-m", "venv"]).arg(&venv))
        .context("cannot create a virtualenv (Debian: apt-get install python3-venv)")?;
    cmd::run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        SCHEMATHESIS,
    ]))?;
    if !bin.is_file() {
        bail!(
            "pip installed schemathesis, but there is no {}",
            bin.display()
        );
    }
    Ok(bin)
}

/// A `herald serve` of our own, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(herald_bin: &Path, dir: &Path) -> Result<Server> {
        // A free port: bind, note it, release it. The server binds it again at once; a clash
        // with another process in between fails the start loudly, not the test silently.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = fs::File::create(dir.join("herald.log"))?;
        let mut child = Command::new(herald_bin)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.join("herald.db").display()))
            .env("RUST_LOG", "warn")
            // The fuzzer signs up far more than 20 times an hour from one address.
            .env("HERALD_SIGNUP_PER_IP_PER_HOUR", "0")
            .env_remove("HERALD_REDIS_URL")
            .env_remove("HERALD_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", herald_bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let log_path = dir.join("herald.out");
        // Reads the start-up line, then keeps draining stdout into a file so the server never
        // blocks on a full pipe.
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if line.contains("herald admin:") {
                    let _ = ready_tx.send(());
                    break;
                }
                line.clear();
            }
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            let _ = fs::write(log_path, rest);
        });
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        if ready_rx.recv_timeout(START_TIMEOUT).is_err() {
            let status = server.child.try_wait().ok().flatten();
            bail!(
                "herald did not start within {} s ({status:?}); see {}",
                START_TIMEOUT.as_secs(),
                dir.join("herald.log").display()
            );
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
