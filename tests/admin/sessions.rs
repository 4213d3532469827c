//! Sessions: password changes, login throttling.

use herald_tests::{both_backends, TestApp};
use reqwest::Client;
use serde_json::json;

use crate::{call, call_ok, problem};

both_backends!(
    a_password_change_ends_the_other_sessions,
    ten_failed_logins_a_minute_are_throttled_per_email_and_per_ip,
);

async fn login(app: &TestApp, email: &str, password: &str) -> (Client, u16) {
    let client = Client::builder().cookie_store(true).build().unwrap();
    let r = client
        .post(app.url("/api/v1/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (client, status)
}

async fn a_password_change_ends_the_other_sessions(app: TestApp) {
    app.signup("acme").await;
    let email = "owner@acme.example";
    let old = "correct horse battery staple";
    let (laptop, status) = login(&app, email, old).await;
    assert_eq!(status, 200);

    let r = call(
        &app,
        &app.client,
        "POST",
        "/api/v1/me/password",
        Some(json!({"current_password": "not the password", "new_password": "a brand new passphrase"})),
    )
    .await;
    problem(r, 403, "forbidden").await;
    let r = call(
        &app,
        &app.client,
        "POST",
        "/api/v1/me/password",
        Some(json!({"current_password": old, "new_password": "short"})),
    )
    .await;
    problem(r, 400, "invalid_body").await;
    call_ok(
        &app,
        &app.client,
        "POST",
        "/api/v1/me/password",
        Some(json!({"current_password": old, "new_password": "a brand new passphrase"})),
        204,
    )
    .await;

    // This session goes on; the laptop's has ended.
    call_ok(&app, &app.client, "GET", "/api/v1/me", None, 200).await;
    let r = call(&app, &laptop, "GET", "/api/v1/me", None).await;
    problem(r, 401, "unauthorized").await;
    assert_eq!(login(&app, email, old).await.1, 401);
    assert_eq!(login(&app, email, "a brand new passphrase").await.1, 200);
}

async fn ten_failed_logins_a_minute_are_throttled_per_email_and_per_ip(app: TestApp) {
    app.signup("acme").await;
    let email = "owner@acme.example";
    for _ in 0..10 {
        assert_eq!(login(&app, email, "wrong password!").await.1, 401);
    }
    let r = Client::new()
        .post(app.url("/api/v1/login"))
        .json(&json!({"email": email, "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    problem(r, 429, "rate_limited").await;
    // The tests' client has one IP: another email is throttled too, unknown or not, alike.
    let r = Client::new()
        .post(app.url("/api/v1/login"))
        .json(&json!({"email": "nobody@example.com", "password": "whatever it is"}))
        .send()
        .await
        .unwrap();
    problem(r, 429, "rate_limited").await;
}
