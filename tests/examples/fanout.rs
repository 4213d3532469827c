//! Publish→receive latency with many subscribers on one channel, on each backend: every
//! delivery's latency (receive time minus the publish's send time) over loopback HTTP.
//!
//! `cargo run --release -p herald-tests --example fanout [-- SUBSCRIBERS EVENTS]`
//! (default 1000 subscribers, 200 events, 20 events/s; the cluster run needs Postgres and Redis
//! as for the tests).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_tests::{Backend, TestApp};
use serde_json::{json, Value};
use tokio::sync::Mutex;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    for backend in [Backend::Embedded, Backend::Cluster] {
        // Every subscriber comes from loopback: no per-address stream cap.
        let app = TestApp::spawn_with(backend, |c| c.max_streams_per_ip = 0).await;
        let (t, key) = app.tenant("bench").await;
        let samples = Arc::new(Mutex::new(Vec::with_capacity(subscribers * events)));
        let mut readers = Vec::new();
        for _ in 0..subscribers {
            let mut stream = app.subscribe(&t, "fan", None).await;
            let samples = samples.clone();
            readers.push(tokio::spawn(async move {
                let mut mine = Vec::with_capacity(events);
                for _ in 0..events {
                    let Some(e) = stream.next_within(Duration::from_secs(30)).await else {
                        break;
                    };
                    let v: Value = serde_json::from_str(&e.data).unwrap();
                    mine.push(now_us().saturating_sub(v["at"].as_u64().unwrap()));
                }
                samples.lock().await.extend(mine);
            }));
        }
        let publisher = app.sdk_client(&t, &key);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for i in 0..events {
            tick.tick().await;
            publisher
                .publish("fan", &json!({"i": i, "at": now_us()}))
                .await
                .expect("published");
        }
        for r in readers {
            r.await.unwrap();
        }
        let mut s = samples.lock().await.clone();
        s.sort_unstable();
        let pct = |p: f64| s[((s.len() as f64 * p) as usize).min(s.len() - 1)] as f64 / 1000.0;
        println!(
            "{backend:?}: {subscribers} subscribers × {events} events = {} deliveries (expected {}), publish→receive median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            s.len(),
            subscribers * events,
            pct(0.5),
            pct(0.99),
            pct(1.0),
        );
    }
}
