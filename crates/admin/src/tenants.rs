//! Tenants: the ones a caller belongs to, and new ones.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_edge::ApiError;
use herald_store::{Role, Tenant};
use serde::Serialize;
use time::OffsetDateTime;

use crate::accounts::{parse_new_tenant, NewTenant};
use crate::auth::{Caller, Session};
use crate::json::Json;
use crate::{store_error, AdminState};

/// A tenant as the admin API shows it to one of its members.
#[derive(Serialize)]
pub struct TenantView {
    slug: String,
    name: String,
    plan: String,
    allowed_origins: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    suspended_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    role: Role,
}

impl TenantView {
    pub fn new(t: Tenant, role: Role) -> Self {
        Self {
            slug: t.slug.into_inner(),
            name: t.name,
            plan: t.plan,
            allowed_origins: t.allowed_origins,
            suspended_at: t.suspended_at,
            created_at: t.created_at,
            role,
        }
    }
}

pub async fn list(State(state): State<AdminState>, caller: Caller) -> Result<Response, ApiError> {
    let tenants: Vec<TenantView> = match caller {
        Caller::Account(account) => state
            .store
            .tenants_of(account.id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|m| TenantView::new(m.tenant, m.role))
            .collect(),
        Caller::AdminKey(ref slug) => {
            let m = caller.tenant(&state, slug.as_str()).await?;
            vec![TenantView::new(m.tenant, m.role)]
        }
    };
    Ok(axum::Json(tenants).into_response())
}

pub async fn create(
    State(state): State<AdminState>,
    session: Session,
    Json(body): Json<NewTenant>,
) -> Result<Response, ApiError> {
    let (slug, name) = parse_new_tenant(&body)?;
    let tenant = state
        .store
        .create_tenant(session.account.id, &slug, &name)
        .await
        .map_err(store_error)?;
    tracing::info!(account = session.account.id.0, tenant = %tenant.slug, "tenant created");
    state.view.forget_tenant(&tenant.slug);
    Ok((
        StatusCode::CREATED,
        axum::Json(TenantView::new(tenant, Role::Owner)),
    )
        .into_response())
}

pub async fn get_one(
    State(state): State<AdminState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    let m = caller.tenant(&state, &tenant).await?;
    Ok(axum::Json(TenantView::new(m.tenant, m.role)).into_response())
}
