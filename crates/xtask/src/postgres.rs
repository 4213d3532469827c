//! Postgres for the tests: a probe for a running server, and a private throwaway one when needed.

use std::{
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::{
    cmd::{self, say},
    url::{self, Endpoint},
};

pub const DEFAULT_PORT: u16 = 5432;

/// The user the private instance runs as when we are root; Debian's `postgresql` package creates it.
const SYSTEM_USER: &str = "postgres";

/// Whether a Postgres server answers at `endpoint`.
///
/// Without a client library the cheapest real check is the 8-byte SSLRequest (length 8, code
/// 80877103) that a client may send first: every Postgres answers it with one byte, `S` or `N`,
/// before any authentication, so the probe needs no credentials and leaves nothing behind.
pub fn probe(endpoint: &Endpoint, timeout: Duration) -> Result<()> {
    let mut stream = endpoint.connect(timeout)?;
    let mut request = [0; 8];
    request[..4].copy_from_slice(&8u32.to_be_bytes());
    request[4..].copy_from_slice(&80_877_103u32.to_be_bytes());
    stream
        .write_all(&request)
        .with_context(|| format!("sending an SSLRequest to {endpoint}"))?;
    let mut answer = [0];
    if let Err(err) = stream.read_exact(&mut answer) {
        return Err(url::no_answer(err, endpoint, "an SSLRequest", timeout));
    }
    match answer[0] {
        b'S' | b'N' => Ok(()),
        other => bail!(
            "{endpoint} answered an SSLRequest with byte {other:#04x}, not `S` or `N`: not Postgres"
        ),
    }
}

/// A matching `initdb` and `pg_ctl`.
pub struct Binaries {
    pub initdb: PathBuf,
    pub pg_ctl: PathBuf,
}

impl Binaries {
    /// Looks on `PATH` first (an explicit choice, and where Homebrew or Nix put them), then in
    /// Debian's `/usr/lib/postgresql/<version>/bin`, highest version first, since Debian keeps
    /// them off `PATH`.
    pub fn find() -> Option<Binaries> {
        if let (Some(initdb), Some(pg_ctl)) = (cmd::which("initdb"), cmd::which("pg_ctl")) {
            return Some(Binaries { initdb, pg_ctl });
        }
        let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let version = name
                    .split('.')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versions.sort();
        versions.into_iter().rev().find_map(|(_, bin)| {
            let (initdb, pg_ctl) = (bin.join("initdb"), bin.join("pg_ctl"));
            (initdb.is_file() && pg_ctl.is_file()).then_some(Binaries { initdb, pg_ctl })
        })
    }
}

/// A Postgres cluster of our own in a scratch directory, on a free loopback port, trusting every
/// local connection. Stopped when dropped.
pub struct Private {
    pg_ctl: PathBuf,
    /// Holds the cluster (`data/`), the server log and the Unix socket.
    dir: PathBuf,
    data: PathBuf,
    user: Option<&'static str>,
    pub url: String,
}

impl Private {
    /// Creates a cluster in `dir` (which must not exist yet) and starts it on `port`.
    pub fn start(binaries: &Binaries, dir: &Path, port: u16) -> Result<Private> {
        let user = run_as()?;
        fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        if let Some(user) = user {
            cmd::output(Command::new("chown").arg(user).arg(dir))?;
        }
        let data = dir.join("data");
        let mut initdb = Command::new(&binaries.initdb);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust"])
            // The same encoding and collation whatever the machine's locale; and no fsync, since
            // the cluster lives for one run.
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"]);
        cmd::output(&mut in_dir(cmd::as_user(initdb, user), dir))
            .context("initdb could not create the private Postgres cluster")?;

        // From here on, dropping `private` stops whatever pg_ctl managed to start.
        let private = Private {
            pg_ctl: binaries.pg_ctl.clone(),
            dir: dir.to_path_buf(),
            data,
            user,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        };
        // Durability is worthless here and costs the tests time; and the default of 100
        // connections is too few for many parallel test processes that each hold a pool.
        // pg_ctl hands these options to a shell, hence the quoting.
        let server_options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=500",
            cmd::shell_quote(&dir.to_string_lossy()),
        );
        let log = dir.join("server.log");
        let mut start = Command::new(&binaries.pg_ctl);
        start
            .arg("-D")
            .arg(&private.data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &server_options, "-w", "start"]);
        if let Err(err) = cmd::output(&mut in_dir(cmd::as_user(start, user), dir)) {
            // pg_ctl only says "Examine the log output", and the log goes with the scratch dir.
            let log = fs::read_to_string(&log).unwrap_or_default();
            bail!("{err:#}\nThe end of the server log:\n{}", tail(&log, 20));
        }
        Ok(private)
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        if !self.data.join("postmaster.pid").exists() {
            return; // never started, or already stopped
        }
        say(format_args!(
            "stopping the private Postgres at {}",
            self.url
        ));
        if let Err(err) = stop(&self.pg_ctl, &self.dir, self.user, "fast") {
            eprintln!("warning: could not stop the private Postgres: {err:#}");
        }
    }
}

/// Stops the cluster that [`Private::start`] created in `dir`, with the given shutdown `mode`.
/// Also used on clusters that an interrupted run left behind.
pub fn stop(pg_ctl: &Path, dir: &Path, user: Option<&str>, mode: &str) -> Result<()> {
    let mut stop = Command::new(pg_ctl);
    stop.arg("-D")
        .arg(dir.join("data"))
        .args(["-m", mode, "-w", "stop"]);
    cmd::output(&mut in_dir(cmd::as_user(stop, user), dir)).map(drop)
}

/// Runs the Postgres tools from their own directory: when they run as `postgres`, our working
/// directory may be one that user cannot enter, and initdb and pg_ctl complain about that.
fn in_dir(mut cmd: Command, dir: &Path) -> Command {
    cmd.current_dir(dir);
    cmd
}

/// The user to run initdb and pg_ctl as: ourselves, or `postgres` when we are root, because
/// initdb refuses to run as root.
pub fn run_as() -> Result<Option<&'static str>> {
    if !cmd::is_root() {
        return Ok(None);
    }
    if !cmd::succeeds(Command::new("id").arg(SYSTEM_USER)) {
        bail!(
            "running as root, and initdb refuses to run as root, but there is no `{SYSTEM_USER}` \
             user to run the private Postgres as; create one (`useradd --system {SYSTEM_USER}`), \
             run as an ordinary user, or set HERALD_TEST_DATABASE_URL to a running Postgres"
        );
    }
    Ok(Some(SYSTEM_USER))
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
