//! Cross-tenant access, as a matrix: for every tenant-scoped endpoint, an account or an admin key
//! of tenant B addressing tenant A gets 404, and nothing of A changes.

use herald_tests::{both_backends, TestApp};
use serde_json::{json, Value};

use crate::{account, call, call_ok, with_key};

both_backends!(another_tenants_endpoints_are_404_and_change_nothing);

/// Every tenant-scoped operation of the admin API, on tenant `acme`.
fn matrix(key_id: &str, member_id: i64) -> Vec<(&'static str, String, Option<Value>)> {
    let t = "/api/v1/tenants/acme";
    vec![
        ("GET", t.to_owned(), None),
        ("PATCH", t.to_owned(), Some(json!({"name": "Taken over"}))),
        ("DELETE", t.to_owned(), None),
        ("GET", format!("{t}/members"), None),
        (
            "POST",
            format!("{t}/members"),
            Some(json!({"email": "eve@example.com", "role": "admin"})),
        ),
        ("DELETE", format!("{t}/members/{member_id}"), None),
        ("GET", format!("{t}/keys"), None),
        (
            "POST",
            format!("{t}/keys"),
            Some(json!({"name": "k", "scopes": ["publish"]})),
        ),
        ("DELETE", format!("{t}/keys/{key_id}"), None),
        ("GET", format!("{t}/channels"), None),
        (
            "POST",
            format!("{t}/channels"),
            Some(json!({"name": "stolen"})),
        ),
        ("GET", format!("{t}/channels/orders"), None),
        (
            "PATCH",
            format!("{t}/channels/orders"),
            Some(json!({"visibility": "public"})),
        ),
        ("DELETE", format!("{t}/channels/orders"), None),
        ("GET", format!("{t}/signing-keys"), None),
        ("POST", format!("{t}/signing-keys"), None),
        ("GET", format!("{t}/usage?days=7"), None),
        ("GET", format!("{t}/limits"), None),
        ("GET", format!("{t}/audit"), None),
    ]
}

/// What tenant `acme` looks like to its owner: everything the matrix could change.
async fn snapshot(app: &TestApp) -> Value {
    let owner = &app.client;
    let t = "/api/v1/tenants/acme";
    let mut out = json!({});
    for part in ["", "/members", "/keys", "/channels", "/signing-keys"] {
        out[part] = call_ok(app, owner, "GET", &format!("{t}{part}"), None, 200).await;
    }
    // The channel's last event and subscriber count are live state, not what we compare.
    out
}

async fn another_tenants_endpoints_are_404_and_change_nothing(app: TestApp) {
    app.signup("acme").await;
    let secret = app.create_key("acme", &["publish"]).await;
    let key_id = &secret[3..11];
    call_ok(
        &app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/channels",
        Some(json!({"name": "orders", "visibility": "private"})),
        201,
    )
    .await;
    let members = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/members",
        None,
        200,
    )
    .await;
    let owner_id = members[0]["account_id"].as_i64().unwrap();
    let before = snapshot(&app).await;
    let audit_before = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/audit",
        None,
        200,
    )
    .await;

    let eve = account(&app, "eve@example.com", "evil").await;
    let r = call(
        &app,
        &eve,
        "POST",
        "/api/v1/tenants/evil/keys",
        Some(json!({"name": "automation", "scopes": ["admin"]})),
    )
    .await;
    assert_eq!(r.status(), 201);
    let eve_key = r.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    for (method, path, body) in matrix(key_id, owner_id) {
        let by_account = call(&app, &eve, method, &path, body.clone()).await;
        assert_eq!(by_account.status(), 404, "account: {method} {path}");
        assert_eq!(
            by_account.headers()["content-type"],
            "application/problem+json"
        );
        let by_key = with_key(&app, &eve_key, method, &path, body.clone()).await;
        assert_eq!(by_key.status(), 404, "admin key: {method} {path}");
        // And a tenant that does not exist answers exactly the same.
        let unknown = path.replace("/acme", "/nobody");
        let r = call(&app, &eve, method, &unknown, body).await;
        assert_eq!(r.status(), 404, "unknown tenant: {method} {unknown}");
    }

    assert_eq!(snapshot(&app).await, before, "tenant acme changed");
    let audit_after = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/audit",
        None,
        200,
    )
    .await;
    assert_eq!(audit_after, audit_before);
}
