//! What a real process logs, as JSON: every line parses; request lines carry the route, the
//! tenant and the request id; each stream's end is one line; and no secret of any flow that
//! carries one (passwords, session cookies, API keys, signing secrets, subscriber tokens, the
//! secrets key) ever appears.

use std::time::Duration;

use futures_util::StreamExt;
use herald_tests::{both_backends, free_port, spawn_process_logging, wait_ready, TestApp};
use reqwest::Client;
use serde_json::{json, Value};

both_backends!(json_logs_name_each_request_and_stream_and_hold_no_secret);

const PASSWORD: &str = "log-test password one";
const WRONG_PASSWORD: &str = "log-test wrong password";
const NEW_PASSWORD: &str = "log-test password two";
const SECRETS_KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=";

/// The `herald_session` value a response set.
fn session_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("herald_session="))
        .and_then(|c| c.split(';').next())
        .filter(|v| !v.is_empty())
        .expect("a session cookie")
        .to_owned()
}

/// A stream that opened.
fn opened(r: reqwest::Response) -> reqwest::Response {
    assert_eq!(r.status(), 200);
    r
}

async fn json_logs_name_each_request_and_stream_and_hold_no_secret(app: TestApp) {
    let log_path = std::env::temp_dir().join(format!("herald-logs-{}.log", free_port()));
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    // A heartbeat a second: a stream whose client left is noticed at the next one.
    let flags = [
        "--log-format",
        "json",
        "--heartbeat-secs",
        "1",
        "--secrets-key",
        SECRETS_KEY,
    ];
    let mut process = spawn_process_logging(&app, port, &flags, log);
    wait_ready(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = Client::new();
    let mut secrets: Vec<(&str, String)> = vec![
        ("password", PASSWORD.into()),
        ("wrong password", WRONG_PASSWORD.into()),
        ("new password", NEW_PASSWORD.into()),
        ("secrets key", SECRETS_KEY.into()),
    ];

    let r = http
        .post(format!("{base}/api/v1/signup"))
        .json(&json!({"email": "owner@logs.example", "password": PASSWORD,
            "tenant": {"slug": "logs", "name": "Logs"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    secrets.push(("signup session", session_cookie(&r)));
    let r = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"email": "owner@logs.example", "password": WRONG_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"email": "owner@logs.example", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let session = session_cookie(&r);
    secrets.push(("login session", session.clone()));
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .header("origin", &base)
            .header("cookie", format!("herald_session={session}"))
    };
    let r = admin(reqwest::Method::POST, "/api/v1/tenants/logs/keys")
        .json(&json!({"name": "k", "scopes": ["publish", "subscribe"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key = r.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push(("API key", key.clone()));
    let r = admin(reqwest::Method::POST, "/api/v1/tenants/logs/signing-keys")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "rotate: {}", r.status());
    let r = admin(reqwest::Method::GET, "/api/v1/tenants/logs/signing-keys")
        .send()
        .await
        .unwrap();
    for k in r.json::<Value>().await.unwrap().as_array().unwrap() {
        secrets.push(("signing secret", k["secret"].as_str().unwrap().to_owned()));
    }

    // Publish, with an id of the client's; and once with a key that does not exist.
    let r = http
        .post(format!("{base}/v1/logs/channels/c/events"))
        .bearer_auth(&key)
        .header("x-request-id", "logs-test-publish")
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let forged = format!("{}Zz9{}", &key[..11], &key[14..]);
    let r = http
        .post(format!("{base}/v1/logs/channels/c/events"))
        .bearer_auth(&forged)
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    secrets.push(("forged API key", forged));

    // A subscriber token, used in the query string as a browser does.
    let r = http
        .post(format!("{base}/v1/logs/tokens"))
        .bearer_auth(&key)
        .json(&json!({"channels": ["c"], "ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push(("subscriber token", token.clone()));
    let stream_url = format!("{base}/v1/logs/channels/c/events?token={token}");
    // One stream the client ends after two events, one the drain ends.
    let gone = opened(http.get(&stream_url).send().await.unwrap());
    let drained = opened(http.get(&stream_url).send().await.unwrap());
    for data in [2, 3] {
        let r = http
            .post(format!("{base}/v1/logs/channels/c/events"))
            .bearer_auth(&key)
            .json(&json!({ "data": data }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let mut body = gone.bytes_stream();
    let mut seen = String::new();
    while seen.matches("data:").count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("events arrive")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(body);
    // Two heartbeats: the first write after the client left may still succeed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = admin(reqwest::Method::POST, "/api/v1/me/password")
        .json(&json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "password change: {}", r.status());

    let pid = process.id();
    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = tokio::task::spawn_blocking(move || process.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the process drained and exited: {status}");
    drop(drained);

    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 10, "{} lines logged", lines.len());

    let publish_line = lines
        .iter()
        .find(|l| {
            l["span"]["request_id"] == "logs-test-publish"
                && l["fields"]["message"] == "finished processing request"
        })
        .unwrap_or_else(|| panic!("no request line for the publish in:\n{text}"));
    assert_eq!(
        publish_line["span"]["route"],
        "/v1/{tenant}/channels/{channel}/events"
    );
    assert_eq!(publish_line["span"]["tenant"], "logs");
    assert_eq!(publish_line["span"]["method"], "POST");
    assert_eq!(publish_line["fields"]["status"], 201);
    let request_lines = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "finished processing request");
    for l in request_lines {
        let id = l["span"]["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "a request line without its id: {l}");
        assert!(l["span"]["route"].is_string(), "{l}");
    }

    let ends: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "stream ended")
        .collect();
    let reason = |r: &str| {
        ends.iter()
            .find(|l| l["fields"]["reason"] == r)
            .unwrap_or_else(|| panic!("no stream ended for {r} in {ends:?}"))
    };
    let (client_gone, drain) = (reason("client_gone"), reason("drain"));
    for end in [client_gone, drain] {
        assert_eq!(end["fields"]["tenant"], "logs");
        assert_eq!(end["fields"]["deliveries"], 2, "{end}");
        assert!(end["fields"]["duration_ms"].as_u64().is_some(), "{end}");
    }

    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what} is a real secret");
        assert!(!text.contains(secret.as_str()), "the {what} was logged");
    }
}
