//! Tenants and who may administer them.
//!
//! A tenant is visible to an account only through a membership: [`Store::membership`] answers
//! `None` alike for a tenant that does not exist and for one the account is not a member of, so
//! the API can answer 404 to both without revealing which slugs are taken.

use std::fmt;

use std::time::Duration;

use herald_core::{Email, InvalidName, TenantSlug};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyExecutor;
use sqlx::FromRow;
use time::OffsetDateTime;

use crate::channels::{ChannelSettings, SettingsRow};
use crate::clock::{duration_ms, from_ms, from_ms_opt, now_ms};
use crate::error::{conflict_on, decode_error, not_found_on_missing_parent};
use crate::signing_keys::insert_signing_key;
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
    /// What a channel without settings of its own uses.
    pub channel_defaults: ChannelSettings,
    /// Raised whenever one of the tenant's channels gets, changes or loses settings of its own:
    /// a channel's cached settings hold while the tenant carries the counter they were read
    /// under. Internal, never shown.
    #[serde(skip)]
    pub channels_version: i64,
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

/// A member of a tenant, as the tenant's members list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The member's account id.
    pub account_id: AccountId,
    /// The member's email.
    pub email: Email,
    /// What the member may do.
    pub role: Role,
    /// When the account became a member.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(FromRow)]
struct MemberRow {
    account_id: i64,
    email: String,
    role: String,
    created_at: i64,
}

impl TryFrom<MemberRow> for Member {
    type Error = sqlx::Error;

    fn try_from(row: MemberRow) -> Result<Self, Self::Error> {
        Ok(Member {
            account_id: AccountId(row.account_id),
            email: Email::parse(&row.email).map_err(decode_error)?,
            role: Role::parse(&row.role).map_err(decode_error)?,
            created_at: from_ms(row.created_at)?,
        })
    }
}

/// The changes a PATCH of a tenant makes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    /// A new display name.
    pub name: Option<String>,
    /// New allowed origins (`["*"]` for any).
    pub allowed_origins: Option<Vec<String>>,
    /// New channel defaults.
    pub channel_defaults: Option<ChannelSettings>,
}

