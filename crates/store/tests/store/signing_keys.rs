use std::time::Duration;

use herald_store::testing::TestDatabase;
use herald_store::StoreError;

use crate::{on_both_backends, signup, slug};

on_both_backends!(
    every_tenant_starts_with_one_current_signing_key,
    rotation_keeps_the_previous_key_for_the_grace_period,
    a_deleted_tenants_slug_is_quarantined,
);

async fn every_tenant_starts_with_one_current_signing_key(db: TestDatabase) {
    let store = db.store().await;
    let (ann, acme) = signup(&store, "ann@example.com", "acme").await;
    let second = store
        .create_tenant(ann.id, &slug("acme-2"), "Two")
        .await
        .unwrap();
    for tenant in [acme.id, second.id] {
        let keys = store.signing_keys(tenant).await.unwrap();
        assert_eq!(keys.len(), 1);
        let key = &keys[0];
        assert!(key.current && key.expires_at.is_none());
        assert_eq!(key.kid.len(), 8);
        assert!(key.kid.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(key.secret.starts_with("hs_") && key.secret.len() == 46);
    }
    let a = &store.signing_keys(acme.id).await.unwrap()[0];
    let b = &store.signing_keys(second.id).await.unwrap()[0];
    assert_ne!(a.secret, b.secret);
}

async fn rotation_keeps_the_previous_key_for_the_grace_period(db: TestDatabase) {
    let store = db.store().await;
    let (_, acme) = signup(&store, "ann@example.com", "acme").await;
    let first = store.signing_keys(acme.id).await.unwrap().remove(0);
    let second = store
        .rotate_signing_key(acme.id, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(second.current);
    let keys = store.signing_keys(acme.id).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], second, "newest first");
    assert_eq!(keys[1].kid, first.kid);
    assert!(!keys[1].current);
    assert!(keys[1].expires_at.is_some());

    // With no grace, the previous key stops verifying at once and is gone after the next rotation.
    let third = store
        .rotate_signing_key(acme.id, Duration::ZERO)
        .await
        .unwrap();
    let kids: Vec<_> = store
        .signing_keys(acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, [third.kid.clone(), first.kid.clone()]);
    assert!(matches!(
        store
            .rotate_signing_key(herald_store::TenantId(999_999), Duration::ZERO)
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn a_deleted_tenants_slug_is_quarantined(db: TestDatabase) {
    let store = db.store().await;
    let (ann, acme) = signup(&store, "ann@example.com", "acme").await;
    store.delete_tenant(acme.id).await.unwrap();
    assert_eq!(store.tenant_by_slug(&slug("acme")).await.unwrap(), None);
    assert!(store.signing_keys(acme.id).await.unwrap().is_empty());
    assert!(matches!(
        store.create_tenant(ann.id, &slug("acme"), "Again").await,
        Err(StoreError::Conflict("slug"))
    ));
    assert!(matches!(
        store.delete_tenant(acme.id).await,
        Err(StoreError::NotFound)
    ));
}
