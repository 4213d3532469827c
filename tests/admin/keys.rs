//! API keys: shown once, stored only as hashes, scoped to their tenant.

use herald_tests::{both_backends, Backend, TestApp};
use serde_json::{json, Value};
use sqlx::Row;

both_backends!(
    keys_are_listed_without_their_secret_and_revoked,
    another_tenants_keys_are_404,
    an_admin_key_manages_its_own_tenant_only,
    the_database_holds_no_secret_in_plain_text,
);

async fn keys_are_listed_without_their_secret_and_revoked(app: TestApp) {
    app.signup("acme").await;
    let secret = app.create_key("acme", &["publish"]).await;
    assert!(secret.starts_with("hk_") && secret.len() == 43);
    let list: Value = app
        .client
        .get(app.url("/api/v1/tenants/acme/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &list[0];
    assert_eq!(key["id"], &secret[3..11]);
    assert_eq!(key["scopes"], json!(["publish"]));
    assert!(key.get("secret").is_none());
    assert!(!list.to_string().contains(&secret[11..]));
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/tenants/acme/keys/{}", &secret[3..11])))
        .header("origin", app.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let list: Value = app
        .client
        .get(app.url("/api/v1/tenants/acme/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list[0]["revoked_at"].is_string());
}

async fn another_tenants_keys_are_404(app: TestApp) {
    app.signup("acme").await;
    let theirs = app.create_key("acme", &["publish"]).await;
    let other = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = other
        .post(app.url("/api/v1/signup"))
        .json(&json!({"email": "b@b.example", "password": "another long password", "tenant": {"slug": "beta", "name": "B"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for (method, path) in [
        ("GET", "/api/v1/tenants/acme".to_owned()),
        ("GET", "/api/v1/tenants/acme/keys".to_owned()),
        ("POST", "/api/v1/tenants/acme/keys".to_owned()),
        (
            "DELETE",
            format!("/api/v1/tenants/acme/keys/{}", &theirs[3..11]),
        ),
        ("GET", "/api/v1/tenants/nobody/keys".to_owned()),
    ] {
        let r = other
            .request(method.parse().unwrap(), app.url(&path))
            .header("origin", app.origin())
            .json(&json!({"name": "k", "scopes": ["publish"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
    }
    // Nothing changed: acme's key still publishes.
    app.publish_ok(&theirs, "acme", "c", json!({"data": 1}))
        .await;
}

async fn an_admin_key_manages_its_own_tenant_only(app: TestApp) {
    app.signup("acme").await;
    let admin = app.create_key("acme", &["admin"]).await;
    let plain = reqwest::Client::new();
    let r = plain
        .post(app.url("/api/v1/tenants/acme/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "from-script", "scopes": ["publish"], "channels": ["orders", "team:7:*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "an admin key needs no cookie and no Origin"
    );
    let created: Value = r.json().await.unwrap();
    let limited = created["secret"].as_str().unwrap();
    assert_eq!(
        app.publish(limited, "acme", "team:7:chat", json!({"data": 1}))
            .await
            .status(),
        201
    );
    assert_eq!(
        app.publish(limited, "acme", "orders", json!({"data": 1}))
            .await
            .status(),
        201
    );
    assert_eq!(
        app.publish(limited, "acme", "payments", json!({"data": 1}))
            .await
            .status(),
        403
    );
    let publish_only = app.create_key("acme", &["publish"]).await;
    let r = plain
        .get(app.url("/api/v1/tenants/acme/keys"))
        .bearer_auth(&publish_only)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    app.client
        .post(app.url("/api/v1/tenants"))
        .header("origin", app.origin())
        .json(&json!({"slug": "mine-too", "name": "x"}))
        .send()
        .await
        .unwrap();
    let r = plain
        .get(app.url("/api/v1/tenants/mine-too/keys"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "an admin key reaches only its own tenant");
}

/// Reads every text column of every table and looks for the password and the key secrets.
async fn the_database_holds_no_secret_in_plain_text(app: TestApp) {
    let password = "correct horse battery staple";
    app.signup("acme").await;
    let secrets = [
        app.create_key("acme", &["publish"]).await,
        app.create_key("acme", &["admin"]).await,
    ];
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
            let tables: Vec<String> =
                sqlx::query("select name from sqlite_master where type = 'table'")
                    .fetch_all(&mut con)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
            let mut cols = Vec::new();
            for t in tables {
                for r in sqlx::query(&format!("select name, type from pragma_table_info('{t}')"))
                    .fetch_all(&mut con)
                    .await
                    .unwrap()
                {
                    let ty: String = r.get(1);
                    if ty.to_lowercase().contains("text") || ty.is_empty() {
                        cols.push((t.clone(), r.get(0)));
                    }
                }
            }
            cols
        }
    };
    assert!(columns.iter().any(|(t, _)| t == "api_keys"), "{columns:?}");
    let mut cells = 0;
    for (table, column) in &columns {
        let rows = sqlx::query(&format!(
            "select cast(\"{column}\" as text) from \"{table}\""
        ))
        .fetch_all(&mut con)
        .await
        .unwrap();
        for row in rows {
            let value: Option<String> = row.get(0);
            let Some(value) = value else { continue };
            cells += 1;
            assert!(
                !value.contains(password),
                "{table}.{column} holds the password"
            );
            for s in &secrets {
                assert!(
                    !value.contains(&s[11..]),
                    "{table}.{column} holds a key secret"
                );
            }
        }
    }
    assert!(cells > 5, "the scan read the data ({cells} cells)");
}
