//! The web admin inspector's token: a member mints, by session, a short-lived token for one
//! channel, and it opens exactly that channel.

use herald_tests::{both_backends, now_secs, TestApp};
use serde_json::{json, Value};

use crate::{account, call, call_ok, problem};

both_backends!(
    a_member_mints_a_token_that_opens_only_that_channel,
    the_token_of_a_personal_channel_carries_its_user,
    only_members_of_the_tenant_mint_inspector_tokens,
);

fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn status_of(app: &TestApp, slug: &str, channel: &str, token: &str) -> u16 {
    let r = app
        .client
        .get(app.url(&format!("/v1/{slug}/channels/{channel}/events")))
        .query(&[("token", token)])
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

async fn a_member_mints_a_token_that_opens_only_that_channel(app: TestApp) {
    let (slug, _key) = app.tenant("acme").await;
    app.make_private(&slug, "billing").await;
    app.make_private(&slug, "payroll").await;
    let path = "/api/v1/tenants/acme/channels/billing/token";
    let minted = call_ok(&app, &app.client, "POST", path, None, 201).await;
    let token = minted["token"].as_str().unwrap();
    let claims = jwt_claims(token);
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["channels"], json!(["billing"]));
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp > now_secs() && exp <= now_secs() + 301, "{exp}");
    assert!(minted["expires_at"].is_string());

    assert_eq!(status_of(&app, &slug, "billing", token).await, 200);
    assert_eq!(status_of(&app, &slug, "payroll", token).await, 403);
}

async fn the_token_of_a_personal_channel_carries_its_user(app: TestApp) {
    let (slug, _key) = app.tenant("acme").await;
    let path = "/api/v1/tenants/acme/channels/notifications@42/token";
    let minted = call_ok(&app, &app.client, "POST", path, None, 201).await;
    let token = minted["token"].as_str().unwrap();
    assert_eq!(jwt_claims(token)["sub"], "42");
    assert_eq!(status_of(&app, &slug, "notifications@42", token).await, 200);
    assert_eq!(status_of(&app, &slug, "notifications@7", token).await, 403);
}

async fn only_members_of_the_tenant_mint_inspector_tokens(app: TestApp) {
    app.tenant("acme").await;
    let path = "/api/v1/tenants/acme/channels/billing/token";
    let stranger = account(&app, "eve@example.com", "evil").await;
    let r = call(&app, &stranger, "POST", path, None).await;
    problem(r, 404, "not_found").await;
    let anonymous = reqwest::Client::new();
    let r = call(&app, &anonymous, "POST", path, None).await;
    problem(r, 401, "unauthorized").await;
    // Cookie-authenticated, so the CSRF rule holds: no Origin, no token.
    let r = app.client.post(app.url(path)).send().await.unwrap();
    problem(r, 403, "csrf_rejected").await;
    let r = call(
        &app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/channels/a%20b/token",
        None,
    )
    .await;
    problem(r, 400, "invalid_name").await;
}
