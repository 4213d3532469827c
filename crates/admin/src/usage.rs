//! Usage rollups, the plan's limits with today's use, and the audit log.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use herald_http::{ApiError, TenantPath};
use herald_store::{AuditEntry, Plan, UsageDay};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::AdminState;

/// The most days `usage` reports.
const MAX_DAYS: u32 = 366;
/// The most audit entries one page holds.
const MAX_AUDIT_PAGE: u32 = 200;

/// `?days=`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// How many days, today included: 1 to 366 (default 30).
    #[param(minimum = 1, maximum = 366, example = 30)]
    days: Option<u32>,
}

/// One UTC day of use.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"date": "2026-03-01", "messages": 1200, "deliveries": 36000,
    "bytes_out": 9216000, "peak_connections": 42}))]
pub struct UsageDayView {
    /// The UTC day.
    #[schema(value_type = String, format = Date)]
    date: String,
    /// Events accepted for publishing.
    messages: u64,
    /// Events written to subscribers.
    deliveries: u64,
    /// Bytes written to subscribers.
    bytes_out: u64,
    /// The most concurrent subscriber connections seen.
    peak_connections: u64,
}

impl From<UsageDay> for UsageDayView {
    fn from(d: UsageDay) -> Self {
        Self {
            date: d.date.to_string(),
            messages: d.usage.messages,
            deliveries: d.usage.deliveries,
            bytes_out: d.usage.bytes_out,
            peak_connections: d.usage.peak_connections,
        }
    }
}

/// The limits of a plan.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"max_connections": 200, "messages_per_day": 200000,
    "max_message_bytes": 65536, "publish_per_second": 50, "publish_burst": 100,
    "channels_per_connection": 16, "max_history_size": 1000, "connects_per_second": 100}))]
pub struct PlanView {
    /// Concurrent subscriber connections, across all edge processes.
    max_connections: u64,
    /// Publishes accepted per UTC day.
    messages_per_day: u64,
    /// Size of one event's data in bytes.
    max_message_bytes: u64,
    /// Publishes per second per API key.
    publish_per_second: u64,
    /// The burst above `publish_per_second`.
    publish_burst: u64,
    /// Channels one stream may subscribe to.
    channels_per_connection: u64,
    /// Upper bound for a channel's `history_size`.
    max_history_size: u32,
    /// New streams per second for the whole tenant; `null` = unlimited.
    connects_per_second: Option<u64>,
}

impl From<Plan> for PlanView {
    fn from(p: Plan) -> Self {
        Self {
            max_connections: p.max_connections,
            messages_per_day: p.messages_per_day,
            max_message_bytes: p.max_message_bytes,
            publish_per_second: p.publish_per_second,
            publish_burst: p.publish_burst,
            channels_per_connection: p.channels_per_connection,
            max_history_size: p.max_history_size,
            connects_per_second: p.connects_per_second,
        }
    }
}

/// Today's use against the plan.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"messages": 1200, "peak_connections": 42, "connections": 17}))]
pub struct TodayView {
    /// Events accepted today (UTC), as recorded so far.
    messages: u64,
    /// The most concurrent connections seen today.
    peak_connections: u64,
    /// Subscriber connections open now, across all edge processes (other processes' counts
    /// are up to a couple of seconds old); `null` while the broker is unreachable.
    connections: Option<u64>,
}

/// The plan's limits and today's use.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"plan": "free", "limits": {"max_connections": 200, "messages_per_day": 200000,
    "max_message_bytes": 65536, "publish_per_second": 50, "publish_burst": 100,
    "channels_per_connection": 16, "max_history_size": 1000, "connects_per_second": 100},
    "today": {"messages": 1200, "peak_connections": 42, "connections": 17}}))]
pub struct LimitsView {
    /// The plan's name.
    plan: String,
    /// Its limits.
    limits: PlanView,
    /// Today's use.
    today: TodayView,
}

/// `?before=&limit=`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries with a smaller id: pass the last id of the previous page.
    #[param(minimum = 1, example = 120)]
    before: Option<i64>,
    /// Entries per page: 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200, example = 50)]
    limit: Option<u32>,
}

/// One change in the audit log.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 120, "actor": "account:ann@example.com", "action": "channel.update",
    "target": "orders", "ip": "203.0.113.7", "details": {"visibility": "private"},
    "at": "2026-03-01T12:00:00Z"}))]
pub struct AuditEntryView {
    /// Increasing with time.
    id: i64,
    /// `account:<email>`, `key:<key id>` or `operator`.
    actor: String,
    /// `<resource>.<verb>`, e.g. `key.revoke`.
    action: String,
    /// What the action applied to: a channel name, a key id, an email...
    target: Option<String>,
    /// The client's IP address.
    ip: Option<String>,
    /// Details, such as the settings a PATCH set.
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            actor: e.actor,
            action: e.action,
            target: e.target,
            ip: e.ip,
            details: e.details,
            at: e.at,
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"entries": [{"id": 120, "actor": "account:ann@example.com",
    "action": "key.revoke", "target": "Ab3dE5gH", "ip": "203.0.113.7", "details": null,
    "at": "2026-03-01T12:00:00Z"}], "next_before": null}))]
pub struct AuditPage {
    /// The entries.
    entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next page; `null` on the last page.
    next_before: Option<i64>,
}

/// Daily messages, deliveries, bytes out and peak connections, oldest first, one row per day.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/usage", tag = "usage", operation_id = "usage",
    params(TenantPath, UsageQuery),
    responses((status = 200, description = "One row per UTC day", body = Vec<UsageDayView>)))]
pub async fn usage(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid_body(e.body_text()))?;
    let days = q.days.unwrap_or(30);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::invalid_body("days must be 1 to 366"));
    }
    let rows: Vec<UsageDayView> = state
        .store
        .usage(a.tenant.id, days)
        .await?
        .into_iter()
        .map(UsageDayView::from)
        .collect();
    Ok(axum::Json(rows).into_response())
}

/// The plan's limits and today's use.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/limits", tag = "usage", operation_id = "limits",
    params(TenantPath),
    responses((status = 200, description = "Limits and today's use", body = LimitsView)))]
pub async fn limits(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    let today = state
        .store
        .usage(a.tenant.id, 1)
        .await?
        .pop()
        .map(|d| d.usage)
        .unwrap_or_default();
    // The dashboard still shows the rest while the broker is down.
    let connections = match state.broker.connections(&a.tenant.slug).await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "connection count unavailable");
            None
        }
    };
    Ok(axum::Json(LimitsView {
        limits: state.plan(&a.tenant.plan).clone().into(),
        plan: a.tenant.plan,
        today: TodayView {
            messages: today.messages,
            peak_connections: today.peak_connections,
            connections,
        },
    })
    .into_response())
}

/// Who changed what, when and from where; newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/audit", tag = "usage", operation_id = "audit_log",
    params(TenantPath, AuditQuery),
    responses((status = 200, description = "A page of the audit log", body = AuditPage)))]
pub async fn audit(
    State(state): State<AdminState>,
    caller: Caller,
    TenantPath(tenant): TenantPath,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let a = caller.tenant(&state, &tenant).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid_body(e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(ApiError::invalid_body("limit must be 1 to 200"));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::invalid_body("before must be at least 1"));
    }
    let entries: Vec<AuditEntryView> = state
        .store
        .audit_log(a.tenant.id, q.before, limit)
        .await?
        .into_iter()
        .map(AuditEntryView::from)
        .collect();
    let next_before = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(axum::Json(AuditPage {
        entries,
        next_before,
    })
    .into_response())
}
