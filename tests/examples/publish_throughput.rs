//! Publish throughput of one API key with the rate limiter off and on, on each backend: what
//! the limiter costs. "On" is a plan whose rate is far above what is reached, so every publish
//! consults the limiter and none is refused; "off" is a plan without a publish rate.
//!
//! `cargo run --release -p herald-tests --example publish_throughput [-- SECONDS CONCURRENCY]`
//! (default 5 s, 16 concurrent publishers; the cluster run needs Postgres and Redis).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_tests::{tiny_plan, Backend, TestApp};

const PLAN: &str = "max_connections = 1000
messages_per_day = 1000000000
max_message_bytes = 65536
publish_burst = 1000000000
channels_per_connection = 16
max_history_size = 1000
";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    for backend in [Backend::Embedded, Backend::Cluster] {
        // Twice, alternating, so that warm-up and drift show as noise rather than as a cost.
        for (label, rate) in [
            ("limiter off", 0u64),
            ("limiter on", 1_000_000_000),
            ("limiter off", 0),
            ("limiter on", 1_000_000_000),
        ] {
            let plan = format!("{PLAN}publish_per_second = {rate}\n");
            let app = TestApp::spawn_with(backend, |c| tiny_plan(c, &plan)).await;
            let (t, key) = app.tenant("bench").await;
            let count = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (client, count) = (app.sdk_client(&t, &key), count.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        client.publish("c", "x").await.expect("published");
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let n = count.load(Ordering::Relaxed);
            println!(
                "{backend:?}, {label}: {n} publishes in {secs} s = {:.0}/s ({concurrency} concurrent)",
                n as f64 / secs as f64
            );
        }
    }
}
