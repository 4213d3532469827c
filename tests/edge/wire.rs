//! What goes over the wire: headers, framing, data rendering.

use std::time::Duration;

use herald_tests::{both_backends, TestApp};
use serde_json::json;

both_backends!(
    headers_arrive_before_any_event,
    line_breaks_in_data_cannot_inject_fields_or_events,
    strings_arrive_as_text_and_other_values_as_compact_json,
    text_plain_bodies_publish_a_message_event,
    heartbeats_flow_while_no_event_does,
    unknown_tenant_is_404_and_bad_names_are_400,
);

async fn headers_arrive_before_any_event(app: TestApp) {
    let (t, _) = app.tenant("acme").await;
    let response = tokio::time::timeout(
        Duration::from_secs(2),
        app.client
            .get(app.url(&format!("/v1/{t}/channels/orders/events")))
            .send(),
    )
    .await
    .expect("headers without waiting for an event")
    .unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["access-control-allow-origin"], "*");
    let mut stream = herald_tests::SseStream::new(response);
    assert!(stream
        .next_within(Duration::from_millis(300))
        .await
        .is_none());
    assert_eq!(stream.retry, Some(2000), "the stream starts with retry:");
}

async fn line_breaks_in_data_cannot_inject_fields_or_events(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut stream = app.subscribe(&t, "c", None).await;
    let evil = "one\ntwo\rthree\r\nfour\n\nid: forged\nevent: admin\ndata: injected\n\n";
    let id = app.publish_ok(&key, &t, "c", json!({"data": evil})).await;
    app.publish_ok(&key, &t, "c", json!({"data": "after"}))
        .await;
    let first = stream.next().await;
    assert_eq!(first.id.as_deref(), Some(id.as_str()));
    assert_eq!(first.event, "message");
    assert_eq!(first.data, evil.replace("\r\n", "\n").replace('\r', "\n"));
    let second = stream.next().await;
    assert_eq!(
        second.data, "after",
        "nothing was injected between the two events"
    );
}

async fn strings_arrive_as_text_and_other_values_as_compact_json(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut stream = app.subscribe(&t, "c", None).await;
    let bodies = [
        json!({"data": "plain text"}),
        json!({"event": "order.created", "data": {"id": 7, "items": [1, 2], "note": null}}),
        json!({"data": null}),
        json!({"data": 42}),
        json!({"data": ""}),
    ];
    for b in &bodies {
        app.publish_ok(&key, &t, "c", b.clone()).await;
    }
    let got = stream.take(5).await;
    assert_eq!(got[0].data, "plain text");
    assert_eq!(got[1].event, "order.created");
    assert_eq!(got[1].data, r#"{"id":7,"items":[1,2],"note":null}"#);
    assert_eq!(got[2].data, "null");
    assert_eq!(got[3].data, "42");
    assert_eq!(got[4].data, "");
}

async fn text_plain_bodies_publish_a_message_event(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let mut stream = app.subscribe(&t, "c", None).await;
    let r = app
        .client
        .post(app.url(&format!("/v1/{t}/channels/c/events")))
        .bearer_auth(&key)
        .header("content-type", "text/plain; charset=utf-8")
        .body("hello {not json}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("message", "hello {not json}")
    );
    let r = app
        .client
        .post(app.url(&format!("/v1/{t}/channels/c/events")))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a text body that is not UTF-8 is refused");
}

async fn heartbeats_flow_while_no_event_does(app: TestApp) {
    let backend = app.backend;
    drop(app);
    let app = TestApp::spawn_with(backend, |c| c.heartbeat_secs = 1).await;
    let (t, _) = app.tenant("acme").await;
    let mut stream = app.subscribe(&t, "c", None).await;
    assert!(stream
        .next_within(Duration::from_millis(2500))
        .await
        .is_none());
    assert!(
        stream.comments >= 2,
        "keepalive comments: {}",
        stream.comments
    );
}

async fn unknown_tenant_is_404_and_bad_names_are_400(app: TestApp) {
    let (t, key) = app.tenant("acme").await;
    let get = |path: String| app.client.get(app.url(&path)).send();
    let r = get("/v1/nobody/channels/c/events".into()).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    for bad in ["bad%20name", "a*b", &"x".repeat(129)] {
        let r = get(format!("/v1/{t}/channels/{bad}/events")).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_name");
    }
    let r = app
        .publish(&key, &t, "ok", json!({"event": "herald.gap", "data": 1}))
        .await;
    assert_eq!(r.status(), 400, "reserved event types are refused");
    let r = app
        .publish(&key, &t, "ok", json!({"event": "", "data": 1}))
        .await;
    assert_eq!(r.status(), 400);
}
