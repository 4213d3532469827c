//! Open streams follow the control plane (API.md §7: changes reach every edge within 1 s): a
//! stream whose credential no longer grants its channels ends, and its reconnect is refused;
//! streams the change still allows, of other channels or of other tenants, go on.

use std::time::{Duration, Instant};

use herald_tests::SseStream;
use herald_tests::{both_backends, Backend, TestApp};
use serde_json::{json, Value};

both_backends!(
    a_channel_turning_private_ends_its_anonymous_streams_within_a_second,
    a_tenant_default_turning_private_ends_the_anonymous_streams_it_covers,
    a_revoked_key_ends_the_streams_it_opened,
    an_emergency_rotation_ends_the_streams_of_the_old_keys_tokens,
    a_rotation_with_grace_ends_the_old_keys_streams_when_the_grace_does,
);

/// How long a change may take to reach an open stream.
const WITHIN: Duration = Duration::from_secs(1);

async fn open(app: &TestApp, path: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.unwrap()
}

async fn stream(app: &TestApp, path: &str, bearer: Option<&str>) -> SseStream {
    let r = open(app, path, bearer).await;
    assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    SseStream::new(r)
}

/// The problem's status and `code` for a connect that should be refused.
async fn refusal(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or_default();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Publishes to `channel` and asserts that every one of `streams` receives it.
async fn all_receive(
    app: &TestApp,
    key: &str,
    t: &str,
    channel: &str,
    streams: &mut [&mut SseStream],
) {
    let id = app
        .publish_ok(key, t, channel, json!({"data": "still here"}))
        .await;
    for s in streams.iter_mut() {
        let e = s.next().await;
        assert_eq!(e.id.as_deref(), Some(id.as_str()), "{channel}");
    }
}

async fn admin(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("origin", app.origin());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    assert!(
        r.status().is_success(),
        "{path}: {}",
        r.text().await.unwrap()
    );
}

/// Asserts that `s` ends within [`WITHIN`] of `since`.
async fn ends(s: &mut SseStream, since: Instant, what: &str) {
    assert!(s.ends_within(WITHIN * 3).await, "{what}: the stream ended");
    let took = since.elapsed();
    assert!(took <= WITHIN, "{what}: ended {took:?} after the change");
}

async fn token(app: &TestApp, t: &str, key: &str, channels: Value) -> String {
    let r = app
        .client
        .post(app.url(&format!("/v1/{t}/tokens")))
        .bearer_auth(key)
        .json(&json!({"channels": channels}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_owned()
}

async fn a_channel_turning_private_ends_its_anonymous_streams_within_a_second(app: TestApp) {
    // Signed up first: the client's session is then acme's owner's.
    let (other_t, other_key) = app.tenant("globex").await;
    let (t, key) = app.tenant("acme").await;
    let tok = token(&app, &t, &key, json!(["news"])).await;
    let news = format!("/v1/{t}/channels/news/events");
    let mut anonymous = stream(&app, &news, None).await;
    let mut several = stream(
        &app,
        &format!("/v1/{t}/events?channel=weather&channel=news"),
        None,
    )
    .await;
    let mut with_token = stream(&app, &format!("{news}?token={tok}"), None).await;
    let mut with_key = stream(&app, &news, Some(&key)).await;
    let mut weather = stream(&app, &format!("/v1/{t}/channels/weather/events"), None).await;
    let mut foreign = stream(&app, &format!("/v1/{other_t}/channels/news/events"), None).await;
    all_receive(
        &app,
        &key,
        &t,
        "news",
        &mut [&mut anonymous, &mut with_token, &mut with_key],
    )
    .await;
    several.next().await;

    admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/tenants/{t}/channels/news"),
        Some(json!({"visibility": "private"})),
    )
    .await;
    let changed = Instant::now();
    ends(&mut anonymous, changed, "anonymous on the channel").await;
    ends(
        &mut several,
        changed,
        "anonymous on several channels, one of them this one",
    )
    .await;
    assert_eq!(
        refusal(open(&app, &news, None).await).await,
        (401, "unauthorized".to_owned()),
        "the reconnect is refused"
    );
    // What the change still allows goes on.
    all_receive(
        &app,
        &key,
        &t,
        "news",
        &mut [&mut with_token, &mut with_key],
    )
    .await;
    all_receive(&app, &key, &t, "weather", &mut [&mut weather]).await;
    all_receive(&app, &other_key, &other_t, "news", &mut [&mut foreign]).await;
}

async fn a_tenant_default_turning_private_ends_the_anonymous_streams_it_covers(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    admin(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/tenants/{t}/channels"),
        Some(json!({"name": "lobby", "visibility": "public"})),
    )
    .await;
    let defaulted = format!("/v1/{t}/channels/news/events");
    let mut news = stream(&app, &defaulted, None).await;
    let mut lobby = stream(&app, &format!("/v1/{t}/channels/lobby/events"), None).await;
    all_receive(&app, &key, &t, "news", &mut [&mut news]).await;

    admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/tenants/{t}"),
        Some(json!({"channel_defaults": {"visibility": "private"}})),
    )
    .await;
    let changed = Instant::now();
    ends(&mut news, changed, "a channel on the tenant's defaults").await;
    assert_eq!(
        refusal(open(&app, &defaulted, None).await).await,
        (401, "unauthorized".to_owned())
    );
    // A channel with settings of its own keeps them.
    all_receive(&app, &key, &t, "lobby", &mut [&mut lobby]).await;
}

async fn a_revoked_key_ends_the_streams_it_opened(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let r = app
        .client
        .post(app.url(&format!("/api/v1/tenants/{t}/keys")))
        .header("origin", app.origin())
        .json(&json!({"name": "server", "scopes": ["subscribe"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let (doomed, doomed_id) = (
        created["secret"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    let path = format!("/v1/{t}/channels/orders/events");
    let mut revoked = stream(&app, &path, Some(&doomed)).await;
    let mut kept = stream(&app, &path, Some(&key)).await;
    let mut anonymous = stream(&app, &path, None).await;
    all_receive(
        &app,
        &key,
        &t,
        "orders",
        &mut [&mut revoked, &mut kept, &mut anonymous],
    )
    .await;

    admin(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/tenants/{t}/keys/{doomed_id}"),
        None,
    )
    .await;
    let changed = Instant::now();
    ends(&mut revoked, changed, "the revoked key's stream").await;
    assert_eq!(
        refusal(open(&app, &path, Some(&doomed)).await).await,
        (401, "unauthorized".to_owned())
    );
    all_receive(&app, &key, &t, "orders", &mut [&mut kept, &mut anonymous]).await;
}

async fn an_emergency_rotation_ends_the_streams_of_the_old_keys_tokens(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    app.make_private(&t, "vault").await;
    let old = token(&app, &t, &key, json!(["vault"])).await;
    let path = format!("/v1/{t}/channels/vault/events");
    let mut signed_by_old = stream(&app, &format!("{path}?token={old}"), None).await;
    let mut public = stream(&app, &format!("/v1/{t}/channels/lobby/events"), None).await;
    all_receive(&app, &key, &t, "vault", &mut [&mut signed_by_old]).await;

    admin(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/tenants/{t}/signing-keys?grace_seconds=0"),
        None,
    )
    .await;
    let changed = Instant::now();
    ends(
        &mut signed_by_old,
        changed,
        "a stream of a token of the old key",
    )
    .await;
    assert_eq!(
        refusal(open(&app, &format!("{path}?token={old}"), None).await).await,
        (401, "unauthorized".to_owned())
    );
    let new = token(&app, &t, &key, json!(["vault"])).await;
    let mut signed_by_new = stream(&app, &format!("{path}?token={new}"), None).await;
    all_receive(&app, &key, &t, "vault", &mut [&mut signed_by_new]).await;
    all_receive(&app, &key, &t, "lobby", &mut [&mut public]).await;
}

async fn a_rotation_with_grace_ends_the_old_keys_streams_when_the_grace_does(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    app.make_private(&t, "vault").await;
    let old = token(&app, &t, &key, json!(["vault"])).await;
    let path = format!("/v1/{t}/channels/vault/events?token={old}");
    let mut s = stream(&app, &path, None).await;
    let grace = Duration::from_secs(3);
    admin(
        &app,
        reqwest::Method::POST,
        &format!(
            "/api/v1/tenants/{t}/signing-keys?grace_seconds={}",
            grace.as_secs()
        ),
        None,
    )
    .await;
    let rotated = Instant::now();
    // Within the grace period the old key still verifies: the stream goes on.
    tokio::time::sleep(WITHIN).await;
    all_receive(&app, &key, &t, "vault", &mut [&mut s]).await;
    assert!(s.ends_within(grace * 2).await, "the stream ended");
    let took = rotated.elapsed();
    assert!(
        took >= grace - Duration::from_millis(100) && took <= grace + WITHIN,
        "ended {took:?} after a rotation with {grace:?} of grace"
    );
    assert_eq!(refusal(open(&app, &path, None).await).await.0, 401);
}

/// The change is made on one process; the stream is open on another (an `edge` process on the
/// same Postgres and Redis): it ends there within a second too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_turning_private_ends_its_streams_on_every_edge_process() {
    let app = TestApp::spawn(Backend::Cluster).await;
    let (t, key) = app.tenant("acme").await;
    let port = herald_tests::free_port();
    let _edge = herald_tests::spawn_process(&app, port, &["edge"]);
    herald_tests::wait_ready(port).await;
    let url = format!("http://127.0.0.1:{port}/v1/{t}/channels/news/events");
    let client = reqwest::Client::new();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut remote = SseStream::new(r);
    let mut weather = SseStream::new(
        client
            .get(format!(
                "http://127.0.0.1:{port}/v1/{t}/channels/weather/events"
            ))
            .send()
            .await
            .unwrap(),
    );
    all_receive(&app, &key, &t, "news", &mut [&mut remote]).await;

    admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/tenants/{t}/channels/news"),
        Some(json!({"visibility": "private"})),
    )
    .await;
    let changed = Instant::now();
    ends(&mut remote, changed, "the stream on the other process").await;
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(refusal(r).await, (401, "unauthorized".to_owned()));
    all_receive(&app, &key, &t, "weather", &mut [&mut weather]).await;
}
