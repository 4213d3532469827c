//! Tenants: settings, deletion, members and roles.

use herald_tests::{both_backends, TestApp};
use serde_json::json;

use crate::{account, call, call_ok, problem};

both_backends!(
    a_tenant_is_patched_and_answers_with_itself,
    bad_patches_are_400_and_change_nothing,
    deleting_a_tenant_revokes_its_keys_and_quarantines_its_slug,
    owners_add_and_remove_members_and_viewers_only_read,
    a_malformed_slug_is_400_as_on_the_edge,
);

async fn a_tenant_is_patched_and_answers_with_itself(app: TestApp) {
    app.signup("acme").await;
    let t = call_ok(&app, &app.client, "GET", "/api/v1/tenants/acme", None, 200).await;
    assert_eq!(t["allowed_origins"], json!(["*"]));
    assert_eq!(
        t["channel_defaults"],
        json!({"visibility": "public", "history_size": 100, "history_ttl_seconds": 86400})
    );
    let patched = call_ok(
        &app,
        &app.client,
        "PATCH",
        "/api/v1/tenants/acme",
        Some(json!({
            "name": "Acme Inc.",
            "allowed_origins": ["https://acme.example", "http://localhost:3000"],
            "channel_defaults": {"visibility": "private", "history_size": 500}
        })),
        200,
    )
    .await;
    assert_eq!(patched["name"], "Acme Inc.");
    assert_eq!(
        patched["allowed_origins"],
        json!(["https://acme.example", "http://localhost:3000"])
    );
    assert_eq!(
        patched["channel_defaults"],
        json!({"visibility": "private", "history_size": 500, "history_ttl_seconds": 86400})
    );
    let again = call_ok(&app, &app.client, "GET", "/api/v1/tenants/acme", None, 200).await;
    assert_eq!(again, patched);
    // A channel nobody configured now follows the new defaults.
    let channel = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/channels/anything",
        None,
        200,
    )
    .await;
    assert_eq!(channel["visibility"], "private");
    assert_eq!(channel["created_at"], json!(null));
}

async fn bad_patches_are_400_and_change_nothing(app: TestApp) {
    app.signup("acme").await;
    let before = call_ok(&app, &app.client, "GET", "/api/v1/tenants/acme", None, 200).await;
    for body in [
        json!({"name": ""}),
        json!({"allowed_origins": []}),
        json!({"allowed_origins": ["*", "https://a.example"]}),
        json!({"allowed_origins": ["acme.example"]}),
        json!({"allowed_origins": ["https://a.example/path"]}),
        json!({"channel_defaults": {"history_size": 1001}}),
        json!({"channel_defaults": {"history_size": 0}}),
        json!({"channel_defaults": {"history_ttl_seconds": 0}}),
        json!({"channel_defaults": {"visibility": "secret"}}),
        json!({"slug": "renamed"}),
    ] {
        let r = call(
            &app,
            &app.client,
            "PATCH",
            "/api/v1/tenants/acme",
            Some(body.clone()),
        )
        .await;
        problem(r, 400, "invalid_body").await;
    }
    let after = call_ok(&app, &app.client, "GET", "/api/v1/tenants/acme", None, 200).await;
    assert_eq!(after, before);
}

async fn deleting_a_tenant_revokes_its_keys_and_quarantines_its_slug(app: TestApp) {
    let (slug, key) = app.tenant("acme").await;
    app.publish_ok(&key, &slug, "orders", json!({"data": 1}))
        .await;
    let mut stream = app.subscribe(&slug, "orders", None).await;
    call_ok(
        &app,
        &app.client,
        "DELETE",
        "/api/v1/tenants/acme",
        None,
        204,
    )
    .await;

    assert!(
        stream.ends_within(std::time::Duration::from_secs(5)).await,
        "the tenant's open stream ends"
    );
    let r = app.publish(&key, &slug, "orders", json!({"data": 2})).await;
    assert!(
        matches!(r.status().as_u16(), 401 | 404),
        "a deleted tenant's key publishes nothing: {}",
        r.status()
    );
    let r = call(&app, &app.client, "GET", "/api/v1/tenants/acme", None).await;
    problem(r, 404, "not_found").await;
    let r = call(
        &app,
        &app.client,
        "POST",
        "/api/v1/tenants",
        Some(json!({"slug": "acme", "name": "Again"})),
    )
    .await;
    problem(r, 409, "conflict").await;
}

