//! The edge: the public `/v1` API that browsers subscribe to and servers publish to.
//!
//! [`router`] serves it from an [`EdgeState`]. Everything on this path is paid once per
//! connection (authentication, tenant lookup, joining the hub) or once per event (encoding); a
//! delivery to one more subscriber costs a reference count and a socket write.

mod auth;
mod cors;
mod feed;
mod history;
pub mod limits;
pub mod meter;
pub mod metrics;
mod openapi;
mod publish;
mod reauth;
mod stream_end;
mod subscribe;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use herald_core::ErrorCode;
use herald_http::ApiError;
use herald_replay::Broker;
use tokio_util::sync::CancellationToken;

pub use feed::{WriteBound, MAX_LEAN_WRITE};
pub use herald_store::ControlView;
pub use herald_store::{Clock, SystemClock};
pub use limits::Limits;
pub use meter::Usage;
pub use metrics::Metrics;
pub use openapi::ApiDoc;

/// [`EdgeConfig::coalesce`] unless configured, in milliseconds. Measured with one channel of
/// 2,000 subscribers at 200 events/s on one core (`bench/RESULTS.md`): 20 ms keeps the core
/// saturated (a write costs ≈ 10 µs, and 2,000 busy streams writing 50 times a second is all of
/// it), so queueing, not the window, makes the latency; 30 ms leaves a third of the core free
/// and gives the lower p99 (≈ 30 ms against ≈ 50 ms).
pub const DEFAULT_COALESCE_MS: u64 = 30;

/// Settings of the edge that come from the command line.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// A comment line is sent after this long without an event.
    pub heartbeat: Duration,
    /// The `retry:` every stream starts with, in milliseconds.
    pub retry_ms: u64,
    /// How long a stream that has just written gathers frames before its next write (one that
    /// was quiet for this long writes at once): the price in latency of fewer, larger writes.
    pub coalesce: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            retry_ms: 2000,
            coalesce: Duration::from_millis(DEFAULT_COALESCE_MS),
        }
    }
}

/// The edge's shared state; cheap to clone.
#[derive(Clone)]
pub struct EdgeState {
    edge: Arc<Edge>,
    /// Open streams by tenant, woken when the tenant's access rules change.
    reauth: Arc<reauth::Reauth>,
}

/// Everything the edge's handlers share.
pub struct Edge {
    pub broker: Arc<dyn Broker>,
    pub view: Arc<herald_store::ControlView>,
    pub config: EdgeConfig,
    /// Cancelled when the process starts draining: every stream then ends cleanly.
    pub shutdown: CancellationToken,
    pub limits: Arc<Limits>,
    pub usage: Arc<Usage>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
}

impl EdgeState {
    /// The state of an edge on `edge`'s broker and store. Starts following the broker's
    /// re-authorisation orders (until `edge.shutdown`), so it must be called on a Tokio runtime.
    pub fn new(edge: Edge) -> Self {
        let reauth = Arc::new(reauth::Reauth::new(edge.shutdown.clone()));
        reauth.clone().listen(
            edge.broker.as_ref(),
            edge.view.clone(),
            edge.shutdown.clone(),
        );
        Self {
            edge: Arc::new(edge),
            reauth,
        }
    }
}

impl std::ops::Deref for EdgeState {
    type Target = Edge;

    fn deref(&self) -> &Edge {
        &self.edge
    }
}

/// The `/v1` routes.
pub fn router(state: EdgeState) -> Router {
    Router::new()
        .route(
            "/v1/{tenant}/channels/{channel}/events",
            get(subscribe::one_channel).post(publish::one_event),
        )
        .route(
            "/v1/{tenant}/events",
            get(subscribe::several_channels).post(publish::batch),
        )
        .route("/v1/{tenant}/tokens", post(tokens::mint))
        .route(
            "/v1/{tenant}/channels/{channel}/history",
            get(history::history),
        )
        .route("/v1/{tenant}/channels/{channel}", get(history::info))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            )
        })
        .layer(cors::CorsLayer {
            state: state.clone(),
        })
        .with_state(state)
}
