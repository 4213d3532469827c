use herald_core::{ApiKeySecret, KeyId, Scope};
use herald_store::testing::TestDatabase;
use herald_store::{StoreError, TenantId};
use time::macros::datetime;

use crate::{on_both_backends, signup};

on_both_backends!(
    keys_are_created_listed_and_revoked,
    revoking_is_scoped_to_the_tenant,
    key_auth_verifies_the_whole_secret,
    touching_keys_keeps_the_latest_use,
    keys_need_an_existing_tenant,
);

async fn keys_are_created_listed_and_revoked(db: TestDatabase) {
    let store = db.store().await;
    let (_, acme) = signup(&store, "ann@example.com", "acme").await;

    let channels = vec!["orders".to_owned(), "team:7:*".to_owned()];
    let (publisher, secret) = store
        .create_api_key(
            acme.id,
            "backend",
            &[Scope::Subscribe, Scope::Publish, Scope::Publish],
            Some(&channels),
        )
        .await
        .unwrap();
    assert_eq!(publisher.id, secret.key_id());
    assert_eq!(publisher.name, "backend");
    assert_eq!(publisher.scopes, [Scope::Publish, Scope::Subscribe]);
    assert_eq!(publisher.channels.as_deref(), Some(channels.as_slice()));
    assert_eq!((publisher.last_used_at, publisher.revoked_at), (None, None));
    let (admin, _) = store
        .create_api_key(acme.id, "ci", &[Scope::Admin], None)
        .await
        .unwrap();
    assert_eq!(admin.channels, None);

    let mut keys = store.list_api_keys(acme.id).await.unwrap();
    assert!(
        keys.windows(2).all(|w| w[0].created_at <= w[1].created_at),
        "oldest first"
    );
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(keys, [publisher.clone(), admin.clone()]);

    store.revoke_api_key(acme.id, &publisher.id).await.unwrap();
    let first = revoked_at(&store, acme.id, &publisher.id).await;
    assert!(first.is_some());
    // Revoking again succeeds and keeps the first time.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store.revoke_api_key(acme.id, &publisher.id).await.unwrap();
    assert_eq!(revoked_at(&store, acme.id, &publisher.id).await, first);
    assert_eq!(revoked_at(&store, acme.id, &admin.id).await, None);
}

async fn revoked_at(
    store: &herald_store::Store,
    tenant: TenantId,
    key: &KeyId,
) -> Option<time::OffsetDateTime> {
    let keys = store.list_api_keys(tenant).await.unwrap();
    keys.into_iter().find(|k| &k.id == key).unwrap().revoked_at
}

async fn revoking_is_scoped_to_the_tenant(db: TestDatabase) {
    let store = db.store().await;
    let (_, acme) = signup(&store, "ann@example.com", "acme").await;
    let (_, bobs) = signup(&store, "bob@example.com", "bobs").await;
    let (key, _) = store
        .create_api_key(acme.id, "k", &[Scope::Publish], None)
        .await
        .unwrap();

    let foreign = store.revoke_api_key(bobs.id, &key.id).await;
    assert!(matches!(foreign, Err(StoreError::NotFound)), "{foreign:?}");
    let unknown = store
        .revoke_api_key(acme.id, &KeyId::parse("zzzzzzzz").unwrap())
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    assert_eq!(revoked_at(&store, acme.id, &key.id).await, None);
    assert!(store.list_api_keys(bobs.id).await.unwrap().is_empty());
}

async fn key_auth_verifies_the_whole_secret(db: TestDatabase) {
    let store = db.store().await;
    let (_, acme) = signup(&store, "ann@example.com", "acme").await;
    let channels = vec!["orders".to_owned()];
    let (key, secret) = store
        .create_api_key(acme.id, "k", &[Scope::Publish], Some(&channels))
        .await
        .unwrap();

    let auth = store.api_key_auth(&key.id).await.unwrap().unwrap();
    assert_eq!(auth.key_id, key.id);
    assert_eq!((auth.tenant_id, &auth.tenant_slug), (acme.id, &acme.slug));
    assert_eq!(auth.scopes, [Scope::Publish]);
    assert_eq!(auth.channels, Some(channels));
    assert!(!auth.is_revoked());
    assert!(auth.verify(&secret));
    assert!(!auth.verify(&ApiKeySecret::generate()));
    // Same public id, different secret part.
    let body = &secret.expose()[11..];
    let flipped: String = body.chars().rev().collect();
    let forged = ApiKeySecret::parse(&format!("hk_{}{}", key.id, flipped)).unwrap();
    assert_eq!(forged.key_id(), key.id);
    assert_ne!(forged, secret);
    assert!(!auth.verify(&forged));

    store.revoke_api_key(acme.id, &key.id).await.unwrap();
    let auth = store.api_key_auth(&key.id).await.unwrap().unwrap();
    assert!(auth.is_revoked());
    assert!(auth.verify(&secret));
    assert!(store
        .api_key_auth(&KeyId::parse("zzzzzzzz").unwrap())
        .await
        .unwrap()
        .is_none());
}

async fn touching_keys_keeps_the_latest_use(db: TestDatabase) {
    let store = db.store().await;
    let (_, acme) = signup(&store, "ann@example.com", "acme").await;
    let (a, _) = store
        .create_api_key(acme.id, "a", &[Scope::Publish], None)
        .await
        .unwrap();
    let (b, _) = store
        .create_api_key(acme.id, "b", &[Scope::Publish], None)
        .await
        .unwrap();
    let last_used = |name: &'static str| {
        let store = store.clone();
        async move {
            let keys = store.list_api_keys(acme.id).await.unwrap();
            keys.into_iter()
                .find(|k| k.name == name)
                .unwrap()
                .last_used_at
        }
    };
    let t1 = datetime!(2026-03-01 12:00:00.250 UTC);
    let t0 = datetime!(2026-03-01 11:00:00 UTC);
    let t2 = datetime!(2026-03-01 13:00:00.001 UTC);

    store.touch_api_keys(&[]).await.unwrap();
    store.touch_api_keys(&[(a.id.clone(), t1)]).await.unwrap();
    assert_eq!(last_used("a").await, Some(t1));
    assert_eq!(last_used("b").await, None);

    // An older use does not move it back; unknown ids are ignored.
    let unknown = KeyId::parse("zzzzzzzz").unwrap();
    store
        .touch_api_keys(&[(a.id.clone(), t0), (b.id.clone(), t0), (unknown, t2)])
        .await
        .unwrap();
    assert_eq!(last_used("a").await, Some(t1));
    assert_eq!(last_used("b").await, Some(t0));

    store
        .touch_api_keys(&[(a.id.clone(), t2), (b.id.clone(), t1)])
        .await
        .unwrap();
    assert_eq!(last_used("a").await, Some(t2));
    assert_eq!(last_used("b").await, Some(t1));
}

async fn keys_need_an_existing_tenant(db: TestDatabase) {
    let store = db.store().await;
    let result = store
        .create_api_key(TenantId(4242), "k", &[Scope::Publish], None)
        .await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
}
