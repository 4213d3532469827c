use herald_store::testing::TestDatabase;

use crate::on_both_backends;

on_both_backends!(
    a_setting_keeps_its_first_value,
    concurrent_initialisations_agree,
);

async fn a_setting_keeps_its_first_value(db: TestDatabase) {
    let store = db.store().await;
    let first = store
        .setting_or_init("session_secret", || "first".into())
        .await
        .unwrap();
    assert_eq!(first, "first");
    let again = store
        .setting_or_init("session_secret", || unreachable!("the setting exists"))
        .await
        .unwrap();
    assert_eq!(again, "first");
    let other = store
        .setting_or_init("other", || "other".into())
        .await
        .unwrap();
    assert_eq!(other, "other");
}

async fn concurrent_initialisations_agree(db: TestDatabase) {
    let store = db.store().await;
    // Two stores, as two processes starting at once would have.
    let other = db.store().await;
    for i in 0..20 {
        let key = format!("key-{i}");
        let (a, b) = tokio::join!(
            store.setting_or_init(&key, || "from a".into()),
            other.setting_or_init(&key, || "from b".into()),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b);
        assert!(a == "from a" || a == "from b", "{a}");
    }
}
