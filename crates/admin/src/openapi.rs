//! The OpenAPI 3.1 document of every public HTTP endpoint, admin and edge, generated from the
//! code: `herald openapi` prints it, `/api/openapi.json` serves it, `/api/docs` renders it with
//! the Swagger UI embedded in the binary (its assets come from the `utoipa-swagger-ui` package,
//! vendored: nothing is fetched at build or run time), and `api-spec/openapi.json` is a copy that
//! a test keeps equal to it.
//!
//! The admin handlers carry their own `#[utoipa::path]`. The edge's routes live in
//! `herald-edge`, which this crate does not change, so they are described here by
//! documentation-only functions next to their request and response shapes. Error responses are
//! added to every operation in one place ([`add_problem_responses`]), so that none can be
//! forgotten: each is `application/problem+json` with the [`Problem`] schema, whose `code`
//! enumerates every [`ErrorCode`].

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use herald_core::ErrorCode;
use serde::Serialize;
use serde_json::json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Response as OaResponse};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::{accounts, channels, inspector, keys, signing_keys, tenants, usage};

/// `application/problem+json`.
const PROBLEM: &str = herald_core::problem::CONTENT_TYPE;

/// An RFC 9457 problem: the body of every error response.
pub struct Problem;

impl PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "An RFC 9457 problem. `code` is stable and machine-readable; 429 and 503 answers \
                 carry `Retry-After`; `request_id` repeats the response's `X-Request-Id`.",
            ))
            .property("type", string("Always `about:blank`."))
            .property(
                "title",
                string("A short summary, the same for every occurrence of the code."),
            )
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(400))
                    .maximum(Some(599))
                    .description(Some("The HTTP status.")),
            )
            .property("detail", string("What went wrong this time, for a person."))
            .property(
                "code",
                string("The stable error code.").enum_values(Some(codes)),
            )
            .property(
                "request_id",
                string(
                    "The response's `X-Request-Id`: the request's own when it sent a sane one \
                     (1 to 128 visible ASCII characters), else one made by the server.",
                ),
            )
            .required("type")
            .required("title")
            .required("status")
            .required("detail")
            .required("code")
            .examples([
                json!({"type": "about:blank", "title": "Not found", "status": 404,
                "detail": "no such tenant", "code": "not_found"}),
            ])
            .into()
    }
}

impl ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

// ---- The edge, described here: its handlers live in herald-edge. ----

/// An event to publish.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"event": "order.created", "data": {"id": 1}}))]
pub struct PublishBody {
    /// The event type, `^[A-Za-z0-9._:-]{1,64}$`; default `message`; `herald.` is reserved.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    event: Option<String>,
    /// Any JSON value, `null` included: a string is sent as its text, anything else as JSON.
    #[schema(value_type = Value)]
    data: serde_json::Value,
}

/// Where a published event landed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"channel": "orders", "id": "1fz3kq-lx9a2bq8-0"}))]
pub struct Published {
    /// The channel.
    channel: String,
    /// The event's id: the cursor to resume after it.
    id: String,
}

/// One event of a batch.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"channel": "orders", "event": "order.created", "data": {"id": 1}}))]
pub struct BatchEvent {
    /// The channel to publish to.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$")]
    channel: String,
    /// The event type; default `message`.
    event: Option<String>,
    /// Any JSON value.
    #[schema(value_type = Value)]
    data: serde_json::Value,
}

/// A batch: 1 to 100 events, published all or nothing.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"events": [{"channel": "orders", "event": "order.created", "data": {"id": 1}}]}))]
pub struct BatchBody {
    /// The events.
    #[schema(min_items = 1, max_items = 100)]
    events: Vec<BatchEvent>,
}

/// Where each event of a batch landed, in order.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"results": [{"channel": "orders", "id": "1fz3kq-lx9a2bq8-0"}]}))]
pub struct BatchPublished {
    /// One per event.
    results: Vec<Published>,
}

/// A subscriber token request.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"channels": ["orders", "user:42", "team:7:*"], "ttl_seconds": 3600, "sub": "user-42"}))]
pub struct TokenRequest {
    /// Channel names the token grants; `*` only as the last character.
    channels: Vec<String>,
    /// Lifetime in seconds.
    ttl_seconds: Option<u64>,
    /// The subscriber's user id (grants the personal channels `<name>@<sub>`).
    sub: Option<String>,
}

