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
use herald_core::{parse_channel_pattern, ChannelName, ErrorCode, Scope};
use herald_http::{body_error, ApiError, TenantPath};
use herald_store::Tenant;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::authenticate;
use crate::EdgeState;

/// Seconds a token's `exp` may be past before it is refused.
const LEEWAY_SECS: u64 = 30;
/// The longest lifetime a minted token may ask for: 30 days.
const MAX_TTL_SECS: u64 = 30 * 86_400;
/// A token longer than this is refused unread.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a token grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub tenant: String,
    #[serde(default)]
    pub channels: Vec<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

impl Claims {
    /// Whether the token lets its holder subscribe to `channel`. A personal channel
    /// `<name>@<user>` is granted by `sub` alone, and by nothing else.
    pub fn grants(&self, channel: &ChannelName) -> bool {
        match channel.personal_user() {
            Some(user) => self.sub.as_deref() == Some(user),
            None => self.channels.iter().any(|p| channel.matches(p)),
        }
    }
}

/// Verifies a token for `tenant`. Every failure is a 401 with a reason but no secret.
pub async fn verify(state: &EdgeState, tenant: &Tenant, token: &str) -> Result<Claims, ApiError> {
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
    Ok(claims)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBody {
    #[serde(default)]
    channels: Vec<String>,
    ttl_seconds: Option<u64>,
    sub: Option<String>,
}

#[derive(Serialize)]
struct Minted {
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// `POST /v1/{tenant}/tokens`: mints a token with the tenant's current signing key. The key
/// needs the `subscribe` scope, and a key limited to some channels can only grant those.
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
    let expires_at = OffsetDateTime::now_utc() + time::Duration::seconds(ttl as i64);
    let claims = Claims {
        tenant: slug.into_inner(),
        channels,
        exp: expires_at.unix_timestamp() as u64,
        sub: req.sub,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(current.kid.clone());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(current.secret.as_bytes()),
    )
    .map_err(|e| ApiError::internal(&e))?;
    let expires_at = expires_at.replace_nanosecond(0).unwrap_or(expires_at);
    Ok((StatusCode::CREATED, Json(Minted { token, expires_at })).into_response())
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

    #[test]
    fn personal_channels_need_the_sub_and_nothing_else_grants_them() {
        let claims = Claims {
            tenant: "acme".into(),
            channels: vec!["*".into()],
            exp: 0,
            sub: Some("42".into()),
        };
        assert!(claims.grants(&ChannelName::parse("notifications@42").unwrap()));
        assert!(!claims.grants(&ChannelName::parse("notifications@43").unwrap()));
        assert!(claims.grants(&ChannelName::parse("orders").unwrap()));
    }
}
