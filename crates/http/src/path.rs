//! Path parameters parsed once into their newtypes: a handler never sees a bare `String`.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use herald_core::{ChannelName, ErrorCode, TenantSlug};

use crate::ApiError;

/// The `{tenant}` of the path, parsed; a bad one is 400 `invalid_name`.
pub struct TenantPath(pub TenantSlug);

/// The `{tenant}` and `{channel}` of the path, parsed; a bad one is 400 `invalid_name`.
pub struct ChannelPath {
    pub tenant: TenantSlug,
    pub channel: ChannelName,
}

fn malformed() -> ApiError {
    ApiError::new(ErrorCode::InvalidName, "malformed path")
}

async fn param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| malformed())?;
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .ok_or_else(malformed)
}

impl<S: Send + Sync> FromRequestParts<S> for TenantPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let tenant = param(parts, state, "tenant").await?;
        Ok(Self(TenantSlug::parse(&tenant)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ChannelPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let tenant = param(parts, state, "tenant").await?;
        let tenant = TenantSlug::parse(&tenant)?;
        let channel = param(parts, state, "channel").await?;
        let channel = ChannelName::parse(&channel)?;
        Ok(Self { tenant, channel })
    }
}
