//! Connecting: one `AnyPool` for either backend, chosen by the URL's scheme.
//!
//! Start-up must fail fast and clearly when the database is unreachable, so `connect` first opens
//! one connection under a 10 s timeout (which also surfaces the real cause, where a pool would only
//! report a timeout) and then builds the pool lazily from the same options.
//!
//! Once running, a store call must fail fast too when the database goes away: sqlx keeps retrying
//! a refused connection until the pool's acquire timeout, so that timeout, [`ACQUIRE_TIMEOUT`],
//! is what a request waits before it gets its 503.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

use crate::error::{redact_url, StoreError};

/// How long the first connection at start-up may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a store call waits for a pooled connection, connecting included: a few seconds, so
/// that an unreachable database is a prompt 503 rather than a request hanging.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The database behind a [`Store`](crate::Store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `postgres://` or `postgresql://`: the clustered deployment.
    Postgres,
    /// `sqlite://path` or `sqlite:path`: the embedded default.
    Sqlite,
}

impl Backend {
    /// The backend a database URL names, from its scheme.
    pub fn from_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0;
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "sqlite" => Some(Backend::Sqlite),
            _ => None,
        }
    }

    fn max_connections(self) -> u32 {
        match self {
            Backend::Postgres => 10,
            // WAL lets readers run beside the one writer; more connections would only wait.
            Backend::Sqlite => 4,
        }
    }
}

/// The embedded migrations for `backend`.
pub(crate) fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Postgres => &POSTGRES_MIGRATIONS,
        Backend::Sqlite => &SQLITE_MIGRATIONS,
    }
}

pub(crate) async fn connect(url: &str) -> Result<(AnyPool, Backend), StoreError> {
    sqlx::any::install_default_drivers();
    let connect_error = |source| StoreError::Connect {
        url: redact_url(url),
        source,
    };

    let backend = Backend::from_url(url).ok_or_else(|| {
        connect_error(sqlx::Error::Configuration(
            "unsupported database URL: expected postgres:// or sqlite://".into(),
        ))
    })?;
    let url = match backend {
        Backend::Postgres => url.to_owned(),
        Backend::Sqlite => prepare_sqlite(url).map_err(connect_error)?,
    };
    let options = AnyConnectOptions::from_str(&url).map_err(connect_error)?;

    let mut probe = tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect_with(&options))
        .await
        .map_err(|_elapsed| {
            connect_error(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            )))
        })?
        .map_err(connect_error)?;
    if backend == Backend::Sqlite {
        // Persistent in the file. Done once here: switching needs an exclusive lock that the busy
        // timeout does not wait for, so every pooled connection doing it could fail spuriously.
        probe
            .execute("pragma journal_mode = wal")
            .await
            .map_err(connect_error)?;
    }
    probe.close().await.map_err(connect_error)?;

    let pool = AnyPoolOptions::new()
        .max_connections(backend.max_connections())
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // sqlx already enables foreign keys; WAL makes `normal` durable enough.
                    conn.execute("pragma busy_timeout = 5000").await?;
                    conn.execute("pragma synchronous = normal").await?;
                }
                Ok(())
            })
        })
        .connect_lazy_with(options);
    tracing::info!(url = %redact_url(&url), ?backend, "connected to the database");
    Ok((pool, backend))
}

/// Creates the SQLite file's parent directory and returns a URL that creates the file too
/// (`mode=rwc`) and names it by an absolute path, so that URL parsing cannot mistake the first
/// directory of a relative path for a host name.
fn prepare_sqlite(url: &str) -> Result<String, sqlx::Error> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| sqlx::Error::Configuration("expected sqlite://path".into()))?;
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" || query.is_some_and(|q| q.contains("mode=memory")) {
        return Err(sqlx::Error::Configuration(
            "in-memory SQLite is not supported: each pooled connection would see its own database"
                .into(),
        ));
    }
    let path = std::path::absolute(Path::new(path))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut url = format!("sqlite://{}", encode_path(&path)?);
    match query {
        Some(query) if query.split('&').any(|p| p.starts_with("mode=")) => {
            url.push('?');
            url.push_str(query);
        }
        Some(query) => {
            url.push_str("?mode=rwc&");
            url.push_str(query);
        }
        None => url.push_str("?mode=rwc"),
    }
    Ok(url)
}

/// Percent-encodes the characters that would end or alter a URL path; sqlx decodes them again.
fn encode_path(path: &Path) -> Result<String, sqlx::Error> {
    let path = path
        .to_str()
        .ok_or_else(|| sqlx::Error::Configuration("the SQLite path is not UTF-8".into()))?;
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            ' ' => out.push_str("%20"),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_follow_the_scheme() {
        assert_eq!(
            Backend::from_url("postgres://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("sqlite://a.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite:a.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("mysql://h/db"), None);
        assert_eq!(Backend::from_url("herald.db"), None);
    }

    #[test]
    fn sqlite_urls_become_absolute_and_create_the_file() {
        let dir = std::env::temp_dir().join(format!("herald-store-{}", rand::random::<u64>()));
        let file = dir.join("a b").join("x.db");
        let url = prepare_sqlite(&format!("sqlite://{}", file.display())).unwrap();
        assert_eq!(
            url,
            format!(
                "sqlite://{}?mode=rwc",
                file.display().to_string().replace(' ', "%20")
            )
        );
        assert!(dir.join("a b").is_dir());
        let url = prepare_sqlite(&format!("sqlite:{}?mode=ro", file.display())).unwrap();
        assert!(url.ends_with("?mode=ro"), "{url}");
        assert!(prepare_sqlite("sqlite::memory:").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
