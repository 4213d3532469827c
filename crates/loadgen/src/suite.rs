//! `herald-loadgen suite`: the side-by-side benchmark. Starts each server pinned to core 0
//! (Herald embedded, Herald through Redis, Nchan), runs every scenario as a child process of
//! this binary pinned to core 1, and prints one table of Herald's figures with their ratio to
//! Nchan's from the same run; `--out` writes it as Markdown with the commands and versions.
//! `--smoke` runs small versions of the scenarios against Herald only and fails unless every
//! subscriber received exactly its sequence: no loss, no duplicate, no reordering.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::publisher::LAG_FLOOR_MS;
use crate::{Flags, GENERATOR_TOLERANCE};

/// One server under test.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    /// The processes whose CPU and memory count as the server's.
    pids: Vec<u32>,
    /// `--target ...` arguments for the scenarios.
    target: Vec<String>,
    dir: PathBuf,
    redis: Option<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // nginx's workers outlive a SIGKILLed master: ask the master to stop them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((url, prefix)) = &self.redis {
            match crate::resp::Redis::connect(url).and_then(|mut r| r.delete_prefix(prefix)) {
                Ok(_) => {}
                Err(e) => eprintln!("warning: could not remove Redis keys {prefix}*: {e:#}"),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("herald-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn wait_listening(addr: SocketAddr, child: &mut Child, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "server exited ({status}) before listening: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        ensure!(
            Instant::now() < deadline,
            "server did not listen on {addr} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pinned(core: &str, program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", core]).arg(program);
    c
}

async fn start_herald(
    name: &'static str,
    bin: &Path,
    plans: &Path,
    redis_url: Option<&str>,
) -> Result<Server> {
    let dir = scratch(name)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let log = dir.join("herald.log");
    let mut cmd = pinned("0", bin);
    cmd.arg("serve")
        .args(["--listen", &addr.to_string()])
        .arg("--database-url")
        .arg(format!("sqlite://{}/herald.db", dir.display()))
        .arg("--plans")
        .arg(plans)
        .args(["--default-plan", "bench"])
        // Every simulated subscriber comes from loopback: no per-address stream cap.
        .args(["--max-streams-per-ip", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let redis = redis_url.map(|url| {
        let prefix = format!("herald-bench-{}", std::process::id());
        cmd.args(["--redis-url", url, "--redis-prefix", &prefix]);
        (url.to_owned(), prefix)
    });
    let mut child = cmd
        .spawn()
        .context("start herald (is `taskset` installed?)")?;
    wait_listening(addr, &mut child, &log)?;
    let pid = child.id();
    let mut server = Server {
        name,
        child,
        addr,
        pids: vec![pid],
        target: Vec::new(),
        dir,
        redis,
    };
    let setup = crate::setup_herald(&Flags::of(&[("server", &addr.to_string())])).await?;
    server.target = vec![
        "--target".into(),
        "herald".into(),
        "--tenant".into(),
        "bench".into(),
        "--key".into(),
        setup["key"].as_str().context("no key")?.to_owned(),
    ];
    Ok(server)
}

fn start_nchan(conf_template: &Path) -> Result<Server> {
    let dir = scratch("nchan")?;
    let port = free_port()?;
    let conf = std::fs::read_to_string(conf_template)
        .with_context(|| format!("read {}", conf_template.display()))?
        .replace("@PREFIX@", &dir.display().to_string())
        .replace("@PORT@", &port.to_string());
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let log = dir.join("error.log");
    let mut child = pinned("0", Path::new("nginx"))
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log"))?)
        .spawn()
        .context("start nginx (Debian packages nginx and libnginx-mod-nchan)")?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    wait_listening(addr, &mut child, &log)?;
    let master = child.id();
    let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))?;
    let mut pids: Vec<u32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.push(master);
    Ok(Server {
        name: "nchan",
        child,
        addr,
        pids,
        target: vec!["--target".into(), "nchan".into()],
        dir,
        redis: None,
    })
}

