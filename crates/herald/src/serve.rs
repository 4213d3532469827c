//! The accept loop: every connection of the process, HTTP/1.1 or h2c (HTTP/2 with prior
//! knowledge), bounded in number and in the time it may take to say what it wants.
//!
//! - A connection beyond `--max-connections` is answered at once with a canned 503 problem and
//!   closed: no task, no parser, no buffer is spent on it.
//! - A connection must complete its first request's headers within `--header-read-timeout-secs`
//!   of its start (slowloris), whichever protocol it speaks: that head is read here, and a
//!   stream request is served by [`crate::lean`] without hyper's per-connection buffers;
//!   everything else is handed to hyper with the bytes read so far. After that, a kept-alive HTTP/1.1
//!   connection has `--keep-alive-secs` to send each next request's headers, idle time included
//!   (hyper's timer, which cannot tell waiting from reading: so it must be the longer one, and
//!   an idle connection holds its place no longer than a slow one).
//! - On shutdown the loop stops accepting and asks every connection to finish gracefully; it
//!   returns when all have ended. Streams end themselves on the same token.
//!
//! Request-level limits (header and URI sizes, body and request timeouts, streams per IP) are
//! [`crate::request_limits`]'s, enforced where the client's address is known.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use herald_core::{ErrorCode, Problem};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::lean::{self, First, Rewind};

/// The largest request head (request line and headers) hyper buffers; past it hyper itself
/// answers a bare 431 and closes. Our own, smaller limits in [`crate::request_limits`] answer
/// problem+json below it.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header fields hyper parses; past it hyper itself answers a bare 431.
pub const MAX_HEADERS_PARSED: usize = 256;
/// Refused connections whose answer is being delivered at once; beyond, a refusal just closes.
const REFUSALS_IN_FLIGHT: usize = 256;
/// How long a refused connection may take to read its answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The timeouts and caps of the server, from the configuration.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub keep_alive: Duration,
    pub body_read_timeout: Duration,
    pub request_timeout: Duration,
    /// Connections held at once by this process.
    pub max_connections: usize,
    /// Streams one client IP may hold open; 0 = no limit.
    pub max_streams_per_ip: usize,
}

/// hyper's connection builder, HTTP/1.1 and h2c: every protocol setting in one place.
pub fn builder(limits: &ServerLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.keep_alive)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS_PARSED);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        // Rapid reset (CVE-2023-44487): streams the client opens and cancels before we answer
        // count here, and past the limit the connection is closed with GOAWAY.
        .max_pending_accept_reset_streams(20)
        // A peer that stops answering pings is gone: its streams end.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Serves `router` on `listener` until `shutdown`, then waits for every connection to end.
/// `refused` is called for every connection turned away at the process cap.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
    refused: impl Fn() + Send + Sync + 'static,
) {
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let permits = Arc::new(Semaphore::new(max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let builder = Arc::new(builder(&limits));
    let warned = AtomicI64::new(0);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors, most likely: let connections end.
                        tracing::error!(error = %e, "accept failed");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = shutdown.cancelled() => break,
                        }
                    }
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused();
            warn_at_most_every_minute(&warned, max);
            refuse(tcp, &refusals);
            continue;
        };
        // Every event must leave at once: without TCP_NODELAY, Nagle holds a second small frame
        // until the client's delayed ACK (~40 ms). Frames are coalesced by us, not the kernel.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            router: router.clone(),
            builder: builder.clone(),
            peer,
            header_read_timeout: limits.header_read_timeout,
            shutdown: shutdown.clone(),
        };
        tokio::spawn(connection.run(tcp, permit));
    }
    drop(listener);
    // Every permit back: every connection has ended.
    let _ = permits.acquire_many(max as u32).await;
}

struct Connection {
    router: Router,
    builder: Arc<Builder<TokioExecutor>>,
    peer: SocketAddr,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
}

impl Connection {
    /// Serves the connection; `_permit` counts it against `--max-connections` until it ends.
    async fn run(self, mut tcp: TcpStream, _permit: OwnedSemaphorePermit) {
        let first = tokio::select! {
            // Boxed, as everything else a stream's task runs only once: the task is as large as
            // its largest state, and an idle stream's is its wait for events.
            first = Box::pin(lean::read_head(&mut tcp, self.peer, self.header_read_timeout)) => first,
            () = self.shutdown.cancelled() => return,
        };
        let read = match first {
            First::Stream(req) => {
                // A task of its own for the stream, as large as its wait: this one, which had
                // room for reading a head, ends here. Awaited in place instead, even unboxed,
                // the stream would keep both (a task's size rounds up to 128 bytes).
                tokio::spawn(lean::serve(tcp, self.router, req, _permit));
                return;
            }
            First::Hyper(read) => read,
            First::Nothing => {
                tracing::debug!(peer = %self.peer, "no request within the header read timeout; closing");
                return;
            }
        };
        // Boxed: hyper's connection state is larger than everything else here together, and an
        // unboxed await would make every connection's task — each idle stream's too — that large.
        let Connection {
            router,
            builder,
            peer,
            shutdown,
            ..
        } = self;
        Box::pin(hyper_connection(router, builder, peer, shutdown, read, tcp)).await;
    }
}

