//! The coalescing write path under random publish bursts, random reader stalls (some on tiny
//! receive buffers, so the server's writes back up) and reconnects with `Last-Event-ID`: every
//! subscriber ends with exactly its channels' sequences, none lost, none twice, in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use herald_tests::{both_backends, TestApp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both_backends!(
    bursts_stalls_and_reconnects_never_lose_duplicate_or_reorder,
    deliveries_are_counted_while_streams_are_open,
    a_quiet_stream_writes_at_once_and_a_busy_one_gathers,
    a_busy_stream_gathers_window_after_window_until_one_is_empty,
);

/// Events per channel.
const EVENTS: u64 = 1_500;

/// What one reader saw: each channel's `i`s in arrival order, and the chunks that carried them.
#[derive(Default)]
struct Seen {
    per_channel: HashMap<String, Vec<u64>>,
    chunks: u64,
    events: u64,
}

/// Takes the complete chunks of an HTTP/1.1 chunked body off the front of `raw`.
fn dechunk(raw: &mut Vec<u8>, out: &mut Vec<u8>, chunks: &mut u64) {
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16)
            .expect("a chunk size");
        if raw.len() < eol + 2 + size + 2 {
            return;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw.drain(..eol + 2 + size + 2);
        *chunks += 1;
    }
}

/// Takes the complete SSE frames off the front of `text`: `(id, event type, data)`.
fn frames(text: &mut Vec<u8>) -> Vec<(Option<String>, String, String)> {
    let mut out = Vec::new();
    while let Some(end) = text.windows(2).position(|w| w == b"\n\n") {
        let frame = String::from_utf8(text.drain(..end + 2).collect()).unwrap();
        let (mut id, mut event, mut data) = (None, "message".to_owned(), None);
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(v.to_owned());
            }
        }
        if let Some(data) = data {
            out.push((id, event, data));
        }
    }
    out
}

/// Reads `path` until every channel of it has reached the last event, stalling and
/// reconnecting at random.
async fn read_all(addr: SocketAddr, path: String, channels: Vec<String>, seed: u64) -> Seen {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = Seen::default();
    let mut last_id: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    let progress = |seen: &Seen| -> Vec<(String, usize, Option<u64>)> {
        let mut p: Vec<_> = seen
            .per_channel
            .iter()
            .map(|(c, v)| (c.clone(), v.len(), v.last().copied()))
            .collect();
        p.sort();
        p
    };
    let done = |seen: &Seen| {
        channels
            .iter()
            .all(|c| seen.per_channel.get(c).and_then(|v| v.last()) == Some(&(EVENTS - 1)))
    };
    while !done(&seen) {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: stuck at {:?}",
            progress(&seen)
        );
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        let small = rng.gen_bool(0.3);
        if small {
            socket.set_recv_buffer_size(4096).unwrap();
        }
        let mut tcp = socket.connect(addr).await.unwrap();
        let resume = last_id
            .as_ref()
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{resume}\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let (mut raw, mut text) = (Vec::new(), Vec::new());
        let mut head_done = false;
        // Read a random number of events on this connection, then drop it.
        let mut budget: u64 = rng.gen_range(50..800);
        let mut buf = vec![0u8; if small { 1024 } else { 16 << 10 }];
        while budget > 0 && !done(&seen) {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: stuck at {:?}",
                progress(&seen)
            );
            if rng.gen_bool(0.05) {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..150))).await;
            }
            let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf))
                .await
                .expect("the stream is alive")
                .unwrap();
            assert!(n > 0, "seed {seed}: the server closed the stream");
            raw.extend_from_slice(&buf[..n]);
            if !head_done {
                let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                assert!(head.contains("transfer-encoding: chunked"), "{head}");
                raw.drain(..end + 4);
                head_done = true;
            }
            dechunk(&mut raw, &mut text, &mut seen.chunks);
            for (id, event, data) in frames(&mut text) {
                assert_eq!(event, "message", "seed {seed}: {data}");
                let v: Value = serde_json::from_str(&data).unwrap();
                let c = v["c"].as_str().unwrap().to_owned();
                seen.per_channel
                    .entry(c)
                    .or_default()
                    .push(v["i"].as_u64().unwrap());
                seen.events += 1;
                last_id = id.or(last_id);
                budget = budget.saturating_sub(1);
            }
        }
    }
    seen
}

