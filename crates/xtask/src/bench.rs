//! `cargo xtask bench`: the measurement programs of `tests/examples`, in release mode, against
//! the same Postgres and Redis the tests use. Their numbers are printed, not judged: speed and
//! memory targets are compared by people against peers measured in the same run, never asserted
//! in a timed test.

use std::process::Command;

use anyhow::Result;

use crate::cmd;
use crate::services::Services;

/// The programs, each with what it measures.
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
