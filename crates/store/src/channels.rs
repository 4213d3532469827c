//! Channel settings: visibility and history retention.
//!
//! A channel needs no row to exist: publishing to a new name uses the tenant's channel defaults.
//! It gets a row of its own once it is created or patched through the admin API, and
//! [`Store::channel_settings`] answers with the row when there is one and the defaults otherwise.
//!
//! Every write of a channel's row raises its tenant's `channels_version` in the same transaction
//! ([`Tenant::channels_version`](crate::Tenant)): what lets the edges' cache trust a channel's
//! settings for as long as the tenant row says nothing changed.

use std::fmt;

use herald_core::{ChannelName, InvalidName};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyExecutor;
use sqlx::FromRow;
use time::OffsetDateTime;

use crate::clock::{from_ms, now_ms};
use crate::error::{decode_error, is_unique_violation, not_found_on_missing_parent};
use crate::{Store, StoreError, TenantId};

/// Who may subscribe to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Anyone who knows the URL.
    Public,
    /// Only with a subscriber token that grants the channel.
    Private,
}

impl Visibility {
    /// The visibility's name, as stored and serialised.
    pub const fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    /// The visibility with this name.
    pub fn parse(s: &str) -> Result<Visibility, InvalidName> {
        match s {
            "public" => Ok(Visibility::Public),
            "private" => Ok(Visibility::Private),
            _ => Err(InvalidName {
                what: "visibility",
                reason: "must be public or private",
            }),
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a channel behaves: who may subscribe and how much history it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSettings {
    /// Who may subscribe.
    pub visibility: Visibility,
    /// Events kept at most.
    pub history_size: u32,
    /// Events older than this many seconds are dropped.
    pub history_ttl_seconds: u32,
}

impl Default for ChannelSettings {
    /// The built-in defaults of a new tenant: public, 100 events, one day.
    fn default() -> Self {
        ChannelSettings {
            visibility: Visibility::Public,
            history_size: 100,
            history_ttl_seconds: 86_400,
        }
    }
}

/// A channel that has settings of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// The channel's name.
    pub name: ChannelName,
    /// Its settings.
    #[serde(flatten)]
    pub settings: ChannelSettings,
    /// When it was created (or first patched).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its settings last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(FromRow)]
pub(crate) struct SettingsRow {
    visibility: String,
    history_size: i64,
    history_ttl_seconds: i64,
}

impl TryFrom<SettingsRow> for ChannelSettings {
    type Error = sqlx::Error;

    fn try_from(row: SettingsRow) -> Result<Self, Self::Error> {
        Ok(ChannelSettings {
            visibility: Visibility::parse(&row.visibility).map_err(decode_error)?,
            history_size: u32::try_from(row.history_size).map_err(decode_error)?,
            history_ttl_seconds: u32::try_from(row.history_ttl_seconds).map_err(decode_error)?,
        })
    }
}

#[derive(FromRow)]
struct ChannelRow {
    name: String,
    #[sqlx(flatten)]
    settings: SettingsRow,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ChannelRow> for Channel {
    type Error = sqlx::Error;

    fn try_from(row: ChannelRow) -> Result<Self, Self::Error> {
        Ok(Channel {
            name: ChannelName::parse(&row.name).map_err(decode_error)?,
            settings: row.settings.try_into()?,
            created_at: from_ms(row.created_at)?,
            updated_at: from_ms(row.updated_at)?,
        })
    }
}

impl Store {
    /// The channel's settings: its own row if it was created or patched, else the tenant's
    /// channel defaults (public, 100, 86400 unless PATCHed on the tenant). `NotFound` when the
    /// tenant does not exist.
    pub async fn channel_settings(
        &self,
        tenant: TenantId,
        channel: &ChannelName,
    ) -> Result<ChannelSettings, StoreError> {
        if let Some(row) = select_channel(&self.pool, tenant, channel).await? {
            return Ok(Channel::try_from(row)?.settings);
        }
        self.channel_defaults(tenant).await
    }

    /// The tenant's channel defaults. `NotFound` when the tenant does not exist.
    pub async fn channel_defaults(&self, tenant: TenantId) -> Result<ChannelSettings, StoreError> {
        let row = select_defaults(&self.pool, tenant)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row.try_into()?)
    }

    /// The channels of `tenant` that have settings of their own, by name.
    pub async fn list_channels(&self, tenant: TenantId) -> Result<Vec<Channel>, StoreError> {
        let rows = select_channels(&self.pool, tenant).await?;
        Ok(rows
            .into_iter()
            .map(Channel::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// The channel `name` of `tenant` if it has settings of its own.
    pub async fn channel(
        &self,
        tenant: TenantId,
        name: &ChannelName,
    ) -> Result<Option<Channel>, StoreError> {
        let row = select_channel(&self.pool, tenant, name).await?;
        Ok(row.map(Channel::try_from).transpose()?)
    }

    /// Creates the channel `name` with `settings`. `Conflict("channel")` when it already has a
    /// row; `NotFound` when the tenant does not exist.
    pub async fn create_channel(
        &self,
        tenant: TenantId,
        name: &ChannelName,
        settings: &ChannelSettings,
    ) -> Result<Channel, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let row = write_channel(&mut *tx, tenant, name, settings, now, false)
            .await
            .map_err(|err| {
                if is_unique_violation(&err) {
                    StoreError::Conflict("channel")
                } else {
                    not_found_on_missing_parent(err)
                }
            })?;
        raise_channels_version(&mut *tx, tenant).await?;
        tx.commit().await?;
        Ok(row.try_into()?)
    }

    /// Stores `settings` as the channel's own, creating its row when it has none (a channel in
    /// use needs no creation). `NotFound` when the tenant does not exist.
    pub async fn put_channel(
        &self,
        tenant: TenantId,
        name: &ChannelName,
        settings: &ChannelSettings,
    ) -> Result<Channel, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = write_channel(&mut *tx, tenant, name, settings, now_ms(), true)
            .await
            .map_err(not_found_on_missing_parent)?;
        raise_channels_version(&mut *tx, tenant).await?;
        tx.commit().await?;
        Ok(row.try_into()?)
    }

    /// Deletes the channel's own settings; it falls back to the tenant's defaults. Returns
    /// whether it had a row.
    pub async fn delete_channel(
        &self,
        tenant: TenantId,
        name: &ChannelName,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let had_row = delete_channel(&mut *tx, tenant, name).await? > 0;
        if had_row {
            raise_channels_version(&mut *tx, tenant).await?;
        }
        tx.commit().await?;
        Ok(had_row)
    }

    /// Replaces the tenant's channel defaults. `NotFound` when the tenant does not exist.
    pub async fn set_channel_defaults(
        &self,
        tenant: TenantId,
        defaults: &ChannelSettings,
    ) -> Result<(), StoreError> {
        if update_defaults(&self.pool, tenant, defaults).await? == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

const CHANNEL_COLUMNS: &str =
    "name, visibility, history_size, history_ttl_seconds, created_at, updated_at";

async fn select_channel(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    name: &ChannelName,
) -> sqlx::Result<Option<ChannelRow>> {
    sqlx::query_as(&format!(
        r#"select {CHANNEL_COLUMNS} from channels where tenant_id = $1 and name = $2"#
    ))
    .bind(tenant.0)
    .bind(name.as_str())
    .fetch_optional(e)
    .await
}

async fn select_channels(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
) -> sqlx::Result<Vec<ChannelRow>> {
    sqlx::query_as(&format!(
        r#"select {CHANNEL_COLUMNS} from channels where tenant_id = $1 order by name"#
    ))
    .bind(tenant.0)
    .fetch_all(e)
    .await
}

async fn select_defaults(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
) -> sqlx::Result<Option<SettingsRow>> {
    sqlx::query_as(
        r#"
        select default_visibility as visibility, default_history_size as history_size,
               default_history_ttl_seconds as history_ttl_seconds
        from tenants
        where id = $1
        "#,
    )
    .bind(tenant.0)
    .fetch_optional(e)
    .await
}

/// Inserts the channel's row; with `replace`, an existing row takes the new settings instead of
/// failing on the unique key.
async fn write_channel(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    name: &ChannelName,
    s: &ChannelSettings,
    now: i64,
    replace: bool,
) -> sqlx::Result<ChannelRow> {
    let on_conflict = if replace {
        r#"
        on conflict (tenant_id, name) do update
        set visibility = excluded.visibility,
            history_size = excluded.history_size,
            history_ttl_seconds = excluded.history_ttl_seconds,
            updated_at = excluded.updated_at"#
    } else {
        ""
    };
    sqlx::query_as(&format!(
        r#"
        insert into channels
            (tenant_id, name, visibility, history_size, history_ttl_seconds, created_at, updated_at)
        values ($1, $2, $3, $4, $5, $6, $6){on_conflict}
        returning {CHANNEL_COLUMNS}
        "#
    ))
    .bind(tenant.0)
    .bind(name.as_str())
    .bind(s.visibility.as_str())
    .bind(i64::from(s.history_size))
    .bind(i64::from(s.history_ttl_seconds))
    .bind(now)
    .fetch_one(e)
    .await
}

async fn delete_channel(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    name: &ChannelName,
) -> sqlx::Result<u64> {
    let result = sqlx::query(r#"delete from channels where tenant_id = $1 and name = $2"#)
        .bind(tenant.0)
        .bind(name.as_str())
        .execute(e)
        .await?;
    Ok(result.rows_affected())
}

/// Tells the edges' caches that one of the tenant's channel rows changed (see the module doc).
async fn raise_channels_version(e: impl AnyExecutor<'_>, tenant: TenantId) -> sqlx::Result<()> {
    sqlx::query(r#"update tenants set channels_version = channels_version + 1 where id = $1"#)
        .bind(tenant.0)
        .execute(e)
        .await?;
    Ok(())
}

async fn update_defaults(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    s: &ChannelSettings,
) -> sqlx::Result<u64> {
    let result = sqlx::query(
        r#"
        update tenants
        set default_visibility = $2, default_history_size = $3, default_history_ttl_seconds = $4
        where id = $1
        "#,
    )
    .bind(tenant.0)
    .bind(s.visibility.as_str())
    .bind(i64::from(s.history_size))
    .bind(i64::from(s.history_ttl_seconds))
    .execute(e)
    .await?;
    Ok(result.rows_affected())
}
