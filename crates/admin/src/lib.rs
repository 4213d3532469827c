//! The admin API, `/api/v1`: accounts and sessions, tenants and their members, API keys,
//! channels, signing keys, usage, limits and the audit log; and its part of the OpenAPI
//! document ([`ApiDoc`]), which the binary joins with the edge's.
//!
//! Two ways in. A person's browser holds a session cookie (HttpOnly, SameSite=Strict, ended on
//! the server at logout), and every state-changing request that relies on it must come from the
//! public URL's own origin. A script uses an API key with the `admin` scope as a Bearer token;
//! it carries no ambient authority, so it needs no CSRF check. Errors share the edge's
//! problem+json shape and codes.
//!
//! Tenant isolation: every tenant-scoped handler starts with [`auth::Caller::tenant`], which
//! answers 404 alike for an unknown tenant and for one the caller has no access to, and every
//! store call after it takes that tenant's id.

mod accounts;
mod auth;
mod channels;
mod inspector;
mod keys;
mod openapi;
mod password_gate;
mod signing_keys;
mod tenants;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{delete, get, post};
use axum::Router;
use herald_core::ErrorCode;
use herald_http::ApiError;
use herald_replay::Broker;
use herald_store::{ControlView, Plan, Plans, Store};

pub use openapi::ApiDoc;

/// How long a session lives without use, unless configured otherwise.
pub const SESSION_TTL: Duration = Duration::from_secs(14 * 86_400);
/// How long a session lives after its login however it is used, unless configured otherwise:
/// 12 hours, OWASP ASVS level 2's bound for re-authentication (V3.3.2).
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// Settings of the admin API that come from the command line.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The origin (`scheme://host[:port]`) browsers use; cookie-authenticated writes from any
    /// other origin are refused.
    pub public_origin: String,
    /// How long a session lives without use.
    pub session_ttl: Duration,
    /// How long a session lives after its login, however it is used.
    pub session_max_age: Duration,
    /// How long a rotated-out signing key still verifies.
    pub signing_key_grace: Duration,
    /// The plans tenants can be on.
    pub plans: Arc<Plans>,
    /// The plan a new tenant gets.
    pub default_plan: String,
    /// Sign-ups allowed per client IP per hour; 0 = unlimited.
    pub signup_per_ip_per_hour: u32,
    /// Password hashes and verifications (argon2) run at once; as many again may wait.
    pub password_hash_concurrency: usize,
}

impl AdminConfig {
    /// A configuration with the built-in plans and the documented defaults, for `public_origin`.
    pub fn new(public_origin: String) -> Self {
        Self {
            public_origin,
            session_ttl: SESSION_TTL,
            session_max_age: SESSION_MAX_AGE,
            signing_key_grace: Duration::from_secs(86_400),
            plans: Arc::new(Plans::builtin()),
            default_plan: "free".to_owned(),
            signup_per_ip_per_hour: 20,
            password_hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// The admin API's shared state; cheap to clone.
#[derive(Clone)]
pub struct AdminState(Arc<Admin>);

/// What [`AdminState`] holds.
pub struct Admin {
    /// The control plane.
    pub store: Store,
    /// This process's edge cache, told at once of changes made here.
    pub view: Arc<ControlView>,
    /// History and streams, on every edge process: deleting a channel or a tenant ends its
    /// streams and removes its history through it.
    pub broker: Arc<dyn Broker>,
    /// Settings.
    pub config: AdminConfig,
    /// Bounds the argon2 work of sign-ups, logins and password changes.
    pub passwords: password_gate::PasswordGate,
}

impl AdminState {
    /// The state of an admin API on `store` and `broker`.
    pub fn new(
        store: Store,
        view: Arc<ControlView>,
        broker: Arc<dyn Broker>,
        config: AdminConfig,
    ) -> Self {
        Self(Arc::new(Admin {
            store,
            view,
            broker,
            passwords: password_gate::PasswordGate::new(config.password_hash_concurrency),
            config,
        }))
    }

    /// How long sessions live.
    fn session_lifetime(&self) -> herald_store::SessionLifetime {
        herald_store::SessionLifetime {
            idle: self.config.session_ttl,
            absolute: self.config.session_max_age,
        }
    }

    /// Tells every edge process that the target's access rules changed, so that open streams
    /// the change no longer allows end within a second. The change itself is already stored:
    /// when the broker cannot be reached, the edges' own periodic re-checks catch up, and the
    /// caller is still answered with success.
    pub(crate) async fn recheck_streams(&self, target: herald_replay::Target) {
        if let Err(e) = self.broker.recheck_streams(&target).await {
            tracing::warn!(error = %e, "cannot tell the edges to re-check their open streams");
        }
    }

    /// Whether cookies must be `Secure` (the public URL is https).
    fn secure_cookies(&self) -> bool {
        self.config.public_origin.starts_with("https://")
    }

    /// The limits of plan `name`, with [`Plans::resolve`]'s fallback for an unknown one.
    pub fn plan(&self, name: &str) -> &Plan {
        self.config.plans.resolve(name, &self.config.default_plan)
    }
}

impl std::ops::Deref for AdminState {
    type Target = Admin;

    fn deref(&self) -> &Admin {
        &self.0
    }
}

/// The `/api/v1` routes.
pub fn router(state: AdminState) -> Router {
    let t = "/api/v1/tenants/{tenant}";
    Router::new()
        .route("/api/v1/signup", post(accounts::signup))
        .route("/api/v1/login", post(accounts::login))
        .route("/api/v1/logout", post(accounts::logout))
        .route("/api/v1/me", get(accounts::me))
        .route("/api/v1/me/password", post(accounts::change_password))
        .route("/api/v1/tenants", get(tenants::list).post(tenants::create))
        .route(
            t,
            get(tenants::get_one)
                .patch(tenants::patch)
                .delete(tenants::delete),
        )
        .route(
            &format!("{t}/members"),
            get(tenants::members).post(tenants::add_member),
        )
        .route(
            &format!("{t}/members/{{account_id}}"),
            delete(tenants::remove_member),
        )
        .route(&format!("{t}/keys"), get(keys::list).post(keys::create))
        .route(&format!("{t}/keys/{{key_id}}"), delete(keys::revoke))
        .route(
            &format!("{t}/channels"),
            get(channels::list).post(channels::create),
        )
        .route(
            &format!("{t}/channels/{{channel}}"),
            get(channels::get_one)
                .patch(channels::patch)
                .delete(channels::delete),
        )
        .route(
            &format!("{t}/channels/{{channel}}/token"),
            post(inspector::token),
        )
        .route(
            &format!("{t}/signing-keys"),
            get(signing_keys::list).post(signing_keys::rotate),
        )
        .route(&format!("{t}/usage"), get(usage::usage))
        .route(&format!("{t}/limits"), get(usage::limits))
        .route(&format!("{t}/audit"), get(usage::audit))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            )
        })
        .with_state(state)
}
