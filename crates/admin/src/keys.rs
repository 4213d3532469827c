//! API keys: create (the secret is shown once), list, revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_core::{ChannelName, ErrorCode, KeyId, Scope};
use herald_edge::ApiError;
use herald_store::{ApiKey, Membership, Role};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::json::Json;
use crate::{store_error, AdminState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
    scopes: Vec<String>,
    channels: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    key: ApiKey,
    secret: String,
}

fn require_writer(m: &Membership) -> Result<(), ApiError> {
    match m.role {
        Role::Owner | Role::Admin => Ok(()),
        Role::Viewer => Err(ApiError::new(
            ErrorCode::Forbidden,
            "viewers cannot change the tenant",
        )),
    }
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

pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Json(body): Json<NewKey>,
) -> Result<Response, ApiError> {
    let m = caller.tenant(&state, &tenant).await?;
    require_writer(&m)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid_body(
            "key name must be 1 to 100 characters",
        ));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::invalid_body("a key needs at least one scope"));
    }
    let scopes = body
        .scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let channels = body
        .channels
        .map(|c| {
            c.iter()
                .map(|p| parse_pattern(p))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let (key, secret) = state
        .store
        .create_api_key(m.tenant.id, name, &scopes, channels.as_deref())
        .await
        .map_err(store_error)?;
    tracing::info!(tenant = %m.tenant.slug, key = %key.id, "API key created");
    let created = Created {
        key,
        secret: secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    let m = caller.tenant(&state, &tenant).await?;
    let keys = state
        .store
        .list_api_keys(m.tenant.id)
        .await
        .map_err(store_error)?;
    Ok(axum::Json(keys).into_response())
}

pub async fn revoke(
    State(state): State<AdminState>,
    caller: Caller,
    Path((tenant, key_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let m = caller.tenant(&state, &tenant).await?;
    require_writer(&m)?;
    let key_id =
        KeyId::parse(&key_id).map_err(|_| ApiError::new(ErrorCode::NotFound, "no such key"))?;
    state
        .store
        .revoke_api_key(m.tenant.id, &key_id)
        .await
        .map_err(store_error)?;
    state.view.forget_key(&key_id);
    tracing::info!(tenant = %m.tenant.slug, key = %key_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}
