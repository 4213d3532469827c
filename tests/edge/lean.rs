//! The lean stream path, read off raw connections: a stream request served without hyper must
//! look on the wire exactly as HTTP/1.1 (or 1.0) requires, carry every header the middleware
//! adds, end when its client goes away or the server drains, and leave every other request —
//! and h2c — to hyper as before.

use std::net::SocketAddr;
use std::time::Duration;

use herald_tests::{both_backends, TestApp};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

both_backends!(
    a_stream_is_chunked_on_the_wire_with_every_header,
    a_refusal_on_the_stream_path_is_a_whole_problem_and_a_close,
    a_second_request_after_a_plain_one_is_served_by_hyper,
    h2c_streams_still_work,
    a_client_going_away_ends_its_stream,
    an_http_1_0_stream_is_delimited_by_the_close,
    a_drain_ends_the_body_with_its_last_chunk,
);

/// A raw connection with what it has read so far.
struct Wire {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn open(addr: SocketAddr, request: &str) -> Wire {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        Wire {
            tcp,
            buf: Vec::new(),
        }
    }

    /// Reads more; false at the end of the connection or after 5 s of nothing.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// The response head, lowercased.
    async fn head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..i + 4]).to_lowercase();
                self.buf.drain(..i + 4);
                return head;
            }
            assert!(self.fill().await, "a whole head");
        }
    }

    /// The next chunk of a chunked body, checked against its size line; empty for the last.
    async fn chunk(&mut self) -> Vec<u8> {
        loop {
            if let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size = std::str::from_utf8(&self.buf[..eol]).unwrap();
                let size = usize::from_str_radix(size, 16)
                    .unwrap_or_else(|_| panic!("a chunk size line, not {size:?}"));
                if self.buf.len() >= eol + 2 + size + 2 {
                    let data = self.buf[eol + 2..eol + 2 + size].to_vec();
                    assert_eq!(&self.buf[eol + 2 + size..eol + 4 + size], b"\r\n");
                    self.buf.drain(..eol + 4 + size);
                    return data;
                }
            }
            assert!(self.fill().await, "a whole chunk");
        }
    }

    /// Reads chunks until `needle` has arrived; returns everything read.
    async fn chunks_until(&mut self, needle: &str) -> String {
        let mut text = String::new();
        while !text.contains(needle) {
            let chunk = self.chunk().await;
            assert!(
                !chunk.is_empty(),
                "the stream ended before {needle:?}: {text}"
            );
            text += std::str::from_utf8(&chunk).unwrap();
        }
        text
    }

    /// Whether the server closes the connection within `wait`.
    async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut sink = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut sink)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&sink[..n]),
            }
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n")
}

