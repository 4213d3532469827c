//! The Redis broker: one stream per channel for history, pub/sub for fan-out, on one Redis or
//! on Redis Cluster. `README.md` next to this file is the key layout: every key, its slot, and
//! how an append that touches several slots stays whole on a cluster.
//!
//! Appending is one Lua script per slot, so an event is either stored *and* announced, or
//! neither. The script also trims the stream itself (by length and by age) so that it can record
//! the newest id it dropped: with that, a cursor is placed exactly — continuous, truncated, or
//! unknown — without guessing from `MAXLEN ~`. The `epoch` is drawn when the meta hash is first
//! written; if Redis loses the data, the next append starts a new life with a new epoch.
//!
//! Fan-out is driven by a single task ([`PubSubActor`]) so subscribes, unsubscribes and
//! reconnects never race one another; when announcements may have been lost, live subscribers
//! are told to [`Live::Resync`](crate::Live::Resync) from history. Counts are written by another
//! task ([`report::Reporter`]).

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
use tracing::Instrument;

use crate::hub::{Hub, LiveEvent, Subscription};
use crate::trace::TraceParent;
use crate::{
    Append, Appended, Broker, BrokerError, ChannelInfo, ChannelKey, ConnectionPermit, DailyQuota,
    Gap, History, Idempotency, Presence, StoredEvent, Target,
};
use herald_core::{ChannelName, TenantSlug};

mod cluster;
mod conn;
mod keys;
mod pubsub;
mod report;
mod scripts;
mod wire;

use conn::Con;
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
    /// One Redis's URL; with `cluster`, one or more seed nodes of the cluster, comma-separated.
    pub url: String,
    /// Every key and pub/sub channel starts with `<prefix>:`.
    pub prefix: String,
    /// Whether `url` names Redis Cluster seed nodes.
    pub cluster: bool,
}

/// A broker on Redis, shared by every edge process of a cluster.
pub struct RedisBroker {
    con: Con,
    /// Connection releases, written back by the report task.
    releases: mpsc::UnboundedSender<TenantSlug>,
    /// This process's id in subscriber counts.
    process: String,
    keys: Keys,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

struct Shared {
    hub: Hub,
    /// This process's open connections per tenant: the truth its reports write.
    connections: std::sync::Mutex<HashMap<TenantSlug, u64>>,
    /// Whether the pub/sub connection is up; new subscriptions are refused while it is not.
    up: AtomicBool,
    /// Acquires hold it shared while they count, a report exclusively while it snapshots and
    /// writes this process's counts: a report's snapshot never lands after an acquire it did
    /// not see (which would undercount, and admit one too many).
    counting: tokio::sync::RwLock<()>,
    stats: crate::BrokerStats,
    /// History reads in flight. Each answer can be a page of up to [`crate::PAGE_BYTES`], and
    /// Redis serves them one at a time: ten thousand subscribers resuming at once would queue
    /// that much data behind one connection, and the last reads would pass the command timeout
    /// (a 503 to a client that asked for nothing unreasonable). Reads past the bound wait here,
    /// outside the timeout, for at most [`READ_QUEUE_TIMEOUT`].
    reads: tokio::sync::Semaphore,
}

/// History reads sent to Redis at once, per process.
const READS_IN_FLIGHT: usize = 32;
/// How long a history read may wait for its turn before it is refused as unavailable.
const READ_QUEUE_TIMEOUT: Duration = Duration::from_secs(20);

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
    /// Connects, checks that Redis answers, and starts the pub/sub and report tasks. Fails
    /// within about ten seconds when Redis cannot be reached.
    pub async fn connect(config: RedisConfig) -> Result<Arc<Self>, BrokerError> {
        let keys = Keys {
            prefix: config.prefix.clone(),
            cluster: config.cluster,
        };
        let (con, subscriber, source, client) = if config.cluster {
            let (con, subscriber, source) = cluster::connect(&config.url, &keys).await?;
            (con, subscriber, source, None)
        } else {
            let (con, subscriber, source, client) = connect_single(&config.url, &keys).await?;
            (con, subscriber, source, Some(client))
        };
        let shared = Arc::new(Shared {
            connections: std::sync::Mutex::default(),
            hub: Hub::new(crate::hub::HUB_CAPACITY),
            up: AtomicBool::new(true),
            counting: tokio::sync::RwLock::new(()),
            stats: crate::BrokerStats::default(),
            reads: tokio::sync::Semaphore::new(READS_IN_FLIGHT),
        });
        let (commands, rx) = mpsc::channel(1024);
        let (releases, released) = mpsc::unbounded_channel();
        let process = format!("{:016x}", rand::random::<u64>());
        let actor = PubSubActor::new(client, shared.clone(), keys.clone(), rx);
        tokio::spawn(actor.run((subscriber, source)));
        let reporter = report::Reporter {
            con: con.clone(),
            keys: keys.clone(),
            process: process.clone(),
            shared: shared.clone(),
            released,
            reported: HashMap::new(),
            reported_tenants: Vec::new(),
        };
        tokio::spawn(reporter.run());
        Ok(Arc::new(Self {
            releases,
            con,
            process,
            keys,
            shared,
            commands,
        }))
    }

