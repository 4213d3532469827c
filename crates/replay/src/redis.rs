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
    Gap, History, Idempotency, StoredEvent, Target,
};
use herald_core::{ChannelName, TenantSlug};

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
}

/// Per channel: a hash of process id → that process's subscriber count.
fn subscribers_key(prefix: &str, key: &ChannelKey) -> String {
    format!("{prefix}:{{{key}}}:n")
}

fn pubsub_name(prefix: &str, key: &ChannelKey) -> String {
    format!("{prefix}:ev:{key}")
}

fn connections_key(prefix: &str, tenant: &TenantSlug) -> String {
    format!("{prefix}:conn:{tenant}")
}

fn alive_key(prefix: &str, process: &str) -> String {
    format!("{prefix}:alive:{process}")
}

fn control_name(prefix: &str) -> String {
    format!("{prefix}:control")
}

/// A control order: `end <tenant>` or `end <tenant>/<channel>`.
fn encode_end(target: &Target) -> String {
    match target {
        Target::Channel(key) => format!("end {key}"),
        Target::Tenant(t) => format!("end {t}"),
    }
}

fn parse_end(payload: &[u8]) -> Option<Target> {
    let rest = std::str::from_utf8(payload).ok()?.strip_prefix("end ")?;
    Some(match rest.split_once('/') {
        Some((t, c)) => Target::Channel(ChannelKey::new(
            TenantSlug::parse(t).ok()?,
            ChannelName::parse(c).ok()?,
        )),
        None => Target::Tenant(TenantSlug::parse(rest).ok()?),
    })
}

/// `s` with Redis glob characters escaped, for a SCAN MATCH pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn parse_epoch(s: &str) -> Result<Epoch, BrokerError> {
    s.parse()
        .map(Epoch)
        .map_err(|_| BrokerError::Protocol(format!("bad epoch {s:?}")))
}

fn parse_id(s: &str) -> Result<Position, BrokerError> {
    Position::from_stream_id(s).ok_or_else(|| BrokerError::Protocol(format!("bad stream id {s:?}")))
}

/// Lua helpers shared by both scripts. Stream ids are compared numerically; milliseconds fit a
/// Lua number (a double) exactly.
const LUA_COMMON: &str = r#"
local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function id_lt(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  return am < bm or (am == bm and as < bs)
end
-- Drops entries older than ttl_ms before now_ms; returns the newest dropped id, or nil.
local function trim_age(stream, ttl_ms, now_ms)
  local minid = string.format('%.0f', now_ms - ttl_ms) .. '-0'
  local old = redis.call('XREVRANGE', stream, '(' .. minid, '-', 'COUNT', 1)
  if #old == 0 then return nil end
  redis.call('XTRIM', stream, 'MINID', minid)
  return old[1][1]
end
"#;

/// Appends one event; returns {epoch, id}. `fresh_epoch` starts a new life when the meta hash
/// is missing (never written, expired, or lost with Redis's data).
const LUA_APPEND_ONE: &str = r#"
local function append_one(stream, meta, announce, max_len, ttl_ms, fresh_epoch, etype, data, stream_exp, meta_exp)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    -- A stream without its meta belongs to no known life: start the new life empty.
    epoch = fresh_epoch
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', epoch)
  end
  local id = redis.call('XADD', stream, '*', 'e', etype, 'd', data)
  local trimmed = nil
  max_len = tonumber(max_len)
  local len = redis.call('XLEN', stream)
  if len > max_len then
    local dropped = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - max_len)
    trimmed = dropped[#dropped][1]
    redis.call('XTRIM', stream, 'MAXLEN', max_len)
  end
  local ms = id_parts(id)
  trimmed = trim_age(stream, tonumber(ttl_ms), ms) or trimmed
  if trimmed then redis.call('HSET', meta, 'trimmed', trimmed) end
  redis.call('HSET', meta, 'last', id, 'ttl', ttl_ms)
  redis.call('EXPIRE', stream, stream_exp)
  redis.call('EXPIRE', meta, meta_exp)
  redis.call('PUBLISH', announce, epoch .. '\n' .. id .. '\n' .. etype .. '\n' .. data)
  return {epoch, id}
end
"#;

/// KEYS: idempotency key, daily message counter, then stream and meta of each event. ARGV:
/// fingerprint ('' for none), idempotency TTL (s), event count, daily limit ('' for none), then
/// per event: announce channel, max_len, ttl_ms, fresh epoch, type, data, stream expiry (s),
/// meta expiry (s).
/// Returns {'fresh' | 'repeat' | 'conflict' | 'quota', 'epoch:id,epoch:id,...'}.
const LUA_APPEND: &str = r#"
local idem, fp = KEYS[1], ARGV[1]
if fp ~= '' then
  local prev = redis.call('GET', idem)
  if prev then
    local nl = string.find(prev, '\n', 1, true)
    if nl and string.sub(prev, 1, nl - 1) == fp then
      return {'repeat', string.sub(prev, nl + 1)}
    end
    return {'conflict', ''}
  end
end
local n = tonumber(ARGV[3])
if ARGV[4] ~= '' then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used + n > tonumber(ARGV[4]) then return {'quota', ''} end
  redis.call('INCRBY', KEYS[2], n)
  redis.call('EXPIRE', KEYS[2], 172800)
end
local out = {}
for i = 0, n - 1 do
  local a = 4 + i * 8
  local r = append_one(KEYS[3 + i * 2], KEYS[4 + i * 2], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8])
  out[#out + 1] = r[1] .. ':' .. r[2]
end
local joined = table.concat(out, ',')
if fp ~= '' then redis.call('SET', idem, fp .. '\n' .. joined, 'EX', ARGV[2]) end
return {'fresh', joined}
"#;

/// KEYS: stream, meta. ARGV: after id ('' for the start), the cursor's epoch, limit.
/// Returns {epoch or '', gap ('' | 'truncated' | 'invalid'), entries}.
const LUA_READ: &str = r#"
local stream, meta = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'epoch', 'last', 'trimmed', 'ttl')
local epoch, last, trimmed, ttl = m[1], m[2], m[3], m[4]
local from, gap = ARGV[1], ''
if not epoch then
  if from ~= '' then gap = 'invalid' end
  return {'', gap, {}}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local aged = trim_age(stream, tonumber(ttl), now)
