//! Cross-tenant access, as a matrix: for every tenant-scoped endpoint, an account or an admin key
//! of tenant B addressing tenant A gets 404, and nothing of A changes.

use herald_tests::{both_backends, TestApp};
use serde_json::{json, Value};

use crate::{account, call, call_ok, with_key};

both_backends!(
    another_tenants_endpoints_are_404_and_change_nothing,
    every_tenant_scoped_operation_refuses_every_credential_it_should,
);

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

/// Who calls, in the generated matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// A member (owner) of another tenant, by session cookie.
    ForeignSession,
    /// An `admin`-scope API key of another tenant.
    ForeignAdminKey,
    /// A viewer of this tenant, by session cookie.
    Viewer,
    /// An API key of this tenant with only the `publish` scope.
    PublishKey,
    /// An API key of this tenant with only the `subscribe` scope.
    SubscribeKey,
    /// A subscriber token of this tenant granting channel `orders`.
    Token,
}

const EVERYONE: [Who; 6] = [
    Who::ForeignSession,
    Who::ForeignAdminKey,
    Who::Viewer,
    Who::PublishKey,
    Who::SubscribeKey,
    Who::Token,
];

/// One operation of the OpenAPI document, filled in to be called on tenant `acme`.
#[derive(Debug)]
struct Operation {
    method: String,
    template: String,
    path: String,
    body: Option<Value>,
}

/// The documented refusal of `who` calling `op`, or `None` where the credential is allowed
/// (those cells are other tests' business). Admin operations follow one rule each; every
/// edge operation is listed, and one the matrix does not know fails the test.
fn refusal(op: &Operation, who: Who) -> Option<(u16, &'static str)> {
    const NOT_FOUND: (u16, &str) = (404, "not_found");
    const UNAUTHORIZED: (u16, &str) = (401, "unauthorized");
    const FORBIDDEN: (u16, &str) = (403, "forbidden");
    if op.template.starts_with("/api/v1/tenants/{tenant}") {
        // The inspector's token only reads, and any member may have one (its documentation).
        let inspector = op.template.ends_with("/channels/{channel}/token");
        let write = op.method != "GET" && !inspector;
        return match who {
            // Another tenant's member or key: the tenant does not exist for them.
            Who::ForeignSession | Who::ForeignAdminKey => Some(NOT_FOUND),
            Who::Viewer if write => Some(FORBIDDEN),
            Who::Viewer => None,
            // Only `admin`-scope keys may call the admin API.
            Who::PublishKey | Who::SubscribeKey => Some(FORBIDDEN),
            // A token is no API key.
            Who::Token => Some(UNAUTHORIZED),
        };
    }
    // The edge ignores cookies: a session is no credential there (401 where one is needed).
    match (op.method.as_str(), op.template.as_str()) {
        ("POST", "/v1/{tenant}/channels/{channel}/events" | "/v1/{tenant}/events") => match who {
            Who::PublishKey => None,
            Who::SubscribeKey => Some(FORBIDDEN),
            _ => Some(UNAUTHORIZED),
        },
        ("POST", "/v1/{tenant}/tokens") => match who {
            Who::SubscribeKey => None,
            Who::PublishKey => Some(FORBIDDEN),
            _ => Some(UNAUTHORIZED),
        },
        // `orders` is private.
        (
            "GET",
            "/v1/{tenant}/channels/{channel}/events"
            | "/v1/{tenant}/events"
            | "/v1/{tenant}/channels/{channel}/history",
        ) => match who {
            Who::SubscribeKey | Who::Token => None,
            Who::PublishKey => Some(FORBIDDEN),
            _ => Some(UNAUTHORIZED),
        },
        ("GET", "/v1/{tenant}/channels/{channel}") => match who {
            Who::PublishKey | Who::SubscribeKey => None,
            _ => Some(UNAUTHORIZED),
        },
        _ => panic!(
            "{} {} is a tenant-scoped operation the isolation matrix does not know: \
             say in `refusal` who must be refused",
            op.method, op.template
        ),
    }
}

/// Every tenant-scoped operation of `api-spec/openapi.json`, on tenant `acme`: path parameters
/// from `ids`, bodies from the document's examples.
fn operations(ids: &[(&str, String)]) -> Vec<Operation> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../api-spec/openapi.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        if !template.contains("{tenant}") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let mut path = template.clone();
            let mut query = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                match p["in"].as_str() {
                    Some("path") => {
                        let value = ids
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_else(|| {
                                panic!("the isolation matrix cannot fill {{{name}}} of {template}")
                            });
                        path = path.replace(&format!("{{{name}}}"), &value);
                    }
                    Some("query") if p["required"] == true => {
                        let value = ids
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_else(|| {
                                panic!("the isolation matrix cannot fill ?{name} of {template}")
                            });
                        query.push(format!("{name}={value}"));
                    }
                    _ => {}
                }
            }
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let body = op["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|schema| example(&doc, &Value::Object(schema.clone())));
            out.push(Operation {
                method: method.to_uppercase(),
                template: template.clone(),
                path,
                body,
            });
        }
    }
    out
}

/// A value for `schema`: its example, or one made from its properties.
fn example(doc: &Value, schema: &Value) -> Value {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return example(doc, &doc["components"]["schemas"][name]);
    }
    if !schema["example"].is_null() {
        return schema["example"].clone();
    }
    if let Some(first) = schema["examples"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match schema["type"].as_str() {
        Some("object") | None => {
            let mut out = json!({});
            for (k, v) in schema["properties"].as_object().into_iter().flatten() {
                out[k] = example(doc, v);
            }
            out
        }
        Some("array") => json!([example(doc, &schema["items"])]),
        Some("integer" | "number") => json!(1),
        Some("boolean") => json!(true),
        _ => json!("x"),
    }
}

