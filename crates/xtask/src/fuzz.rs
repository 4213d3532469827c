//! `cargo xtask fuzz [SECS]`: builds the fuzz targets of `fuzz/` with libFuzzer's coverage
//! instrumentation and runs each for a bounded time (20 s by default; the test command uses
//! that), starting from the corpus kept in `fuzz/corpus/<target>`.
//!
//! No nightly toolchain and no `cargo fuzz`: the instrumentation is a handful of stable `-C`
//! flags (what cargo-fuzz passes with `--sanitizer none`), libFuzzer itself is built by the
//! `libfuzzer-sys` crate. Inputs found during the run go to `target/fuzz/corpus/<target>`, so
//! the kept corpus only changes when someone copies a useful input there; a crash leaves its
//! input in `target/fuzz/artifacts/<target>/` and fails the step.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cmd::{self, say};
use crate::test::{cargo, target_dir};

/// Every target in `fuzz/Cargo.toml`.
pub const TARGETS: &[&str] = &["sse", "cursor", "names", "token", "publish_body"];

/// How long each target runs when the command names no time.
pub const DEFAULT_SECS: u64 = 20;

/// The flags `cargo fuzz build --sanitizer none` passes: edge and comparison coverage for
/// libFuzzer, debug assertions and overflow checks so that they can fail.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

/// `cargo xtask fuzz [SECS]`.
pub fn run_command(args: &[&str]) -> Result<()> {
    let secs = match args {
        [] => DEFAULT_SECS,
        [s] => s
            .parse()
            .context("fuzz: the time per target is a number of seconds")?,
        _ => bail!("usage: cargo xtask fuzz [SECONDS PER TARGET]"),
    };
    run(&crate::workspace_root(), secs)
}

/// Builds every target and runs each for `secs` seconds; fails on the first crash.
pub fn run(root: &Path, secs: u64) -> Result<()> {
    let out = target_dir(root).join("fuzz");
    let started = Instant::now();
    // With an explicit `--target`, RUSTFLAGS reach the targets' code only, not build scripts
    // and proc macros, which must link without libFuzzer.
    let host = host_triple()?;
    cmd::run(
        cargo(root)
            .args(["build", "--release", "--bins", "--manifest-path"])
            .arg(root.join("fuzz/Cargo.toml"))
            .args(["--target", &host, "--target-dir"])
            .arg(&out)
            .env("RUSTFLAGS", RUSTFLAGS),
    )?;
    say(format!("fuzz targets built in {:.0?}", started.elapsed()));
    let mut report = Vec::new();
    for target in TARGETS {
        let found = out.join("corpus").join(target);
        let artifacts = out.join("artifacts").join(target);
        let kept = root.join("fuzz/corpus").join(target);
        for dir in [&found, &artifacts] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut run = Command::new(out.join(&host).join("release").join(target));
        run.arg(format!("-max_total_time={secs}"))
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&found)
            .arg(&kept);
        let text = cmd::output(&mut run).with_context(|| {
            format!(
                "fuzz target {target} failed; its input is in {}",
                artifacts.display()
            )
        })?;
        let execs = stat(&text, "stat::number_of_executed_units:").unwrap_or_default();
        report.push(format!(
            "{target}: {execs} executions in {secs} s, no crash"
        ));
    }
    for line in &report {
        say(line);
    }
    say(format!("fuzzing took {:.0?} in all", started.elapsed()));
    Ok(())
}

/// The triple rustc builds for by default.
fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let info = cmd::output(Command::new(rustc).arg("-vV"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}

/// A number libFuzzer prints with `-print_final_stats=1`.
fn stat(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}
