//! Channels and signing keys through the admin API.

use std::time::Duration;

use herald_tests::{both_backends, now_secs, sign_token, TestApp};
use serde_json::{json, Value};

use crate::{call, call_ok, problem};

both_backends!(
    channels_are_created_listed_patched_and_deleted,
    history_size_is_bounded_by_the_plan,
    the_list_shows_live_subscribers_and_the_last_event_id,
    the_limits_show_the_connections_open_now,
    deleting_a_channel_clears_its_history_and_ends_its_streams,
    a_private_channel_needs_a_token,
    rotated_signing_keys_verify_for_the_grace_period,
);

const CHANNELS: &str = "/api/v1/tenants/acme/channels";

async fn channels_are_created_listed_patched_and_deleted(app: TestApp) {
    app.signup("acme").await;
    let created = call_ok(
        &app,
        &app.client,
        "POST",
        CHANNELS,
        Some(json!({"name": "orders", "visibility": "private", "history_size": 500, "history_ttl_seconds": 3600})),
        201,
    )
    .await;
    assert_eq!(created["name"], "orders");
    assert_eq!(created["visibility"], "private");
    assert_eq!(created["history_size"], 500);
    assert_eq!(created["history_ttl_seconds"], 3600);
    assert_eq!(created["subscribers"], 0);
    assert_eq!(created["last_event_id"], Value::Null);
    assert!(created["created_at"].is_string());
    let r = call(
        &app,
        &app.client,
        "POST",
        CHANNELS,
        Some(json!({"name": "orders"})),
    )
    .await;
    problem(r, 409, "conflict").await;
    let r = call(
        &app,
        &app.client,
        "POST",
        CHANNELS,
        Some(json!({"name": "a b"})),
    )
    .await;
    problem(r, 400, "invalid_name").await;

    // Absent settings take the tenant's defaults.
    let chat = call_ok(
        &app,
        &app.client,
        "POST",
        CHANNELS,
        Some(json!({"name": "chat"})),
        201,
    )
    .await;
    assert_eq!(chat["visibility"], "public");
    assert_eq!(chat["history_size"], 100);

    let list = call_ok(&app, &app.client, "GET", CHANNELS, None, 200).await;
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [json!("chat"), json!("orders")]);

    let patched = call_ok(
        &app,
        &app.client,
        "PATCH",
        &format!("{CHANNELS}/orders"),
        Some(json!({"visibility": "public"})),
        200,
    )
    .await;
    assert_eq!(patched["visibility"], "public");
    assert_eq!(patched["history_size"], 500, "untouched fields stay");
    let got = call_ok(
        &app,
        &app.client,
        "GET",
        &format!("{CHANNELS}/orders"),
        None,
        200,
    )
    .await;
    assert_eq!(got, patched);

    // A channel in use needs no creation to be patched.
    let patched = call_ok(
        &app,
        &app.client,
        "PATCH",
        &format!("{CHANNELS}/unconfigured"),
        Some(json!({"history_size": 10})),
        200,
    )
    .await;
    assert_eq!(patched["history_size"], 10);

    call_ok(
        &app,
        &app.client,
        "DELETE",
        &format!("{CHANNELS}/orders"),
        None,
        204,
    )
    .await;
    let got = call_ok(
        &app,
        &app.client,
        "GET",
        &format!("{CHANNELS}/orders"),
        None,
        200,
    )
    .await;
    assert_eq!(got["created_at"], Value::Null, "back to the defaults");
    assert_eq!(got["history_size"], 100);
    let r = call(&app, &app.client, "GET", &format!("{CHANNELS}/a%20b"), None).await;
    problem(r, 400, "invalid_name").await;
}

async fn history_size_is_bounded_by_the_plan(app: TestApp) {
    app.signup("acme").await;
    for body in [
        json!({"name": "big", "history_size": 1001}),
        json!({"name": "big", "history_ttl_seconds": 2592001}),
        json!({"name": "big", "history_size": -1}),
    ] {
        let r = call(&app, &app.client, "POST", CHANNELS, Some(body)).await;
        problem(r, 400, "invalid_body").await;
    }
    let r = call(
        &app,
        &app.client,
        "PATCH",
        &format!("{CHANNELS}/big"),
        Some(json!({"history_size": 5000})),
    )
    .await;
    problem(r, 400, "invalid_body").await;
    let limits = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/limits",
        None,
        200,
    )
    .await;
    assert_eq!(limits["plan"], "free");
    assert_eq!(limits["limits"]["max_history_size"], 1000);
    call_ok(
        &app,
        &app.client,
        "POST",
        CHANNELS,
        Some(json!({"name": "big", "history_size": 1000})),
        201,
    )
    .await;
}

