//! Traces from publish to socket, across processes: two edges on one Redis export to an OTLP
//! receiver of the test's own, and one publish, with a subscriber on each edge, comes back as
//! one trace — the request, the broker's append and its Redis script, and a `fanout` span on
//! each edge — that names the tenant and the channel and holds no secret.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{spawn_reader, RedisKind, TestCluster};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;

/// Every export the receiver was sent: the request as posted, and decoded.
#[derive(Default)]
struct Received {
    raw: Vec<Vec<u8>>,
    decoded: Vec<ExportTraceServiceRequest>,
}

type Inbox = Arc<Mutex<Received>>;

/// An OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
async fn start_receiver() -> (String, Inbox) {
    async fn traces(State(inbox): State<Inbox>, body: Bytes) -> (StatusCode, Vec<u8>) {
        let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
            return (StatusCode::BAD_REQUEST, Vec::new());
        };
        let mut inbox = inbox.lock().unwrap();
        inbox.raw.push(body.to_vec());
        inbox.decoded.push(request);
        (
            StatusCode::OK,
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
    }
    let inbox = Inbox::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, inbox)
}

/// A span as received, with the resource of the process that sent it.
#[derive(Debug, Clone)]
struct Got {
    span: Span,
    instance: String,
}

impl Got {
    fn attr(&self, key: &str) -> Option<String> {
        string_attr(&self.span.attributes, key)
    }
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let value = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Every span received so far.
fn spans(inbox: &Inbox) -> Vec<Got> {
    let inbox = inbox.lock().unwrap();
    let mut out = Vec::new();
    for request in &inbox.decoded {
        for rs in &request.resource_spans {
            let instance = rs
                .resource
                .as_ref()
                .and_then(|r| string_attr(&r.attributes, "service.instance.id"))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    out.push(Got {
                        span: span.clone(),
                        instance: instance.clone(),
                    });
                }
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_publish_is_one_trace_from_the_request_to_the_fanout_on_each_edge() {
    one_trace(RedisKind::One).await;
}

/// The same through Redis Cluster, where the append is a script per channel's slot and the
/// announcement a sharded publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_publish_is_one_trace_on_redis_cluster_too() {
    one_trace(RedisKind::Cluster).await;
}

async fn one_trace(kind: RedisKind) {
    let (receiver, inbox) = start_receiver().await;
    let tc = TestCluster::start_on_redis_with(kind, |spec| {
        spec.edges = 2;
        spec.env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.clone()),
            // Export within a fraction of a second rather than the default five.
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
            ("OTEL_TRACES_SAMPLER".into(), "parentbased_always_on".into()),
        ];
    })
    .await;
    let (slug, key, _) = tc.tenant("traced").await;
    let edges = tc.edge_urls();
    let cookie = format!("herald_session=cookie-{:016x}", rand_secret());

