//! The `herald` binary as a library: configuration, telemetry, and the wiring of the edge and
//! admin routers into one server. Tests build an [`App`] on port 0 and talk to it over loopback.

pub mod config;
mod lean;
pub mod openapi;
pub mod operator;
pub mod proxy;
pub mod request_id;
pub mod request_limits;
pub mod serve;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use herald_admin::{AdminConfig, AdminState};
use herald_core::ErrorCode;
use herald_edge::{EdgeConfig, EdgeState, Limits, Metrics, Usage};
use herald_http::ApiError;
use herald_replay::{Broker, InProcessBroker, RedisBroker, RedisConfig};
use herald_store::{Clock, ControlView, Store, SystemClock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{BrokerKind, Cli, Command, Config, TenantCommand};

/// The largest request body any route accepts.
const BODY_LIMIT: usize = 1024 * 1024;

/// Which routes a process serves (a member's role in a tenant is [`herald_store::Role`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// Admin API and edge on one listener.
    All,
    Edge,
    Admin,
}

/// A bound, ready-to-run server.
pub struct App {
    public_url: String,
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
    limits: serve::ServerLimits,
    metrics: Arc<Metrics>,
    store: Store,
    /// Cancelled once the server has drained, for the last usage flush.
    flushed: CancellationToken,
    flusher: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Health {
    store: Store,
    broker: Arc<dyn Broker>,
    /// An edge only: it rides out a database outage on its cached view, so it stays ready.
    database_optional: bool,
}

impl App {
    /// Connects to the database and the broker (failing within about ten seconds, naming the
    /// URL, when either is unreachable), migrates when the role serves the admin API, and binds.
    pub async fn build(config: &Config, routes: Routes) -> anyhow::Result<App> {
        Self::build_with_clock(config, routes, Arc::new(SystemClock)).await
    }