/// Serves the rest of a connection through hyper, the bytes already read first.
async fn hyper_connection(
    router: Router,
    builder: Arc<Builder<TokioExecutor>>,
    peer: SocketAddr,
    shutdown: CancellationToken,
    read: Bytes,
    tcp: TcpStream,
) {
    let service = {
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // Peer addresses feed the per-IP limits and the audit log.
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                Ok::<_, Infallible>(
                    router
                        .call(req.map(Body::new))
                        .await
                        .unwrap_or_else(|e| match e {}),
                )
            }
        })
    };
    // The first head is complete (or hyper's to refuse) already: hyper's own timer covers
    // every next one.
    let conn = builder.serve_connection(TokioIo::new(Rewind::new(read, tcp)), service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                break;
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Errors of one connection that `accept` reports; the listener itself is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The whole answer to a connection over the cap: a 503 problem, `Retry-After`, and close.
static REFUSAL: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let problem = Problem::new(
        ErrorCode::Unavailable,
        "this server holds as many connections as it can; retry shortly",
    );
    let body = serde_json::to_string(&problem).expect("a problem serializes");
    let mut head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n",
        herald_core::problem::CONTENT_TYPE,
        body.len()
    );
    for (name, value) in &herald_http::security::headers(herald_http::security::API_CSP) {
        head += &format!(
            "{name}: {}\r\n",
            value.to_str().expect("static ASCII values")
        );
    }
    format!("{head}\r\n{body}").into_bytes()
});

/// Answers and closes a connection over the cap. The answer fits any socket's send buffer, so
/// one non-blocking write sends it. Closing with unread request bytes would reset the
/// connection and could destroy the answer before the client reads it, so a few refusals at a
/// time read the request out first, for at most a second.
fn refuse(tcp: TcpStream, refusals: &Arc<Semaphore>) {
    let _ = tcp.try_write(&REFUSAL);
    let Ok(slot) = refusals.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let mut tcp = tcp;
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        drop(slot);
    });
}

fn warn_at_most_every_minute(last: &AtomicI64, max: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let before = last.load(Ordering::Relaxed);
    if now - before >= 60
        && last
            .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            max_connections = max,
            "connection refused: the process holds --max-connections connections"
        );
    }
}

/// Raises this process's soft open-files limit to its hard limit, as servers that hold many
/// sockets do (Go's runtime does it for every program).
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return;
            }
            // An "unlimited" hard limit is still capped by the kernel (fs.nr_open, 2^20 by
            // default): ask for that much.
            let target = lim.rlim_max.min(1 << 20);
            if lim.rlim_cur < target {
                let raised = libc::rlimit {
                    rlim_cur: target,
                    rlim_max: lim.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
            }
        }
    }
}

/// `--max-connections` when unset: nine tenths of the open-files limit, so that the database
/// pool, Redis and files always have descriptors left and `accept` never fails for want of one.
pub fn default_max_connections() -> usize {
    let limit = open_files_limit();
    limit.saturating_sub(limit / 10).max(1)
}

fn open_files_limit() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct passed.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            return usize::try_from(lim.rlim_cur.min(1 << 20)).unwrap_or(1 << 20);
        }
    }
    1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_one_complete_problem_response() {
        let text = String::from_utf8(REFUSAL.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("\r\nretry-after: 1"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        assert!(head.contains("\r\nx-content-type-options: nosniff"));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["code"], "unavailable");
        assert!(REFUSAL.len() < 2048, "one write, in any send buffer");
    }

    #[test]
    fn the_default_cap_leaves_descriptors_for_everything_else() {
        raise_open_files_limit();
        let limit = open_files_limit();
        let cap = default_max_connections();
        assert!(cap < limit && cap >= limit * 9 / 10 - 1, "{cap} of {limit}");
    }
}

#[cfg(test)]
mod future_sizes {
    use super::*;

    fn size_of_output3<A, B, C, F>(_: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn size_of_output4<A, B, C, D, F>(_: impl Fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn size_of_output6<A, B, C, D, E, G, F>(_: impl Fn(A, B, C, D, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What an idle stream costs is mostly its task, which is as large as its largest state:
    /// it must carry neither a hyper connection's state it never has, nor the request, the
    /// router's future or anything else that runs once, but only what waiting for events needs.
    /// A lean stream's task is `lean::serve` alone (spawned once the head is read); a
    /// connection's first task, `Connection::run`, lives only until then.
    #[test]
    fn an_idle_stream_s_task_holds_only_its_wait() {
        let run = size_of_output3(Connection::run);
        let lean = size_of_output4(lean::serve);
        let hyper = size_of_output6(hyper_connection);
        // Today (release): 344, 136 and 1,864 bytes; before the boxing, run was 1,824 and
        // lean::serve 1,376, and a stream kept both (run awaited lean::serve, boxed).
        assert!(
            run <= 512 && run < hyper,
            "Connection::run {run} B (hyper_connection {hyper} B)"
        );
        // A task is its future and about 104 bytes of header and trailer, rounded up to 128:
        // up to 152 bytes, a stream's task is 256.
        assert!(lean <= 152, "lean::serve {lean} B");
    }
}
