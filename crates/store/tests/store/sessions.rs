use std::time::Duration;

use herald_store::testing::TestDatabase;
use herald_store::{AccountId, SessionLifetime, StoreError};

use crate::{on_both_backends, raw_pool, signup};

const HOUR: Duration = Duration::from_secs(3600);

on_both_backends!(
    sessions_resolve_to_their_account_until_deleted,
    expired_sessions_are_gone,
    sessions_renew_once_half_their_ttl_has_passed,
    sessions_need_an_existing_account,
    sessions_end_at_their_absolute_lifetime_however_busy,
);

async fn sessions_resolve_to_their_account_until_deleted(db: TestDatabase) {
    let store = db.store().await;
    let (account, _) = signup(&store, "ann@example.com", "acme").await;

    let token = store.create_session(account.id, HOUR).await.unwrap();
    let other = store.create_session(account.id, HOUR).await.unwrap();
    assert_ne!(token, other);
    assert_eq!(
        store.session_account(token.expose(), HOUR).await.unwrap(),
        Some(account.clone())
    );
    assert_eq!(
        store.session_account("not-a-token", HOUR).await.unwrap(),
        None
    );

    store.delete_session(token.expose()).await.unwrap();
    assert_eq!(
        store.session_account(token.expose(), HOUR).await.unwrap(),
        None
    );
    store.delete_session(token.expose()).await.unwrap();
    // Logging out one session leaves the account's others alone.
    assert_eq!(
        store.session_account(other.expose(), HOUR).await.unwrap(),
        Some(account)
    );
}

async fn expired_sessions_are_gone(db: TestDatabase) {
    let store = db.store().await;
    let (account, _) = signup(&store, "ann@example.com", "acme").await;

    let instant = store
        .create_session(account.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        store.session_account(instant.expose(), HOUR).await.unwrap(),
        None
    );

    let brief = store
        .create_session(account.id, Duration::from_millis(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        store.session_account(brief.expose(), HOUR).await.unwrap(),
        None
    );
}

async fn sessions_renew_once_half_their_ttl_has_passed(db: TestDatabase) {
    let store = db.store().await;
    let raw = raw_pool(&db).await;
    let (account, _) = signup(&store, "ann@example.com", "acme").await;
    let expires_at = || async {
        sqlx::query_scalar::<_, i64>("select expires_at from sessions")
            .fetch_one(&raw)
            .await
            .unwrap()
    };

    // A session with more than half its TTL left is not rewritten...
    let token = store.create_session(account.id, HOUR).await.unwrap();
    let created = expires_at().await;
    store
        .session_account(token.expose(), HOUR)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expires_at().await, created);

    // ...one with less than half left slides to a full TTL from now.
    store
        .session_account(token.expose(), 4 * HOUR)
        .await
        .unwrap()
        .unwrap();
    let renewed = expires_at().await;
    let three_hours_ms = 3 * 3600 * 1000;
    assert!(
        renewed >= created + three_hours_ms - 1000,
        "{created} → {renewed}"
    );
}

async fn sessions_need_an_existing_account(db: TestDatabase) {
    let store = db.store().await;
    let result = store.create_session(AccountId(4242), HOUR).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
}

async fn sessions_end_at_their_absolute_lifetime_however_busy(db: TestDatabase) {
    let store = db.store().await;
    let raw = raw_pool(&db).await;
    let (account, _) = signup(&store, "ann@example.com", "acme").await;
    let lifetime = SessionLifetime {
        idle: 4 * HOUR,
        absolute: 12 * HOUR,
    };
    let token = store.create_session(account.id, lifetime).await.unwrap();
    // Logged in ten hours ago and used ever since, an hour of idle time left: it lives on, but
    // renewing it does not carry it past its twelfth hour.
    let hour_ms: i64 = 3600 * 1000;
    sqlx::query("update sessions set created_at = created_at - $1, expires_at = expires_at - $2")
        .bind(10 * hour_ms)
        .bind(3 * hour_ms)
        .execute(&raw)
        .await
        .unwrap();
    assert!(store
        .session_account(token.expose(), lifetime)
        .await
        .unwrap()
        .is_some());
    let (created, expires): (i64, i64) =
        sqlx::query_as("select created_at, expires_at from sessions")
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!(
        expires,
        created + 12 * 3600 * 1000,
        "renewed to the absolute end, not a full idle TTL"
    );
    // Past its twelfth hour it is gone, though its idle expiry is hours away.
    sqlx::query("update sessions set created_at = created_at - $1, expires_at = expires_at + $1")
        .bind(3 * hour_ms)
        .execute(&raw)
        .await
        .unwrap();
    assert_eq!(
        store
            .session_account(token.expose(), lifetime)
            .await
            .unwrap(),
        None
    );
    let left: i64 = sqlx::query_scalar("select count(*) from sessions")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(left, 0, "and deleted");
}
