//! `cargo xtask bench`: the side-by-side benchmark. Builds Herald and the load generator in
//! release mode and runs `herald-loadgen suite`, which pins each server (Herald embedded, Herald
//! through Redis, Nchan) to core 0 and the generator to core 1, and writes `bench/RESULTS.md`.
//! Its numbers are printed, not judged: speed and memory are compared against the peer measured
//! in the same run, never asserted in a timed test. `smoke` is the short version the test
//! command runs: small counts, Herald only, and it fails unless every subscriber received
//! exactly its sequence.
//!
//! `cargo xtask bench --perf` runs the fan-out scenario with `perf record` attached to the server
//! and writes where its time goes to `bench/PROFILE.md`.
//!
//! `cargo xtask bench examples` runs the older in-process measurement programs of
//! `tests/examples` (latency, 1,000-subscriber fan-out, publish throughput).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd;
use crate::services::Services;

/// The in-process programs, each with what it measures.
const PROGRAMS: &[(&str, &str)] = &[
    ("latency", "publish→receive, one publisher, one subscriber"),
    (
        "fanout",
        "publish→receive with 1,000 subscribers on one channel",
    ),
    (
        "publish_throughput",
        "publishes per second of one key, rate limiter off and on",
    ),
];

pub fn run() -> Result<()> {
    let services = Services::ensure()?;
    let root = crate::workspace_root();
    ensure_tools(Tools::Nchan)?;
    let release = build_release(&root)?;
    suite(&root, &release, &services, Mode::Full)
}

/// `cargo xtask bench --perf`: the fan-out scenario under `perf record`, written to
/// `bench/PROFILE.md`.
pub fn perf() -> Result<()> {
    let services = Services::ensure()?;
    let root = crate::workspace_root();
    ensure_tools(Tools::Perf)?;
    let release = build_release(&root)?;
    suite(&root, &release, &services, Mode::Profile)
}

fn build_release(root: &Path) -> Result<std::path::PathBuf> {
    cmd::run(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "herald",
        "-p",
        "herald-loadgen",
    ]))?;
    Ok(crate::test::target_dir(root).join("release"))
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Full,
    Smoke,
    Profile,
}

#[derive(Clone, Copy, PartialEq)]
enum Tools {
    Pinning,
    Nchan,
    Perf,
}

/// The short, exactness-only version, on the debug binaries the test command built.
pub fn smoke(root: &Path, services: &Services) -> Result<()> {
    ensure_tools(Tools::Pinning)?;
    cmd::run(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "-p",
        "herald",
        "-p",
        "herald-loadgen",
    ]))?;
    let debug = crate::test::target_dir(root).join("debug");
    suite(root, &debug, services, Mode::Smoke)
}

/// `cargo xtask bench smoke`.
pub fn smoke_alone() -> Result<()> {
    let services = Services::ensure()?;
    smoke(&crate::workspace_root(), &services)
}

fn suite(root: &Path, bin_dir: &Path, services: &Services, mode: Mode) -> Result<()> {
    let redis_url = services
        .env()
        .into_iter()
        .find(|(k, _)| *k == crate::services::REDIS_URL_VAR)
        .map(|(_, v)| v)
        .context("no Redis URL")?;
    let mut c = Command::new(bin_dir.join("herald-loadgen"));
    c.current_dir(root)
        .arg("suite")
        .arg("--herald")
        .arg(bin_dir.join("herald"))
        .arg("--root")
        .arg(root)
        .args(["--redis-url", &redis_url]);
    match mode {
        Mode::Smoke => c.args(["--smoke", "true"]),
        Mode::Full => c.arg("--out").arg(root.join("bench/RESULTS.md")),
        Mode::Profile => c.arg("--perf").arg(root.join("bench/PROFILE.md")),
    };
    cmd::run(&mut c)
}

/// `taskset` (util-linux) pins the processes; Nchan is the peer of the full run; `perf`
/// (linux-perf) samples the server for the profile.
fn ensure_tools(tools: Tools) -> Result<()> {
    let mut missing = Vec::new();
    if cmd::which("taskset").is_none() {
        missing.push("util-linux");
    }
    if tools == Tools::Perf && cmd::which("perf").is_none() {
        missing.push("linux-perf");
    }
    if tools == Tools::Nchan
        && (cmd::which("nginx").is_none()
            || !Path::new("/usr/lib/nginx/modules/ngx_nchan_module.so").exists())
    {
        missing.extend(["nginx", "libnginx-mod-nchan"]);
    }
    if missing.is_empty() {
        return Ok(());
    }
    if cmd::is_root() {
        cmd::say(format_args!("installing {}", missing.join(" ")));
        cmd::run(Command::new("apt-get").args(["update", "-qq"]))?;
        cmd::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    } else {
        anyhow::bail!(
            "the benchmark needs the Debian packages {}: apt-get install {}",
            missing.join(", "),
            missing.join(" ")
        )
    }
}

/// `cargo xtask bench examples`.
pub fn examples() -> Result<()> {
    let services = Services::ensure()?;
    let root = crate::workspace_root();
    for (name, what) in PROGRAMS {
        cmd::say(format!("bench {name}: {what}"));
        let mut c = Command::new(env!("CARGO"));
        c.current_dir(&root)
            .args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "herald-tests",
                "--example",
                name,
            ])
            .envs(services.env());
        cmd::run(&mut c)?;
    }
    Ok(())
}
