//! Herald's control plane in SQL: settings, accounts and sessions, tenants and memberships, API keys,
//! channel settings, signing keys, usage and the audit log.
//!
//! One repository, [`Store`], serves Postgres and SQLite alike. It talks to both through sqlx's `Any`
//! driver, so every query is written once, with `$1`-style placeholders and SQL that both dialects
//! accept (`returning`, `on conflict`), and the same test suite, run on both backends, proves it.
//! The `Any` driver knows only integers, floats, text and blobs, which shapes the schema:
//!
//! - timestamps are unix milliseconds in `bigint` columns, converted to [`time::OffsetDateTime`] in
//!   the model types;
//! - lists (scopes, channel patterns, allowed origins) are JSON text;
//! - flags are nullable timestamps (`revoked_at`, `suspended_at`), never booleans.
//!
//! Secrets never reach the database or an error message: passwords are stored as argon2id hashes,
//! session tokens and API keys as the SHA-256 hex of the token. Every query that concerns a tenant's
//! data takes the tenant's id, so one tenant's key or session can never reach another's rows.

mod accounts;
mod api_keys;
mod audit;
pub mod cache;
mod channels;
mod clock;
mod db;
mod error;
mod ids;
mod plans;
mod secrets;
mod sessions;
mod settings;
mod signing_keys;
mod tenants;
mod usage;

#[cfg(feature = "testing")]
pub mod testing;

pub use accounts::Account;
pub use api_keys::{ApiKey, ApiKeyAuth};
pub use audit::{AuditEntry, NewAuditEntry};
pub use cache::ControlView;
pub use channels::{Channel, ChannelSettings, Visibility};
pub use clock::{Clock, SystemClock};
pub use db::Backend;
pub use error::{redact_url, StoreError};
pub use ids::{AccountId, TenantId};
pub use plans::{Plan, Plans, PlansError};
pub use secrets::SecretsKey;
pub use sessions::{SessionLifetime, SessionToken};
pub use signing_keys::SigningKey;
pub use tenants::{Member, MemberRemoval, Membership, Role, Tenant, TenantPatch, SLUG_QUARANTINE};
pub use usage::{day_of, Attempt, DailyUsage, UsageDay};

use sqlx::AnyPool;

/// The control-plane repository: a pool of connections to Postgres or SQLite. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Seals signing secrets at rest, when `--secrets-key` is set.
    secrets: Option<SecretsKey>,
}

impl Store {
    /// Connects to `postgres://...` or `sqlite://path`.
    ///
    /// A SQLite file and its parent directory are created when missing, and the database is put in
    /// WAL mode. An unreachable database fails within 10 s with [`StoreError::Connect`], whose
    /// message names the URL with any password redacted. Does not migrate: see [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let (pool, backend) = db::connect(url).await?;
        Ok(Store {
            pool,
            backend,
            secrets: None,
        })
    }

    /// This store, sealing signing secrets with `key` from now on (and opening sealed ones).
    pub fn with_secrets_key(mut self, key: SecretsKey) -> Store {
        self.secrets = Some(key);
        self
    }

    /// Applies the migrations in `migrations/postgres` or `migrations/sqlite` that are not yet applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        db::migrator(self.backend)
            .run(&self.pool)
            .await
            .map_err(StoreError::Migrate)?;
        tracing::info!(backend = ?self.backend, "database migrations applied");
        Ok(())
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers, for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
