//! `/metrics` after a scripted run: every counter has the value the client saw happen, per
//! tenant and for the process, and the admin API's usage agrees with it.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use herald_tests::{both_backends, herald_core_names, tiny_plan, Backend, TestApp};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

both_backends!(every_counter_has_the_value_of_the_scripted_run);

/// In-process only: on Redis a batch is one announcement, and lagging a channel's live ring
/// takes more than a thousand separate publishes.
#[tokio::test]
async fn a_slow_subscriber_is_counted_as_lagged_for_its_tenant_embedded() {
    a_slow_subscriber_is_counted_as_lagged_for_its_tenant(TestApp::spawn(Backend::Embedded).await)
        .await;
}

/// `acme` is on `tiny`, whose limits a few requests reach; `bulk` on a plan with room for a
/// flood.
const PLANS: &str = "max_connections = 3
messages_per_day = 12
max_message_bytes = 1024
publish_per_second = 5
publish_burst = 5
channels_per_connection = 3
max_history_size = 10

[plans.bulk]
max_connections = 100
messages_per_day = 1000000
max_message_bytes = 2048
publish_per_second = 100000
publish_burst = 100000
channels_per_connection = 16
max_history_size = 10000
";

async fn spawn(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        tiny_plan(c, PLANS);
        c.usage_flush_secs = 1;
        c.metrics_top_tenants = 2;
    })
    .await
}

/// Every sample of the page, `name{labels}` → value.
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let text = app.metrics().await;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, value)| (series.to_owned(), value.parse().unwrap()))
        .collect()
}

fn value(page: &HashMap<String, f64>, series: &str) -> u64 {
    match page.get(series) {
        Some(v) => *v as u64,
        None => panic!("no {series} in {page:#?}"),
    }
}

/// A stream read as raw bytes: how many arrived, and how many events they held.
struct RawStream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    bytes: u64,
    text: String,
}

