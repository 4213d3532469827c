//! `cargo xtask test`: every check and test of the project, the same locally and in CI.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{ensure, Result};

use crate::{
    cmd::{self, say},
    services::Services,
};

/// Tells the black-box tests which server binary to spawn.
const HERALD_BIN_VAR: &str = "HERALD_TEST_BIN";

/// Runs the steps in order and stops at the first that fails; the test step itself runs every test
/// before reporting. Services come first, so that a machine that cannot run the tests says so
/// before the long compile steps rather than after.
pub fn run() -> Result<()> {
    let root = crate::workspace_root();
    let services = Services::ensure()?;

    cmd::run(cargo(&root).args(["fmt", "--all", "--", "--check"]))?;
    cmd::run(cargo(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    cmd::run(cargo(&root).args(["build", "-p", "herald"]))?;
    let herald_bin = herald_bin(&root);
    ensure!(
        herald_bin.is_file(),
        "`cargo build -p herald` succeeded, but there is no {}; is the target directory set \
         somewhere other than CARGO_TARGET_DIR?",
        herald_bin.display()
    );

    crate::deploy::run(&root, &target_dir(&root), &herald_bin)?;

    let with_env = |mut cmd: Command| {
        cmd.envs(services.env()).env(HERALD_BIN_VAR, &herald_bin);
        cmd
    };
    if nextest_installed(&root) {
        let mut tests = cargo(&root);
        tests.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
        // nextest does not run doctests, so they get a step of their own; it runs even when
        // the tests fail, so that one run reports every failure.
        let mut doctests = cargo(&root);
        doctests.args(["test", "--workspace", "--doc", "--no-fail-fast"]);
        let tests = cmd::run(&mut with_env(tests));
        let doctests = cmd::run(&mut with_env(doctests));
        let bench_smoke = crate::bench::smoke(&root, &services);
        let fuzz = crate::fuzz::run(&root, crate::fuzz::DEFAULT_SECS);
        // Last, and even when tests failed, so that one run reports every failure.
        let schemathesis = crate::schemathesis::run(&root, &target_dir(&root), &herald_bin);
        let sdk = crate::sdk::run(&root, &target_dir(&root), &herald_bin);
        let e2e = crate::e2e::run(&root, &target_dir(&root), &herald_bin, &services.env());
        tests
            .and(doctests)
            .and(bench_smoke)
            .and(fuzz)
            .and(schemathesis)
            .and(sdk)
            .and(e2e)
    } else {
        say("cargo-nextest is not installed (`cargo install cargo-nextest`); using cargo test");
        let mut tests = cargo(&root);
        tests.args(["test", "--workspace", "--no-fail-fast"]);
        let tests = cmd::run(&mut with_env(tests));
        let bench_smoke = crate::bench::smoke(&root, &services);
        let fuzz = crate::fuzz::run(&root, crate::fuzz::DEFAULT_SECS);
        let schemathesis = crate::schemathesis::run(&root, &target_dir(&root), &herald_bin);
        let sdk = crate::sdk::run(&root, &target_dir(&root), &herald_bin);
        let e2e = crate::e2e::run(&root, &target_dir(&root), &herald_bin, &services.env());
        tests
            .and(bench_smoke)
            .and(fuzz)
            .and(schemathesis)
            .and(sdk)
            .and(e2e)
    }
}

/// `cargo xtask schemathesis`: builds herald and runs only the Schemathesis step.
pub fn schemathesis() -> Result<()> {
    let root = crate::workspace_root();
    cmd::run(cargo(&root).args(["build", "-p", "herald"]))?;
    crate::schemathesis::run(&root, &target_dir(&root), &herald_bin(&root))
}

/// `cargo xtask sdk`: builds herald and runs only the SDK step.
pub fn sdk() -> Result<()> {
    let root = crate::workspace_root();
    cmd::run(cargo(&root).args(["build", "-p", "herald"]))?;
    crate::sdk::run(&root, &target_dir(&root), &herald_bin(&root))
}

/// `cargo xtask e2e`: builds herald and runs only the web admin's browser tests.
pub fn e2e() -> Result<()> {
    let root = crate::workspace_root();
    let services = Services::ensure()?;
    cmd::run(cargo(&root).args(["build", "-p", "herald"]))?;
    crate::e2e::run(
        &root,
        &target_dir(&root),
        &herald_bin(&root),
        &services.env(),
    )
}

/// `cargo`, run from the workspace root. `$CARGO` is the cargo that runs xtask, so every step uses
/// the same toolchain even when several are installed.
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn nextest_installed(root: &Path) -> bool {
    cmd::succeeds(cargo(root).args(["nextest", "--version"]))
}

/// The target directory cargo builds into.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir), // `join` keeps an absolute `dir` as it is
        _ => root.join("target"),
    }
}

/// Where `cargo build -p herald` puts the binary.
pub fn herald_bin(root: &Path) -> PathBuf {
    target_dir(root)
        .join("debug")
        .join(format!("herald{}", env::consts::EXE_SUFFIX))
}
