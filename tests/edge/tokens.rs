//! Private channels and subscriber tokens: each rule of API.md §6 as its own test.

use std::time::Duration;

use herald_tests::{both_backends, eventually, now_secs, sign_token, TestApp};
use serde_json::{json, Value};

both_backends!(
    a_private_channel_needs_a_token_that_grants_it,
    minted_tokens_work_in_the_query_and_as_a_bearer,
    wildcards_grant_by_prefix_only_at_the_end,
    a_token_of_another_tenant_is_401,
    algorithms_other_than_hs256_are_refused,
    expiry_is_enforced_with_30_seconds_of_leeway,
    a_missing_or_unknown_kid_is_401,
    personal_channels_need_a_token_for_that_user,
    rotated_out_secrets_verify_only_within_the_grace_period,
    minting_needs_the_subscribe_scope_and_valid_patterns,
    publishing_to_a_personal_channel_reaches_every_device_of_the_user,
);

async fn status(app: &TestApp, path: &str, bearer: Option<&str>) -> u16 {
    let mut req = app.client.get(app.url(path));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    if s != 200 {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    s
}

async fn mint(app: &TestApp, t: &str, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/{t}/tokens")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn token(app: &TestApp, t: &str, key: &str, body: Value) -> String {
    let r = mint(app, t, key, body).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    v["token"].as_str().unwrap().to_owned()
}

/// A token signed with the tenant's current secret, as the tenant's own server would.
async fn own_token(app: &TestApp, t: &str, claims: Value) -> String {
    let keys = app.signing_keys(t).await;
    let current = keys.iter().find(|k| k.current).unwrap();
    sign_token(Some(&current.kid), &current.secret, &claims)
}

async fn a_private_channel_needs_a_token_that_grants_it(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    app.make_private(&t, "secret").await;
    assert_eq!(
        status(&app, &format!("/v1/{t}/channels/secret/events"), None).await,
        401
    );
    let granted = token(&app, &t, &key, json!({"channels": ["secret"]})).await;
    let other = token(&app, &t, &key, json!({"channels": ["public"]})).await;
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/secret/events?token={granted}"),
            None
        )
        .await,
        200
    );
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/secret/events?token={other}"),
            None
        )
        .await,
        403
    );
    assert_eq!(
        status(&app, &format!("/v1/{t}/channels/public/events"), None).await,
        200,
        "public needs none"
    );
    // On a multi-channel connection every channel is checked.
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/events?channel=public&channel=secret&token={other}"),
            None
        )
        .await,
        403
    );
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/events?channel=public&channel=secret&token={granted}"),
            None
        )
        .await,
        200
    );
}

async fn minted_tokens_work_in_the_query_and_as_a_bearer(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    app.make_private(&t, "orders").await;
    let tok = token(
        &app,
        &t,
        &key,
        json!({"channels": ["orders"], "ttl_seconds": 60, "sub": "u1"}),
    )
    .await;
    assert_eq!(
        status(&app, &format!("/v1/{t}/channels/orders/events"), Some(&tok)).await,
        200
    );
    let r = app
        .client
        .get(app.url(&format!("/v1/{t}/channels/orders/events?token={tok}")))
        .send()
        .await
        .unwrap();
    let mut stream = herald_tests::SseStream::new(r);
    app.publish_ok(&key, &t, "orders", json!({"data": "for token holders"}))
        .await;
    assert_eq!(stream.next().await.data, "for token holders");
    // History accepts the token too.
    let r = app
        .client
        .get(app.url(&format!("/v1/{t}/channels/orders/history?token={tok}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn wildcards_grant_by_prefix_only_at_the_end(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    for c in ["team:7:chat", "team:8:chat"] {
        app.make_private(&t, c).await;
    }
    let tok = token(&app, &t, &key, json!({"channels": ["team:7:*"]})).await;
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/team:7:chat/events?token={tok}"),
            None
        )
        .await,
        200
    );
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/team:8:chat/events?token={tok}"),
            None
        )
        .await,
        403
    );
    let r = mint(&app, &t, &key, json!({"channels": ["team:*:chat"]})).await;
    assert_eq!(r.status(), 400, "a wildcard in the middle cannot be minted");
    let own = own_token(
        &app,
        &t,
        json!({"tenant": t, "channels": ["team:*:chat"], "exp": now_secs() + 60}),
    )
    .await;
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/team:7:chat/events?token={own}"),
            None
        )
        .await,
        401,
        "nor accepted when self-signed"
    );
}