async fn owners_add_and_remove_members_and_viewers_only_read(app: TestApp) {
    app.signup("acme").await;
    let bob = account(&app, "bob@example.com", "bobs").await;
    let r = call(
        &app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/members",
        Some(json!({"email": "nobody@example.com", "role": "viewer"})),
    )
    .await;
    problem(r, 404, "not_found").await;
    let member = call_ok(
        &app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/members",
        Some(json!({"email": "Bob@Example.com", "role": "viewer"})),
        201,
    )
    .await;
    assert_eq!(member["email"], "bob@example.com");
    assert_eq!(member["role"], "viewer");
    let r = call(
        &app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/members",
        Some(json!({"email": "bob@example.com", "role": "admin"})),
    )
    .await;
    problem(r, 409, "conflict").await;

    // The viewer sees the tenant and its keys, and changes nothing.
    let t = call_ok(&app, &bob, "GET", "/api/v1/tenants/acme", None, 200).await;
    assert_eq!(t["role"], "viewer");
    call_ok(&app, &bob, "GET", "/api/v1/tenants/acme/keys", None, 200).await;
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/tenants/acme/keys",
            Some(json!({"name": "k", "scopes": ["publish"]})),
        ),
        (
            "PATCH",
            "/api/v1/tenants/acme",
            Some(json!({"name": "Mine"})),
        ),
        ("DELETE", "/api/v1/tenants/acme", None),
        (
            "POST",
            "/api/v1/tenants/acme/channels",
            Some(json!({"name": "x"})),
        ),
        (
            "PATCH",
            "/api/v1/tenants/acme/channels/x",
            Some(json!({"history_size": 5})),
        ),
        ("DELETE", "/api/v1/tenants/acme/channels/x", None),
        ("POST", "/api/v1/tenants/acme/signing-keys", None),
        (
            "POST",
            "/api/v1/tenants/acme/members",
            Some(json!({"email": "owner@acme.example", "role": "admin"})),
        ),
    ] {
        let r = call(&app, &bob, method, path, body).await;
        problem(r, 403, "forbidden").await;
    }

    let members = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/members",
        None,
        200,
    )
    .await;
    assert_eq!(members.as_array().unwrap().len(), 2);
    let owner_id = members[0]["account_id"].as_i64().unwrap();
    let bob_id = member["account_id"].as_i64().unwrap();
    let r = call(
        &app,
        &app.client,
        "DELETE",
        &format!("/api/v1/tenants/acme/members/{owner_id}"),
        None,
    )
    .await;
    problem(r, 409, "conflict").await;
    call_ok(
        &app,
        &app.client,
        "DELETE",
        &format!("/api/v1/tenants/acme/members/{bob_id}"),
        None,
        204,
    )
    .await;
    let r = call(&app, &bob, "GET", "/api/v1/tenants/acme", None).await;
    problem(r, 404, "not_found").await;
    let audit = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/audit",
        None,
        200,
    )
    .await;
    let actions: Vec<_> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["member.remove", "member.add"], "newest first");
}

/// A malformed slug in the path is refused as the edge refuses it, 400 `invalid_name`, once the
/// caller is authenticated: a stranger still learns nothing but 401.
async fn a_malformed_slug_is_400_as_on_the_edge(app: TestApp) {
    app.signup("acme").await;
    for path in [
        "/api/v1/tenants/Not_A_Slug",
        "/api/v1/tenants/Not_A_Slug/keys",
        "/api/v1/tenants/Not_A_Slug/channels/orders",
        "/api/v1/tenants/Not_A_Slug/usage",
    ] {
        let r = call(&app, &app.client, "GET", path, None).await;
        problem(r, 400, "invalid_name").await;
    }
    let r = app
        .client
        .get(app.url("/v1/Not_A_Slug/channels/orders/history"))
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_name").await;
    let stranger = reqwest::Client::new();
    let r = call(&app, &stranger, "GET", "/api/v1/tenants/Not_A_Slug", None).await;
    problem(r, 401, "unauthorized").await;
}
