//! Holes a security review found in the admin API (issue 11), each closed with its test.

use herald_tests::{both_backends, Backend, TestApp};
use reqwest::Client;
use serde_json::{json, Value};

use crate::{account, call, call_ok, problem, with_key};

both_backends!(
    only_an_owner_deletes_a_tenant_or_creates_admin_keys_whoever_calls,
    admin_keys_with_channel_patterns_are_refused,
    viewers_see_signing_keys_without_their_secrets,
    concurrent_wrong_logins_get_at_most_ten_password_checks,
    forwarded_headers_are_ignored_from_untrusted_peers,
    a_database_dump_forges_no_token_when_the_secrets_key_is_set,
    plaintext_signing_secrets_are_encrypted_at_the_next_start,
    an_emergency_rotation_with_grace_0_stops_the_old_key_at_once,
    two_owners_removing_each_other_at_once_leave_one,
    every_response_carries_the_security_headers,
);

/// 32 random bytes, as `--secrets-key` takes them.
fn secrets_key() -> herald::config::SecretsKey {
    herald::config::SecretsKey(rand::random())
}

/// Every text cell of every table: `(table.column, value)`.
async fn dump(app: &TestApp) -> Vec<(String, String)> {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let mut con = <sqlx::AnyConnection as sqlx::Connection>::connect(app.db.url())
        .await
        .unwrap();
    let columns: Vec<(String, String)> = match app.backend {
        Backend::Cluster => sqlx::query(
            "select table_name::text, column_name::text from information_schema.columns
             where table_schema = 'public' and data_type in ('text', 'character varying')",
        )
        .fetch_all(&mut con)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect(),
        Backend::Embedded => {
            let mut cols = Vec::new();
            let tables: Vec<String> =
                sqlx::query("select name from sqlite_master where type = 'table'")
                    .fetch_all(&mut con)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
            for t in tables {
                let sql = format!("select name, type from pragma_table_info('{t}')");
                for r in sqlx::query(&sql).fetch_all(&mut con).await.unwrap() {
                    let ty: String = r.get(1);
                    if ty.to_lowercase().contains("text") || ty.is_empty() {
                        cols.push((t.clone(), r.get(0)));
                    }
                }
            }
            cols
        }
    };
    let mut out = Vec::new();
    for (table, column) in columns {
        let sql = format!("select cast(\"{column}\" as text) from \"{table}\"");
        for row in sqlx::query(&sql).fetch_all(&mut con).await.unwrap() {
            if let Some(v) = row.get::<Option<String>, _>(0) {
                out.push((format!("{table}.{column}"), v));
            }
        }
    }
    out
}

