//! Hostile HTTP: clients that dribble, flood, smuggle, reset and send garbage, over raw TCP
//! where a well-behaved client library would refuse to misbehave. The server must stay up,
//! bounded, and answer in the API's error shape wherever it can see the request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use herald_tests::{both_backends, Backend, TestApp};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

both_backends!(garbage_in_every_parameter_is_refused_clearly);

/// An answer read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    /// The head, lowercased.
    head: String,
    body: String,
}

impl Raw {
    fn problem(&self) -> Value {
        assert!(
            self.head.contains("content-type: application/problem+json"),
            "not problem+json: {self:?}"
        );
        serde_json::from_str(&self.body).expect("a problem body")
    }
}

/// Reads one response: its head, then `content-length` bytes (or to the end of the connection).
async fn read_response(tcp: &mut TcpStream) -> Option<Raw> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = buf[head_end..].to_vec();
    while length.is_none_or(|len| body.len() < len) {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    Some(Raw {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends `request` on a new connection and reads the answer.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    read_response(&mut tcp).await.expect("an answer")
}

/// Whether the server closes `tcp` within `wait` (end of stream, or reset).
async fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    let mut sink = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn embedded(tweak: impl FnOnce(&mut herald::Config)) -> TestApp {
    TestApp::spawn_with(Backend::Embedded, tweak).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_silent_clients_are_closed_after_the_header_timeout() {
    let app = embedded(|c| {
        c.header_read_timeout_secs = 1;
        c.keep_alive_secs = 2;
    })
    .await;
    // Nothing at all: the server does not even know the protocol yet.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    // A slowloris: a header line every 200 ms, never the blank line.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let dribble = async {
        for i in 0..25 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow
                .write_all(format!("x-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return start.elapsed();
            }
        }
        start.elapsed()
    };
    let silent_closed = closed_within(&mut silent, Duration::from_secs(3));
    let (cut_after, silent_closed) = tokio::join!(dribble, silent_closed);
    assert!(silent_closed, "a silent connection is closed");
    assert!(
        cut_after < Duration::from_secs(4),
        "the slowloris was cut off after {cut_after:?}"
    );
    // A kept-alive connection that goes quiet after its first answer is closed after the
    // keep-alive time, not the (shorter) header timeout.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle).await.unwrap().status, 200);
    let quiet = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(4)).await);
    assert!(
        quiet.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        quiet.elapsed()
    );
}

