//! Subscriber tokens: the claims API.md specifies, and the one way Herald signs them.
//!
//! Both routers mint tokens — the edge's `POST /v1/{tenant}/tokens` for a tenant's servers, the
//! admin inspector for a person watching one channel — and the edge verifies them. Minting lives
//! here once so that both answer the same claims, header and `expires_at`.

use std::time::Duration;

use herald_core::TenantSlug;
use herald_store::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use time::OffsetDateTime;

use crate::ApiError;

/// What a subscriber token grants (checked by [`herald_core::token::verify`]).
pub use herald_core::token::Claims;

/// A minted token and when it expires: the answer of both minting endpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Token, example = json!({
    "token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiIsImtpZCI6ImszRjlxMlR4In0.eyJ0ZW5hbnQiOiJhY21lIiwiY2hhbm5lbHMiOlsib3JkZXJzIiwidXNlcjo0MiIsInRlYW06NzoqIl0sImV4cCI6MTc3MjM3MDAwMCwic3ViIjoidXNlci00MiJ9.jF1mYB6RpuSi_8MtBa8wkogYy2gGnNVz_kAS6xerzkc",
    "expires_at": "2026-03-01T13:00:00Z"}))]
pub struct Minted {
    /// The token: an HS256 JWT whose header's `kid` names the signing key.
    pub token: String,
    /// When it expires (RFC 3339, whole seconds): its `exp` claim.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Signs a token for `tenant` with `key` (HS256, `kid` in the header) that grants `channels`,
/// and with `sub` the user's personal channels, for `ttl` from now.
pub fn mint(
    key: &SigningKey,
    tenant: &TenantSlug,
    channels: Vec<String>,
    sub: Option<String>,
    ttl: Duration,
) -> Result<Minted, ApiError> {
    let now = OffsetDateTime::now_utc();
    let expires_at = now.replace_nanosecond(0).unwrap_or(now) + ttl;
    let claims = Claims {
        tenant: tenant.as_str().to_owned(),
        channels,
        exp: u64::try_from(expires_at.unix_timestamp()).unwrap_or(0),
        sub,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(key.secret.as_bytes()),
    )
    .map_err(|e| ApiError::internal(&e))?;
    Ok(Minted { token, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::ChannelName;
    use jsonwebtoken::{DecodingKey, Validation};

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

    #[test]
    fn a_minted_token_carries_the_claims_and_the_kid_and_expires_when_it_says() {
        let key = SigningKey {
            kid: "k3F9q2Tx".into(),
            secret: "a-secret-of-the-tenant".into(),
            current: true,
            created_at: OffsetDateTime::now_utc(),
            expires_at: None,
        };
        let tenant = TenantSlug::parse("acme").unwrap();
        let minted = mint(
            &key,
            &tenant,
            vec!["orders".into()],
            Some("42".into()),
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(minted.expires_at.nanosecond(), 0);
        let header = jsonwebtoken::decode_header(&minted.token).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.kid.as_deref(), Some("k3F9q2Tx"));
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &minted.token,
            &DecodingKey::from_secret(b"a-secret-of-the-tenant"),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap()
        .claims;
        assert_eq!(
            claims,
            serde_json::json!({"tenant": "acme", "channels": ["orders"], "sub": "42",
                "exp": minted.expires_at.unix_timestamp()})
        );
        let left = minted.expires_at - OffsetDateTime::now_utc();
        assert!(left <= time::Duration::seconds(60) && left > time::Duration::seconds(55));
    }
}
