//! The broker: every channel's history, and the fan-out of new events to subscribers.
//!
//! [`Broker`] has two implementations with one behaviour: [`InProcessBroker`] for a single node
//! (history in memory, lost on restart) and [`RedisBroker`] for a cluster (Redis Streams for
//! history, pub/sub for fan-out). Both give every event a [`Cursor`] from which a subscriber can
//! resume, and both detect cursors that can no longer be honoured (history trimmed, cursor from
//! an earlier life of the history) so that the edge can tell the client instead of skipping.
//!
//! Fan-out goes through the node's [`hub`]: one broadcast channel per channel with local
//! subscribers, carrying each event's SSE frame encoded once.

#[cfg(feature = "testing")]
pub mod contract;
pub mod hub;
mod memory;
mod redis;
pub mod ring;
pub mod stats;
pub mod trace;

use std::time::Duration;

use async_trait::async_trait;
use herald_core::{ChannelName, Cursor, Epoch, Event, Position, TenantSlug};

pub use hub::{Live, LiveEvent, Subscription};
pub use memory::{Budgets, InProcessBroker};
pub use redis::{RedisBroker, RedisConfig};
pub use ring::Receiver as LiveReceiver;
pub use stats::BrokerStats;
pub use trace::TraceParent;

/// How much of a channel's history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events kept at most (the newest ones).
    pub max_len: u32,
    /// Events older than this are dropped.
    pub ttl: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_len: 100,
            ttl: Duration::from_secs(86_400),
        }
    }
}

/// A channel of a tenant: the unit of history and fan-out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelKey {
    pub tenant: TenantSlug,
    pub channel: ChannelName,
}

impl ChannelKey {
    pub fn new(tenant: TenantSlug, channel: ChannelName) -> Self {
        Self { tenant, channel }
    }
}

impl std::fmt::Display for ChannelKey {
    /// `tenant/channel`: neither part can contain `/`, so the form is unambiguous.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tenant, self.channel)
    }
}

/// The most event data one history page carries (unless its first event alone is larger): what a
/// catching-up subscriber holds at a time, however large the channel's events.
pub const PAGE_BYTES: usize = 256 << 10;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(86_400);

/// One event to append.
#[derive(Debug, Clone)]
pub struct Append {
    pub channel: ChannelKey,
    pub event: Event,
    pub retention: Retention,
}

/// The span of one append on any broker: the tenant and channel of its first event (a publish
/// names one tenant; a batch may name several channels, and says how many events it holds).
fn append_span(broker: &'static str, batch: &[Append]) -> tracing::Span {
    let span = tracing::info_span!(
        "broker.append",
        broker,
        tenant = tracing::field::Empty,
        channel = tracing::field::Empty,
        events = batch.len(),
    );
    if let Some(first) = batch.first() {
        span.record("tenant", tracing::field::display(&first.channel.tenant));
        span.record("channel", tracing::field::display(&first.channel.channel));
    }
    span
}

/// A publisher's idempotency key, scoped to its tenant, and the fingerprint of what it asked.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub tenant: TenantSlug,
    pub key: String,
    pub fingerprint: String,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Appended now; one cursor per event, in order.
    Fresh(Vec<Cursor>),
    /// A repeat of an earlier append with the same key and fingerprint: nothing appended, the
    /// first cursors again.
    Repeat(Vec<Cursor>),
    /// The key was used for a different request.
    Conflict,
    /// The tenant's daily message quota would be exceeded; nothing was appended.
    QuotaExceeded,
}

/// A tenant's messages-per-day quota, for one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyQuota {
    pub tenant: TenantSlug,
    /// Days since the unix epoch, UTC.
    pub day: i64,
    pub limit: u64,
}

/// A held subscriber connection of a tenant, counted on every process until dropped.
pub struct ConnectionPermit {
    /// The tenant's connections across all processes, this one included, when it was granted.
    pub total: u64,
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl ConnectionPermit {
    pub fn new(total: u64, release: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self {
            total,
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl std::fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionPermit")
            .field("total", &self.total)
            .finish()
    }
}

/// What a channel holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub last: Option<Cursor>,
    pub retained: usize,
}

/// Some channels: one, or all of a tenant's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Channel(ChannelKey),
    Tenant(TenantSlug),
}

impl Target {
    pub fn covers(&self, key: &ChannelKey) -> bool {
        match self {
            Target::Channel(c) => c == key,
            Target::Tenant(t) => &key.tenant == t,
        }
    }
}

/// An event as the history holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub position: Position,
    pub event: Event,
}

/// Why a reader could not simply continue after its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// Events after the cursor were dropped from the history (size or age).
    HistoryTruncated,
    /// The cursor cannot be placed in this history: ahead of its head, or from an earlier life.
    InvalidCursor,
}

impl Gap {
    pub const fn reason(self) -> &'static str {
        match self {
            Self::HistoryTruncated => "history_truncated",
            Self::InvalidCursor => "invalid_cursor",
        }
    }
}

/// One page of history after a cursor, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The life of the history these positions belong to.
    pub epoch: Epoch,
    /// Set when the page does not continue directly after the requested cursor; the page then
    /// starts at the oldest retained event.
    pub gap: Option<Gap>,
    pub events: Vec<StoredEvent>,
    /// Whether the page stopped at its limit (of events or of [`PAGE_BYTES`]): more may follow.
    pub full: bool,
}

