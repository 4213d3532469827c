//! API keys: what publishers and tenants' servers authenticate with.
//!
//! A key is `hk_` + 40 base62 characters (about 238 random bits). Its first 8 characters are its
//! public id, the primary key here; only the SHA-256 hex of the whole key is stored. With that much
//! entropy a fast hash cannot be reversed by guessing, and it lets the edge check a key on every
//! request from its cache (argon2 is for passwords, which are guessable). Checks compare hashes in
//! constant time.

use std::fmt;

use herald_core::{ApiKeySecret, KeyId, Scope, TenantSlug};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyExecutor;
use sqlx::FromRow;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::clock::{from_ms, from_ms_opt, now_ms, to_ms};
use crate::error::{decode_error, is_unique_violation, not_found_on_missing_parent};
use crate::{Store, StoreError, TenantId};

/// How often to draw a new key when its id is taken, which happens about once in 2^47 keys.
const KEY_ATTEMPTS: u32 = 4;

/// An API key as the admin API shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// The public key id: the 8 characters after `hk_`.
    pub id: KeyId,
    /// A label chosen by the tenant.
    pub name: String,
    /// What the key may do, sorted, without duplicates.
    pub scopes: Vec<Scope>,
    /// The channel patterns the key is limited to (`*` only as the last character); `None` = all.
    pub channels: Option<Vec<String>>,
    /// When the key was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the key was last used, to the edge's flush interval; `None` if never.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// When the key was revoked; `None` while it is valid.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// What the edge needs to authenticate and authorise requests made with one key, and to cache.
#[derive(Clone)]
pub struct ApiKeyAuth {
    /// The key's public id.
    pub key_id: KeyId,
    /// The tenant the key belongs to.
    pub tenant_id: TenantId,
    /// That tenant's slug: a request for another tenant's URL must be refused.
    pub tenant_slug: TenantSlug,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// The channel patterns the key is limited to; `None` = all.
    pub channels: Option<Vec<String>>,
    /// When the key was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<OffsetDateTime>,
    secret_hash: String,
}

impl ApiKeyAuth {
    /// Whether `secret` is this key, comparing SHA-256 hashes in constant time. Says nothing
    /// about revocation: check [`ApiKeyAuth::is_revoked`] too.
    pub fn verify(&self, secret: &ApiKeySecret) -> bool {
        let hash = secret_hash(secret);
        hash.as_bytes().ct_eq(self.secret_hash.as_bytes()).into()
    }

    /// Whether the key has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

impl fmt::Debug for ApiKeyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuth")
            .field("key_id", &self.key_id)
            .field("tenant_id", &self.tenant_id)
            .field("tenant_slug", &self.tenant_slug)
            .field("scopes", &self.scopes)
            .field("channels", &self.channels)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// What the database stores in place of a key.
fn secret_hash(secret: &ApiKeySecret) -> String {
    format!("{:x}", Sha256::digest(secret.expose().as_bytes()))
}

#[derive(FromRow)]
struct ApiKeyRow {
    id: String,
    name: String,
    scopes: String,
    channels: Option<String>,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = sqlx::Error;

    fn try_from(row: ApiKeyRow) -> Result<Self, Self::Error> {
        Ok(ApiKey {
            id: KeyId::parse(&row.id).map_err(decode_error)?,
            name: row.name,
            scopes: decode_json(&row.scopes)?,
            channels: row.channels.as_deref().map(decode_json).transpose()?,
            created_at: from_ms(row.created_at)?,
            last_used_at: from_ms_opt(row.last_used_at)?,
            revoked_at: from_ms_opt(row.revoked_at)?,
        })
    }
}

#[derive(FromRow)]
struct ApiKeyAuthRow {
    id: String,
    tenant_id: i64,
    tenant_slug: String,
    scopes: String,
    channels: Option<String>,
    revoked_at: Option<i64>,
    secret_hash: String,
}

impl TryFrom<ApiKeyAuthRow> for ApiKeyAuth {
    type Error = sqlx::Error;

    fn try_from(row: ApiKeyAuthRow) -> Result<Self, Self::Error> {
        Ok(ApiKeyAuth {
            key_id: KeyId::parse(&row.id).map_err(decode_error)?,
            tenant_id: TenantId(row.tenant_id),
            tenant_slug: TenantSlug::parse(&row.tenant_slug).map_err(decode_error)?,
            scopes: decode_json(&row.scopes)?,
            channels: row.channels.as_deref().map(decode_json).transpose()?,
            revoked_at: from_ms_opt(row.revoked_at)?,
            secret_hash: row.secret_hash,
        })
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(json).map_err(decode_error)
}

fn encode_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Internal(Box::new(err)))
}

/// A new key's stored columns, apart from the ones that identify it.
struct NewKey<'a> {
    tenant: TenantId,
    name: &'a str,
    scopes: &'a str,
    channels: Option<&'a str>,
    created_at: i64,
}

