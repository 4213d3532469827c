//! The OpenAPI document: one document, generated from the code, committed, served and rendered.

use herald_tests::{both_backends, TestApp};
use serde_json::Value;

both_backends!(
    the_served_document_is_the_generated_one,
    the_docs_page_renders_from_embedded_assets,
);

/// The committed `api-spec/openapi.json`.
fn committed() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../api-spec/openapi.json");
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn the_committed_document_matches_the_code() {
    let generated = herald::openapi::openapi_json();
    assert!(
        committed() == generated,
        "api-spec/openapi.json differs from the document the code generates; regenerate it with\n\n    \
         cargo run -p herald -- openapi > api-spec/openapi.json\n\nand commit the result"
    );
}

#[test]
fn every_operation_documents_its_errors_as_problems_and_every_schema_has_an_example() {
    let doc: Value = serde_json::from_str(herald::openapi::openapi_json()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let name = response["$ref"].as_str().unwrap_or_default();
                    assert!(
                        name.starts_with("#/components/responses/Problem"),
                        "{method} {path} {status} is not a problem: {response}"
                    );
                }
            }
            if path.starts_with("/api/v1/tenants/") || path.starts_with("/v1/") {
                assert!(responses.contains_key("404"), "{method} {path}");
            }
        }
    }
    assert!(operations >= 37, "{operations} operations");
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        assert!(
            schema.get("example").is_some() || schema.get("examples").is_some(),
            "schema {name} has no example"
        );
    }
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        assert!(
            response["content"]["application/problem+json"]["example"].is_object(),
            "{name}"
        );
    }
    let codes = &doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"];
    for code in herald_core_codes() {
        assert!(
            codes.as_array().unwrap().iter().any(|c| c == code),
            "{code}"
        );
    }
}

fn herald_core_codes() -> Vec<&'static str> {
    [
        "invalid_name",
        "invalid_body",
        "unauthorized",
        "forbidden",
        "not_found",
        "conflict",
        "payload_too_large",
        "idempotency_key_reused",
        "rate_limited",
        "quota_exceeded",
        "tenant_suspended",
        "csrf_rejected",
        "unavailable",
    ]
    .to_vec()
}

async fn the_served_document_is_the_generated_one(app: TestApp) {
    let r = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), herald::openapi::openapi_json());
}

async fn the_docs_page_renders_from_embedded_assets(app: TestApp) {
    let r = app.client.get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
        "swagger-ui.css",
    ] {
        let r = app
            .client
            .get(app.url(&format!("/api/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let body = r.text().await.unwrap();
        assert!(!body.is_empty(), "{asset}");
        if asset == "swagger-initializer.js" {
            assert!(body.contains("/api/openapi.json"), "{body}");
        }
    }
    // Nothing from a CDN: every script and stylesheet is served by Herald itself.
    for needle in [
        "src=\"http",
        "href=\"http",
        "//cdn",
        "unpkg.com",
        "jsdelivr",
    ] {
        assert!(!html.contains(needle), "the page loads {needle}…: {html}");
    }
}
