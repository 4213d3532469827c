//! Tenants: the ones a caller belongs to, new ones, their settings, deletion and members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_core::{Email, ErrorCode};
use herald_http::{ApiError, TenantPath};
use herald_replay::Target;
use herald_store::{AccountId, ChannelSettings, Member, Role, Tenant, TenantPatch, Visibility};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::accounts::{parse_new_tenant, NewTenant};
use crate::auth::{Access, Caller, Session, Who};
use crate::AdminState;
use herald_http::Json;

/// Longest history TTL a channel may have: 30 days.
pub const MAX_HISTORY_TTL_SECONDS: u32 = 30 * 86_400;

/// A channel's settings: who may subscribe and how much history it keeps.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"visibility": "public", "history_size": 100, "history_ttl_seconds": 86400}))]
pub struct ChannelSettingsView {
    /// `public`: anyone with the URL; `private`: only with a subscriber token that grants it.
    #[schema(value_type = VisibilityView)]
    pub visibility: Visibility,
    /// Events kept at most; at most the plan's `max_history_size`.
    pub history_size: u32,
    /// Events older than this many seconds are dropped.
    pub history_ttl_seconds: u32,
}

/// Who may subscribe to a channel.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "public")]
pub enum VisibilityView {
    /// Anyone who knows the URL.
    Public,
    /// Only with a subscriber token that grants the channel.
    Private,
}

impl From<VisibilityView> for Visibility {
    fn from(v: VisibilityView) -> Self {
        match v {
            VisibilityView::Public => Visibility::Public,
            VisibilityView::Private => Visibility::Private,
        }
    }
}

impl From<ChannelSettings> for ChannelSettingsView {
    fn from(s: ChannelSettings) -> Self {
        Self {
            visibility: s.visibility,
            history_size: s.history_size,
            history_ttl_seconds: s.history_ttl_seconds,
        }
    }
}

/// A member's role in a tenant.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[schema(example = "admin")]
pub enum RoleView {
    /// Everything, including deleting the tenant and managing members.
    Owner,
    /// Manage keys, channels and settings.
    Admin,
    /// Read only.
    Viewer,
}

impl From<Role> for RoleView {
    fn from(r: Role) -> Self {
        match r {
            Role::Owner => RoleView::Owner,
            Role::Admin => RoleView::Admin,
            Role::Viewer => RoleView::Viewer,
        }
    }
}

/// A tenant as the admin API shows it to one of its members.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "slug": "acme", "name": "Acme", "plan": "free", "allowed_origins": ["*"],
    "suspended_at": null, "created_at": "2026-03-01T12:00:00Z", "role": "owner",
    "channel_defaults": {"visibility": "public", "history_size": 100, "history_ttl_seconds": 86400}
}))]
pub struct TenantView {
    /// Globally unique; names the tenant in every URL.
    slug: String,
    /// A display name.
    name: String,
    /// The tenant's plan; an operator changes it.
    plan: String,
    /// Origins whose pages may read the tenant's streams; `["*"]` for any.
    allowed_origins: Vec<String>,
    /// When an operator suspended the tenant; `null` while it is active.
    #[serde(with = "time::serde::rfc3339::option")]
    suspended_at: Option<OffsetDateTime>,
    /// When the tenant was created.
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// The caller's role in the tenant (an admin API key acts as `admin`).
    role: RoleView,
    /// What a channel without settings of its own uses.
    channel_defaults: ChannelSettingsView,
}

impl TenantView {
    /// The view of `t` for a member with `role`.
    pub fn new(t: Tenant, role: Role) -> Self {
        Self {
            slug: t.slug.into_inner(),
            name: t.name,
            plan: t.plan,
            allowed_origins: t.allowed_origins,
            suspended_at: t.suspended_at,
            created_at: t.created_at,
            role: role.into(),
            channel_defaults: t.channel_defaults.into(),
        }
    }
}