/// A subscriber token: an HS256 JWT.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token": "eyJhbGciOiJIUzI1NiIsImtpZCI6Ims3UXgybVBhIn0.e30.c2ln", "expires_at": "2026-03-01T13:00:00Z"}))]
pub struct Token {
    /// The JWT.
    token: String,
    /// When it expires (RFC 3339).
    #[schema(format = DateTime)]
    expires_at: String,
}

/// A retained event.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "1fz3kq-lx9a2bq8-0", "event": "order.created", "data": {"id": 1}}))]
pub struct HistoryEvent {
    /// Its cursor.
    id: String,
    /// Its type.
    event: String,
    /// The published JSON value.
    #[schema(value_type = Value)]
    data: serde_json::Value,
}

/// Why a page does not continue right after `after`, as a stream's `herald.gap` would say.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "history_truncated")]
pub enum HistoryGap {
    /// Events after `after` were trimmed from the history; the page starts at the oldest kept.
    HistoryTruncated,
    /// `after` is not a cursor of this channel's history (or of its current life); the page
    /// starts at the oldest kept.
    InvalidCursor,
}

/// A page of history, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"events": [{"id": "1fz3kq-lx9a2bq8-0", "event": "order.created", "data": {"id": 1}}]}))]
pub struct HistoryPage {
    /// The events.
    events: Vec<HistoryEvent>,
    /// Absent when the page continues right after `after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    gap: Option<HistoryGap>,
}

/// A channel's live state.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"channel": "orders", "subscribers": 3, "last_event_id": "1fz3kq-lx9a2bq8-0", "retained": 42}))]
pub struct ChannelInfo {
    /// The channel.
    channel: String,
    /// Open streams, across the cluster.
    subscribers: u64,
    /// The newest event's id; `null` when none is retained.
    last_event_id: Option<String>,
    /// Events retained.
    retained: u64,
}

/// Subscribe to one channel (Server-Sent Events).
///
/// Without a cursor the stream starts live. With `Last-Event-ID` (or `lastEventId`) it first sends
/// what was missed, then live. `event: herald.gap` says when that cannot be exact.
#[utoipa::path(get, path = "/v1/{tenant}/channels/{channel}/events", tag = "edge", operation_id = "subscribe",
    params(
        ("tenant" = String, Path, description = "The tenant's slug", example = "acme"),
        ("channel" = String, Path, description = "The channel", example = "orders"),
        ("token" = Option<String>, Query, description = "Subscriber JWT, for private channels"),
        ("lastEventId" = Option<String>, Query, description = "Resume after this cursor (first connect)"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor; wins over lastEventId"),
    ),
    security((), ("subscriber_token" = [])),
    responses((status = 200, description = "The event stream", content_type = "text/event-stream", body = String,
        example = json!("retry: 2000\n\nid: 1fz3kq-lx9a2bq8-0\nevent: order.created\ndata: {\"id\":1}\n\n"))))]
pub async fn subscribe() {}

/// Subscribe to several channels on one connection (Server-Sent Events).
#[utoipa::path(get, path = "/v1/{tenant}/events", tag = "edge", operation_id = "subscribe_many",
    params(
        ("tenant" = String, Path, description = "The tenant's slug", example = "acme"),
        ("channel" = Vec<String>, Query, description = "A channel; repeat for several", explode = true, example = json!(["orders", "chat"])),
        ("token" = Option<String>, Query, description = "Subscriber JWT, for private channels"),
        ("lastEventId" = Option<String>, Query, description = "Resume after this cursor (first connect)"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor"),
    ),
    security((), ("subscriber_token" = [])),
    responses((status = 200, description = "The event stream", content_type = "text/event-stream", body = String,
        example = json!("retry: 2000\n\n"))))]
pub async fn subscribe_many() {}

/// Publish one event.
#[utoipa::path(post, path = "/v1/{tenant}/channels/{channel}/events", tag = "edge", operation_id = "publish",
    params(
        ("tenant" = String, Path, description = "The tenant's slug", example = "acme"),
        ("channel" = String, Path, description = "The channel", example = "orders"),
        ("Idempotency-Key" = Option<String>, Header, description = "At most 128 characters; a repeat within 24 h returns the first answer"),
    ),
    request_body(content((PublishBody = "application/json"), (String = "text/plain"))),
    security(("api_key" = [])),
    responses((status = 201, description = "Stored and announced", body = Published)))]
pub async fn publish() {}

