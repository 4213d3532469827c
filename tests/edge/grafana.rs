//! The dashboard and alert rules in `deploy/grafana/` use only metrics that `/metrics` exposes,
//! so that neither can silently drift from the binary (`promtool check rules` checks their
//! syntax in `cargo xtask test`).

use std::collections::BTreeSet;

use herald_tests::{both_backends, TestApp};
use serde_json::Value;

both_backends!(the_dashboard_and_alerts_use_only_metrics_the_binary_exposes);

/// Every series name the exposition can hold, from its `# TYPE` lines: a counter `x` is
/// `x_total`, a histogram `x` is `x_bucket`, `x_sum` and `x_count`.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

/// Every `herald_...` metric name in `text`.
fn used(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("herald_").map(|at| at + i) {
        let end = text[at..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |e| at + e);
        let starts_word =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if starts_word {
            names.insert(text[at..end].to_owned());
        }
        i = end;
    }
    names
}

async fn the_dashboard_and_alerts_use_only_metrics_the_binary_exposes(app: TestApp) {
    let text = app.metrics().await;
    let exposed = exposed(&text);
    assert!(exposed.contains("herald_publishes_total"), "{exposed:?}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana");
    let dashboard = std::fs::read_to_string(dir.join("herald-dashboard.json")).unwrap();
    let alerts = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<&str> = parsed["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("every target has an expr"))
        .collect();
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    for (file, text) in [
        ("herald-dashboard.json", exprs.join("\n")),
        ("alerts.yml", alerts),
    ] {
        let names = used(&text);
        assert!(!names.is_empty(), "{file} uses Herald's metrics");
        let unknown: Vec<&String> = names.difference(&exposed).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses {unknown:?}, which /metrics does not expose"
        );
    }
    // The health gauges answer for this process: everything it needs is up.
    for line in ["herald_broker_up 1", "herald_database_up 1"] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
}
