//! Daily usage per tenant, and login failures for throttling.
//!
//! The edge counts messages, deliveries and bytes in memory and adds them here on an interval
//! ([`Store::record_usage`]), never per event. Days are UTC days since the unix epoch.

use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyExecutor;
use sqlx::FromRow;
use time::{Date, OffsetDateTime};

use crate::clock::{duration_ms, now_ms};
use crate::error::{decode_error, not_found_on_missing_parent};
use crate::{Store, StoreError, TenantId};

/// One UTC day of a tenant's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct DailyUsage {
    /// Events accepted for publishing.
    pub messages: u64,
    /// Events written to subscribers.
    pub deliveries: u64,
    /// Bytes written to subscribers.
    pub bytes_out: u64,
    /// The most concurrent subscriber connections seen.
    pub peak_connections: u64,
}

/// A day's row of [`Store::usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageDay {
    /// The UTC day.
    pub date: Date,
    /// Its use.
    #[serde(flatten)]
    pub usage: DailyUsage,
}

#[derive(FromRow)]
struct UsageRow {
    day: i64,
    messages: i64,
    deliveries: i64,
    bytes_out: i64,
    peak_connections: i64,
}

/// The UTC day of `t`, in days since the unix epoch.
pub fn day_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}

fn date_of_day(day: i64) -> Result<Date, sqlx::Error> {
    let t =
        OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400)).map_err(decode_error)?;
    Ok(t.date())
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Adds `delta` to the tenant's use on `day` (days since the epoch, UTC); `peak_connections`
    /// becomes the larger of the stored and the given peak. Unknown tenants are `NotFound`.
    pub async fn record_usage(
        &self,
        tenant: TenantId,
        day: i64,
        delta: DailyUsage,
    ) -> Result<(), StoreError> {
        sqlx::query(
            r#"
            insert into usage_daily
                (tenant_id, day, messages, deliveries, bytes_out, peak_connections)
            values ($1, $2, $3, $4, $5, $6)
            on conflict (tenant_id, day) do update
            set messages = usage_daily.messages + excluded.messages,
                deliveries = usage_daily.deliveries + excluded.deliveries,
                bytes_out = usage_daily.bytes_out + excluded.bytes_out,
                peak_connections = case
                    when excluded.peak_connections > usage_daily.peak_connections
                    then excluded.peak_connections
                    else usage_daily.peak_connections
                end
            "#,
        )
        .bind(tenant.0)
        .bind(day)
        .bind(to_i64(delta.messages))
        .bind(to_i64(delta.deliveries))
        .bind(to_i64(delta.bytes_out))
        .bind(to_i64(delta.peak_connections))
        .execute(&self.pool)
        .await
        .map_err(not_found_on_missing_parent)?;
        Ok(())
    }

    /// The tenant's use over the last `days` UTC days, today included, oldest first, with a row
    /// (of zeros where nothing happened) for every day.
    pub async fn usage(&self, tenant: TenantId, days: u32) -> Result<Vec<UsageDay>, StoreError> {
        let today = day_of(OffsetDateTime::now_utc());
        let first = today - i64::from(days.max(1)) + 1;
        let rows = select_usage(&self.pool, tenant, first).await?;
        let mut out = Vec::with_capacity(days as usize);
        for day in first..=today {
            let usage = rows
                .iter()
                .find(|r| r.day == day)
                .map(|r| DailyUsage {
                    messages: count(r.messages),
                    deliveries: count(r.deliveries),
                    bytes_out: count(r.bytes_out),
                    peak_connections: count(r.peak_connections),
                })
                .unwrap_or_default();
            out.push(UsageDay {
                date: date_of_day(day)?,
                usage,
            });
        }
        Ok(out)
    }

    /// Records a login attempt from `ip` for `email` (any string: unknown emails count too) as
    /// failed, before the password is checked, so that concurrent attempts cannot all pass the
    /// throttle; [`Store::forget_login_attempt`] takes it back when the login succeeds.
    pub async fn record_login_failure(&self, ip: &str, email: &str) -> Result<Attempt, StoreError> {
        self.record_attempt(&[format!("ip:{ip}"), email_key(email)])
            .await
    }

    /// Takes back an attempt recorded by [`Store::record_login_failure`].
    pub async fn forget_login_attempt(
        &self,
        ip: &str,
        email: &str,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        self.forget_attempt(&[format!("ip:{ip}"), email_key(email)], attempt)
            .await
    }

    /// Records a sign-up attempt from `ip`, before it is made.
    pub async fn record_signup(&self, ip: &str) -> Result<Attempt, StoreError> {
        self.record_attempt(&[format!("signup:{ip}")]).await
    }

    /// Takes back a sign-up attempt that was refused for its rate.
    pub async fn forget_signup(&self, ip: &str, attempt: Attempt) -> Result<(), StoreError> {
        self.forget_attempt(&[format!("signup:{ip}")], attempt)
            .await
    }

    /// Sign-ups from `ip` within `window` (at most an hour), and the oldest one's time.
    pub async fn signups(
        &self,
        ip: &str,
        window: Duration,
    ) -> Result<(u32, Option<OffsetDateTime>), StoreError> {
        let since = now_ms().saturating_sub(duration_ms(window));
        let (n, oldest) = select_failures(&self.pool, &format!("signup:{ip}"), since).await?;
        Ok((
            u32::try_from(n).unwrap_or(u32::MAX),
            oldest.map(crate::clock::from_ms).transpose()?,
        ))
    }

    async fn record_attempt(&self, keys: &[String]) -> Result<Attempt, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for key in keys {
            sqlx::query(r#"insert into login_failures (key, at) values ($1, $2)"#)
                .bind(key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        // Forget what no window can need any more, so the table stays small.
        sqlx::query(r#"delete from login_failures where at < $1"#)
            .bind(now.saturating_sub(3_600_000))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Attempt(now))
    }

    /// Deletes the attempt's rows (and any other of the same keys in the same millisecond: an
    /// undercount of at most a few, never an overcount).
    async fn forget_attempt(&self, keys: &[String], attempt: Attempt) -> Result<(), StoreError> {
        for key in keys {
            sqlx::query(r#"delete from login_failures where key = $1 and at = $2"#)
                .bind(key)
                .bind(attempt.0)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// How many logins failed within `window` from `ip` and for `email`, and the time of the
    /// oldest of them in the window (from which the window frees up), per key.
    pub async fn login_failures(
        &self,
        ip: &str,
        email: &str,
        window: Duration,
    ) -> Result<[(u32, Option<OffsetDateTime>); 2], StoreError> {
        let since = now_ms().saturating_sub(duration_ms(window));
        let mut out = [(0, None), (0, None)];
        for (slot, key) in out.iter_mut().zip([format!("ip:{ip}"), email_key(email)]) {
            let (n, oldest) = select_failures(&self.pool, &key, since).await?;
            *slot = (
                u32::try_from(n).unwrap_or(u32::MAX),
                oldest.map(crate::clock::from_ms).transpose()?,
            );
        }
        Ok(out)
    }
}

/// A recorded attempt (its time), to take back.
#[derive(Debug, Clone, Copy)]
pub struct Attempt(i64);

/// Emails are not stored in the clear for throttling: the key is a hash of the lowercased address.
fn email_key(email: &str) -> String {
    format!(
        "email:{:x}",
        Sha256::digest(email.trim().to_lowercase().as_bytes())
    )
}

async fn select_usage(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    first_day: i64,
) -> sqlx::Result<Vec<UsageRow>> {
    sqlx::query_as(
        r#"
        select day, messages, deliveries, bytes_out, peak_connections
        from usage_daily
        where tenant_id = $1 and day >= $2
        order by day
        "#,
    )
    .bind(tenant.0)
    .bind(first_day)
    .fetch_all(e)
    .await
}

async fn select_failures(
    e: impl AnyExecutor<'_>,
    key: &str,
    since: i64,
) -> sqlx::Result<(i64, Option<i64>)> {
    sqlx::query_as(r#"select count(*), min(at) from login_failures where key = $1 and at > $2"#)
        .bind(key)
        .bind(since)
        .fetch_one(e)
        .await
}