if aged then
  trimmed = aged
  redis.call('HSET', meta, 'trimmed', aged)
end
if redis.call('EXISTS', stream) == 0 then trimmed = last end
if from ~= '' then
  if ARGV[2] ~= epoch or id_lt(last, from) then
    gap, from = 'invalid', ''
  elseif trimmed and id_lt(from, trimmed) then
    gap, from = 'truncated', ''
  end
end
local entries
if from == '' then
  entries = redis.call('XRANGE', stream, '-', '+', 'COUNT', ARGV[3])
else
  entries = redis.call('XRANGE', stream, '(' .. from, '+', 'COUNT', ARGV[3])
end
return {epoch, gap, entries}
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{LUA_COMMON}{LUA_APPEND_ONE}{body}"))
}

/// KEYS: the tenant's connection hash (process id → count). ARGV: this process's id, the limit,
/// the alive-key prefix, the alive TTL (s). Counts of processes that stopped proving they are
/// alive are dropped; the acquiring process proves itself alive here too, so its first counts
/// never wait for its first report. Returns the new total, or -1 when the limit is reached.
const LUA_ACQUIRE: &str = r#"
redis.call('SET', ARGV[3] .. ARGV[1], 1, 'EX', ARGV[4])
local h = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #h, 2 do
  if h[i] == ARGV[1] or redis.call('EXISTS', ARGV[3] .. h[i]) == 1 then
    total = total + tonumber(h[i + 1])
  else
    redis.call('HDEL', KEYS[1], h[i])
  end
end
if total >= tonumber(ARGV[2]) then return -1 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], 86400)
return total + 1
"#;

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(LUA_ACQUIRE));
static APPEND: LazyLock<Script> = LazyLock::new(|| script(LUA_APPEND));
static READ: LazyLock<Script> = LazyLock::new(|| script(LUA_READ));

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

    async fn subscribers(&self, key: &ChannelKey) -> Result<usize, BrokerError> {
        let mut con = self.con.clone();
        let counts: HashMap<String, usize> = redis::cmd("HGETALL")
            .arg(subscribers_key(&self.prefix, key))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        // Our own count is read fresh; others' as they last reported, if still alive.
        let others: Vec<(&String, &usize)> =
            counts.iter().filter(|(p, _)| **p != self.process).collect();
        let mut total = self.shared.hub.subscribers(key);
        if !others.is_empty() {
            let mut check = redis::pipe();
            for (p, _) in &others {
                check.cmd("EXISTS").arg(alive_key(&self.prefix, p));
            }
            let alive: Vec<bool> = check.query_async(&mut con).await.map_err(unavailable)?;
            total += others
                .iter()
                .zip(alive)
                .filter(|(_, a)| *a)
                .map(|((_, n), _)| **n)
                .sum::<usize>();
        }
        Ok(total)
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

/// One XRANGE entry: `[id, [field, value, ...]]` with fields `e` (type) and `d` (data JSON).
fn parse_entry(v: Value) -> Result<StoredEvent, BrokerError> {
    let bad = || BrokerError::Protocol("malformed stream entry".into());
    let Value::Array(mut parts) = v else {
        return Err(bad());
    };
    if parts.len() != 2 {
        return Err(bad());
    }
    let fields = parts.pop().ok_or_else(bad)?;
    let id: String = redis::from_redis_value(parts.pop().ok_or_else(bad)?).map_err(|_| bad())?;
    let fields: HashMap<String, String> = redis::from_redis_value(fields).map_err(|_| bad())?;
    let event_type = EventType::parse_any(fields.get("e").ok_or_else(bad)?).map_err(|_| bad())?;
    let data =
        EventData::from_stored(fields.get("d").ok_or_else(bad)?.clone()).map_err(|_| bad())?;
    Ok(StoredEvent {
        position: parse_id(&id)?,
        event: Event { event_type, data },
    })
}

/// An announcement: `epoch \n id \n type \n data`.
fn parse_announcement(payload: &[u8]) -> Option<(Cursor, Event)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(4, '\n');
    let epoch = parse_epoch(parts.next()?).ok()?;
    let position = parse_id(parts.next()?).ok()?;
    let event_type = EventType::parse_any(parts.next()?).ok()?;
    let data = EventData::from_stored(parts.next()?.to_owned()).ok()?;
    Some((Cursor::new(epoch, position), Event { event_type, data }))
}

