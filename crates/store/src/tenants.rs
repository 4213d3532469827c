//! Tenants and who may administer them.
//!
//! A tenant is visible to an account only through a membership: [`Store::membership`] answers
//! `None` alike for a tenant that does not exist and for one the account is not a member of, so
//! the API can answer 404 to both without revealing which slugs are taken.

use std::fmt;

use herald_core::{InvalidName, TenantSlug};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyExecutor;
use sqlx::FromRow;
use time::OffsetDateTime;

use crate::clock::{from_ms, from_ms_opt, now_ms};
use crate::error::{conflict_on, decode_error, not_found_on_missing_parent};
use crate::{AccountId, Store, StoreError, TenantId};

/// A customer's isolated space: its channels, keys and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// Assigned by the database; internal.
    pub id: TenantId,
    /// Globally unique; names the tenant in every URL.
    pub slug: TenantSlug,
    /// A display name.
    pub name: String,
    /// The name of the tenant's plan; `free` unless an operator changed it.
    pub plan: String,
    /// Origins allowed to read the tenant's streams from a browser; `["*"]` by default.
    pub allowed_origins: Vec<String>,
    /// When the tenant was suspended; `None` for an active tenant.
    #[serde(with = "time::serde::rfc3339::option")]
    pub suspended_at: Option<OffsetDateTime>,
    /// When the tenant was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What a member may do in a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including deleting the tenant; whoever created it.
    Owner,
    /// Manage keys, channels and settings.
    Admin,
    /// Read only.
    Viewer,
}

impl Role {
    /// The role's name, as stored and serialised.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// The role with this name.
    pub fn parse(s: &str) -> Result<Role, InvalidName> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            _ => Err(InvalidName {
                what: "role",
                reason: "must be owner, admin or viewer",
            }),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant as one of its members sees it: the tenant and the member's role in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// The tenant.
    pub tenant: Tenant,
    /// The account's role in it.
    pub role: Role,
}

#[derive(FromRow)]
pub(crate) struct TenantRow {
    id: i64,
    slug: String,
    name: String,
    plan: String,
    allowed_origins: String,
    suspended_at: Option<i64>,
    created_at: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = sqlx::Error;

    fn try_from(row: TenantRow) -> Result<Self, Self::Error> {
        Ok(Tenant {
            id: TenantId(row.id),
            slug: TenantSlug::parse(&row.slug).map_err(decode_error)?,
            name: row.name,
            plan: row.plan,
            allowed_origins: serde_json::from_str(&row.allowed_origins).map_err(decode_error)?,
            suspended_at: from_ms_opt(row.suspended_at)?,
            created_at: from_ms(row.created_at)?,
        })
    }
}

#[derive(FromRow)]
struct MembershipRow {
    #[sqlx(flatten)]
    tenant: TenantRow,
    role: String,
}

impl TryFrom<MembershipRow> for Membership {
    type Error = sqlx::Error;

    fn try_from(row: MembershipRow) -> Result<Self, Self::Error> {
        Ok(Membership {
            tenant: row.tenant.try_into()?,
            role: Role::parse(&row.role).map_err(decode_error)?,
        })
    }
}

impl Store {
    /// Creates a tenant owned by `owner`, in one transaction with the owner's membership.
    ///
    /// A taken slug is `Conflict("slug")`; an owner that does not exist is `NotFound`.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %owner, tenant = %slug))]
    pub async fn create_tenant(
        &self,
        owner: AccountId,
        slug: &TenantSlug,
        name: &str,
    ) -> Result<Tenant, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let tenant: Tenant = insert_tenant(&mut *tx, slug, name, now)
            .await
            .map_err(conflict_on("slug"))?
            .try_into()?;
        insert_membership(&mut *tx, tenant.id, owner, Role::Owner, now)
            .await
            .map_err(not_found_on_missing_parent)?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant.id, "tenant created");
        Ok(tenant)
    }

    /// Every tenant `account` is a member of, oldest first, with its role.
    pub async fn tenants_of(&self, account: AccountId) -> Result<Vec<Membership>, StoreError> {
        let rows = select_memberships(&self.pool, account).await?;
        Ok(rows
            .into_iter()
            .map(Membership::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// The tenant `slug` with `account`'s role in it; `None` when the tenant does not exist and
    /// when the account is not a member of it.
    pub async fn membership(
        &self,
        account: AccountId,
        slug: &TenantSlug,
    ) -> Result<Option<Membership>, StoreError> {
        let row = select_membership(&self.pool, account, slug).await?;
        Ok(row.map(Membership::try_from).transpose()?)
    }

    /// The tenant `slug`, whoever asks. For the edge and for operators, not for account-facing APIs.
    pub async fn tenant_by_slug(&self, slug: &TenantSlug) -> Result<Option<Tenant>, StoreError> {
        let row = select_tenant_by_slug(&self.pool, slug).await?;
        Ok(row.map(Tenant::try_from).transpose()?)
    }
}

pub(crate) async fn insert_tenant(
    e: impl AnyExecutor<'_>,
    slug: &TenantSlug,
    name: &str,
    now: i64,
) -> sqlx::Result<TenantRow> {
    sqlx::query_as(
        r#"
        insert into tenants (slug, name, created_at)
        values ($1, $2, $3)
        returning id, slug, name, plan, allowed_origins, suspended_at, created_at
        "#,
    )
    .bind(slug.as_str())
    .bind(name)
    .bind(now)
    .fetch_one(e)
    .await
}

pub(crate) async fn insert_membership(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    account: AccountId,
    role: Role,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"
        insert into memberships (tenant_id, account_id, role, created_at)
        values ($1, $2, $3, $4)
        "#,
    )
    .bind(tenant.0)
    .bind(account.0)
    .bind(role.as_str())
    .bind(now)
    .execute(e)
    .await?;
    Ok(())
}

async fn select_memberships(
    e: impl AnyExecutor<'_>,
    account: AccountId,
) -> sqlx::Result<Vec<MembershipRow>> {
    sqlx::query_as(
        r#"
        select t.id, t.slug, t.name, t.plan, t.allowed_origins, t.suspended_at, t.created_at, m.role
        from memberships m
        join tenants t on t.id = m.tenant_id
        where m.account_id = $1
        order by t.id
        "#,
    )
    .bind(account.0)
    .fetch_all(e)
    .await
}

async fn select_membership(
    e: impl AnyExecutor<'_>,
    account: AccountId,
    slug: &TenantSlug,
) -> sqlx::Result<Option<MembershipRow>> {
    sqlx::query_as(
        r#"
        select t.id, t.slug, t.name, t.plan, t.allowed_origins, t.suspended_at, t.created_at, m.role
        from memberships m
        join tenants t on t.id = m.tenant_id
        where m.account_id = $1 and t.slug = $2
        "#,
    )
    .bind(account.0)
    .bind(slug.as_str())
    .fetch_optional(e)
    .await
}

async fn select_tenant_by_slug(
    e: impl AnyExecutor<'_>,
    slug: &TenantSlug,
) -> sqlx::Result<Option<TenantRow>> {
    sqlx::query_as(
        r#"
        select id, slug, name, plan, allowed_origins, suspended_at, created_at
        from tenants
        where slug = $1
        "#,
    )
    .bind(slug.as_str())
    .fetch_optional(e)
    .await
}
