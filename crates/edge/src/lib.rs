//! The edge: the public `/v1` API that browsers subscribe to and servers publish to.
//!
//! [`router`] serves it from an [`EdgeState`]. Everything on this path is paid once per
//! connection (authentication, tenant lookup, joining the hub) or once per event (encoding); a
//! delivery to one more subscriber costs a reference count and a socket write.

mod error;
mod publish;
mod subscribe;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderName, Method};
use axum::routing::get;
use axum::Router;
use herald_core::ErrorCode;
use herald_replay::Broker;
use herald_store::Store;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::{problem_response, ApiError};
pub use view::ControlView;

/// Settings of the edge that come from the command line.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// A comment line is sent after this long without an event.
    pub heartbeat: Duration,
    /// The `retry:` every stream starts with, in milliseconds.
    pub retry_ms: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            retry_ms: 2000,
        }
    }
}

/// The edge's shared state; cheap to clone.
#[derive(Clone)]
pub struct EdgeState(Arc<Inner>);

pub struct Inner {
    pub broker: Arc<dyn Broker>,
    pub view: Arc<ControlView>,
    pub config: EdgeConfig,
    /// Cancelled when the process starts draining: every stream then ends cleanly.
    pub shutdown: CancellationToken,
}

impl EdgeState {
    pub fn new(
        broker: Arc<dyn Broker>,
        view: Arc<ControlView>,
        config: EdgeConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Self(Arc::new(Inner {
            broker,
            view,
            config,
            shutdown,
        }))
    }

    /// A state whose control-plane view reads `store` directly.
    pub fn with_store(
        broker: Arc<dyn Broker>,
        store: Store,
        config: EdgeConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Self::new(broker, Arc::new(ControlView::new(store)), config, shutdown)
    }
}

impl std::ops::Deref for EdgeState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The `/v1` routes.
pub fn router(state: EdgeState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600));
    Router::new()
        .route(
            "/v1/{tenant}/channels/{channel}/events",
            get(subscribe::one_channel).post(publish::one_event),
        )
        .route("/v1/{tenant}/events", get(subscribe::several_channels))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            )
        })
        .layer(cors)
        .with_state(state)
}
