//! Sign-up, login (throttled per IP and per email), logout, `me` and password changes.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::{Email, ErrorCode, Password, TenantSlug};
use herald_http::ApiError;
use herald_store::{Account, Attempt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::{self, ClientIp, Session};
use crate::tenants::{apply_default_plan, parse_name, TenantView};
use crate::AdminState;
use herald_http::Json;

/// Failed logins allowed per IP address and per email within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_ALLOWED: u32 = 10;
/// The window of [`LOGIN_FAILURES_ALLOWED`].
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// The window of `--signup-per-ip-per-hour`.
pub const SIGNUP_WINDOW: Duration = Duration::from_secs(3600);

/// A sign-up: the account and its first tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ann@example.com", "password": "correct horse battery",
    "tenant": {"slug": "acme", "name": "Acme"}}))]
pub struct SignupBody {
    /// The account's email; unique, case-insensitive.
    email: String,
    /// At least 10 characters.
    #[schema(min_length = 10)]
    password: String,
    /// The first tenant, owned by the new account.
    tenant: NewTenant,
}

/// A new tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"slug": "acme", "name": "Acme"}))]
pub struct NewTenant {
    /// Globally unique: 3 to 40 lowercase letters, digits and inner `-`.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")]
    pub slug: String,
    /// A display name, 1 to 100 characters.
    pub name: String,
}

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ann@example.com", "password": "correct horse battery"}))]
pub struct LoginBody {
    /// The account's email.
    email: String,
    /// Its password.
    password: String,
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "correct horse battery",
    "new_password": "a new and longer passphrase"}))]
pub struct PasswordChange {
    /// The password in use.
    current_password: String,
    /// The new password, at least 10 characters.
    #[schema(min_length = 10)]
    new_password: String,
}

/// An account. Never carries the password.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "email": "ann@example.com", "created_at": "2026-03-01T12:00:00Z"}))]
pub struct AccountView {
    /// Assigned by the service.
    id: i64,
    /// Lowercased.
    email: String,
    /// When the account signed up.
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        Self {
            id: a.id.0,
            email: a.email.as_str().to_owned(),
            created_at: a.created_at,
        }
    }
}

/// The logged-in account and its tenants.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "account": {"id": 1, "email": "ann@example.com", "created_at": "2026-03-01T12:00:00Z"},
    "tenants": [{"slug": "acme", "name": "Acme", "plan": "free", "allowed_origins": ["*"],
        "suspended_at": null, "created_at": "2026-03-01T12:00:00Z", "role": "owner",
        "channel_defaults": {"visibility": "public", "history_size": 100, "history_ttl_seconds": 86400}}]
}))]
pub struct Me {
    /// The account.
    account: AccountView,
    /// The tenants it belongs to, oldest first.
    tenants: Vec<TenantView>,
}

/// Parses a new tenant's slug and display name (1 to 100 characters).
pub fn parse_new_tenant(t: &NewTenant) -> Result<(TenantSlug, String), ApiError> {
    let slug = TenantSlug::parse(&t.slug)?;
    let name = parse_name(&t.name, "tenant name")?;
    Ok((slug, name))
}

fn credentials(email: &str, password: &str) -> Result<(Email, Password), ApiError> {
    let email = Email::parse(email).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    let password = Password::parse(password).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    Ok((email, password))
}

async fn with_new_session(
    state: &AdminState,
    account: &Account,
    status: StatusCode,
    body: impl Serialize,
) -> Result<Response, ApiError> {
    let token = state
        .store
        .create_session(account.id, state.session_lifetime())
        .await?;
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::set_cookie(state, token.expose()));
    Ok(response)
}

/// Sign up: an account, its first tenant, and a session cookie.
#[utoipa::path(post, path = "/api/v1/signup", tag = "accounts", operation_id = "signup",
    request_body = SignupBody, security(()),
    responses((status = 201, description = "Signed up; the session cookie is set", body = Me,
        headers(("Set-Cookie" = String, description = "`herald_session`: HttpOnly, SameSite=Strict")))))]
pub async fn signup(
    State(state): State<AdminState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(body): Json<SignupBody>,
) -> Result<Response, ApiError> {
    auth::check_foreign_origin(&headers, &state)?;
    let (email, password) = credentials(&body.email, &body.password)?;
    let (slug, name) = parse_new_tenant(&body.tenant)?;
    let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    throttle_signup(&state, &ip).await?;
    let _permit = state.passwords.enter().await?;
    let (account, tenant) = state
        .store
        .signup(&email, &password, &slug, &name)
        .await
        .map_err(ApiError::from)?;
    let tenant = apply_default_plan(&state, tenant).await?;
    tracing::info!(account = account.id.0, tenant = %tenant.slug, "signed up");
    state.view.forget_tenant(&tenant.slug).await;
    let me = Me {
        tenants: vec![TenantView::new(tenant, herald_store::Role::Owner)],
        account: account.clone().into(),
    };
    with_new_session(&state, &account, StatusCode::CREATED, me).await
}

/// Log in with email and password; sets the session cookie.
///
/// A wrong password and an unknown email get the same answer. Ten failures within a minute from
/// one IP address or for one email get 429 until the minute has passed.
#[utoipa::path(post, path = "/api/v1/login", tag = "accounts", operation_id = "login",
    request_body = LoginBody, security(()),
    responses((status = 200, description = "Logged in; the session cookie is set", body = AccountView,
        headers(("Set-Cookie" = String, description = "`herald_session`: HttpOnly, SameSite=Strict")))))]
