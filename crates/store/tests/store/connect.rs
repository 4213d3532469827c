use std::time::{Duration, Instant};

use herald_store::{Backend, Store, StoreError};

#[tokio::test]
async fn an_unreachable_database_fails_fast_with_the_url_redacted() {
    let started = Instant::now();
    let err = Store::connect("postgres://herald:hunter2@127.0.0.1:1/herald")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("postgres://herald:***@127.0.0.1:1/herald"),
        "{message}"
    );
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[tokio::test(start_paused = true)]
async fn a_database_that_never_answers_times_out_after_10_s() {
    // Accepts connections and then says nothing, like a black-holed server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });

    let started = tokio::time::Instant::now();
    let err = Store::connect(&format!(
        "postgres://herald:hunter2@127.0.0.1:{port}/herald"
    ))
    .await
    .unwrap_err();
    let timed_out = matches!(
        &err,
        StoreError::Connect { source: sqlx::Error::Io(io), .. } if io.kind() == std::io::ErrorKind::TimedOut
    );
    assert!(timed_out, "{err:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited <= Duration::from_secs(11),
        "{waited:?}"
    );
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let err = Store::connect("mysql://root:pw@localhost/herald")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("mysql://root:***@localhost/herald"),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_creates_its_directory_and_file_in_wal_mode() {
    let dir =
        std::env::temp_dir().join(format!("herald_store_test_{:016x}", rand::random::<u64>()));
    let file = dir.join("nested").join("herald.db");
    let url = format!("sqlite://{}", file.display());

    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert!(file.is_file());
    let mode: String = sqlx::query_scalar("pragma journal_mode")
        .fetch_one(&sqlx::AnyPool::connect(&url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    store.close().await;
    std::fs::remove_dir_all(dir).unwrap();
}
