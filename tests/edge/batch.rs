//! Batch and idempotent publishing, history, channel info, CORS.

use std::sync::Arc;

use herald_tests::{both_backends, TestApp};
use serde_json::{json, Value};

both_backends!(
    a_batch_publishes_all_in_order_and_answers_every_id,
    a_batch_with_one_bad_event_publishes_nothing,
    batch_limits_are_400,
    concurrent_repeats_of_an_idempotent_publish_publish_once,
    an_idempotency_key_reused_for_another_body_is_422,
    history_pages_oldest_first_and_says_when_it_skips,
    channel_info_counts_subscribers_and_retention,
    cors_follows_the_tenants_allowed_origins,
);

async fn batch(
    app: &TestApp,
    t: &str,
    key: &str,
    body: Value,
    idem: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/v1/{t}/events")))
        .bearer_auth(key)
        .json(&body);
    if let Some(k) = idem {
        req = req.header("idempotency-key", k);
    }
    req.send().await.unwrap()
}

async fn a_batch_publishes_all_in_order_and_answers_every_id(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut a = app.subscribe(&t, "a", None).await;
    let mut b = app.subscribe(&t, "b", None).await;
    let r = batch(
        &app,
        &t,
        &key,
        json!({"events": [
            {"channel": "a", "event": "x", "data": 1},
            {"channel": "b", "data": "two"},
            {"channel": "a", "data": {"n": 3}},
        ]}),
        None,
    )
    .await;
    assert_eq!(r.status(), 201);
    let results: Value = r.json().await.unwrap();
    let results = results["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["channel"], "b");
    let (a1, a2) = (a.next().await, a.next().await);
    assert_eq!((a1.event.as_str(), a1.data.as_str()), ("x", "1"));
    assert_eq!(a2.data, r#"{"n":3}"#);
    assert_eq!(a1.id.as_deref(), results[0]["id"].as_str());
    assert_eq!(a2.id.as_deref(), results[2]["id"].as_str());
    assert_eq!(b.next().await.id.as_deref(), results[1]["id"].as_str());
}

async fn a_batch_with_one_bad_event_publishes_nothing(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut a = app.subscribe(&t, "a", None).await;
    for bad in [
        json!({"channel": "bad name", "data": 1}),
        json!({"channel": "a", "event": "herald.x", "data": 1}),
        json!({"channel": "a"}),
        json!({"channel": "a", "data": "x".repeat(70_000)}),
    ] {
        let r = batch(
            &app,
            &t,
            &key,
            json!({"events": [{"channel": "a", "data": "ok"}, bad]}),
            None,
        )
        .await;
        assert!(r.status().is_client_error(), "{bad}");
        let p: Value = r.json().await.unwrap();
        assert!(
            p["detail"].as_str().unwrap().contains("events[1]") || p["code"] == "invalid_body",
            "{p}"
        );
    }
    assert!(
        a.next_within(std::time::Duration::from_millis(300))
            .await
            .is_none(),
        "nothing half-published"
    );
}

async fn batch_limits_are_400(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"channel": "a", "data": i}))
        .collect();
    for body in [
        json!({"events": []}),
        json!({"events": many}),
        json!({"events": "x"}),
    ] {
        let r = batch(&app, &t, &key, body, None).await;
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_body");
    }
    let long_key = "k".repeat(129);
    let r = batch(
        &app,
        &t,
        &key,
        json!({"events": [{"channel": "a", "data": 1}]}),
        Some(&long_key),
    )
    .await;
    assert_eq!(r.status(), 400, "an Idempotency-Key over 128 characters");
}