pub async fn login(
    State(state): State<AdminState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    auth::check_foreign_origin(&headers, &state)?;
    let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    // The attempt counts as failed from before the password is checked, so that a burst of
    // concurrent attempts cannot all pass the throttle; it is taken back if it succeeds or is
    // refused unchecked.
    let attempt = state
        .store
        .record_login_failure(&ip, &body.email)
        .await
        .map_err(ApiError::from)?;
    let checked = async {
        throttle(&state, &ip, &body.email).await?;
        let _permit = state.passwords.enter().await?;
        // A malformed email or a too-short password cannot match any account; answer exactly
        // as for a wrong password.
        match credentials(&body.email, &body.password) {
            Ok((email, password)) => state
                .store
                .verify_login(&email, &password)
                .await
                .map_err(ApiError::from),
            Err(_) => Ok(None),
        }
    }
    .await;
    let account = match checked {
        Ok(Some(account)) => account,
        Ok(None) => return Err(ApiError::unauthorized("wrong email or password")),
        Err(refused) => {
            forget_login_attempt(&state, &ip, &body.email, attempt).await;
            return Err(refused);
        }
    };
    forget_login_attempt(&state, &ip, &body.email, attempt).await;
    with_new_session(
        &state,
        &account,
        StatusCode::OK,
        AccountView::from(account.clone()),
    )
    .await
}

async fn forget_login_attempt(state: &AdminState, ip: &str, email: &str, attempt: Attempt) {
    if let Err(e) = state.store.forget_login_attempt(ip, email, attempt).await {
        tracing::warn!(error = %e, "cannot take back a login attempt");
    }
}

/// 429 while `ip` or `email` has had too many failed logins within the window, the attempt
/// being throttled (recorded already) included.
async fn throttle(state: &AdminState, ip: &str, email: &str) -> Result<(), ApiError> {
    let counts = state.store.login_failures(ip, email, LOGIN_WINDOW).await?;
    let now = OffsetDateTime::now_utc();
    for (n, oldest) in counts {
        if n > LOGIN_FAILURES_ALLOWED {
            let frees_at = oldest.unwrap_or(now) + LOGIN_WINDOW;
            let wait = (frees_at - now).whole_seconds().max(1);
            return Err(ApiError {
                retry_after: Some(wait.unsigned_abs()),
                ..ApiError::new(
                    ErrorCode::RateLimited,
                    "too many failed logins; retry later",
                )
            });
        }
    }
    Ok(())
}

/// 429 once `ip` has signed up `--signup-per-ip-per-hour` times within the hour. The attempt
/// is recorded before it is counted, so concurrent sign-ups cannot all slip through.
async fn throttle_signup(state: &AdminState, ip: &str) -> Result<(), ApiError> {
    let allowed = state.config.signup_per_ip_per_hour;
    if allowed == 0 {
        return Ok(());
    }
    let attempt = state
        .store
        .record_signup(ip)
        .await
        .map_err(ApiError::from)?;
    let (n, oldest) = state
        .store
        .signups(ip, SIGNUP_WINDOW)
        .await
        .map_err(ApiError::from)?;
    if n <= allowed {
        return Ok(());
    }
    if let Err(e) = state.store.forget_signup(ip, attempt).await {
        tracing::warn!(error = %e, "cannot take back a sign-up attempt");
    }
    let now = OffsetDateTime::now_utc();
    let wait = (oldest.unwrap_or(now) + SIGNUP_WINDOW - now)
        .whole_seconds()
        .max(1);
    Err(ApiError {
        retry_after: Some(wait.unsigned_abs()),
        ..ApiError::new(
            ErrorCode::RateLimited,
            "too many sign-ups from this address; retry later",
        )
    })
}

/// Log out: ends the session on the server and clears the cookie.
#[utoipa::path(post, path = "/api/v1/logout", tag = "accounts", operation_id = "logout",
    security(("session" = [])),
    responses((status = 204, description = "Logged out")))]
pub async fn logout(
    State(state): State<AdminState>,
    session: Session,
) -> Result<Response, ApiError> {
    state.store.delete_session(&session.token).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::clear_cookie());
    Ok(response)
}

/// The logged-in account and its tenants.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", operation_id = "me",
    security(("session" = [])),
    responses((status = 200, description = "The account", body = Me)))]
pub async fn me(State(state): State<AdminState>, session: Session) -> Result<Response, ApiError> {
    let tenants = state
        .store
        .tenants_of(session.account.id)
        .await?
        .into_iter()
        .map(|m| TenantView::new(m.tenant, m.role))
        .collect();
    Ok(axum::Json(Me {
        account: session.account.into(),
        tenants,
    })
    .into_response())
}

/// Change the password; every other session of the account ends.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "accounts", operation_id = "change_password",
    request_body = PasswordChange, security(("session" = [])),
    responses((status = 204, description = "Changed; other sessions have ended")))]
pub async fn change_password(
    State(state): State<AdminState>,
    session: Session,
    Json(body): Json<PasswordChange>,
) -> Result<Response, ApiError> {
    let new =
        Password::parse(&body.new_password).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    let wrong = || ApiError::new(ErrorCode::Forbidden, "the current password is wrong");
    let current = Password::parse(&body.current_password).map_err(|_| wrong())?;
    let _permit = state.passwords.enter().await?;
    let changed = state
        .store
        .change_password(session.account.id, &current, &new, Some(&session.token))
        .await?;
    if !changed {
        return Err(wrong());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
