//! The Redis broker: one stream per channel for history, pub/sub for fan-out.
//!
//! Keys are `<prefix>:{<tenant>/<channel>}:s` (the stream) and `…:m` (its meta hash: `epoch`,
//! `last`, `trimmed`, `ttl`). The braces put a channel's two keys in one hash slot, but that is
//! not enough for Redis Cluster: the append script also touches the idempotency and daily-quota
//! keys, and a batch several channels, in one call, which a cluster refuses (`CROSSSLOT`). This
//! broker needs one Redis (with replicas if wanted), not Redis Cluster.
//! Announcements go to `<prefix>:ev:<tenant>/<channel>`; orders to every process (end the
//! streams of a channel or tenant) go to `<prefix>:control`.
//!
//! Appending is one Lua script, so an event is either stored *and* announced, or neither. The
//! script also trims the stream itself (by length and by age) so that it can record the newest
//! id it dropped: with that, a cursor is placed exactly — continuous, truncated, or unknown —
//! without guessing from `MAXLEN ~`. The `epoch` is drawn when the meta hash is first written; if
//! Redis loses the data, the next append starts a new life with a new epoch.
//!
//! Each process holds one pub/sub connection, subscribed to every channel that has a local
//! subscriber, driven by a single task ([`PubSubActor`]) so subscribes, unsubscribes and
//! reconnects never race one another. When that connection drops, live subscribers are told to
//! [`Live::Resync`](crate::Live::Resync) from history once it is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use herald_core::{Cursor, Epoch, Event, EventData, EventType, Position};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::{Script, Value};
use tokio::sync::{mpsc, oneshot};

use crate::hub::{Hub, LiveEvent, Subscription};
use crate::{
    Append, Appended, Broker, BrokerError, ChannelInfo, ChannelKey, ConnectionPermit, DailyQuota,
    Gap, History, Idempotency, Presence, StoredEvent, Target,
};
use herald_core::{ChannelName, TenantSlug};

mod keys;
mod pubsub;
mod scripts;
mod wire;

use keys::*;
use pubsub::PubSubActor;
use scripts::*;
use wire::*;

/// How long a command may take before the broker counts as unavailable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a process publishes its subscriber counts and proves it is alive.
const REPORT_EVERY: Duration = Duration::from_secs(2);
/// A process that has not proved it is alive for this long no longer counts.
const ALIVE_SECS: u64 = 6;
/// How long the meta hash outlives the last event of a quiet channel, so that old cursors are
/// still told "truncated" rather than "unknown".
const META_GRACE_SECS: u64 = 7 * 86_400;

/// Where the broker keeps its data.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    /// Every key and pub/sub channel starts with `<prefix>:`.
    pub prefix: String,
}

/// A broker on Redis, shared by every edge process of a cluster.
pub struct RedisBroker {
    con: ConnectionManager,
    /// Connection releases, written back by the pub/sub task (see [`PubSubActor::report`]).
    releases: mpsc::UnboundedSender<TenantSlug>,
    /// This process's id in subscriber counts.
    process: String,
    prefix: String,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

struct Shared {
    hub: Hub,
    /// This process's open connections per tenant: the truth its reports write.
    connections: std::sync::Mutex<HashMap<TenantSlug, u64>>,
    /// Whether the pub/sub connection is up; new subscriptions are refused while it is not.
    up: AtomicBool,
}

enum Command {
    Subscribe {
        key: ChannelKey,
        head: Option<Cursor>,
        reply: oneshot::Sender<Subscription>,
    },
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl RedisBroker {
    /// Connects, checks that Redis answers, and starts the pub/sub task. Fails within about ten
    /// seconds when Redis cannot be reached.
    pub async fn connect(config: RedisConfig) -> Result<Arc<Self>, BrokerError> {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let mut con = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_connection_manager_with_config(manager),
        )
        .await
        .map_err(|_| unavailable("timed out connecting"))?
        .map_err(unavailable)?;
        redis::cmd("PING")
            .query_async::<()>(&mut con)
            .await
            .map_err(unavailable)?;
        let (mut sink, stream) = tokio::time::timeout(COMMAND_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| unavailable("timed out connecting"))?
            .map_err(unavailable)?
            .split();
        sink.subscribe(control_name(&config.prefix))
            .await
            .map_err(unavailable)?;

        let shared = Arc::new(Shared {
            connections: std::sync::Mutex::default(),
            hub: Hub::new(crate::hub::HUB_CAPACITY),
            up: AtomicBool::new(true),
        });
        let (commands, rx) = mpsc::channel(1024);
        let (releases, released) = mpsc::unbounded_channel();
        let process = format!("{:016x}", rand::random::<u64>());
        let actor = PubSubActor {
            released,
            con: con.clone(),
            process: process.clone(),
            reported: HashMap::new(),
            reported_tenants: Vec::new(),
            client,
            shared: shared.clone(),
            prefix: config.prefix.clone(),
            commands: rx,
            subscribed: HashMap::new(),
        };
        tokio::spawn(actor.run((sink, stream)));
        Ok(Arc::new(Self {
            releases,
            con,
            process,
            prefix: config.prefix,
            shared,
            commands,
        }))
    }

