//! The OpenAPI 3.1 document of every public HTTP endpoint, admin and edge: `herald openapi`
//! prints it, `/api/openapi.json` serves it, `/api/docs` renders it with the Swagger UI embedded
//! in the binary (its assets come from the `utoipa-swagger-ui` package, vendored: nothing is
//! fetched at build or run time), and `api-spec/openapi.json` is a copy that a test keeps equal
//! to it.
//!
//! Every handler carries its own `#[utoipa::path]`, next to the types it reads and answers;
//! `herald_admin::ApiDoc` and `herald_edge::ApiDoc` gather their router's, and [`document`]
//! joins them (the two routers do not know each other) with the operations this binary serves
//! itself. Error responses are added to every operation here, in one place
//! ([`add_problem_responses`]), so that none can be forgotten: each is
//! `application/problem+json` with the [`Problem`] schema, whose `code` enumerates every
//! [`ErrorCode`].

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use herald_core::ErrorCode;
use serde_json::json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{OpenApi as Document, RefOr, Response as OaResponse};
use utoipa::{OpenApi, PartialSchema, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

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

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", operation_id = "openapi", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
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

// `/api/docs` is served by the Swagger UI's own router ([`docs_router`]), which has no handler
// to carry its operation: this function only does that.
/// This document, rendered for a person.
#[utoipa::path(get, path = "/api/docs", tag = "operations", operation_id = "docs", security(()),
    responses((status = 200, description = "An HTML page (after a redirect to `/api/docs/`)", content_type = "text/html", body = String,
        example = json!("<!DOCTYPE html>"))))]
#[allow(dead_code)]
async fn docs() {}

/// The operations of this binary itself, and what the whole document says of itself.
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
    paths(crate::healthz, crate::ready, serve_openapi, docs),
    components(schemas(Problem)),
    tags((name = "operations", description = "Health and this document")),
)]
struct Operations;

/// The document: the admin API's operations, the edge's, then this binary's, each with its
/// error responses.
pub fn document() -> Document {
    let operations = Operations::openapi();
    let mut doc = herald_admin::ApiDoc::openapi();
    doc.merge(herald_edge::ApiDoc::openapi());
    doc.info = operations.info.clone();
    doc.merge(operations);
    add_problem_responses(&mut doc);
    doc
}

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

/// Adds the problem+json error responses to every operation.
fn add_problem_responses(doc: &mut Document) {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use herald_core::{Cursor, MultiCursor};
    use serde_json::Value;

    use super::*;

    /// Joining keeps the first of two schemas with one name and drops the other without a word:
    /// a name the parts share must name one schema (a type both use, such as `Token`).
    #[test]
    fn no_schema_of_one_part_hides_another() {
        let parts = [
            herald_admin::ApiDoc::openapi(),
            herald_edge::ApiDoc::openapi(),
            Operations::openapi(),
        ];
        let mut seen: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
        for part in parts {
            for (name, schema) in part.components.map(|c| c.schemas).unwrap_or_default() {
                if let Some(first) = seen.get(&name) {
                    assert!(first == &schema, "two schemas are called {name}");
                }
                seen.insert(name, schema);
            }
        }
        let joined = document().components.unwrap().schemas;
        assert_eq!(
            joined.keys().collect::<Vec<_>>(),
            seen.keys().collect::<Vec<_>>()
        );
    }

    /// Every example of a cursor — the `id` of an event or of a publish's answer, a
    /// `last_event_id`, an `after` or `Last-Event-ID`, an `id:` line of a stream — is one the
    /// server itself reads.
    #[test]
    fn every_example_cursor_is_a_real_one() {
        let doc: Value = serde_json::from_str(openapi_json()).unwrap();
        let mut examples = Vec::new();
        collect_examples(&doc, &mut examples);
        let mut cursors = Vec::new();
        for e in examples {
            collect_cursors(e, &mut cursors);
        }
        for c in &cursors {
            assert!(
                Cursor::parse(c).is_ok() || MultiCursor::parse(c).is_ok(),
                "{c:?} is not a cursor"
            );
        }
        assert!(
            cursors.len() >= 10,
            "only {} example cursors",
            cursors.len()
        );
    }

    /// Every example, and every parameter that has one (its name says what the example is).
    fn collect_examples<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(map) if map.contains_key("in") && map.contains_key("example") => {
                out.push(v)
            }
            Value::Object(map) => {
                for (k, child) in map {
                    match k.as_str() {
                        "example" => out.push(child),
                        "examples" => out.extend(child.as_array().into_iter().flatten()),
                        _ => collect_examples(child, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| collect_examples(i, out)),
            _ => {}
        }
    }

    fn collect_cursors<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.extend(s.lines().filter_map(|l| l.strip_prefix("id: "))),
            Value::Array(items) => items.iter().for_each(|i| collect_cursors(i, out)),
            Value::Object(map) => {
                let str_of = |k: &str| map.get(k).and_then(Value::as_str);
                let parameter = str_of("name");
                if matches!(parameter, Some("after" | "lastEventId" | "Last-Event-ID")) {
                    out.extend(str_of("example"));
                }
                // An event (`id` beside `event`) or where one landed (`id` beside `channel`);
                // other resources have ids of their own.
                if map.contains_key("event") || map.contains_key("channel") {
                    out.extend(str_of("id"));
                }
                out.extend(str_of("last_event_id"));
                map.values().for_each(|child| collect_cursors(child, out));
            }
            _ => {}
        }
    }

    /// The example token is a token as the server mints them: HS256, a `kid`, API.md's claims.
    #[test]
    fn the_example_token_is_shaped_like_a_minted_one() {
        let doc: Value = serde_json::from_str(openapi_json()).unwrap();
        let example = &doc["components"]["schemas"]["Token"]["example"];
        let token = example["token"].as_str().unwrap();
        let parts: Vec<Value> = token
            .split('.')
            .take(2)
            .map(|p| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap())
            .collect();
        assert_eq!(parts[0]["alg"], "HS256");
        assert!(parts[0]["kid"].is_string());
        let exp = time::OffsetDateTime::parse(
            example["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(parts[1]["exp"], exp.unix_timestamp());
        assert_eq!(parts[1]["tenant"], "acme");
        assert!(parts[1]["channels"].is_array());
    }
}
