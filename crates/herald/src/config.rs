//! Command line and environment: every setting is a flag and an environment variable, and the
//! flag wins. Global flags may stand before or after the subcommand.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "herald", version, about = "Herald: hosted Server-Sent Events")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Everything on one listener: admin API and edge (the default).
    Serve,
    /// Only the edge routes (/v1, health); scale these horizontally.
    Edge,
    /// Only the admin API (/api, health).
    Admin,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document of every public endpoint (the one in api-spec/) to stdout.
    Openapi,
    /// Operator commands on tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
}

/// `herald tenant ...`: what an operator does to tenants, through the database (and Redis, to
/// tell running edges at once).
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TenantCommand {
    /// List every tenant: slug, plan, state, creation time.
    List,
    /// Put a tenant on a plan (one of the configured plans).
    SetPlan {
        /// The tenant's slug.
        slug: String,
        /// The plan's name.
        plan: String,
    },
    /// Suspend a tenant: its publishes and new streams get 403 `tenant_suspended`, and its open
    /// streams end.
    Suspend {
        /// The tenant's slug.
        slug: String,
    },
    /// Lift a tenant's suspension.
    Resume {
        /// The tenant's slug.
        slug: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "HERALD_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Control-plane database: postgres://... or sqlite://path (created if missing).
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        default_value = "sqlite://herald-data/herald.db",
        global = true
    )]
    pub database_url: String,

    /// Redis for history and fan-out across processes; without it, an in-process broker (single node).
    #[arg(long, env = "HERALD_REDIS_URL", global = true)]
    pub redis_url: Option<String>,

    /// Every Redis key and pub/sub channel starts with this.
    #[arg(
        long,
        env = "HERALD_REDIS_PREFIX",
        default_value = "herald",
        global = true
    )]
    pub redis_prefix: String,

    /// `--redis-url` names seed nodes of a Redis Cluster (several comma-separated): history and
    /// fan-out are sharded by channel across its masters.
    #[arg(
        long,
        env = "HERALD_REDIS_CLUSTER",
        global = true,
        requires = "redis_url",
        // `HERALD_REDIS_CLUSTER=1` (or true, yes, on) turns it on; 0, false, no, off or empty not.
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub redis_cluster: bool,

    /// The URL people and browsers use; defaults to http://<listen>.
    #[arg(long, env = "HERALD_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Seconds without an event before a stream gets a keepalive comment.
    #[arg(
        long,
        env = "HERALD_HEARTBEAT_SECS",
        default_value_t = 15,
        global = true
    )]
    pub heartbeat_secs: u64,

    /// The reconnection delay streams announce with `retry:`, in milliseconds.
    #[arg(long, env = "HERALD_RETRY_MS", default_value_t = 2000, global = true)]
    pub retry_ms: u64,

    /// Milliseconds a stream that has just written gathers events before its next write; a
    /// stream quiet for this long writes at once. Larger: fewer writes per busy subscriber (less
    /// CPU per delivery), more latency on busy channels only.
    #[arg(
        long,
        env = "HERALD_COALESCE_MS",
        default_value_t = herald_edge::DEFAULT_COALESCE_MS,
        global = true
    )]
    pub coalesce_ms: u64,

    /// Memory for the in-process broker's history, all channels together, in MiB. Over it, an
    /// append drops the oldest events of its own channel, then of the others (readers that
    /// needed them get `history_truncated`).
    #[arg(
        long,
        env = "HERALD_HISTORY_MEMORY_MB",
        default_value_t = 256,
        global = true
    )]
    pub history_memory_mb: usize,

    /// Seconds a draining process waits for in-flight work after SIGTERM.
    #[arg(long, env = "HERALD_DRAIN_SECS", default_value_t = 10, global = true)]
    pub drain_secs: u64,

    /// Seconds a rotated-out signing key still verifies subscriber tokens.
    #[arg(
        long,
        env = "HERALD_SIGNING_KEY_GRACE_SECS",
        default_value_t = 86_400,
        global = true
    )]
    pub signing_key_grace_secs: u64,

    /// Stream connects per second per client IP; 0 turns the limit off.
    #[arg(
        long,
        env = "HERALD_CONNECT_RATE_PER_IP",
        default_value_t = 0,
        global = true
    )]
    pub connect_rate_per_ip: u32,

    /// Seconds between writes of usage counters (and API keys' last use) to the database.
    #[arg(
        long,
        env = "HERALD_USAGE_FLUSH_SECS",
        default_value_t = 10,
        global = true
    )]
    pub usage_flush_secs: u64,

    /// Tenants with a `tenant` label of their own in `/metrics` (the busiest; the rest are
    /// `other`), so that the number of series is bounded whatever the number of tenants.
    #[arg(
        long,
        env = "HERALD_METRICS_TOP_TENANTS",
        default_value_t = herald_edge::meter::DEFAULT_TOP_TENANTS,
        global = true
    )]
    pub metrics_top_tenants: usize,

    /// Seconds an edge keeps answering from its last known view of tenants, keys, channels and
    /// signing keys while the database is unreachable (then requests that need them get 503);
    /// 0 = not at all.
    #[arg(
        long,
        env = "HERALD_CONTROL_STALE_SECS",
        default_value_t = 600,
        global = true
    )]
    pub control_stale_secs: u64,

    /// A TOML file of plans (`[plans.<name>]` tables); it replaces the built-in plans.
    #[arg(long, env = "HERALD_PLANS", global = true)]
    pub plans: Option<std::path::PathBuf>,

    /// The plan a new tenant gets.
    #[arg(
        long,
        env = "HERALD_DEFAULT_PLAN",
        default_value = "free",
        global = true
    )]
    pub default_plan: String,

    /// Log format.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Sign-ups allowed per client IP per hour; 0 = unlimited.
    #[arg(
        long,
        env = "HERALD_SIGNUP_PER_IP_PER_HOUR",
        default_value_t = 20,
        global = true
    )]
    pub signup_per_ip_per_hour: u32,

    /// The OpenTelemetry collector's base URL (`http://host:4318`): traces go to its
    /// `/v1/traces`, OTLP over HTTP/protobuf. None (and no `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
    /// = no trace export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint, global = true)]
    pub otlp_endpoint: Option<axum::http::Uri>,

    /// The share of traces kept, 0 to 1; a request with a `traceparent` follows its client's
    /// decision. Unset: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` decide (all by default).
    #[arg(long, env = "HERALD_TRACE_SAMPLE_RATIO", value_parser = parse_ratio, global = true)]
    pub trace_sample_ratio: Option<f64>,

    /// CIDRs (comma-separated) of reverse proxies whose `X-Forwarded-For` / `Forwarded` names
    /// the client; from any other peer those headers are ignored.
    #[arg(
        long,
        env = "HERALD_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_cidr,
        global = true
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// 32 random bytes, base64: the key that encrypts signing secrets at rest (the same on every
    /// process of a cluster). Unset: they are stored unencrypted, with a warning at start-up.
    #[arg(long, env = "HERALD_SECRETS_KEY", value_parser = parse_secrets_key, global = true, hide_env_values = true)]
    pub secrets_key: Option<SecretsKey>,

    /// Seconds a login session lives, however it is used (it also ends after 14 days unused).
    /// Default: 12 hours, OWASP ASVS level 2's bound for re-authentication.
    #[arg(
        long,
        env = "HERALD_SESSION_MAX_AGE_SECS",
        default_value_t = 43_200,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub session_max_age_secs: u64,

    /// Seconds a new connection has to send its first request's headers; a slower client is
    /// disconnected (slowloris).
    #[arg(
        long,
        env = "HERALD_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub header_read_timeout_secs: u64,

    /// Seconds a kept-alive HTTP/1.1 connection may wait for, and then send, its next
    /// request's headers. Longer than the 60 s for which nginx and most load balancers keep idle
    /// upstream connections, so that they never reuse one Herald is closing.
    #[arg(
        long,
        env = "HERALD_KEEP_ALIVE_SECS",
        default_value_t = 75,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub keep_alive_secs: u64,

    /// Seconds a request body has to arrive, whole, from its first read; slower is 408
    /// `request_timeout`.
    #[arg(
        long,
        env = "HERALD_BODY_READ_TIMEOUT_SECS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub body_read_timeout_secs: u64,

    /// Seconds any request but a stream (`GET …/events`) may take to be answered; longer is 503
    /// `unavailable`.
    #[arg(
        long,
        env = "HERALD_REQUEST_TIMEOUT_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub request_timeout_secs: u64,

    /// Connections this process holds at once; one more is answered 503 and closed at once.
    /// Default: the open-files limit (raised to its hard limit at start-up) less a tenth kept for
    /// the database, Redis and files.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,

    /// Streams one client IP may hold open on this process (the address `--trusted-proxies`
    /// resolves); one more is 429 `quota_exceeded`. 0 = no limit.
    #[arg(
        long,
        env = "HERALD_MAX_STREAMS_PER_IP",
        default_value_t = 1000,
        global = true
    )]
    pub max_streams_per_ip: usize,

    /// Argon2 password checks (logins, sign-ups, password changes) run at once; 16 times as many
    /// may be waiting, and the rest get 503 at once. Default: the number of CPUs.
    #[arg(long, env = "HERALD_PASSWORD_HASH_CONCURRENCY", global = true)]
    pub password_hash_concurrency: Option<usize>,
}