impl RawStream {
    async fn open(app: &TestApp, t: &str, channel: &str) -> RawStream {
        let r = app
            .client
            .get(app.url(&format!("/v1/{t}/channels/{channel}/events")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        RawStream {
            body: Box::pin(r.bytes_stream()),
            bytes: 0,
            text: String::new(),
        }
    }

    fn events(&self) -> usize {
        self.text.lines().filter(|l| l.starts_with("id:")).count()
    }

    /// Reads until `events` events have arrived.
    async fn until(&mut self, events: usize) {
        while self.events() < events {
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("the events arrive")
                .expect("the stream stays open")
                .unwrap();
            self.bytes += chunk.len() as u64;
            self.text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn every_counter_has_the_value_of_the_scripted_run(app: TestApp) {
    let app = {
        let backend = app.backend;
        drop(app);
        spawn(backend).await
    };
    let (t, key) = app.tenant("acme").await;
    let mut stream = RawStream::open(&app, &t, "c").await;
    let mut accepted = 0;
    let mut refused: HashMap<String, u64> = HashMap::new();
    let mut refuse = |code: &str| *refused.entry(code.to_owned()).or_default() += 1;
    let code_of = |v: &Value| v["code"].as_str().unwrap().to_owned();

    // Unauthorized, invalid, too large: each refused before it counts against any limit.
    let r = app.publish("nope", &t, "c", json!({"data": 1})).await;
    assert_eq!(r.status(), 401);
    refuse(&code_of(&r.json().await.unwrap()));
    let r = app
        .client
        .post(app.url(&format!("/v1/{t}/channels/c/events")))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    refuse(&code_of(&r.json().await.unwrap()));
    let r = app
        .publish(&key, &t, "c", json!({"data": "x".repeat(2000)}))
        .await;
    assert_eq!(r.status(), 413);
    refuse(&code_of(&r.json().await.unwrap()));

    // Publishes until the daily quota: the rate limit refuses some on the way.
    loop {
        let r = app.publish(&key, &t, "c", json!({"data": accepted})).await;
        match r.status().as_u16() {
            201 => accepted += 1,
            429 => {
                let code = code_of(&r.json().await.unwrap());
                refuse(&code);
                if code == "quota_exceeded" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => panic!("publish answered {other}"),
        }
    }
    assert_eq!(accepted, 12, "the daily quota");
    for code in [
        "unauthorized",
        "invalid_body",
        "payload_too_large",
        "rate_limited",
        "quota_exceeded",
    ] {
        assert!(refused.contains_key(code), "{code} provoked: {refused:?}");
    }
    stream.until(accepted as usize).await;
    // Nothing more is written: no heartbeat within the default 15 s.
    let page = scrape(&app).await;

    let tenant = |name: &str| value(&page, &format!("herald_tenant_{name}{{tenant=\"acme\"}}"));
    assert_eq!(tenant("publishes_total"), accepted);
    assert_eq!(value(&page, "herald_publishes_total"), accepted);
    assert_eq!(tenant("deliveries_total"), accepted);
    assert_eq!(value(&page, "herald_deliveries_total"), accepted);
    assert_eq!(
        tenant("bytes_out_total"),
        stream.bytes,
        "every byte the client read"
    );
    assert_eq!(tenant("connections"), 1);
    assert_eq!(value(&page, "herald_connections"), 1);
    for code in herald_core::ErrorCode::ALL.map(|c| c.as_str()) {
        let n = refused.get(code).copied().unwrap_or(0);
        let process = format!("herald_rejected_total{{reason=\"{code}\"}}");
        assert_eq!(value(&page, &process), n, "{process}");
        let of_tenant =
            format!("herald_tenant_rejected_total{{tenant=\"acme\",reason=\"{code}\"}}");
        assert_eq!(
            page.get(&of_tenant).map_or(0, |v| *v as u64),
            n,
            "{of_tenant}"
        );
        let other = format!("herald_tenant_rejected_total{{tenant=\"other\",reason=\"{code}\"}}");
        assert_eq!(value(&page, &other), 0, "{other}");
    }
    for outcome in ["lagged", "resync"] {
        let series = format!(
            "herald_tenant_slow_subscribers_total{{tenant=\"acme\",outcome=\"{outcome}\"}}"
        );
        assert_eq!(value(&page, &series), 0, "{series}");
    }
    for name in [
        "publishes_total",
        "deliveries_total",
        "bytes_out_total",
        "connections",
    ] {
        let other = format!("herald_tenant_{name}{{tenant=\"other\"}}");
        assert_eq!(value(&page, &other), 0, "{other}");
    }
    // The publishes read the tenant, the key and the channel through the control view.
    let hits = value(&page, "herald_control_cache_hits_total{cache=\"tenants\"}");
    let misses = value(
        &page,
        "herald_control_cache_misses_total{cache=\"tenants\"}",
    );
    assert!(
        misses >= 1 && hits >= accepted,
        "{hits} hits, {misses} misses"
    );
    assert_eq!(value(&page, "herald_draining"), 0);
    assert_eq!(value(&page, "herald_history_read_errors_total"), 0);
    if app.backend == Backend::Cluster {
        // Every accepted append and every quota refusal was a round trip to Redis.
        let trips = value(&page, "herald_broker_round_trip_seconds_count");
        assert!(trips > accepted, "{trips} round trips");
        assert_eq!(value(&page, "herald_broker_reconnects_total"), 0);
    }

    // The admin API's usage, once flushed, is what /metrics counted.
    let agree = herald_tests::eventually(10, || async {
        let today = app.usage_today(&t).await;
        today["messages"] == accepted
            && today["deliveries"] == tenant("deliveries_total")
            && today["bytes_out"] == tenant("bytes_out_total")
    })
    .await;
    assert!(agree, "the admin API's usage agrees with /metrics");
}

/// Batches of 100 events of 1 KiB in the flood: more than the socket buffers and the
/// channel's live ring hold.
const FLOOD_BATCHES: u64 = 40;

/// A subscriber that stops reading while a flood passes falls behind its live feed: counted
/// as lagged, for the process and for its tenant alike.
async fn a_slow_subscriber_is_counted_as_lagged_for_its_tenant(app: TestApp) {
    let app = {
        let backend = app.backend;
        drop(app);
        spawn(backend).await
    };
    let t = "bulk";
    app.signup(t).await;
    app.store()
        .await
        .set_plan(&herald_core_names::slug(t), "bulk")
        .await
        .unwrap();
    let key = app.create_key(t, &["publish", "subscribe"]).await;
    let mut slow = app.stalled_stream(t, "flood").await;
    let pad = "x".repeat(1000);
    for b in 0..FLOOD_BATCHES {
        let events: Vec<Value> = (0..100)
            .map(|i| json!({"channel": "flood", "data": {"i": b * 100 + i, "pad": pad}}))
            .collect();
        let r = app
            .client
            .post(app.url(&format!("/v1/{t}/events")))
            .bearer_auth(&key)
            .json(&json!({"events": events}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "batch {b}");
    }
    // Reading again, it catches up from history.
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(50), slow.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
        }
        let page = scrape(&app).await;
        if value(&page, "herald_slow_subscribers_total{outcome=\"lagged\"}") > 0
            && value(&page, "herald_history_reads_total") > 0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow subscriber lagged and caught up from history: {:?}",
            page.iter()
                .filter(|(k, _)| k.contains("slow") || k.contains("history"))
                .collect::<Vec<_>>()
        );
    }
    let page = scrape(&app).await;
    let process = value(&page, "herald_slow_subscribers_total{outcome=\"lagged\"}");
    let tenant = value(
        &page,
        "herald_tenant_slow_subscribers_total{tenant=\"bulk\",outcome=\"lagged\"}",
    );
    assert_eq!(tenant, process, "the tenant's lags are the process's");
    // Catching up read history, without an error.
    assert!(value(&page, "herald_history_reads_total") > 0);
    assert_eq!(value(&page, "herald_history_read_errors_total"), 0);
    assert_eq!(
        value(&page, "herald_tenant_publishes_total{tenant=\"bulk\"}"),
        FLOOD_BATCHES * 100
    );
}
