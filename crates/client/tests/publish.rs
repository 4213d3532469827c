//! `herald_client::Client` against a real Herald: every operation, retries through a broker
//! outage and a rate limit, and errors that carry their code.

mod support;

use std::time::{Duration, Instant};

use herald_client::{BatchEvent, Client, PublishOptions, Retry, TokenRequest};
use serde_json::json;
use support::{plans_file, Herald, PrivateRedis, OUTAGE};

#[tokio::test]
async fn publishes_batches_and_reads_history_page_by_page() {
    let herald = Herald::start(&[]);
    let client = Client::new(&herald.base, "acme", herald.tenant("acme").await);

    let first = client
        .publish_with(
            "orders",
            &json!({"id": 1}),
            PublishOptions {
                event: Some("order.created".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.channel, "orders");
    let batch = client
        .publish_batch(&[
            BatchEvent::new("orders", json!({"id": 2})).event("order.created"),
            BatchEvent::new("orders", "plain text"),
            BatchEvent::new("invoices", json!(null)),
        ])
        .await
        .unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(batch[2].channel, "invoices");

    let page = client.history("orders", None, Some(2)).await.unwrap();
    let ids: Vec<&str> = page.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [first.id.as_str(), batch[0].id.as_str()]);
    assert_eq!(page.events[0].event, "order.created");
    assert_eq!(page.events[0].data, json!({"id": 1}));
    let next = client
        .history("orders", page.next_after(), Some(2))
        .await
        .unwrap();
    assert_eq!(next.events.len(), 1);
    assert_eq!(next.events[0].event, "message");
    assert_eq!(next.events[0].data, json!("plain text"));
    let end = client
        .history("orders", next.next_after(), None)
        .await
        .unwrap();
    assert!(end.events.is_empty() && end.next_after().is_none());

    let info = client.channel("orders").await.unwrap();
    assert_eq!(info.retained, 3);
    assert_eq!(info.last_event_id.as_deref(), Some(batch[1].id.as_str()));

    let token = client
        .mint_token(&TokenRequest {
            channels: vec!["orders".into()],
            ttl_seconds: Some(60),
            sub: Some("user-1".into()),
        })
        .await
        .unwrap();
    assert_eq!(token.token.split('.').count(), 3, "a JWT");
    assert!(!token.expires_at.is_empty());
}

#[tokio::test]
async fn errors_carry_status_and_code() {
    let herald = Herald::start(&[]);
    let key = herald.tenant("acme").await;
    let client = Client::new(&herald.base, "acme", &key);

    let err = client.publish("bad name", &json!(1)).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(400), Some("invalid_name"))
    );

    let wrong = Client::new(&herald.base, "acme", format!("hk_{}", "0".repeat(40)));
    let err = wrong.publish("orders", &json!(1)).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(401), Some("unauthorized"))
    );

    let reused = PublishOptions {
        idempotency_key: Some("order-1".into()),
        ..Default::default()
    };
    client
        .publish_with("orders", &json!(1), reused.clone())
        .await
        .unwrap();
    let err = client
        .publish_with("orders", &json!(2), reused)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(422), Some("idempotency_key_reused"))
    );
    assert!(err.to_string().contains("idempotency_key_reused"), "{err}");

    let err = client.publish_batch(&[]).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(400), Some("invalid_body"))
    );
}

/// While the broker is down every attempt is 503 `unavailable`; the client keeps sending the
/// same request with the same idempotency key until Redis is back, and the event is stored once.
#[tokio::test]
async fn retries_through_a_broker_outage_and_publishes_exactly_once() {
    let mut redis = PrivateRedis::start();
    let herald = Herald::start(&["--redis-url", &redis.url()]);
    let key = herald.tenant("acme").await;
    let client = Client::new(&herald.base, "acme", &key);
    client.publish("orders", &json!("before")).await.unwrap();

    redis.stop();
    let no_retry = client.clone().with_retry(Retry::NONE);
    let err = no_retry.publish("orders", &json!("x")).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(503), Some("unavailable")));

    let started = Instant::now();
    let publish = tokio::spawn({
        let client = client.clone().with_retry(Retry {
            max_attempts: 30,
            max_wait: Duration::from_secs(30),
        });
        async move {
            client
                .publish_with(
                    "orders",
                    &json!("during"),
                    PublishOptions {
                        idempotency_key: Some("outage-1".into()),
                        ..Default::default()
                    },
                )
                .await
        }
    });
    tokio::time::sleep(OUTAGE).await; // the outage the client must ride out
    assert!(!publish.is_finished(), "no success while Redis is down");
    redis.restart();
    let published = publish
        .await
        .unwrap()
        .expect("published once Redis is back");
    assert!(started.elapsed() >= OUTAGE);

    // The same key again is the first answer, and nothing new.
    let again = client
        .publish_with(
            "orders",
            &json!("during"),
            PublishOptions {
                idempotency_key: Some("outage-1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again, published);
    let history = client.history("orders", None, None).await.unwrap();
    let during: Vec<_> = history
        .events
        .iter()
        .filter(|e| e.data == json!("during"))
        .collect();
    assert_eq!(during.len(), 1, "stored exactly once: {:?}", history.events);
    assert_eq!(during[0].id, published.id);
}

/// A 429 carries `Retry-After`; the client waits that long and the retry succeeds, and with
/// no budget the 429 comes back as `rate_limited`.
#[tokio::test]
async fn rate_limit_is_retried_after_retry_after() {
    let plans = plans_file(1);
    let herald = Herald::start(&["--plans", plans.to_str().unwrap(), "--default-plan", "sdk"]);
    let key = herald.tenant("acme").await;
    let client = Client::new(&herald.base, "acme", &key);

    client.publish("c", &json!(1)).await.unwrap();
    let err = client
        .clone()
        .with_retry(Retry::NONE)
        .publish("c", &json!(2))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(429), Some("rate_limited"))
    );
    match &err {
        herald_client::Error::Api { retry_after, .. } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(1)))
        }
        other => panic!("{other:?}"),
    }

    let started = Instant::now();
    client.publish("c", &json!(3)).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "waited for Retry-After: {waited:?}"
    );

    // A budget smaller than Retry-After gives the 429 back at once.
    let started = Instant::now();
    let err = client
        .clone()
        .with_retry(Retry {
            max_attempts: 5,
            max_wait: Duration::from_millis(100),
        })
        .publish("c", &json!(4))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("rate_limited"));
    assert!(started.elapsed() < Duration::from_millis(900));
    let history = client.history("c", None, None).await.unwrap();
    assert_eq!(
        history.events.len(),
        2,
        "only the accepted publishes are stored"
    );
    let _ = std::fs::remove_file(plans);
}
