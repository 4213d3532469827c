//! Faults: the broker going away and coming back, and draining on shutdown.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herald_tests::{both_backends, eventually, Backend, TestApp};
use serde_json::{json, Value};

both_backends!(draining_ends_open_streams_cleanly);

/// Draining ends every open stream cleanly and promptly; a client that resumes on the next
/// process with its cursor loses nothing that process can know: everything through Redis, and
/// on the embedded broker (history in memory) a gap that says the history is gone.
async fn draining_ends_open_streams_cleanly(mut app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let before = app.publish_ok(&key, &t, "c", json!({"data": 0})).await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(app.subscribe(&t, "c", None).await);
    }
    app.publish_ok(&key, &t, "c", json!({"data": 1})).await;
    let started = std::time::Instant::now();
    let stop = app.stop();
    let ends = async {
        for s in &mut streams {
            assert!(
                s.ends_within(Duration::from_secs(5)).await,
                "the stream ended cleanly"
            );
        }
    };
    tokio::join!(stop, ends);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "well within the drain timeout"
    );

    app.restart().await;
    let mut resumed = app.subscribe(&t, "c", Some(&before)).await;
    let first = resumed.next().await;
    match app.backend {
        Backend::Cluster => assert_eq!(first.data, "1", "the event published before the drain"),
        Backend::Embedded => {
            assert_eq!(first.event, "herald.gap");
            assert!(first.data.contains("invalid_cursor"), "{first:?}");
        }
    }
}

/// A Redis server of this test's own, so that it can be stopped and started again.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (cargo xtask test makes sure of it)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..100 {
            if let Ok(mut con) = client.get_connection() {
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not start");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// While Redis is down, publishes and new subscribes get 503 and open streams stay open with
/// heartbeats; when it returns (here without its data), streams resume live delivery, first
/// telling the client that the history it knew is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_503_and_streams_survive_it() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let app = TestApp::spawn_with(Backend::Cluster, |c| {
        c.redis_url = Some(url);
        c.heartbeat_secs = 1;
    })
    .await;
    let (t, key) = app.tenant("acme").await;
    let mut stream = app.subscribe(&t, "c", None).await;
    app.publish_ok(&key, &t, "c", json!({"data": "before"}))
        .await;
    assert_eq!(stream.next().await.data, "before");

    redis.kill();
    let r = app.publish(&key, &t, "c", json!({"data": "lost"})).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unavailable");
    let r = app
        .client
        .get(app.url(&format!("/v1/{t}/channels/other/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a new subscribe needs the broker");
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let before = stream.comments;
    assert!(stream
        .next_within(Duration::from_millis(2500))
        .await
        .is_none());
    assert!(
        stream.comments > before,
        "heartbeats continue during the outage"
    );

    redis.restart();
    assert!(
        eventually(15, || async {
            app.publish(&key, &t, "c", json!({"data": "after"}))
                .await
                .status()
                == 201
        })
        .await,
        "publishing works again once Redis is back"
    );
    let first = stream
        .next_within(Duration::from_secs(10))
        .await
        .expect("the stream resumes");
    let event = if first.event == "herald.gap" {
        let gap: Value = serde_json::from_str(&first.data).unwrap();
        assert_eq!(gap["reason"], "invalid_cursor", "the old history is gone");
        stream
            .next_within(Duration::from_secs(10))
            .await
            .expect("then the new event")
    } else {
        first
    };
    assert_eq!(event.data, "after");
}
