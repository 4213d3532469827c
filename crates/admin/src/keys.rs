//! API keys: create (the secret is shown once), list, revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_core::{ChannelName, ErrorCode, KeyId, Scope};
use herald_http::{ApiError, TenantPath};
use herald_store::ApiKey;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::tenants::parse_name;
use crate::AdminState;
use herald_http::Json;

/// What an API key may do.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "publish")]
pub enum ScopeView {
    /// Publish events.
    Publish,
    /// Mint subscriber tokens and read history.
    Subscribe,
    /// Call this tenant's admin API as a Bearer token.
    Admin,
}

impl From<ScopeView> for Scope {
    fn from(s: ScopeView) -> Self {
        match s {
            ScopeView::Publish => Scope::Publish,
            ScopeView::Subscribe => Scope::Subscribe,
            ScopeView::Admin => Scope::Admin,
        }
    }
}

impl From<Scope> for ScopeView {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Publish => ScopeView::Publish,
            Scope::Subscribe => ScopeView::Subscribe,
            Scope::Admin => ScopeView::Admin,
        }
    }
}

/// A new key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "backend", "scopes": ["publish", "subscribe"], "channels": ["orders", "team:7:*"]}))]
pub struct NewKey {
    /// A label, 1 to 100 characters.
    name: String,
    /// At least one scope.
    #[schema(min_items = 1)]
    scopes: Vec<ScopeView>,
    /// Channel patterns the key is limited to (a name, or a prefix ending in `*`); absent = all.
    channels: Option<Vec<String>>,
}

/// An API key. Its secret is never shown again after creation.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "Ab3dE5gH", "name": "backend", "scopes": ["publish"],
    "channels": null, "created_at": "2026-03-01T12:00:00Z", "last_used_at": null, "revoked_at": null}))]
pub struct ApiKeyView {
    /// The public key id: the 8 characters after `hk_`.
    id: String,
    /// The label.
    name: String,
    /// What the key may do.
    scopes: Vec<ScopeView>,
    /// The channel patterns the key is limited to; `null` = every channel.
    channels: Option<Vec<String>>,
    /// When the key was created.
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// When the key was last used (recorded in batches, so up to a minute late); `null` if never.
    #[serde(with = "time::serde::rfc3339::option")]
    last_used_at: Option<OffsetDateTime>,
    /// When the key was revoked; `null` while it is valid.
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id.into_inner(),
            name: k.name,
            scopes: k.scopes.into_iter().map(ScopeView::from).collect(),
            channels: k.channels,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A key just created, with its secret: shown once.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "Ab3dE5gH", "name": "backend", "scopes": ["publish"],
    "channels": null, "created_at": "2026-03-01T12:00:00Z", "last_used_at": null, "revoked_at": null,
    "secret": "hk_Ab3dE5gH0123456789abcdefghijklmnopqrstuv"}))]
pub struct CreatedKey {
    #[serde(flatten)]
    key: ApiKeyView,
    /// The whole key, `hk_` + 40 characters: store it now.
    secret: String,
}

/// A channel pattern: a channel name, or a prefix of one followed by a final `*`.
fn parse_pattern(p: &str) -> Result<String, ApiError> {
    let body = p.strip_suffix('*').unwrap_or(p);
    if body.contains('*') || (!body.is_empty() && ChannelName::parse(body).is_err()) || p.is_empty()
    {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("invalid channel pattern {p:?}: a channel name, optionally ending in *"),
        ));
    }
    Ok(p.to_owned())
}

/// Create an API key; the answer holds its secret, which is shown only once.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/keys", tag = "keys", operation_id = "create_key",
    params(TenantPath), request_body = NewKey,
    responses((status = 201, description = "The key, with its secret", body = CreatedKey)))]
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
    Json(body): Json<NewKey>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    a.require_writer()?;
    let name = parse_name(&body.name, "key name")?;
    if body.scopes.is_empty() {
        return Err(ApiError::invalid_body("a key needs at least one scope"));
    }
    let scopes: Vec<Scope> = body.scopes.iter().map(|s| Scope::from(*s)).collect();
    if scopes.contains(&Scope::Admin) {
        // An admin key can do what an admin member can; only an owner may hand that out, or an
        // admin could mint keys that outlive their own membership.
        a.require_owner()?;
        if body.channels.is_some() {
            return Err(ApiError::invalid_body(
                "an `admin` key reaches the whole tenant: it takes no channel patterns",
            ));
        }
    }
    let channels = body
        .channels
        .map(|c| {
            if c.len() > 100 {
                return Err(ApiError::invalid_body("at most 100 channel patterns"));
            }
            c.iter()
                .map(|p| parse_pattern(p))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let (key, secret) = state
        .store
        .create_api_key(a.tenant.id, &name, &scopes, channels.as_deref())
        .await?;
    tracing::info!(tenant = %a.tenant.slug, key = %key.id, "API key created");
    a.audit(
        &state,
        "key.create",
        Some(key.id.as_str()),
        Some(json!({"name": key.name, "scopes": key.scopes, "channels": key.channels})),
    )
    .await;
    let created = CreatedKey {
        key: key.into(),
        secret: secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// List the tenant's API keys, revoked ones included; never their secrets.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/keys", tag = "keys", operation_id = "list_keys",
    params(TenantPath),
    responses((status = 200, description = "The keys, oldest first", body = Vec<ApiKeyView>)))]
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    let keys: Vec<ApiKeyView> = state
        .store
        .list_api_keys(a.tenant.id)
        .await?
        .into_iter()
        .map(ApiKeyView::from)
        .collect();
    Ok(axum::Json(keys).into_response())
}

/// Revoke an API key. Every edge process refuses it within a second.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/keys/{key_id}", tag = "keys", operation_id = "revoke_key",
    params(TenantPath, ("key_id" = String, Path, description = "The key's public id", example = "Ab3dE5gH")),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
    Path((_, key_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    a.require_writer()?;
    let key_id =
        KeyId::parse(&key_id).map_err(|_| ApiError::new(ErrorCode::NotFound, "no such key"))?;
    state.store.revoke_api_key(a.tenant.id, &key_id).await?;
    state.view.forget_key(&key_id).await;
    // Streams the key opened end on every edge.
    state
        .recheck_streams(herald_replay::Target::Tenant(a.tenant.slug.clone()))
        .await;
    tracing::info!(tenant = %a.tenant.slug, key = %key_id, "API key revoked");
    a.audit(&state, "key.revoke", Some(key_id.as_str()), None)
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