    /// One page of a channel's history, in one script call.
    async fn read_page(
        &self,
        key: &ChannelKey,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<History, BrokerError> {
        let (stream, meta) = self.keys.channel(key);
        let (epoch, gap, entries, full): (String, String, Vec<Value>, i64) = READ
            .key(&stream)
            .key(&meta)
            .arg(after.map(|c| c.position.to_string()).unwrap_or_default())
            .arg(after.map(|c| c.epoch.0.to_string()).unwrap_or_default())
            .arg(limit.max(1))
            .arg(crate::PAGE_BYTES)
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
        let events = entries.iter().map(parse_entry).collect::<Result<_, _>>()?;
        Ok(History {
            epoch,
            gap,
            events,
            full: full == 1,
        })
    }

    /// The channel's newest cursor, read before subscribing so a joiner knows where live starts.
    async fn head(&self, key: &ChannelKey) -> Result<Option<Cursor>, BrokerError> {
        let (_, meta) = self.keys.channel(key);
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
    async fn alive_sum(&self, counts: &HashMap<String, u64>) -> Result<u64, BrokerError> {
        let others: Vec<(&String, &u64)> = counts
            .iter()
            .filter(|(p, _)| **p != self.process && !p.starts_with('@'))
            .collect();
        if others.is_empty() {
            return Ok(0);
        }
        let checks = others
            .iter()
            .map(|(p, _)| {
                let mut cmd = redis::cmd("EXISTS");
                cmd.arg(self.keys.alive(p));
                cmd
            })
            .collect();
        let alive: Vec<bool> = self.con.each(checks).await.map_err(unavailable)?;
        Ok(others
            .iter()
            .zip(alive)
            .filter(|(_, a)| *a)
            .map(|((_, n), _)| **n)
            .sum())
    }

    /// The arguments of `append_one` for one event, after its stream and meta keys; `trace` is
    /// the context its announcement carries to the processes that fan it out.
    fn append_args(
        &self,
        invocation: &mut redis::ScriptInvocation<'_>,
        a: &Append,
        trace: Option<TraceParent>,
    ) {
        let ttl_secs = a.retention.ttl.as_secs().max(1);
        invocation
            .arg(self.keys.announce(&a.channel))
            .arg(a.retention.max_len.max(1))
            .arg(a.retention.ttl.as_millis() as u64)
            .arg(Epoch::random().0)
            .arg(a.event.event_type.as_str())
            .arg(a.event.data.as_json())
            .arg(ttl_secs)
            .arg(ttl_secs + META_GRACE_SECS);
        match trace {
            Some(t) => invocation.arg(t.to_string()),
            None => invocation.arg(""),
        };
    }

    /// The whole append in one script, on one Redis.
    async fn append_single(
        &self,
        batch: &[Append],
        idempotency: Option<&Idempotency>,
        quota: Option<&DailyQuota>,
    ) -> Result<Appended, BrokerError> {
        let span = tracing::info_span!("redis.script", script = "append", events = batch.len());
        // The announcements carry the script's own span: the fan-out on every edge hangs under
        // the step that announced it.
        let trace = span.in_scope(TraceParent::current);
        let mut invocation = APPEND.prepare_invoke();
        match idempotency {
            Some(i) => invocation
                .key(self.keys.idempotency(&i.tenant, &i.key))
                .arg(&i.fingerprint),
            None => invocation
                .key(format!("{}:idem:-", self.keys.prefix))
                .arg(""),
        };
        match quota {
            Some(q) => invocation.key(self.keys.quota(&q.tenant, q.day)),
            None => invocation.key(format!("{}:msgs:-", self.keys.prefix)),
        };
        invocation
            .arg(crate::IDEMPOTENCY_TTL.as_secs())
            .arg(batch.len())
            .arg(quota.map(|q| q.limit.to_string()).unwrap_or_default());
        for a in batch {
            let (stream, meta) = self.keys.channel(&a.channel);
            invocation.key(stream).key(meta);
            self.append_args(&mut invocation, a, trace);
        }
        let (outcome, cursors): (String, String) = invocation
            .invoke_async(&mut self.con.clone())
            .instrument(span)
            .await
            .map_err(unavailable)?;
        match outcome.as_str() {
            "fresh" => Ok(Appended::Fresh(parse_cursors(&cursors)?)),
            "repeat" => Ok(Appended::Repeat(parse_cursors(&cursors)?)),
            "conflict" => Ok(Appended::Conflict),
            "quota" => Ok(Appended::QuotaExceeded),
            other => Err(BrokerError::Protocol(format!(
                "unknown append outcome {other:?}"
            ))),
        }
    }
}

/// `epoch:id,epoch:id,...`, as the append scripts answer.
fn parse_cursors(cursors: &str) -> Result<Vec<Cursor>, BrokerError> {
    cursors
        .split(',')
        .map(|c| {
            let (epoch, id) = c
                .split_once(':')
                .ok_or_else(|| BrokerError::Protocol(format!("bad cursor list {c:?}")))?;
            Ok(Cursor::new(parse_epoch(epoch)?, parse_id(id)?))
        })
        .collect()
}

/// One Redis: a connection manager for commands, one pub/sub connection for fan-out.
async fn connect_single(
    url: &str,
    keys: &Keys,
) -> Result<(Con, pubsub::Subscriber, pubsub::Source, redis::Client), BrokerError> {
    let client = redis::Client::open(url).map_err(unavailable)?;
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
    sink.subscribe(keys.control()).await.map_err(unavailable)?;
    Ok((
        Con::Single(con),
        pubsub::Subscriber::Single(sink),
        pubsub::Source::Single(stream),
        client,
    ))
}

#[async_trait]
impl Broker for RedisBroker {
    async fn append_batch(
        &self,
        batch: &[Append],
        idempotency: Option<&Idempotency>,
        quota: Option<&DailyQuota>,
    ) -> Result<Appended, BrokerError> {
        let span = crate::append_span("redis", batch);
        let started = std::time::Instant::now();
        let appended = if self.keys.cluster {
            self.append_cluster(batch, idempotency, quota)
                .instrument(span)
                .await
        } else {
            self.append_single(batch, idempotency, quota)
                .instrument(span)
                .await
        };
        self.shared.stats.round_trips.observe(started.elapsed());
        appended
    }

    async fn channel_info(&self, key: &ChannelKey) -> Result<ChannelInfo, BrokerError> {
        let (stream, meta) = self.keys.channel(key);
        // Both keys are on the channel's slot: one pipeline even on a cluster.
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
        let history = async {
            let _turn = tokio::time::timeout(READ_QUEUE_TIMEOUT, self.shared.reads.acquire())
                .await
                .map_err(|_| unavailable("history reads queued past their timeout"))?
                .map_err(unavailable)?;
            let started = std::time::Instant::now();
            let history = self.read_page(key, after, limit).await;
            self.shared.stats.round_trips.observe(started.elapsed());
            history
        }
        .await;
        // A read refused in the queue is a failed read too.
        self.shared.stats.read(&history);
        history
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

    fn prime(&self, channel: &ChannelKey, start: Option<Cursor>, generation: u64) {
        self.shared.hub.prime(channel, start, generation);
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

    fn stats(&self) -> &crate::BrokerStats {
        &self.shared.stats
    }

    async fn end_streams(&self, target: &Target) -> Result<(), BrokerError> {
        redis::cmd("PUBLISH")
            .arg(self.keys.control())
            .arg(encode_order(Order::End(target.clone())))
            .query_async::<()>(&mut self.con.clone())
            .await
            .map_err(unavailable)
    }

    async fn recheck_streams(&self, target: &Target) -> Result<(), BrokerError> {
        redis::cmd("PUBLISH")
            .arg(self.keys.control())
            .arg(encode_order(Order::Recheck(target.clone())))
            .query_async::<()>(&mut self.con.clone())
            .await
            .map_err(unavailable)
    }

    fn rechecks(&self) -> tokio::sync::broadcast::Receiver<Target> {
        self.shared.hub.rechecks()
    }

    async fn delete_history(&self, target: &Target) -> Result<(), BrokerError> {
        let mut con = self.con.clone();
        match target {
            Target::Channel(key) => {
                let (stream, meta) = self.keys.channel(key);
                redis::cmd("DEL")
                    .arg(stream)
                    .arg(meta)
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(unavailable)?;
            }
            Target::Tenant(tenant) => {
                let pattern = self.keys.tenant_channels_pattern(tenant);
                match &self.con {
                    Con::Single(_) => delete_matching(&mut con, None, &pattern).await?,
                    Con::Cluster(_) => {
                        for node in cluster::masters(&mut con).await? {
                            delete_matching(&mut con, Some(node), &pattern).await?;
                        }
                    }
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
        let _counting = self.shared.counting.read().await;
        local(1);
        let total: Result<i64, _> = if self.keys.cluster {
            ACQUIRE_TAGGED
                .key(self.keys.connections(tenant))
                .arg(&self.process)
                .arg(limit)
                .arg(ALIVE_SECS)
                .invoke_async(&mut self.con.clone())
                .await
        } else {
            ACQUIRE
                .key(self.keys.connections(tenant))
                .arg(&self.process)
                .arg(limit)
                .arg(self.keys.alive_prefix())
                .arg(ALIVE_SECS)
                .invoke_async(&mut self.con.clone())
                .await
        };
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
        let counts: HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(self.keys.connections(tenant))
            .query_async(&mut self.con.clone())
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
        Ok(own + self.alive_sum(&counts).await?)
    }

    async fn subscribers(&self, key: &ChannelKey) -> Result<usize, BrokerError> {
        let counts: HashMap<String, usize> = redis::cmd("HGETALL")
            .arg(self.keys.subscribers(key))
            .query_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        // Our own count is read fresh; others' as they last reported, if still alive.
        let counts: HashMap<String, u64> = counts.into_iter().map(|(p, n)| (p, n as u64)).collect();
        let others = self.alive_sum(&counts).await?;
        Ok(self.shared.hub.subscribers(key) + others as usize)
    }
}

/// Deletes every key matching `pattern`, on one Redis or on one cluster master (`node`); a
/// cluster deletes key by key, since the keys of a page may be on several slots.
async fn delete_matching(
    con: &mut Con,
    node: Option<cluster::Node>,
    pattern: &str,
) -> Result<(), BrokerError> {
    let mut cursor = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, keys): (u64, Vec<String>) = match &node {
            None => scan.query_async(con).await,
            Some(node) => cluster::on_node(con, scan, node).await,
        }
        .map_err(unavailable)?;
        if !keys.is_empty() {
            let deletes = match node {
                None => {
                    let mut del = redis::cmd("DEL");
                    del.arg(keys);
                    vec![del]
                }
                Some(_) => keys
                    .into_iter()
                    .map(|k| {
                        let mut del = redis::cmd("DEL");
                        del.arg(k);
                        del
                    })
                    .collect(),
            };
            con.each::<Value>(deletes).await.map_err(unavailable)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
