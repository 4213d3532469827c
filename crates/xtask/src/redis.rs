//! Redis for the tests: a probe for a running server, and a private throwaway one when needed.

use std::{
    fs::{self, File},
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    cmd::{self, say},
    url::{self, Endpoint},
};

pub const DEFAULT_PORT: u16 = 6379;

/// Where the private redis-server's pid is written, for [`kill_stale`].
const PID_FILE: &str = "redis.pid";

/// How long a freshly spawned redis-server gets to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a Redis server answers at `endpoint`: an inline `PING` must get `+PONG` back.
///
/// A server that wants a password answers `-NOAUTH` instead; that counts as an answer when the URL
/// carries a password, since the tests will authenticate with it.
pub fn probe(endpoint: &Endpoint, timeout: Duration) -> Result<()> {
    let mut stream = endpoint.connect(timeout)?;
    stream
        .write_all(b"PING\r\n")
        .with_context(|| format!("sending PING to {endpoint}"))?;
    let mut line = String::new();
    match BufReader::new(stream.take(256)).read_line(&mut line) {
        Ok(0) => bail!("{endpoint} closed the connection without answering PING"),
        Ok(_) => {}
        Err(err) => return Err(url::no_answer(err, endpoint, "PING", timeout)),
    }
    let line = line.trim_end();
    if line == "+PONG" || (endpoint.has_password && line.starts_with("-NOAUTH")) {
        return Ok(());
    }
    bail!("{endpoint} answered PING with {line:?}, not \"+PONG\"")
}

/// A redis-server of our own, a child process on a free loopback port that persists nothing.
/// Killed when dropped.
pub struct Private {
    child: Child,
    log: PathBuf,
    endpoint: Endpoint,
    pub url: String,
}

impl Private {
    /// Starts `redis_server` with its working files in `dir` (which must exist) and waits until it
    /// answers.
    pub fn start(redis_server: &Path, dir: &Path, port: u16) -> Result<Private> {
        let log = dir.join("redis.log");
        let log_file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(redis_server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("could not start {}", redis_server.display()))?;
        fs::write(dir.join(PID_FILE), child.id().to_string())?;
        // From here on, dropping `private` kills the child.
        let mut private = Private {
            child,
            log,
            endpoint: Endpoint {
                host: "127.0.0.1".to_owned(),
                port,
                has_password: false,
            },
            url: format!("redis://127.0.0.1:{port}"),
        };
        private.wait_until_ready()?;
        Ok(private)
    }

    /// Polls PING until the server answers, it exits, or [`START_TIMEOUT`] passes.
    fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let last_err = match probe(&self.endpoint, Duration::from_millis(500)) {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the private redis-server exited ({status}) before answering; its output:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() >= deadline {
                return Err(last_err.context(format!(
                    "the private redis-server did not answer PING within {START_TIMEOUT:?}; its output:\n{}",
                    self.log_text()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        say(format_args!("stopping the private Redis at {}", self.url));
        // It persists nothing, so there is nothing to shut down cleanly.
        if let Err(err) = self.child.kill().and_then(|()| self.child.wait().map(drop)) {
            eprintln!("warning: could not stop the private redis-server: {err}");
        }
    }
}

/// Stops the redis-server that an interrupted run left in `dir`, if it still runs.
///
/// Ctrl-C reaches the server anyway, as it shares our process group; this is for a run killed
/// alone. Linux only: `/proc/<pid>/cwd` must be `dir` (redis-server changes into its `--dir`),
/// which proves the pid has not been reused by an unrelated process since.
pub fn kill_stale(dir: &Path) {
    let Ok(pid) = fs::read_to_string(dir.join(PID_FILE)) else {
        return;
    };
    let pid = pid.trim();
    let cwd = fs::read_link(format!("/proc/{pid}/cwd"));
    if cwd.is_ok_and(|cwd| fs::canonicalize(dir).is_ok_and(|dir| cwd == dir)) {
        cmd::succeeds(Command::new("kill").arg(pid));
    }
}
