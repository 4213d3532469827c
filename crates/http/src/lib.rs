//! What the two HTTP routers, the edge (`/v1`) and the admin API (`/api/v1`), share: the one
//! error type [`ApiError`] and its problem+json response, the one mapping of store and broker
//! failures to statuses, the `Authorization: Bearer` credential, extractors that parse a
//! request's body and path once, answering in the same error shape when they cannot, and the
//! one way a subscriber token is minted ([`token`]).
//!
//! Both routers depend on this crate and neither depends on the other.

mod api_key;
mod body;
mod error;
mod path;
pub mod security;
pub mod token;

pub use api_key::{api_key_secret, check_api_key};
pub use body::{body_error, media_type, require_json, BodyTimeout, Json, TimedBody};
pub use error::{problem_response, tenant_of, ApiError, CountRejections};
pub use path::{ChannelPath, TenantPath};

use axum::http::{header, HeaderMap};

/// The `Authorization: Bearer` credential, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}
