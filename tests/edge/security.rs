//! Holes a security review found in the edge (issue 11), each closed with its test.

use herald_tests::{both_backends, now_secs, sign_token, TestApp};
use serde_json::{json, Value};

both_backends!(
    a_limited_key_mints_only_what_it_could_subscribe_to_itself,
    a_token_is_refused_before_its_nbf,
);

/// A `subscribe` key of `slug` limited to `channels`.
async fn limited_key(app: &TestApp, slug: &str, channels: Value) -> String {
    let r = app
        .client
        .post(app.url(&format!("/api/v1/tenants/{slug}/keys")))
        .header("origin", app.origin())
        .json(&json!({"name": "limited", "scopes": ["subscribe"], "channels": channels}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["secret"].as_str().unwrap().to_owned()
}

async fn mint(app: &TestApp, slug: &str, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/{slug}/tokens")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn a_limited_key_mints_only_what_it_could_subscribe_to_itself(app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    let feed = limited_key(&app, &t, json!(["feed*"])).await;
    // The key cannot subscribe to `notifications@42` itself, so it may not grant it through `sub`.
    for body in [
        json!({"channels": ["feed"], "sub": "42"}),
        json!({"sub": "42"}),
    ] {
        let r = mint(&app, &t, &feed, body.clone()).await;
        assert_eq!(r.status(), 403, "{body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let r = mint(&app, &t, &feed, json!({"channels": ["feed:1"]})).await;
    assert_eq!(r.status(), 201, "within its patterns it still mints");
    // A key limited to every channel, or not limited, may name a `sub`.
    for key in [
        limited_key(&app, &t, json!(["*"])).await,
        app.create_key(&t, &["subscribe"]).await,
    ] {
        let r = mint(&app, &t, &key, json!({"sub": "42"})).await;
        assert_eq!(r.status(), 201);
        let tok: Value = r.json().await.unwrap();
        let r = app
            .client
            .get(app.url(&format!(
                "/v1/{t}/channels/notifications@42/events?token={}",
                tok["token"].as_str().unwrap()
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

async fn a_token_is_refused_before_its_nbf(app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    app.make_private(&t, "vip").await;
    let keys = app.signing_keys(&t).await;
    let current = keys.iter().find(|k| k.current).unwrap();
    let open = |nbf: u64| {
        let token = sign_token(
            Some(&current.kid),
            &current.secret,
            &json!({"tenant": t, "channels": ["vip"], "exp": now_secs() + 3600, "nbf": nbf}),
        );
        let url = app.url(&format!("/v1/{t}/channels/vip/events?token={token}"));
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    let r = open(now_secs() + 3600).await;
    assert_eq!(r.status(), 401);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("nbf"),
        "{problem}"
    );
    // Within the leeway, and after, it opens.
    assert_eq!(open(now_secs() + 5).await.status(), 200);
    assert_eq!(open(now_secs() - 60).await.status(), 200);
}