    /// [`App::build`] with a clock of the caller's, for tests of the UTC-day quotas.
    pub async fn build_with_clock(
        config: &Config,
        routes: Routes,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<App> {
        serve::raise_open_files_limit();
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        // With port 0 the public URL can only be known once bound.
        let mut config = config.clone();
        if config.public_url.is_none() {
            config.public_url = Some(format!("http://{}", listener.local_addr()?));
        }
        let mut store = Store::connect(&config.database_url).await?;
        if routes != Routes::Edge {
            store
                .migrate()
                .await
                .context("cannot migrate the database")?;
        }
        match &config.secrets_key {
            Some(key) => {
                store = store.with_secrets_key(herald_store::SecretsKey::new(&key.0));
                let sealed = store
                    .seal_plaintext_signing_secrets()
                    .await
                    .context("cannot encrypt the signing secrets stored in plain text")?;
                if sealed > 0 {
                    tracing::info!(
                        sealed,
                        "signing secrets stored in plain text are now encrypted"
                    );
                }
            }
            None => tracing::warn!(
                "no --secrets-key: signing secrets are stored unencrypted, and a copy of the \
                 database can forge subscriber tokens"
            ),
        }
        let broker = connect_broker(config.broker()).await?;
        let shutdown = CancellationToken::new();
        let view = Arc::new(ControlView::new(store.clone(), config.control_stale_for()));
        let plans = Arc::new(config.load_plans()?);
        let limits = Arc::new(Limits::new(
            plans.clone(),
            config.default_plan.clone(),
            config.connect_rate_per_ip,
        ));
        herald_edge::limits::spawn_forgetting(limits.clone(), shutdown.clone());
        let usage = Arc::new(Usage::new(config.metrics_top_tenants));
        let metrics = Arc::new(Metrics::new(herald_edge::metrics::Sources {
            usage: usage.clone(),
            broker: broker.clone(),
            view: view.clone(),
            shutdown: shutdown.clone(),
        }));
        let flushed = CancellationToken::new();
        let flusher = herald_edge::meter::spawn_flusher(
            usage.clone(),
            store.clone(),
            clock.clone(),
            Duration::from_secs(config.usage_flush_secs.max(1)),
            flushed.clone(),
        );
        let edge = EdgeState::new(herald_edge::Edge {
            broker: broker.clone(),
            view: view.clone(),
            config: EdgeConfig {
                heartbeat: Duration::from_secs(config.heartbeat_secs.max(1)),
                retry_ms: config.retry_ms,
                coalesce: Duration::from_millis(config.coalesce_ms),
            },
            shutdown: shutdown.clone(),
            limits,
            usage: usage.clone(),
            metrics: metrics.clone(),
            clock,
        });
        let admin = AdminState::new(
            store.clone(),
            view,
            broker.clone(),
            AdminConfig {
                public_origin: config.public_origin(),
                session_ttl: herald_admin::SESSION_TTL,
                session_max_age: Duration::from_secs(config.session_max_age_secs),
                signing_key_grace: config.signing_key_grace(),
                plans,
                default_plan: config.default_plan.clone(),
                signup_per_ip_per_hour: config.signup_per_ip_per_hour,
                password_hash_concurrency: config
                    .password_hash_concurrency
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            },
        );
        let mut router = Router::new();
        if routes != Routes::Admin {
            router = router.merge(herald_edge::router(edge));
        }
        if routes != Routes::Edge {
            router = router
                .merge(herald_admin::router(admin))
                .merge(openapi::docs_router())
                .merge(herald_web::router());
        }
        let rejections = metrics.clone();
        let limits = config.server_limits();
        let health = Health {
            store: store.clone(),
            broker,
            database_optional: routes == Routes::Edge,
        };
        let metrics_page = (metrics.clone(), health.clone());
        let router = router
            .route("/healthz", get(healthz))
            .route("/readyz", get(ready).with_state(health))
            .route(
                "/metrics",
                get(move || {
                    let (metrics, health) = metrics_page.clone();
                    async move {
                        probe_health(&metrics, &health).await;
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            metrics.encode(),
                        )
                    }
                }),
            )
            .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such resource") });
        // Two tiers. Inside routing, as route layers, only what must know the matched route
        // (the request's span and the count of rejections name it) and what must be traced and
        // counted: the request limits. Every refusal below the telemetry layer is traced and
        // counted. Outside routing, around the router once, what does not depend on the route:
        // the client's address is resolved before the request limits count streams per client,
        // the request's id is assigned before its span opens, and every response gets the
        // security headers. A route layer is one more boxed service that every request clones,
        // with everything beneath it: eight of them cost a publish dozens of allocations, so the
        // route layers are one, built with `ServiceBuilder`.
        let router = router.layer(
            tower::ServiceBuilder::new()
                .layer(telemetry::layer())
                .layer(herald_http::CountRejections::new(move |code, tenant| {
                    rejections.rejected(code);
                    if let Some(slug) = tenant {
                        usage.rejected(slug, code);
                    }
                }))
                .layer(request_limits::RequestLimits::new(&limits)),
        );
        // None of these boxes anything: `from_fn` would box each one's future and clone the
        // boxed service beneath it for every request.
        let trusted = proxy::TrustedProxies::new(config.trusted_proxies.clone());
        let around = tower::ServiceBuilder::new()
            .map_response(herald_http::security::apply)
            .map_request(move |req| trusted.resolve(req))
            .layer(request_id::AssignRequestId)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .service(router);
        let router = Router::new().fallback_service(around);
        Ok(App {
            public_url: config.public_url(),
            listener,
            router,
            shutdown,
            drain: config.drain(),
            limits,
            metrics,
            store,
            flushed,
            flusher,
        })
    }

