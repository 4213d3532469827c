//! The crate graph of `ARCHITECTURE.md`, checked against `cargo metadata`: dependencies point one
//! way, and the two routers stand side by side.
//!
//! ```text
//! core ← store, replay ← http ← edge, admin ← herald
//! ```
//!
//! Only normal (and build) dependencies count: a dev-dependency is the crate's own tests.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Each workspace crate and the herald crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("herald-core", &[]),
    ("herald-store", &["herald-core"]),
    ("herald-replay", &["herald-core"]),
    (
        "herald-http",
        &["herald-core", "herald-store", "herald-replay"],
    ),
    (
        "herald-edge",
        &[
            "herald-core",
            "herald-store",
            "herald-replay",
            "herald-http",
        ],
    ),
    (
        "herald-admin",
        &[
            "herald-core",
            "herald-store",
            "herald-replay",
            "herald-http",
        ],
    ),
    // The embedded web admin: pages and assets, above the shared HTTP layer at most.
    ("herald-web", &["herald-core", "herald-http"]),
    // The publisher SDK: a client of the public API, not a part of the server.
    ("herald-client", &["herald-core"]),
    (
        "herald",
        &[
            "herald-core",
            "herald-store",
            "herald-replay",
            "herald-http",
            "herald-edge",
            "herald-admin",
            "herald-web",
        ],
    ),
    // Starts a cluster of herald processes and nginx on one machine, for `cargo xtask cluster`
    // and the multi-process fault tests: it runs the binary, it links no herald crate.
    ("herald-cluster", &[]),
    ("xtask", &["herald-cluster"]),
    // `cargo xtask bench`'s load generator: a client over raw sockets, no herald crate.
    ("herald-loadgen", &[]),
];

/// The black-box tests may use every crate.
const TESTS: &str = "herald-tests";

/// Workspace crate → the workspace crates it depends on (normal and build dependencies).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("a name").to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .filter_map(|d| d["name"].as_str())
                .filter(|name| members.contains(*name))
                .map(str::to_owned)
                .collect();
            (p["name"].as_str().expect("a name").to_owned(), deps)
        })
        .collect()
}

#[test]
fn the_crate_graph_is_the_documented_one() {
    let graph = graph();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (krate, deps) in &graph {
        if krate == TESTS {
            continue;
        }
        let Some(may) = allowed.get(krate.as_str()) else {
            wrong.push(format!(
                "{krate} is not in ARCHITECTURE.md's crate graph: add it there and to this test"
            ));
            continue;
        };
        for dep in deps {
            if !may.contains(&dep.as_str()) {
                wrong.push(format!("{krate} depends on {dep}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "against the crate graph:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_routers_stand_side_by_side() {
    let graph = graph();
    for (a, b) in [
        ("herald-admin", "herald-edge"),
        ("herald-edge", "herald-admin"),
    ] {
        assert!(
            !graph[a].contains(b),
            "{a} depends on {b}: what they share belongs in herald-http, herald-store or below"
        );
    }
    // The foundation knows nothing of HTTP, and the layers below it nothing of the routers.
    for low in [
        "herald-core",
        "herald-store",
        "herald-replay",
        "herald-http",
    ] {
        for high in ["herald-edge", "herald-admin", "herald"] {
            assert!(!graph[low].contains(high), "{low} depends on {high}");
        }
    }
}
