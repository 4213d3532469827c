//! The web admin's live inspector: a short-lived subscriber token for one channel, minted for a
//! member of the tenant by session, so that a person can watch a private or personal channel
//! without pasting an API key into the page.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_core::ErrorCode;
use herald_http::token::{mint, Minted};
use herald_http::{ApiError, ChannelPath};

use crate::auth::Caller;
use crate::AdminState;

/// How long an inspector token lives: enough to open the stream, short enough not to matter if
/// it leaks. An open stream is not cut when its token expires.
pub const INSPECTOR_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Mint a subscriber token for this one channel, valid for 5 minutes (for a personal channel
/// `<name>@<user>`, with `sub` = `<user>`). Any member may, viewers included: it only reads.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/channels/{channel}/token", tag = "channels",
    operation_id = "inspector_token", params(ChannelPath),
    responses((status = 201, description = "A token granting only this channel", body = Minted)))]
pub async fn token(
    State(state): State<AdminState>,
    caller: Caller,
    ChannelPath { tenant, channel }: ChannelPath,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    let keys = state.store.signing_keys(a.tenant.id).await?;
    let current = keys
        .iter()
        .find(|k| k.current)
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the tenant has no signing key"))?;
    let sub = channel.personal_user().map(str::to_owned);
    let minted = mint(
        current,
        &a.tenant.slug,
        vec![channel.into_inner()],
        sub,
        INSPECTOR_TOKEN_TTL,
    )?;
    Ok((StatusCode::CREATED, axum::Json(minted)).into_response())
}
