//! `herald-loadgen suite --perf OUT`: where the server's time goes during a fan-out run.
//!
//! `perf record -e cpu-clock` samples the server process (software sampling: it works on VMs
//! that expose no hardware counters). Stacks are unwound from DWARF (`--call-graph dwarf`):
//! Rust's release code keeps no frame pointers, and the line tables of the release profile
//! are enough for perf to name every inlined frame's function. The samples are folded into
//! stacks (`outer;…;leaf count`, the input of any flame graph tool) and summed three ways:
//! the functions the samples were in (self time), the share of samples under each part of the
//! hot path (inclusive, so the parts overlap), and the heaviest stacks.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{ensure, Context, Result};

/// Samples per second. With 16 KiB of stack copied per sample, 499 Hz is ~8 MB/s of data:
/// enough samples for a 10 s run, little enough that perf (on the generator's core) keeps up.
const FREQUENCY: &str = "499";
const STACK_BYTES: &str = "16384";

/// The parts of the hot path a sample can be under, each a set of function-name fragments
/// (a sample counts towards a part if any frame of its stack contains one of them).
const PARTS: &[(&str, &[&str])] = &[
    (
        "socket writes (write/writev/sendmsg syscalls, kernel TCP send)",
        &[
            "__x64_sys_write",
            "__x64_sys_writev",
            "__x64_sys_sendmsg",
            "__x64_sys_sendto",
            "tcp_sendmsg",
        ],
    ),
    (
        "  of which loopback delivery to the reader (softirq, charged to the sender)",
        &["net_rx_action", "__netif_receive_skb", "tcp_v4_rcv"],
    ),
    (
        "socket reads (read/recv syscalls)",
        &["__x64_sys_read", "__x64_sys_recvfrom", "tcp_recvmsg"],
    ),
    (
        "epoll (waiting for and collecting readiness)",
        &["epoll_wait", "ep_poll", "__x64_sys_epoll"],
    ),
    ("all syscalls", &["entry_SYSCALL_64"]),
    (
        "hyper HTTP/1 connection (read/write dispatch, encoding, buffers)",
        &["hyper::proto::h1"],
    ),
    (
        "hyper/axum body and stream glue (http_body, axum::body, Sse)",
        &[
            "http_body",
            "axum::body",
            "axum::response::sse",
            "hyper::body",
        ],
    ),
    (
        "broadcast channel (send, receive, wake-ups)",
        &["tokio::sync::broadcast"],
    ),
    ("tokio Notify (wait lists)", &["tokio::sync::notify"]),
    (
        "cancellation token checks",
        &["tokio_util::sync::cancellation_token"],
    ),
    (
        "Bytes reference counts (clone, drop)",
        &["bytes::bytes::shared_clone", "bytes::bytes::shared_drop"],
    ),
    (
        "tokio timers (sleep, timeouts, the timer wheel)",
        &["tokio::runtime::time", "tokio::time::"],
    ),
    (
        "tokio scheduler (task polls, wakers, run queue)",
        &[
            "tokio::runtime::scheduler",
            "tokio::runtime::task",
            "tokio::runtime::context",
        ],
    ),
    (
        "memory allocation (malloc, free, realloc)",
        &[
            "malloc",
            "free",
            "realloc",
            "calloc",
            "__rust_alloc",
            "__rust_dealloc",
            "__rdl_",
            "_int_",
        ],
    ),
    (
        "memory copies (memcpy, memmove)",
        &["memcpy", "memmove", "__memmove", "copy_user"],
    ),
    ("Herald replay hub (crates/replay)", &["herald_replay"]),
    (
        "Herald stream feed (herald_edge::feed)",
        &["herald_edge::feed"],
    ),
    (
        "Herald SSE encoding (herald_core::sse)",
        &["herald_core::sse"],
    ),
    (
        "publish request (herald_edge, the publish handler)",
        &["publish"],
    ),
    ("the kernel (any frame)", &["[kernel]"]),
];

/// A `perf record` attached to the server for the length of a scenario.
pub struct Recording {
    child: Child,
    data: PathBuf,
    log: PathBuf,
}