/// The key-encryption key of `--secrets-key`; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsKey(pub [u8; 32]);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

fn parse_secrets_key(s: &str) -> Result<SecretsKey, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim()))
        .map_err(|_| "not base64 (generate one with: openssl rand -base64 32)".to_owned())?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes; it must be 32", b.len()))?;
    Ok(SecretsKey(key))
}

fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (like 10.0.0.0/8) or an IP address"))
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("expected a number from 0 to 1".to_owned()),
    }
}

fn parse_otlp_endpoint(s: &str) -> Result<axum::http::Uri, String> {
    let uri: axum::http::Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err("expected http(s)://host[:port][/path]".to_owned()),
    }
}

/// Which broker holds the channels' history and fans events out: chosen here, once, from the
/// configuration, so that another backend is one more variant and one more module in
/// `herald-replay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerKind {
    /// In this process only: a single node, history lost on restart, held within these bounds.
    InProcess(herald_replay::Budgets),
    /// Redis, shared by every process of a cluster.
    Redis {
        /// The Redis URL (it may carry a password: never log it unredacted).
        url: String,
        /// What every key and pub/sub channel starts with.
        prefix: String,
    },
    /// Redis Cluster: channels sharded across its masters, fan-out on sharded pub/sub.
    RedisCluster {
        /// Seed nodes' URLs, comma-separated (they may carry a password).
        seeds: String,
        /// What every key and pub/sub channel starts with.
        prefix: String,
    },
}

