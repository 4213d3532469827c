//! The deploy step of `cargo xtask test`: nginx for the cluster tests (`crates/cluster`), and the
//! checks of the deploy kit in `deploy/` that need neither Docker nor Kubernetes — hadolint,
//! kubernetes-validate, the compose file, and every flag and variable against `herald --help`
//! (`crates/xtask/deploy-check/check.py`), and `promtool check rules` on the Prometheus alert
//! rules in `deploy/grafana/` (promtool unpacked from Debian's `prometheus` package into the
//! target directory: nothing is installed, no Prometheus service is started).
//!
//! The Python tools are pinned in `crates/xtask/deploy-check/requirements.txt` and installed
//! with pip into `target/deploy-venv` (again whenever that file changes).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::cmd::{self, say};

/// Makes sure nginx is installed (the Debian package, as root), and checks the deploy kit.
pub fn run(root: &Path, target: &Path, herald_bin: &Path) -> Result<()> {
    ensure_nginx()?;
    let venv = install(root, target)?;
    cmd::run(
        Command::new(venv.join("bin/python3"))
            .arg(root.join("crates/xtask/deploy-check/check.py"))
            .arg(root)
            .arg(herald_bin)
            .arg(venv.join("bin")),
    )?;
    let promtool = promtool(target)?;
    cmd::run(
        Command::new(promtool)
            .args(["check", "rules"])
            .arg(root.join("deploy/grafana/alerts.yml")),
    )
}

/// `promtool`: on `PATH`, or from Debian's `prometheus` package, downloaded with `apt-get
/// download` and unpacked (not installed) into `<target>/promtool`.
fn promtool(target: &Path) -> Result<PathBuf> {
    if let Some(found) = cmd::which("promtool") {
        return Ok(found);
    }
    let dir = target.join("promtool");
    let unpacked = dir.join("usr/bin/promtool");
    if unpacked.is_file() {
        return Ok(unpacked);
    }
    if cmd::which("apt-get").is_none() || cmd::which("dpkg-deb").is_none() {
        bail!("the alert rules are checked with promtool: install Debian's prometheus package, or put promtool on PATH");
    }
    say("unpacking promtool from Debian's prometheus package");
    fs::create_dir_all(&dir)?;
    cmd::run(
        Command::new("apt-get")
            .args(["download", "prometheus"])
            .current_dir(&dir),
    )?;
    let deb = fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    let _ = fs::remove_file(&deb);
    if !unpacked.is_file() {
        bail!("the prometheus package holds no usr/bin/promtool");
    }
    Ok(unpacked)
}

/// `cargo xtask deploy-check`: builds herald and runs only this step.
pub fn check() -> Result<()> {
    let root = crate::workspace_root();
    cmd::run(crate::test::cargo(&root).args(["build", "-p", "herald"]))?;
    let target = crate::test::target_dir(&root);
    run(&root, &target, &crate::test::herald_bin(&root))
}

/// nginx, which the cluster launcher runs as a private instance: installed from Debian when we
/// may (root with apt-get), else an error that names the package.
pub fn ensure_nginx() -> Result<()> {
    let found = || cmd::which("nginx").is_some() || Path::new("/usr/sbin/nginx").is_file();
    if found() {
        return Ok(());
    }
    if !(cmd::is_root() && cmd::which("apt-get").is_some()) {
        bail!("the cluster tests need nginx: install the Debian package nginx (`sudo apt-get install nginx`)");
    }
    say("installing nginx for the cluster tests");
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "nginx"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if !found() {
        bail!("installed nginx, but there is no nginx binary");
    }
    Ok(())
}

/// The virtualenv with the pinned tools, created or refreshed when the requirements changed.
fn install(root: &Path, target: &Path) -> Result<PathBuf> {
    let requirements = root.join("crates/xtask/deploy-check/requirements.txt");
    let wanted = fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let venv = target.join("deploy-venv");
    let stamp = venv.join("requirements.txt");
    if fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted) {
        return Ok(venv);
    }
    let python = cmd::which("python3").context(
        "python3 is needed for the deploy kit checks (Debian: apt-get install python3 python3-venv)",
    )?;
    say(format!(
        "installing the deploy kit's checkers into {}",
        venv.display()
    ));
    let _ = fs::remove_dir_all(&venv);
    cmd::run(Command::new(&python).args(["-m", "venv"]).arg(&venv))
        .context("cannot create a virtualenv (Debian: apt-get install python3-venv)")?;
    cmd::run(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "-r",
            ])
            .arg(&requirements),
    )?;
    fs::write(&stamp, wanted)?;
    Ok(venv)
}
