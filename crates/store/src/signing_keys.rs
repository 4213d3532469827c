//! Signing keys: the HS256 secrets that subscriber tokens are signed with.
//!
//! Unlike API keys, these secrets cannot be stored as hashes: the edge needs them to verify
//! signatures, and the admin API shows them so that tenants can sign tokens on their own servers.
//! With `--secrets-key` they are sealed at rest (see [`crate::secrets`]).
//! A tenant has one current key; rotating makes a new current key and lets the previous one
//! verify for a grace period, so tokens signed just before a rotation keep working. Keys past
//! their grace period are deleted at the next rotation and never returned.

use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use sqlx::any::AnyExecutor;
use sqlx::FromRow;
use time::OffsetDateTime;

use crate::clock::{duration_ms, from_ms, from_ms_opt, now_ms};
use crate::error::{is_unique_violation, not_found_on_missing_parent};
use crate::secrets::{read_form, store_form};
use crate::{SecretsKey, Store, StoreError, TenantId};

/// How often to draw a new kid when the tenant already has it.
const KID_ATTEMPTS: u32 = 4;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// A kid's length in base62 characters.
pub const KID_LEN: usize = 8;
/// A secret's prefix; the HMAC key is the whole string, prefix included.
pub const SECRET_PREFIX: &str = "hs_";
/// The base62 characters after the prefix (about 256 bits).
pub const SECRET_BODY_LEN: usize = 43;

/// One of a tenant's signing keys, as the admin API shows it. Its `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SigningKey {
    /// The key's id, which a token names in its header's `kid`.
    pub kid: String,
    /// The HMAC key: its UTF-8 bytes sign and verify HS256 tokens.
    pub secret: String,
    /// Whether this is the key new tokens are signed with.
    pub current: bool,
    /// When the key was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// For a rotated-out key, when it stops verifying; `None` for the current key.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .field("current", &self.current)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

fn base62(len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char)
        .collect()
}

#[derive(FromRow)]
struct SigningKeyRow {
    kid: String,
    secret: String,
    created_at: i64,
    expires_at: Option<i64>,
}

impl SigningKeyRow {
    fn into_key(
        self,
        tenant: TenantId,
        secrets: Option<&SecretsKey>,
    ) -> Result<SigningKey, StoreError> {
        Ok(SigningKey {
            secret: read_form(secrets, tenant, &self.kid, &self.secret)?,
            kid: self.kid,
            current: self.expires_at.is_none(),
            created_at: from_ms(self.created_at)?,
            expires_at: from_ms_opt(self.expires_at)?,
        })
    }
}

impl Store {
    /// The tenant's signing keys that still verify: the current one and rotated-out ones whose
    /// expires_at is in the future, newest first.
    pub async fn signing_keys(&self, tenant: TenantId) -> Result<Vec<SigningKey>, StoreError> {
        let rows = select_live_signing_keys(&self.pool, tenant, now_ms()).await?;
        rows.into_iter()
            .map(|row| row.into_key(tenant, self.secrets.as_ref()))
            .collect()
    }

    /// Seals every signing secret still stored in plain text (from before `--secrets-key` was
    /// set); returns how many. Without a key, does nothing. Safe to run on several processes at
    /// once: a row is only replaced while it still holds the plaintext that was read.
    pub async fn seal_plaintext_signing_secrets(&self) -> Result<u64, StoreError> {
        let Some(key) = &self.secrets else {
            return Ok(0);
        };
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            r#"select tenant_id, kid, secret from signing_keys where secret not like 'enc:%'"#,
        )
        .fetch_all(&self.pool)
        .await?;
        let mut sealed = 0;
        for (tenant, kid, secret) in rows {
            let done = sqlx::query(
                r#"update signing_keys set secret = $4
                   where tenant_id = $1 and kid = $2 and secret = $3"#,
            )
            .bind(tenant)
            .bind(&kid)
            .bind(&secret)
            .bind(key.seal(TenantId(tenant), &kid, &secret))
            .execute(&self.pool)
            .await?;
            sealed += done.rows_affected();
        }
        Ok(sealed)
    }

    /// Makes a new current key for `tenant`; the previous current key keeps verifying for
    /// `grace`, and keys whose grace has ended are deleted. Returns the new key. `NotFound` when
    /// the tenant does not exist.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant_id = %tenant))]
    pub async fn rotate_signing_key(
        &self,
        tenant: TenantId,
        grace: Duration,
    ) -> Result<SigningKey, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        delete_expired_signing_keys(&mut *tx, tenant, now).await?;
        retire_current_signing_key(&mut *tx, tenant, now.saturating_add(duration_ms(grace)))
            .await?;
        let key = insert_signing_key(&mut tx, tenant, now, self.secrets.as_ref()).await?;
        tx.commit().await?;
        tracing::info!(kid = %key.kid, "signing key rotated");
        Ok(key)
    }
}

/// Inserts a new current signing key for `tenant`, drawing another kid in the unlikely case the
/// tenant has it already. Used at tenant creation and at rotation, inside their transactions.
pub(crate) async fn insert_signing_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: TenantId,
    now: i64,
    secrets: Option<&SecretsKey>,
) -> Result<SigningKey, StoreError> {
    for _ in 0..KID_ATTEMPTS {
        let key = SigningKey {
            kid: base62(KID_LEN),
            secret: format!("{SECRET_PREFIX}{}", base62(SECRET_BODY_LEN)),
            current: true,
            created_at: from_ms(now)?,
            expires_at: None,
        };
        // A savepoint, so that a taken kid does not abort the caller's transaction on Postgres.
        let mut attempt = sqlx::Connection::begin(&mut **tx).await?;
        let stored = store_form(secrets, tenant, &key.kid, &key.secret);
        match insert_signing_key_row(&mut *attempt, tenant, &key.kid, &stored, now).await {
            Ok(()) => {
                attempt.commit().await?;
                return Ok(key);
            }
            Err(err) if is_unique_violation(&err) => attempt.rollback().await?,
            Err(err) => return Err(not_found_on_missing_parent(err)),
        }
    }
    Err(StoreError::Internal(
        "no free signing key id after several attempts".into(),
    ))
}

async fn insert_signing_key_row(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    kid: &str,
    stored_secret: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"
        insert into signing_keys (tenant_id, kid, secret, created_at, expires_at)
        values ($1, $2, $3, $4, null)
        "#,
    )
    .bind(tenant.0)
    .bind(kid)
    .bind(stored_secret)
    .bind(now)
    .execute(e)
    .await?;
    Ok(())
}

async fn select_live_signing_keys(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    now: i64,
) -> sqlx::Result<Vec<SigningKeyRow>> {
    sqlx::query_as(
        r#"
        select kid, secret, created_at, expires_at
        from signing_keys
        where tenant_id = $1 and (expires_at is null or expires_at > $2)
        order by created_at desc, expires_at is not null, kid
        "#,
    )
    .bind(tenant.0)
    .bind(now)
    .fetch_all(e)
    .await
}

async fn delete_expired_signing_keys(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(r#"delete from signing_keys where tenant_id = $1 and expires_at <= $2"#)
        .bind(tenant.0)
        .bind(now)
        .execute(e)
        .await?;
    Ok(())
}

async fn retire_current_signing_key(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    expires_at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"update signing_keys set expires_at = $2 where tenant_id = $1 and expires_at is null"#,
    )
    .bind(tenant.0)
    .bind(expires_at)
    .execute(e)
    .await?;
    Ok(())
}
