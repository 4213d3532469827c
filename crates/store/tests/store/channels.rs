use herald_core::ChannelName;
use herald_store::testing::TestDatabase;
use herald_store::{ChannelSettings, ControlView, StoreError, Tenant, TenantPatch, Visibility};

use crate::{on_both_backends, signup};

on_both_backends!(
    a_channel_without_a_row_uses_the_tenant_defaults,
    created_and_patched_channels_keep_their_own_settings,
    channels_are_scoped_to_their_tenant,
    the_view_reads_a_channel_again_only_after_a_change,
);

fn channel(s: &str) -> ChannelName {
    ChannelName::parse(s).unwrap()
}

async fn a_channel_without_a_row_uses_the_tenant_defaults(db: TestDatabase) {
    let store = db.store().await;
    let (_, acme) = signup(&store, "ann@example.com", "acme").await;
    let settings = store
        .channel_settings(acme.id, &channel("orders"))
        .await
        .unwrap();
    assert_eq!(
        settings,
        ChannelSettings {
            visibility: Visibility::Public,
            history_size: 100,
            history_ttl_seconds: 86_400
        }
    );
    assert_eq!(acme.channel_defaults, settings);

    let private = ChannelSettings {
        visibility: Visibility::Private,
        history_size: 10,
        history_ttl_seconds: 60,
    };
    let patched = store
        .update_tenant(
            acme.id,
            &TenantPatch {
                channel_defaults: Some(private.clone()),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.channel_defaults, private);
    assert_eq!(patched.name, acme.name);
    assert_eq!(
        store
            .channel_settings(acme.id, &channel("orders"))
            .await
            .unwrap(),
        private
    );
}

async fn created_and_patched_channels_keep_their_own_settings(db: TestDatabase) {
    let store = db.store().await;
    let (_, acme) = signup(&store, "ann@example.com", "acme").await;
    let own = ChannelSettings {
        visibility: Visibility::Private,
        history_size: 500,
        history_ttl_seconds: 3600,
    };
    let created = store
        .create_channel(acme.id, &channel("orders"), &own)
        .await
        .unwrap();
    assert_eq!(created.settings, own);
    assert!(matches!(
        store
            .create_channel(acme.id, &channel("orders"), &own)
            .await,
        Err(StoreError::Conflict("channel"))
    ));
    let fewer = ChannelSettings {
        history_size: 5,
        ..own.clone()
    };
    store
        .put_channel(acme.id, &channel("orders"), &fewer)
        .await
        .unwrap();
    store
        .put_channel(acme.id, &channel("audit"), &own)
        .await
        .unwrap();
    assert_eq!(
        store
            .channel_settings(acme.id, &channel("orders"))
            .await
            .unwrap(),
        fewer
    );
    let names: Vec<_> = store
        .list_channels(acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name.into_inner())
        .collect();
    assert_eq!(names, ["audit", "orders"]);
    assert!(store
        .delete_channel(acme.id, &channel("orders"))
        .await
        .unwrap());
    assert!(!store
        .delete_channel(acme.id, &channel("orders"))
        .await
        .unwrap());
    assert_eq!(
        store
            .channel_settings(acme.id, &channel("orders"))
            .await
            .unwrap(),
        ChannelSettings::default()
    );
}

async fn channels_are_scoped_to_their_tenant(db: TestDatabase) {
    let store = db.store().await;
    let (_, acme) = signup(&store, "ann@example.com", "acme").await;
    let (_, bobs) = signup(&store, "bob@example.com", "bobs").await;
    let own = ChannelSettings {
        visibility: Visibility::Private,
        ..ChannelSettings::default()
    };
    store
        .create_channel(acme.id, &channel("orders"), &own)
        .await
        .unwrap();
    assert_eq!(
        store
            .channel_settings(bobs.id, &channel("orders"))
            .await
            .unwrap(),
        ChannelSettings::default()
    );
    assert!(store.list_channels(bobs.id).await.unwrap().is_empty());
    assert!(!store
        .delete_channel(bobs.id, &channel("orders"))
        .await
        .unwrap());
}

/// The edge's cached view: a channel used but never changed is read once, however long it is
/// used; every write of its row (create, patch, delete) is seen as soon as a tenant row read
/// after the write is; a change of the tenant's defaults needs no read of the channel at all.
async fn the_view_reads_a_channel_again_only_after_a_change(db: TestDatabase) {
    let store = db.store().await;
    let (_, acme) = signup(&store, "ann@example.com", "acme").await;
    let view = ControlView::new(store.clone(), std::time::Duration::from_secs(600));
    let loads = |view: &ControlView| {
        let [_, _, (name, channels), _] = view.cache_stats();
        assert_eq!(name, "channels");
        channels.misses()
    };
    // What an edge reads the tenant as: the store's row now (the view's is at most a second
    // older).
    let tenant = || async { store.tenant_by_slug(&acme.slug).await.unwrap().unwrap() };
    let orders = channel("orders");
    let settings = |t: Tenant| {
        let (view, orders) = (&view, &orders);
        async move { view.channel(&t, orders).await.unwrap() }
    };

    assert_eq!(settings(tenant().await).await, ChannelSettings::default());
    assert_eq!(loads(&view), 1);
    // Older than every time-to-live of the tenant caches: still no second read.
    tokio::time::sleep(herald_store::cache::TTL + std::time::Duration::from_millis(100)).await;
    for _ in 0..3 {
        assert_eq!(settings(tenant().await).await, ChannelSettings::default());
    }
    assert_eq!(loads(&view), 1);

    let private = ChannelSettings {
        visibility: Visibility::Private,
        history_size: 5,
        history_ttl_seconds: 30,
    };
    let before = tenant().await;
    store.put_channel(acme.id, &orders, &private).await.unwrap();
    // A caller still on the tenant row read before the write gets what it was read with.
    assert_eq!(settings(before).await, ChannelSettings::default());
    assert_eq!(settings(tenant().await).await, private);
    assert_eq!(loads(&view), 2);

    let public = ChannelSettings {
        visibility: Visibility::Public,
        ..private.clone()
    };
    store.put_channel(acme.id, &orders, &public).await.unwrap();
    assert_eq!(settings(tenant().await).await, public);
    assert!(store.delete_channel(acme.id, &orders).await.unwrap());
    assert_eq!(settings(tenant().await).await, ChannelSettings::default());
    assert_eq!(loads(&view), 4);

    // Deleting a channel that has no row changes nothing, so nothing is read again.
    assert!(!store.delete_channel(acme.id, &orders).await.unwrap());
    assert_eq!(settings(tenant().await).await, ChannelSettings::default());
    // New tenant defaults come with the tenant row itself.
    store
        .update_tenant(
            acme.id,
            &TenantPatch {
                channel_defaults: Some(private.clone()),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(settings(tenant().await).await, private);
    assert_eq!(loads(&view), 4);

    // A channel created through the store is seen as well.
    store
        .create_channel(acme.id, &channel("news"), &public)
        .await
        .unwrap();
    let news = view
        .channel(&tenant().await, &channel("news"))
        .await
        .unwrap();
    assert_eq!(news, public);
}