/// Publish a batch of up to 100 events, all or nothing.
#[utoipa::path(post, path = "/v1/{tenant}/events", tag = "edge", operation_id = "publish_batch",
    params(
        ("tenant" = String, Path, description = "The tenant's slug", example = "acme"),
        ("Idempotency-Key" = Option<String>, Header, description = "At most 128 characters"),
    ),
    request_body = BatchBody, security(("api_key" = [])),
    responses((status = 201, description = "Stored and announced", body = BatchPublished)))]
pub async fn publish_batch() {}

/// Mint a subscriber token (API key with the `subscribe` scope).
#[utoipa::path(post, path = "/v1/{tenant}/tokens", tag = "edge", operation_id = "create_token",
    params(("tenant" = String, Path, description = "The tenant's slug", example = "acme")),
    request_body = TokenRequest, security(("api_key" = [])),
    responses((status = 201, description = "The token", body = Token)))]
pub async fn create_token() {}

/// A channel's history after a cursor: the polling fallback.
#[utoipa::path(get, path = "/v1/{tenant}/channels/{channel}/history", tag = "edge", operation_id = "history",
    params(
        ("tenant" = String, Path, description = "The tenant's slug", example = "acme"),
        ("channel" = String, Path, description = "The channel", example = "orders"),
        ("after" = Option<String>, Query, description = "Only events after this cursor"),
        ("limit" = Option<u32>, Query, description = "At most this many (default 100)", minimum = 1, maximum = 1000),
    ),
    security(("api_key" = []), ("subscriber_token" = [])),
    responses((status = 200, description = "Events, oldest first", body = HistoryPage)))]
pub async fn history() {}

/// A channel's live state (API key).
#[utoipa::path(get, path = "/v1/{tenant}/channels/{channel}", tag = "edge", operation_id = "channel_info",
    params(
        ("tenant" = String, Path, description = "The tenant's slug", example = "acme"),
        ("channel" = String, Path, description = "The channel", example = "orders"),
    ),
    security(("api_key" = [])),
    responses((status = 200, description = "The channel", body = ChannelInfo)))]
pub async fn channel_info() {}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz", security(()),
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String, example = json!("ok\n"))))]
pub async fn healthz() {}

/// Readiness: the database and the broker answer (an edge needs only the broker: without its
/// database it rides on its cached view, stays ready and says `degraded`).
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz", security(()),
    responses((status = 200, description = "Ready (or, on an edge without its database, `degraded: ...`)", content_type = "text/plain", body = String, example = json!("ready\n"))))]
pub async fn readyz() {}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", operation_id = "openapi", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi_doc() {}

/// This document, rendered for a person.
#[utoipa::path(get, path = "/api/docs", tag = "operations", operation_id = "docs", security(()),
    responses((status = 200, description = "An HTML page (after a redirect to `/api/docs/`)", content_type = "text/html", body = String,
        example = json!("<!DOCTYPE html>"))))]
pub async fn docs() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        version = "1",
        description = "Hosted Server-Sent Events: the admin API (`/api/v1`) and the edge (`/v1`).\n\n\
            Admin endpoints take a session cookie (from signup or login; cookie-authenticated writes \
            must send this service's own `Origin`) or an API key with the `admin` scope as a Bearer \
            token. Unknown tenants and tenants the caller has no access to both answer 404.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        accounts::signup, accounts::login, accounts::logout, accounts::me, accounts::change_password,
        tenants::list, tenants::create, tenants::get_one, tenants::patch, tenants::delete,
        tenants::members, tenants::add_member, tenants::remove_member,
        keys::list, keys::create, keys::revoke,
        channels::list, channels::create, channels::get_one, channels::patch, channels::delete,
        inspector::token,
        signing_keys::list, signing_keys::rotate,
        usage::usage, usage::limits, usage::audit,
        subscribe, subscribe_many, publish, publish_batch, create_token, history, channel_info,
        healthz, readyz, openapi_doc, docs,
    ),
    components(schemas(Problem)),
    modifiers(&Security, &Problems),
    security(("session" = []), ("admin_key" = [])),
    tags(
        (name = "accounts", description = "Sign-up, sessions, the account"),
        (name = "tenants", description = "Tenants and their settings"),
        (name = "members", description = "Who may administer a tenant"),
        (name = "keys", description = "API keys"),
        (name = "channels", description = "Channel settings and state"),
        (name = "signing-keys", description = "Secrets that sign subscriber tokens"),
        (name = "usage", description = "Usage, limits and the audit log"),
        (name = "edge", description = "Subscribe, publish, tokens, history"),
        (name = "operations", description = "Health and this document"),
    ),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "herald_session",
                "The session cookie set by signup and login.",
            ))),
        );
        let bearer = |description: &str| {
            let mut http = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            "admin_key",
            bearer(
                "An API key (`hk_...`) with the `admin` scope: the admin API of its own tenant.",
            ),
        );
        components.add_security_scheme(
            "api_key",
            bearer("An API key (`hk_...`) with the scope the operation needs."),
        );
        components.add_security_scheme(
            "subscriber_token",
            bearer("A subscriber token (HS256 JWT); also accepted as `?token=`."),
        );
    }
}

