//! Who is calling the edge: a publisher's or server's API key, a browser's subscriber token, or
//! nobody (a public channel). Every handler authenticates through here, once per request or
//! connection; the key check itself is [`herald_http::check_api_key`], shared with the admin API.

use std::sync::Arc;

use axum::http::HeaderMap;
use herald_core::{ChannelName, ErrorCode, Scope, TenantSlug};
use herald_http::{api_key_secret, bearer, check_api_key, ApiError};
use herald_store::{ApiKeyAuth, Tenant};

use crate::tokens::{verify, Verified};
use crate::EdgeState;

/// Checks the request's API key: well-formed, known, not revoked, of this tenant (a key of
/// another tenant is as good as unknown), and holding `scope`.
pub(crate) async fn authenticate(
    state: &EdgeState,
    headers: &HeaderMap,
    tenant: &TenantSlug,
    scope: Scope,
) -> Result<Arc<ApiKeyAuth>, ApiError> {
    authenticate_in(state, headers, tenant, scope)
        .await
        .map(|(key, _)| key)
}

/// [`authenticate`], also answering the (active) tenant it looked up. Its span records the
/// tenant and the scope asked for, never the headers.
#[tracing::instrument(name = "auth", skip_all, fields(tenant = %tenant, scope = ?scope))]
pub(crate) async fn authenticate_in(
    state: &EdgeState,
    headers: &HeaderMap,
    tenant: &TenantSlug,
    scope: Scope,
) -> Result<(Arc<ApiKeyAuth>, Arc<Tenant>), ApiError> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError::unauthorized("an API key is required: Authorization: Bearer hk_...")
    })?;
    let secret = api_key_secret(token)?;
    let found = state.view.api_key(&secret.key_id()).await?;
    let key = check_api_key(found, &secret, Some(tenant), scope)?;
    match state.view.tenant(tenant).await? {
        Some(t) if t.suspended_at.is_some() => Err(suspended()),
        Some(t) => {
            state.usage.key_used(&key.key_id, state.clock.now());
            Ok((key, t))
        }
        None => Err(ApiError::unauthorized("unknown or revoked API key")),
    }
}

pub(crate) fn suspended() -> ApiError {
    ApiError::new(ErrorCode::TenantSuspended, "this tenant is suspended")
}

/// Refuses a channel outside the key's channel patterns, if it has any.
pub(crate) fn check_channel(key: &ApiKeyAuth, channel: &ChannelName) -> Result<(), ApiError> {
    match &key.channels {
        Some(patterns) if !patterns.iter().any(|p| channel.matches(p)) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this API key may not use channel {channel}"),
        )),
        _ => Ok(()),
    }
}

/// Who is subscribing.
pub enum Credential {
    Anonymous,
    /// Boxed: every open stream keeps its credential, and most are anonymous or keyed.
    Token(Box<Verified>),
    /// A server-side subscriber with an API key of the `subscribe` scope.
    Key(Arc<ApiKeyAuth>),
}

impl Credential {
    /// Reads the request's credential: `?token=`, or `Authorization: Bearer` with a token or
    /// an API key. A credential that is sent must be valid, even for a public channel. Its span
    /// records the tenant and which kind of credential came, never the credential.
    #[tracing::instrument(name = "auth", skip_all, fields(tenant = %tenant.slug))]
    pub async fn of(
        state: &EdgeState,
        tenant: &Tenant,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Self, ApiError> {
        match (query_token, bearer(headers)) {
            (Some(token), _) => Ok(Self::Token(Box::new(verify(state, tenant, token).await?))),
            (None, Some(b)) if b.starts_with("hk_") => Ok(Self::Key(
                authenticate(state, headers, &tenant.slug, Scope::Subscribe).await?,
            )),
            (None, Some(token)) => Ok(Self::Token(Box::new(verify(state, tenant, token).await?))),
            (None, None) => Ok(Self::Anonymous),
        }
    }

    /// Refuses a channel the credential may not subscribe to: 401 without a credential, 403
    /// with one that does not grant it.
    pub fn check(&self, channel: &ChannelName, private: bool) -> Result<(), ApiError> {
        let private = private || channel.personal_user().is_some();
        let granted = match self {
            Self::Anonymous if private => {
                return Err(ApiError::unauthorized(format!(
                    "channel {channel} is private: a subscriber token is required"
                )))
            }
            Self::Anonymous => true,
            Self::Token(token) => !private || token.claims.grants(channel),
            Self::Key(key) => key
                .channels
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|p| channel.matches(p))),
        };
        if granted {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this credential does not grant channel {channel}"),
            ))
        }
    }
}