impl Store {
    /// Creates a key for `tenant` and returns it with its secret, which is not stored and cannot be
    /// shown again. A tenant that does not exist is `NotFound`.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant_id = %tenant))]
    pub async fn create_api_key(
        &self,
        tenant: TenantId,
        name: &str,
        scopes: &[Scope],
        channels: Option<&[String]>,
    ) -> Result<(ApiKey, ApiKeySecret), StoreError> {
        let mut scopes = scopes.to_vec();
        scopes.sort_unstable();
        scopes.dedup();
        let scopes_json = encode_json(&scopes)?;
        let channels_json = channels.map(encode_json).transpose()?;
        let now = now_ms();
        let new = NewKey {
            tenant,
            name,
            scopes: &scopes_json,
            channels: channels_json.as_deref(),
            created_at: now,
        };

        for attempt in 1..=KEY_ATTEMPTS {
            let secret = ApiKeySecret::generate();
            let id = secret.key_id();
            match insert_api_key(&self.pool, &id, &secret_hash(&secret), &new).await {
                Ok(()) => {
                    tracing::info!(key_id = %id, "API key created");
                    let key = ApiKey {
                        id,
                        name: name.to_owned(),
                        scopes,
                        channels: channels.map(<[String]>::to_vec),
                        created_at: from_ms(now)?,
                        last_used_at: None,
                        revoked_at: None,
                    };
                    return Ok((key, secret));
                }
                Err(err) if is_unique_violation(&err) => {
                    tracing::warn!(attempt, "API key id already taken; drawing another key");
                }
                Err(err) => return Err(not_found_on_missing_parent(err)),
            }
        }
        Err(StoreError::Internal(
            "no free API key id after several attempts".into(),
        ))
    }

    /// The keys of `tenant`, revoked ones included, oldest first.
    pub async fn list_api_keys(&self, tenant: TenantId) -> Result<Vec<ApiKey>, StoreError> {
        let rows = select_api_keys(&self.pool, tenant).await?;
        Ok(rows
            .into_iter()
            .map(ApiKey::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// Revokes key `key` of `tenant`. `NotFound` when the tenant has no such key (whether or not
    /// another tenant has). Revoking a revoked key succeeds and keeps the first revocation time.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant_id = %tenant, key_id = %key))]
    pub async fn revoke_api_key(&self, tenant: TenantId, key: &KeyId) -> Result<(), StoreError> {
        let updated = revoke_api_key(&self.pool, tenant, key, now_ms()).await?;
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        tracing::info!("API key revoked");
        Ok(())
    }

    /// What the edge needs to check requests made with key `key`, revoked or not; `None` when no
    /// key has this id.
    pub async fn api_key_auth(&self, key: &KeyId) -> Result<Option<ApiKeyAuth>, StoreError> {
        let row = select_api_key_auth(&self.pool, key).await?;
        Ok(row.map(ApiKeyAuth::try_from).transpose()?)
    }

    /// Records when keys were last used, in one transaction: each key's `last_used_at` becomes the
    /// later of its stored value and the given time. The edge calls this on an interval with what
    /// it has seen since, never per request. Unknown ids are ignored.
    pub async fn touch_api_keys(&self, used: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (key, at) in used {
            touch_api_key(&mut *tx, key, to_ms(*at)).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_api_key(
    e: impl AnyExecutor<'_>,
    id: &KeyId,
    secret_hash: &str,
    new: &NewKey<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"
        insert into api_keys (id, tenant_id, name, secret_hash, scopes, channels, created_at)
        values ($1, $2, $3, $4, $5, $6, $7)
        "#,
    )
    .bind(id.as_str())
    .bind(new.tenant.0)
    .bind(new.name)
    .bind(secret_hash)
    .bind(new.scopes)
    .bind(new.channels)
    .bind(new.created_at)
    .execute(e)
    .await?;
    Ok(())
}

async fn select_api_keys(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
) -> sqlx::Result<Vec<ApiKeyRow>> {
    sqlx::query_as(
        r#"
        select id, name, scopes, channels, created_at, last_used_at, revoked_at
        from api_keys
        where tenant_id = $1
        order by created_at, id
        "#,
    )
    .bind(tenant.0)
    .fetch_all(e)
    .await
}

async fn revoke_api_key(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    key: &KeyId,
    now: i64,
) -> sqlx::Result<u64> {
    let result = sqlx::query(
        r#"
        update api_keys
        set revoked_at = coalesce(revoked_at, $3)
        where tenant_id = $1 and id = $2
        "#,
    )
    .bind(tenant.0)
    .bind(key.as_str())
    .bind(now)
    .execute(e)
    .await?;
    Ok(result.rows_affected())
}

async fn select_api_key_auth(
    e: impl AnyExecutor<'_>,
    key: &KeyId,
) -> sqlx::Result<Option<ApiKeyAuthRow>> {
    sqlx::query_as(
        r#"
        select k.id, k.tenant_id, t.slug as tenant_slug, k.scopes, k.channels, k.revoked_at,
               k.secret_hash
        from api_keys k
        join tenants t on t.id = k.tenant_id
        where k.id = $1
        "#,
    )
    .bind(key.as_str())
    .fetch_optional(e)
    .await
}

async fn touch_api_key(e: impl AnyExecutor<'_>, key: &KeyId, at: i64) -> sqlx::Result<()> {
    sqlx::query(
        r#"
        update api_keys
        set last_used_at = $2
        where id = $1 and (last_used_at is null or last_used_at < $2)
        "#,
    )
    .bind(key.as_str())
    .bind(at)
    .execute(e)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_the_hash_out() {
        let secret = ApiKeySecret::generate();
        let auth = ApiKeyAuth {
            key_id: secret.key_id(),
            tenant_id: TenantId(1),
            tenant_slug: TenantSlug::parse("acme").unwrap(),
            scopes: vec![Scope::Publish],
            channels: None,
            revoked_at: None,
            secret_hash: secret_hash(&secret),
        };
        assert!(auth.verify(&secret));
        assert!(!auth.verify(&ApiKeySecret::generate()));
        assert!(!format!("{auth:?}").contains(&secret_hash(&secret)));
    }
}