/// Every row of every table but sessions (which slide as they are used) and API keys' last
/// use, each as text, sorted: the whole control plane, whichever backend holds it.
async fn dump(url: &str) -> Vec<String> {
    use sqlx::{Column, Connection, Row};
    sqlx::any::install_default_drivers();
    let mut con = sqlx::AnyConnection::connect(url).await.unwrap();
    let tables_sql = if url.starts_with("sqlite") {
        "select name from sqlite_master where type = 'table' order by name"
    } else {
        "select table_name::text from information_schema.tables \
         where table_schema = current_schema() order by 1"
    };
    let tables: Vec<String> = sqlx::query_scalar(tables_sql)
        .fetch_all(&mut con)
        .await
        .unwrap();
    let mut out = Vec::new();
    for table in tables {
        if table == "sessions" || table.starts_with("_sqlx") || table.starts_with("sqlite_") {
            continue;
        }
        let rows = sqlx::query(&format!("select * from {table}"))
            .fetch_all(&mut con)
            .await
            .unwrap();
        for row in rows {
            let mut line = format!("{table}:");
            for (i, col) in row.columns().iter().enumerate() {
                if col.name() == "last_used_at" {
                    continue;
                }
                let v = row
                    .try_get::<Option<String>, _>(i)
                    .map(|v| format!("{v:?}"))
                    .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                    .or_else(|_| row.try_get::<Option<f64>, _>(i).map(|v| format!("{v:?}")))
                    .or_else(|_| row.try_get::<Option<bool>, _>(i).map(|v| format!("{v:?}")))
                    .or_else(|_| {
                        row.try_get::<Option<Vec<u8>>, _>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .unwrap_or_else(|e| panic!("{table}.{}: {e}", col.name()));
                line.push_str(&format!(" {}={v}", col.name()));
            }
            out.push(line);
        }
    }
    out.sort();
    out
}

async fn every_tenant_scoped_operation_refuses_every_credential_it_should(app: TestApp) {
    // Eve owns another tenant, with an admin key; Vic is a viewer of acme.
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
    let vic = account(&app, "vic@example.com", "vics").await;
    app.signup("acme").await;
    call_ok(
        &app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/members",
        Some(json!({"email": "vic@example.com", "role": "viewer"})),
        201,
    )
    .await;
    let publish_key = app.create_key("acme", &["publish"]).await;
    let subscribe_key = app.create_key("acme", &["subscribe"]).await;
    call_ok(
        &app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/channels",
        Some(json!({"name": "orders", "visibility": "private"})),
        201,
    )
    .await;
    let r = app
        .client
        .post(app.url("/v1/acme/tokens"))
        .bearer_auth(&subscribe_key)
        .json(&json!({"channels": ["orders"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let members = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/members",
        None,
        200,
    )
    .await;
    let owner = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "owner")
        .unwrap()["account_id"]
        .to_string();
    let ids = [
        ("tenant", "acme".to_owned()),
        ("channel", "orders".to_owned()),
        ("key_id", publish_key[3..11].to_owned()),
        ("account_id", owner),
    ];
    let ops = operations(&ids);
    assert!(
        ops.len() >= 25,
        "the document lists every tenant-scoped operation: {ops:?}"
    );

    let before = dump(app.db.url()).await;
    for table in [
        "tenants:",
        "api_keys:",
        "channels:",
        "signing_keys:",
        "memberships:",
    ] {
        assert!(
            before.iter().any(|row| row.starts_with(table)),
            "the dump reads {table} {before:?}"
        );
    }
    let mut cells = 0;
    for op in &ops {
        for who in EVERYONE {
            let Some((status, code)) = refusal(op, who) else {
                continue;
            };
            let method: reqwest::Method = op.method.parse().unwrap();
            let mut req = match who {
                Who::ForeignSession => eve.request(method, app.url(&op.path)),
                Who::Viewer => vic.request(method, app.url(&op.path)),
                _ => reqwest::Client::new().request(method, app.url(&op.path)),
            }
            .header("origin", app.origin());
            req = match who {
                Who::ForeignSession | Who::Viewer => req,
                Who::ForeignAdminKey => req.bearer_auth(&eve_key),
                Who::PublishKey => req.bearer_auth(&publish_key),
                Who::SubscribeKey => req.bearer_auth(&subscribe_key),
                Who::Token => req.bearer_auth(&token),
            };
            if let Some(body) = &op.body {
                req = req.json(body);
            }
            let r = req.send().await.unwrap();
            let got = r.status().as_u16();
            let kind = r.headers().get("content-type").cloned();
            let text = r.text().await.unwrap();
            assert_eq!(
                (got, kind.as_ref().and_then(|v| v.to_str().ok())),
                (status, Some("application/problem+json")),
                "{who:?}: {} {}: {text}",
                op.method,
                op.path
            );
            let problem: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                problem["code"], code,
                "{who:?}: {} {}: {text}",
                op.method, op.path
            );
            cells += 1;
        }
    }
    eprintln!(
        "[isolation matrix] {} operations x {} credentials: {cells} refusals checked",
        ops.len(),
        EVERYONE.len()
    );
    // Nothing any refused call did is in the database, or in the channel's history.
    assert_eq!(dump(app.db.url()).await, before, "the database changed");
    let history = app
        .client
        .get(app.url("/v1/acme/channels/orders/history"))
        .bearer_auth(&subscribe_key)
        .send()
        .await
        .unwrap();
    let history: Value = history.json().await.unwrap();
    assert_eq!(history["events"], json!([]), "nothing was published");
}