async fn the_list_shows_live_subscribers_and_the_last_event_id(app: TestApp) {
    let (slug, key) = app.tenant("acme").await;
    call_ok(
        &app,
        &app.client,
        "POST",
        CHANNELS,
        Some(json!({"name": "orders"})),
        201,
    )
    .await;
    let _stream = app.subscribe(&slug, "orders", None).await;
    app.publish_ok(&key, &slug, "orders", json!({"data": 1}))
        .await;
    let last = app
        .publish_ok(&key, &slug, "orders", json!({"data": 2}))
        .await;
    let seen = herald_tests::eventually(10, || async {
        let list = call_ok(&app, &app.client, "GET", CHANNELS, None, 200).await;
        list[0]["subscribers"] == 1 && list[0]["last_event_id"] == json!(last)
    })
    .await;
    assert!(seen, "the list shows one subscriber and the last id");
}

async fn the_limits_show_the_connections_open_now(app: TestApp) {
    let (slug, _key) = app.tenant("acme").await;
    let connections = || async {
        let limits = call_ok(
            &app,
            &app.client,
            "GET",
            "/api/v1/tenants/acme/limits",
            None,
            200,
        )
        .await;
        limits["today"]["connections"].clone()
    };
    assert_eq!(connections().await, json!(0));
    let one = app.subscribe(&slug, "orders", None).await;
    let two = app.subscribe(&slug, "invoices", None).await;
    assert_eq!(
        connections().await,
        json!(2),
        "both open streams count at once"
    );
    drop(one);
    let closed = herald_tests::eventually(10, || async { connections().await == json!(1) }).await;
    assert!(closed, "a closed stream stops counting");
    drop(two);
}

async fn deleting_a_channel_clears_its_history_and_ends_its_streams(app: TestApp) {
    let (slug, key) = app.tenant("acme").await;
    let first = app
        .publish_ok(&key, &slug, "orders", json!({"data": 1}))
        .await;
    app.publish_ok(&key, &slug, "other", json!({"data": 1}))
        .await;
    let mut stream = app.subscribe(&slug, "orders", None).await;
    let mut other = app.subscribe(&slug, "other", None).await;
    call_ok(
        &app,
        &app.client,
        "DELETE",
        &format!("{CHANNELS}/orders"),
        None,
        204,
    )
    .await;
    assert!(
        stream.ends_within(Duration::from_secs(5)).await,
        "the stream ends"
    );
    let got = call_ok(
        &app,
        &app.client,
        "GET",
        &format!("{CHANNELS}/orders"),
        None,
        200,
    )
    .await;
    assert_eq!(got["last_event_id"], Value::Null, "no history: {got}");
    // Resuming from before the deletion is told that the cursor is gone.
    let mut resumed = app.subscribe(&slug, "orders", Some(&first)).await;
    let gap = resumed.next().await;
    assert_eq!(gap.event, "herald.gap", "{gap:?}");
    // Other channels are untouched.
    app.publish_ok(&key, &slug, "other", json!({"data": 2}))
        .await;
    assert!(other.next_within(Duration::from_secs(5)).await.is_some());
}

async fn a_private_channel_needs_a_token(app: TestApp) {
    let (slug, _key) = app.tenant("acme").await;
    call_ok(
        &app,
        &app.client,
        "POST",
        CHANNELS,
        Some(json!({"name": "secret", "visibility": "private"})),
        201,
    )
    .await;
    let r = app
        .client
        .get(app.url(&format!("/v1/{slug}/channels/secret/events")))
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthorized").await;
}

async fn rotated_signing_keys_verify_for_the_grace_period(app: TestApp) {
    let (slug, _key) = app.tenant("acme").await;
    let path = "/api/v1/tenants/acme/signing-keys";
    let keys = call_ok(&app, &app.client, "GET", path, None, 200).await;
    let keys = keys.as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    let first = keys[0].clone();
    assert_eq!(first["current"], true);
    assert_eq!(first["expires_at"], Value::Null);
    let secret = first["secret"].as_str().unwrap();
    assert!(secret.starts_with("hs_"));

    let rotated = call_ok(&app, &app.client, "POST", path, None, 201).await;
    assert_eq!(rotated["current"], true);
    assert_ne!(rotated["kid"], first["kid"]);
    let keys = call_ok(&app, &app.client, "GET", path, None, 200).await;
    assert_eq!(keys[0]["kid"], rotated["kid"], "newest first");
    assert_eq!(keys[1]["kid"], first["kid"]);
    assert_eq!(keys[1]["current"], false);
    assert!(keys[1]["expires_at"].is_string());

    // A token signed with the previous secret still opens a private stream.
    app.make_private(&slug, "private-room").await;
    let claims = json!({"tenant": slug, "channels": ["private-room"], "exp": now_secs() + 60});
    for key in [&first, &rotated] {
        let token = sign_token(
            key["kid"].as_str(),
            key["secret"].as_str().unwrap(),
            &claims,
        );
        let r = app
            .client
            .get(app.url(&format!(
                "/v1/{slug}/channels/private-room/events?token={token}"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "kid {}", key["kid"]);
    }
}
