//! The Postgres and Redis the tests run against.
//!
//! The tests never skip for want of a service: they use the servers the environment names (or the
//! usual local ports), and where one does not answer we start a private one in a scratch
//! directory, installing the server packages first when we are allowed to (root with apt-get).
//! Private instances stop, and the directory goes, when [`Services`] is dropped, whether the run
//! passed, failed or panicked.

use std::{
    env, fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};

use crate::{
    cmd::{self, say},
    postgres, redis,
    url::{redact, Endpoint},
};

pub const DATABASE_URL_VAR: &str = "HERALD_TEST_DATABASE_URL";
pub const REDIS_URL_VAR: &str = "HERALD_TEST_REDIS_URL";
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// How long a probe waits for a connection or an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Scratch directories are named `herald-xtask-<pid>-<nanos>`, so that a later run can tell which
/// ones an interrupted run left behind.
const SCRATCH_PREFIX: &str = "herald-xtask-";

/// `cargo xtask services`: bring the services up, check that they answer, and stop them again.
pub fn run() -> Result<()> {
    let services = Services::ensure()?;
    let database = Endpoint::parse(&services.database_url, postgres::DEFAULT_PORT)?;
    postgres::probe(&database, PROBE_TIMEOUT)?;
    let redis = Endpoint::parse(&services.redis_url, redis::DEFAULT_PORT)?;
    redis::probe(&redis, PROBE_TIMEOUT)?;
    for (name, value) in services.env() {
        println!("{name}={}", redact(&value));
    }
    Ok(())
}

/// The services of one run. Field order matters: fields drop in declaration order, so the private
/// instances stop before their scratch directory is removed.
pub struct Services {
    database_url: String,
    redis_url: String,
    private_postgres: Option<postgres::Private>,
    private_redis: Option<redis::Private>,
    scratch: Option<Scratch>,
}

impl Services {
    /// Finds a Postgres and a Redis that answer, starting private ones where needed.
    pub fn ensure() -> Result<Services> {
        remove_stale_scratch();
        let database_url = env_or(DATABASE_URL_VAR, DEFAULT_DATABASE_URL);
        let redis_url = env_or(REDIS_URL_VAR, DEFAULT_REDIS_URL);
        let database = Endpoint::parse(&database_url, postgres::DEFAULT_PORT)
            .with_context(|| format!("reading {DATABASE_URL_VAR}"))?;
        let redis = Endpoint::parse(&redis_url, redis::DEFAULT_PORT)
            .with_context(|| format!("reading {REDIS_URL_VAR}"))?;

        let postgres_up = answers("Postgres", &database_url, || {
            postgres::probe(&database, PROBE_TIMEOUT)
        });
        let redis_up = answers("Redis", &redis_url, || redis::probe(&redis, PROBE_TIMEOUT));
        let mut services = Services {
            database_url,
            redis_url,
            private_postgres: None,
            private_redis: None,
            scratch: None,
        };
        if postgres_up && redis_up {
            return Ok(services);
        }

        let programs = find_or_install(!postgres_up, !redis_up)?;
        let scratch = services.scratch.insert(Scratch::create()?);
        let scratch_path = scratch.path.clone();
        if let Some(binaries) = &programs.postgres {
            let private =
                postgres::Private::start(binaries, &scratch_path.join("postgres"), free_port()?)?;
            say(format_args!(
                "Postgres: {} (private, in {})",
                private.url,
                scratch_path.display()
            ));
            services.database_url = private.url.clone();
            services.private_postgres = Some(private);
        }
        if let Some(redis_server) = &programs.redis_server {
            let private = redis::Private::start(redis_server, &scratch_path, free_port()?)?;
            say(format_args!(
                "Redis: {} (private, in {})",
                private.url,
                scratch_path.display()
            ));
            services.redis_url = private.url.clone();
            services.private_redis = Some(private);
        }
        Ok(services)
    }

    /// The variables that tell the tests where the services are.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            (DATABASE_URL_VAR, self.database_url.clone()),
            (REDIS_URL_VAR, self.redis_url.clone()),
        ]
    }
}

/// Probes a service and says what it found.
fn answers(name: &str, url: &str, probe: impl FnOnce() -> Result<()>) -> bool {
    match probe() {
        Ok(()) => {
            say(format_args!("{name}: {}", redact(url)));
            true
        }
        Err(err) => {
            say(format_args!(
                "{name}: nothing usable at {} ({err:#}); starting a private one",
                redact(url)
            ));
            false
        }
    }
}

