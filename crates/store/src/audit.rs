//! The audit log: every change to a tenant, who made it, from which address, and when.

use serde::Serialize;
use sqlx::any::AnyExecutor;
use sqlx::FromRow;
use time::OffsetDateTime;

use crate::clock::{from_ms, now_ms};
use crate::error::decode_error;
use crate::{Store, StoreError, TenantId};

/// One change, as the audit log shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Increasing with time; pages continue `before` the smallest id seen.
    pub id: i64,
    /// Who: `account:<email>`, `key:<key id>` or `operator`.
    pub actor: String,
    /// What, as `<resource>.<verb>`: `channel.update`, `key.revoke`, ...
    pub action: String,
    /// What it was applied to, when not the tenant itself: a channel name, a key id...
    pub target: Option<String>,
    /// The client's IP address, when the change came over HTTP.
    pub ip: Option<String>,
    /// Details of the change, such as the fields a PATCH set.
    pub details: Option<serde_json::Value>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A change to record; see [`AuditEntry`] for the fields.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    /// Who made the change.
    pub actor: &'a str,
    /// What the change was.
    pub action: &'a str,
    /// What it was applied to.
    pub target: Option<&'a str>,
    /// From which IP address.
    pub ip: Option<&'a str>,
    /// Details, as a JSON value.
    pub details: Option<serde_json::Value>,
}

#[derive(FromRow)]
struct AuditRow {
    id: i64,
    actor: String,
    action: String,
    target: Option<String>,
    ip: Option<String>,
    details: Option<String>,
    at: i64,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = sqlx::Error;

    fn try_from(row: AuditRow) -> Result<Self, Self::Error> {
        Ok(AuditEntry {
            id: row.id,
            actor: row.actor,
            action: row.action,
            target: row.target,
            ip: row.ip,
            details: row
                .details
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(decode_error)?,
            at: from_ms(row.at)?,
        })
    }
}

impl Store {
    /// Records a change to `tenant`. `NotFound` when the tenant does not exist.
    pub async fn audit(
        &self,
        tenant: TenantId,
        entry: NewAuditEntry<'_>,
    ) -> Result<(), StoreError> {
        let details = entry.details.as_ref().map(|d| d.to_string());
        sqlx::query(
            r#"
            insert into audit_log (tenant_id, actor, action, target, ip, details, at)
            values ($1, $2, $3, $4, $5, $6, $7)
            "#,
        )
        .bind(tenant.0)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.target)
        .bind(entry.ip)
        .bind(details)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(crate::error::not_found_on_missing_parent)?;
        Ok(())
    }

    /// Up to `limit` of the tenant's audit entries with an id below `before` (all when `None`),
    /// newest first.
    pub async fn audit_log(
        &self,
        tenant: TenantId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = select_audit(&self.pool, tenant, before.unwrap_or(i64::MAX), limit).await?;
        Ok(rows
            .into_iter()
            .map(AuditEntry::try_from)
            .collect::<Result<_, _>>()?)
    }
}

async fn select_audit(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    before: i64,
    limit: u32,
) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as(
        r#"
        select id, actor, action, target, ip, details, at
        from audit_log
        where tenant_id = $1 and id < $2
        order by id desc
        limit $3
        "#,
    )
    .bind(tenant.0)
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(e)
    .await
}
