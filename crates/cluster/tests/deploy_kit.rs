//! The deploy kit's nginx.conf proxies exactly as the cluster the fault tests run: the same
//! proxy directives and the same choice of upstream, so what the tests prove holds for the kit.
//! (The rest of the kit is checked by `cargo xtask test`'s deploy step: hadolint,
//! kubernetes-validate, the compose file, and every flag and variable against `herald --help`.)

use herald_cluster::nginx::{PROXY_DIRECTIVES, UPSTREAM_POLICY};

fn deploy_nginx_conf() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx.conf");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn the_deploy_kit_nginx_proxies_streams_as_the_tested_cluster_does() {
    let conf = deploy_nginx_conf();
    let missing: Vec<&str> = PROXY_DIRECTIVES
        .lines()
        .chain(UPSTREAM_POLICY.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !conf.iter().any(|c| c == l))
        .collect();
    assert!(missing.is_empty(), "deploy/nginx.conf lacks: {missing:?}");
    for line in [
        "proxy_pass http://$herald_upstream;",
        "upstream herald_api {",
        "upstream herald_streams {",
    ] {
        assert!(
            conf.iter().any(|c| c == line),
            "deploy/nginx.conf lacks {line:?}"
        );
    }
    // Streams: no failure accounting; publishes: passive health checks.
    let servers: Vec<&String> = conf
        .iter()
        .filter(|l| l.starts_with("server edge"))
        .collect();
    assert_eq!(
        servers.len(),
        6,
        "three edges in each of the two upstreams: {servers:?}"
    );
    assert_eq!(
        servers
            .iter()
            .filter(|l| l.ends_with("max_fails=0;"))
            .count(),
        3
    );
    assert_eq!(
        servers
            .iter()
            .filter(|l| l.ends_with("max_fails=3 fail_timeout=1s;"))
            .count(),
        3
    );
}
