//! Slow readers, HTTP/2, and SIGTERM on a real process.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald_tests::{both_backends, Backend, SseStream, TestApp};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

both_backends!(
    a_slow_reader_never_delays_others_nor_loses_events_silently,
    h2c_multiplexes_streams_on_one_connection,
    sigterm_ends_every_stream_and_exits_within_the_drain_time,
);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Resident memory of this process (the server runs in it), in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// 5,000 events of 1 KiB while one subscriber stops reading: another subscriber on the same
/// channel still sees each event promptly, memory stays bounded, and the slow one, once it
/// reads again, receives every event or a `herald.gap`.
async fn a_slow_reader_never_delays_others_nor_loses_events_silently(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    // The slow reader: a raw connection with a small receive buffer that reads nothing.
    let mut slow = app.stalled_stream(&t, "busy").await;

    let mut fast = app.subscribe(&t, "busy", None).await;
    let baseline = rss();
    let filler = "x".repeat(1000);
    let publisher = {
        let client = reqwest::Client::new();
        let url = app.url(&format!("/v1/{t}/channels/busy/events"));
        let key = key.clone();
        tokio::spawn(async move {
            for i in 0..5000u64 {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"data": {"i": i, "at": now_ms(), "pad": filler}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        })
    };
    let mut delays = Vec::with_capacity(5000);
    let mut peak = 0;
    for expected in 0..5000u64 {
        let e = fast.next().await;
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(v["i"], expected, "the fast reader misses nothing");
        delays.push(now_ms().saturating_sub(v["at"].as_u64().unwrap()));
        if expected % 500 == 0 {
            peak = peak.max(rss());
        }
    }
    publisher.await.unwrap();
    delays.sort_unstable();
    let median = delays[delays.len() / 2];
    assert!(
        median <= 50,
        "median publish→receive {median} ms with a slow reader on the channel"
    );
    let growth = peak.saturating_sub(baseline);
    assert!(growth < 96 << 20, "memory grew {} MiB", growth >> 20);

    // The slow reader reads again: every event, or a gap before what is retained.
    let mut buf = Vec::new();
    // What the kernel's send buffer took before the reader stalled comes first, through its
    // 4 KiB receive window: with writes that carry many frames that is megabytes, read slowly.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut chunk = vec![0u8; 1 << 16];
    let text = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut chunk))
            .await
            .expect("the slow reader's stream is alive")
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if text.contains("\"i\":4999") || Instant::now() > deadline {
            break text;
        }
    };
    let seen: Vec<u64> = text
        .split("\"i\":")
        .skip(1)
        .filter_map(|s| s.split(',').next()?.parse().ok())
        .collect();
    assert_eq!(seen.last(), Some(&4999), "it catches up to the end");
    let gapped = text.contains("event: herald.gap");
    let complete = seen.windows(2).all(|w| w[1] == w[0] + 1) && seen.first() == Some(&0);
    eprintln!(
        "slow reader: {} events, gap: {gapped}; fast reader median {median} ms; memory growth {} KiB",
        seen.len(),
        growth >> 10
    );
    assert!(
        complete || gapped,
        "every event, or a herald.gap; saw {} events",
        seen.len()
    );
    if gapped {
        assert!(text.contains("history_truncated"));
    }
    for w in seen.windows(2) {
        assert!(w[1] > w[0], "in order, none twice");
    }
}

async fn h2c_multiplexes_streams_on_one_connection(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut streams = Vec::new();
    for c in ["a", "b", "c"] {
        let r = h2
            .get(app.url(&format!("/v1/{t}/channels/{c}/events")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
        streams.push(SseStream::new(r));
    }
    // Publishing over the same HTTP/2 connection, too.
    for c in ["a", "b", "c"] {
        let r = h2
            .post(app.url(&format!("/v1/{t}/channels/{c}/events")))
            .bearer_auth(&key)
            .json(&json!({"data": c}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    for (s, c) in streams.iter_mut().zip(["a", "b", "c"]) {
        assert_eq!(s.next().await.data, c);
    }
}

/// SIGTERM with 100 open streams: every stream ends cleanly, the process exits 0 within the
/// drain time, and a client resuming on the next process loses nothing that process can know.
async fn sigterm_ends_every_stream_and_exits_within_the_drain_time(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let port = herald_tests::free_port();
    let mut child = herald_tests::spawn_process(&app, port, &[]);
    herald_tests::wait_ready(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..100 {
        let r = client
            .get(format!("{base}/v1/{t}/channels/c/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        streams.push(SseStream::new(r));
    }
    let publish = |data: i32| {
        client
            .post(format!("{base}/v1/{t}/channels/c/events"))
            .bearer_auth(&key)
            .json(&json!({"data": data}))
            .send()
    };
    let r = publish(1).await.unwrap();
    let cursor: Value = r.json().await.unwrap();
    let cursor = cursor["id"].as_str().unwrap().to_owned();
    for s in &mut streams {
        assert_eq!(s.next().await.data, "1");
    }
    publish(2).await.unwrap();

    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for s in &mut streams {
        assert!(
            s.ends_within(Duration::from_secs(6)).await,
            "every stream ends cleanly"
        );
    }
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status 0 after a drain: {exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "within the drain time"
    );

    let port = herald_tests::free_port();
    let mut next = herald_tests::spawn_process(&app, port, &[]);
    herald_tests::wait_ready(port).await;
    let r = client
        .get(format!("http://127.0.0.1:{port}/v1/{t}/channels/c/events"))
        .header("last-event-id", &cursor)
        .send()
        .await
        .unwrap();
    let mut resumed = SseStream::new(r);
    let first = resumed.next().await;
    match app.backend {
        Backend::Cluster => assert_eq!(first.data, "2", "the event after the cursor"),
        Backend::Embedded => assert_eq!(first.event, "herald.gap", "in-memory history is gone"),
    }
    next.kill();
}
