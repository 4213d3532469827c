use std::time::Duration;

use herald_core::Scope;
use herald_store::testing::TestDatabase;
use herald_store::{Backend, Store};

use crate::{email, on_both_backends, password, raw_pool, slug};

on_both_backends!(no_column_holds_a_password_a_key_or_a_session_token);

/// Reads every column of every table as text and looks for the secrets that went in.
async fn no_column_holds_a_password_a_key_or_a_session_token(db: TestDatabase) {
    let store = db.store().await;
    let pw = "Tr0ub4dor&3-never-stored";
    let (account, tenant) = store
        .signup(
            &email("ann@example.com"),
            &password(pw),
            &slug("acme"),
            "Acme",
        )
        .await
        .unwrap();
    let session = store
        .create_session(account.id, Duration::from_secs(60))
        .await
        .unwrap();
    let (_, key) = store
        .create_api_key(tenant.id, "k", &[Scope::Publish], None)
        .await
        .unwrap();
    let key_body = &key.expose()[11..]; // the part after the public id
    let secrets = [pw, key.expose(), key_body, session.expose()];

    let raw = raw_pool(&db).await;
    let mut cells = 0;
    for (table, column) in columns(&store, &raw).await {
        // As bytes, whatever the column's type: text, integers, blobs.
        let sql = match store.backend() {
            Backend::Postgres => {
                format!(r#"select convert_to(cast("{column}" as text), 'UTF8') from "{table}""#)
            }
            Backend::Sqlite => format!(r#"select cast("{column}" as blob) from "{table}""#),
        };
        let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(&sql).fetch_all(&raw).await.unwrap();
        for value in values.into_iter().flatten() {
            cells += 1;
            for secret in secrets {
                assert!(!contains(&value, secret), "{table}.{column} holds a secret");
            }
        }
    }
    assert!(cells > 10, "only {cells} cells read");

    if store.backend() == Backend::Sqlite {
        // And in the raw file and its write-ahead log, wherever SQLite put it.
        let path = db.url().trim_start_matches("sqlite://").to_owned();
        for file in [path.clone(), format!("{path}-wal")] {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            for secret in secrets {
                assert!(!contains(&bytes, secret), "{file} holds a secret");
            }
        }
    }
}

/// Every (table, column) of the database, migrations bookkeeping included.
async fn columns(store: &Store, raw: &sqlx::AnyPool) -> Vec<(String, String)> {
    let sql = match store.backend() {
        Backend::Postgres => {
            r#"
            select cast(table_name as text), cast(column_name as text)
            from information_schema.columns
            where table_schema = current_schema()
            "#
        }
        Backend::Sqlite => {
            r#"
            select m.name, p.name
            from sqlite_master m
            join pragma_table_info(m.name) p
            where m.type = 'table'
            "#
        }
    };
    let columns: Vec<(String, String)> = sqlx::query_as(sql).fetch_all(raw).await.unwrap();
    for table in [
        "accounts",
        "sessions",
        "api_keys",
        "settings",
        "tenants",
        "memberships",
    ] {
        assert!(
            columns.iter().any(|(t, _)| t == table),
            "{table} not listed"
        );
    }
    columns
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
