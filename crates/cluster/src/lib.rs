//! A Herald cluster on one machine: one `herald admin`, several `herald edge` processes on their
//! own loopback ports, and a private nginx in front of the edges, all on a Postgres and a Redis
//! that the caller provides.
//!
//! `cargo xtask cluster up|down|status` and the multi-process fault tests (`tests/`) start the
//! very same processes through [`Cluster::start`], so what the tests prove is what an operator
//! runs. The crate depends on std and anyhow only, because xtask links it and must stay quick to
//! compile on a cold runner.
//!
//! Everything a cluster writes lives in its state directory:
//!
//! ```text
//! <state>/plans.toml            the plans every process loads (when the spec asks for one)
//! <state>/admin.log             stdout and stderr of `herald admin`
//! <state>/edge-<n>.log          ... of edge n (1-based)
//! <state>/nginx/nginx.conf      the private nginx's own configuration, prefix and temp dirs
//! <state>/nginx/error.log       nginx's error log; access.log next to it
//! <state>/cluster.state         `name pid port` per process, for `cargo xtask cluster down|status`
//! <state>/redis-cluster/        a private Redis Cluster's servers, when one was asked for
//!                               (`redis_cluster.rs`)
//! ```
//!
//! nginx never touches the system nginx: it runs with `-p <state>/nginx -c nginx.conf -e
//! error.log`, its pid file and temp paths inside that prefix, in the foreground as our child.

pub mod nginx;
mod pg;
pub mod redis_cluster;

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

pub use pg::create_database;

/// How long a process may take to answer `/readyz` with 200 after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The file `cargo xtask cluster` reads to find the processes of a detached cluster.
pub const STATE_FILE: &str = "cluster.state";

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `herald` binary.
    pub herald_bin: PathBuf,
    /// The control-plane database (Postgres: every process shares it).
    pub database_url: String,
    /// The Redis every process uses for history and fan-out; with `redis_cluster`, the seed
    /// nodes of a Redis Cluster, comma-separated.
    pub redis_url: String,
    /// Whether `redis_url` names Redis Cluster seeds (`HERALD_REDIS_CLUSTER=1`).
    pub redis_cluster: bool,
    /// The Redis key prefix of this cluster, so that several share one Redis.
    pub redis_prefix: String,
    /// Logs, the nginx prefix and the state file.
    pub state_dir: PathBuf,
    /// How many edge processes.
    pub edges: usize,
    /// `--drain-secs` of every process.
    pub drain_secs: u64,
    /// `--heartbeat-secs` of every process.
    pub heartbeat_secs: u64,
    /// `--retry-ms` of every process: the reconnection delay streams announce.
    pub retry_ms: u64,
    /// A plans file body and the default plan, written to `<state>/plans.toml`; `None` keeps the
    /// built-in plans.
    pub plans: Option<(String, String)>,
    /// Ports to use instead of free ones: `[nginx, admin, edge 1, ...]`.
    pub ports: Option<Vec<u16>>,
    /// Whether the processes should outlive the caller (`cargo xtask cluster up`): each gets a
    /// process group of its own, so a Ctrl-C in the caller's terminal does not reach them.
    pub detached: bool,
    /// More environment for every `herald` process (say, `OTEL_*` for trace export).
    pub env: Vec<(String, String)>,
}

impl Spec {
    /// A three-edge cluster on `database_url` and `redis_url`, with the defaults the tests and
    /// `cargo xtask cluster up` share.
    pub fn new(
        herald_bin: PathBuf,
        database_url: &str,
        redis_url: &str,
        state_dir: PathBuf,
    ) -> Spec {
        Spec {
            herald_bin,
            database_url: database_url.to_owned(),
            redis_url: redis_url.to_owned(),
            redis_cluster: false,
            redis_prefix: "herald".to_owned(),
            state_dir,
            edges: 3,
            drain_secs: 5,
            heartbeat_secs: 15,
            retry_ms: 1000,
            plans: None,
            ports: None,
            detached: false,
            env: Vec::new(),
        }
    }
}

