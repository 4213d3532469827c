//! Sign-up, login, logout and `me`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::{Email, Password, TenantSlug};
use herald_edge::ApiError;
use herald_store::Account;
use serde::{Deserialize, Serialize};

use crate::auth::{self, Session};
use crate::json::Json;
use crate::tenants::TenantView;
use crate::{store_error, AdminState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    email: String,
    password: String,
    tenant: NewTenant,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub slug: String,
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Serialize)]
struct Me {
    account: Account,
    tenants: Vec<TenantView>,
}

/// Parses a new tenant's slug and display name (1 to 100 characters).
pub fn parse_new_tenant(t: &NewTenant) -> Result<(TenantSlug, String), ApiError> {
    let slug = TenantSlug::parse(&t.slug)?;
    let name = t.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid_body(
            "tenant name must be 1 to 100 characters",
        ));
    }
    Ok((slug, name.to_owned()))
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
        .create_session(account.id, state.config.session_ttl)
        .await
        .map_err(store_error)?;
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::set_cookie(state, token.expose()));
    Ok(response)
}

pub async fn signup(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Json(body): Json<SignupBody>,
) -> Result<Response, ApiError> {
    auth::check_foreign_origin(&headers, &state)?;
    let (email, password) = credentials(&body.email, &body.password)?;
    let (slug, name) = parse_new_tenant(&body.tenant)?;
    let (account, tenant) = state
        .store
        .signup(&email, &password, &slug, &name)
        .await
        .map_err(store_error)?;
    tracing::info!(account = account.id.0, tenant = %tenant.slug, "signed up");
    state.view.forget_tenant(&tenant.slug);
    let me = Me {
        tenants: vec![TenantView::new(tenant, herald_store::Role::Owner)],
        account,
    };
    with_new_session(&state, &me.account.clone(), StatusCode::CREATED, me).await
}

pub async fn login(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    auth::check_foreign_origin(&headers, &state)?;
    let failed = || ApiError::unauthorized("wrong email or password");
    // A malformed email or a too-short password cannot match any account; answer exactly as
    // for a wrong password.
    let Ok((email, password)) = credentials(&body.email, &body.password) else {
        return Err(failed());
    };
    let account = state
        .store
        .verify_login(&email, &password)
        .await
        .map_err(store_error)?
        .ok_or_else(failed)?;
    with_new_session(&state, &account, StatusCode::OK, &account).await
}

pub async fn logout(
    State(state): State<AdminState>,
    session: Session,
) -> Result<Response, ApiError> {
    state
        .store
        .delete_session(&session.token)
        .await
        .map_err(store_error)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::clear_cookie());
    Ok(response)
}

pub async fn me(State(state): State<AdminState>, session: Session) -> Result<Response, ApiError> {
    let tenants = state
        .store
        .tenants_of(session.account.id)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|m| TenantView::new(m.tenant, m.role))
        .collect();
    Ok(axum::Json(Me {
        account: session.account,
        tenants,
    })
    .into_response())
}