impl Config {
    /// The broker this configuration asks for.
    pub fn broker(&self) -> BrokerKind {
        match &self.redis_url {
            Some(url) if self.redis_cluster => BrokerKind::RedisCluster {
                seeds: url.clone(),
                prefix: self.redis_prefix.clone(),
            },
            Some(url) => BrokerKind::Redis {
                url: url.clone(),
                prefix: self.redis_prefix.clone(),
            },
            None => BrokerKind::InProcess(herald_replay::Budgets {
                history_bytes: self.history_memory_mb << 20,
                ..herald_replay::Budgets::default()
            }),
        }
    }

    /// The public URL without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// `scheme://host[:port]` of the public URL, as browsers send it in `Origin`.
    pub fn public_origin(&self) -> String {
        let url = self.public_url();
        match url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split('/').next().unwrap_or(rest);
                format!("{scheme}://{host}")
            }
            None => url,
        }
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }

    /// How long the cached control-plane view stands in for an unreachable database.
    pub fn control_stale_for(&self) -> Duration {
        Duration::from_secs(self.control_stale_secs)
    }

    /// The timeouts and caps of [`crate::serve`] and [`crate::request_limits`].
    pub fn server_limits(&self) -> crate::serve::ServerLimits {
        crate::serve::ServerLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            keep_alive: Duration::from_secs(self.keep_alive_secs),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_connections: self
                .max_connections
                .unwrap_or_else(crate::serve::default_max_connections),
            max_streams_per_ip: self.max_streams_per_ip,
        }
    }

    /// How long a rotated-out signing key still verifies.
    pub fn signing_key_grace(&self) -> Duration {
        Duration::from_secs(self.signing_key_grace_secs)
    }

    /// The plans: the `--plans` file, or the built-in ones. The default plan must be one of them.
    pub fn load_plans(&self) -> anyhow::Result<herald_store::Plans> {
        use anyhow::Context;
        let plans = match &self.plans {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the plans file {}", path.display()))?;
                herald_store::Plans::from_toml(&text)
                    .with_context(|| format!("in the plans file {}", path.display()))?
            }
            None => herald_store::Plans::builtin(),
        };
        anyhow::ensure!(
            plans.get(&self.default_plan).is_some(),
            "the default plan {:?} is not among the plans ({})",
            self.default_plan,
            plans.plans.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        Ok(plans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_flags_may_follow_the_subcommand() {
        let cli = Cli::parse_from([
            "herald",
            "edge",
            "--listen",
            "127.0.0.1:9000",
            "--retry-ms",
            "5",
        ]);
        assert_eq!(cli.command, Some(Command::Edge));
        assert_eq!(cli.config.listen.port(), 9000);
        assert_eq!(cli.config.retry_ms, 5);
        let cli = Cli::parse_from(["herald", "--heartbeat-secs", "3"]);
        assert_eq!(cli.command, None);
        assert_eq!(cli.config.heartbeat_secs, 3);
        assert_eq!(cli.config.signing_key_grace(), Duration::from_secs(86_400));
        assert_eq!(
            cli.config.control_stale_for(),
            herald_store::cache::DEFAULT_STALE_FOR
        );
    }

    #[test]
    fn redis_cluster_makes_the_url_a_seed_list() {
        let seeds = "redis://10.0.0.1:7000,redis://10.0.0.2:7000";
        let cli = Cli::parse_from(["herald", "edge", "--redis-url", seeds, "--redis-cluster"]);
        assert_eq!(
            cli.config.broker(),
            BrokerKind::RedisCluster {
                seeds: seeds.into(),
                prefix: "herald".into()
            }
        );
        let cli = Cli::parse_from(["herald", "edge", "--redis-url", "redis://r:6379"]);
        assert!(matches!(cli.config.broker(), BrokerKind::Redis { .. }));
        assert!(
            Cli::try_parse_from(["herald", "edge", "--redis-cluster"]).is_err(),
            "a cluster needs seeds"
        );
    }

    #[test]
    fn tenant_commands_parse() {
        let cli = Cli::parse_from(["herald", "tenant", "set-plan", "acme", "pro"]);
        assert_eq!(
            cli.command,
            Some(Command::Tenant(TenantCommand::SetPlan {
                slug: "acme".into(),
                plan: "pro".into()
            }))
        );
        let cli = Cli::parse_from([
            "herald",
            "tenant",
            "suspend",
            "acme",
            "--database-url",
            "sqlite://x.db",
        ]);
        assert_eq!(
            cli.command,
            Some(Command::Tenant(TenantCommand::Suspend {
                slug: "acme".into()
            }))
        );
        assert_eq!(cli.config.database_url, "sqlite://x.db");
        assert!(cli.config.load_plans().is_ok());
    }

    #[test]
    fn security_flags_parse_and_refuse_what_is_malformed() {
        let cli = Cli::parse_from(["herald"]);
        assert_eq!(cli.config.signup_per_ip_per_hour, 20);
        assert!(cli.config.trusted_proxies.is_empty());
        assert!(cli.config.secrets_key.is_none());
        assert!(cli.config.otlp_endpoint.is_none());
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let cli = Cli::parse_from([
            "herald",
            "--signup-per-ip-per-hour",
            "0",
            "--trusted-proxies",
            "10.0.0.0/8, 192.168.1.7,::1/128",
            "--secrets-key",
            key,
            "--otlp-endpoint",
            "http://collector:4318",
            "--trace-sample-ratio",
            "0.25",
        ]);
        assert_eq!(cli.config.signup_per_ip_per_hour, 0);
        assert_eq!(cli.config.trusted_proxies.len(), 3);
        assert_eq!(cli.config.secrets_key.as_ref().unwrap().0[31], 31);
        assert!(!format!("{:?}", cli.config).contains(key));
        assert_eq!(cli.config.otlp_endpoint.unwrap().host(), Some("collector"));
        assert_eq!(cli.config.trace_sample_ratio, Some(0.25));
        for bad in [
            ["--trusted-proxies", "10.0.0.0/33"],
            ["--secrets-key", "c2hvcnQ="],
            ["--otlp-endpoint", "collector:4318"],
            ["--trace-sample-ratio", "1.5"],
            ["--trace-sample-ratio", "some"],
        ] {
            assert!(
                Cli::try_parse_from(["herald", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_public_origin_drops_the_path() {
        let mut cli = Cli::parse_from(["herald"]);
        assert_eq!(cli.config.public_origin(), "http://127.0.0.1:8080");
        cli.config.public_url = Some("https://sse.example.com/base/".into());
        assert_eq!(cli.config.public_url(), "https://sse.example.com/base");
        assert_eq!(cli.config.public_origin(), "https://sse.example.com");
    }
}
