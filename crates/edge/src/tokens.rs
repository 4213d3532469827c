//! Subscriber tokens: HS256 JWTs signed with one of the tenant's signing secrets, named by the
//! header's `kid`. `POST /v1/{tenant}/tokens` mints them; tenants may also sign their own.
//!
//! What a token may claim and how it is checked is [`herald_core::token`]'s; this module looks
//! up the secret a token's `kid` names, and mints tokens.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use herald_core::token;
use herald_core::{parse_channel_pattern, ErrorCode, Scope};
use herald_http::token::{mint as sign, Claims, Minted};
use herald_http::{body_error, ApiError, TenantPath};
use herald_store::Tenant;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::authenticate;
use crate::EdgeState;

/// The longest lifetime a minted token may ask for: 30 days.
const MAX_TTL_SECS: u64 = 30 * 86_400;

/// A token that verified: what it grants, and the signing key that signed it (an open stream
/// lives only as long as that key still verifies).
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Claims,
    pub kid: String,
}

/// Verifies a token for `tenant` (the checks are [`herald_core::token`]'s; this looks up the
/// secret its `kid` names). Every failure is a 401 with a reason but no secret.
pub async fn verify(state: &EdgeState, tenant: &Tenant, token: &str) -> Result<Verified, ApiError> {
    let invalid = |why: &dyn std::fmt::Display| {
        ApiError::unauthorized(format!("invalid subscriber token: {why}"))
    };
    let kid = token::signing_kid(token).map_err(|e| invalid(&e))?;
    let keys = state.view.signing_keys(tenant.id).await?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| invalid(&"kid names no signing key of this tenant"))?;
    let claims = token::verify(token, tenant.slug.as_str(), key.secret.as_bytes())
        .map_err(|e| invalid(&e))?;
    Ok(Verified { claims, kid })
}

/// A subscriber token request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TokenRequest, example = json!({"channels": ["orders", "user:42", "team:7:*"],
    "ttl_seconds": 3600, "sub": "user-42"}))]
struct MintBody {
    /// Channel names the token grants; `*` only as the last character. A key limited to some
    /// channels can only grant those.
    #[serde(default)]
    channels: Vec<String>,
    /// Lifetime in seconds: 1 to 2592000 (30 days); default 3600.
    #[schema(minimum = 1, maximum = 2592000)]
    ttl_seconds: Option<u64>,
    /// The subscriber's user id, 1 to 128 printable characters: grants the personal channels
    /// `<name>@<sub>`.
    #[schema(min_length = 1, max_length = 128)]
    sub: Option<String>,
}

/// Mint a subscriber token (API key with the `subscribe` scope).
///
/// Signed with the tenant's current signing key. A key limited to some channels can only grant
/// those, and cannot name a `sub`.
#[utoipa::path(post, path = "/v1/{tenant}/tokens", tag = "edge", operation_id = "create_token",
    params(TenantPath), request_body = MintBody, security(("api_key" = [])),
    responses((status = 201, description = "The token", body = Minted)))]
pub async fn mint(
    State(state): State<EdgeState>,
    TenantPath(slug): TenantPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = authenticate(&state, &headers, &slug, Scope::Subscribe).await?;
    let body = body.map_err(body_error)?;
    let req: MintBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_body(format!("invalid JSON body: {e}")))?;
    let channels = req
        .channels
        .iter()
        .map(|p| parse_channel_pattern(p))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(allowed) = &key.channels {
        if let Some(p) = channels
            .iter()
            .find(|p| !allowed.iter().any(|a| covers(a, p)))
        {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this API key may not grant {p}"),
            ));
        }
        // `sub` grants every personal channel `<name>@<sub>`: only a key that could subscribe
        // to all of them itself (one limited to `*`) may hand that out.
        if req.sub.is_some() && !allowed.iter().any(|a| covers(a, "*")) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this API key is limited to some channels: it may not name a `sub`, \
                 which grants the user's personal channels",
            ));
        }
    }
    if let Some(sub) = &req.sub {
        if sub.is_empty() || sub.len() > 128 || sub.chars().any(char::is_control) {
            return Err(ApiError::invalid_body(
                "`sub` must be 1 to 128 printable characters",
            ));
        }
    }
    let ttl = req.ttl_seconds.unwrap_or(3600);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid_body(format!(
            "`ttl_seconds` must be 1 to {MAX_TTL_SECS}"
        )));
    }
    let tenant = state
        .view
        .tenant(&slug)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such tenant"))?;
    let signing = state.view.signing_keys(tenant.id).await?;
    let current = signing
        .iter()
        .find(|k| k.current)
        .ok_or_else(|| ApiError::unavailable(&"the tenant has no current signing key"))?;
    let minted = sign(
        current,
        &slug,
        channels,
        req.sub,
        std::time::Duration::from_secs(ttl),
    )?;
    Ok((StatusCode::CREATED, Json(minted)).into_response())
}

/// Whether key pattern `allowed` covers token pattern `p`: every channel `p` matches, `allowed`
/// matches too.
fn covers(allowed: &str, p: &str) -> bool {
    match (allowed.strip_suffix('*'), p.strip_suffix('*')) {
        (Some(a), Some(q)) => q.starts_with(a),
        (Some(a), None) => p.starts_with(a),
        (None, Some(_)) => false,
        (None, None) => allowed == p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_patterns_cover_token_patterns() {
        assert!(covers("team:*", "team:7:*"));
        assert!(covers("team:*", "team:7"));
        assert!(covers("*", "anything*"));
        assert!(covers("orders", "orders"));
        assert!(!covers("orders", "orders*"));
        assert!(!covers("team:7:*", "team:*"));
    }
}
