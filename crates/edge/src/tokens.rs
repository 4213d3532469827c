//! Subscriber tokens: HS256 JWTs signed with one of the tenant's signing secrets, named by the
//! header's `kid`. `POST /v1/{tenant}/tokens` mints them; tenants may also sign their own.
//!
//! Claims: `tenant` (must equal the URL's), `channels` (names, `*` only as the last character),
//! `exp` (required, 30 s leeway), optional `sub`, and `nbf` checked when present (with the same
//! leeway). Any `alg` but HS256 is refused before a key is
//! looked at, so a token can never choose how it is checked.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use herald_core::{parse_channel_pattern, ErrorCode, Scope};
use herald_http::token::{mint as sign, Claims, Minted};
use herald_http::{body_error, ApiError, TenantPath};
use herald_store::Tenant;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::authenticate;
use crate::EdgeState;

/// Seconds a token's `exp` may be past before it is refused.
const LEEWAY_SECS: u64 = 30;
/// The longest lifetime a minted token may ask for: 30 days.
const MAX_TTL_SECS: u64 = 30 * 86_400;
/// A token longer than this is refused unread.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A token that verified: what it grants, and the signing key that signed it (an open stream
/// lives only as long as that key still verifies).
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Claims,
    pub kid: String,
}

/// Verifies a token for `tenant`. Every failure is a 401 with a reason but no secret.
pub async fn verify(state: &EdgeState, tenant: &Tenant, token: &str) -> Result<Verified, ApiError> {
    let invalid = |why: &str| ApiError::unauthorized(format!("invalid subscriber token: {why}"));
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid("too long"));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
    if header.alg != Algorithm::HS256 {
        return Err(invalid("only HS256 is accepted"));
    }
    let kid = header.kid.ok_or_else(|| invalid("no kid in the header"))?;
    let keys = state.view.signing_keys(tenant.id).await?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| invalid("kid names no signing key of this tenant"))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(key.secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => invalid("expired"),
        jsonwebtoken::errors::ErrorKind::ImmatureSignature => invalid("not valid yet (nbf)"),
        jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid("bad signature"),
        _ => invalid("unreadable claims"),
    })?
    .claims;
    if claims.tenant != tenant.slug.as_str() {
        return Err(invalid("issued for another tenant"));
    }
    if claims
        .channels
        .iter()
        .any(|p| parse_channel_pattern(p).is_err())
    {
        return Err(invalid(
            "a channel pattern is malformed (* only as the last character)",
        ));
    }
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
