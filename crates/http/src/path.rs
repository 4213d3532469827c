//! Path parameters parsed once into their newtypes: a handler never sees a bare `String`. Each
//! extractor also describes its parameters for the OpenAPI document, so a handler documents
//! exactly what it reads.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use herald_core::{ChannelName, ErrorCode, TenantSlug};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::IntoParams;

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

/// `^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$`, what [`TenantSlug::parse`] accepts.
pub const TENANT_PATTERN: &str = "^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$";
/// `^[A-Za-z0-9._:@-]{1,128}$`, what [`ChannelName::parse`] accepts.
pub const CHANNEL_PATTERN: &str = "^[A-Za-z0-9._:@-]{1,128}$";

/// A required path parameter of type string.
fn documented(name: &str, description: &str, pattern: &str, example: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern)),
        ))
        .example(Some(serde_json::Value::from(example)))
        .build()
}

fn tenant_parameter() -> Parameter {
    documented("tenant", "The tenant's slug.", TENANT_PATTERN, "acme")
}

/// The extractor documents the parameter it reads: a handler's `params(TenantPath)`.
impl IntoParams for TenantPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![tenant_parameter()]
    }
}

/// The extractor documents the parameters it reads: a handler's `params(ChannelPath)`.
impl IntoParams for ChannelPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            tenant_parameter(),
            documented("channel", "The channel's name.", CHANNEL_PATTERN, "orders"),
        ]
    }
}