impl Recording {
    /// Starts sampling `pid`, perf itself on `core`.
    pub fn start(pid: u32, core: &str, dir: &Path) -> Result<Self> {
        let data = dir.join("perf.data");
        let log = dir.join("perf.log");
        let child = Command::new("taskset")
            .args([
                "-c",
                core,
                "perf",
                "record",
                "-e",
                "cpu-clock",
                "-F",
                FREQUENCY,
            ])
            .args(["--call-graph", &format!("dwarf,{STACK_BYTES}")])
            .args(["-p", &pid.to_string(), "-o"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start perf (Debian package linux-perf)")?;
        // perf needs a moment to attach; samples before that are lost, not wrong.
        std::thread::sleep(std::time::Duration::from_millis(500));
        Ok(Self { child, data, log })
    }

    /// Stops sampling (SIGINT, as Ctrl-C: perf writes its header and exits) and folds the
    /// samples into stacks.
    pub fn finish(mut self) -> Result<Folded> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let status = self.child.wait()?;
        ensure!(
            self.data.exists(),
            "perf record wrote nothing ({status}): {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        let out = Command::new("perf")
            .args(["script", "-F", "ip,sym,dso", "--no-inline", "-i"])
            .arg(&self.data)
            .stderr(Stdio::null())
            .output()
            .context("perf script")?;
        ensure!(out.status.success(), "perf script failed ({})", out.status);
        Ok(Folded::parse(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// Samples folded by stack, outermost frame first.
#[derive(Debug, Default)]
pub struct Folded {
    pub stacks: HashMap<Vec<String>, u64>,
    pub samples: u64,
}

impl Folded {
    /// Reads `perf script` output: one block per sample, a frame per line (`ip symbol (dso)`,
    /// leaf first), blocks separated by a blank line. With `-F ip,sym,dso` a block has no
    /// header line.
    pub fn parse(script: &str) -> Self {
        let mut folded = Folded::default();
        let mut frames: Vec<String> = Vec::new();
        let flush = |frames: &mut Vec<String>, folded: &mut Folded| {
            if frames.is_empty() {
                return;
            }
            frames.reverse();
            *folded.stacks.entry(std::mem::take(frames)).or_default() += 1;
            folded.samples += 1;
        };
        for line in script.lines() {
            let line = line.trim();
            if line.is_empty() {
                flush(&mut frames, &mut folded);
                continue;
            }
            frames.push(frame_name(line));
        }
        flush(&mut frames, &mut folded);
        folded
    }

    /// The functions samples were in, with their share, heaviest first.
    pub fn self_time(&self) -> Vec<(String, u64)> {
        let mut by: HashMap<&str, u64> = HashMap::new();
        for (stack, n) in &self.stacks {
            if let Some(leaf) = stack.last() {
                *by.entry(leaf).or_default() += n;
            }
        }
        sorted(by.into_iter().map(|(k, v)| (k.to_owned(), v)))
    }

    /// Samples with any frame containing one of `patterns`.
    pub fn under(&self, patterns: &[&str]) -> u64 {
        self.stacks
            .iter()
            .filter(|(stack, _)| stack.iter().any(|f| patterns.iter().any(|p| f.contains(p))))
            .map(|(_, n)| n)
            .sum()
    }

    /// The folded text: `outer;…;leaf count` per line, heaviest first.
    pub fn text(&self) -> String {
        sorted(self.stacks.iter().map(|(s, n)| (s.join(";"), *n)))
            .into_iter()
            .map(|(s, n)| format!("{s} {n}\n"))
            .collect()
    }
}

fn sorted(it: impl Iterator<Item = (String, u64)>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = it.collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// `7f12ab hyper::proto::h1::io::Buffered<T,B>::poll_flush+0x4d (/path/herald)` becomes
/// `hyper::proto::h1::io::Buffered<T,B>::poll_flush`; a kernel frame gets a `[kernel]` mark;
/// an unresolved one is named by its library.
fn frame_name(line: &str) -> String {
    let rest = line.split_once(' ').map_or("", |(_, r)| r).trim();
    let (sym, dso) = match rest.rfind(" (") {
        Some(i) => (&rest[..i], rest[i + 2..].trim_end_matches(')')),
        None => (rest, ""),
    };
    let sym = sym.rsplit_once("+0x").map_or(sym, |(s, _)| s);
    let sym = strip_hash(sym);
    // `[unknown]` is a frame the unwinder could not place (the outermost, mostly), not the
    // kernel's; `[vdso]` runs in user space without a syscall.
    let kernel = dso.contains("kernel.kallsyms");
    match (sym, kernel) {
        ("[unknown]" | "", true) => "[kernel] ?".to_owned(),
        ("[unknown]" | "", false) if dso == "[unknown]" || dso.is_empty() => "?".to_owned(),
        ("[unknown]" | "", false) => format!(
            "? ({})",
            Path::new(dso)
                .file_name()
                .map_or(dso.into(), |f| f.to_string_lossy())
        ),
        (s, true) => format!("[kernel] {s}"),
        (s, false) => s.to_owned(),
    }
}

/// Legacy Rust symbols end in `::h` and 16 hex digits; they only make equal functions differ.
fn strip_hash(sym: &str) -> &str {
    match sym.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => sym,
    }
}

/// The Markdown section of one profiled run.
pub fn report(title: &str, command: &str, run: &serde_json::Value, folded: &Folded) -> String {
    let mut md = String::new();
    let total = folded.samples.max(1) as f64;
    let pct = |n: u64| format!("{:.1} %", n as f64 * 100.0 / total);
    let _ = writeln!(md, "## {title}\n");
    let _ = writeln!(
        md,
        "`{command}`; {} samples at {FREQUENCY} Hz (cpu-clock, server process only).\n",
        folded.samples
    );
    let _ = writeln!(
        md,
        "The run itself (perf attached, so not a benchmark figure):\n\n```\n{run}\n```\n"
    );
    let _ = writeln!(md, "### Where the time goes (inclusive: a sample counts under every part its stack passes through)\n");
    let _ = writeln!(md, "| part | samples |\n|---|---|");
    for (part, patterns) in PARTS {
        let _ = writeln!(md, "| {part} | {} |", pct(folded.under(patterns)));
    }
    let _ = writeln!(md, "\n### Top functions by self time\n");
    let _ = writeln!(md, "| function | self |\n|---|---|");
    for (f, n) in folded.self_time().into_iter().take(40) {
        let _ = writeln!(md, "| `{}` | {} |", f.replace('|', "\\|"), pct(n));
    }
    let _ = writeln!(
        md,
        "\n### Heaviest stacks (folded, outermost first, the 25 innermost frames)\n\n```"
    );
    let text = folded.text();
    for line in text.lines().take(30) {
        let (stack, n) = line.rsplit_once(' ').unwrap_or((line, "0"));
        let frames: Vec<&str> = stack.split(';').collect();
        let shown = &frames[frames.len().saturating_sub(25)..];
        let _ = writeln!(md, "{} {n}", shown.join(";"));
    }
    let _ = writeln!(md, "```\n");
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
\t    55d0c0f0 hyper::proto::h1::io::Buffered<T,B>::poll_flush::h0123456789abcdef+0x4d (/t/herald)
\t    55d0c0a0 tokio::runtime::task::raw::poll+0x10 (/t/herald)

\t ffffffff81000000 tcp_sendmsg+0x20 ([kernel.kallsyms])
\t ffffffff81000100 __x64_sys_writev+0x9 ([kernel.kallsyms])
\t    55d0c0f0 hyper::proto::h1::io::Buffered<T,B>::poll_flush::h0123456789abcdef+0x4d (/t/herald)
\t    55d0c0a0 tokio::runtime::task::raw::poll+0x10 (/t/herald)

\t    55d0c0f0 hyper::proto::h1::io::Buffered<T,B>::poll_flush::h0123456789abcdef+0x4d (/t/herald)
\t    55d0c0a0 tokio::runtime::task::raw::poll+0x10 (/t/herald)
";

    #[test]
    fn folds_samples_into_stacks() {
        let f = Folded::parse(SCRIPT);
        assert_eq!(f.samples, 3);
        assert_eq!(f.stacks.len(), 2);
        let text = f.text();
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "tokio::runtime::task::raw::poll;hyper::proto::h1::io::Buffered<T,B>::poll_flush 2"
        );
        assert!(text.contains("poll_flush;[kernel] __x64_sys_writev;[kernel] tcp_sendmsg 1"));
        assert_eq!(f.under(&["tcp_sendmsg"]), 1);
        assert_eq!(f.under(&["hyper::proto::h1"]), 3);
        assert_eq!(
            f.self_time()[0],
            (
                "hyper::proto::h1::io::Buffered<T,B>::poll_flush".to_owned(),
                2
            )
        );
    }
}
