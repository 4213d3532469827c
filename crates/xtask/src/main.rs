//! `cargo xtask`: Herald's developer and CI automation.
//!
//! One small binary with no dependencies beyond std, anyhow and the std-only cluster launcher
//! (`crates/cluster`), so a cold CI runner compiles it in seconds, before the workspace itself.
//! `main` only dispatches: each subcommand lives in its own module, and adding one (`bench`,
//! `openapi`) means a module and a line in `main` and in `USAGE`.

mod bench;
mod cluster;
mod cmd;
mod deploy;
mod e2e;
mod fuzz;
mod postgres;
mod redis;
mod schemathesis;
mod sdk;
mod services;
mod test;
mod url;

use std::{
    env,
    path::{Path, PathBuf},
    process::ExitCode,
};

const USAGE: &str = "\
Usage: cargo xtask <COMMAND>

Commands:
  test    Run every check and test of the project, as CI does: fmt, clippy, build, then the
          whole test suite against real Postgres and Redis (private instances are started
          when none answers), and last Schemathesis against a live server
  schemathesis
          Only the Schemathesis step: pip-installs it into target/schemathesis-venv, starts herald
          on a fresh SQLite database and fuzzes every operation of api-spec/openapi.json
  sdk     Only the SDK step: sdk/js (dist drift, bundle size, npm pack, node --test in Node and
          Chromium), sdk/python (pip wheel, pytest) and herald-client's cargo package --list

  cluster up [--redis-cluster]|down|status
          A Herald cluster on this machine: herald admin, three herald edge and a private nginx
          in front (state and logs in target/cluster), on the Postgres and Redis below or
          private ones; `up` prints the URLs, `status` shows what runs, `down` stops it all.
          `--redis-cluster`: on a private three-master Redis Cluster instead of one Redis

  deploy-check
          Only the deploy kit's checks (hadolint, kubernetes-validate, the compose file, flags and
          variables against `herald --help`), with the pinned tools in target/deploy-venv

  e2e     Only the web admin's browser tests (tests/e2e): npm ci, then Node's test runner driving
          Debian's Chromium against herald on SQLite and on Postgres + Redis

  fuzz [SECS]
          Only the fuzzing step: builds fuzz/ with libFuzzer's instrumentation (stable toolchain)
          and runs each target (SSE encoder, cursors, names, tokens, publish bodies) for SECS
          seconds (default 20) from the corpus in fuzz/corpus; a crash fails it

  bench   The side-by-side benchmark in release mode: Herald (embedded and through Redis)
          and Nchan, each pinned to core 0, the load generator to core 1; prints the table
          and writes bench/RESULTS.md. `bench smoke`: the short exactness check the test
          command runs. `bench --perf`: the fan-out scenario under `perf record`, written
          to bench/PROFILE.md. `bench examples`: the in-process programs of tests/examples

Environment:
  HERALD_TEST_DATABASE_URL  a Postgres that allows CREATE DATABASE
                            (default postgres://postgres@127.0.0.1:5432/postgres)
  HERALD_TEST_REDIS_URL     a Redis (default redis://127.0.0.1:6379)
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["test"] => test::run(),
        ["schemathesis"] => test::schemathesis(),
        ["sdk"] => test::sdk(),
        ["e2e"] => test::e2e(),
        ["fuzz", rest @ ..] => fuzz::run_command(rest),
        ["bench"] => bench::run(),
        ["bench", "examples"] => bench::examples(),
        ["bench", "smoke"] => bench::smoke_alone(),
        ["bench", "--perf"] => bench::perf(),
        ["cluster", rest @ ..] => cluster::run(rest),
        ["deploy-check"] => deploy::check(),
        // Hidden: brings Postgres and Redis up exactly as `test` does, prints them and stops them
        // again, so the probe and private-instance paths can be checked without the whole suite.
        ["services"] => services::run(),
        ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: this crate lives in `<root>/crates/xtask`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/xtask is two levels below the workspace root")
        .to_path_buf()
}