/// A publish whose body announces 64 bytes and sends 8.
fn dribbled_publish(t: &str, key: &str) -> String {
    format!(
        "POST /v1/{t}/channels/c/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: 64\r\n\r\n{{\"data\":"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_body_timeout_is_408() {
    let app = embedded(|c| c.body_read_timeout_secs = 1).await;
    let (t, key) = app.tenant("acme").await;
    let start = Instant::now();
    let r = exchange(app.addr, dribbled_publish(&t, &key).as_bytes()).await;
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.problem()["code"], "request_timeout");
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_request_timeout_are_503_but_streams_are_exempt() {
    let app = embedded(|c| {
        c.request_timeout_secs = 1;
        c.heartbeat_secs = 1;
    })
    .await;
    let (t, key) = app.tenant("acme").await;
    let mut stream = app.subscribe(&t, "c", None).await;
    let r = exchange(app.addr, dribbled_publish(&t, &key).as_bytes()).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.problem()["code"], "unavailable");
    assert!(r.head.contains("retry-after: "));
    // The stream has been open well past the request timeout, and still delivers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.publish_ok(&key, &t, "c", json!({"data": "still here"}))
        .await;
    assert_eq!(stream.next().await.data, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_per_client_address_are_capped() {
    let app = embedded(|c| c.max_streams_per_ip = 2).await;
    let (t, _) = app.tenant("acme").await;
    let first = app.subscribe(&t, "a", None).await;
    let _second = app.subscribe(&t, "b", None).await;
    let r = app
        .client
        .get(app.url(&format!("/v1/{t}/channels/c/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "quota_exceeded");
    // A refused stream took no place, and a closed one gives its place back.
    drop(first);
    assert!(
        herald_tests::eventually(5, || async {
            app.client
                .get(app.url(&format!("/v1/{t}/channels/c/events")))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await
    );
    // Other requests from the address are not streams, and are not capped.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_process_cap_get_a_503_problem_at_once() {
    let app = embedded(|c| c.max_connections = Some(3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut tcp).await.unwrap().status, 200);
        held.push(tcp);
    }
    let start = Instant::now();
    let r = exchange(app.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.head.contains("retry-after: 1"));
    assert_eq!(r.problem()["code"], "unavailable");
    assert!(start.elapsed() < Duration::from_secs(1), "at once");
    // A connection that ends makes room.
    held.pop();
    assert!(
        herald_tests::eventually(5, || async {
            exchange(app.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .status
                == 200
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_problem_json_where_herald_reads_them() {
    let app = embedded(|_| {}).await;
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-{i}: y\r\n"))
            .collect::<String>()
    );
    let long_url = format!(
        "GET /v1/acme/channels/c/history?after={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    for (request, status, code) in [
        (&big_header, 431, "headers_too_large"),
        (&many_headers, 431, "headers_too_large"),
        (&long_url, 414, "uri_too_long"),
    ] {
        let r = exchange(app.addr, request.as_bytes()).await;
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.problem()["code"], code);
    }
    // Past what hyper buffers, hyper answers by itself (no body) and closes: documented.
    for request in [
        format!(
            "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(100 * 1024)
        ),
        format!(
            "GET /healthz HTTP/1.1\r\nhost: x\r\n{}\r\n",
            (0..300)
                .map(|i| format!("x-{i}: y\r\n"))
                .collect::<String>()
        ),
    ] {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        // The server may answer and close before it has read everything.
        let _ = tcp.write_all(request.as_bytes()).await;
        if let Some(r) = read_response(&mut tcp).await {
            assert_eq!(r.status, 431, "{r:?}");
        }
        assert!(closed_within(&mut tcp, Duration::from_secs(3)).await);
    }
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the server is fine");
}

async fn garbage_in_every_parameter_is_refused_clearly(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let token = app
        .client
        .post(app.url(&format!("/v1/{t}/tokens")))
        .bearer_auth(&key)
        .json(&json!({"channels": ["*"]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let garbage = [
        "%FF%FE", "%C3%28", "%00", "%E2%82", "a%2Fb", "%", "%zz", "..%2F..",
    ];
    for g in garbage {
        // Names in the path: 400 `invalid_name` (or 404 for a slug that is well-formed but
        // unknown), never a 5xx, always problem+json.
        for path in [
            format!("/v1/{g}/channels/c/events"),
            format!("/v1/{t}/channels/{g}/events"),
            format!("/v1/{t}/channels/{g}/history"),
            format!("/v1/{g}/events?channel=c"),
            format!("/api/v1/tenants/{g}"),
            format!("/api/v1/tenants/{t}/channels/{g}"),
            format!("/api/v1/tenants/{t}/keys/{g}"),
        ] {
            let r = app.client.get(app.url(&path)).send().await.unwrap();
            let status = r.status().as_u16();
            assert!((400..500).contains(&status), "{path}: {status}");
            assert_eq!(
                r.headers()["content-type"],
                "application/problem+json",
                "{path}"
            );
        }
        // The channel list of a multi-channel stream: 400 `invalid_name`.
        let r = app
            .client
            .get(app.url(&format!("/v1/{t}/events?channel=a&channel={g}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "channel={g}");
        // A garbage token is 401 on a public channel too (a credential sent is checked).
        let r = app
            .client
            .get(app.url(&format!("/v1/{t}/channels/c/events?token={g}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "token={g}");
        // A garbage cursor is a stream that starts with an `invalid_cursor` gap.
        for url in [
            format!("/v1/{t}/channels/c/events?lastEventId={g}&token={token}"),
            format!("/v1/{t}/events?channel=c&channel=d&lastEventId={g}"),
        ] {
            let r = app.client.get(app.url(&url)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{url}");
            let mut stream = herald_tests::SseStream::new(r);
            let gap = stream.next().await;
            assert_eq!(gap.event, "herald.gap", "{url}");
            assert!(gap.data.contains("invalid_cursor"), "{url}: {}", gap.data);
        }
        // An unreadable `after` of the history is a page that says so, like a stream's gap.
        let r = app
            .client
            .get(app.url(&format!("/v1/{t}/channels/c/history?after={g}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "after={g}");
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["gap"], "invalid_cursor", "after={g}: {page}");
    }
    // Bytes that are not UTF-8 in `Last-Event-ID` itself (raw, as hyper allows obs-text).
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(
        &[
            format!("GET /v1/{t}/channels/c/events HTTP/1.1\r\nhost: x\r\nlast-event-id: ")
                .as_bytes(),
            b"\xff\xfe\x80garbage\r\n\r\n",
        ]
        .concat(),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("invalid_cursor") {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&chunk[..n]),
            other => panic!("no gap: {other:?}: {}", String::from_utf8_lossy(&seen)),
        }
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 200 "), "{seen}");
    assert!(seen.contains("herald.gap"), "{seen}");
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_never_reach_a_hidden_request() {
    let app = embedded(|_| {}).await;
    let (t, key) = app.tenant("acme").await;
    let hidden = format!(
        "POST /v1/{t}/channels/smuggled/events HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {key}\r\ncontent-type: application/json\r\n\
         content-length: 10\r\n\r\n{{\"data\":1}}"
    );
    let chunked = format!("0\r\n\r\n{hidden}");
    // Content-Length and Transfer-Encoding both: the body is read as chunked, and the
    // connection is closed after the answer, so what follows the chunks is never a request.
    let cl_te = format!(
        "POST /v1/{t}/channels/c/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\ntransfer-encoding: chunked\r\n\r\n{chunked}",
        chunked.len()
    );
    let te_cl = cl_te.replacen(
        &format!(
            "content-length: {}\r\ntransfer-encoding: chunked\r\n",
            chunked.len()
        ),
        &format!(
            "transfer-encoding: chunked\r\ncontent-length: {}\r\n",
            chunked.len()
        ),
        1,
    );
    for request in [&cl_te, &te_cl] {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let r = read_response(&mut tcp).await.expect("an answer");
        assert!(r.status >= 400, "an empty chunked body is no event: {r:?}");
        assert!(closed_within(&mut tcp, Duration::from_secs(3)).await);
    }
    // Malformed framing is refused by hyper before any route (bare 400) and the connection
    // closed: two different lengths, an obs-fold, a transfer coding that is not chunked.
    for bad in [
        format!(
            "POST /v1/{t}/channels/c/events HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\
             content-length: 11\r\n\r\n{{\"data\":1}}{hidden}"
        ),
        format!(
            "POST /v1/{t}/channels/c/events HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\
             x-folded: a\r\n b\r\n\r\n{{\"data\":1}}{hidden}"
        ),
        format!(
            "POST /v1/{t}/channels/c/events HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\n\
             content-length: 10\r\n\r\n{{\"data\":1}}{hidden}"
        ),
        format!(
            "POST /v1/{t}/channels/c/events HTTP/1.1\r\nhost: x\r\n\
             transfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n{hidden}"
        ),
    ] {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        tcp.write_all(bad.as_bytes()).await.unwrap();
        let r = read_response(&mut tcp).await.expect("an answer");
        assert_eq!(r.status, 400, "{bad:?}: {r:?}");
        assert!(closed_within(&mut tcp, Duration::from_secs(3)).await);
    }
    let history: Value = app
        .client
        .get(app.url(&format!("/v1/{t}/channels/smuggled/history")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["events"], json!([]), "no hidden request ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_is_cut_off_and_the_server_keeps_serving() {
    let app = embedded(|_| {}).await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp)
        .await
        .expect("h2c prior knowledge");
    let driver = tokio::spawn(connection);
    let mut sent = 0;
    for _ in 0..10_000 {
        let request = http::Request::get(format!("http://{}/healthz", app.addr))
            .body(())
            .unwrap();
        let Ok(ready) = tokio::time::timeout(Duration::from_secs(2), h2.ready()).await else {
            break;
        };
        let Ok(ready) = ready else { break };
        h2 = ready;
        match h2.send_request(request, true) {
            Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
        sent += 1;
    }
    // The server ends the connection (GOAWAY) long before the client runs out of requests.
    let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
    assert!(
        sent < 10_000,
        "the connection was cut off, after {sent} resets"
    );
    assert!(ended.is_ok(), "the connection ended");
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `HERALD_TEST_IDLE_CONNECTIONS` (default 10,000) idle connections from one address against a
/// server process capped at half as many: the cap refuses the rest at once with a 503, memory
/// stays bounded, the header timeout closes the idle ones, and the server serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_from_one_address_stay_bounded() {
    let count: usize = std::env::var("HERALD_TEST_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let cap = count / 2;
    let app = TestApp::spawn(Backend::Embedded).await;
    let port = herald_tests::free_port();
    let server = herald_tests::spawn_process(
        &app,
        port,
        &[
            "--max-connections",
            &cap.to_string(),
            // Long enough that opening every connection on a loaded machine (18 s has been
            // seen under a full test run) finishes before the first ones time out.
            "--header-read-timeout-secs",
            "40",
        ],
    );
    herald_tests::wait_ready(port).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let before = rss_kib(server.id());
    let start = Instant::now();
    let mut idle = Vec::with_capacity(count);
    while idle.len() < count {
        let batch = (count - idle.len()).min(50);
        let connects = (0..batch).map(|_| TcpStream::connect(addr));
        for tcp in futures_util::future::join_all(connects).await {
            idle.push(tcp.expect("connect"));
        }
    }
    let opened = start.elapsed();
    // Let the server accept (or refuse) the backlog.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = rss_kib(server.id());
    assert!(
        opened < Duration::from_secs(38),
        "opening took {opened:?}: the server's timeout would close the first ones"
    );
    // The last half was refused, each with the whole problem.
    let mut refused = 0;
    for tcp in idle.iter_mut().skip(cap + 300).take(200) {
        let answer = tokio::time::timeout(Duration::from_secs(2), read_response(tcp)).await;
        if let Ok(Some(r)) = answer {
            assert_eq!(r.status, 503, "{r:?}");
            assert_eq!(r.problem()["code"], "unavailable");
            refused += 1;
        }
    }
    assert_eq!(refused, 200, "every refused connection read its answer");
    // Memory per held connection is small and bounded.
    let grown = during.saturating_sub(before);
    assert!(
        grown < 64 * 1024 + (cap as u64) * 16,
        "RSS grew {grown} KiB for {cap} idle connections ({before} → {during} KiB)"
    );
    // While full, the server still answers on the connections it holds… and after the header
    // timeout it has let every idle one go, and has room again.
    assert!(
        herald_tests::eventually(40, || async {
            reqwest::get(format!("http://{addr}/healthz"))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "the server has room again after the header timeout"
    );
    let mut closed = 0;
    for tcp in idle.iter_mut().take(100) {
        if closed_within(tcp, Duration::from_secs(2)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 100, "idle connections were closed by the server");
    eprintln!(
        "{count} connections opened in {opened:?}; server RSS {before} → {during} KiB \
         (+{grown} KiB for {cap} held)"
    );
}
