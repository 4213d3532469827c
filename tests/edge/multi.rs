//! Several channels on one connection: one cursor resumes them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_tests::{both_backends, SseStream, TestApp};
use serde_json::{json, Value};

both_backends!(
    one_connection_receives_every_channel,
    multi_channel_resume_under_publishing_loses_nothing,
    channels_the_cursor_does_not_name_start_live_and_unreadable_cursors_gap_each_channel,
    too_many_or_no_channels_are_400,
);

async fn open(app: &TestApp, t: &str, channels: &[&str], cursor: Option<&str>) -> SseStream {
    let query: Vec<String> = channels.iter().map(|c| format!("channel={c}")).collect();
    let mut req = app
        .client
        .get(app.url(&format!("/v1/{t}/events?{}", query.join("&"))));
    if let Some(c) = cursor {
        req = req.header("last-event-id", c);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    SseStream::new(r)
}

fn parsed(e: &herald_tests::SseEvent) -> (String, u64) {
    let v: Value = serde_json::from_str(&e.data).unwrap();
    (
        v["c"].as_str().unwrap().to_owned(),
        v["n"].as_u64().unwrap(),
    )
}

async fn one_connection_receives_every_channel(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut stream = open(&app, &t, &["a", "b", "c"], None).await;
    for c in ["a", "b", "c", "other"] {
        app.publish_ok(&key, &t, c, json!({"data": {"c": c, "n": 0}}))
            .await;
    }
    let got: Vec<_> = stream.take(3).await.iter().map(parsed).collect();
    assert_eq!(got, vec![("a".into(), 0), ("b".into(), 0), ("c".into(), 0)]);
    assert!(
        stream
            .next_within(Duration::from_millis(200))
            .await
            .is_none(),
        "not other channels"
    );
}

/// Three channels, a publisher on each; the subscriber reads a few events, drops the
/// connection and resumes with its last id, 100 times. Every channel's sequence is complete,
/// in order, with no duplicate.
async fn multi_channel_resume_under_publishing_loses_nothing(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for c in ["a", "b", "c"] {
        let (app, t, key, stop) = (app.clone(), t.clone(), key.clone(), stop.clone());
        publishers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                app.publish_ok(&key, &t, c, json!({"data": {"c": c, "n": n}}))
                    .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            n
        }));
    }
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut stream = open(&app, &t, &["a", "b", "c"], None).await;
    let mut last_id: Option<String> = None;
    for _ in 0..100 {
        for _ in 0..4 {
            let e = stream.next().await;
            assert_eq!(e.event, "message", "{e:?}");
            let (c, n) = parsed(&e);
            seen.entry(c).or_default().push(n);
            last_id = e.id;
        }
        drop(stream);
        stream = open(&app, &t, &["a", "b", "c"], last_id.as_deref()).await;
    }
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.await.unwrap();
    }
    assert!(last_id.unwrap().len() < 100, "cursors stay short");
    for (c, ns) in &seen {
        let first = ns[0];
        let expected: Vec<u64> = (first..first + ns.len() as u64).collect();
        assert_eq!(
            ns, &expected,
            "channel {c}: complete, in order, no duplicate"
        );
    }
    assert_eq!(seen.len(), 3);
}

async fn channels_the_cursor_does_not_name_start_live_and_unreadable_cursors_gap_each_channel(
    app: TestApp,
) {
    let (t, key) = app.tenant("acme").await;
    let mut stream = open(&app, &t, &["a"], None).await;
    app.publish_ok(&key, &t, "a", json!({"data": {"c": "a", "n": 0}}))
        .await;
    let cursor = stream.next().await.id.unwrap();
    drop(stream);
    app.publish_ok(&key, &t, "a", json!({"data": {"c": "a", "n": 1}}))
        .await;
    app.publish_ok(&key, &t, "b", json!({"data": {"c": "b", "n": 0}}))
        .await;
    // The cursor names only a: a resumes, b starts live.
    let mut stream = open(&app, &t, &["a", "b"], Some(&cursor)).await;
    assert_eq!(parsed(&stream.next().await), ("a".into(), 1));
    app.publish_ok(&key, &t, "b", json!({"data": {"c": "b", "n": 1}}))
        .await;
    assert_eq!(parsed(&stream.next().await), ("b".into(), 1));
    // A cursor that cannot be read: one invalid_cursor gap per channel, then what is retained.
    let mut stream = open(&app, &t, &["a", "b"], Some("not-a-cursor")).await;
    let mut gaps = Vec::new();
    for e in stream.take(2).await {
        assert_eq!(e.event, "herald.gap");
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(v["reason"], "invalid_cursor");
        gaps.push(v["channel"].as_str().unwrap().to_owned());
    }
    gaps.sort();
    assert_eq!(gaps, vec!["a", "b"]);
    let rest: Vec<_> = stream.take(4).await.iter().map(parsed).collect();
    assert_eq!(rest.len(), 4);
}

async fn too_many_or_no_channels_are_400(app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    let many: Vec<String> = (0..17).map(|i| format!("channel=c{i}")).collect();
    for query in [many.join("&"), String::new(), "channel=bad*name".into()] {
        let r = app
            .client
            .get(app.url(&format!("/v1/{t}/events?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}
