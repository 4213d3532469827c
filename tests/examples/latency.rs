//! End-to-end latency of one publish to one subscriber, on each backend: the time from sending
//! the publish request to reading the event off the stream, over loopback HTTP.
//!
//! `cargo run --release -p herald-tests --example latency [-- N]` (N publishes per backend,
//! default 1000; the cluster run needs Postgres and Redis as for the tests).

use std::time::{Duration, Instant};

use herald_tests::{Backend, TestApp};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    for backend in [Backend::Embedded, Backend::Cluster] {
        let app = TestApp::spawn(backend).await;
        let (t, key) = app.tenant("bench").await;
        let mut stream = app.subscribe(&t, "latency", None).await;
        let publisher = app.sdk_client(&t, &key);
        let mut samples = Vec::with_capacity(n);
        for i in 0..n + 50 {
            let start = Instant::now();
            let sent = publisher.publish("latency", &i);
            let (response, event) = tokio::join!(sent, stream.next());
            let elapsed = start.elapsed();
            response.expect("published");
            assert_eq!(event.data, i.to_string());
            if i >= 50 {
                samples.push(elapsed); // the first 50 warm connections and caches
            }
        }
        samples.sort();
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{backend:?}: {n} publishes, publish→receive median {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
            ms(pct(0.5)),
            ms(pct(0.9)),
            ms(pct(0.99)),
        );
    }
}