async fn concurrent_repeats_of_an_idempotent_publish_publish_once(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let app = Arc::new(app);
    let mut stream = app.subscribe(&t, "c", None).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (app, t, key) = (app.clone(), t.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let r = app
                .client
                .post(app.url(&format!("/v1/{t}/channels/c/events")))
                .bearer_auth(&key)
                .header("idempotency-key", "order-42")
                .json(&json!({"event": "order.created", "data": {"id": 42}}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "20 identical responses: {answers:?}"
    );
    assert_eq!(answers[0].0, 201);
    stream.next().await;
    assert!(
        stream
            .next_within(std::time::Duration::from_millis(300))
            .await
            .is_none(),
        "one event"
    );
    // The batch endpoint remembers its keys too, per tenant.
    let body = json!({"events": [{"channel": "c", "data": 1}]});
    let first = batch(&app, &t, &key, body.clone(), Some("b-1"))
        .await
        .text()
        .await
        .unwrap();
    let again = batch(&app, &t, &key, body, Some("b-1"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(first, again);
}

async fn an_idempotency_key_reused_for_another_body_is_422(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let send = |data: i32| {
        app.client
            .post(app.url(&format!("/v1/{t}/channels/c/events")))
            .bearer_auth(&key)
            .header("idempotency-key", "k1")
            .json(&json!({"data": data}))
            .send()
    };
    assert_eq!(send(1).await.unwrap().status(), 201);
    let r = send(2).await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "idempotency_key_reused"
    );
}

async fn history_pages_oldest_first_and_says_when_it_skips(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.publish_ok(&key, &t, "c", json!({"event": "n", "data": {"i": i}}))
                .await,
        );
    }
    let get = |query: String| {
        app.client
            .get(app.url(&format!("/v1/{t}/channels/c/history?{query}")))
            .bearer_auth(&key)
            .send()
    };
    let page: Value = get("limit=2".into()).await.unwrap().json().await.unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0],
        json!({"id": ids[0], "event": "n", "data": {"i": 0}})
    );
    let page: Value = get(format!("after={}", ids[3]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert!(page.get("gap").is_none());
    let page: Value = get("after=garbage".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["gap"], "invalid_cursor");
    assert_eq!(page["events"].as_array().unwrap().len(), 5);
    assert_eq!(get("limit=0".into()).await.unwrap().status(), 400);
    let r = app
        .client
        .get(app.url(&format!("/v1/{t}/channels/c/history")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "history needs a key or a token");
}

async fn channel_info_counts_subscribers_and_retention(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let info = || async {
        let r = app
            .client
            .get(app.url(&format!("/v1/{t}/channels/c")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    assert_eq!(
        info().await,
        json!({"channel": "c", "subscribers": 0, "last_event_id": null, "retained": 0})
    );
    let _s1 = app.subscribe(&t, "c", None).await;
    let _s2 = app.subscribe(&t, "c", None).await;
    let last = app.publish_ok(&key, &t, "c", json!({"data": 1})).await;
    let v = info().await;
    assert_eq!(
        (
            v["subscribers"].as_u64(),
            v["last_event_id"].as_str(),
            v["retained"].as_u64()
        ),
        (Some(2), Some(last.as_str()), Some(1))
    );
}

async fn cors_follows_the_tenants_allowed_origins(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let get = |origin: &'static str| {
        app.client
            .get(app.url(&format!("/v1/{t}/channels/c/history")))
            .bearer_auth(&key)
            .header("origin", origin)
            .send()
    };
    let r = get("https://anywhere.example").await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*", "default *");
    assert!(r
        .headers()
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Origin")));
    // Restrict the tenant's origins (as the admin API's PATCH would).
    let store = app.store().await;
    let tenant = store
        .tenant_by_slug(&herald_tests::herald_core_names::slug(&t))
        .await
        .unwrap()
        .unwrap();
    store
        .update_tenant(
            tenant.id,
            &herald_store::TenantPatch {
                allowed_origins: Some(vec!["https://app.example".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        herald_tests::eventually(3, || async {
            get("https://app.example")
                .await
                .unwrap()
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned())
                == Some("https://app.example".into())
        })
        .await
    );
    let r = get("https://evil.example").await.unwrap();
    assert_eq!(r.status(), 200, "still served");
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A publish and a stream decide from the tenant their handler answered for; an error
    // from the tenant it names.
    let allowed = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let publish = |origin: &'static str| {
        app.client
            .post(app.url(&format!("/v1/{t}/channels/c/events")))
            .bearer_auth(&key)
            .header("origin", origin)
            .json(&serde_json::json!({ "data": 1 }))
            .send()
    };
    let r = publish("https://app.example").await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(allowed(&r).as_deref(), Some("https://app.example"));
    let r = publish("https://evil.example").await.unwrap();
    assert_eq!(r.status(), 201, "still served");
    assert_eq!(allowed(&r), None);
    let stream = |origin: &'static str| {
        app.client
            .get(app.url(&format!("/v1/{t}/channels/c/events")))
            .header("origin", origin)
            .send()
    };
    let r = stream("https://app.example").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(allowed(&r).as_deref(), Some("https://app.example"));
    drop(r);
    let r = stream("https://evil.example").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(allowed(&r), None);
    drop(r);
    let r = app
        .client
        .post(app.url(&format!("/v1/{t}/channels/c/events")))
        .header("origin", "https://evil.example")
        .json(&serde_json::json!({ "data": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        allowed(&r),
        None,
        "an error follows the tenant's origins too"
    );
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url(&format!("/v1/{t}/channels/c/events")),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for needed in [
        "authorization",
        "content-type",
        "idempotency-key",
        "last-event-id",
    ] {
        assert!(allowed.contains(needed), "{allowed}");
    }
}
