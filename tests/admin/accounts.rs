//! Sign-up, login, sessions and the CSRF rule.

use herald_tests::{both_backends, TestApp};
use serde_json::{json, Value};

both_backends!(
    signup_creates_account_tenant_and_session,
    duplicate_email_or_slug_is_409,
    login_failures_are_identical_for_unknown_email_and_wrong_password,
    logout_ends_the_session_on_the_server,
    cookie_writes_from_another_origin_are_refused,
    bad_signups_are_400,
);

fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

async fn signup_creates_account_tenant_and_session(app: TestApp) {
    let r = app
        .client
        .post(app.url("/api/v1/signup"))
        .json(&json!({"email": "Ann@Example.com", "password": "correct horse battery", "tenant": {"slug": "acme", "name": "Acme"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["herald_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let me: Value = app
        .client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["account"]["email"], "ann@example.com");
    assert_eq!(me["tenants"][0]["slug"], "acme");
    assert_eq!(me["tenants"][0]["role"], "owner");
    let r = app
        .client
        .post(app.url("/api/v1/tenants"))
        .header("origin", app.origin())
        .json(&json!({"slug": "acme-two", "name": "Second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let list: Value = app
        .client
        .get(app.url("/api/v1/tenants"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
}

async fn duplicate_email_or_slug_is_409(app: TestApp) {
    app.signup("acme").await;
    let again = |email: &str, slug: &str| {
        fresh_client()
            .post(app.url("/api/v1/signup"))
            .json(&json!({"email": email, "password": "correct horse battery", "tenant": {"slug": slug, "name": "x"}}))
            .send()
    };
    let r = again("OWNER@acme.example", "other").await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "conflict");
    let r = again("new@new.example", "acme").await.unwrap();
    assert_eq!(r.status(), 409);
}

async fn login_failures_are_identical_for_unknown_email_and_wrong_password(app: TestApp) {
    app.signup("acme").await;
    let login = |email: &str, password: &str| {
        fresh_client()
            .post(app.url("/api/v1/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    let ok = login("owner@acme.example", "correct horse battery staple")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("set-cookie"));
    let wrong = login("owner@acme.example", "wrong password!!")
        .await
        .unwrap();
    let unknown = login("nobody@acme.example", "wrong password!!")
        .await
        .unwrap();
    let short = login("nobody@acme.example", "short").await.unwrap();
    let (a, b, c) = (wrong.status(), unknown.status(), short.status());
    // Identical but for the request id every problem carries, which names the request.
    let body = |mut v: Value| {
        let id = v.as_object_mut().and_then(|o| o.remove("request_id"));
        assert!(
            id.is_some_and(|id| id.is_string()),
            "a problem names its request"
        );
        v
    };
    let bodies = (
        body(wrong.json().await.unwrap()),
        body(unknown.json().await.unwrap()),
        body(short.json().await.unwrap()),
    );
    assert_eq!(
        (a, b, c),
        (
            401.try_into().unwrap(),
            401.try_into().unwrap(),
            401.try_into().unwrap()
        )
    );
    assert_eq!(bodies.0, bodies.1);
    assert_eq!(bodies.1, bodies.2);
}

async fn logout_ends_the_session_on_the_server(app: TestApp) {
    let r = app
        .client
        .post(app.url("/api/v1/signup"))
        .json(&json!({"email": "a@b.example", "password": "correct horse battery", "tenant": {"slug": "acme", "name": "A"}}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let plain = reqwest::Client::new();
    let me = || {
        plain
            .get(app.url("/api/v1/me"))
            .header("cookie", &cookie)
            .send()
    };
    assert_eq!(me().await.unwrap().status(), 200);
    let r = plain
        .post(app.url("/api/v1/logout"))
        .header("cookie", &cookie)
        .header("origin", app.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The old cookie, replayed, no longer works: the session ended on the server.
    assert_eq!(me().await.unwrap().status(), 401);
}

async fn cookie_writes_from_another_origin_are_refused(app: TestApp) {
    app.signup("acme").await;
    let create = |origin: Option<&str>, referer: Option<&str>| {
        let mut req = app
            .client
            .post(app.url("/api/v1/tenants/acme/keys"))
            .json(&json!({"name": "k", "scopes": ["publish"]}));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(r) = referer {
            req = req.header("referer", r);
        }
        req.send()
    };
    for (origin, referer) in [
        (Some("https://evil.example"), None),
        (None, None),
        (None, Some("https://evil.example/page")),
    ] {
        let r = create(origin, referer).await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "csrf_rejected");
    }
    let referer = format!("{}/admin", app.origin());
    assert_eq!(create(None, Some(&referer)).await.unwrap().status(), 201);
    assert_eq!(
        create(Some(&app.origin()), None).await.unwrap().status(),
        201
    );
    let r = fresh_client()
        .post(app.url("/api/v1/login"))
        .header("origin", "https://evil.example")
        .json(&json!({"email": "owner@acme.example", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no login from a foreign page");
}

async fn bad_signups_are_400(app: TestApp) {
    let cases = [
        json!({"email": "not-an-email", "password": "correct horse battery", "tenant": {"slug": "acme", "name": "A"}}),
        json!({"email": "a@b.example", "password": "short", "tenant": {"slug": "acme", "name": "A"}}),
        json!({"email": "a@b.example", "password": "correct horse battery", "tenant": {"slug": "Bad Slug", "name": "A"}}),
        json!({"email": "a@b.example", "password": "correct horse battery"}),
    ];
    for body in cases {
        let r = fresh_client()
            .post(app.url("/api/v1/signup"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}
