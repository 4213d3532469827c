//! Channels: their settings (visibility, history size and TTL), live subscriber counts and
//! last event ids; deleting one clears its history and ends its streams.
//!
//! A channel needs no creation: one that was never created or patched is shown with the
//! tenant's defaults and `created_at: null`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_core::ChannelName;
use herald_http::{ApiError, ChannelPath, TenantPath};
use herald_replay::{ChannelKey, Target};
use herald_store::{Channel, ChannelSettings, Tenant};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::tenants::{check_settings, ChannelSettingsView, SettingsPatch, VisibilityView};
use crate::AdminState;
use herald_http::Json;

/// A channel, its settings and its live state.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "orders", "visibility": "public", "history_size": 100,
    "history_ttl_seconds": 86400, "subscribers": 3, "last_event_id": "1fz3kq-lx9a2bq8-0",
    "created_at": "2026-03-01T12:00:00Z", "updated_at": "2026-03-01T12:00:00Z"}))]
pub struct ChannelView {
    /// The channel's name.
    name: String,
    /// Its settings.
    #[serde(flatten)]
    settings: ChannelSettingsView,
    /// Open streams on this channel, across every edge process (reported every few seconds).
    subscribers: u64,
    /// The id of the newest retained event; `null` when the history is empty.
    last_event_id: Option<String>,
    /// When the channel was created or first configured; `null` when it uses the tenant's
    /// defaults.
    #[serde(with = "time::serde::rfc3339::option")]
    created_at: Option<OffsetDateTime>,
    /// When its settings last changed; `null` when it uses the tenant's defaults.
    #[serde(with = "time::serde::rfc3339::option")]
    updated_at: Option<OffsetDateTime>,
}

/// A new channel. Absent settings take the tenant's channel defaults.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "orders", "visibility": "private", "history_size": 500, "history_ttl_seconds": 3600}))]
pub struct NewChannel {
    /// `^[A-Za-z0-9._:@-]{1,128}$`.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$")]
    name: String,
    /// `public` or `private`.
    visibility: Option<VisibilityView>,
    /// Events kept at most: 1 to the plan's `max_history_size`.
    #[schema(minimum = 1)]
    history_size: Option<u32>,
    /// Seconds an event is kept: 1 to 2592000.
    #[schema(minimum = 1, maximum = 2592000)]
    history_ttl_seconds: Option<u32>,
}

async fn view(
    state: &AdminState,
    tenant: &Tenant,
    name: ChannelName,
    settings: ChannelSettings,
    row: Option<&Channel>,
) -> Result<ChannelView, ApiError> {
    let key = ChannelKey::new(tenant.slug.clone(), name);
    let info = state.broker.channel_info(&key).await?;
    let subscribers = state.broker.subscribers(&key).await?;
    Ok(ChannelView {
        name: key.channel.into_inner(),
        settings: settings.into(),
        subscribers: subscribers as u64,
        last_event_id: info.last.map(|c| c.to_string()),
        created_at: row.map(|c| c.created_at),
        updated_at: row.map(|c| c.updated_at),
    })
}

/// List the channels that have settings of their own.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/channels", tag = "channels", operation_id = "list_channels",
    params(TenantPath),
    responses((status = 200, description = "The channels, by name", body = Vec<ChannelView>)))]
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    let rows = state.store.list_channels(a.tenant.id).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(
            view(
                &state,
                &a.tenant,
                row.name.clone(),
                row.settings.clone(),
                Some(row),
            )
            .await?,
        );
    }
    Ok(axum::Json(out).into_response())
}

/// Create a channel with settings of its own.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/channels", tag = "channels", operation_id = "create_channel",
    params(TenantPath), request_body = NewChannel,
    responses((status = 201, description = "The channel", body = ChannelView)))]
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
    Json(body): Json<NewChannel>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    a.require_writer()?;
    let name = ChannelName::parse(&body.name)?;
    let patch = SettingsPatch {
        visibility: body.visibility,
        history_size: body.history_size,
        history_ttl_seconds: body.history_ttl_seconds,
    };
    let settings = patch.apply(a.tenant.channel_defaults.clone(), &state, &a.tenant)?;
    let row = state
        .store
        .create_channel(a.tenant.id, &name, &settings)
        .await?;
    // A name in use with the tenant's defaults may have just turned private.
    state
        .recheck_streams(Target::Channel(ChannelKey::new(
            a.tenant.slug.clone(),
            name.clone(),
        )))
        .await;
    a.audit(
        &state,
        "channel.create",
        Some(name.as_str()),
        Some(json!(row.settings)),
    )
    .await;
    let v = view(&state, &a.tenant, name, settings, Some(&row)).await?;
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

/// Get a channel: its own settings, or the tenant's defaults when it has none.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/channels/{channel}", tag = "channels", operation_id = "get_channel",
    params(ChannelPath),
    responses((status = 200, description = "The channel", body = ChannelView)))]
pub async fn get_one(
    State(state): State<AdminState>,
    caller: Caller,
    ChannelPath {
        tenant,
        channel: name,
    }: ChannelPath,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    let row = state.store.channel(a.tenant.id, &name).await?;
    let settings = row
        .as_ref()
        .map_or_else(|| a.tenant.channel_defaults.clone(), |r| r.settings.clone());
    let v = view(&state, &a.tenant, name, settings, row.as_ref()).await?;
    Ok(axum::Json(v).into_response())
}

/// Change a channel's visibility, history size or TTL (within the plan's bounds).
///
/// Every edge process applies the change within a second: once the channel is private, its
/// open streams that the change no longer allows (anonymous ones, tokens that do not grant it)
/// end, and their reconnects are refused.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant}/channels/{channel}", tag = "channels", operation_id = "patch_channel",
    params(ChannelPath), request_body = SettingsPatch,
    responses((status = 200, description = "The channel as it now is", body = ChannelView)))]
pub async fn patch(
    State(state): State<AdminState>,
    caller: Caller,
    ChannelPath {
        tenant,
        channel: name,
    }: ChannelPath,
    Json(body): Json<SettingsPatch>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    a.require_writer()?;
    let current = state.store.channel_settings(a.tenant.id, &name).await?;
    let settings = body.apply(current, &state, &a.tenant)?;
    check_settings(&settings, &state, &a.tenant)?;
    let row = state
        .store
        .put_channel(a.tenant.id, &name, &settings)
        .await?;
    state
        .recheck_streams(Target::Channel(ChannelKey::new(
            a.tenant.slug.clone(),
            name.clone(),
        )))
        .await;
    a.audit(
        &state,
        "channel.update",
        Some(name.as_str()),
        Some(json!(settings)),
    )
    .await;
    let v = view(&state, &a.tenant, name, settings, Some(&row)).await?;
    Ok(axum::Json(v).into_response())
}

/// Delete a channel: its history is cleared, its streams end, its settings revert to the
/// tenant's defaults.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/channels/{channel}", tag = "channels", operation_id = "delete_channel",
    params(ChannelPath),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    ChannelPath {
        tenant,
        channel: name,
    }: ChannelPath,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    a.require_writer()?;
    state.store.delete_channel(a.tenant.id, &name).await?;
    a.audit(&state, "channel.delete", Some(name.as_str()), None)
        .await;
    let key = ChannelKey::new(a.tenant.slug.clone(), name);
    state.broker.delete_history(&Target::Channel(key)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
