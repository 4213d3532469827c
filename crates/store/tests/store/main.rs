//! The store's behaviour, proved on both backends: every test in `on_both_backends!` runs once on
//! SQLite and once on Postgres (the server of `HERALD_TEST_DATABASE_URL`), each run with a fresh
//! database of its own.

mod accounts;
mod api_keys;
mod channels;
mod connect;
mod secrets;
mod sessions;
mod settings;
mod signing_keys;
mod tenants;

use herald_core::{Email, Password, TenantSlug};
use herald_store::testing::TestDatabase;
use herald_store::{Account, Store, Tenant};
use sqlx::AnyPool;

/// Generates `name::sqlite` and `name::postgres` for each `async fn name(db: TestDatabase)` listed.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            use herald_store::testing::TestDatabase;

            #[tokio::test]
            async fn sqlite() {
                super::$name(TestDatabase::sqlite()).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(TestDatabase::postgres().await).await;
            }
        }
    )+};
}

pub fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

pub fn password(s: &str) -> Password {
    Password::parse(s).unwrap()
}

pub fn slug(s: &str) -> TenantSlug {
    TenantSlug::parse(s).unwrap()
}

/// Signs `email` up with tenant `slug` and a fixed password.
pub async fn signup(store: &Store, email_address: &str, tenant: &str) -> (Account, Tenant) {
    store
        .signup(
            &email(email_address),
            &password("correct horse battery"),
            &slug(tenant),
            "Acme Inc.",
        )
        .await
        .unwrap()
}

/// A pool of the test's database, for looking behind the store's API.
pub async fn raw_pool(db: &TestDatabase) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(db.url()).await.unwrap()
}
