//! `cargo xtask sdk` (and a step of `cargo xtask test`): the SDKs' checks and tests, against the
//! debug `herald` binary, each SDK installed from the artefact its ecosystem packs.
//!
//! - `sdk/js` (`@herald/client`): `npm ci` from the committed lock file; `dist/` must be exactly
//!   what `tsc` and `esbuild` build from `src/` (it is committed, so drift fails the step); the
//!   minified browser bundle must stay within [`BUNDLE_LIMIT`] gzipped; then `npm pack`, the
//!   tarball unpacked under `target/sdk/`, and `node --test` on it (Node with the `eventsource`
//!   package, and Debian's Chromium through playwright-core).
//! - `sdk/python` (`herald`): a virtualenv in `target/sdk-python-venv` with the pinned
//!   `requirements-test.txt`, the package built with `pip wheel` and installed from the wheel,
//!   `mypy --strict` on the installed package, then `pytest`.
//! - `crates/client` (`herald-client`): `cargo package --list`; its tests run with the
//!   workspace's.
//!
//! What the step needs from the machine (Node ≥ 20 with npm, Chromium, python3 with venv,
//! redis-server) is installed with apt-get when we are root, else named in the error.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context, Result};

use crate::cmd::{self, say};

/// The most the gzipped browser bundle may weigh.
const BUNDLE_LIMIT: usize = 5 * 1024;

/// Runs every SDK check and test; all of them, then reports every failure.
pub fn run(root: &Path, target: &Path, herald_bin: &Path) -> Result<()> {
    let chromium = ensure_tools()?;
    let out = target.join("sdk");
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let js = javascript(root, &out, herald_bin, &chromium);
    let python = python(root, target, &out, herald_bin);
    let rust = cmd::output(
        Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(root)
            .args(["package", "--list", "--allow-dirty", "-p", "herald-client"]),
    )
    .map(|list| {
        say(format!(
            "herald-client packs {} files",
            list.lines()
                .filter(|l| !l.starts_with("warning") && !l.starts_with(' '))
                .count()
        ))
    });
    js.and(python).and(rust)
}

fn javascript(root: &Path, out: &Path, herald_bin: &Path, chromium: &Path) -> Result<()> {
    let js = root.join("sdk").join("js");
    npm_ci(&js, out)?;
    check_dist(&js, out)?;

    let bundle = fs::read(js.join("dist").join("herald.min.js"))?;
    let gzipped = gzip_size(&js.join("dist").join("herald.min.js"))?;
    say(format!(
        "@herald/client browser bundle: {} bytes minified, {gzipped} bytes gzipped (limit {BUNDLE_LIMIT})",
        bundle.len()
    ));
    ensure!(
        gzipped <= BUNDLE_LIMIT,
        "the browser bundle is {gzipped} bytes gzipped, over the {BUNDLE_LIMIT}-byte budget"
    );

    // The tests install what `npm pack` packs, not the source tree.
    let packed = out.join("js-pack");
    let _ = fs::remove_dir_all(&packed);
    fs::create_dir_all(&packed)?;
    let name = cmd::output(
        Command::new("npm")
            .current_dir(&js)
            .args(["pack", "--silent", "--pack-destination"])
            .arg(&packed),
    )?;
    let tarball = packed.join(name.lines().last().unwrap_or_default().trim());
    cmd::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&packed),
    )?;
    let package = packed.join("package");

    let mut tests: Vec<PathBuf> = fs::read_dir(js.join("test"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.js"))
        .collect();
    tests.sort();
    cmd::run(
        Command::new("node")
            .current_dir(&js)
            .arg("--test")
            .args(&tests)
            .env("HERALD_TEST_BIN", herald_bin)
            .env("HERALD_SDK_JS", &package)
            .env("CHROMIUM_PATH", chromium),
    )
}

/// `npm ci`, skipped when the lock file is the one the last run installed.
fn npm_ci(js: &Path, out: &Path) -> Result<()> {
    let lock = fs::read(js.join("package-lock.json")).context("sdk/js/package-lock.json")?;
    let stamp = out.join("npm-ci.lock");
    if js.join("node_modules").is_dir() && fs::read(&stamp).ok().as_deref() == Some(&lock[..]) {
        return Ok(());
    }
    cmd::run(Command::new("npm").current_dir(js).args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]))?;
    fs::write(stamp, lock)?;
    Ok(())
}