async fn bursts_stalls_and_reconnects_never_lose_duplicate_or_reorder(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    // Long enough histories that a reconnect always resumes exactly.
    let store = app.store().await;
    let tenant = store
        .tenant_by_slug(&herald_core::TenantSlug::parse(&t).unwrap())
        .await
        .unwrap()
        .unwrap();
    for c in ["a", "b"] {
        let settings = herald_store::ChannelSettings {
            history_size: 5_000,
            ..herald_store::ChannelSettings::default()
        };
        store
            .put_channel(
                tenant.id,
                &herald_core::ChannelName::parse(c).unwrap(),
                &settings,
            )
            .await
            .unwrap();
    }
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut readers = Vec::new();
    for n in 0..36u64 {
        let (path, channels) = match n % 9 {
            0..=4 => (format!("/v1/{t}/channels/a/events"), vec!["a"]),
            5 | 6 => (format!("/v1/{t}/channels/b/events"), vec!["b"]),
            _ => (
                format!("/v1/{t}/events?channel=a&channel=b"),
                vec!["a", "b"],
            ),
        };
        let channels = channels.into_iter().map(str::to_owned).collect();
        readers.push(tokio::spawn(read_all(app.addr, path, channels, seed + n)));
    }
    // Every reader is connected before the first event: then each must see every one.
    let connected = herald_tests::eventually(10, || async {
        let r = app
            .client
            .get(app.url(&format!("/v1/{t}/channels/a")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["subscribers"].as_u64() == Some(28)
    })
    .await;
    assert!(connected, "the readers subscribed");

    let mut rng = StdRng::seed_from_u64(seed);
    let (mut a, mut b) = (0u64, 0u64);
    while a < EVENTS || b < EVENTS {
        let burst = rng.gen_range(1..=100);
        let mut events = Vec::with_capacity(burst);
        for _ in 0..burst {
            if a >= EVENTS && b >= EVENTS {
                break;
            }
            let on_a = (rng.gen_bool(0.6) && a < EVENTS) || b >= EVENTS;
            let (c, i) = if on_a { ("a", &mut a) } else { ("b", &mut b) };
            events.push(json!({"channel": c, "data": {"c": c, "i": *i, "pad": "x".repeat(200)}}));
            *i += 1;
        }
        let r = app
            .client
            .post(app.url(&format!("/v1/{t}/events")))
            .bearer_auth(&key)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..25))).await;
    }

    let (mut chunks, mut events) = (0, 0);
    for (n, reader) in readers.into_iter().enumerate() {
        let seen = reader.await.unwrap();
        for (c, got) in &seen.per_channel {
            // A reconnect may repeat nothing and skip nothing: the concatenation of every
            // connection's events is the channel's sequence exactly.
            let want: Vec<u64> = (0..EVENTS).collect();
            assert!(
                got == &want,
                "reader {n} (seed {}), channel {c}: {} events, first divergence at {:?}",
                seed + n as u64,
                got.len(),
                got.iter().zip(&want).position(|(g, w)| g != w)
            );
        }
        chunks += seen.chunks;
        events += seen.events;
    }
    eprintln!("{events} events in {chunks} chunks");
    assert!(
        chunks * 2 < events,
        "bursts are written together: {events} events in {chunks} chunks"
    );
}

/// The usage counters and `/metrics` see deliveries as they are written, not when streams end.
async fn deliveries_are_counted_while_streams_are_open(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut s = app.subscribe(&t, "live", None).await;
    for i in 0..3 {
        app.publish_ok(&key, &t, "live", json!({"data": i})).await;
    }
    s.take(3).await;
    let metrics = app.metrics().await;
    let delivered: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_deliveries_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no deliveries counter in {metrics}"));
    assert_eq!(delivered, 3, "{metrics}");
    drop(s);
}

/// Two events close together on a quiet stream both leave at once (a quiet channel's events
/// often come two at a time by chance); a third within the coalescing interval is traffic, and
/// waits for the interval to gather what follows it.
async fn a_quiet_stream_writes_at_once_and_a_busy_one_gathers(app: TestApp) {
    let backend = app.backend;
    drop(app);
    // An interval far longer than any delivery takes, so that waiting is unmistakable.
    let window = Duration::from_secs(3);
    let app = TestApp::spawn_with(backend, |c| c.coalesce_ms = window.as_millis() as u64).await;
    let (t, key) = app.tenant("acme").await;
    let mut s = app.subscribe(&t, "quiet", None).await;
    let prompt = Duration::from_millis(1_000);
    for i in 0..2 {
        app.publish_ok(&key, &t, "quiet", json!({"data": i})).await;
        let e = s.next_within(prompt).await;
        assert!(e.is_some(), "event {i} of a quiet stream waited");
    }
    let sent = Instant::now();
    for i in 2..4 {
        app.publish_ok(&key, &t, "quiet", json!({"data": i})).await;
    }
    assert!(
        s.next_within(prompt).await.is_none(),
        "a busy stream gathers for the interval"
    );
    let gathered = s.take(2).await;
    assert_eq!(gathered[0].data, "2");
    assert_eq!(gathered[1].data, "3");
    assert!(sent.elapsed() < window + Duration::from_secs(2));
}

/// A busy stream is not woken by each event: once its gathered write has gone, it goes on
/// gathering for the next interval (what is published meanwhile waits for the interval's end),
/// and only an interval that gathered nothing makes it quiet again, its next event at once.
async fn a_busy_stream_gathers_window_after_window_until_one_is_empty(app: TestApp) {
    let backend = app.backend;
    drop(app);
    let window = Duration::from_secs(2);
    let app = TestApp::spawn_with(backend, |c| c.coalesce_ms = window.as_millis() as u64).await;
    let (t, key) = app.tenant("acme").await;
    let mut s = app.subscribe(&t, "busy", None).await;
    let prompt = Duration::from_millis(700);
    // Two at once, the third gathered for one interval.
    for i in 0..2 {
        app.publish_ok(&key, &t, "busy", json!({"data": i})).await;
        assert!(s.next_within(prompt).await.is_some(), "event {i} waited");
    }
    app.publish_ok(&key, &t, "busy", json!({"data": 2})).await;
    assert!(
        s.next_within(prompt).await.is_none(),
        "the third is gathered"
    );
    assert_eq!(s.take(1).await[0].data, "2");
    // Right after that write: the next interval gathers it.
    app.publish_ok(&key, &t, "busy", json!({"data": 3})).await;
    let sent = Instant::now();
    assert!(
        s.next_within(prompt).await.is_none(),
        "a busy stream gathers the interval after its write too"
    );
    assert_eq!(s.take(1).await[0].data, "3");
    assert!(sent.elapsed() < window + Duration::from_secs(2));
    // An interval with nothing in it: the stream is quiet again and writes at once.
    tokio::time::sleep(window + Duration::from_millis(500)).await;
    app.publish_ok(&key, &t, "busy", json!({"data": 4})).await;
    let e = s.next_within(prompt).await;
    assert_eq!(
        e.map(|e| e.data).as_deref(),
        Some("4"),
        "a quiet stream writes at once"
    );
}
