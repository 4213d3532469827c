//! `herald tenant ...`: operator commands, run against the database directly (and Redis, when
//! configured, so that running edges end a suspended tenant's streams at once).

use crate::{BrokerKind, Config, TenantCommand};
use anyhow::{bail, Context};
use herald_core::TenantSlug;
use herald_replay::Target;
use herald_store::{NewAuditEntry, Store, Tenant};

/// Runs one tenant command and prints its outcome.
pub async fn run(config: &Config, command: &TenantCommand) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_url).await?;
    let result = run_with(&store, config, command).await;
    store.close().await;
    result
}

async fn run_with(store: &Store, config: &Config, command: &TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::List => {
            println!("{:<40} {:<12} {:<10} created", "slug", "plan", "state");
            for t in store.all_tenants().await? {
                println!(
                    "{:<40} {:<12} {:<10} {}",
                    t.slug.as_str(),
                    t.plan,
                    if t.suspended_at.is_some() {
                        "suspended"
                    } else {
                        "active"
                    },
                    t.created_at
                );
            }
        }
        TenantCommand::SetPlan { slug, plan } => {
            let plans = config.load_plans()?;
            if plans.get(plan).is_none() {
                bail!(
                    "no plan {plan:?}; the plans are: {}",
                    plans.plans.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            let tenant = store.set_plan(&parse(slug)?, plan).await.map_err(found)?;
            audit(
                store,
                &tenant,
                "tenant.set_plan",
                serde_json::json!({"plan": plan}),
            )
            .await?;
            println!("{} is now on plan {}", tenant.slug, tenant.plan);
        }
        TenantCommand::Suspend { slug } => {
            let tenant = store
                .set_suspended(&parse(slug)?, true)
                .await
                .map_err(found)?;
            audit(store, &tenant, "tenant.suspend", serde_json::json!({})).await?;
            end_streams(config, &tenant.slug).await?;
            println!("{} is suspended", tenant.slug);
        }
        TenantCommand::Resume { slug } => {
            let tenant = store
                .set_suspended(&parse(slug)?, false)
                .await
                .map_err(found)?;
            audit(store, &tenant, "tenant.resume", serde_json::json!({})).await?;
            println!("{} is active", tenant.slug);
        }
    }
    Ok(())
}

fn parse(slug: &str) -> anyhow::Result<TenantSlug> {
    TenantSlug::parse(slug).with_context(|| format!("{slug:?} is not a tenant slug"))
}

fn found(e: herald_store::StoreError) -> anyhow::Error {
    match e {
        herald_store::StoreError::NotFound => anyhow::anyhow!("no such tenant"),
        e => e.into(),
    }
}

async fn audit(
    store: &Store,
    tenant: &Tenant,
    action: &str,
    details: serde_json::Value,
) -> anyhow::Result<()> {
    store
        .audit(
            tenant.id,
            NewAuditEntry {
                actor: "operator",
                action,
                target: None,
                ip: None,
                details: Some(details),
            },
        )
        .await?;
    Ok(())
}

/// Tells every edge, through Redis, to end the tenant's streams. Without Redis there is no
/// channel to a running process: a single-node server refuses new streams and publishes once
/// its cache expires (within a second), but open streams run on.
async fn end_streams(config: &Config, slug: &TenantSlug) -> anyhow::Result<()> {
    let kind = config.broker();
    if matches!(kind, BrokerKind::InProcess(_)) {
        eprintln!(
            "note: no --redis-url: running edges refuse the tenant within a second, but its open \
             streams are not ended"
        );
        return Ok(());
    }
    let broker = crate::connect_broker(kind).await?;
    broker
        .end_streams(&Target::Tenant(slug.clone()))
        .await
        .context("cannot tell the edges to end the tenant's streams")?;
    Ok(())
}