/// Builds `src/` into a scratch directory and compares it, file by file, with the committed
/// `dist/`.
fn check_dist(js: &Path, out: &Path) -> Result<()> {
    let fresh = out.join("js-build");
    let _ = fs::remove_dir_all(&fresh);
    let bin = js.join("node_modules").join(".bin");
    cmd::run(
        Command::new(bin.join("tsc"))
            .current_dir(js)
            .args(["-p", "tsconfig.json", "--outDir"])
            .arg(&fresh),
    )?;
    cmd::run(
        Command::new(bin.join("esbuild"))
            .current_dir(js)
            .args(["src/index.ts", "--bundle", "--minify", "--format=esm"])
            .args([
                "--target=es2022",
                "--legal-comments=none",
                "--log-level=warning",
            ])
            .arg(format!(
                "--outfile={}",
                fresh.join("herald.min.js").display()
            )),
    )?;
    let committed = js.join("dist");
    let names = |dir: &Path| -> Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    };
    let (want, have) = (names(&fresh)?, names(&committed)?);
    let fix = "run `npm run build` in sdk/js and commit dist/";
    if want != have {
        bail!("sdk/js/dist has {have:?}, but src/ builds {want:?}: {fix}");
    }
    for name in &want {
        if fs::read(fresh.join(name))? != fs::read(committed.join(name))? {
            bail!("sdk/js/dist/{name} differs from what src/ builds: {fix}");
        }
    }
    say("sdk/js/dist is what src/ builds");
    Ok(())
}

fn gzip_size(file: &Path) -> Result<usize> {
    let script = "const z=require('zlib'),f=require('fs');\
                  process.stdout.write(String(z.gzipSync(f.readFileSync(process.argv[1]),{level:9}).length))";
    let size = cmd::output(Command::new("node").args(["-e", script]).arg(file))?;
    size.trim().parse().context("the gzipped size")
}

fn python(root: &Path, target: &Path, out: &Path, herald_bin: &Path) -> Result<()> {
    let sdk = root.join("sdk").join("python");
    let venv = target.join("sdk-python-venv");
    let py = venv.join("bin").join("python");
    if !py.is_file() {
        cmd::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("cannot create a virtualenv (Debian: apt-get install python3-venv)")?;
    }
    let pip = |args: &[&str]| {
        let mut c = Command::new(&py);
        c.args(["-m", "pip", "--disable-pip-version-check", "--quiet"])
            .args(args);
        c
    };
    let requirements = sdk.join("requirements-test.txt");
    cmd::run(pip(&["install", "-r"]).arg(&requirements))?;
    let wheels = out.join("python-wheel");
    let _ = fs::remove_dir_all(&wheels);
    cmd::run(pip(&["wheel", "--no-deps", "-w"]).arg(&wheels).arg(&sdk))?;
    let wheel = fs::read_dir(&wheels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("pip wheel built no wheel")?;
    cmd::run(pip(&["install", "--force-reinstall", "--no-deps"]).arg(&wheel))?;
    // The installed package (not the source tree: run from elsewhere) is typed, strictly.
    cmd::run(Command::new(&py).current_dir(out).args([
        "-m",
        "mypy",
        "--strict",
        "--no-incremental",
        "-p",
        "herald",
    ]))?;
    cmd::run(
        Command::new(&py)
            .current_dir(&sdk)
            .args(["-m", "pytest", "-p", "no:cacheprovider", "-q"])
            .env("HERALD_TEST_BIN", herald_bin),
    )
}

/// Makes sure the SDK tests' programs are there; returns Chromium's path.
fn ensure_tools() -> Result<PathBuf> {
    let chromium = env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .or_else(|| cmd::which("chromium"));
    // playwright-core and eventsource need Node 20, as the package itself does.
    let node_ok = node_major().is_some_and(|major| major >= 20);
    let venv_ok = cmd::succeeds(Command::new("python3").args(["-c", "import venv, ensurepip"]));
    let mut missing = Vec::new();
    if !node_ok {
        missing.push("nodejs");
    }
    if cmd::which("npm").is_none() {
        missing.push("npm");
    }
    if chromium.is_none() {
        missing.push("chromium");
    }
    if !venv_ok {
        missing.push("python3-venv");
    }
    if cmd::which("redis-server").is_none() {
        missing.push("redis-server");
    }
    if missing.is_empty() {
        return Ok(chromium.expect("checked above"));
    }
    if !cmd::is_root() || cmd::which("apt-get").is_none() {
        bail!(
            "the SDK tests need {} (Debian: apt-get install {}; Node must be 20 or newer: Debian 13's \
             nodejs is, Debian 12's is 18)",
            missing.join(", "),
            missing.join(" ")
        );
    }
    say(format!(
        "installing {} for the SDK tests",
        missing.join(" ")
    ));
    cmd::run(Command::new("apt-get").args(["update", "-qq"]))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if node_major().is_none_or(|major| major < 20) {
        bail!(
            "the SDK tests need Node 20 or newer, and apt-get installed {:?}",
            node_major()
        );
    }
    cmd::which("chromium").context("apt-get installed chromium, but it is not on PATH")
}

/// The major version of the `node` on PATH.
fn node_major() -> Option<u32> {
    let version = cmd::output(Command::new("node").arg("--version")).ok()?;
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}
