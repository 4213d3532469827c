//! Accounts: sign-up and password login.
//!
//! Passwords are hashed with argon2id (the `argon2` crate's defaults) on a blocking thread. A login
//! with an unknown email verifies against a fixed dummy hash, so it costs what a wrong password
//! costs and its timing does not reveal whether the email exists.

use herald_core::names::{Email, Password, TenantSlug};
use serde::Serialize;
use sqlx::any::AnyExecutor;
use sqlx::FromRow;
use time::OffsetDateTime;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::clock::{from_ms, now_ms};
use crate::error::{conflict_on, decode_error};
use crate::tenants::{create_tenant_in, insert_membership, Role, Tenant};
use crate::{AccountId, Store, StoreError};

/// A person who can log in to the admin. Never carries the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Assigned by the database.
    pub id: AccountId,
    /// Lowercased, unique.
    pub email: Email,
    /// When the account signed up.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An `accounts` row without its password hash.
#[derive(FromRow)]
pub(crate) struct AccountRow {
    id: i64,
    email: String,
    created_at: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = sqlx::Error;

    fn try_from(row: AccountRow) -> Result<Self, Self::Error> {
        Ok(Account {
            id: AccountId(row.id),
            email: Email::parse(&row.email).map_err(decode_error)?,
            created_at: from_ms(row.created_at)?,
        })
    }
}

#[derive(FromRow)]
struct LoginRow {
    #[sqlx(flatten)]
    account: AccountRow,
    password_hash: String,
}

impl Store {
    /// Creates an account, its first tenant and the account's owner membership, in one transaction.
    ///
    /// The tenant gets its first signing key. A taken email is `Conflict("email")` and a taken (or
    /// recently deleted) slug `Conflict("slug")`; then nothing is stored.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %slug))]
    pub async fn signup(
        &self,
        email: &Email,
        password: &Password,
        slug: &TenantSlug,
        tenant_name: &str,
    ) -> Result<(Account, Tenant), StoreError> {
        let password_hash = hash_password(password).await?;
        let now = now_ms();

        let mut tx = self.pool.begin().await?;
        let account: Account = insert_account(&mut *tx, email, &password_hash, now)
            .await
            .map_err(conflict_on("email"))?
            .try_into()?;
        let tenant =
            create_tenant_in(&mut tx, slug, tenant_name, now, self.secrets.as_ref()).await?;
        insert_membership(&mut *tx, tenant.id, account.id, Role::Owner, now).await?;
        tx.commit().await?;

        tracing::info!(account_id = %account.id, tenant_id = %tenant.id, "account signed up");
        Ok((account, tenant))
    }

    /// The account whose email and password these are; `None` for a wrong password and for an
    /// unknown email alike, in about the same time.
    pub async fn verify_login(
        &self,
        email: &Email,
        password: &Password,
    ) -> Result<Option<Account>, StoreError> {
        let row = select_login(&self.pool, email).await?;
        let hash = row
            .as_ref()
            .map_or(DUMMY_HASH, |row| row.password_hash.as_str())
            .to_owned();
        let verified = verify_password(password, hash).await?;
        match row {
            Some(row) if verified => Ok(Some(row.account.try_into()?)),
            _ => Ok(None),
        }
    }

    /// Changes the account's password when `current` is its password, and ends every other
    /// session of the account (`keep` is the session token of the caller, which stays valid).
    /// Returns `false`, changing nothing, when `current` is wrong.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %account))]
    pub async fn change_password(
        &self,
        account: AccountId,
        current: &Password,
        new: &Password,
        keep: Option<&str>,
    ) -> Result<bool, StoreError> {
        let hash: Option<String> =
            sqlx::query_scalar(r#"select password_hash from accounts where id = $1"#)
                .bind(account.0)
                .fetch_optional(&self.pool)
                .await?;
        let Some(hash) = hash else {
            return Err(StoreError::NotFound);
        };
        if !verify_password(current, hash).await? {
            return Ok(false);
        }
        let new_hash = hash_password(new).await?;
        let keep = keep.map(crate::sessions::token_hash).unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        sqlx::query(r#"update accounts set password_hash = $2 where id = $1"#)
            .bind(account.0)
            .bind(new_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query(r#"delete from sessions where account_id = $1 and token_hash <> $2"#)
            .bind(account.0)
            .bind(keep)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!("password changed; other sessions ended");
        Ok(true)
    }

    /// The account with this id, if it exists.
    pub async fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        let row = select_account(&self.pool, id).await?;
        Ok(row.map(Account::try_from).transpose()?)
    }
}

async fn insert_account(
    e: impl AnyExecutor<'_>,
    email: &Email,
    password_hash: &str,
    now: i64,
) -> sqlx::Result<AccountRow> {
    sqlx::query_as(
        r#"
        insert into accounts (email, password_hash, created_at)
        values ($1, $2, $3)
        returning id, email, created_at
        "#,
    )
    .bind(email.as_str())
    .bind(password_hash)
    .bind(now)
    .fetch_one(e)
    .await
}

async fn select_login(e: impl AnyExecutor<'_>, email: &Email) -> sqlx::Result<Option<LoginRow>> {
    sqlx::query_as(r#"select id, email, created_at, password_hash from accounts where email = $1"#)
        .bind(email.as_str())
        .fetch_optional(e)
        .await
}

async fn select_account(
    e: impl AnyExecutor<'_>,
    id: AccountId,
) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as(r#"select id, email, created_at from accounts where id = $1"#)
        .bind(id.0)
        .fetch_optional(e)
        .await
}

/// An argon2id hash, with the crate's default parameters, of a random password nobody knows.
/// Verified against when the email is unknown; a test checks that its parameters stay the defaults.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$A9KLIN/QV8FUEo5/PU7zxQ$56oL0CBipnwTlsHaDSFwuGOz7eCRzdyxDP0Qko8Dy5k";

/// Hashes `password` with argon2id and a fresh salt, off the async runtime.
async fn hash_password(password: &Password) -> Result<String, StoreError> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|hash| hash.to_string())
    })
    .await?
    .map_err(|err| StoreError::Internal(Box::new(err)))
}

/// Whether `password` matches the PHC-format `hash`, off the async runtime.
async fn verify_password(password: &Password, hash: String) -> Result<bool, StoreError> {
    let password = password.clone();
    let verified = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .and_then(|hash| Argon2::default().verify_password(password.expose().as_bytes(), &hash))
            .is_ok()
    })
    .await?;
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real_hash = {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            Argon2::default()
                .hash_password(b"0123456789", &salt)
                .unwrap()
                .to_string()
        };
        let real = PasswordHash::new(&real_hash).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[tokio::test]
    async fn passwords_verify() {
        let password = Password::parse("correct horse battery").unwrap();
        let hash = hash_password(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&password, hash.clone()).await.unwrap());
        let wrong = Password::parse("incorrect horse battery").unwrap();
        assert!(!verify_password(&wrong, hash).await.unwrap());
        assert!(!verify_password(&password, DUMMY_HASH.to_owned())
            .await
            .unwrap());
    }
}
