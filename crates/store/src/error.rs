//! The store's one error type.
//!
//! Callers match on [`StoreError::Conflict`], [`StoreError::NotFound`] and [`StoreError::Unavailable`]
//! (a 409, a 404 and a 503 over HTTP); every other variant is an internal error whose cause belongs in
//! the log, not in a response. No variant carries a secret: SQL errors name tables and constraints,
//! never bound values, and URLs are shown with their password redacted.

use std::error::Error as StdError;
use std::sync::Arc;

/// What went wrong in a [`Store`](crate::Store) call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name is already taken: `"email"` or `"slug"`.
    #[error("{0} is already taken")]
    Conflict(&'static str),
    /// The row does not exist, or not in the tenant that asked.
    #[error("not found")]
    NotFound,
    /// [`Store::connect`](crate::Store::connect) could not reach the database at `url` (password redacted).
    #[error("cannot connect to the database at {url}")]
    Connect {
        /// The database URL with any password replaced by `***`.
        url: String,
        /// Why: refused, timed out, authentication failed, unsupported URL...
        #[source]
        source: sqlx::Error,
    },
    /// The database did not answer: connection lost, pool exhausted, database shutting down or locked.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A migration failed or the database holds migrations this binary does not know.
    #[error("cannot migrate the database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Any other database error, including stored data that does not decode.
    #[error("database error")]
    Other(#[source] sqlx::Error),
    /// Password hashing failed or a blocking task panicked.
    #[error("internal error in the store")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
    /// One failure that several callers waited for (a single-flight load of the
    /// [`cache`](crate::cache)); [`StoreError::kind`] is what it was.
    #[error(transparent)]
    Shared(Arc<StoreError>),
}

impl StoreError {
    /// The error itself, or, for [`StoreError::Shared`], the error that was shared.
    pub fn kind(&self) -> &StoreError {
        match self {
            StoreError::Shared(e) => e.kind(),
            e => e,
        }
    }

    /// Whether the database could not be reached (a 503: retrying later can succeed), as
    /// opposed to a query that failed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self.kind(),
            StoreError::Unavailable(_) | StoreError::Connect { .. }
        )
    }

    /// `e` as its own error again when no other caller holds it, else [`StoreError::Shared`].
    pub(crate) fn shared(e: Arc<StoreError>) -> StoreError {
        Arc::try_unwrap(e).unwrap_or_else(StoreError::Shared)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            err if is_unavailable(&err) => StoreError::Unavailable(err),
            err => StoreError::Other(err),
        }
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(err: tokio::task::JoinError) -> Self {
        StoreError::Internal(Box::new(err))
    }
}

/// Errors that say the database cannot be reached right now, rather than that a query was wrong.
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // Class 08: connection exception; 53: insufficient resources (disk full, out of
                // memory, too many connections); 57P0x: shutting down, cannot connect now.
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY (5) or SQLITE_LOCKED (6), with any extended code: still locked after
                // the busy timeout; SQLITE_FULL (13): the disk is full, which a retry later may
                // find otherwise.
                matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6 | 13))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// Whether `err` is a unique-constraint violation, on either backend.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether `err` is a foreign-key violation, on either backend.
fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

/// Maps a unique-constraint violation to `Conflict(what)`, and anything else as usual.
pub(crate) fn conflict_on(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| {
        if is_unique_violation(&err) {
            StoreError::Conflict(what)
        } else {
            err.into()
        }
    }
}

/// Maps a foreign-key violation (a row that the new one refers to does not exist) to `NotFound`,
/// and anything else as usual.
pub(crate) fn not_found_on_missing_parent(err: sqlx::Error) -> StoreError {
    if is_foreign_key_violation(&err) {
        StoreError::NotFound
    } else {
        err.into()
    }
}

/// A stored value that does not decode into its model type, as the `sqlx` error for it.
pub(crate) fn decode_error(err: impl StdError + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(err))
}

/// `url` with the password of its user info and any `password=` query parameter replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_query(url);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

fn redact_query(s: &str) -> String {
    let Some((head, query)) = s.split_once('?') else {
        return s.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_lose_their_passwords() {
        let cases = [
            (
                "postgres://u:hunter2@db:5432/herald",
                "postgres://u:***@db:5432/herald",
            ),
            ("postgres://u@db/herald", "postgres://u@db/herald"),
            (
                "postgres://db/herald?password=hunter2&sslmode=require",
                "postgres://db/herald?password=***&sslmode=require",
            ),
            ("postgres://u:p%40ss@db", "postgres://u:***@db"),
            (
                "sqlite://herald-data/herald.db",
                "sqlite://herald-data/herald.db",
            ),
            ("sqlite:herald.db", "sqlite:herald.db"),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted);
        }
    }
}
