//! Signing keys: the secrets subscriber tokens are signed with; list and rotate.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_http::{ApiError, TenantPath};
use herald_store::{Role, SigningKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::AdminState;

/// A signing key. Its secret's UTF-8 bytes are the HS256 key; a token names the key in its
/// header's `kid`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"kid": "k7Qx2mPa", "secret": "hs_4fT9sLq0ZbW2nR8yVc6XeJ1uK3oM5aD7gH9iP2rS4tU",
    "current": true, "created_at": "2026-03-01T12:00:00Z", "expires_at": null}))]
pub struct SigningKeyView {
    /// The key id.
    kid: String,
    /// The HMAC secret; shown to owners and admins only, absent for viewers.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// Whether new tokens should be signed with this key.
    current: bool,
    /// When the key was made.
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// For a rotated-out key, when it stops verifying; `null` for the current key.
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

impl SigningKeyView {
    /// The view of `k` for a member with `role`: a viewer can read but not sign, so it never
    /// sees the secret (with it, it could grant itself every private channel).
    fn new(k: SigningKey, role: Role) -> Self {
        Self {
            kid: k.kid,
            secret: (role != Role::Viewer).then_some(k.secret),
            current: k.current,
            created_at: k.created_at,
            expires_at: k.expires_at,
        }
    }
}

/// List the signing keys that still verify, newest (the current one) first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/signing-keys", tag = "signing-keys",
    operation_id = "list_signing_keys", params(TenantPath),
    responses((status = 200, description = "The keys", body = Vec<SigningKeyView>)))]
pub async fn list(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    let keys: Vec<SigningKeyView> = state
        .store
        .signing_keys(a.tenant.id)
        .await?
        .into_iter()
        .map(|k| SigningKeyView::new(k, a.role))
        .collect();
    Ok(axum::Json(keys).into_response())
}

/// How long the rotated-out key keeps verifying.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RotateParams {
    /// Seconds, from 0 to the configured grace period (`--signing-key-grace-secs`, the
    /// default). `0` is for an emergency: the leaked key stops verifying at once, and so does
    /// every token signed with it.
    #[param(minimum = 0, example = 0)]
    grace_seconds: Option<u64>,
}

/// Rotate: a new current key; the previous one keeps verifying for the grace period
/// (`--signing-key-grace-secs`, or a shorter `grace_seconds`), then is removed.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/signing-keys", tag = "signing-keys",
    operation_id = "rotate_signing_key", params(TenantPath, RotateParams),
    responses((status = 201, description = "The new current key", body = SigningKeyView)))]
pub async fn rotate(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
    params: Result<Query<RotateParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    a.require_writer()?;
    let max = state.config.signing_key_grace;
    let Query(params) = params
        .map_err(|_| ApiError::invalid_body("grace_seconds must be a whole number of seconds"))?;
    let grace = match params.grace_seconds {
        None => max,
        Some(secs) if Duration::from_secs(secs) <= max => Duration::from_secs(secs),
        Some(_) => {
            return Err(ApiError::invalid_body(format!(
                "grace_seconds must be 0 to {}",
                max.as_secs()
            )))
        }
    };
    let key = state.store.rotate_signing_key(a.tenant.id, grace).await?;
    // Edges cache signing keys for a second: with grace 0 the old key stops verifying within it,
    // and the open streams of its tokens end; otherwise they end when the grace period does.
    state
        .recheck_streams(herald_replay::Target::Tenant(a.tenant.slug.clone()))
        .await;
    a.audit(
        &state,
        "signing_key.rotate",
        Some(&key.kid),
        Some(serde_json::json!({"grace_seconds": grace.as_secs()})),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(SigningKeyView::new(key, a.role)),
    )
        .into_response())
}