    fn keys(&self, key: &ChannelKey) -> (String, String) {
        let base = format!("{}:{{{key}}}", self.prefix);
        (format!("{base}:s"), format!("{base}:m"))
    }

    /// The channel's newest cursor, read before subscribing so a joiner knows where live starts.
    async fn head(&self, key: &ChannelKey) -> Result<Option<Cursor>, BrokerError> {
        let (_, meta) = self.keys(key);
        let (epoch, last): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&meta)
            .arg("epoch")
            .arg("last")
            .query_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        Ok(match (epoch, last) {
            (Some(e), Some(l)) => Some(Cursor::new(parse_epoch(&e)?, parse_id(&l)?)),
            _ => None,
        })
    }

    /// The sum of other processes' last reported counts, of those still proving they are alive
    /// (this process's own entry is skipped: the caller has it fresh).
    async fn alive_sum(
        &self,
        con: &mut ConnectionManager,
        counts: &HashMap<String, u64>,
    ) -> Result<u64, BrokerError> {
        let others: Vec<(&String, &u64)> =
            counts.iter().filter(|(p, _)| **p != self.process).collect();
        if others.is_empty() {
            return Ok(0);
        }
        let mut check = redis::pipe();
        for (p, _) in &others {
            check.cmd("EXISTS").arg(alive_key(&self.prefix, p));
        }
        let alive: Vec<bool> = check.query_async(con).await.map_err(unavailable)?;
        Ok(others
            .iter()
            .zip(alive)
            .filter(|(_, a)| *a)
            .map(|((_, n), _)| **n)
            .sum())
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn append_batch(
        &self,
        batch: &[Append],
        idempotency: Option<&Idempotency>,
        quota: Option<&DailyQuota>,
    ) -> Result<Appended, BrokerError> {
        let mut invocation = APPEND.prepare_invoke();
        match idempotency {
            Some(i) => invocation
                .key(format!("{}:idem:{}:{}", self.prefix, i.tenant, i.key))
                .arg(&i.fingerprint),
            None => invocation.key(format!("{}:idem:-", self.prefix)).arg(""),
        };
        match quota {
            Some(q) => invocation.key(format!("{}:msgs:{}:{}", self.prefix, q.tenant, q.day)),
            None => invocation.key(format!("{}:msgs:-", self.prefix)),
        };
        invocation
            .arg(crate::IDEMPOTENCY_TTL.as_secs())
            .arg(batch.len())
            .arg(quota.map(|q| q.limit.to_string()).unwrap_or_default());
        for a in batch {
            let (stream, meta) = self.keys(&a.channel);
            let ttl_secs = a.retention.ttl.as_secs().max(1);
            invocation
                .key(stream)
                .key(meta)
                .arg(pubsub_name(&self.prefix, &a.channel))
                .arg(a.retention.max_len.max(1))
                .arg(a.retention.ttl.as_millis() as u64)
                .arg(Epoch::random().0)
                .arg(a.event.event_type.as_str())
                .arg(a.event.data.as_json())
                .arg(ttl_secs)
                .arg(ttl_secs + META_GRACE_SECS);
        }
        let (outcome, cursors): (String, String) = invocation
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        let parse = || -> Result<Vec<Cursor>, BrokerError> {
            cursors
                .split(',')
                .map(|c| {
                    let (epoch, id) = c
                        .split_once(':')
                        .ok_or_else(|| BrokerError::Protocol(format!("bad cursor list {c:?}")))?;
                    Ok(Cursor::new(parse_epoch(epoch)?, parse_id(id)?))
                })
                .collect()
        };
        match outcome.as_str() {
            "fresh" => Ok(Appended::Fresh(parse()?)),
            "repeat" => Ok(Appended::Repeat(parse()?)),
            "conflict" => Ok(Appended::Conflict),
            "quota" => Ok(Appended::QuotaExceeded),
            other => Err(BrokerError::Protocol(format!(
                "unknown append outcome {other:?}"
            ))),
        }
    }

    async fn channel_info(&self, key: &ChannelKey) -> Result<ChannelInfo, BrokerError> {
        let (stream, meta) = self.keys(key);
        let mut con = self.con.clone();
        let ((epoch, last), retained): ((Option<String>, Option<String>), usize) = redis::pipe()
            .cmd("HMGET")
            .arg(&meta)
            .arg("epoch")
            .arg("last")
            .cmd("XLEN")
            .arg(&stream)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let last = match (epoch, last) {
            (Some(e), Some(l)) => Some(Cursor::new(parse_epoch(&e)?, parse_id(&l)?)),
            _ => None,
        };
        Ok(ChannelInfo { last, retained })
    }

    async fn read(
        &self,
        key: &ChannelKey,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<History, BrokerError> {
        let (stream, meta) = self.keys(key);
        let (epoch, gap, entries): (String, String, Vec<Value>) = READ
            .key(&stream)
            .key(&meta)
            .arg(after.map(|c| c.position.to_string()).unwrap_or_default())
            .arg(after.map(|c| c.epoch.0.to_string()).unwrap_or_default())
            .arg(limit.max(1))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        let gap = match gap.as_str() {
            "" => None,
            "truncated" => Some(Gap::HistoryTruncated),
            "invalid" => Some(Gap::InvalidCursor),
            other => return Err(BrokerError::Protocol(format!("unknown gap {other:?}"))),
        };
        // Without a life there is nothing retained, and the epoch names nothing.
        let epoch = if epoch.is_empty() {
            Epoch(0)
        } else {
            parse_epoch(&epoch)?
        };
        let events = entries
            .into_iter()
            .map(parse_entry)
            .collect::<Result<_, _>>()?;
        Ok(History { epoch, gap, events })
    }

    async fn subscribe(&self, key: &ChannelKey) -> Result<Subscription, BrokerError> {
        if let Some(sub) = self.shared.hub.join(key) {
            return Ok(sub);
        }
        if !self.shared.up.load(Ordering::Acquire) {
            return Err(unavailable("pub/sub connection is down"));
        }
        let head = self.head(key).await?;
        let (reply, rx) = oneshot::channel();
        let command = Command::Subscribe {
            key: key.clone(),
            head,
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| unavailable("pub/sub task stopped"))?;
        tokio::time::timeout(COMMAND_TIMEOUT, rx)
            .await
            .map_err(|_| unavailable("timed out subscribing"))?
            .map_err(|_| unavailable("pub/sub connection is down"))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        if self.shared.up.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(unavailable("pub/sub connection is down"))
        }
    }

    async fn end_streams(&self, target: &Target) -> Result<(), BrokerError> {
        redis::cmd("PUBLISH")
            .arg(control_name(&self.prefix))
            .arg(encode_end(target))
            .query_async::<()>(&mut self.con.clone())
            .await
            .map_err(unavailable)
    }

    async fn delete_history(&self, target: &Target) -> Result<(), BrokerError> {
        let mut con = self.con.clone();
        match target {
            Target::Channel(key) => {
                let (stream, meta) = self.keys(key);
                redis::cmd("DEL")
                    .arg(stream)
                    .arg(meta)
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(unavailable)?;
            }
            Target::Tenant(tenant) => {
                let pattern = format!("{}:{{{}/*", glob_escape(&self.prefix), tenant);
                let mut cursor = 0u64;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut con)
                        .await
                        .map_err(unavailable)?;
                    if !keys.is_empty() {
                        redis::cmd("DEL")
                            .arg(keys)
                            .query_async::<()>(&mut con)
                            .await
                            .map_err(unavailable)?;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        self.end_streams(target).await
    }
}

#[async_trait]
impl Presence for RedisBroker {
    async fn acquire_connection(
        &self,
        tenant: &TenantSlug,
        limit: u64,
    ) -> Result<Option<ConnectionPermit>, BrokerError> {
        // Counted locally first: a report of this process's counts that runs while the script
        // is in flight then errs on the side of refusing, never of admitting too many.
        let local = |delta: i64| {
            let mut counts = self
                .shared
                .connections
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(tenant.clone()).or_insert(0);
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                counts.remove(tenant);
            }
        };
        local(1);
        let total: Result<i64, _> = ACQUIRE
            .key(connections_key(&self.prefix, tenant))
            .arg(&self.process)
            .arg(limit)
            .arg(format!("{}:alive:", self.prefix))
            .arg(ALIVE_SECS)
            .invoke_async(&mut self.con.clone())
            .await;
        let total = match total {
            Ok(t) => t,
            Err(e) => {
                local(-1);
                return Err(unavailable(e));
            }
        };
        let Ok(total) = u64::try_from(total) else {
            local(-1);
            return Ok(None);
        };
        let (shared, releases, tenant) =
            (self.shared.clone(), self.releases.clone(), tenant.clone());
        Ok(Some(ConnectionPermit::new(total, move || {
            // Decrement and queue the release under one lock, so that a report sees either
            // both or neither.
            let mut counts = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(&tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&tenant);
                }
            }
            let _ = releases.send(tenant);
        })))
    }

    async fn connections(&self, tenant: &TenantSlug) -> Result<u64, BrokerError> {
        let mut con = self.con.clone();
        let counts: HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(connections_key(&self.prefix, tenant))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let own = {
            let local = self
                .shared
                .connections
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            local.get(tenant).copied().unwrap_or(0)
        };
        Ok(own + self.alive_sum(&mut con, &counts).await?)
    }

    async fn subscribers(&self, key: &ChannelKey) -> Result<usize, BrokerError> {
        let mut con = self.con.clone();
        let counts: HashMap<String, usize> = redis::cmd("HGETALL")
            .arg(subscribers_key(&self.prefix, key))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        // Our own count is read fresh; others' as they last reported, if still alive.
        let counts: HashMap<String, u64> = counts.into_iter().map(|(p, n)| (p, n as u64)).collect();
        let others = self.alive_sum(&mut con, &counts).await?;
        Ok(self.shared.hub.subscribers(key) + others as usize)
    }
}
