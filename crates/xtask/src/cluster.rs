//! `cargo xtask cluster up|down|status`: a Herald cluster on this machine — `herald admin`, three
//! `herald edge` and a private nginx in front, on Postgres and Redis — started by the same
//! launcher as the multi-process fault tests (`crates/cluster`).
//!
//! Postgres and Redis are the ones on their standard loopback ports (or `HERALD_TEST_DATABASE_URL`
//! / `HERALD_TEST_REDIS_URL`); where none answers, `up` starts private ones in the state
//! directory, which `down` stops again. The cluster gets a database of its own,
//! `herald_cluster`, and the Redis prefix `herald-cluster`, so it shares a server with the tests
//! without touching their data; both outlive `down` (data is kept for the next `up`).
//!
//! `up --redis-cluster` puts the edges on a private three-master Redis Cluster instead
//! (`target/cluster/redis-cluster/`, fresh on every `up`, stopped by `down`).
//!
//! State lives in `target/cluster/` (see `crates/cluster/src/lib.rs` for the layout), plus
//! `services.state` here: what `up` started besides the cluster.

use std::{
    env, fs,
    mem::ManuallyDrop,
    net::SocketAddr,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use herald_cluster::{Cluster, Spec};

use crate::{
    cmd::{self, say},
    postgres, redis,
    url::Endpoint,
};

const USAGE: &str = "Usage: cargo xtask cluster up [--redis-cluster]|down|status";
const DATABASE: &str = "herald_cluster";
const SERVICES_STATE: &str = "services.state";
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn run(args: &[&str]) -> Result<()> {
    let root = crate::workspace_root();
    let state = crate::test::target_dir(&root).join("cluster");
    match args {
        ["up"] => up(&root, &state, false),
        ["up", "--redis-cluster"] => up(&root, &state, true),
        ["down"] => down(&state),
        ["status"] => status(&state),
        _ => bail!("{USAGE}"),
    }
}

fn up(root: &Path, state: &Path, redis_cluster: bool) -> Result<()> {
    if let Ok(recorded) = herald_cluster::read_state(state) {
        if recorded.iter().any(|p| herald_cluster::alive(p.pid)) {
            bail!("a cluster is already up (`cargo xtask cluster status`; `cargo xtask cluster down` stops it)");
        }
    }
    crate::deploy::ensure_nginx()?;
    cmd::run(crate::test::cargo(root).args(["build", "-p", "herald"]))?;
    fs::create_dir_all(state)?;
    let (database_url, mut redis_url) = services(state, !redis_cluster)?;
    let database_url = herald_cluster::create_database(&database_url, DATABASE)
        .context("creating the cluster's database")?;
    if redis_cluster {
        redis_url = start_redis_cluster(state)?;
    }

    let mut spec = Spec::new(
        crate::test::herald_bin(root),
        &database_url,
        &redis_url,
        state.to_path_buf(),
    );
    spec.redis_prefix = "herald-cluster".to_owned();
    spec.redis_cluster = redis_cluster;
    spec.detached = true;
    spec.drain_secs = 10;
    let cluster = Cluster::start(spec)?;
    println!("{}", cluster.describe());
    println!(
        "Sign up at {}/api/v1/signup (admin API), publish and subscribe at {}/v1/...",
        cluster.admin.url(),
        cluster.url()
    );
    println!("`cargo xtask cluster status` shows what runs; `cargo xtask cluster down` stops it.");
    cluster.detach();
    Ok(())
}

/// A private three-master Redis Cluster in `<state>/redis-cluster`, its servers recorded in
/// `services.state` for `down`; answers its seed list.
fn start_redis_cluster(state: &Path) -> Result<String> {
    cmd::which("redis-server")
        .context("redis-server is missing: install the Debian package redis-server")?;
    let dir = state.join("redis-cluster");
    let _ = fs::remove_dir_all(&dir);
    let cluster = herald_cluster::redis_cluster::RedisCluster::start(&dir, 3, true)?;
    let seeds = cluster.seeds();
    say(format_args!(
        "Redis Cluster: {seeds} (private, in {})",
        dir.display()
    ));
    let mut recorded = fs::read_to_string(state.join(SERVICES_STATE)).unwrap_or_default();
    for m in &cluster.masters {
        if let Some(pid) = m.pid() {
            recorded += &format!("redis {pid}\n");
        }
    }
    fs::write(state.join(SERVICES_STATE), recorded)?;
    cluster.detach();
    Ok(seeds)
}

/// The Postgres and (when `redis` is asked for) Redis URLs, starting private servers in
/// `<state>/services` where none answers; those are recorded in `services.state` for `down`.
fn services(state: &Path, redis: bool) -> Result<(String, String)> {
    let database_url = env_or(
        "HERALD_TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let redis_url = env_or("HERALD_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let mut recorded = String::new();
    let dir = state.join("services");

    let database_url = if postgres::probe(
        &Endpoint::parse(&database_url, postgres::DEFAULT_PORT)?,
        PROBE_TIMEOUT,
    )
    .is_ok()
    {
        database_url
    } else {
        let binaries = postgres::Binaries::find().context(
            "no Postgres answers and initdb/pg_ctl are missing: install the Debian package postgresql",
        )?;
        fs::create_dir_all(&dir)?;
        let _ = fs::remove_dir_all(dir.join("postgres"));
        let private = postgres::Private::start(
            &binaries,
            &dir.join("postgres"),
            herald_cluster::free_port()?,
        )?;
        say(format_args!(
            "Postgres: {} (private, in {})",
            private.url,
            dir.display()
        ));
        recorded += &format!("postgres {}\n", dir.join("postgres").display());
        // It outlives us: `down` stops it.
        ManuallyDrop::new(private).url.clone()
    };
    let redis_url = if !redis
        || redis::probe(
            &Endpoint::parse(&redis_url, redis::DEFAULT_PORT)?,
            PROBE_TIMEOUT,
        )
        .is_ok()
    {
        redis_url
    } else {
        let server = cmd::which("redis-server").context(
            "no Redis answers and redis-server is missing: install the Debian package redis-server",
        )?;
        fs::create_dir_all(&dir)?;
        let private = redis::Private::start(&server, &dir, herald_cluster::free_port()?)?;
        say(format_args!(
            "Redis: {} (private, in {})",
            private.url,
            dir.display()
        ));
        let pid = fs::read_to_string(dir.join("redis.pid"))?;
        recorded += &format!("redis {}\n", pid.trim());
        ManuallyDrop::new(private).url.clone()
    };
    fs::write(state.join(SERVICES_STATE), recorded)?;
    Ok((database_url, redis_url))
}

fn down(state: &Path) -> Result<()> {
    let mut recorded = match herald_cluster::read_state(state) {
        Ok(recorded) => recorded,
        Err(_) => {
            say("no cluster recorded in target/cluster");
            Vec::new()
        }
    };
    // nginx first, so that no new request reaches an edge that is going away; then the edges,
    // which drain their streams; the admin last.
    recorded.sort_by_key(|p| match p.name.as_str() {
        "nginx" => 0,
        "admin" => 2,
        _ => 1,
    });
    for process in &recorded {
        if !herald_cluster::alive(process.pid) {
            continue;
        }
        say(format_args!(
            "stopping {} (pid {})",
            process.name, process.pid
        ));
        let _ = herald_cluster::signal(process.pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while herald_cluster::alive(process.pid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        if herald_cluster::alive(process.pid) {
            say(format_args!(
                "{} did not stop within 15 s: SIGKILL",
                process.name
            ));
            let _ = herald_cluster::signal(process.pid, "KILL");
        }
    }
    let _ = fs::remove_file(state.join(herald_cluster::STATE_FILE));
    if let Ok(services) = fs::read_to_string(state.join(SERVICES_STATE)) {
        for line in services.lines() {
            match line.split_once(' ') {
                Some(("redis", pid)) => {
                    say(format_args!("stopping the private Redis (pid {pid})"));
                    let _ = cmd::succeeds(Command::new("kill").arg(pid));
                }
                Some(("postgres", dir)) => {
                    say(format_args!("stopping the private Postgres in {dir}"));
                    if let Some(binaries) = postgres::Binaries::find() {
                        postgres::stop(
                            &binaries.pg_ctl,
                            Path::new(dir),
                            postgres::run_as()?,
                            "fast",
                        )?;
                    }
                }
                _ => {}
            }
        }
        let _ = fs::remove_file(state.join(SERVICES_STATE));
    }
    Ok(())
}

fn status(state: &Path) -> Result<()> {
    let recorded = herald_cluster::read_state(state)
        .context("no cluster is up (`cargo xtask cluster up` starts one)")?;
    let mut running = 0;
    for p in &recorded {
        let alive = herald_cluster::alive(p.pid);
        running += usize::from(alive);
        let ready = if alive {
            match herald_cluster::http_status(SocketAddr::from(([127, 0, 0, 1], p.port)), "/readyz")
            {
                Some(status) => format!("/readyz {status}"),
                None => "not answering".to_owned(),
            }
        } else {
            String::new()
        };
        println!(
            "{:<8} pid {:<8} http://127.0.0.1:{:<6} {:<8} {ready}",
            p.name,
            p.pid,
            p.port,
            if alive { "running" } else { "stopped" },
        );
    }
    println!(
        "{running} of {} processes running; logs in {}",
        recorded.len(),
        state.display()
    );
    Ok(())
}

fn env_or(name: &str, default: &str) -> String {
    env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}
