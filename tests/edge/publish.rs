//! Publishing: keys, bodies, and what a 201 promises.

use herald_tests::{both_backends, TestApp};
use serde_json::{json, Value};

both_backends!(
    publish_needs_a_valid_key_of_the_tenant,
    a_revoked_key_stops_working,
    a_key_without_publish_scope_is_forbidden,
    bad_bodies_are_400_and_publish_nothing,
    oversized_data_is_413,
    an_acknowledged_publish_is_in_history,
    rejections_are_counted_by_reason,
);

/// The status and problem body, without its `request_id` (checked to repeat the response's
/// `X-Request-Id`).
async fn problem(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut body: Value = r.json().await.unwrap();
    let repeated = body.as_object_mut().unwrap().remove("request_id");
    assert_eq!(repeated, Some(Value::String(id)), "{body}");
    (status, body)
}

async fn publish_needs_a_valid_key_of_the_tenant(app: TestApp) {
    let (t, _key) = app.tenant("acme").await;
    let url = app.url(&format!("/v1/{t}/channels/c/events"));
    let body = json!({"data": 1});
    let no_key = app.client.post(&url).json(&body).send().await.unwrap();
    let unknown = app
        .client
        .post(&url)
        .bearer_auth(format!("hk_{}", "A".repeat(40)))
        .json(&body)
        .send()
        .await
        .unwrap();
    let malformed = app
        .client
        .post(&url)
        .bearer_auth("nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    for r in [no_key, unknown, malformed] {
        let (status, p) = problem(r).await;
        assert_eq!((status, p["code"].as_str()), (401, Some("unauthorized")));
        assert_eq!(p["status"], 401);
        assert_eq!(p["type"], "about:blank");
    }
    // A key of another tenant is as unknown here as any other.
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = client
        .post(app.url("/api/v1/signup"))
        .json(&json!({"email": "b@b.example", "password": "another long password", "tenant": {"slug": "beta", "name": "B"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .post(app.url("/api/v1/tenants/beta/keys"))
        .header("origin", app.origin())
        .json(&json!({"name": "k", "scopes": ["publish"]}))
        .send()
        .await
        .unwrap();
    let beta_key: Value = r.json().await.unwrap();
    let r = app
        .publish(beta_key["secret"].as_str().unwrap(), &t, "c", body.clone())
        .await;
    assert_eq!(problem(r).await.0, 401);
}

async fn a_revoked_key_stops_working(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    app.publish_ok(&key, &t, "c", json!({"data": 1})).await;
    let key_id = &key[3..11];
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/tenants/{t}/keys/{key_id}")))
        .header("origin", app.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app.publish(&key, &t, "c", json!({"data": 2})).await;
    assert_eq!(problem(r).await, (401, problem_body(401)));
}

fn problem_body(_status: u16) -> Value {
    json!({
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "unknown or revoked API key",
        "code": "unauthorized",
    })
}

async fn a_key_without_publish_scope_is_forbidden(app: TestApp) {
    app.signup("acme").await;
    let key = app.create_key("acme", &["subscribe"]).await;
    let r = app.publish(&key, "acme", "c", json!({"data": 1})).await;
    let (status, p) = problem(r).await;
    assert_eq!((status, p["code"].as_str()), (403, Some("forbidden")));
}

async fn bad_bodies_are_400_and_publish_nothing(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let url = app.url(&format!("/v1/{t}/channels/c/events"));
    for body in [
        "{",
        "[]",
        "{}",
        r#"{"event": "x"}"#,
        r#"{"data": 1, "extra": 2}"#,
        r#"{"event": 5, "data": 1}"#,
    ] {
        let r = app
            .client
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, p) = problem(r).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(p["code"], "invalid_body", "{body}");
    }
    let r = app
        .publish(&key, &t, "c", json!({"event": "bad type!", "data": 1}))
        .await;
    assert_eq!(problem(r).await.1["code"], "invalid_name");
    let history = app
        .subscribe(&t, "c", Some("garbage"))
        .await
        .next_within(std::time::Duration::from_millis(300))
        .await;
    // Only the invalid-cursor gap: the history is empty.
    assert_eq!(history.map(|e| e.event), Some("herald.gap".to_owned()));
}

async fn oversized_data_is_413(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let ok = "x".repeat(64 * 1024);
    assert_eq!(
        app.publish(&key, &t, "c", json!({"data": ok}))
            .await
            .status(),
        201
    );
    let big = "x".repeat(64 * 1024 + 1);
    let (status, p) = problem(app.publish(&key, &t, "c", json!({"data": big})).await).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let huge = "x".repeat(2 * 1024 * 1024);
    let (status, _) = problem(app.publish(&key, &t, "c", json!({"data": huge})).await).await;
    assert_eq!(status, 413);
}

async fn an_acknowledged_publish_is_in_history(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let first = app.publish_ok(&key, &t, "c", json!({"data": "a"})).await;
    let second = app.publish_ok(&key, &t, "c", json!({"data": "b"})).await;
    let mut stream = app.subscribe(&t, "c", Some(&first)).await;
    let e = stream.next().await;
    assert_eq!(
        (e.id.as_deref(), e.data.as_str()),
        (Some(second.as_str()), "b")
    );
}

/// Every refusal, whichever router and whichever check made it, moves
/// `herald_rejected_total{reason}`; answered requests do not.
async fn rejections_are_counted_by_reason(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let url = app.url(&format!("/v1/{t}/channels/c/events"));
    for _ in 0..2 {
        let r = app
            .client
            .post(&url)
            .json(&json!({"data": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app
        .client
        .post(&url)
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Without the session cookie the signup left in `app.client`.
    let r = reqwest::get(app.url("/api/v1/me")).await.unwrap();
    assert_eq!(r.status(), 401);
    app.publish_ok(&key, &t, "c", json!({"data": 1})).await;
    let metrics = app.metrics().await;
    let count = |reason: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("herald_rejected_total{{reason=\"{reason}\"}} ")))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(count("unauthorized").as_deref(), Some("3"), "{metrics}");
    assert_eq!(count("invalid_body").as_deref(), Some("1"), "{metrics}");
    // Every code is a series from the start, at zero.
    assert_eq!(count("conflict").as_deref(), Some("0"), "{metrics}");
}