async fn a_token_of_another_tenant_is_401(app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    app.make_private(&t, "c").await;
    let other = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    other
        .post(app.url("/api/v1/signup"))
        .json(&json!({"email": "b@b.example", "password": "another long password", "tenant": {"slug": "beta", "name": "B"}}))
        .send()
        .await
        .unwrap();
    let beta = app.signing_keys("beta").await;
    let beta_key = beta.iter().find(|k| k.current).unwrap();
    // Signed by beta, claiming either tenant: never valid for acme.
    for tenant_claim in ["beta", "acme"] {
        let tok = sign_token(
            Some(&beta_key.kid),
            &beta_key.secret,
            &json!({"tenant": tenant_claim, "channels": ["*"], "exp": now_secs() + 60}),
        );
        assert_eq!(
            status(
                &app,
                &format!("/v1/{t}/channels/c/events?token={tok}"),
                None
            )
            .await,
            401
        );
    }
    // Signed by acme but claiming beta.
    let tok = own_token(
        &app,
        &t,
        json!({"tenant": "beta", "channels": ["*"], "exp": now_secs() + 60}),
    )
    .await;
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/c/events?token={tok}"),
            None
        )
        .await,
        401
    );
}

async fn algorithms_other_than_hs256_are_refused(app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    app.make_private(&t, "c").await;
    let keys = app.signing_keys(&t).await;
    let k = keys.iter().find(|k| k.current).unwrap();
    let claims = json!({"tenant": t, "channels": ["*"], "exp": now_secs() + 60});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
    header.kid = Some(k.kid.clone());
    let hs512 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(k.secret.as_bytes()),
    )
    .unwrap();
    // alg "none": header and claims, no signature.
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": k.kid})),
        b64(&claims)
    );
    for tok in [hs512, none, "not.a.jwt".to_owned()] {
        assert_eq!(
            status(
                &app,
                &format!("/v1/{t}/channels/c/events?token={tok}"),
                None
            )
            .await,
            401,
            "{tok}"
        );
    }
    let good = own_token(&app, &t, claims).await;
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/c/events?token={good}"),
            None
        )
        .await,
        200
    );
}

async fn expiry_is_enforced_with_30_seconds_of_leeway(app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    app.make_private(&t, "c").await;
    let at = |exp: u64| json!({"tenant": t, "channels": ["c"], "exp": exp});
    let expired = own_token(&app, &t, at(now_secs() - 120)).await;
    let within_leeway = own_token(&app, &t, at(now_secs() - 5)).await;
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/c/events?token={expired}"),
            None
        )
        .await,
        401
    );
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/c/events?token={within_leeway}"),
            None
        )
        .await,
        200
    );
    let no_exp = own_token(&app, &t, json!({"tenant": t, "channels": ["c"]})).await;
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/c/events?token={no_exp}"),
            None
        )
        .await,
        401,
        "exp is required"
    );
}

async fn a_missing_or_unknown_kid_is_401(app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    app.make_private(&t, "c").await;
    let keys = app.signing_keys(&t).await;
    let k = keys.iter().find(|k| k.current).unwrap();
    let claims = json!({"tenant": t, "channels": ["c"], "exp": now_secs() + 60});
    for kid in [None, Some("nokey123")] {
        let tok = sign_token(kid, &k.secret, &claims);
        assert_eq!(
            status(
                &app,
                &format!("/v1/{t}/channels/c/events?token={tok}"),
                None
            )
            .await,
            401
        );
    }
    let wrong_secret = sign_token(Some(&k.kid), "not the secret", &claims);
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/c/events?token={wrong_secret}"),
            None
        )
        .await,
        401
    );
}

