//! Throwaway databases for tests (feature `testing`): one fresh database per test, removed on drop.
//!
//! ```no_run
//! # async fn example() {
//! use herald_store::testing::TestDatabase;
//!
//! let db = TestDatabase::postgres().await; // or TestDatabase::sqlite()
//! let store = db.store().await; // connected and migrated
//! // ... or hand `db.url()` to the server under test as its `--database-url`.
//! # }
//! ```
//!
//! Postgres databases are created on the server named by `HERALD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), which must allow `create database`. Only the
//! database a `TestDatabase` created is ever dropped.

use std::path::PathBuf;

use sqlx::{Connection, Executor, PgConnection};

use crate::Store;

/// The server that `TestDatabase::postgres` creates databases on, when the environment names none.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for as long as this value: a fresh Postgres database or SQLite file.
///
/// # Panics
///
/// The constructors and [`TestDatabase::store`] panic when the database cannot be created, which
/// is what a test wants. Dropping never panics; it reports a failed clean-up on stderr.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    /// Drop database `name` through the server's admin URL.
    Postgres { admin_url: String, name: String },
    /// Remove this directory.
    Sqlite { dir: PathBuf },
}

impl TestDatabase {
    /// Creates a database `herald_test_<random hex>` on the server of `HERALD_TEST_DATABASE_URL`.
    pub async fn postgres() -> TestDatabase {
        let admin_url = std::env::var("HERALD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("herald_test_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to the test Postgres server: {err}"));
        conn.execute(format!(r#"create database "{name}""#).as_str())
            .await
            .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
        // Best effort; the database is made either way.
        let _ = conn.close().await;
        TestDatabase {
            url: with_database(&admin_url, &name),
            cleanup: Cleanup::Postgres { admin_url, name },
        }
    }

    /// A SQLite file in a fresh temporary directory (the file itself is created on connect).
    pub fn sqlite() -> TestDatabase {
        let dir = std::env::temp_dir().join(format!("herald_test_{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        TestDatabase {
            url: format!("sqlite://{}", dir.join("herald.db").display()),
            cleanup: Cleanup::Sqlite { dir },
        }
    }

    /// The database's URL, for [`Store::connect`] or a server's `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store connected to this database, migrated.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to the test database: {err:?}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|err| panic!("cannot migrate the test database: {err:?}"));
        store
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Postgres { admin_url, name } => {
                // `Drop` cannot await, and may run inside a runtime that must not be blocked on
                // itself: drop the database from a thread with a runtime of its own.
                let (admin_url, db) = (admin_url.clone(), name.clone());
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|err| err.to_string())?;
                    runtime.block_on(drop_database(&admin_url, &db))
                })
                .join();
                match dropped {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => eprintln!("cannot drop test database {name}: {err}"),
                    Err(_) => eprintln!("cannot drop test database {name}: panicked"),
                }
            }
            Cleanup::Sqlite { dir } => {
                if let Err(err) = std::fs::remove_dir_all(dir) {
                    eprintln!("cannot remove {}: {err}", dir.display());
                }
            }
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let mut conn = PgConnection::connect(admin_url)
        .await
        .map_err(|err| err.to_string())?;
    conn.execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
        .await
        .map_err(|err| err.to_string())?;
    let _ = conn.close().await;
    Ok(())
}

/// `url` with its database (the path) replaced by `name`, keeping any query parameters.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_urls_name_the_new_database() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