/// Runs one scenario as a child process on core 1 and returns its JSON.
fn scenario(server: &Server, name: &str, args: &[(&str, String)]) -> Result<Value> {
    let me = std::env::current_exe()?;
    let pids: Vec<String> = server.pids.iter().map(u32::to_string).collect();
    let mut cmd = pinned("1", &me);
    cmd.arg(name)
        .args([
            "--server",
            &server.addr.to_string(),
            "--pids",
            &pids.join(","),
        ])
        .args(&server.target);
    for (k, v) in args {
        cmd.arg(format!("--{k}")).arg(v);
    }
    let line = command_line(&cmd);
    let out = cmd.stderr(Stdio::inherit()).output()?;
    ensure!(
        out.status.success(),
        "{name} against {} failed ({}): {line}",
        server.name,
        out.status
    );
    let mut value: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{name}: {}", String::from_utf8_lossy(&out.stdout)))?;
    eprintln!("  {} {name} {}", server.name, compact(&value));
    value["command"] = Value::String(line);
    Ok(value)
}

/// The command as one shell line, for the report (the key is shown as `$KEY`).
fn command_line(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    let mut secret = false;
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        words.push(if secret {
            "$KEY".into()
        } else {
            arg.to_string()
        });
        secret = arg == "--key";
    }
    words.join(" ")
}

/// A scenario's result, or in a full run its failure recorded as `{"failed": …}` so that one
/// server's failure leaves the others' figures standing (the smoke run fails at once instead).
fn attempt(server: &Server, name: &str, args: &[(&str, String)], smoke: bool) -> Result<Value> {
    match scenario(server, name, args) {
        Ok(v) => Ok(v),
        Err(e) if !smoke => {
            eprintln!("  FAILED: {e:#}");
            Ok(serde_json::json!({ "scenario": name, "failed": format!("{e:#}") }))
        }
        Err(e) => Err(e),
    }
}

