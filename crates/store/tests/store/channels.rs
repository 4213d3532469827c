use herald_core::ChannelName;
use herald_store::testing::TestDatabase;
use herald_store::{ChannelSettings, StoreError, TenantPatch, Visibility};

use crate::{on_both_backends, signup};

on_both_backends!(
    a_channel_without_a_row_uses_the_tenant_defaults,
    created_and_patched_channels_keep_their_own_settings,
    channels_are_scoped_to_their_tenant,
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