    let r = tc
        .http
        .post(format!("{}/v1/{slug}/tokens", edges[0]))
        .bearer_auth(&key)
        .json(&serde_json::json!({"channels": ["orders"], "ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // One subscriber on each edge, the token in the query string (where browsers send it).
    let readers: Vec<_> = edges
        .iter()
        .map(|edge| {
            spawn_reader(
                tc.http.clone(),
                format!("{edge}/v1/{slug}/channels/orders/events?token={token}"),
                Duration::from_millis(250),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !readers.iter().all(|(s, _)| s.lock().unwrap().connected) {
        assert!(Instant::now() < deadline, "both subscribers connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The client's own trace: the publish must continue it.
    let trace_id = format!("{:016x}{:016x}", rand_secret(), rand_secret());
    let client_span = format!("{:016x}", rand_secret() | 1);
    let r = tc
        .http
        .post(format!("{}/v1/{slug}/channels/orders/events", edges[0]))
        .bearer_auth(&key)
        .header("cookie", &cookie)
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&serde_json::json!({"event": "order.created", "data": {"id": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let cursor = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    while !readers
        .iter()
        .all(|(s, _)| s.lock().unwrap().events.iter().any(|e| e.id == cursor))
    {
        assert!(Instant::now() < deadline, "both subscribers get the event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The batch exporters post within their schedule delay; wait for both fan-outs.
    let trace = loop {
        let trace: Vec<Got> = spans(&inbox)
            .into_iter()
            .filter(|g| hex(&g.span.trace_id) == trace_id)
            .collect();
        let fanouts = trace.iter().filter(|g| g.span.name == "fanout").count();
        if fanouts >= 2 && trace.iter().any(|g| g.span.name == "request") {
            break trace;
        }
        assert!(
            Instant::now() < deadline,
            "the trace arrives whole; so far: {:?}",
            trace.iter().map(|g| &g.span.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_name =
        |name: &str| -> Vec<&Got> { trace.iter().filter(|g| g.span.name == name).collect() };
    let one = |name: &str| -> &Got {
        let found = by_name(name);
        assert_eq!(found.len(), 1, "one {name} span in {trace:#?}");
        found[0]
    };

    // The request continues the client's trace, on the edge that took the publish.
    let request = one("request");
    assert_eq!(hex(&request.span.parent_span_id), client_span);
    assert_eq!(request.attr("tenant").as_deref(), Some(slug.as_str()));
    assert_eq!(
        request.attr("route").as_deref(),
        Some("/v1/{tenant}/channels/{channel}/events")
    );
    let span_id = |g: &Got| hex(&g.span.span_id);
    let parent_of = |g: &Got| hex(&g.span.parent_span_id);

    // request → auth, limits, broker.append → redis.script.
    for step in ["auth", "limits", "broker.append"] {
        assert_eq!(
            parent_of(one(step)),
            span_id(request),
            "{step} under request"
        );
    }
    let append = one("broker.append");
    assert_eq!(append.attr("tenant").as_deref(), Some(slug.as_str()));
    assert_eq!(append.attr("channel").as_deref(), Some("orders"));
    // On Redis Cluster the append is steps on several slots: reserve on the tenant's, then
    // the script that stores and announces on the channel's.
    let mut scripts = by_name("redis.script");
    scripts.sort_by_key(|s| s.span.start_time_unix_nano);
    let names: Vec<String> = scripts.iter().filter_map(|s| s.attr("script")).collect();
    let (expected, announcing): (&[&str], &str) = match kind {
        RedisKind::One => (&["append"], "append"),
        RedisKind::Cluster => (&["reserve", "append_channel"], "append_channel"),
    };
    assert_eq!(names, expected, "the scripts, in order");
    assert!(scripts.iter().all(|s| parent_of(s) == span_id(append)));
    let script = scripts
        .iter()
        .find(|s| s.attr("script").as_deref() == Some(announcing))
        .unwrap();

    // → fanout, once per edge (two processes), under the script that announced the event.
    let fanouts = by_name("fanout");
    assert_eq!(fanouts.len(), 2, "one fanout per edge: {fanouts:#?}");
    assert_ne!(fanouts[0].instance, fanouts[1].instance);
    assert!(fanouts.iter().all(|f| !f.instance.is_empty()));
    assert!(fanouts.iter().any(|f| f.instance == request.instance));
    for f in &fanouts {
        assert_eq!(parent_of(f), span_id(script));
        assert_eq!(f.attr("tenant").as_deref(), Some(slug.as_str()));
        assert_eq!(f.attr("channel").as_deref(), Some("orders"));
        assert_eq!(f.attr("cursor").as_deref(), Some(cursor.as_str()));
    }
    println!("{kind}:");
    print_tree(&trace);

    // Each subscribe was traced up to its answer (connect and auth), and no stream's own span
    // was exported: it would stay open as long as the stream.
    let all = spans(&inbox);
    let subscribes: Vec<&Got> = all.iter().filter(|g| g.span.name == "subscribe").collect();
    assert!(subscribes.len() >= 2, "a subscribe span per connection");
    for s in &subscribes {
        assert!(
            all.iter().any(|g| g.span.name == "auth"
                && g.span.trace_id == s.span.trace_id
                && g.span.parent_span_id == s.span.span_id),
            "auth under subscribe"
        );
    }
    assert!(all.iter().all(|g| g.span.name != "stream"));

    // No secret anywhere in what was exported: neither in the bytes posted nor decoded.
    let inbox = inbox.lock().unwrap();
    let decoded = format!("{:?}", inbox.decoded);
    let cookie_value = cookie.split_once('=').unwrap().1;
    for (what, secret) in [
        ("API key", key.as_str()),
        ("token", &token),
        ("cookie", cookie_value),
    ] {
        assert!(
            !decoded.contains(secret),
            "the {what} is in a decoded export"
        );
        for raw in &inbox.raw {
            assert!(
                !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the {what} is in an export's bytes"
            );
        }
    }
    drop(inbox);
    for (_, task) in readers {
        task.abort();
    }
}

/// Prints the trace as a tree, with each span's duration: what the report quotes.
fn print_tree(trace: &[Got]) {
    let mut children: HashMap<Vec<u8>, Vec<&Got>> = HashMap::new();
    let ids: Vec<&Vec<u8>> = trace.iter().map(|g| &g.span.span_id).collect();
    let mut roots = Vec::new();
    for g in trace {
        if ids.contains(&&g.span.parent_span_id) {
            children
                .entry(g.span.parent_span_id.clone())
                .or_default()
                .push(g);
        } else {
            roots.push(g);
        }
    }
    fn walk(g: &Got, depth: usize, children: &HashMap<Vec<u8>, Vec<&Got>>) {
        let micros = g
            .span
            .end_time_unix_nano
            .saturating_sub(g.span.start_time_unix_nano)
            / 1000;
        let what = g
            .attr("script")
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        println!(
            "{:indent$}{}{what} {micros} µs [{}]",
            "",
            g.span.name,
            &g.instance[..8.min(g.instance.len())],
            indent = depth * 2
        );
        let mut kids = children.get(&g.span.span_id).cloned().unwrap_or_default();
        kids.sort_by_key(|k| k.span.start_time_unix_nano);
        for k in kids {
            walk(k, depth + 1, children);
        }
    }
    for r in roots {
        walk(r, 0, &children);
    }
}

fn rand_secret() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}