/// Changes to channel settings; absent fields stay as they are.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"visibility": "private", "history_size": 500}))]
pub struct SettingsPatch {
    /// `public` or `private`.
    pub visibility: Option<VisibilityView>,
    /// Events kept at most: 1 to the plan's `max_history_size`.
    #[schema(minimum = 1)]
    pub history_size: Option<u32>,
    /// Seconds an event is kept: 1 to 2592000 (30 days).
    #[schema(minimum = 1, maximum = 2592000)]
    pub history_ttl_seconds: Option<u32>,
}

impl SettingsPatch {
    /// `base` with these changes, checked against the plan.
    pub fn apply(
        &self,
        base: ChannelSettings,
        state: &AdminState,
        tenant: &Tenant,
    ) -> Result<ChannelSettings, ApiError> {
        let mut s = base;
        if let Some(v) = self.visibility {
            s.visibility = v.into();
        }
        if let Some(n) = self.history_size {
            s.history_size = n;
        }
        if let Some(t) = self.history_ttl_seconds {
            s.history_ttl_seconds = t;
        }
        check_settings(&s, state, tenant)?;
        Ok(s)
    }
}

/// A channel's settings must stay within the tenant's plan.
pub fn check_settings(
    s: &ChannelSettings,
    state: &AdminState,
    tenant: &Tenant,
) -> Result<(), ApiError> {
    let max = state.plan(&tenant.plan).max_history_size;
    if s.history_size == 0 || s.history_size > max {
        return Err(ApiError::invalid_body(format!(
            "history_size must be 1 to {max}, the plan's max_history_size"
        )));
    }
    if s.history_ttl_seconds == 0 || s.history_ttl_seconds > MAX_HISTORY_TTL_SECONDS {
        return Err(ApiError::invalid_body(format!(
            "history_ttl_seconds must be 1 to {MAX_HISTORY_TTL_SECONDS}"
        )));
    }
    Ok(())
}

/// A PATCH of a tenant: every field is optional.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme Inc.", "allowed_origins": ["https://acme.example"],
    "channel_defaults": {"visibility": "private"}}))]
pub struct TenantPatchBody {
    /// A new display name, 1 to 100 characters.
    name: Option<String>,
    /// Origins (`https://host[:port]`) whose pages may read the streams, or `["*"]` for any.
    allowed_origins: Option<Vec<String>>,
    /// Changes to the channel defaults.
    channel_defaults: Option<SettingsPatch>,
}

/// An origin as browsers send it: `http` or `https`, a host, an optional port, nothing else.
fn parse_origin(o: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::invalid_body(format!(
            "invalid origin {o:?}: expected scheme://host[:port] or *"
        ))
    };
    let (scheme, rest) = o.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.len() > 253 {
        return Err(bad());
    }
    let ok = rest
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return Err(bad());
    }
    Ok(o.to_ascii_lowercase())
}

fn parse_origins(list: &[String]) -> Result<Vec<String>, ApiError> {
    if list.is_empty() || list.len() > 100 {
        return Err(ApiError::invalid_body(
            "allowed_origins needs 1 to 100 entries (use [\"*\"] for any origin)",
        ));
    }
    if list.iter().any(|o| o == "*") {
        if list.len() > 1 {
            return Err(ApiError::invalid_body(
                "\"*\" allows every origin and stands alone",
            ));
        }
        return Ok(vec!["*".to_owned()]);
    }
    list.iter().map(|o| parse_origin(o)).collect()
}

pub fn parse_name(name: &str, what: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_body(format!(
            "{what} must be 1 to 100 characters"
        )));
    }
    Ok(name.to_owned())
}

/// List the tenants the caller belongs to.
///
/// An admin API key sees its own tenant only.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", operation_id = "list_tenants",
    responses((status = 200, description = "The caller's tenants, oldest first", body = Vec<TenantView>)))]