    /// The URL people and browsers use.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Cancelling this token starts the drain: no new connections, every stream ends cleanly,
    /// in-flight requests finish, and [`App::run`] returns within the drain timeout.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains.
    pub async fn run(self) -> anyhow::Result<()> {
        let App {
            public_url: _,
            listener,
            router,
            shutdown,
            drain,
            limits,
            metrics,
            store,
            flushed,
            flusher,
        } = self;
        let server = serve::serve(listener, router, limits, shutdown.clone(), move || {
            metrics.rejected(ErrorCode::Unavailable)
        });
        tokio::pin!(server);
        tokio::select! {
            () = &mut server => {}
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(drain).await;
            } => tracing::warn!("drain timeout reached; closing remaining connections"),
        }
        // Every stream has ended (or been dropped with the server), and with it settled its
        // counts: the last flush makes the usage record exact.
        flushed.cancel();
        if let Err(e) = flusher.await {
            tracing::warn!(error = %e, "the usage flusher failed");
        }
        store.close().await;
        Ok(())
    }
}

/// The broker `kind` names, connected; for Redis, failing with one line that names the URL
/// (password redacted).
pub async fn connect_broker(kind: BrokerKind) -> anyhow::Result<Arc<dyn Broker>> {
    Ok(match kind {
        BrokerKind::InProcess(budgets) => InProcessBroker::with_budgets(budgets),
        BrokerKind::Redis { url, prefix } => {
            let redacted = herald_store::redact_url(&url);
            RedisBroker::connect(RedisConfig {
                url,
                prefix,
                cluster: false,
            })
            .await
            .with_context(|| format!("cannot connect to Redis at {redacted}"))?
        }
        BrokerKind::RedisCluster { seeds, prefix } => {
            let redacted: Vec<String> = seeds.split(',').map(herald_store::redact_url).collect();
            RedisBroker::connect(RedisConfig {
                url: seeds,
                prefix,
                cluster: true,
            })
            .await
            .with_context(|| format!("cannot connect to Redis Cluster at {}", redacted.join(",")))?
        }
    })
}

/// How long `/readyz` waits for the database: well under the 1 s a Kubernetes probe waits by
/// default, so that an edge answers `degraded` in time rather than looking unready.
const READY_DATABASE_WAIT: Duration = Duration::from_millis(500);

/// Pings the broker and the database for the scrape's health gauges, each for at most
/// [`READY_DATABASE_WAIT`], at the same time.
async fn probe_health(metrics: &Metrics, health: &Health) {
    let started = std::time::Instant::now();
    let broker = async {
        let answered = tokio::time::timeout(READY_DATABASE_WAIT, health.broker.ping()).await;
        matches!(answered, Ok(Ok(()))).then(|| started.elapsed())
    };
    let database = async {
        let answered = tokio::time::timeout(READY_DATABASE_WAIT, health.store.ping()).await;
        matches!(answered, Ok(Ok(())))
    };
    let (broker, database) = tokio::join!(broker, database);
    metrics.health(broker, READY_DATABASE_WAIT, database);
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz", security(()),
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String, example = json!("ok\n"))))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database and the broker answer (an edge needs only the broker: without its
/// database it rides on its cached view, stays ready and says `degraded`).
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz", security(()),
    responses((status = 200, description = "Ready (or, on an edge without its database, `degraded: ...`)", content_type = "text/plain", body = String, example = json!("ready\n"))))]
async fn ready(State(health): State<Health>) -> Response {
    let (store, broker) = tokio::join!(
        tokio::time::timeout(READY_DATABASE_WAIT, health.store.ping()),
        health.broker.ping()
    );
    let store = match store {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_elapsed) => Err(format!(
            "no answer within {} ms",
            READY_DATABASE_WAIT.as_millis()
        )),
    };
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: database unreachable");
    }
    if let Err(e) = &broker {
        tracing::warn!(error = %e, "readiness: broker unreachable");
    }
    match (store, broker) {
        (Ok(()), Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        (Err(_), Ok(())) if health.database_optional => (
            StatusCode::OK,
            "degraded: the database is unreachable; serving from the cached control-plane view\n",
        )
            .into_response(),
        _ => {
            ApiError::new(ErrorCode::Unavailable, "database or broker unreachable").into_response()
        }
    }
}
