//! Server-side login sessions.
//!
//! The token is 32 random bytes, handed to the browser once (as a cookie) and stored only as its
//! SHA-256 hex: a leaked database lets nobody log in. Logout deletes the row, so it ends the session
//! on the server too. A session slides: looking it up renews it once less than half its idle TTL
//! remains; but never past its absolute lifetime from the login, however it is used, so a stolen
//! cookie kept busy still dies.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::any::AnyExecutor;
use sqlx::FromRow;

use crate::accounts::{Account, AccountRow};
use crate::clock::{duration_ms, now_ms};
use crate::error::not_found_on_missing_parent;
use crate::{AccountId, Store, StoreError};

/// A new session's token: 32 random bytes, base64url without padding. Shown once, to be set as the
/// session cookie; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    fn generate() -> SessionToken {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SessionToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The token itself, for the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(…)")
    }
}

/// What the database stores in place of a token.
pub(crate) fn token_hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

#[derive(FromRow)]
struct SessionRow {
    #[sqlx(flatten)]
    account: AccountRow,
    session_created_at: i64,
    expires_at: i64,
}

/// How long a session lives: `idle` after its last use, and `absolute` after the login at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime {
    pub idle: Duration,
    pub absolute: Duration,
}

/// A bare TTL: the idle lifetime, with no absolute cap.
impl From<Duration> for SessionLifetime {
    fn from(idle: Duration) -> Self {
        Self {
            idle,
            absolute: Duration::MAX,
        }
    }
}

impl Store {
    /// Starts a session for `account` that lives `lifetime`, and returns its token.
    ///
    /// An account that does not exist is `NotFound`. Also forgets the account's expired sessions,
    /// so that they do not pile up.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %account))]
    pub async fn create_session(
        &self,
        account: AccountId,
        lifetime: impl Into<SessionLifetime>,
    ) -> Result<SessionToken, StoreError> {
        let lifetime = lifetime.into();
        let ttl = lifetime.idle.min(lifetime.absolute);
        let token = SessionToken::generate();
        let now = now_ms();
        delete_expired_sessions(&self.pool, account, now).await?;
        insert_session(
            &self.pool,
            &token_hash(token.expose()),
            account,
            now,
            now.saturating_add(duration_ms(ttl)),
        )
        .await
        .map_err(not_found_on_missing_parent)?;
        Ok(token)
    }

    /// The account of the live session `token`; `None` when there is none, it has expired, or
    /// it is older than the absolute lifetime (then it is deleted).
    ///
    /// Renews the session to expire the idle TTL from now when less than half of it remains, but
    /// never past the absolute lifetime.
    pub async fn session_account(
        &self,
        token: &str,
        lifetime: impl Into<SessionLifetime>,
    ) -> Result<Option<Account>, StoreError> {
        let lifetime = lifetime.into();
        let hash = token_hash(token);
        let now = now_ms();
        let Some(row) = select_live_session(&self.pool, &hash, now).await? else {
            return Ok(None);
        };
        let ends = row
            .session_created_at
            .saturating_add(duration_ms(lifetime.absolute));
        if now >= ends {
            delete_session(&self.pool, &hash).await?;
            return Ok(None);
        }
        let ttl = duration_ms(lifetime.idle);
        let renewed = now.saturating_add(ttl).min(ends);
        if row.expires_at.saturating_sub(now) < ttl / 2 && renewed > row.expires_at {
            renew_session(&self.pool, &hash, renewed).await?;
        }
        Ok(Some(row.account.try_into()?))
    }

    /// Ends the session `token`, if it exists.
    pub async fn delete_session(&self, token: &str) -> Result<(), StoreError> {
        delete_session(&self.pool, &token_hash(token)).await?;
        Ok(())
    }
}

async fn insert_session(
    e: impl AnyExecutor<'_>,
    token_hash: &str,
    account: AccountId,
    now: i64,
    expires_at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"
        insert into sessions (token_hash, account_id, created_at, expires_at)
        values ($1, $2, $3, $4)
        "#,
    )
    .bind(token_hash)
    .bind(account.0)
    .bind(now)
    .bind(expires_at)
    .execute(e)
    .await?;
    Ok(())
}

async fn select_live_session(
    e: impl AnyExecutor<'_>,
    token_hash: &str,
    now: i64,
) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as(
        r#"
        select a.id, a.email, a.created_at, s.created_at as session_created_at, s.expires_at
        from sessions s
        join accounts a on a.id = s.account_id
        where s.token_hash = $1 and s.expires_at > $2
        "#,
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(e)
    .await
}

async fn renew_session(
    e: impl AnyExecutor<'_>,
    token_hash: &str,
    expires_at: i64,
) -> sqlx::Result<()> {
    sqlx::query(r#"update sessions set expires_at = $2 where token_hash = $1"#)
        .bind(token_hash)
        .bind(expires_at)
        .execute(e)
        .await?;
    Ok(())
}

async fn delete_session(e: impl AnyExecutor<'_>, token_hash: &str) -> sqlx::Result<()> {
    sqlx::query(r#"delete from sessions where token_hash = $1"#)
        .bind(token_hash)
        .execute(e)
        .await?;
    Ok(())
}

async fn delete_expired_sessions(
    e: impl AnyExecutor<'_>,
    account: AccountId,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(r#"delete from sessions where account_id = $1 and expires_at <= $2"#)
        .bind(account.0)
        .bind(now)
        .execute(e)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_base64url_and_hidden_from_debug() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert!(a
            .expose()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(token_hash("abc").len(), 64);
    }
}