pub async fn list(State(state): State<AdminState>, caller: Caller) -> Result<Response, ApiError> {
    let tenants: Vec<TenantView> = match &caller.who {
        Who::Account(account) => state
            .store
            .tenants_of(account.id)
            .await?
            .into_iter()
            .map(|m| TenantView::new(m.tenant, m.role))
            .collect(),
        Who::AdminKey { tenant, .. } => {
            let a = caller.tenant(&state, tenant).await?;
            vec![TenantView::new(a.tenant, a.role)]
        }
    };
    Ok(axum::Json(tenants).into_response())
}

/// Create a tenant owned by the logged-in account.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", operation_id = "create_tenant",
    request_body = NewTenant,
    responses((status = 201, description = "The new tenant", body = TenantView)))]
pub async fn create(
    State(state): State<AdminState>,
    session: Session,
    Json(body): Json<NewTenant>,
) -> Result<Response, ApiError> {
    let (slug, name) = parse_new_tenant(&body)?;
    let mut tenant = state
        .store
        .create_tenant(session.account.id, &slug, &name)
        .await?;
    tenant = apply_default_plan(&state, tenant).await?;
    tracing::info!(account = session.account.id.0, tenant = %tenant.slug, "tenant created");
    state.view.forget_tenant(&tenant.slug).await;
    Ok((
        StatusCode::CREATED,
        axum::Json(TenantView::new(tenant, Role::Owner)),
    )
        .into_response())
}

/// New tenants start on the configured default plan.
pub async fn apply_default_plan(state: &AdminState, tenant: Tenant) -> Result<Tenant, ApiError> {
    if tenant.plan == state.config.default_plan {
        return Ok(tenant);
    }
    Ok(state
        .store
        .set_plan(&tenant.slug, &state.config.default_plan)
        .await?)
}

/// Get a tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}", tag = "tenants", operation_id = "get_tenant",
    params(TenantPath),
    responses((status = 200, description = "The tenant", body = TenantView)))]
pub async fn get_one(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    Ok(axum::Json(TenantView::new(a.tenant, a.role)).into_response())
}

/// Change a tenant's name, allowed origins or channel defaults.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant}", tag = "tenants", operation_id = "patch_tenant",
    params(TenantPath), request_body = TenantPatchBody,
    responses((status = 200, description = "The tenant as it now is", body = TenantView)))]
pub async fn patch(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
    Json(body): Json<TenantPatchBody>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    a.require_writer()?;
    let patch = TenantPatch {
        name: body
            .name
            .as_deref()
            .map(|n| parse_name(n, "tenant name"))
            .transpose()?,
        allowed_origins: body
            .allowed_origins
            .as_deref()
            .map(parse_origins)
            .transpose()?,
        channel_defaults: body
            .channel_defaults
            .as_ref()
            .map(|p| p.apply(a.tenant.channel_defaults.clone(), &state, &a.tenant))
            .transpose()?,
    };
    let updated = state.store.update_tenant(a.tenant.id, &patch).await?;
    state.view.forget_tenant(&updated.slug).await;
    if patch.channel_defaults.is_some() {
        // Channels without settings of their own may have just turned private.
        state
            .recheck_streams(Target::Tenant(updated.slug.clone()))
            .await;
    }
    let details = json!({
        "name": patch.name,
        "allowed_origins": patch.allowed_origins,
        "channel_defaults": patch.channel_defaults,
    });
    a.audit(&state, "tenant.update", None, Some(details)).await;
    Ok(axum::Json(TenantView::new(updated, a.role)).into_response())
}

/// Delete a tenant: revokes its keys, ends its streams and removes its history.
///
/// Only an owner may. The slug cannot be taken again for 30 days.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}", tag = "tenants", operation_id = "delete_tenant",
    params(TenantPath),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    // An admin API key acts as an admin, so this refuses it too.
    a.require_owner()?;
    delete_tenant(&state, &a).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_tenant(state: &AdminState, a: &Access) -> Result<(), ApiError> {
    let keys = state.store.list_api_keys(a.tenant.id).await?;
    state.store.delete_tenant(a.tenant.id).await?;
    state.view.forget_tenant(&a.tenant.slug).await;
    for key in keys {
        state.view.forget_key(&key.id).await;
    }
    tracing::info!(tenant = %a.tenant.slug, actor = %a.actor, "tenant deleted");
    Ok(state
        .broker
        .delete_history(&Target::Tenant(a.tenant.slug.clone()))
        .await?)
}