/// Adds the problem+json error responses to every operation.
struct Problems;

/// The errors any operation can answer; those with a request body also 413 and 415.
const COMMON: &[u16] = &[400, 401, 403, 404, 500, 503];

/// Further errors, by operation id.
fn extra_errors(operation_id: &str) -> &'static [u16] {
    match operation_id {
        "signup" => &[409, 429],
        "login" => &[429],
        "create_tenant" | "create_channel" | "add_member" | "remove_member" => &[409],
        "publish" | "publish_batch" => &[413, 422, 429],
        "subscribe" | "subscribe_many" | "create_token" | "history" | "channel_info" => &[429],
        _ => &[],
    }
}

fn problem_description(status: u16) -> &'static str {
    match status {
        400 => "Invalid name or body (`invalid_name`, `invalid_body`)",
        401 => "Not authenticated (`unauthorized`)",
        403 => "Not allowed (`forbidden`, `csrf_rejected`, `tenant_suspended`)",
        404 => "Unknown, or not the caller's (`not_found`)",
        409 => "Already exists (`conflict`)",
        413 => "Body too large (`payload_too_large`)",
        415 => "Not `application/json` (`unsupported_media_type`)",
        422 => "Idempotency key reused with another body (`idempotency_key_reused`)",
        429 => "Too many requests (`rate_limited`, `quota_exceeded`); see `Retry-After`",
        500 => "A fault of the server (`internal`): its cause is logged, not shown; retrying will not help",
        503 => "A backing service is unavailable (`unavailable`); see `Retry-After`",
        _ => "An error",
    }
}

fn example_code(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::InvalidBody,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::IdempotencyKeyReused,
        429 => ErrorCode::RateLimited,
        500 => ErrorCode::Internal,
        _ => ErrorCode::Unavailable,
    }
}

fn problem_response(status: u16) -> OaResponse {
    let code = example_code(status);
    let example = json!({"type": "about:blank", "title": code.title(), "status": status,
        "detail": problem_description(status), "code": code.as_str()});
    let mut response = ResponseBuilder::new()
        .description(problem_description(status))
        .content(
            PROBLEM,
            ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                .example(Some(example))
                .build(),
        );
    if matches!(status, 429 | 503) {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    response.build()
}

impl Modify for Problems {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        for status in [400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503] {
            components.responses.insert(
                format!("Problem{status}"),
                RefOr::T(problem_response(status)),
            );
        }
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                add_errors(op);
            }
        }
    }
}

fn add_errors(op: &mut Operation) {
    let id = op.operation_id.clone().unwrap_or_default();
    if matches!(id.as_str(), "healthz" | "openapi" | "docs") {
        return;
    }
    let mut statuses: Vec<u16> = if id == "readyz" {
        vec![503]
    } else {
        COMMON.to_vec()
    };
    if op.request_body.is_some() {
        statuses.extend([413, 415]);
    }
    statuses.extend(extra_errors(&id));
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                RefOr::Ref(utoipa::openapi::Ref::new(format!(
                    "#/components/responses/Problem{status}"
                )))
            });
    }
}

/// The document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The document as pretty JSON with a final newline: what `herald openapi` prints and
/// `api-spec/openapi.json` holds.
pub fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut s = document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise the document: {e}\"}}"));
        s.push('\n');
        s
    })
}

async fn serve_openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        openapi_json(),
    )
        .into_response()
}

/// `/api/openapi.json` and `/api/docs`, the Swagger UI with the policy it needs
/// ([`herald_http::security::DOCS_CSP`]).
pub fn docs_router() -> Router {
    let ui = SwaggerUi::new("/api/docs").config(Config::new(["/api/openapi.json"]));
    let ui = Router::from(ui).layer(axum::middleware::map_response(
        |mut response: axum::response::Response| async move {
            herald_http::security::insert(response.headers_mut(), herald_http::security::DOCS_CSP);
            response
        },
    ));
    Router::new()
        .route("/api/openapi.json", get(serve_openapi))
        .merge(ui)
}
