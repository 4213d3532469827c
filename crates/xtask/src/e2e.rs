//! `cargo xtask e2e` (and a step of `cargo xtask test`): the web admin's end-to-end tests in
//! `tests/e2e/`, Node's test runner driving Debian's Chromium through playwright-core, against
//! the debug `herald` binary on SQLite and on the run's Postgres + Redis.
//!
//! What it needs it finds or installs: `node`/`npm` and `chromium` from PATH, else (as root with
//! apt-get) the Debian packages `nodejs npm chromium`, else it fails naming them. The npm
//! dependencies are pinned by the committed `package-lock.json` and installed with `npm ci`; no
//! browser is downloaded (playwright-core is given Chromium's path). Screenshots land in
//! `target/e2e-screenshots/`, with the server logs beside them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Result};

use crate::cmd::{self, say};

/// Where Debian puts its Chromium.
const DEBIAN_CHROMIUM: &str = "/usr/bin/chromium";

/// Runs the suite; `env` names the services (`HERALD_TEST_DATABASE_URL`, `HERALD_TEST_REDIS_URL`).
pub fn run(root: &Path, target: &Path, herald_bin: &Path, env: &[(&str, String)]) -> Result<()> {
    let tools = find_or_install()?;
    let dir = root.join("tests").join("e2e");
    cmd::run(
        Command::new(&tools.npm)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir),
    )?;
    cmd::run(
        Command::new(&tools.node)
            .args([
                "--test",
                "--test-concurrency=1",
                "--test-timeout=120000",
                "tests/",
            ])
            .current_dir(&dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("HERALD_TEST_BIN", herald_bin)
            .env("HERALD_E2E_CHROMIUM", &tools.chromium)
            .env("CARGO_TARGET_DIR", target),
    )?;
    say(format!(
        "web admin screenshots: {}",
        target.join("e2e-screenshots").display()
    ));
    Ok(())
}

struct Tools {
    node: PathBuf,
    npm: PathBuf,
    chromium: PathBuf,
}

fn find() -> (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) {
    let chromium = cmd::which("chromium")
        .or_else(|| Some(PathBuf::from(DEBIAN_CHROMIUM)).filter(|p| p.is_file()));
    (cmd::which("node"), cmd::which("npm"), chromium)
}

fn find_or_install() -> Result<Tools> {
    let (node, npm, chromium) = find();
    let mut packages = Vec::new();
    if node.is_none() {
        packages.push("nodejs");
    }
    if npm.is_none() {
        packages.push("npm");
    }
    if chromium.is_none() {
        packages.push("chromium");
    }
    if let (Some(node), Some(npm), Some(chromium)) = (node, npm, chromium) {
        return Ok(Tools {
            node,
            npm,
            chromium,
        });
    }
    let list = packages.join(" ");
    if !(cmd::is_root() && cmd::which("apt-get").is_some()) {
        bail!(
            "the web admin's browser tests need node, npm and chromium; install the Debian \
             package(s) {list} (`sudo apt-get install {list}`)"
        );
    }
    say(format!(
        "installing {list} for the web admin's browser tests"
    ));
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    match find() {
        (Some(node), Some(npm), Some(chromium)) => Ok(Tools {
            node,
            npm,
            chromium,
        }),
        _ => bail!("installed {list}, but still cannot find node, npm and chromium"),
    }
}
