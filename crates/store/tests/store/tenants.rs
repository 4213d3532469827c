use herald_store::testing::TestDatabase;
use herald_store::{AccountId, Role, StoreError};

use crate::{on_both_backends, signup, slug};

on_both_backends!(
    tenants_of_lists_every_membership_oldest_first,
    membership_is_none_for_non_members_and_unknown_tenants,
    create_tenant_refuses_a_taken_slug_or_an_unknown_owner,
);

async fn tenants_of_lists_every_membership_oldest_first(db: TestDatabase) {
    let store = db.store().await;
    let (ann, acme) = signup(&store, "ann@example.com", "acme").await;
    signup(&store, "bob@example.com", "bobs").await;
    let second = store
        .create_tenant(ann.id, &slug("acme-staging"), "Acme staging")
        .await
        .unwrap();
    assert_eq!(second.plan, "free");
    assert_eq!(second.allowed_origins, ["*"]);

    let memberships = store.tenants_of(ann.id).await.unwrap();
    let slugs: Vec<_> = memberships.iter().map(|m| m.tenant.slug.as_str()).collect();
    assert_eq!(slugs, ["acme", "acme-staging"]);
    assert!(memberships.iter().all(|m| m.role == Role::Owner));
    assert_eq!(memberships[0].tenant, acme);
    assert_eq!(memberships[1].tenant, second);
}

async fn membership_is_none_for_non_members_and_unknown_tenants(db: TestDatabase) {
    let store = db.store().await;
    let (ann, acme) = signup(&store, "ann@example.com", "acme").await;
    let (bob, bobs) = signup(&store, "bob@example.com", "bobs").await;

    let own = store
        .membership(ann.id, &slug("acme"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((own.tenant, own.role), (acme, Role::Owner));
    assert_eq!(store.membership(ann.id, &slug("bobs")).await.unwrap(), None);
    assert_eq!(
        store.membership(ann.id, &slug("nobody")).await.unwrap(),
        None
    );
    assert_eq!(store.membership(bob.id, &slug("acme")).await.unwrap(), None);
    assert_eq!(
        store.tenant_by_slug(&slug("bobs")).await.unwrap(),
        Some(bobs)
    );
    assert_eq!(store.tenant_by_slug(&slug("nobody")).await.unwrap(), None);
}

async fn create_tenant_refuses_a_taken_slug_or_an_unknown_owner(db: TestDatabase) {
    let store = db.store().await;
    let (ann, _) = signup(&store, "ann@example.com", "acme").await;

    let taken = store.create_tenant(ann.id, &slug("acme"), "Again").await;
    assert!(
        matches!(taken, Err(StoreError::Conflict("slug"))),
        "{taken:?}"
    );

    let orphan = store
        .create_tenant(AccountId(4242), &slug("orphan"), "Orphan")
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound)), "{orphan:?}");
    assert_eq!(store.tenant_by_slug(&slug("orphan")).await.unwrap(), None);
}