/// The one task that owns the pub/sub connection.
struct PubSubActor {
    client: redis::Client,
    /// Connections given back since they were last written.
    released: mpsc::UnboundedReceiver<TenantSlug>,
    con: ConnectionManager,
    process: String,
    /// The counts last written for this process, so only changes are written.
    reported: HashMap<ChannelKey, usize>,
    /// Tenants whose connection count this process last reported as non-zero.
    reported_tenants: Vec<TenantSlug>,
    shared: Arc<Shared>,
    prefix: String,
    commands: mpsc::Receiver<Command>,
    /// Channels subscribed on the current connection, by announce name.
    subscribed: HashMap<String, ChannelKey>,
}

impl PubSubActor {
    async fn run(mut self, first: (PubSubSink, PubSubStream)) {
        let mut connection = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            let (sink, stream) = match connection.take() {
                Some(c) => c,
                None => match self.reconnect().await {
                    Some(c) => {
                        backoff = Duration::from_millis(100);
                        c
                    }
                    None => {
                        self.refuse_pending();
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                },
            };
            self.shared.up.store(true, Ordering::Release);
            if self.serve(sink, stream).await.is_break() {
                return;
            }
            self.shared.up.store(false, Ordering::Release);
            tracing::warn!("redis pub/sub connection lost; reconnecting");
        }
    }

