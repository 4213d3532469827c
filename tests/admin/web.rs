//! The web admin is served by `herald serve` and `herald admin`, never by `herald edge`, and
//! never in place of the API's own routes.

use herald_tests::{both_backends, free_port, spawn_process, wait_ready, TestApp};

both_backends!(the_web_admin_is_served_by_serve_and_admin_never_by_edge);

async fn the_web_admin_is_served_by_serve_and_admin_never_by_edge(app: TestApp) {
    let get = |url: String| async move { reqwest::get(url).await.unwrap() };
    let shell = get(app.url("/t/acme/keys")).await;
    assert_eq!(shell.status(), 200);
    assert_eq!(shell.headers()["content-type"], "text/html; charset=utf-8");
    assert!(shell.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(get(app.url("/api/v1/me")).await.status(), 401);
    assert_eq!(get(app.url("/nope")).await.status(), 404);

    let (admin_port, edge_port) = (free_port(), free_port());
    let _admin = spawn_process(&app, admin_port, &["admin"]);
    let _edge = spawn_process(&app, edge_port, &["edge"]);
    wait_ready(admin_port).await;
    wait_ready(edge_port).await;
    let at = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    for path in ["/", "/login", "/ui/app.js"] {
        assert_eq!(
            get(at(admin_port, path)).await.status(),
            200,
            "admin {path}"
        );
        let edge = get(at(edge_port, path)).await;
        assert_eq!(edge.status(), 404, "edge {path}");
        assert_eq!(edge.headers()["content-type"], "application/problem+json");
    }
}
