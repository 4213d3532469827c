//! The one API-key check, shared by the edge and the admin API: they differ only in where the
//! key is looked up (a cache, or the store) and in whether it must belong to the URL's tenant.

use std::borrow::Borrow;

use herald_core::{ApiKeySecret, ErrorCode, Scope, TenantSlug};
use herald_store::ApiKeyAuth;

use crate::ApiError;

/// The API key a bearer credential names, parsed; 401 when it is not one.
pub fn api_key_secret(token: &str) -> Result<ApiKeySecret, ApiError> {
    ApiKeySecret::parse(token).map_err(|_| ApiError::unauthorized("malformed API key"))
}

/// Accepts the key `found` for `secret` when it is that key, not revoked, of `tenant` (when
/// given: a key of another tenant is as good as unknown), and holding `scope`.
pub fn check_api_key<K: Borrow<ApiKeyAuth>>(
    found: Option<K>,
    secret: &ApiKeySecret,
    tenant: Option<&TenantSlug>,
    scope: Scope,
) -> Result<K, ApiError> {
    let key = found
        .filter(|k| {
            let k = k.borrow();
            k.verify(secret) && !k.is_revoked() && tenant.is_none_or(|t| k.tenant_slug == *t)
        })
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
    if !key.borrow().scopes.contains(&scope) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this API key lacks the `{}` scope", scope.as_str()),
        ));
    }
    Ok(key)
}