    /// Connects again and restores every subscription the hub still needs; subscribers then
    /// resync from history, since announcements may have been lost meanwhile.
    async fn reconnect(&mut self) -> Option<(PubSubSink, PubSubStream)> {
        let pubsub = tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
            .await
            .ok()?
            .ok()?;
        let (mut sink, stream) = pubsub.split();
        tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(control_name(&self.prefix)))
            .await
            .ok()?
            .ok()?;
        self.subscribed.clear();
        let keys = self.shared.hub.keys();
        if !keys.is_empty() {
            let names: Vec<String> = keys.iter().map(|k| pubsub_name(&self.prefix, k)).collect();
            tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&names))
                .await
                .ok()?
                .ok()?;
            self.subscribed.extend(names.into_iter().zip(keys));
        }
        tracing::info!(
            channels = self.subscribed.len(),
            "redis pub/sub reconnected"
        );
        self.shared.hub.resync_all();
        Some((sink, stream))
    }

    /// Answers queued subscribes while the connection is down: dropping the reply tells the
    /// caller the broker is unavailable.
    fn refuse_pending(&mut self) {
        while let Ok(Command::Subscribe { .. }) = self.commands.try_recv() {}
    }

    async fn serve(
        &mut self,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
    ) -> std::ops::ControlFlow<()> {
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        let mut report = tokio::time::interval(REPORT_EVERY);
        loop {
            tokio::select! {
                Some(first) = self.released.recv() => self.write_releases(first).await,
                _ = report.tick() => {
                    if let Err(e) = tokio::time::timeout(COMMAND_TIMEOUT, self.report()).await.map_err(unavailable).and_then(|r| r) {
                        tracing::debug!(error = %e, "cannot report subscriber counts");
                    }
                }
                msg = stream.next() => {
                    let Some(msg) = msg else { return std::ops::ControlFlow::Continue(()) };
                    self.announce(msg.get_channel_name(), msg.get_payload_bytes());
                }
                command = self.commands.recv() => {
                    let Some(command) = command else { return std::ops::ControlFlow::Break(()) };
                    if self.subscribe(&mut sink, command).await.is_err() {
                        return std::ops::ControlFlow::Continue(());
                    }
                }
                _ = sweep.tick() => {
                    // Unsubscribe whatever the hub no longer follows: idle channels, and
                    // channels whose streams were ended.
                    self.shared.hub.sweep();
                    let followed: std::collections::HashSet<ChannelKey> =
                        self.shared.hub.keys().into_iter().collect();
                    let idle: Vec<String> = self
                        .subscribed
                        .iter()
                        .filter(|(_, key)| !followed.contains(*key))
                        .map(|(name, _)| name.clone())
                        .collect();
                    for name in &idle {
                        self.subscribed.remove(name);
                    }
                    if !idle.is_empty()
                        && tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(&idle)).await.is_err()
                    {
                        return std::ops::ControlFlow::Continue(());
                    }
                }
            }
        }
    }

    /// Subscribes the channels of this and every other queued command in one round trip, then
    /// joins each caller to the hub: after the subscription is confirmed, and before any
    /// further announcement is read, so none can fall between the two.
    async fn subscribe(
        &mut self,
        sink: &mut PubSubSink,
        first: Command,
    ) -> Result<(), BrokerError> {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match self.commands.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut names = Vec::new();
        for Command::Subscribe { key, .. } in &batch {
            let name = pubsub_name(&self.prefix, key);
            if !self.subscribed.contains_key(&name) && !names.contains(&name) {
                names.push(name);
            }
        }
        if !names.is_empty() {
            tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&names))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
        }
        for Command::Subscribe { key, head, reply } in batch {
            self.subscribed
                .insert(pubsub_name(&self.prefix, &key), key.clone());
            let _ = reply.send(self.shared.hub.join_or_create(&key, head, false));
        }
        Ok(())
    }

    /// Gives released connections back (and whatever queued up behind the first). One that
    /// cannot be written is healed by the next report.
    async fn write_releases(&mut self, first: TenantSlug) {
        let mut pipe = redis::pipe();
        let mut next = Some(first);
        while let Some(t) = next {
            pipe.cmd("HINCRBY")
                .arg(connections_key(&self.prefix, &t))
                .arg(&self.process)
                .arg(-1)
                .ignore();
            next = self.released.try_recv().ok();
        }
        if let Err(e) = tokio::time::timeout(
            COMMAND_TIMEOUT,
            pipe.query_async::<()>(&mut self.con.clone()),
        )
        .await
        {
            tracing::debug!(error = %e, "cannot release connections; the next report heals it");
        }
    }

    /// Proves this process alive and writes the subscriber counts that changed, and this
    /// process's exact connection counts.
    async fn report(&mut self) -> Result<(), BrokerError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(alive_key(&self.prefix, &self.process))
            .arg(1)
            .arg("EX")
            .arg(ALIVE_SECS)
            .ignore();
        let now: HashMap<ChannelKey, usize> = self
            .shared
            .hub
            .counts()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        for (key, n) in &now {
            if self.reported.get(key) != Some(n) {
                let k = subscribers_key(&self.prefix, key);
                pipe.cmd("HSET").arg(&k).arg(&self.process).arg(*n).ignore();
                pipe.cmd("EXPIRE").arg(&k).arg(86_400).ignore();
            }
        }
        for key in self.reported.keys().filter(|k| !now.contains_key(*k)) {
            pipe.cmd("HDEL")
                .arg(subscribers_key(&self.prefix, key))
                .arg(&self.process)
                .ignore();
        }
        // This process's exact connection counts, healing any release that was lost. Releases
        // queued until now are in these counts: drop them under the same lock, so none is
        // applied twice.
        let connections: Vec<(TenantSlug, u64)> = {
            let counts = self
                .shared
                .connections
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            while self.released.try_recv().is_ok() {}
            counts.iter().map(|(t, n)| (t.clone(), *n)).collect()
        };
        for (tenant, n) in &connections {
            pipe.cmd("HSET")
                .arg(connections_key(&self.prefix, tenant))
                .arg(&self.process)
                .arg(*n)
                .ignore();
        }
        for tenant in &self.reported_tenants {
            if !connections.iter().any(|(t, _)| t == tenant) {
                pipe.cmd("HDEL")
                    .arg(connections_key(&self.prefix, tenant))
                    .arg(&self.process)
                    .ignore();
            }
        }
        pipe.query_async::<()>(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        self.reported = now;
        self.reported_tenants = connections.into_iter().map(|(t, _)| t).collect();
        Ok(())
    }

    fn announce(&self, name: &str, payload: &[u8]) {
        let Some(key) = self.subscribed.get(name) else {
            if name == control_name(&self.prefix) {
                match parse_end(payload) {
                    Some(target) => self.shared.hub.close(&target),
                    None => tracing::warn!("unreadable control order ignored"),
                }
            }
            return;
        };
        match parse_announcement(payload) {
            Some((cursor, event)) => self
                .shared
                .hub
                .publish(key, LiveEvent::encode(cursor, &event)),
            None => tracing::warn!(channel = %key, "unreadable announcement ignored"),
        }
    }
}
