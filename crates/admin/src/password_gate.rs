//! A bound on argon2 work. Each hash or verification holds ~19 MiB and a core for tens of
//! milliseconds; without a bound, a burst of logins queues blocking tasks (and their memory)
//! without limit. At most `concurrency` run at once and [`QUEUE_FACTOR`]` × concurrency` may be
//! in the gate at all (a wait of a few hundred milliseconds at most); the rest get 503
//! `unavailable` with `Retry-After` at once instead of joining a queue.

use std::sync::Arc;

use herald_core::ErrorCode;
use herald_http::ApiError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Admits password hashing and verification.
pub struct PasswordGate {
    /// Permits to run (`concurrency`).
    work: Arc<Semaphore>,
    /// Permits to be in the gate at all, running or waiting.
    admitted: Arc<Semaphore>,
}

/// How many requests may be in the gate, running or waiting, per one that may run.
pub const QUEUE_FACTOR: usize = 16;

/// Held while one argon2 operation runs.
pub struct PasswordPermit {
    _admitted: OwnedSemaphorePermit,
    _work: OwnedSemaphorePermit,
}

impl PasswordGate {
    /// A gate letting `concurrency` (at least 1) operations run at once.
    pub fn new(concurrency: usize) -> Self {
        let n = concurrency.max(1);
        Self {
            work: Arc::new(Semaphore::new(n)),
            admitted: Arc::new(Semaphore::new(QUEUE_FACTOR * n)),
        }
    }

    /// Waits for a turn, or refuses at once when the queue is full.
    pub async fn enter(&self) -> Result<PasswordPermit, ApiError> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    ErrorCode::Unavailable,
                    "too many password checks in progress; retry shortly",
                )
            })?;
        let work = self
            .work
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Ok(PasswordPermit {
            _admitted: admitted,
            _work: work,
        })
    }
}
