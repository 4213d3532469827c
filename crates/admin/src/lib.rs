//! The admin API, `/api/v1`: accounts and sessions, tenants, API keys.
//!
//! Two ways in. A person's browser holds a session cookie (HttpOnly, SameSite=Strict, ended on
//! the server at logout), and every state-changing request that relies on it must come from the
//! public URL's own origin. A script uses an API key with the `admin` scope as a Bearer token;
//! it carries no ambient authority, so it needs no CSRF check. Errors share the edge's
//! problem+json shape and codes.

mod accounts;
mod auth;
mod json;
mod keys;
mod tenants;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{delete, get, post};
use axum::Router;
use herald_core::ErrorCode;
use herald_edge::{ApiError, ControlView};
use herald_store::Store;

/// Settings of the admin API that come from the command line.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The origin (`scheme://host[:port]`) browsers use; cookie-authenticated writes from any
    /// other origin are refused.
    pub public_origin: String,
    /// How long a session lives without use.
    pub session_ttl: Duration,
}

/// The admin API's shared state; cheap to clone.
#[derive(Clone)]
pub struct AdminState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    /// This process's edge cache, told at once of revocations made here.
    pub view: Arc<ControlView>,
    pub config: AdminConfig,
}

impl AdminState {
    pub fn new(store: Store, view: Arc<ControlView>, config: AdminConfig) -> Self {
        Self(Arc::new(Inner {
            store,
            view,
            config,
        }))
    }

    /// Whether cookies must be `Secure` (the public URL is https).
    fn secure_cookies(&self) -> bool {
        self.config.public_origin.starts_with("https://")
    }
}

impl std::ops::Deref for AdminState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The `/api/v1` routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/api/v1/signup", post(accounts::signup))
        .route("/api/v1/login", post(accounts::login))
        .route("/api/v1/logout", post(accounts::logout))
        .route("/api/v1/me", get(accounts::me))
        .route("/api/v1/tenants", get(tenants::list).post(tenants::create))
        .route("/api/v1/tenants/{tenant}", get(tenants::get_one))
        .route(
            "/api/v1/tenants/{tenant}/keys",
            get(keys::list).post(keys::create),
        )
        .route(
            "/api/v1/tenants/{tenant}/keys/{key_id}",
            delete(keys::revoke),
        )
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            )
        })
        .with_state(state)
}

/// Maps store errors that a client can cause to their codes; the rest are unavailability.
pub(crate) fn store_error(e: herald_store::StoreError) -> ApiError {
    use herald_store::StoreError;
    match e {
        StoreError::Conflict(what) => {
            ApiError::new(ErrorCode::Conflict, format!("this {what} is already taken"))
        }
        StoreError::NotFound => ApiError::new(ErrorCode::NotFound, "not found"),
        other => ApiError::unavailable(&other),
    }
}