fn compact(v: &Value) -> String {
    let keys = [
        "rate",
        "publisher_rate",
        "generator_limited",
        "delivered",
        "lost",
        "lost_announced",
        "duplicated",
        "p50_ms",
        "p99_ms",
        "server_us_per_delivery",
        "server_core_share",
        "generator_core_share",
        "kib_per_stream",
        "exact",
        "seconds_to_all_resumed",
    ];
    keys.iter()
        .filter_map(|k| v.get(*k).map(|x| format!("{k}={x}")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// Whether a fanout run delivered everything exactly (and within `p99_ms_max`).
fn clean(v: &Value, p99_ms_max: Option<f64>) -> bool {
    v["complete"] == true
        && v["lost"] == 0
        && v["duplicated"] == 0
        && v["foreign_frames"] == 0
        && p99_ms_max.is_none_or(|max| v["p99_ms"].as_f64().is_some_and(|p| p <= max))
}

/// Whether a run's publisher fell behind the rate asked for: its figures are the generator's,
/// never the server's.
fn limited(v: &Value) -> bool {
    v["generator_limited"] == true
}

/// The highest rate with a clean run (and that run's index), if any, and every run of the
/// ladder up to the first that was not clean.
type Ladder = (Option<(f64, usize)>, Vec<Value>);

/// Figures of one server.
#[derive(Default)]
struct Figures {
    cpu: Option<Value>,
    max_rate: Option<Ladder>,
    idle: Option<Value>,
    channels: Option<Value>,
    reconnect: Option<Value>,
}

async fn measure(server: &Server, smoke: bool) -> Result<Figures> {
    let mut f = Figures::default();
    let (subs, secs) = if smoke { (200, "2") } else { (2000, "10") };
    // Idle memory first, on the fresh process: after the fan-out runs its RSS would include
    // whatever heap their backlogs left behind, charged to the idle streams.
    let streams = if smoke { 1000 } else { 10_000 };
    f.idle = Some(attempt(
        server,
        "idle",
        &[("streams", s(streams)), ("channels", s(streams / 10))],
        smoke,
    )?);
    f.cpu = Some(attempt(
        server,
        "fanout",
        &[
            ("subscribers", s(subs)),
            ("rate", s(200)),
            ("seconds", s(secs)),
        ],
        smoke,
    )?);
    if !smoke {
        let mut runs = Vec::new();
        let mut best = None;
        for rate in [
            50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1200.0, 1600.0, 2000.0, 2400.0, 3200.0,
        ] {
            let v = attempt(
                server,
                "fanout",
                &[
                    ("subscribers", s(2000)),
                    ("rate", s(rate)),
                    ("seconds", s(5)),
                ],
                smoke,
            )?;
            // A run the publisher could not drive at its rate says nothing of the server: the
            // ladder stops there, and the report says it was the generator.
            let ok = clean(&v, Some(100.0)) && !limited(&v);
            runs.push(v);
            if !ok {
                break;
            }
            best = Some((rate, runs.len() - 1));
        }
        f.max_rate = Some((best, runs));
    }
    let (chans, rate) = if smoke { (100, 500) } else { (1000, 2000) };
    f.channels = Some(attempt(
        server,
        "fanout",
        &[
            ("channels", s(chans)),
            ("subscribers", s(5)),
            ("rate", s(rate)),
            ("seconds", s(secs)),
        ],
        smoke,
    )?);
    f.reconnect = Some(attempt(
        server,
        "reconnect",
        &[("streams", s(streams)), ("channels", s(streams / 100))],
        smoke,
    )?);
    Ok(f)
}

fn check_smoke(server: &Server, f: &Figures) -> Result<()> {
    for (what, v) in [("fan-out", &f.cpu), ("1 channel each", &f.channels)] {
        let v = v.as_ref().context("missing run")?;
        ensure!(
            clean(v, None),
            "{}: {what} was not exact: {}",
            server.name,
            compact(v)
        );
    }
    let idle = f.idle.as_ref().context("missing idle")?;
    ensure!(
        idle["open"] == idle["streams"],
        "{}: idle streams failed: {idle}",
        server.name
    );
    let r = f.reconnect.as_ref().context("missing reconnect")?;
    ensure!(
        r["complete"] == true && r["exact"] == r["streams"],
        "{}: reconnect was not exact: {r}",
        server.name
    );
    Ok(())
}

pub async fn run(flags: &Flags) -> Result<Value> {
    let herald = PathBuf::from(flags.get("herald").context("--herald PATH")?);
    let root = PathBuf::from(flags.get("root").unwrap_or_else(|| ".".into()));
    let plans = root.join("bench/plans.toml");
    let smoke = flags.get("smoke").is_some_and(|v| v == "true");
    let redis_url = flags.get("redis-url");
    if let Some(out) = flags.get("perf") {
        return profile(&herald, &plans, redis_url.as_deref(), &out).await;
    }
    let load_at_start = load_average();
    let mut results: Vec<(&'static str, Figures)> = Vec::new();
    {
        let server = start_herald("herald-embedded", &herald, &plans, None).await?;
        eprintln!("herald embedded on {}", server.addr);
        results.push((server.name, measure(&server, smoke).await?));
        if smoke {
            check_smoke(&server, &results.last().unwrap().1)?;
        }
    }
    match &redis_url {
        Some(url) => {
            let server = start_herald("herald-redis", &herald, &plans, Some(url)).await?;
            eprintln!("herald through Redis on {}", server.addr);
            results.push((server.name, measure(&server, smoke).await?));
            if smoke {
                check_smoke(&server, &results.last().unwrap().1)?;
            }
        }
        None => eprintln!("no --redis-url: Herald through Redis is not measured"),
    }
    if !smoke {
        let server = start_nchan(&root.join("bench/nchan.conf"))?;
        eprintln!("nchan on {}", server.addr);
        results.push((server.name, measure(&server, false).await?));
    }
    let table = render(&results, smoke);
    println!("{table}");
    if let Some(out) = flags.get("out") {
        std::fs::write(&out, markdown(&table, &results, &herald, &load_at_start)?)?;
        eprintln!("wrote {out}");
    }
    Ok(Value::Null)
}

impl Figures {
    /// Every run, in the order they ran.
    fn all(&self) -> Vec<&Value> {
        let mut all: Vec<&Value> = Vec::new();
        all.extend(self.idle.iter());
        all.extend(self.cpu.iter());
        if let Some((_, runs)) = &self.max_rate {
            all.extend(runs.iter());
        }
        all.extend(self.channels.iter());
        all.extend(self.reconnect.iter());
        all
    }
}

/// `--perf OUT`: the fan-out scenario under `perf record`, for Herald embedded at the load of
/// the CPU row and at a load that saturates its core, and through Redis at the first; the
/// sections go to `OUT`.
async fn profile(herald: &Path, plans: &Path, redis_url: Option<&str>, out: &str) -> Result<Value> {
    let mut md = String::from(
        "# Where Herald's time goes\n\nWritten by `cargo xtask bench --perf`: `perf record -e \
         cpu-clock --call-graph dwarf` of the server process (pinned to core 0) during the \
         fan-out scenario of `bench/RESULTS.md` (one channel, 2,000 subscribers, 256-byte \
         events), perf itself on the generator's core. Release build with line tables. Rerunning \
         rewrites this file; the full folded stacks go to /tmp (printed at the end of the \
         run).\n\n",
    );
    let _ = writeln!(
        md,
        "Herald commit {}; kernel {}; load average at the start {}.\n",
        version("git", &["rev-parse", "--short", "HEAD"]),
        version("uname", &["-r"]),
        load_average()
    );
    let mut runs: Vec<(&'static str, Option<&str>, f64)> = vec![
        ("herald-embedded", None, 200.0),
        ("herald-embedded", None, 800.0),
    ];
    if let Some(url) = redis_url {
        runs.push(("herald-redis", Some(url), 200.0));
    }
    for (name, url, rate) in runs {
        let server = start_herald(name, herald, plans, url).await?;
        let args = [
            ("subscribers", s(2000)),
            ("rate", s(rate)),
            ("seconds", s(10)),
        ];
        let recording = crate::profile::Recording::start(server.pids[0], "1", &server.dir)?;
        let run = scenario(&server, "fanout", &args);
        let folded = recording.finish()?;
        let run = run?;
        let folded_path = std::env::temp_dir().join(format!(
            "herald-profile-{}-{name}-{rate}.folded",
            std::process::id()
        ));
        std::fs::write(&folded_path, folded.text())?;
        eprintln!("  folded stacks: {}", folded_path.display());
        let title = format!("{name}, 1 × 2,000 at {rate} events/s");
        md += &crate::profile::report(&title, run["command"].as_str().unwrap_or(""), &run, &folded);
    }
    std::fs::write(out, &md)?;
    eprintln!("wrote {out}");
    Ok(Value::Null)
}

fn get<'a>(results: &'a [(&str, Figures)], name: &str) -> Option<&'a Figures> {
    results.iter().find(|(n, _)| *n == name).map(|(_, f)| f)
}

fn num(v: &Option<Value>, key: &str) -> Option<f64> {
    v.as_ref().and_then(|v| v[key].as_f64())
}

/// Whether a table row's figure came from a run whose publisher fell behind its rate.
#[derive(Clone, Copy)]
enum Behind {
    No,
    /// The run's figures are the generator's: not shown as the server's.
    Run,
    /// The ladder stopped at a rate the publisher could not drive: its figure is a floor.
    Above,
}

impl Behind {
    fn of(run: &Option<Value>) -> Self {
        if run.as_ref().is_some_and(limited) {
            Self::Run
        } else {
            Self::No
        }
    }
}

fn render(results: &[(&str, Figures)], smoke: bool) -> String {
    type Row = (
        &'static str,
        fn(&Figures) -> Option<f64>,
        &'static str,
        fn(&Figures) -> Behind,
    );
    // (what, figure, unit, whether its run's publisher fell behind)
    let cpu = |f: &Figures| Behind::of(&f.cpu);
    let channels = |f: &Figures| Behind::of(&f.channels);
    let ladder = |f: &Figures| match &f.max_rate {
        Some((_, runs)) if runs.last().is_some_and(limited) => Behind::Above,
        _ => Behind::No,
    };
    let none = |_: &Figures| Behind::No;
    let rows: [Row; 15] = [
        (
            "server CPU per delivery, 1 × 2,000 at 200/s",
            |f| num(&f.cpu, "server_us_per_delivery"),
            "µs",
            cpu,
        ),
        ("  p99 at that load", |f| num(&f.cpu, "p99_ms"), "ms", cpu),
        (
            "  server core share in that run",
            |f| num(&f.cpu, "server_core_share"),
            "cores",
            cpu,
        ),
        (
            "  generator core share in that run",
            |f| num(&f.cpu, "generator_core_share"),
            "cores",
            cpu,
        ),
        (
            "highest rate, 1 × 2,000, p99 ≤ 100 ms, nothing lost",
            |f| {
                f.max_rate
                    .as_ref()
                    .map(|(best, _)| best.map_or(0.0, |(rate, _)| rate))
            },
            "events/s",
            ladder,
        ),
        (
            "  generator core share at that rate",
            |f| {
                let (best, runs) = f.max_rate.as_ref()?;
                runs.get(best.as_ref()?.1)?["generator_core_share"].as_f64()
            },
            "cores",
            none,
        ),
        (
            "memory per idle stream (RSS / streams, 10,000)",
            |f| num(&f.idle, "kib_per_stream"),
            "KiB",
            none,
        ),
        (
            "  added memory per idle stream",
            |f| num(&f.idle, "delta_kib_per_stream"),
            "KiB",
            none,
        ),
        (
            "  server core share holding them idle",
            |f| num(&f.idle, "server_core_share_while_idle"),
            "cores",
            none,
        ),
        (
            "publish→receive, 1,000 × 5 at 2,000/s, p50",
            |f| num(&f.channels, "p50_ms"),
            "ms",
            channels,
        ),
        ("  p99", |f| num(&f.channels, "p99_ms"), "ms", channels),
        (
            "  server CPU per event (publish and its 5 deliveries)",
            |f| num(&f.channels, "server_us_per_event"),
            "µs",
            channels,
        ),
        (
            "  generator core share in that run",
            |f| num(&f.channels, "generator_core_share"),
            "cores",
            channels,
        ),
        (
            "10,000 resume 50 back: all exact after",
            |f| {
                f.reconnect.as_ref().and_then(|r| {
                    (r["exact"] == r["streams"])
                        .then(|| r["seconds_to_all_resumed"].as_f64())
                        .flatten()
                })
            },
            "s",
            none,
        ),
        (
            "  generator core share while resuming",
            |f| num(&f.reconnect, "generator_core_share"),
            "cores",
            none,
        ),
    ];
    let nchan = get(results, "nchan");
    let mut out = String::new();
    let _ = writeln!(out, "| what | unit | Herald embedded | ratio to Nchan | Herald + Redis | ratio to Nchan | Nchan |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let fmt = |v: Option<f64>| {
        v.map_or("—".to_owned(), |v| {
            format!("{v:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned()
        })
    };
    for (what, figure, unit, behind) in rows {
        // A generator-limited run of Nchan's is no figure to compare with either.
        let peer = nchan
            .filter(|f| !matches!(behind(f), Behind::Run))
            .and_then(figure);
        let cell = |name: &str| {
            let Some(f) = get(results, name) else {
                return ("—".to_owned(), "—".to_owned());
            };
            let mine = figure(f);
            let ratio = match (mine, peer) {
                (Some(m), Some(p)) if p != 0.0 => format!("{:.2}×", m / p),
                _ => "—".to_owned(),
            };
            match behind(f) {
                Behind::No => (fmt(mine), ratio),
                Behind::Run => ("generator-limited".to_owned(), "—".to_owned()),
                // The last rate the publisher kept up with bounds the server's from below.
                Behind::Above => (format!("≥ {} (generator-limited above)", fmt(mine)), ratio),
            }
        };
        let (e, er) = cell("herald-embedded");
        let (r, rr) = cell("herald-redis");
        let (n, _) = cell("nchan");
        let _ = writeln!(out, "| {what} | {unit} | {e} | {er} | {r} | {rr} | {n} |");
    }
    let mut notes = Vec::new();
    for (name, f) in results {
        if let Some((None, _)) = &f.max_rate {
            notes.push(format!(
                "- {name}: not even the ladder's first rate (50/s) was clean; its highest rate \
                 shows as 0"
            ));
        }
        for v in f.all() {
            if limited(v) {
                notes.push(format!(
                    "- {name} {} {} × {} at {}/s: GENERATOR-LIMITED: the publisher offered {:.0}/s \
                     over {} connection(s), {:.1} events a request, worst {:.0} ms behind its \
                     schedule, using {:.2} of its core ({}); not a server figure",
                    v["scenario"],
                    v["channels"],
                    v["subscribers_per_channel"],
                    v["rate"],
                    v["publisher_rate"].as_f64().unwrap_or(0.0),
                    v["publisher_connections"],
                    v["events_per_request"].as_f64().unwrap_or(0.0),
                    v["publisher_worst_lag_ms"].as_f64().unwrap_or(0.0),
                    v["generator_core_share"].as_f64().unwrap_or(0.0),
                    if v["generator_core_share"].as_f64().unwrap_or(0.0) < 0.9 {
                        "not saturated: the server's answers to the publishes held it back"
                    } else {
                        "saturated: the generator itself was the limit"
                    },
                ));
            }
            if let Some(why) = v["failed"].as_str() {
                notes.push(format!("- {name} {}: FAILED: {why}", v["scenario"]));
            } else if v["scenario"] == "fanout" && !clean(v, None) {
                notes.push(format!("- {name} fanout: NOT EXACT: {}", compact(v)));
            } else if v["scenario"] == "reconnect" && v["exact"] != v["streams"] {
                notes.push(format!(
                    "- {name} reconnect: {} of {} resumed exactly; {}",
                    v["exact"], v["streams"], v["streams_detail"]
                ));
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(
            out,
            "\nFailed, inexact or generator-limited runs (a failed run's figures are \"—\" \
             above):\n"
        );
        for n in notes {
            let _ = writeln!(out, "{n}");
        }
    }
    let _ = writeln!(
        out,
        "\nA latency of 10000 ms is the histogram's ceiling: 10 s or more."
    );
    if smoke {
        let _ = writeln!(
            out,
            "\n(smoke run: small counts, exactness checked, figures not comparable)"
        );
    }
    out
}

fn version(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn markdown(
    table: &str,
    results: &[(&str, Figures)],
    herald: &Path,
    load_at_start: &str,
) -> Result<String> {
    let mut md = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let _ = writeln!(md, "# Benchmark results\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench` ({}).\n",
        version("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    let dirty = if version("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        ", with uncommitted changes"
    };
    let _ = writeln!(
        md,
        "- Command: `cargo xtask bench`, which builds release and runs `{}`; each scenario's own \
         command is in its JSON below (`command`).",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let _ = writeln!(
        md,
        "- Herald: {} (commit {}{dirty})",
        version(&herald.display().to_string(), &["--version"]),
        version("git", &["rev-parse", "--short", "HEAD"])
    );
    let _ = writeln!(
        md,
        "- Nchan: {} ({})",
        version(
            "dpkg-query",
            &["-W", "-f", "${Version}", "libnginx-mod-nchan"]
        ),
        version("nginx", &["-v"])
    );
    let _ = writeln!(
        md,
        "- Machine: {} ({} cores), kernel {}",
        cpu,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        version("uname", &["-r"])
    );
    let _ = writeln!(
        md,
        "- Load average (1, 5, 15 min) when the suite started: {load_at_start}; when it ended: {}. \
         Anything well above 0 means other work shared the cores and the figures are noisy.",
        load_average()
    );
    let _ = writeln!(md, "- Each server pinned to core 0 (`taskset -c 0`), the load generator (`herald-loadgen`, one thread) to core 1. 256-byte events. Herald runs `herald serve` on SQLite with `bench/plans.toml`; \"+ Redis\" adds `--redis-url`. Nchan runs `bench/nchan.conf`.\n");
    let _ = writeln!(md, "{table}");
    let _ = writeln!(
        md,
        "## The publisher\n\nWhat the publisher offered in each fan-out run: a run more than {:.0} % \
         below its rate, or further behind its schedule than {:.0} % of its length (and \
         than {LAG_FLOOR_MS} ms), is generator-limited and none of its figures is counted as the server's. Each connection \
         owns a fixed share of the channels (so one channel always has one connection).\n",
        GENERATOR_TOLERANCE * 100.0,
        GENERATOR_TOLERANCE * 100.0
    );
    let _ = writeln!(
        md,
        "| server | channels × subscribers | requested/s | offered/s | worst lag ms | connections | generator-limited |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for (name, f) in results {
        for v in f.all().into_iter().filter(|v| v["scenario"] == "fanout") {
            let _ = writeln!(
                md,
                "| {name} | {} × {} | {} | {:.0} | {:.1} | {} | {} |",
                v["channels"],
                v["subscribers_per_channel"],
                v["rate"],
                v["publisher_rate"].as_f64().unwrap_or(0.0),
                v["publisher_worst_lag_ms"].as_f64().unwrap_or(0.0),
                v["publisher_connections"],
                if limited(v) { "**yes**" } else { "no" }
            );
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "## Every run\n\nOne JSON object per scenario run, as the generator printed it (`generator_core_share` near 1.0 would mean the generator, not the server, was the limit).\n");
    for (name, f) in results {
        let _ = writeln!(md, "### {name}\n\n```");
        for v in f.all() {
            let _ = writeln!(md, "{v}");
        }
        let _ = writeln!(md, "```\n");
    }
    Ok(md)
}