/// How long a deleted tenant's slug stays unavailable to new tenants.
pub const SLUG_QUARANTINE: Duration = Duration::from_secs(30 * 86_400);

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
    channels_version: i64,
    #[sqlx(flatten)]
    defaults: SettingsRow,
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
            channel_defaults: row.defaults.try_into()?,
            channels_version: row.channels_version,
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
    /// Creates a tenant owned by `owner`, in one transaction with the owner's membership and the
    /// tenant's first signing key.
    ///
    /// A taken slug, or the slug of a tenant deleted less than 30 days ago, is `Conflict("slug")`;
    /// an owner that does not exist is `NotFound`.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %owner, tenant = %slug))]
    pub async fn create_tenant(
        &self,
        owner: AccountId,
        slug: &TenantSlug,
        name: &str,
    ) -> Result<Tenant, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let tenant = create_tenant_in(&mut tx, slug, name, now, self.secrets.as_ref()).await?;
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

    /// Every tenant, oldest first. For operators.
    pub async fn all_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = select_all_tenants(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(Tenant::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// Applies `patch` to the tenant and returns it as it now is. `NotFound` when it does not exist.
    pub async fn update_tenant(
        &self,
        tenant: TenantId,
        patch: &TenantPatch,
    ) -> Result<Tenant, StoreError> {
        let origins = patch
            .allowed_origins
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|err| StoreError::Internal(Box::new(err)))?;
        let defaults = patch.channel_defaults.as_ref();
        let row = update_tenant(
            &self.pool,
            tenant,
            patch.name.as_deref(),
            origins.as_deref(),
            defaults,
        )
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(row.try_into()?)
    }

    /// Deletes the tenant and everything it owns (keys, channels, members, signing keys, usage,
    /// audit), and keeps its slug from being taken again for 30 days. `NotFound` when it does
    /// not exist. Streams and history live in the broker: the caller ends and removes them.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant_id = %tenant))]
    pub async fn delete_tenant(&self, tenant: TenantId) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let slug = delete_tenant_row(&mut *tx, tenant)
            .await?
            .ok_or(StoreError::NotFound)?;
        retire_slug(
            &mut *tx,
            &slug,
            now.saturating_add(duration_ms(SLUG_QUARANTINE)),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(tenant = %slug, "tenant deleted");
        Ok(())
    }

    /// Sets the tenant's plan (an operator's action). `NotFound` when it does not exist.
    pub async fn set_plan(&self, slug: &TenantSlug, plan: &str) -> Result<Tenant, StoreError> {
        let row = update_plan(&self.pool, slug, plan)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row.try_into()?)
    }

    /// Suspends (`true`) or resumes (`false`) the tenant. Suspending a suspended tenant keeps the
    /// first suspension time. `NotFound` when it does not exist.
    pub async fn set_suspended(
        &self,
        slug: &TenantSlug,
        suspended: bool,
    ) -> Result<Tenant, StoreError> {
        let at = suspended.then(now_ms);
        let row = update_suspended(&self.pool, slug, at)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row.try_into()?)
    }

    /// The tenant's members, oldest first.
    pub async fn members(&self, tenant: TenantId) -> Result<Vec<Member>, StoreError> {
        let rows = select_members(&self.pool, tenant).await?;
        Ok(rows
            .into_iter()
            .map(Member::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// Makes the existing account `email` a member of the tenant with `role`. `NotFound` when no
    /// account has this email; `Conflict("member")` when it is a member already.
    pub async fn add_member(
        &self,
        tenant: TenantId,
        email: &Email,
        role: Role,
    ) -> Result<Member, StoreError> {
        let now = now_ms();
        let account: i64 = sqlx::query_scalar(
            r#"
            insert into memberships (tenant_id, account_id, role, created_at)
            select $1, id, $3, $4 from accounts where email = $2
            returning account_id
            "#,
        )
        .bind(tenant.0)
        .bind(email.as_str())
        .bind(role.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| {
            if crate::error::is_unique_violation(&err) {
                StoreError::Conflict("member")
            } else {
                not_found_on_missing_parent(err)
            }
        })?
        .ok_or(StoreError::NotFound)?;
        let account = AccountId(account);
        Ok(Member {
            account_id: account,
            email: email.clone(),
            role,
            created_at: from_ms(now)?,
        })
    }

    /// Ends `account`'s membership of the tenant, unless it is the tenant's last owner.
    /// `NotFound` when it is not a member.
    ///
    /// The owner count and the removal are one transaction that first writes the tenant's row
    /// (so SQLite takes its write lock at once, and on Postgres the row lock makes a concurrent
    /// removal wait, then count again with what this one committed): two owners removing each
    /// other at once leave one, never none.
    pub async fn remove_member(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<MemberRemoval, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(r#"update tenants set name = name where id = $1"#)
            .bind(tenant.0)
            .execute(&mut *tx)
            .await?;
        let members = select_members(&mut *tx, tenant).await?;
        let owners = members.iter().filter(|m| m.role == "owner").count();
        let row = members
            .into_iter()
            .find(|m| m.account_id == account.0)
            .ok_or(StoreError::NotFound)?;
        let member = Member::try_from(row)?;
        if member.role == Role::Owner && owners <= 1 {
            return Ok(MemberRemoval::LastOwner);
        }
        sqlx::query(r#"delete from memberships where tenant_id = $1 and account_id = $2"#)
            .bind(tenant.0)
            .bind(account.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MemberRemoval::Removed(member))
    }
}

/// What [`Store::remove_member`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRemoval {
    /// The member is gone.
    Removed(Member),
    /// Nothing: the member is the tenant's last owner.
    LastOwner,
}

/// Inserts a tenant and its first signing key, refusing a slug in quarantine.
pub(crate) async fn create_tenant_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    slug: &TenantSlug,
    name: &str,
    now: i64,
    secrets: Option<&crate::SecretsKey>,
) -> Result<Tenant, StoreError> {
    // Write first: on SQLite a transaction that reads and then writes fails at once, instead of
    // waiting, when another connection is writing.
    let tenant: Tenant = insert_tenant(&mut **tx, slug, name, now)
        .await
        .map_err(conflict_on("slug"))?
        .try_into()?;
    let retired: Option<i64> = sqlx::query_scalar(
        r#"select reusable_at from retired_slugs where slug = $1 and reusable_at > $2"#,
    )
    .bind(slug.as_str())
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    if retired.is_some() {
        // The caller's transaction is rolled back when dropped.
        return Err(StoreError::Conflict("slug"));
    }
    insert_signing_key(tx, tenant.id, now, secrets).await?;
    Ok(tenant)
}

/// The columns of a [`TenantRow`], from `tenants` aliased `t`.
const TENANT_COLUMNS: &str = "t.id, t.slug, t.name, t.plan, t.allowed_origins, t.suspended_at, \
     t.created_at, t.channels_version, t.default_visibility as visibility, t.default_history_size as history_size, \
     t.default_history_ttl_seconds as history_ttl_seconds";

/// The same columns for a `returning` clause, where the table has no alias.
const RETURNING_TENANT: &str = "id, slug, name, plan, allowed_origins, suspended_at, created_at, \
     channels_version, default_visibility as visibility, default_history_size as history_size, \
     default_history_ttl_seconds as history_ttl_seconds";

pub(crate) async fn insert_tenant(
    e: impl AnyExecutor<'_>,
    slug: &TenantSlug,
    name: &str,
    now: i64,
) -> sqlx::Result<TenantRow> {
    sqlx::query_as(&format!(
        r#"
        insert into tenants (slug, name, created_at)
        values ($1, $2, $3)
        returning {RETURNING_TENANT}
        "#
    ))
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
    sqlx::query_as(&format!(
        r#"
        select {TENANT_COLUMNS}, m.role
        from memberships m
        join tenants t on t.id = m.tenant_id
        where m.account_id = $1
        order by t.id
        "#
    ))
    .bind(account.0)
    .fetch_all(e)
    .await
}

async fn select_membership(
    e: impl AnyExecutor<'_>,
    account: AccountId,
    slug: &TenantSlug,
) -> sqlx::Result<Option<MembershipRow>> {
    sqlx::query_as(&format!(
        r#"
        select {TENANT_COLUMNS}, m.role
        from memberships m
        join tenants t on t.id = m.tenant_id
        where m.account_id = $1 and t.slug = $2
        "#
    ))
    .bind(account.0)
    .bind(slug.as_str())
    .fetch_optional(e)
    .await
}

async fn select_tenant_by_slug(
    e: impl AnyExecutor<'_>,
    slug: &TenantSlug,
) -> sqlx::Result<Option<TenantRow>> {
    sqlx::query_as(&format!(
        r#"select {TENANT_COLUMNS} from tenants t where t.slug = $1"#
    ))
    .bind(slug.as_str())
    .fetch_optional(e)
    .await
}

async fn select_all_tenants(e: impl AnyExecutor<'_>) -> sqlx::Result<Vec<TenantRow>> {
    sqlx::query_as(&format!(
        r#"select {TENANT_COLUMNS} from tenants t order by t.id"#
    ))
    .fetch_all(e)
    .await
}

async fn update_tenant(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
    name: Option<&str>,
    allowed_origins: Option<&str>,
    defaults: Option<&ChannelSettings>,
) -> sqlx::Result<Option<TenantRow>> {
    sqlx::query_as(&format!(
        r#"
        update tenants
        set name = coalesce($2, name),
            allowed_origins = coalesce($3, allowed_origins),
            default_visibility = coalesce($4, default_visibility),
            default_history_size = coalesce($5, default_history_size),
            default_history_ttl_seconds = coalesce($6, default_history_ttl_seconds)
        where id = $1
        returning {RETURNING_TENANT}
        "#
    ))
    .bind(tenant.0)
    .bind(name)
    .bind(allowed_origins)
    .bind(defaults.map(|d| d.visibility.as_str()))
    .bind(defaults.map(|d| i64::from(d.history_size)))
    .bind(defaults.map(|d| i64::from(d.history_ttl_seconds)))
    .fetch_optional(e)
    .await
}

async fn delete_tenant_row(
    e: impl AnyExecutor<'_>,
    tenant: TenantId,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(r#"delete from tenants where id = $1 returning slug"#)
        .bind(tenant.0)
        .fetch_optional(e)
        .await
}

async fn retire_slug(e: impl AnyExecutor<'_>, slug: &str, reusable_at: i64) -> sqlx::Result<()> {
    sqlx::query(
        r#"
        insert into retired_slugs (slug, reusable_at) values ($1, $2)
        on conflict (slug) do update set reusable_at = excluded.reusable_at
        "#,
    )
    .bind(slug)
    .bind(reusable_at)
    .execute(e)
    .await?;
    Ok(())
}

async fn update_plan(
    e: impl AnyExecutor<'_>,
    slug: &TenantSlug,
    plan: &str,
) -> sqlx::Result<Option<TenantRow>> {
    sqlx::query_as(&format!(
        r#"update tenants set plan = $2 where slug = $1 returning {RETURNING_TENANT}"#
    ))
    .bind(slug.as_str())
    .bind(plan)
    .fetch_optional(e)
    .await
}

async fn update_suspended(
    e: impl AnyExecutor<'_>,
    slug: &TenantSlug,
    at: Option<i64>,
) -> sqlx::Result<Option<TenantRow>> {
    // Resuming clears the time; suspending keeps an earlier one.
    sqlx::query_as(&format!(
        r#"
        update tenants
        set suspended_at = case when $2 is null then null else coalesce(suspended_at, $2) end
        where slug = $1
        returning {RETURNING_TENANT}
        "#
    ))
    .bind(slug.as_str())
    .bind(at)
    .fetch_optional(e)
    .await
}

async fn select_members(e: impl AnyExecutor<'_>, tenant: TenantId) -> sqlx::Result<Vec<MemberRow>> {
    sqlx::query_as(
        r#"
        select a.id as account_id, a.email, m.role, m.created_at
        from memberships m
        join accounts a on a.id = m.account_id
        where m.tenant_id = $1
        order by m.created_at, a.id
        "#,
    )
    .bind(tenant.0)
    .fetch_all(e)
    .await
}
