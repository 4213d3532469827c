//! The web admin's live inspector: a short-lived subscriber token for one channel, minted for a
//! member of the tenant by session, so that a person can watch a private or personal channel
//! without pasting an API key into the page.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_core::{ChannelName, ErrorCode};
use herald_http::ApiError;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::channels::ChannelParams;
use crate::openapi::Token;
use crate::AdminState;

/// How long an inspector token lives: enough to open the stream, short enough not to matter if
/// it leaks. An open stream is not cut when its token expires.
pub const INSPECTOR_TOKEN_SECS: i64 = 300;

#[derive(Serialize)]
struct Claims<'a> {
    tenant: &'a str,
    channels: [&'a str; 1],
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
}

#[derive(Serialize)]
struct Minted {
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// Mint a subscriber token for this one channel, valid for 5 minutes (for a personal channel
/// `<name>@<user>`, with `sub` = `<user>`). Any member may, viewers included: it only reads.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/channels/{channel}/token", tag = "channels",
    operation_id = "inspector_token", params(ChannelParams),
    responses((status = 201, description = "A token granting only this channel", body = Token)))]
pub async fn token(
    State(state): State<AdminState>,
    caller: Caller,
    Path((tenant, channel)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    let channel = ChannelName::parse(&channel)?;
    let keys = state.store.signing_keys(a.tenant.id).await?;
    let current = keys
        .iter()
        .find(|k| k.current)
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the tenant has no signing key"))?;
    let expires_at = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        + time::Duration::seconds(INSPECTOR_TOKEN_SECS);
    let claims = Claims {
        tenant: a.tenant.slug.as_str(),
        channels: [channel.as_str()],
        exp: expires_at.unix_timestamp(),
        sub: channel.personal_user(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(current.kid.clone());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(current.secret.as_bytes()),
    )
    .map_err(|e| ApiError::internal(&e))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Minted { token, expires_at }),
    )
        .into_response())
}
