//! The private nginx in front of the edges: its configuration and its process.
//!
//! The `http` block below is the one of `deploy/nginx.conf` (the deploy kit's checks compare
//! their proxy directives), with loopback upstreams and every path inside the prefix.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// The nginx binary: Debian's package installs it in /usr/sbin, which is not on every PATH.
pub fn find() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nginx"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_default();
    if let Some(nginx) = on_path {
        return Ok(nginx);
    }
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.is_file() {
        return Ok(sbin);
    }
    bail!("nginx is not installed: install the Debian package nginx (`apt-get install nginx`)")
}

/// The proxy directives every Herald nginx needs, shared with `deploy/nginx.conf` (a test checks
/// that it has each of these lines): SSE must not be buffered, upstream connections are kept
/// alive, streams are long-lived, and a dead or draining edge is skipped rather than answered
/// with an error.
///
/// - Only connection errors and timeouts send a request to the next edge: a 503 from an edge is
///   Herald's own answer (the broker is down, with `Retry-After`) and must reach the client.
/// - `non_idempotent`: a publish sent on a kept-alive connection that a draining edge closes at
///   that very moment is retried on another edge instead of answering 502. A publish that an
///   edge stored and then died before answering can so be stored twice, exactly as when the
///   client retries itself; publishers that must not double send `Idempotency-Key`.
pub const PROXY_DIRECTIVES: &str = "\
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_cache off;
            proxy_request_buffering off;
            proxy_connect_timeout 2s;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;
";

/// How requests choose an upstream, shared with `deploy/nginx.conf` like [`PROXY_DIRECTIVES`].
///
/// Passive health checks (`max_fails`) only forgive an edge when a request to it *completes*,
/// and a stream does not complete for hours: once an edge has failed, the streams sent to probe it
/// keep it marked as failed, and after a rolling restart every edge is, so that nginx answers
/// "no live upstreams" (502) for seconds (the rolling-restart test saw 5 s of it). Streams
/// (every GET) therefore go to an upstream without failure accounting, where a dead edge costs a
/// refused connect and the next edge; everything else (publishes: short requests) to one with
/// `max_fails`, which those requests clear again within `fail_timeout`.
pub const UPSTREAM_POLICY: &str = "\
    map $request_method $herald_upstream {
        GET herald_streams;
        default herald_api;
    }
";

/// The whole configuration for a prefix, a listening port and the edges' ports.
pub fn config(prefix: &Path, port: u16, upstreams: &[u16]) -> String {
    let prefix = prefix.display();
    let servers = |policy: &str| -> String {
        upstreams
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p} {policy};\n"))
            .collect()
    };
    let (api, streams) = (
        servers("max_fails=3 fail_timeout=1s"),
        servers("max_fails=0"),
    );
    // Running as root, nginx would switch its workers to `nobody`, who cannot write the temp
    // paths in our state directory.
    let user = if is_root() { "user root;\n" } else { "" };
    format!(
        "{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    upstream herald_api {{
{api}        keepalive 64;
        keepalive_timeout 60s;
    }}
    upstream herald_streams {{
{streams}        keepalive 64;
        keepalive_timeout 60s;
    }}
{UPSTREAM_POLICY}    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://$herald_upstream;
{PROXY_DIRECTIVES}        }}
    }}
}}
"
    )
}

/// Writes the configuration under `prefix` and starts nginx in the foreground as our child.
pub fn start(
    nginx: &Path,
    prefix: &Path,
    port: u16,
    upstreams: &[u16],
    detached: bool,
) -> Result<Child> {
    fs::create_dir_all(prefix.join("tmp"))
        .with_context(|| format!("creating {}", prefix.display()))?;
    let conf = prefix.join("nginx.conf");
    fs::write(&conf, config(prefix, port, upstreams))?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(&conf)
        // Before it reads the configuration nginx opens its compiled-in error log; `-e` keeps
        // even that inside the prefix.
        .arg("-e")
        .arg(prefix.join("error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if detached {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", nginx.display()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}
