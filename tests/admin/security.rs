//! Holes a security review found in the admin API (issue 11), each closed with its test.

use herald_tests::{both_backends, TestApp};
use reqwest::Client;
use serde_json::{json, Value};

use crate::{account, call, call_ok, problem, with_key};

both_backends!(
    only_an_owner_deletes_a_tenant_or_creates_admin_keys_whoever_calls,
    admin_keys_with_channel_patterns_are_refused,
    viewers_see_signing_keys_without_their_secrets,
);

/// `acme` owned by the app's client, with bob as `role` member; bob's client.
async fn with_member(app: &TestApp, role: &str) -> Client {
    app.signup("acme").await;
    let bob = account(app, "bob@example.com", "bobs").await;
    call_ok(
        app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/members",
        Some(json!({"email": "bob@example.com", "role": role})),
        201,
    )
    .await;
    bob
}

async fn only_an_owner_deletes_a_tenant_or_creates_admin_keys_whoever_calls(app: TestApp) {
    let bob = with_member(&app, "admin").await;
    let admin_key = json!({"name": "escalate", "scopes": ["admin"]});
    // An admin member may not make an admin key, nor delete the tenant.
    let r = call(
        &app,
        &bob,
        "POST",
        "/api/v1/tenants/acme/keys",
        Some(admin_key.clone()),
    )
    .await;
    problem(r, 403, "forbidden").await;
    let r = call(&app, &bob, "DELETE", "/api/v1/tenants/acme", None).await;
    problem(r, 403, "forbidden").await;
    // An admin key, made by the owner, acts as an admin: neither may it.
    let key = app.create_key("acme", &["admin"]).await;
    let r = with_key(
        &app,
        &key,
        "POST",
        "/api/v1/tenants/acme/keys",
        Some(admin_key),
    )
    .await;
    problem(r, 403, "forbidden").await;
    let r = with_key(&app, &key, "DELETE", "/api/v1/tenants/acme", None).await;
    problem(r, 403, "forbidden").await;
    // It still manages what an admin manages.
    let r = with_key(
        &app,
        &key,
        "POST",
        "/api/v1/tenants/acme/keys",
        Some(json!({"name": "pub", "scopes": ["publish"]})),
    )
    .await;
    assert_eq!(r.status(), 201);
    // The tenant is still there, with exactly the owner's admin key among its admin keys.
    let keys = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/keys",
        None,
        200,
    )
    .await;
    let admins = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["scopes"].as_array().unwrap().contains(&json!("admin")))
        .count();
    assert_eq!(admins, 1, "{keys}");
    // The owner may delete it.
    call_ok(
        &app,
        &app.client,
        "DELETE",
        "/api/v1/tenants/acme",
        None,
        204,
    )
    .await;
}

async fn admin_keys_with_channel_patterns_are_refused(app: TestApp) {
    app.signup("acme").await;
    for scopes in [json!(["admin"]), json!(["admin", "publish"])] {
        let r = call(
            &app,
            &app.client,
            "POST",
            "/api/v1/tenants/acme/keys",
            Some(json!({"name": "k", "scopes": scopes, "channels": ["orders"]})),
        )
        .await;
        problem(r, 400, "invalid_body").await;
    }
    let keys = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/keys",
        None,
        200,
    )
    .await;
    assert_eq!(keys, json!([]), "nothing was created");
}

async fn viewers_see_signing_keys_without_their_secrets(app: TestApp) {
    let bob = with_member(&app, "viewer").await;
    let owners: Value = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/signing-keys",
        None,
        200,
    )
    .await;
    let secret = owners[0]["secret"].as_str().expect("owners see the secret");
    assert!(!secret.is_empty());
    let r = call(&app, &bob, "GET", "/api/v1/tenants/acme/signing-keys", None).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(secret),
        "a viewer read a signing secret: {text}"
    );
    let viewers: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(viewers[0]["kid"], owners[0]["kid"]);
    assert_eq!(viewers[0]["current"], true);
    assert!(viewers[0]["created_at"].is_string());
    assert!(viewers[0].get("secret").is_none(), "{viewers}");
}
