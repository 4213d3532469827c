//! Subscriber tokens: HS256 JWTs signed with one of the tenant's signing secrets, named by the
//! header's `kid`. The edge looks the secret up; everything else about checking a token is
//! here, without I/O, so that it can be fuzzed alone.
//!
//! Claims: `tenant` (must equal the URL's), `channels` (names, `*` only as the last character),
//! `exp` (required, [`LEEWAY_SECS`] of leeway), optional `sub`, and `nbf` checked when present
//! (with the same leeway). Any `alg` but HS256 is refused
//! before a secret is looked at, so a token can never choose how it is checked.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::names::{parse_channel_pattern, ChannelName};

/// Seconds a token's `exp` may be past before it is refused.
pub const LEEWAY_SECS: u64 = 30;
/// A token longer than this is refused unread.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Why a token was refused; [`TokenError`]'s text is the reason given to the client, and never
/// contains a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("too long")]
    TooLong,
    #[error("malformed")]
    Malformed,
    #[error("only HS256 is accepted")]
    NotHs256,
    #[error("no kid in the header")]
    NoKid,
    #[error("expired")]
    Expired,
    #[error("not valid yet (nbf)")]
    NotYetValid,
    #[error("bad signature")]
    BadSignature,
    #[error("unreadable claims")]
    Unreadable,
    #[error("issued for another tenant")]
    OtherTenant,
    #[error("a channel pattern is malformed (* only as the last character)")]
    BadPattern,
}

/// The `kid` that names the secret to check `token` with, once the token's size, header and
/// `alg` are acceptable.
pub fn signing_kid(token: &str) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::HS256 {
        return Err(TokenError::NotHs256);
    }
    header.kid.ok_or(TokenError::NoKid)
}

/// The claims of `token`, signed with `secret`, for `tenant`. Call [`signing_kid`] first: it
/// refuses what must not reach a secret at all.
pub fn verify(token: &str, tenant: &str, secret: &[u8]) -> Result<Claims, TokenError> {
    signing_kid(token)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let claims =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Unreadable,
            })?
            .claims;
    if claims.tenant != tenant {
        return Err(TokenError::OtherTenant);
    }
    if claims
        .channels
        .iter()
        .any(|p| parse_channel_pattern(p).is_err())
    {
        return Err(TokenError::BadPattern);
    }
    Ok(claims)
}
