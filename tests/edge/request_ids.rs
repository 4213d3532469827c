//! Request ids: the client's `X-Request-Id` when it is sane, else one made by the server; in
//! every response's header and every problem body.

use herald_tests::{both_backends, TestApp};
use reqwest::header::HeaderValue;
use serde_json::{json, Value};

both_backends!(a_sane_request_id_round_trips_and_any_other_is_replaced);

/// Sends a publish without a key (a 401) with `id` as `X-Request-Id`, and returns the response's
/// id and the problem body's.
async fn refused(app: &TestApp, id: Option<HeaderValue>) -> (String, Value) {
    let mut req = app
        .client
        .post(app.url("/v1/acme/channels/c/events"))
        .json(&json!({"data": 1}));
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 401);
    let header = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    (header, body["request_id"].clone())
}

fn is_made_here(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn a_sane_request_id_round_trips_and_any_other_is_replaced(app: TestApp) {
    app.tenant("acme").await;
    let sane = "req-7f3a:frontend/42";
    let (header, body) = refused(&app, Some(HeaderValue::from_static(sane))).await;
    assert_eq!((header.as_str(), body), (sane, json!(sane)));
    let longest = "x".repeat(128);
    let (header, _) = refused(&app, Some(HeaderValue::from_str(&longest).unwrap())).await;
    assert_eq!(header, longest);

    // Successful answers carry it too.
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", sane)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], sane);

    // Too long, a space (a forged log field), a byte outside ASCII, or none: one of ours.
    let insane = [
        Some(HeaderValue::from_str(&"x".repeat(129)).unwrap()),
        Some(HeaderValue::from_static("two words")),
        Some(HeaderValue::from_bytes(b"caf\xe9").unwrap()),
        None,
    ];
    let mut made = Vec::new();
    for id in insane {
        let (header, body) = refused(&app, id.clone()).await;
        assert!(is_made_here(&header), "{id:?} gave {header:?}");
        assert_eq!(body, json!(header), "the body repeats the header");
        made.push(header);
    }
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 4, "a fresh id for each request");
}