async fn personal_channels_need_a_token_for_that_user(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let path = format!("/v1/{t}/channels/notifications@42/events");
    assert_eq!(
        status(&app, &path, None).await,
        401,
        "private by construction"
    );
    let mine = token(&app, &t, &key, json!({"sub": "42"})).await;
    let theirs = token(&app, &t, &key, json!({"sub": "43", "channels": ["*"]})).await;
    let anonymous_grant = token(&app, &t, &key, json!({"channels": ["notifications@42"]})).await;
    assert_eq!(
        status(&app, &format!("{path}?token={mine}"), None).await,
        200,
        "sub alone grants it"
    );
    assert_eq!(
        status(&app, &format!("{path}?token={theirs}"), None).await,
        403,
        "no wildcard grants it"
    );
    assert_eq!(
        status(&app, &format!("{path}?token={anonymous_grant}"), None).await,
        403,
        "nor a channel grant"
    );
}

async fn publishing_to_a_personal_channel_reaches_every_device_of_the_user(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let tok = token(&app, &t, &key, json!({"sub": "ann"})).await;
    let open = || async {
        let r = app
            .client
            .get(app.url(&format!("/v1/{t}/channels/inbox@ann/events?token={tok}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        herald_tests::SseStream::new(r)
    };
    let (mut phone, mut laptop) = (open().await, open().await);
    app.publish_ok(&key, &t, "inbox@ann", json!({"data": "hi ann"}))
        .await;
    assert_eq!(phone.next().await.data, "hi ann");
    assert_eq!(laptop.next().await.data, "hi ann");
}

async fn rotated_out_secrets_verify_only_within_the_grace_period(app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    app.make_private(&t, "c").await;
    let claims = json!({"tenant": t, "channels": ["c"], "exp": now_secs() + 600});
    let old = own_token(&app, &t, claims.clone()).await;
    let store = app.store().await;
    let tenant = store
        .tenant_by_slug(&herald_tests::herald_core_names::slug(&t))
        .await
        .unwrap()
        .unwrap();
    // Inside the grace period the old secret still verifies, next to the new one.
    store
        .rotate_signing_key(tenant.id, Duration::from_secs(3600))
        .await
        .unwrap();
    let new = own_token(&app, &t, claims.clone()).await;
    assert_ne!(old, new);
    assert!(
        eventually(3, || async {
            status(
                &app,
                &format!("/v1/{t}/channels/c/events?token={new}"),
                None,
            )
            .await
                == 200
        })
        .await
    );
    assert_eq!(
        status(
            &app,
            &format!("/v1/{t}/channels/c/events?token={old}"),
            None
        )
        .await,
        200
    );
    // A rotation with no grace retires the previous secret at once... and the one before it
    // (whose grace still ran) stays until its own grace ends.
    store
        .rotate_signing_key(tenant.id, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        eventually(3, || async {
            status(
                &app,
                &format!("/v1/{t}/channels/c/events?token={new}"),
                None,
            )
            .await
                == 401
        })
        .await,
        "outside its grace period a rotated-out secret no longer verifies"
    );
}

async fn minting_needs_the_subscribe_scope_and_valid_patterns(app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    let publish_only = app.create_key(&t, &["publish"]).await;
    assert_eq!(
        mint(&app, &t, &publish_only, json!({"channels": ["c"]}))
            .await
            .status(),
        403
    );
    let sub = app.create_key(&t, &["subscribe"]).await;
    for bad in [
        json!({"channels": ["a b"]}),
        json!({"channels": ["c"], "ttl_seconds": 0}),
        json!({"channels": "c"}),
        json!({"sub": ""}),
    ] {
        assert_eq!(
            mint(&app, &t, &sub, bad.clone()).await.status(),
            400,
            "{bad}"
        );
    }
    assert_eq!(mint(&app, &t, "hk_nope", json!({})).await.status(), 401);
}