/// One `herald` process of the cluster.
#[derive(Debug)]
pub struct Node {
    /// `admin` or `edge-<n>`.
    pub name: String,
    /// Its loopback port.
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running cluster; every process it started is stopped when it is dropped (unless
/// [`Cluster::detach`]ed).
#[derive(Debug)]
pub struct Cluster {
    spec: Spec,
    /// The admin process.
    pub admin: Node,
    /// The edge processes, edge 1 first.
    pub edges: Vec<Node>,
    nginx_port: u16,
    nginx: Option<Child>,
}

impl Cluster {
    /// Starts the admin (which migrates the database), then the edges, then nginx, and returns
    /// once every one answers `/readyz` (nginx: through to an edge).
    pub fn start(spec: Spec) -> Result<Cluster> {
        fs::create_dir_all(&spec.state_dir)
            .with_context(|| format!("creating {}", spec.state_dir.display()))?;
        let ports = match &spec.ports {
            Some(ports) => {
                if ports.len() != spec.edges + 2 {
                    bail!("{} ports given, {} needed", ports.len(), spec.edges + 2);
                }
                ports.clone()
            }
            None => (0..spec.edges + 2)
                .map(|_| free_port())
                .collect::<Result<_>>()?,
        };
        if let Some((body, _)) = &spec.plans {
            fs::write(spec.state_dir.join("plans.toml"), body)?;
        }
        let mut cluster = Cluster {
            admin: Node {
                name: "admin".to_owned(),
                port: ports[1],
                child: None,
            },
            edges: (0..spec.edges)
                .map(|i| Node {
                    name: format!("edge-{}", i + 1),
                    port: ports[i + 2],
                    child: None,
                })
                .collect(),
            nginx_port: ports[0],
            nginx: None,
            spec,
        };
        cluster.admin.child = Some(cluster.spawn_herald("admin", "admin", cluster.admin.port)?);
        wait_ready(&mut cluster.admin, READY_TIMEOUT)?;
        for i in 0..cluster.edges.len() {
            cluster.start_edge_process(i)?;
        }
        for i in 0..cluster.edges.len() {
            let log = cluster.log_path(&cluster.edges[i].name);
            wait_ready(&mut cluster.edges[i], READY_TIMEOUT)
                .with_context(|| format!("see {}", log.display()))?;
        }
        cluster.start_nginx()?;
        cluster.write_state()?;
        Ok(cluster)
    }

    /// The public URL: nginx in front of the edges.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx_port)
    }

    /// nginx's port.
    pub fn nginx_port(&self) -> u16 {
        self.nginx_port
    }

    /// What the cluster was started with.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// `kill -9` of edge `i` (0-based).
    pub fn kill_edge(&mut self, i: usize) {
        self.edges[i].kill();
    }

    /// SIGTERM to edge `i` and waits until it has exited; returns how long it took, and fails
    /// when the process exits unsuccessfully or takes longer than `limit`.
    pub fn terminate_edge(&mut self, i: usize, limit: Duration) -> Result<Duration> {
        let node = &mut self.edges[i];
        let Some(mut child) = node.child.take() else {
            bail!("{} is not running", node.name);
        };
        let started = Instant::now();
        signal(child.id(), "TERM")?;
        loop {
            if let Some(status) = child.try_wait()? {
                let took = started.elapsed();
                if !status.success() {
                    bail!("{} exited with {status} after SIGTERM", node.name);
                }
                return Ok(took);
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not exit within {limit:?} of SIGTERM", node.name);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts edge `i` again on its port (after a kill or a terminate) and waits until it is
    /// ready.
    pub fn restart_edge(&mut self, i: usize) -> Result<()> {
        self.start_edge_process(i)?;
        wait_ready(&mut self.edges[i], READY_TIMEOUT)
    }

    /// Leaves every process running after `self` is gone (for `cargo xtask cluster up`); the
    /// state file says what to stop.
    pub fn detach(mut self) {
        self.admin.child = None;
        for edge in &mut self.edges {
            edge.child = None;
        }
        self.nginx = None;
    }

    /// A human-readable summary: what runs where.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "public (nginx): {}", self.url());
        let _ = writeln!(out, "admin:          {}", self.admin.url());
        for edge in &self.edges {
            let _ = writeln!(out, "{:<15} {}", format!("{}:", edge.name), edge.url());
        }
        let _ = writeln!(out, "state and logs: {}", self.spec.state_dir.display());
        out
    }

    fn start_edge_process(&mut self, i: usize) -> Result<()> {
        let (name, port) = (self.edges[i].name.clone(), self.edges[i].port);
        let child = self.spawn_herald("edge", &name, port)?;
        self.edges[i].child = Some(child);
        Ok(())
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.spec.state_dir.join(format!("{name}.log"))
    }

    fn spawn_herald(&self, command: &str, name: &str, port: u16) -> Result<Child> {
        let spec = &self.spec;
        let log_path = self.log_path(name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = Command::new(&spec.herald_bin);
        cmd.arg(command)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--drain-secs", &spec.drain_secs.to_string()])
            .args(["--heartbeat-secs", &spec.heartbeat_secs.to_string()])
            .args(["--retry-ms", &spec.retry_ms.to_string()])
            // Credentials go through the environment, as in deploy/, never on a command line
            // that `ps` shows.
            .env("HERALD_DATABASE_URL", &spec.database_url)
            .env("HERALD_REDIS_URL", &spec.redis_url)
            .env("HERALD_REDIS_PREFIX", &spec.redis_prefix)
            .env(
                "HERALD_REDIS_CLUSTER",
                if spec.redis_cluster { "1" } else { "0" },
            )
            .env("HERALD_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Links and the web admin's origin checks are about the URL people use.
        if command == "edge" {
            cmd.args(["--public-url", &self.url()]);
        }
        for var in ["HERALD_PLANS", "HERALD_DEFAULT_PLAN", "HERALD_PUBLIC_URL"] {
            cmd.env_remove(var);
        }
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some((_, default)) = &spec.plans {
            cmd.arg("--plans")
                .arg(spec.state_dir.join("plans.toml"))
                .args(["--default-plan", default]);
        }
        if spec.detached {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        cmd.spawn()
            .with_context(|| format!("starting {}", spec.herald_bin.display()))
    }

    fn start_nginx(&mut self) -> Result<()> {
        let prefix = self.spec.state_dir.join("nginx");
        let upstreams: Vec<u16> = self.edges.iter().map(|e| e.port).collect();
        let nginx = nginx::find()?;
        let child = nginx::start(
            &nginx,
            &prefix,
            self.nginx_port,
            &upstreams,
            self.spec.detached,
        )?;
        self.nginx = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.nginx_port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if http_status(addr, "/readyz") == Some(200) {
                return Ok(());
            }
            if let Some(status) = self
                .nginx
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                let log = fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
                bail!("nginx exited ({status}):\n{log}");
            }
            if Instant::now() > deadline {
                bail!("nginx did not answer /readyz within {READY_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn write_state(&self) -> Result<()> {
        let mut state = String::new();
        let nginx_pid = self.nginx.as_ref().map_or(0, Child::id);
        let _ = writeln!(state, "nginx {nginx_pid} {}", self.nginx_port);
        for node in std::iter::once(&self.admin).chain(&self.edges) {
            let _ = writeln!(
                state,
                "{} {} {}",
                node.name,
                node.pid().unwrap_or(0),
                node.port
            );
        }
        let path = self.spec.state_dir.join(STATE_FILE);
        fs::write(&path, state).with_context(|| format!("writing {}", path.display()))
    }
}

impl Cluster {
    /// Stops every process the cluster started and waits for each to exit; stopping twice is
    /// harmless. What a test cleans up after the cluster (its Redis keys, its database) must wait
    /// for this, or a process still running writes it back.
    pub fn stop(&mut self) {
        // nginx gets SIGTERM, not SIGKILL: a killed master leaves its workers behind.
        if let Some(mut nginx) = self.nginx.take() {
            let _ = signal(nginx.id(), "TERM");
            let _ = nginx.wait();
        }
        for edge in &mut self.edges {
            edge.kill();
        }
        self.admin.kill();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One process recorded in a state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub name: String,
    pub pid: u32,
    pub port: u16,
}

/// The processes a state file records.
pub fn read_state(state_dir: &Path) -> Result<Vec<Recorded>> {
    let path = state_dir.join(STATE_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let (Some(name), Some(pid), Some(port)) = (words.next(), words.next(), words.next())
            else {
                bail!("{}: unreadable line {line:?}", path.display());
            };
            Ok(Recorded {
                name: name.to_owned(),
                pid: pid.parse()?,
                port: port.parse()?,
            })
        })
        .collect()
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends `SIG<name>` to `pid` with kill(1): std only kills with SIGKILL.
pub fn signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

/// The status of `GET <path>` on `addr`, or `None` when nothing answers within a second.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let timeout = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(stream.take(1024))
        .read_line(&mut line)
        .ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A port on 127.0.0.1 that nothing listens on right now (closed again before the process that
/// uses it binds it; on one machine that is close enough).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_ready(node: &mut Node, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
    let deadline = Instant::now() + timeout;
    loop {
        if http_status(addr, "/readyz") == Some(200) {
            return Ok(());
        }
        if let Some(status) = node
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok())
            .flatten()
        {
            node.child = None;
            bail!("{} exited ({status}) before it was ready", node.name);
        }
        if Instant::now() > deadline {
            bail!("{} did not answer /readyz within {timeout:?}", node.name);
        }
        thread::sleep(Duration::from_millis(20));
    }
}