/// A member of a tenant.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"account_id": 7, "email": "bob@example.com", "role": "viewer",
    "created_at": "2026-03-01T12:00:00Z"}))]
pub struct MemberView {
    /// The member's account id; removing a member names it.
    account_id: i64,
    /// The member's email.
    email: String,
    /// What the member may do.
    role: RoleView,
    /// When the account became a member.
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        Self {
            account_id: m.account_id.0,
            email: m.email.as_str().to_owned(),
            role: m.role.into(),
            created_at: m.created_at,
        }
    }
}

/// Who to add as a member.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "bob@example.com", "role": "viewer"}))]
pub struct NewMember {
    /// The email of an existing account.
    email: String,
    /// `admin` or `viewer`.
    role: RoleView,
}

/// List a tenant's members.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/members", tag = "members", operation_id = "list_members",
    params(TenantPath),
    responses((status = 200, description = "The members, oldest first", body = Vec<MemberView>)))]
pub async fn members(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    let members: Vec<MemberView> = state
        .store
        .members(a.tenant.id)
        .await?
        .into_iter()
        .map(MemberView::from)
        .collect();
    Ok(axum::Json(members).into_response())
}

/// Add an existing account as `admin` or `viewer`. Only an owner may.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/members", tag = "members", operation_id = "add_member",
    params(TenantPath), request_body = NewMember,
    responses((status = 201, description = "The new member", body = MemberView)))]
pub async fn add_member(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
    Json(body): Json<NewMember>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    require_owner_account(&caller, &a)?;
    let role = match body.role {
        RoleView::Admin => Role::Admin,
        RoleView::Viewer => Role::Viewer,
        RoleView::Owner => {
            return Err(ApiError::invalid_body(
                "a member is added as admin or viewer",
            ))
        }
    };
    let email = Email::parse(&body.email).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    let member = state
        .store
        .add_member(a.tenant.id, &email, role)
        .await
        .map_err(|e| match e {
            herald_store::StoreError::NotFound => {
                ApiError::new(ErrorCode::NotFound, "no account has this email")
            }
            herald_store::StoreError::Conflict(_) => {
                ApiError::new(ErrorCode::Conflict, "this account is a member already")
            }
            e => e.into(),
        })?;
    a.audit(
        &state,
        "member.add",
        Some(email.as_str()),
        Some(json!({"role": role})),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(MemberView::from(member))).into_response())
}

/// Members are managed by people: an owner, through a session.
fn require_owner_account(caller: &Caller, a: &Access) -> Result<(), ApiError> {
    match caller.who {
        Who::Account(_) => a.require_owner(),
        Who::AdminKey { .. } => Err(ApiError::new(
            ErrorCode::Forbidden,
            "members are managed by an owner, not by an API key",
        )),
    }
}

/// Remove a member. Only an owner may; the last owner cannot be removed.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/members/{account_id}", tag = "members",
    operation_id = "remove_member",
    params(TenantPath, ("account_id" = i64, Path, description = "The member's account id", example = 7)),
    responses((status = 204, description = "Removed")))]
pub async fn remove_member(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
    Path((_, account_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    require_owner_account(&caller, &a)?;
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such member");
    let account = AccountId(account_id.parse().map_err(|_| not_found())?);
    let member = match state.store.remove_member(a.tenant.id, account).await {
        Ok(herald_store::MemberRemoval::Removed(member)) => member,
        Ok(herald_store::MemberRemoval::LastOwner) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the last owner cannot be removed; delete the tenant instead",
            ))
        }
        Err(herald_store::StoreError::NotFound) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    a.audit(&state, "member.remove", Some(member.email.as_str()), None)
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
