//! Plans, quotas and rate limits, with the tiny plan: max_connections 3,
//! messages_per_day 20, max_message_bytes 1024, publish_per_second 5, burst 5,
//! channels_per_connection 3, max_history_size 10.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_tests::{both_backends, tiny_plan, Backend, ManualClock, SseStream, TestApp, TINY};
use serde_json::{json, Value};
use time::macros::datetime;

both_backends!(
    the_fourth_concurrent_stream_is_refused_and_other_tenants_are_unaffected,
    a_burst_gets_exactly_the_burst_and_then_the_rate,
    the_daily_quota_refuses_the_21st_message_until_utc_midnight,
    size_and_channels_per_connection_follow_the_plan,
    usage_is_exact_after_a_graceful_restart,
    a_reconnect_storm_from_one_address_is_rate_limited,
);

async fn tiny(app: TestApp) -> TestApp {
    let backend = app.backend;
    drop(app);
    TestApp::spawn_with(backend, |c| tiny_plan(c, TINY)).await
}

async fn open(app: &TestApp, t: &str, channel: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/{t}/channels/{channel}/events")))
        .send()
        .await
        .unwrap()
}

async fn the_fourth_concurrent_stream_is_refused_and_other_tenants_are_unaffected(app: TestApp) {
    let app = tiny(app).await;
    let (t, _) = app.tenant("acme").await;
    let mut held = Vec::new();
    for i in 0..3 {
        let r = open(&app, &t, &format!("c{i}")).await;
        assert_eq!(r.status(), 200);
        held.push(SseStream::new(r));
    }
    let r = open(&app, &t, "c9").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "quota_exceeded");
    let other = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    other
        .post(app.url("/api/v1/signup"))
        .json(&json!({"email": "b@b.example", "password": "another long password", "tenant": {"slug": "beta", "name": "B"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        open(&app, "beta", "c").await.status(),
        200,
        "another tenant is unaffected"
    );
    // Closing one frees its place.
    drop(held.pop());
    assert!(
        herald_tests::eventually(5, || async { open(&app, &t, "c9").await.status() == 200 }).await
    );
}

async fn a_burst_gets_exactly_the_burst_and_then_the_rate(app: TestApp) {
    // The tiny plan, but with room for ten seconds at 5/s: its 20 messages a day would end
    // the measurement after four.
    let backend = app.backend;
    drop(app);
    let plan = TINY.replace("messages_per_day = 20", "messages_per_day = 1000");
    let app = TestApp::spawn_with(backend, |c| tiny_plan(c, &plan)).await;
    let (t, key) = app.tenant("acme").await;
    let mut accepted = 0u32;
    let mut refused = Vec::new();
    let burst_began = Instant::now();
    for i in 0..20 {
        let r = app.publish(&key, &t, "c", json!({"data": i})).await;
        match r.status().as_u16() {
            201 => accepted += 1,
            429 => refused.push(r),
            other => panic!("unexpected {other}"),
        }
    }
    // Exactly the burst, and what the bucket refilled (5/s) while the 20 requests took their
    // time: on a loaded machine that is not nothing.
    let refilled = (burst_began.elapsed().as_secs_f64() * 5.0).floor() as u32;
    assert!(
        (5..=5 + refilled).contains(&accepted),
        "{accepted} accepted; the burst is 5, and {refilled} refilled meanwhile"
    );
    for r in refused {
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry));
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limited");
    }
    // Then, publishing as fast as it can for 10 s, the key gets the rate: 5/s.
    tokio::time::sleep(Duration::from_secs(1)).await; // the bucket refills
    let start = Instant::now();
    let mut ok = 0u32;
    while start.elapsed() < Duration::from_secs(10) {
        if app
            .publish(&key, &t, "rate", json!({"data": ok}))
            .await
            .status()
            == 201
        {
            ok += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = f64::from(ok.saturating_sub(5)) / start.elapsed().as_secs_f64();
    assert!(
        (4.5..=5.5).contains(&rate),
        "{ok} accepted in 10 s: {rate:.2}/s after the burst"
    );
}

async fn the_daily_quota_refuses_the_21st_message_until_utc_midnight(app: TestApp) {
    let backend = app.backend;
    drop(app);
    let clock = ManualClock::at(datetime!(2026-11-21 23:59:00 UTC));
    let app = TestApp::spawn_with_clock(backend, |c| tiny_plan(c, TINY), clock.clone()).await;
    let (t, key) = app.tenant("acme").await;
    // 20 messages, as batches of 5 within the publish rate.
    for b in 0..4 {
        let events: Vec<Value> = (0..5)
            .map(|i| json!({"channel": "c", "data": b * 5 + i}))
            .collect();
        let r = publish_batch_paced(&app, &t, &key, json!({"events": events})).await;
        assert_eq!(r.status(), 201, "batch {b}");
    }
    let r = publish_paced(&app, &t, &key).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60", "seconds to UTC midnight");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "quota_exceeded");
    clock.set(datetime!(2026-11-22 00:00:01 UTC));
    assert_eq!(
        publish_paced(&app, &t, &key).await.status(),
        201,
        "a new day"
    );
}

/// Publishes one event, waiting out the per-second rate limit (not the daily quota).
async fn publish_paced(app: &TestApp, t: &str, key: &str) -> reqwest::Response {
    loop {
        let r = app.publish(key, t, "c", json!({"data": "x"})).await;
        if !is_rate_limited(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn publish_batch_paced(app: &TestApp, t: &str, key: &str, body: Value) -> reqwest::Response {
    loop {
        let r = app
            .client
            .post(app.url(&format!("/v1/{t}/events")))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        if !is_rate_limited(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_rate_limited(r: &reqwest::Response) -> bool {
    // Both 429s carry Retry-After; only the daily quota's is longer than a couple of seconds.
    r.status() == 429
        && r.headers()["retry-after"]
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s <= 2)
}

async fn size_and_channels_per_connection_follow_the_plan(app: TestApp) {
    let app = tiny(app).await;
    let (t, key) = app.tenant("acme").await;
    let r = app
        .publish(&key, &t, "c", json!({"data": "x".repeat(1024)}))
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .publish(&key, &t, "c", json!({"data": "x".repeat(1025)}))
        .await;
    assert_eq!(r.status(), 413);
    let r = app
        .client
        .get(app.url(&format!(
            "/v1/{t}/events?channel=a&channel=b&channel=c&channel=d"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .get(app.url(&format!("/v1/{t}/events?channel=a&channel=b&channel=c")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// What was published and delivered is what the usage endpoint reports, exactly, once the
/// server has stopped gracefully and started again.
async fn usage_is_exact_after_a_graceful_restart(mut app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(app.subscribe(&t, "c", None).await);
    }
    for i in 0..7 {
        app.publish_ok(&key, &t, "c", json!({"data": i})).await;
    }
    for s in &mut streams {
        s.take(7).await;
    }
    app.restart().await;
    let today = app.usage_today(&t).await;
    assert_eq!(today["messages"], 7, "{today}");
    assert_eq!(today["deliveries"], 21, "{today}");
    assert_eq!(today["peak_connections"], 3, "{today}");
    assert!(today["bytes_out"].as_u64().unwrap() > 21 * 10, "{today}");
    let keys: Value = app
        .client
        .get(app.url(&format!("/api/v1/tenants/{t}/keys")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        keys[0]["last_used_at"].is_string(),
        "last use is recorded: {keys}"
    );
}

/// Two edge processes on one Redis: 2 + 2 streams, the 4th refused on whichever process it
/// lands, and `kill -9` of one process frees its connections within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_quota_holds_across_processes_and_a_killed_process_frees_its_share() {
    let app = TestApp::spawn_with(Backend::Cluster, |c| tiny_plan(c, TINY)).await;
    let (t, _) = app.tenant("acme").await;
    let ports = [herald_tests::free_port(), herald_tests::free_port()];
    let mut procs: Vec<_> = ports
        .iter()
        .map(|p| herald_tests::spawn_process(&app, *p, &["edge"]))
        .collect();
    for p in ports {
        herald_tests::wait_ready(p).await;
    }
    let client = reqwest::Client::new();
    let open = |port: u16| {
        client
            .get(format!("http://127.0.0.1:{port}/v1/{t}/channels/c/events"))
            .send()
    };
    let mut held = Vec::new();
    held.push(open(ports[0]).await.unwrap());
    held.push(open(ports[0]).await.unwrap());
    held.push(open(ports[1]).await.unwrap());
    assert!(held.iter().all(|r| r.status() == 200));
    for port in ports {
        let r = open(port).await.unwrap();
        assert_eq!(r.status(), 429, "the 4th is refused on :{port}");
    }
    // Kill the process holding two: within 10 s they stop counting.
    procs[0].kill();
    let killed = Instant::now();
    let held = Arc::new(held);
    let mut freed = None;
    while killed.elapsed() < Duration::from_secs(12) {
        let r = open(ports[1]).await.unwrap();
        if r.status() == 200 {
            freed = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let freed = freed.expect("the killed process's connections were freed");
    assert!(freed <= Duration::from_secs(10), "freed after {freed:?}");
    drop(held);
    procs[1].kill();
}

/// `--connect-rate-per-ip`: a burst of connects from one address beyond the rate is refused
/// with 429 `rate_limited` and `Retry-After`, and served again once the rate allows.
async fn a_reconnect_storm_from_one_address_is_rate_limited(app: TestApp) {
    let backend = app.backend;
    drop(app);
    let app = TestApp::spawn_with(backend, |c| c.connect_rate_per_ip = 2).await;
    let (t, _) = app.tenant("acme").await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = open(&app, &t, "c").await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limited");
        }
    }
    assert_eq!(statuses, vec![200, 200, 429, 429, 429]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(open(&app, &t, "c").await.status(), 200);
}