/// The server programs for the private instances we need.
struct Programs {
    postgres: Option<postgres::Binaries>,
    redis_server: Option<PathBuf>,
}

/// Finds the server programs for the private instances we need, first installing the Debian
/// packages that provide any that are missing, when we may (root, with apt-get).
fn find_or_install(need_postgres: bool, need_redis: bool) -> Result<Programs> {
    let find = || Programs {
        postgres: need_postgres.then(postgres::Binaries::find).flatten(),
        redis_server: need_redis.then(|| cmd::which("redis-server")).flatten(),
    };
    // For each program we lack: the Debian package, the reason, and the variable that avoids it.
    let missing = |found: &Programs| {
        let mut missing = Vec::new();
        if need_postgres && found.postgres.is_none() {
            missing.push((
                "postgresql",
                "cannot start a private Postgres: initdb and pg_ctl are neither on PATH nor in \
                 /usr/lib/postgresql/*/bin",
                DATABASE_URL_VAR,
            ));
        }
        if need_redis && found.redis_server.is_none() {
            missing.push((
                "redis-server",
                "cannot start a private Redis: redis-server is not on PATH",
                REDIS_URL_VAR,
            ));
        }
        missing
    };
    let found = find();
    let lacking = missing(&found);
    if lacking.is_empty() {
        return Ok(found);
    }

    let packages: Vec<&str> = lacking.iter().map(|(package, ..)| *package).collect();
    let list = packages.join(" ");
    if !(cmd::is_root() && cmd::which("apt-get").is_some()) {
        let reasons: Vec<&str> = lacking.iter().map(|(_, reason, _)| *reason).collect();
        let vars: Vec<&str> = lacking.iter().map(|(.., var)| *var).collect();
        bail!(
            "{}; install the Debian package(s) {list} (`sudo apt-get install {list}`), \
             or set {} to a running server",
            reasons.join("; "),
            vars.join(" and "),
        );
    }
    say(format_args!(
        "installing {list} to run private test servers"
    ));
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let found = find();
    if !missing(&found).is_empty() {
        bail!("installed {list}, but still cannot find the server programs");
    }
    Ok(found)
}

/// A port on 127.0.0.1 that nothing listens on right now. The listener is closed before the server
/// binds the port, so another process could take it in between; on a test machine that is
/// unlikely enough.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn env_or(name: &str, default: &str) -> String {
    env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A directory of our own under the system's temporary directory, removed on drop.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create() -> Result<Scratch> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!("{SCRATCH_PREFIX}{}-{nanos}", std::process::id());
        let path = env::temp_dir().join(name);
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        // When we are root, the private Postgres runs as `postgres` and must be able to enter this
        // directory whatever our umask.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        }
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: could not remove {}: {err}", self.path.display());
        }
    }
}

/// Cleans up after earlier runs that were interrupted (Ctrl-C, a cancelled CI job) before they
/// could stop their private instances. pg_ctl detaches the postmaster into a session of its own,
/// so it outlives its parent and would otherwise keep its port and directory until reboot.
fn remove_stale_scratch() {
    let Ok(entries) = fs::read_dir(env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(SCRATCH_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let dir = entry.path();
        let cluster = dir.join("postgres");
        if cluster.join("data/postmaster.pid").exists() {
            let Some(binaries) = postgres::Binaries::find() else {
                continue; // cannot stop it; leave it for a run that can
            };
            let user = postgres::run_as().ok().flatten();
            if let Err(err) = postgres::stop(&binaries.pg_ctl, &cluster, user, "immediate") {
                eprintln!(
                    "warning: could not stop the Postgres left in {}: {err:#}",
                    dir.display()
                );
                continue;
            }
        }
        redis::kill_stale(&dir);
        say(format_args!(
            "removing {}, left by an interrupted run",
            dir.display()
        ));
        if let Err(err) = fs::remove_dir_all(&dir) {
            eprintln!("warning: could not remove {}: {err}", dir.display());
        }
    }
}

/// Whether process `pid` still runs. `/proc` sees every user's processes; where there is none,
/// `kill -0` is the portable check.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        return proc.join(pid.to_string()).exists();
    }
    cmd::succeeds(Command::new("kill").args(["-0", &pid.to_string()]))
}