/// The status of opening private channel `vip` of `acme` with a token signed by `(kid, secret)`.
async fn open_vip(app: &TestApp, kid: &str, secret: &str) -> u16 {
    let claims =
        json!({"tenant": "acme", "channels": ["vip"], "exp": herald_tests::now_secs() + 600});
    let token = herald_tests::sign_token(Some(kid), secret, &claims);
    Client::new()
        .get(app.url(&format!("/v1/acme/channels/vip/events?token={token}")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn private_vip(app: &TestApp) {
    let body = json!({"name": "vip", "visibility": "private"});
    call_ok(
        app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/channels",
        Some(body),
        201,
    )
    .await;
}

/// The tenant's live signing keys as the owner sees them: `(kid, secret)`.
async fn signing_secrets(app: &TestApp) -> Vec<(String, String)> {
    let keys = call_ok(
        app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/signing-keys",
        None,
        200,
    )
    .await;
    keys.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["secret"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn a_database_dump_forges_no_token_when_the_secrets_key_is_set(mut app: TestApp) {
    app.config.secrets_key = Some(secrets_key());
    app.restart().await;
    app.signup("acme").await;
    call_ok(
        &app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/signing-keys",
        None,
        201,
    )
    .await;
    private_vip(&app).await;
    let secrets = signing_secrets(&app).await;
    assert_eq!(secrets.len(), 2, "the current key and the rotated-out one");
    assert_eq!(
        open_vip(&app, &secrets[0].0, &secrets[0].1).await,
        200,
        "the real secret works"
    );
    let cells = dump(&app).await;
    assert!(
        cells.iter().any(|(c, _)| c == "signing_keys.secret"),
        "the dump read the secrets' column"
    );
    for (column, value) in &cells {
        for (_, secret) in &secrets {
            assert!(
                !value.contains(&secret[3..]),
                "{column} holds a signing secret"
            );
        }
    }
    // Whatever the dump holds, signed as either kid, opens nothing.
    for (kid, _) in &secrets {
        for (column, value) in &cells {
            assert_eq!(
                open_vip(&app, kid, value).await,
                401,
                "{column} forged a token"
            );
        }
    }
}

async fn plaintext_signing_secrets_are_encrypted_at_the_next_start(mut app: TestApp) {
    app.signup("acme").await;
    private_vip(&app).await;
    let before = signing_secrets(&app).await;
    let in_plain = |cells: &[(String, String)]| {
        cells
            .iter()
            .any(|(c, v)| c == "signing_keys.secret" && *v == before[0].1)
    };
    assert!(
        in_plain(&dump(&app).await),
        "without a key the secret is stored as it is"
    );
    app.config.secrets_key = Some(secrets_key());
    app.restart().await;
    let cells = dump(&app).await;
    assert!(!in_plain(&cells), "sealed at start-up");
    assert!(cells
        .iter()
        .filter(|(c, _)| c == "signing_keys.secret")
        .all(|(_, v)| v.starts_with("enc:v1:")));
    // The secret itself did not change: tokens signed before still verify.
    assert_eq!(signing_secrets(&app).await, before);
    assert_eq!(open_vip(&app, &before[0].0, &before[0].1).await, 200);
    // A process with another key cannot open them, and refuses instead of serving garbage.
    app.config.secrets_key = Some(secrets_key());
    app.restart().await;
    let r = call(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/signing-keys",
        None,
    )
    .await;
    assert_eq!(
        r.status(),
        500,
        "a misconfiguration, logged; the body says nothing of it"
    );
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("enc:v1:") && !text.contains(&before[0].1),
        "{text}"
    );
}

async fn an_emergency_rotation_with_grace_0_stops_the_old_key_at_once(app: TestApp) {
    app.signup("acme").await;
    private_vip(&app).await;
    let old = signing_secrets(&app).await.remove(0);
    assert_eq!(open_vip(&app, &old.0, &old.1).await, 200);
    let path = "/api/v1/tenants/acme/signing-keys";
    let r = call(
        &app,
        &app.client,
        "POST",
        &format!("{path}?grace_seconds=86401"),
        None,
    )
    .await;
    problem(r, 400, "invalid_body").await;
    let new = call_ok(
        &app,
        &app.client,
        "POST",
        &format!("{path}?grace_seconds=0"),
        None,
        201,
    )
    .await;
    let keys = signing_secrets(&app).await;
    assert_eq!(keys.len(), 1, "the old key is gone: {keys:?}");
    assert_eq!(keys[0].0, new["kid"]);
    // Edges cache signing keys for a second.
    assert!(
        herald_tests::eventually(3, || async { open_vip(&app, &old.0, &old.1).await == 401 }).await,
        "the leaked key still verifies"
    );
    assert_eq!(open_vip(&app, &keys[0].0, &keys[0].1).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_from_one_ip_are_limited_per_hour() {
    let app = TestApp::spawn_with(Backend::Embedded, |c| c.signup_per_ip_per_hour = 3).await;
    let signup = |i: u32| {
        let app = &app;
        async move {
            Client::new()
                .post(app.url("/api/v1/signup"))
                .json(&json!({"email": format!("u{i}@example.com"), "password": "long enough password",
                    "tenant": {"slug": format!("tenant-{i}"), "name": "t"}}))
                .send()
                .await
                .unwrap()
        }
    };
    for i in 0..3 {
        assert_eq!(signup(i).await.status(), 201);
    }
    let r = signup(3).await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    problem(r, 429, "rate_limited").await;
    let store = app.store().await;
    assert!(
        store
            .tenant_by_slug(&herald_tests::herald_core_names::slug("tenant-3"))
            .await
            .unwrap()
            .is_none(),
        "the refused sign-up created nothing"
    );
    // 0 turns the limit off.
    let app = TestApp::spawn_with(Backend::Embedded, |c| c.signup_per_ip_per_hour = 0).await;
    for i in 0..4 {
        let r = Client::new()
            .post(app.url("/api/v1/signup"))
            .json(
                &json!({"email": format!("u{i}@example.com"), "password": "long enough password",
                "tenant": {"slug": format!("tenant-{i}"), "name": "t"}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_beyond_the_bound_get_503_at_once() {
    let app = TestApp::spawn_with(Backend::Embedded, |c| {
        c.password_hash_concurrency = Some(1);
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    // Forty clients and emails, so that no throttle refuses: one check runs, fifteen wait, and
    // the rest are 503 at once.
    let statuses = burst_of_logins(
        &app,
        40,
        |i| format!("nobody{i}@example.com"),
        |i| Some(format!("203.0.113.{i}")),
    )
    .await;
    let unavailable = statuses.iter().filter(|(s, _)| *s == 503).count();
    assert!(unavailable >= 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|(s, retry)| *s == 401 || (*s == 503 && retry.as_deref() == Some("1"))),
        "{statuses:?}"
    );
}

/// Sends `n` wrong logins at once; their statuses and `Retry-After`s.
async fn burst_of_logins(
    app: &TestApp,
    n: usize,
    email: impl Fn(usize) -> String,
    forwarded_for: impl Fn(usize) -> Option<String>,
) -> Vec<(u16, Option<String>)> {
    let client = Client::new();
    let requests = (0..n).map(|i| {
        let mut req = client
            .post(app.url("/api/v1/login"))
            .json(&json!({"email": email(i), "password": "not the password"}));
        if let Some(ip) = forwarded_for(i) {
            req = req.header("x-forwarded-for", ip);
        }
        async move {
            let r = req.send().await.unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), retry)
        }
    });
    futures_util::future::join_all(requests).await
}

/// The throttle counts an attempt before its password is checked: a burst cannot race past it.
async fn concurrent_wrong_logins_get_at_most_ten_password_checks(app: TestApp) {
    app.signup("acme").await;
    let statuses = burst_of_logins(&app, 30, |_| "owner@acme.example".into(), |_| None).await;
    let checked = statuses.iter().filter(|(s, _)| *s == 401).count();
    assert!(checked <= 10, "{checked} password checks: {statuses:?}");
    assert!(
        statuses.iter().all(|(s, _)| matches!(s, 401 | 429 | 503)),
        "{statuses:?}"
    );
    // The window is full: the right password is refused too, until it frees.
    let r = Client::new()
        .post(app.url("/api/v1/login"))
        .json(&json!({"email": "owner@acme.example", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    if checked == 10 {
        problem(r, 429, "rate_limited").await;
    }
}

/// Without `--trusted-proxies`, a client cannot pick the address it is throttled and audited as.
async fn forwarded_headers_are_ignored_from_untrusted_peers(app: TestApp) {
    app.signup("acme").await;
    let forged = |i: usize| Some(format!("203.0.113.{i}"));
    for (status, _) in burst_of_logins(&app, 10, |i| format!("x{i}@example.com"), forged).await {
        assert_eq!(status, 401);
    }
    let statuses = burst_of_logins(&app, 1, |_| "fresh@example.com".into(), |_| forged(99)).await;
    assert_eq!(statuses[0].0, 429, "the peer's own address is throttled");
    let r = app
        .client
        .patch(app.url("/api/v1/tenants/acme"))
        .header("origin", app.origin())
        .header("x-forwarded-for", "198.51.100.7")
        .header("forwarded", "for=198.51.100.8")
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let audit = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/audit",
        None,
        200,
    )
    .await;
    let text = audit.to_string();
    assert!(
        text.contains("127.0.0.1") && !text.contains("198.51.100"),
        "{text}"
    );
}

/// Behind a trusted proxy, each client has its own limits and the audit log names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_is_limited_and_audited_as_itself() {
    let app = TestApp::spawn_with(Backend::Embedded, |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    app.signup("acme").await;
    let one = |_| Some("6.6.6.6, 203.0.113.1".to_owned());
    for (status, _) in burst_of_logins(&app, 10, |i| format!("x{i}@example.com"), one).await {
        assert_eq!(status, 401);
    }
    let again = burst_of_logins(&app, 1, |_| "y@example.com".into(), one).await;
    assert_eq!(again[0].0, 429, "203.0.113.1 is throttled");
    let other = burst_of_logins(
        &app,
        1,
        |_| "y@example.com".into(),
        |_| Some("203.0.113.1, 203.0.113.2".to_owned()),
    )
    .await;
    assert_eq!(
        other[0].0, 401,
        "203.0.113.2 is not, whatever it claims to its left"
    );
    let r = app
        .client
        .patch(app.url("/api/v1/tenants/acme"))
        .header("origin", app.origin())
        .header("forwarded", "for=\"[2001:db8::7]:443\"")
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let audit = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/audit",
        None,
        200,
    )
    .await;
    assert_eq!(audit["entries"][0]["ip"], "2001:db8::7", "{audit}");
}

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

async fn two_owners_removing_each_other_at_once_leave_one(app: TestApp) {
    let store = app.store().await;
    for round in 0..6 {
        let slug = format!("race{round}");
        let ann = account(&app, &format!("ann{round}@example.com"), &slug).await;
        let bob = account(
            &app,
            &format!("bob{round}@example.com"),
            &format!("{slug}-b"),
        )
        .await;
        let tenant = store
            .tenant_by_slug(&herald_tests::herald_core_names::slug(&slug))
            .await
            .unwrap()
            .unwrap();
        let email = herald_core::Email::parse(&format!("bob{round}@example.com")).unwrap();
        store
            .add_member(tenant.id, &email, herald_store::Role::Owner)
            .await
            .unwrap();
        let members = call_ok(
            &app,
            &ann,
            "GET",
            &format!("/api/v1/tenants/{slug}/members"),
            None,
            200,
        )
        .await;
        let id = |email: &str| {
            members
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["email"] == email)
                .unwrap()["account_id"]
                .clone()
        };
        let (ann_id, bob_id) = (
            id(&format!("ann{round}@example.com")),
            id(&format!("bob{round}@example.com")),
        );
        let remove_bob = format!("/api/v1/tenants/{slug}/members/{bob_id}");
        let remove_ann = format!("/api/v1/tenants/{slug}/members/{ann_id}");
        let (a, b) = tokio::join!(
            call(&app, &ann, "DELETE", &remove_bob, None),
            call(&app, &bob, "DELETE", &remove_ann, None),
        );
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        assert!(
            statuses.contains(&204) && statuses.iter().all(|s| [204, 404, 409].contains(s)),
            "round {round}: {statuses:?}"
        );
        let owners = store
            .members(tenant.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.role == herald_store::Role::Owner)
            .count();
        assert_eq!(owners, 1, "round {round}: {statuses:?}");
    }
}

async fn every_response_carries_the_security_headers(app: TestApp) {
    use herald_http::security::{API_CSP, DOCS_CSP, WEB_CSP};
    let (t, key) = app.tenant("acme").await;
    let anonymous = Client::new();
    let stream = anonymous
        .get(app.url(&format!("/v1/{t}/channels/c/events")))
        .send()
        .await
        .unwrap();
    let mut responses = vec![("stream".to_owned(), stream, API_CSP)];
    for (path, csp) in [
        ("/api/v1/me".to_owned(), API_CSP),
        ("/api/v1/tenants/nope".to_owned(), API_CSP),
        (format!("/v1/{t}/channels/c/history"), API_CSP),
        ("/no/such/thing".to_owned(), API_CSP),
        ("/healthz".to_owned(), API_CSP),
        ("/metrics".to_owned(), API_CSP),
        ("/api/openapi.json".to_owned(), API_CSP),
        ("/api/docs/".to_owned(), DOCS_CSP),
        ("/api/docs/swagger-ui.css".to_owned(), DOCS_CSP),
        ("/".to_owned(), WEB_CSP),
        ("/ui/app.js".to_owned(), WEB_CSP),
    ] {
        let r = anonymous.get(app.url(&path)).send().await.unwrap();
        responses.push((path, r, csp));
    }
    let r = app
        .client
        .get(app.url(&format!("/v1/{t}/channels/c/history")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    responses.push(("history".to_owned(), r, API_CSP));
    for (what, r, csp) in responses {
        let h = r.headers();
        assert_eq!(h["content-security-policy"], csp, "{what}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["referrer-policy"], "same-origin", "{what}");
    }
}