impl History {
    pub fn cursor_of(&self, e: &StoredEvent) -> Cursor {
        Cursor::new(self.epoch, e.position)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached; the operation did not happen and may be retried.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker answered with something this version does not understand.
    #[error("broker protocol error: {0}")]
    Protocol(String),
}

/// Who is connected, counted across every process: the tenant's concurrent-connection quota
/// and a channel's subscribers.
///
/// Apart from [`Broker`] because it is bookkeeping about connections, not about events: nothing
/// in it touches a channel's history or its fan-out. Every broker implements it (it is a
/// supertrait), since the counts must be shared by the same processes that share the history.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Takes one of the tenant's `limit` concurrent connections, counted across every process;
    /// `None` when all are taken. A process that dies stops counting within seconds.
    async fn acquire_connection(
        &self,
        tenant: &TenantSlug,
        limit: u64,
    ) -> Result<Option<ConnectionPermit>, BrokerError>;

    /// The tenant's open subscriber connections on every process: this process's count is
    /// current, others' as they last reported (a couple of seconds old at most), and a process
    /// that died stops counting within seconds.
    async fn connections(&self, tenant: &TenantSlug) -> Result<u64, BrokerError>;

    /// Subscribers of the channel on every process (a process's count may lag by a couple of
    /// seconds; a process that died stops counting within seconds).
    async fn subscribers(&self, channel: &ChannelKey) -> Result<usize, BrokerError>;
}

/// The history and fan-out of every channel.
///
/// The ordering promise: an event [`Broker::append`] has returned for is in the history, and is
/// delivered to every [`Subscription`] that existed when it was appended, in append order per
/// channel. A subscriber that joins first and then reads history after its cursor therefore
/// misses nothing and, dropping live events at or before the last one it read, sees none twice.
#[async_trait]
pub trait Broker: Presence {
    /// Appends events to their channels' histories and announces them, all or nothing, in
    /// order. With an idempotency key, a repeat (same key, same fingerprint) within
    /// [`IDEMPOTENCY_TTL`] appends nothing and answers the first cursors again, however many
    /// repeats race; a repeat with another fingerprint is [`Appended::Conflict`].
    ///
    /// With a daily quota, the events count against the tenant's messages of `quota.day`, and
    /// a batch that would go over the limit appends nothing ([`Appended::QuotaExceeded`]); the
    /// check and the count are one step with the append, on every process.
    async fn append_batch(
        &self,
        batch: &[Append],
        idempotency: Option<&Idempotency>,
        quota: Option<&DailyQuota>,
    ) -> Result<Appended, BrokerError>;

    /// Appends one event (see [`Broker::append_batch`]) and returns its cursor.
    async fn append(
        &self,
        channel: &ChannelKey,
        event: &Event,
        retention: Retention,
    ) -> Result<Cursor, BrokerError> {
        let batch = [Append {
            channel: channel.clone(),
            event: event.clone(),
            retention,
        }];
        match self.append_batch(&batch, None, None).await? {
            Appended::Fresh(c) | Appended::Repeat(c) => c
                .into_iter()
                .next()
                .ok_or_else(|| BrokerError::Protocol("no cursor for an appended event".into())),
            Appended::Conflict | Appended::QuotaExceeded => Err(BrokerError::Protocol(
                "refused an append that had no key and no quota".into(),
            )),
        }
    }

    /// The channel's newest cursor and how many events it retains.
    async fn channel_info(&self, channel: &ChannelKey) -> Result<ChannelInfo, BrokerError>;

    /// Up to `limit` events after `after` (from the oldest retained event when `None`), fewer
    /// when their data would pass [`PAGE_BYTES`]; never none while some follow.
    async fn read(
        &self,
        channel: &ChannelKey,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<History, BrokerError>;

    /// Joins the node's hub for the channel. Resolves once every event appended from now on is
    /// guaranteed to reach the returned subscription.
    async fn subscribe(&self, channel: &ChannelKey) -> Result<Subscription, BrokerError>;

    /// A subscription's catch-up found nothing after its `start`: see [`hub::Hub::prime`].
    /// Subscribers that join after it need not read history, until delivery is interrupted.
    fn prime(&self, channel: &ChannelKey, start: Option<Cursor>, generation: u64);

    /// Whether the broker is reachable (for readiness checks).
    async fn ping(&self) -> Result<(), BrokerError>;

    /// What the broker counted about its work (reconnects, resyncs, history reads, round
    /// trips), for `/metrics`.
    fn stats(&self) -> &BrokerStats;

    /// Ends the open streams of the target on every process that serves them (a suspended or
    /// deleted tenant, a deleted channel). Clients that reconnect are checked anew.
    async fn end_streams(&self, target: &Target) -> Result<(), BrokerError>;

    /// Tells every process that the target's access rules changed (a channel turned private, a
    /// tenant's default visibility did, a key was revoked, a signing key rotated): each
    /// re-authorises its open streams of the target, which [`Broker::rechecks`] announces.
    async fn recheck_streams(&self, target: &Target) -> Result<(), BrokerError>;

    /// The re-authorisation orders this process receives from now on, its own included. A
    /// receiver that lagged behind lost some, and should re-check every stream.
    fn rechecks(&self) -> tokio::sync::broadcast::Receiver<Target>;

    /// Removes the target's history, then ends its streams. Cursors into it are then from an
    /// earlier life: a later resume gets `invalid_cursor`.
    async fn delete_history(&self, target: &Target) -> Result<(), BrokerError>;
}
