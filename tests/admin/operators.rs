//! Operators: `herald tenant list|set-plan|suspend|resume`, usage, limits and the audit log.

use std::time::Duration;

use herald::operator;
use herald::TenantCommand;
use herald_tests::{both_backends, Backend, TestApp};
use serde_json::json;

use crate::{call, call_ok, problem};

both_backends!(
    set_plan_changes_the_limits,
    a_suspended_tenant_is_refused_until_resumed,
    usage_has_a_row_per_day_and_the_audit_log_pages_newest_first,
);

async fn tenant_command(app: &TestApp, command: TenantCommand) {
    operator::run(&app.config, &command)
        .await
        .unwrap_or_else(|e| panic!("{command:?}: {e:#}"));
}

async fn set_plan_changes_the_limits(app: TestApp) {
    app.signup("acme").await;
    tenant_command(
        &app,
        TenantCommand::SetPlan {
            slug: "acme".into(),
            plan: "pro".into(),
        },
    )
    .await;
    let limits = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/limits",
        None,
        200,
    )
    .await;
    assert_eq!(limits["plan"], "pro");
    assert_eq!(limits["limits"]["max_history_size"], 10_000);
    assert_eq!(limits["today"]["messages"], 0);
    call_ok(
        &app,
        &app.client,
        "POST",
        "/api/v1/tenants/acme/channels",
        Some(json!({"name": "big", "history_size": 5000})),
        201,
    )
    .await;
    let unknown = operator::run(
        &app.config,
        &TenantCommand::SetPlan {
            slug: "acme".into(),
            plan: "platinum".into(),
        },
    )
    .await;
    assert!(unknown.is_err());
    let audit = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/audit",
        None,
        200,
    )
    .await;
    let set_plan = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "tenant.set_plan")
        .expect("the plan change is audited");
    assert_eq!(set_plan["actor"], "operator");
}

async fn a_suspended_tenant_is_refused_until_resumed(app: TestApp) {
    let (slug, key) = app.tenant("acme").await;
    let mut stream = app.subscribe(&slug, "orders", None).await;
    tenant_command(&app, TenantCommand::Suspend { slug: slug.clone() }).await;

    let refused = herald_tests::eventually(5, || async {
        app.publish(&key, &slug, "orders", json!({"data": 1}))
            .await
            .status()
            == 403
    })
    .await;
    assert!(refused, "publishes are refused within the cache's second");
    let r = app.publish(&key, &slug, "orders", json!({"data": 1})).await;
    problem(r, 403, "tenant_suspended").await;
    let r = app
        .client
        .get(app.url(&format!("/v1/{slug}/channels/orders/events")))
        .send()
        .await
        .unwrap();
    problem(r, 403, "tenant_suspended").await;
    if app.backend == Backend::Cluster {
        // Through Redis the command reaches the running edge, whose open streams end.
        assert!(stream.ends_within(Duration::from_secs(5)).await);
    }
    let t = call_ok(&app, &app.client, "GET", "/api/v1/tenants/acme", None, 200).await;
    assert!(t["suspended_at"].is_string());

    tenant_command(&app, TenantCommand::Resume { slug: slug.clone() }).await;
    let served = herald_tests::eventually(5, || async {
        app.publish(&key, &slug, "orders", json!({"data": 2}))
            .await
            .status()
            == 201
    })
    .await;
    assert!(served, "a resumed tenant publishes again");
    tenant_command(&app, TenantCommand::List).await;
}

async fn usage_has_a_row_per_day_and_the_audit_log_pages_newest_first(app: TestApp) {
    app.signup("acme").await;
    let usage = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/usage?days=7",
        None,
        200,
    )
    .await;
    let days = usage.as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert!(days
        .iter()
        .all(|d| d["messages"] == 0 && d["date"].is_string()));
    assert!(
        days[0]["date"].as_str() < days[6]["date"].as_str(),
        "oldest first"
    );
    for bad in ["days=0", "days=367", "days=x"] {
        let r = call(
            &app,
            &app.client,
            "GET",
            &format!("/api/v1/tenants/acme/usage?{bad}"),
            None,
        )
        .await;
        problem(r, 400, "invalid_body").await;
    }

    for i in 0..5 {
        call_ok(
            &app,
            &app.client,
            "POST",
            "/api/v1/tenants/acme/channels",
            Some(json!({"name": format!("c{i}")})),
            201,
        )
        .await;
    }
    let page = call_ok(
        &app,
        &app.client,
        "GET",
        "/api/v1/tenants/acme/audit?limit=3",
        None,
        200,
    )
    .await;
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["target"], "c4");
    assert_eq!(entries[0]["action"], "channel.create");
    assert_eq!(entries[0]["actor"], "account:owner@acme.example");
    assert_eq!(entries[0]["ip"], "127.0.0.1");
    assert!(entries[0]["at"].is_string());
    let before = page["next_before"].as_i64().expect("another page");
    let rest = call_ok(
        &app,
        &app.client,
        "GET",
        &format!("/api/v1/tenants/acme/audit?limit=3&before={before}"),
        None,
        200,
    )
    .await;
    let targets: Vec<_> = rest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].clone())
        .collect();
    assert_eq!(targets, [json!("c1"), json!("c0")]);
    assert_eq!(rest["next_before"], json!(null));
}
