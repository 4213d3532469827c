//! A private Redis Cluster: `redis-server` masters in cluster mode on free loopback ports, in a
//! directory of their own, joined by `redis-cli --cluster create`; and what the tests do to one
//! (move a slot from one master to another while clients use it).
//!
//! Like the rest of this crate it needs std only: the servers are driven through `redis-cli`.
//!
//! ```text
//! <dir>/<port>/nodes.conf     each master's cluster configuration, written by redis-server
//! <dir>/<port>/redis.log      its log
//! ```

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::free_port;

/// How long the cluster may take to agree that every slot is served.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One master of the cluster.
#[derive(Debug)]
pub struct Master {
    pub port: u16,
    child: Option<Child>,
}

impl Master {
    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A running Redis Cluster; its servers are stopped (and their directory removed) when it is
/// dropped, unless [`RedisCluster::detach`]ed.
#[derive(Debug)]
pub struct RedisCluster {
    pub masters: Vec<Master>,
    dir: PathBuf,
    keep_dir: bool,
}

impl RedisCluster {
    /// Starts `masters` servers in `dir` (created), joins them into one cluster with no
    /// replicas, and returns once every node reports `cluster_state:ok`. `detached` servers get
    /// a process group of their own, so that they outlive the caller's terminal.
    pub fn start(dir: &Path, masters: usize, detached: bool) -> Result<RedisCluster> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut cluster = RedisCluster {
            masters: Vec::new(),
            dir: dir.to_owned(),
            keep_dir: detached,
        };
        for _ in 0..masters {
            let master = start_master(dir, detached)?;
            cluster.masters.push(master);
        }
        let nodes: Vec<String> = cluster
            .masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// The seed list Herald takes (`--redis-url` with `--redis-cluster`): every master.
    pub fn seeds(&self) -> String {
        self.masters
            .iter()
            .map(|m| format!("redis://127.0.0.1:{}", m.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every node says `cluster_state:ok` and agrees on the slot owners.
    pub fn wait_ok(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ok = self.masters.iter().all(|m| {
                cli(m.port, &["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            let views: Vec<String> = self
                .masters
                .iter()
                .map(|m| slot_owners(m.port).unwrap_or_default())
                .collect();
            if ok && views.windows(2).all(|w| w[0] == w[1]) && !views[0].is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the Redis Cluster did not become ready within {READY_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The hash slot of `key`, as the cluster computes it.
    pub fn slot_of(&self, key: &str) -> Result<u16> {
        Ok(cli(self.masters[0].port, &["CLUSTER", "KEYSLOT", key])?
            .trim()
            .parse()?)
    }

    /// The index (in [`RedisCluster::masters`]) of the master that serves `slot`.
    pub fn owner_of(&self, slot: u16) -> Result<usize> {
        let id = slot_owner_id(self.masters[0].port, slot)?;
        self.masters
            .iter()
            .position(|m| node_id(m.port).is_ok_and(|n| n == id))
            .context("no master owns the slot")
    }

    /// Moves `slot` to master `to` the way `redis-cli --cluster reshard` does: the target
    /// imports, the source migrates, every key is `MIGRATE`d in batches while clients keep
    /// using the slot (they follow `ASK`), then every master learns the new owner.
    pub fn move_slot(&self, slot: u16, to: usize) -> Result<()> {
        let from = self.owner_of(slot)?;
        if from == to {
            return Ok(());
        }
        let (src, dst) = (self.masters[from].port, self.masters[to].port);
        let (src_id, dst_id) = (node_id(src)?, node_id(dst)?);
        let slot_s = slot.to_string();
        expect_ok(cli(
            dst,
            &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id],
        )?)?;
        expect_ok(cli(
            src,
            &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id],
        )?)?;
        loop {
            let keys = cli(src, &["CLUSTER", "GETKEYSINSLOT", &slot_s, "10"])?;
            let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let dst_port = dst.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &dst_port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().copied());
            let out = cli(src, &args)?;
            if !(out.contains("OK") || out.contains("NOKEY")) {
                bail!("MIGRATE answered {out}");
            }
        }
        // The new owner first, then everyone else, as redis-cli does.
        expect_ok(cli(dst, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id])?)?;
        expect_ok(cli(src, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id])?)?;
        for (i, m) in self.masters.iter().enumerate() {
            if i != from && i != to {
                expect_ok(cli(
                    m.port,
                    &["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id],
                )?)?;
            }
        }
        self.wait_ok()
    }

    /// Leaves the servers running after `self` is gone (for `cargo xtask cluster up`).
    pub fn detach(mut self) {
        for m in &mut self.masters {
            m.child = None;
        }
        self.keep_dir = true;
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for m in &mut self.masters {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// How many ports a master may try before giving up: a port found free can be taken by another
/// process (tests run in parallel) before `redis-server` binds it.
const START_ATTEMPTS: usize = 5;

/// The offset of the cluster bus port from the client port, fixed by Redis.
const BUS_PORT_OFFSET: u16 = 10_000;

/// Starts one master on a port whose cluster bus port is free too, and waits until it answers;
/// a server that dies at start (its port or bus port taken meanwhile) is retried on another.
fn start_master(dir: &Path, detached: bool) -> Result<Master> {
    let mut last = None;
    for _ in 0..START_ATTEMPTS {
        let port = free_cluster_port()?;
        let mut child = spawn_server(dir, port, detached)?;
        match wait_answering(port, &mut child) {
            Ok(()) => {
                return Ok(Master {
                    port,
                    child: Some(child),
                })
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let node_dir = dir.join(port.to_string());
                let log = fs::read_to_string(node_dir.join("redis.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                let _ = fs::remove_dir_all(node_dir);
                last = Some(e.context(format!("its log ends: {tail:?}")));
            }
        }
    }
    Err(last.expect("at least one attempt"))
        .with_context(|| format!("starting a Redis Cluster master ({START_ATTEMPTS} ports tried)"))
}

/// A loopback port that is free, and whose cluster bus port (`port + 10000`) exists and is free
/// too: a master binds both, and an ephemeral port above 55535 has no bus port at all.
fn free_cluster_port() -> Result<u16> {
    for _ in 0..100 {
        let port = free_port()?;
        let Some(bus) = port.checked_add(BUS_PORT_OFFSET) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no loopback port with a free cluster bus port")
}

fn spawn_server(dir: &Path, port: u16, detached: bool) -> Result<Child> {
    let node_dir = dir.join(port.to_string());
    fs::create_dir_all(&node_dir)?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", "nodes.conf"])
        .args(["--cluster-node-timeout", "2000"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&node_dir)
        .arg("--logfile")
        .arg(node_dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if detached {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.spawn()
        .context("starting redis-server (Debian package redis-server)")
}

/// Waits until the server on `port` answers `PING`, or fails at once if it exited (its log
/// says why).
fn wait_answering(port: u16, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("redis-server on port {port} exited ({status}) at start");
        }
        if cli(port, &["PING"]).is_ok_and(|o| o.trim() == "PONG") {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(25));
    }
    bail!("redis-server on port {port} did not answer")
}

/// `redis-cli -p <port> <args>`'s standard output.
fn cli(port: u16, args: &[&str]) -> Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running redis-cli")?;
    if !out.status.success() {
        bail!(
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn expect_ok(out: String) -> Result<()> {
    if out.trim() == "OK" {
        Ok(())
    } else {
        bail!("redis answered {out:?}")
    }
}

fn node_id(port: u16) -> Result<String> {
    Ok(cli(port, &["CLUSTER", "MYID"])?.trim().to_owned())
}

/// Who serves what, as one node sees it: `CLUSTER NODES` reduced to master id and slots.
fn slot_owners(port: u16) -> Result<String> {
    let nodes = cli(port, &["CLUSTER", "NODES"])?;
    let mut owners: Vec<String> = nodes
        .lines()
        .filter(|l| l.contains("master"))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let slots: Vec<&str> = fields
                .iter()
                .skip(8)
                .filter(|f| !f.starts_with('['))
                .copied()
                .collect();
            format!("{} {}", fields[0], slots.join(","))
        })
        .collect();
    owners.sort();
    Ok(owners.join("\n"))
}

/// The id of the master that serves `slot`, as the node on `port` sees it.
fn slot_owner_id(port: u16, slot: u16) -> Result<String> {
    let nodes = cli(port, &["CLUSTER", "NODES"])?;
    for line in nodes.lines().filter(|l| l.contains("master")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        for range in fields.iter().skip(8).filter(|f| !f.starts_with('[')) {
            let (lo, hi) = match range.split_once('-') {
                Some((lo, hi)) => (lo.parse::<u16>()?, hi.parse::<u16>()?),
                None => (range.parse::<u16>()?, range.parse::<u16>()?),
            };
            if (lo..=hi).contains(&slot) {
                return Ok(fields[0].to_owned());
            }
        }
    }
    bail!("no master serves slot {slot}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_port_has_a_free_bus_port() {
        for _ in 0..20 {
            let port = free_cluster_port().unwrap();
            let bus = port
                .checked_add(BUS_PORT_OFFSET)
                .expect("a bus port exists");
            assert!(TcpListener::bind(("127.0.0.1", bus)).is_ok());
        }
    }

    /// A master whose cluster bus port was taken between finding it and binding it exits at
    /// start; that is seen at once (and another port tried), not after the answer timeout.
    #[test]
    fn a_master_that_cannot_bind_is_seen_to_exit() {
        let dir = std::env::temp_dir().join(format!("herald-rc-taken-{}", std::process::id()));
        let port = free_cluster_port().unwrap();
        let _bus = TcpListener::bind(("127.0.0.1", port + BUS_PORT_OFFSET)).unwrap();
        let mut child = spawn_server(&dir, port, false).expect("redis-server on PATH");
        let started = Instant::now();
        let err = wait_answering(port, &mut child).unwrap_err();
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::remove_dir_all(&dir);
        assert!(err.to_string().contains("exited"), "{err:#}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
