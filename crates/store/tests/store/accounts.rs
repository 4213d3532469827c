use herald_store::testing::TestDatabase;
use herald_store::{AccountId, Membership, Role, StoreError};

use crate::{email, on_both_backends, password, signup, slug};

on_both_backends!(
    signup_creates_the_account_its_tenant_and_its_ownership,
    signup_refuses_a_taken_email_whatever_its_case,
    signup_refuses_a_taken_slug_and_keeps_nothing,
    login_needs_the_right_password_and_hides_unknown_emails,
    unknown_accounts_are_none,
    migrating_twice_is_harmless,
);

async fn signup_creates_the_account_its_tenant_and_its_ownership(db: TestDatabase) {
    let store = db.store().await;
    let (account, tenant) = signup(&store, "Ann@Example.com", "acme").await;

    assert_eq!(account.email.as_str(), "ann@example.com");
    assert_eq!(tenant.slug.as_str(), "acme");
    assert_eq!(tenant.name, "Acme Inc.");
    assert_eq!(tenant.plan, "free");
    assert_eq!(tenant.allowed_origins, ["*"]);
    assert_eq!(tenant.suspended_at, None);
    assert_eq!(
        store.account(account.id).await.unwrap(),
        Some(account.clone())
    );
    assert_eq!(
        store.tenants_of(account.id).await.unwrap(),
        [Membership {
            tenant,
            role: Role::Owner
        }]
    );
}

async fn signup_refuses_a_taken_email_whatever_its_case(db: TestDatabase) {
    let store = db.store().await;
    signup(&store, "ann@example.com", "acme").await;

    let again = store
        .signup(
            &email("ANN@example.COM"),
            &password("another password"),
            &slug("other"),
            "Other",
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict("email"))),
        "{again:?}"
    );
    assert_eq!(store.tenant_by_slug(&slug("other")).await.unwrap(), None);
}

async fn signup_refuses_a_taken_slug_and_keeps_nothing(db: TestDatabase) {
    let store = db.store().await;
    signup(&store, "ann@example.com", "acme").await;

    let taken = store
        .signup(
            &email("bob@example.com"),
            &password("bobs password"),
            &slug("acme"),
            "Bob's",
        )
        .await;
    assert!(
        matches!(taken, Err(StoreError::Conflict("slug"))),
        "{taken:?}"
    );
    // The transaction left no account behind: the email is still free.
    let login = store
        .verify_login(&email("bob@example.com"), &password("bobs password"))
        .await
        .unwrap();
    assert_eq!(login, None);
    signup(&store, "bob@example.com", "bobs").await;
}

async fn login_needs_the_right_password_and_hides_unknown_emails(db: TestDatabase) {
    let store = db.store().await;
    let (account, _) = signup(&store, "ann@example.com", "acme").await;

    let right = store
        .verify_login(
            &email("ANN@example.com"),
            &password("correct horse battery"),
        )
        .await
        .unwrap();
    assert_eq!(right, Some(account));
    let wrong = store
        .verify_login(&email("ann@example.com"), &password("wrong horse battery"))
        .await
        .unwrap();
    assert_eq!(wrong, None);
    let unknown = store
        .verify_login(
            &email("nobody@example.com"),
            &password("correct horse battery"),
        )
        .await
        .unwrap();
    assert_eq!(unknown, None);
}

async fn unknown_accounts_are_none(db: TestDatabase) {
    let store = db.store().await;
    assert_eq!(store.account(AccountId(4242)).await.unwrap(), None);
    assert!(store.tenants_of(AccountId(4242)).await.unwrap().is_empty());
}

async fn migrating_twice_is_harmless(db: TestDatabase) {
    let store = db.store().await;
    signup(&store, "ann@example.com", "acme").await;
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert!(store.tenant_by_slug(&slug("acme")).await.unwrap().is_some());
}
