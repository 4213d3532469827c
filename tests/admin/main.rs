//! Black-box tests of the admin API (`/api/v1`), each run on both backends.

mod accounts;
mod channels;
mod inspector;
mod isolation;
mod keys;
mod logs;
mod openapi;
mod operators;
mod security;
mod sessions;
mod tenants;
mod web;

use herald_tests::TestApp;
use reqwest::{Client, Method, Response};
use serde_json::{json, Value};

/// A second person: an account owning `slug`, with a client of its own that holds its session.
pub async fn account(app: &TestApp, email: &str, slug: &str) -> Client {
    let client = Client::builder().cookie_store(true).build().unwrap();
    let r = client
        .post(app.url("/api/v1/signup"))
        .json(&json!({"email": email, "password": "another long password",
            "tenant": {"slug": slug, "name": slug}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "signup: {}", r.text().await.unwrap());
    client
}

/// A request as a browser of the app's own origin sends it, with a JSON body when given.
pub async fn call(
    app: &TestApp,
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Response {
    let mut req = client
        .request(method.parse::<Method>().unwrap(), app.url(path))
        .header("origin", app.origin());
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

/// Like [`call`], asserting the status and returning the JSON body (`null` when empty).
pub async fn call_ok(
    app: &TestApp,
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let r = call(app, client, method, path, body).await;
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{method} {path}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// A request with an API key as Bearer token and no cookie.
pub async fn with_key(
    app: &TestApp,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Response {
    let mut req = Client::new()
        .request(method.parse::<Method>().unwrap(), app.url(path))
        .bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

/// Asserts that a response is problem+json with `code`, and returns it.
pub async fn problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body
}