async fn subscribers(app: &TestApp, t: &str, key: &str, channel: &str) -> u64 {
    let v: Value = app
        .client
        .get(app.url(&format!("/v1/{t}/channels/{channel}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["subscribers"].as_u64().unwrap()
}

async fn connections_gauge(app: &TestApp) -> u64 {
    let metrics = app.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no connections gauge in {metrics}"))
}

async fn a_stream_is_chunked_on_the_wire_with_every_header(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut w = Wire::open(app.addr, &get(&format!("/v1/{t}/channels/c/events"))).await;
    let head = w.head().await;
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for field in [
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "transfer-encoding: chunked",
        "x-content-type-options: nosniff",
        "x-request-id: ",
        "date: ",
    ] {
        assert!(head.contains(&format!("\r\n{field}")), "{field}: {head}");
    }
    assert!(!head.contains("content-length"), "{head}");
    assert!(w.chunks_until("retry: ").await.contains("\n\n"));
    for i in 0..3 {
        app.publish_ok(&key, &t, "c", json!({"event": "tick", "data": i}))
            .await;
    }
    let text = w.chunks_until("data: 2\n\n").await;
    for i in 0..3 {
        assert!(
            text.contains(&format!("event: tick\ndata: {i}\n\n")),
            "{text}"
        );
    }
}

async fn a_refusal_on_the_stream_path_is_a_whole_problem_and_a_close(app: TestApp) {
    let mut w = Wire::open(app.addr, &get("/v1/nobody/channels/c/events")).await;
    let head = w.head().await;
    assert!(head.starts_with("http/1.1 404 not found\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/problem+json"),
        "{head}"
    );
    assert!(
        head.contains("\r\nx-content-type-options: nosniff"),
        "{head}"
    );
    assert!(head.contains("\r\nconnection: close"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a length")
        .trim()
        .parse()
        .unwrap();
    assert!(
        w.closed_within(Duration::from_secs(3)).await,
        "closed after"
    );
    assert_eq!(w.buf.len(), length, "exactly the body");
    let problem: Value = serde_json::from_slice(&w.buf).unwrap();
    assert_eq!(problem["code"], "not_found");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("a request id");
    assert_eq!(problem["request_id"].as_str(), Some(id.trim()));
}

async fn a_second_request_after_a_plain_one_is_served_by_hyper(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut w = Wire::open(app.addr, &get("/healthz")).await;
    let head = w.head().await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    while w.buf.len() < length {
        assert!(w.fill().await);
    }
    w.buf.drain(..length);
    // The same connection, kept alive: a stream served by hyper this time.
    w.tcp
        .write_all(get(&format!("/v1/{t}/channels/k/events")).as_bytes())
        .await
        .unwrap();
    let head = w.head().await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: text/event-stream"),
        "{head}"
    );
    w.chunks_until("retry: ").await;
    app.publish_ok(&key, &t, "k", json!({"data": "second"}))
        .await;
    w.chunks_until("data: second\n\n").await;
}

async fn h2c_streams_still_work(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = client
        .get(app.url(&format!("/v1/{t}/channels/h/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let mut s = herald_tests::SseStream::new(r);
    app.publish_ok(&key, &t, "h", json!({"data": "over h2"}))
        .await;
    assert_eq!(s.next().await.data, "over h2");
}

async fn a_client_going_away_ends_its_stream(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut w = Wire::open(app.addr, &get(&format!("/v1/{t}/channels/g/events"))).await;
    w.head().await;
    w.chunks_until("retry: ").await;
    assert_eq!(subscribers(&app, &t, &key, "g").await, 1);
    assert_eq!(connections_gauge(&app).await, 1);
    // Gone while idle: no event is written that could notice it.
    drop(w);
    let gone = herald_tests::eventually(10, || async {
        subscribers(&app, &t, &key, "g").await == 0 && connections_gauge(&app).await == 0
    })
    .await;
    assert!(gone, "the stream ended with its client");
}

async fn an_http_1_0_stream_is_delimited_by_the_close(mut app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut w = Wire::open(
        app.addr,
        &format!("GET /v1/{t}/channels/old/events HTTP/1.0\r\n\r\n"),
    )
    .await;
    let head = w.head().await;
    assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    app.publish_ok(&key, &t, "old", json!({"data": "plain"}))
        .await;
    while !String::from_utf8_lossy(&w.buf).contains("data: plain\n\n") {
        assert!(w.fill().await, "the event");
    }
    // A drain ends the stream: the body ends with the connection.
    let stop = app.stop();
    let closed = w.closed_within(Duration::from_secs(10));
    let ((), closed) = tokio::join!(stop, closed);
    assert!(closed, "the drain closed the stream");
}

async fn a_drain_ends_the_body_with_its_last_chunk(mut app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    let mut w = Wire::open(app.addr, &get(&format!("/v1/{t}/channels/d/events"))).await;
    w.head().await;
    w.chunks_until("retry: ").await;
    let stop = app.stop();
    let last = async {
        loop {
            if w.chunk().await.is_empty() {
                break;
            }
        }
        w.closed_within(Duration::from_secs(10)).await
    };
    let ((), closed) = tokio::join!(stop, last);
    assert!(closed, "the connection closed after the last chunk");
}
