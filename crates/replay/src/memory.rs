//! The in-process broker: history in memory, fan-out through the node's hub. For one node only;
//! history is lost on restart. Each channel's history draws a random epoch when it begins, so a
//! cursor from before a restart (or from another channel) is never placed in this history.
//!
//! Each channel has its own lock, held while an event is appended *and* handed to the hub, and
//! while a subscriber joins, so a joiner's start is exactly the channel's head: no event can be
//! between the two. Nothing else on the publish path is node-wide: the channel map is read-locked,
//! a daily quota is an atomic counter, and an idempotency key locks only its own shard of the
//! remembered keys, so publishes to different channels never wait for each other.
//!
//! Memory is bounded by bytes, not only by counts: all channels' histories together by
//! [`Budgets::history_bytes`], the remembered idempotency keys by [`Budgets::idempotency_bytes`],
//! and a history page by [`crate::PAGE_BYTES`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_core::{Cursor, Epoch, Event, Position};

use crate::hub::{Hub, LiveEvent, Subscription};
use crate::BrokerStats;
use herald_core::TenantSlug;

use crate::{
    Append, Appended, Broker, BrokerError, ChannelInfo, ChannelKey, ConnectionPermit, DailyQuota,
    Gap, History, Idempotency, Presence, Retention, StoredEvent, Target, IDEMPOTENCY_TTL,
    PAGE_BYTES,
};

/// The byte bounds of an in-process broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// All channels' retained events together (data, type and bookkeeping). Over it, an append
    /// first drops the oldest events of its own channel, then the oldest of the others; a
    /// subscriber that needed them is told `history_truncated`, as for any trimmed history.
    pub history_bytes: usize,
    /// Remembered idempotency keys. Over it, the oldest keys are forgotten before their 24 hours:
    /// a repeat of a forgotten key appends again.
    pub idempotency_bytes: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            history_bytes: 256 << 20,
            idempotency_bytes: 64 << 20,
        }
    }
}

/// The largest fan-out (subscribers of this process times events) after which an append gives
/// its turn to the woken subscribers before it answers. Beyond it the subscribers' writes take
/// long enough that the publisher's answer, and its next request, should not wait for them all;
/// a channel that large batches its events instead.
const YIELD_FANOUT: usize = 64;

/// Shards of the remembered idempotency keys: a keyed publish locks one of them.
const KEY_SHARDS: usize = 16;

/// What one stored event costs beyond its data and type: the deque slot, its `Arc` and type.
const EVENT_OVERHEAD: usize = 96;

/// What one remembered key costs beyond its strings and cursors: two table slots and a deque one.
const KEY_OVERHEAD: usize = 160;

/// A single-node broker that keeps every channel's history in memory.
pub struct InProcessBroker {
    /// Idempotency keys: `(tenant, key)` → what was asked and answered, in shards by key.
    keys: Box<[Mutex<KeyShard>]>,
    key_hasher: RandomState,
    /// Messages per tenant and UTC day.
    daily: RwLock<HashMap<(TenantSlug, i64), Arc<AtomicU64>>>,
    /// Open connections per tenant.
    connections: Arc<Mutex<HashMap<TenantSlug, u64>>>,
    channels: RwLock<HashMap<ChannelKey, Arc<Mutex<ChannelState>>>>,
    /// Bytes retained by every channel's history together.
    history: Arc<HistoryBudget>,
    hub: Hub,
    stats: BrokerStats,
}

struct HistoryBudget {
    used: AtomicUsize,
    limit: usize,
}

impl HistoryBudget {
    fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit
    }
}

/// An idempotent append: its fingerprint, its cursors, and when it happened.
struct Remembered {
    fingerprint: String,
    cursors: Vec<Cursor>,
    at: Instant,
}

/// Some of the remembered keys, oldest first in `order`, which also drives their expiry.
#[derive(Default)]
struct KeyShard {
    map: HashMap<(String, String), Remembered>,
    order: VecDeque<(Instant, (String, String))>,
    bytes: usize,
    limit: usize,
}

impl KeyShard {
    fn cost(key: &(String, String), r: &Remembered) -> usize {
        KEY_OVERHEAD
            + 2 * (key.0.len() + key.1.len())
            + r.fingerprint.len()
            + r.cursors.len() * std::mem::size_of::<Cursor>()
    }

    fn get(&self, key: &(String, String)) -> Option<&Remembered> {
        self.map
            .get(key)
            .filter(|r| r.at.elapsed() < IDEMPOTENCY_TTL)
    }

    fn insert(&mut self, key: (String, String), r: Remembered) {
        self.bytes += Self::cost(&key, &r);
        self.order.push_back((r.at, key.clone()));
        if let Some(old) = self.map.insert(key.clone(), r) {
            self.bytes -= Self::cost(&key, &old);
        }
        self.forget_old();
    }

    /// Forgets keys past their time, and the oldest ones while over the budget.
    fn forget_old(&mut self) {
        while let Some((at, _)) = self.order.front() {
            if at.elapsed() < IDEMPOTENCY_TTL && self.bytes <= self.limit {
                return;
            }
            let (at, key) = self.order.pop_front().expect("the front exists");
            // A key used again after it expired has a newer entry; only its own goes.
            if self.map.get(&key).is_some_and(|r| r.at == at) {
                let r = self.map.remove(&key).expect("just seen");
                self.bytes -= Self::cost(&key, &r);
            }
        }
    }
}

struct ChannelState {
    epoch: Epoch,
    events: VecDeque<StoredEvent>,
    /// The newest position ever appended in this life.
    head: Option<Position>,
    /// The newest position dropped by trimming: a cursor before it has missed events.
    trimmed: Option<Position>,
    retention: Retention,
    /// What `events` cost, counted in `budget` too.
    bytes: usize,
    budget: Arc<HistoryBudget>,
}

fn event_bytes(e: &Event) -> usize {
    EVENT_OVERHEAD + e.data.as_json().len() + e.event_type.as_str().len()
}

impl InProcessBroker {
    /// The append itself, which never waits: it runs inside its span, and the fan-out, which
    /// happens within it, hangs under it. Answers how many subscribers of this process the
    /// fan-out handed events to (one per subscriber and event).
    fn append_now(
        &self,
        batch: &[Append],
        idempotency: Option<&Idempotency>,
        quota: Option<&DailyQuota>,
    ) -> (Appended, usize) {
        let span = crate::append_span("memory", batch);
        let _in = span.enter();
        let trace = crate::trace::TraceParent::current();
        // Lock order: the key's shard, then channels sorted by key, so batches never deadlock.
        // The shard is held to the end, so racing repeats of one key append once.
        let idem_key = idempotency.map(|i| (i.tenant.to_string(), i.key.clone()));
        let mut shard = idem_key.as_ref().map(|k| self.key_shard(k));
        if let (Some(i), Some(k), Some(shard)) = (idempotency, &idem_key, &shard) {
            if let Some(r) = shard.get(k) {
                let answer = if r.fingerprint == i.fingerprint {
                    Appended::Repeat(r.cursors.clone())
                } else {
                    Appended::Conflict
                };
                return (answer, 0);
            }
        }
        if let Some(q) = quota {
            if !self.charge(q, batch.len() as u64) {
                return (Appended::QuotaExceeded, 0);
            }
        }
        let mut channels: Vec<(&ChannelKey, Arc<Mutex<ChannelState>>)> = Vec::new();
        for a in batch {
            if !channels.iter().any(|(k, _)| *k == &a.channel) {
                channels.push((&a.channel, self.channel(&a.channel)));
            }
        }
        channels.sort_by(|a, b| (&a.0.tenant, &a.0.channel).cmp(&(&b.0.tenant, &b.0.channel)));
        let mut guards: Vec<_> = channels.iter().map(|(_, c)| lock(c)).collect();
        let now = now_ms();
        let mut cursors = Vec::with_capacity(batch.len());
        let mut reached = 0;
        for a in batch {
            let i = channels
                .iter()
                .position(|(k, _)| *k == &a.channel)
                .expect("every channel of the batch is locked");
            let state = &mut guards[i];
            let position = state.next_position(now);
            state.retention = a.retention;
            state.head = Some(position);
            state.push(StoredEvent {
                position,
                event: a.event.clone(),
            });
            while state.events.len() > a.retention.max_len as usize {
                state.drop_front();
            }
            state.expire(now);
            // Over the node's budget, this channel pays first (its newest event stays).
            while state.events.len() > 1 && self.history.over() {
                state.drop_front();
            }
            let cursor = Cursor::new(state.epoch, position);
            // Still under the channel's lock, so the hub sees its events in order.
            reached += crate::trace::fanout(&a.channel, cursor, trace, || {
                self.hub
                    .publish(&a.channel, LiveEvent::encode(cursor, &a.event))
            });
            cursors.push(cursor);
        }
        drop(guards);
        if self.history.over() {
            self.evict_oldest();
        }
        if let (Some(i), Some(k), Some(shard)) = (idempotency, idem_key, shard.as_mut()) {
            shard.insert(
                k,
                Remembered {
                    fingerprint: i.fingerprint.clone(),
                    cursors: cursors.clone(),
                    at: Instant::now(),
                },
            );
        }
        (Appended::Fresh(cursors), reached)
    }

    /// A broker with the default [`Budgets`]; see [`InProcessBroker::with_budgets`].
    pub fn new() -> Arc<Self> {
        Self::with_budgets(Budgets::default())
    }

    /// A broker with a fresh epoch; also starts a background sweep that drops channels whose
    /// history has expired and that nobody follows.
    pub fn with_budgets(budgets: Budgets) -> Arc<Self> {
        let per_shard = budgets.idempotency_bytes / KEY_SHARDS;
        let broker = Arc::new(Self {
            keys: (0..KEY_SHARDS)
                .map(|_| {
                    Mutex::new(KeyShard {
                        limit: per_shard,
                        ..KeyShard::default()
                    })
                })
                .collect(),
            key_hasher: RandomState::new(),
            daily: RwLock::default(),
            connections: Arc::default(),
            channels: RwLock::default(),
            history: Arc::new(HistoryBudget {
                used: AtomicUsize::new(0),
                limit: budgets.history_bytes,
            }),
            hub: Hub::new(crate::hub::HUB_CAPACITY),
            stats: BrokerStats::default(),
        });
        tokio::spawn(sweep(Arc::downgrade(&broker)));
        broker
    }

    /// Bytes held by every channel's history, as counted against [`Budgets::history_bytes`].
    pub fn history_bytes(&self) -> usize {
        self.history.used.load(Ordering::Relaxed)
    }

    /// Bytes held by remembered idempotency keys, as counted against
    /// [`Budgets::idempotency_bytes`].
    pub fn idempotency_bytes(&self) -> usize {
        self.keys.iter().map(|s| lock(s).bytes).sum()
    }

    fn channel(&self, key: &ChannelKey) -> Arc<Mutex<ChannelState>> {
        if let Some(c) = self.existing(key) {
            return c;
        }
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Mutex::new(ChannelState::new(self.history.clone()))))
            .clone()
    }

    fn existing(&self, key: &ChannelKey) -> Option<Arc<Mutex<ChannelState>>> {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        channels.get(key).cloned()
    }

    fn key_shard(&self, key: &(String, String)) -> MutexGuard<'_, KeyShard> {
        let i = self.key_hasher.hash_one(key) as usize % KEY_SHARDS;
        lock(&self.keys[i])
    }

    /// Takes `n` messages of the tenant's day, unless that would go over its limit.
    fn charge(&self, q: &DailyQuota, n: u64) -> bool {
        let key = (q.tenant.clone(), q.day);
        let counter = {
            let daily = self.daily.read().unwrap_or_else(|e| e.into_inner());
            daily.get(&key).cloned()
        };
        let counter = counter.unwrap_or_else(|| {
            let mut daily = self.daily.write().unwrap_or_else(|e| e.into_inner());
            daily.entry(key).or_default().clone()
        });
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= q.limit).then_some(used + n)
            })
            .is_ok()
    }

    /// While the histories together are over budget, drops the oldest retained event of all
    /// channels but the ones locked right now (by this append or another).
    fn evict_oldest(&self) {
        while self.history.over() {
            let channels: Vec<Arc<Mutex<ChannelState>>> = self
                .channels
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            let oldest = channels
                .iter()
                .filter_map(|c| {
                    let state = c.try_lock().ok()?;
                    let front = state.events.front()?.position;
                    Some((front, c))
                })
                .min_by_key(|(front, _)| *front);
            let Some((_, channel)) = oldest else { return };
            let Ok(mut state) = channel.try_lock() else {
                continue;
            };
            state.drop_front();
        }
    }

    fn sweep_once(&self) {
        self.hub.sweep();
        for shard in self.keys.iter() {
            lock(shard).forget_old();
        }
        let mut daily = self.daily.write().unwrap_or_else(|e| e.into_inner());
        if let Some(latest) = daily.keys().map(|(_, day)| *day).max() {
            daily.retain(|(_, day), _| *day >= latest - 1);
        }
        drop(daily);
        let now = now_ms();
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        channels.retain(|key, state| {
            let mut state = lock(state);
            state.expire(now);
            !state.events.is_empty() || self.hub.contains(key)
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves the data consistent; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn sweep(broker: Weak<InProcessBroker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    loop {
        tick.tick().await;
        match broker.upgrade() {
            Some(broker) => broker.sweep_once(),
            None => return,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ChannelState {
    fn new(budget: Arc<HistoryBudget>) -> Self {
        Self {
            epoch: Epoch::random(),
            events: VecDeque::new(),
            head: None,
            trimmed: None,
            retention: Retention::default(),
            bytes: 0,
            budget,
        }
    }

    fn next_position(&self, now: u64) -> Position {
        match self.head {
            Some(head) if head.ms >= now => Position::new(head.ms, head.seq + 1),
            _ => Position::new(now, 0),
        }
    }

    fn push(&mut self, e: StoredEvent) {
        let b = event_bytes(&e.event);
        self.bytes += b;
        self.budget.used.fetch_add(b, Ordering::Relaxed);
        self.events.push_back(e);
    }

    fn drop_front(&mut self) {
        if let Some(e) = self.events.pop_front() {
            let b = event_bytes(&e.event);
            self.bytes -= b;
            self.budget.used.fetch_sub(b, Ordering::Relaxed);
            self.trimmed = Some(e.position);
        }
    }

    fn expire(&mut self, now: u64) {
        let ttl = self.retention.ttl.as_millis() as u64;
        while self
            .events
            .front()
            .is_some_and(|e| e.position.ms.saturating_add(ttl) < now)
        {
            self.drop_front();
        }
    }
}

impl Drop for ChannelState {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[async_trait]
impl Broker for InProcessBroker {
    async fn append_batch(
        &self,
        batch: &[Append],
        idempotency: Option<&Idempotency>,
        quota: Option<&DailyQuota>,
    ) -> Result<Appended, BrokerError> {
        let (appended, reached) = self.append_now(batch, idempotency, quota);
        if (1..=YIELD_FANOUT).contains(&reached) {
            // The fan-out woke a few subscribers of this process: let them write before the
            // publisher is answered (and before its connection reads its next request), so that
            // a quiet channel's event reaches its subscribers a socket write and a request
            // sooner. A busy publisher loses nothing: its requests wait in its socket and are
            // read together afterwards.
            tokio::task::yield_now().await;
        }
        Ok(appended)
    }

    async fn channel_info(&self, key: &ChannelKey) -> Result<ChannelInfo, BrokerError> {
        Ok(match self.existing(key) {
            None => ChannelInfo {
                last: None,
                retained: 0,
            },
            Some(channel) => {
                let mut state = lock(&channel);
                state.expire(now_ms());
                ChannelInfo {
                    last: state.head.map(|p| Cursor::new(state.epoch, p)),
                    retained: state.events.len(),
                }
            }
        })
    }

    async fn read(
        &self,
        key: &ChannelKey,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<History, BrokerError> {
        // A read of memory cannot fail: only the count moves.
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        let page = |state: &ChannelState, after: Option<Position>, gap| {
            let first = match after {
                None => 0,
                Some(a) => state.events.partition_point(|e| e.position <= a),
            };
            let mut events = Vec::new();
            let (mut bytes, mut full) = (0, false);
            for e in state.events.range(first..).take(limit) {
                bytes += e.event.data.as_json().len();
                if bytes > PAGE_BYTES && !events.is_empty() {
                    full = true;
                    break;
                }
                events.push(e.clone());
            }
            History {
                epoch: state.epoch,
                gap,
                full: full || events.len() >= limit,
                events,
            }
        };
        let Some(channel) = self.existing(key) else {
            // No history at all: any cursor belongs to a life that has ended.
            return Ok(History {
                epoch: Epoch(0),
                gap: after.map(|_| Gap::InvalidCursor),
                events: Vec::new(),
                full: false,
            });
        };
        let mut state = lock(&channel);
        state.expire(now_ms());
        let Some(after) = after else {
            return Ok(page(&state, None, None));
        };
        let placeable =
            after.epoch == state.epoch && state.head.is_some_and(|h| after.position <= h);
        if !placeable {
            return Ok(page(&state, None, Some(Gap::InvalidCursor)));
        }
        if state.trimmed.is_some_and(|t| after.position < t) {
            return Ok(page(&state, None, Some(Gap::HistoryTruncated)));
        }
        Ok(page(&state, Some(after.position), None))
    }

    async fn subscribe(&self, key: &ChannelKey) -> Result<Subscription, BrokerError> {
        let channel = self.channel(key);
        let state = lock(&channel);
        let head = state.head.map(|p| Cursor::new(state.epoch, p));
        Ok(self.hub.join_or_create(key, head, true))
    }

    fn prime(&self, channel: &ChannelKey, start: Option<Cursor>, generation: u64) {
        self.hub.prime(channel, start, generation);
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    fn stats(&self) -> &BrokerStats {
        &self.stats
    }

    async fn end_streams(&self, target: &Target) -> Result<(), BrokerError> {
        self.hub.close(target);
        Ok(())
    }

    async fn recheck_streams(&self, target: &Target) -> Result<(), BrokerError> {
        self.hub.recheck(target);
        Ok(())
    }

    fn rechecks(&self) -> tokio::sync::broadcast::Receiver<Target> {
        self.hub.rechecks()
    }

    async fn delete_history(&self, target: &Target) -> Result<(), BrokerError> {
        self.channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| !target.covers(key));
        self.end_streams(target).await
    }
}

#[async_trait]
impl Presence for InProcessBroker {
    async fn subscribers(&self, key: &ChannelKey) -> Result<usize, BrokerError> {
        Ok(self.hub.subscribers(key))
    }

    async fn acquire_connection(
        &self,
        tenant: &TenantSlug,
        limit: u64,
    ) -> Result<Option<ConnectionPermit>, BrokerError> {
        let mut counts = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(tenant.clone()).or_insert(0);
        if *n >= limit {
            return Ok(None);
        }
        *n += 1;
        let total = *n;
        let (counts, tenant) = (self.connections.clone(), tenant.clone());
        Ok(Some(ConnectionPermit::new(total, move || {
            let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(&tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&tenant);
                }
            }
        })))
    }

    async fn connections(&self, tenant: &TenantSlug) -> Result<u64, BrokerError> {
        let counts = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        Ok(counts.get(tenant).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Live;
    use herald_core::{ChannelName, EventData, EventType, TenantSlug};

    fn key() -> ChannelKey {
        ChannelKey::new(
            TenantSlug::parse("acme").unwrap(),
            ChannelName::parse("c").unwrap(),
        )
    }

    fn ev(n: u64) -> Event {
        Event {
            event_type: EventType::message(),
            data: EventData::from_value(&n.into()),
        }
    }

    fn retention(max_len: u32) -> Retention {
        Retention {
            max_len,
            ttl: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn resume_reads_exactly_what_follows_the_cursor() {
        let b = InProcessBroker::new();
        let mut cursors = Vec::new();
        for n in 0..5 {
            cursors.push(b.append(&key(), &ev(n), retention(10)).await.unwrap());
        }
        assert!(cursors.windows(2).all(|w| w[0].position < w[1].position));
        let h = b.read(&key(), Some(cursors[1]), 100).await.unwrap();
        assert_eq!(h.gap, None);
        assert_eq!(h.events.len(), 3);
        assert_eq!(h.events[0].event, ev(2));
        assert!(b
            .read(&key(), Some(cursors[4]), 100)
            .await
            .unwrap()
            .events
            .is_empty());
    }

    #[tokio::test]
    async fn trimmed_and_foreign_cursors_are_gaps() {
        let b = InProcessBroker::new();
        let first = b.append(&key(), &ev(0), retention(2)).await.unwrap();
        let second = b.append(&key(), &ev(1), retention(2)).await.unwrap();
        for n in 2..4 {
            b.append(&key(), &ev(n), retention(2)).await.unwrap();
        }
        let h = b.read(&key(), Some(first), 100).await.unwrap();
        assert_eq!(h.gap, Some(Gap::HistoryTruncated));
        assert_eq!(h.events.len(), 2);
        // The reader of the newest trimmed event lost nothing that is gone: no gap.
        let h = b.read(&key(), Some(second), 100).await.unwrap();
        assert_eq!(h.gap, None);
        let other_life = Cursor::new(Epoch(second.epoch.0.wrapping_add(1)), second.position);
        assert_eq!(
            b.read(&key(), Some(other_life), 100).await.unwrap().gap,
            Some(Gap::InvalidCursor)
        );
        let ahead = Cursor::new(second.epoch, Position::new(u64::MAX, 0));
        let h = b.read(&key(), Some(ahead), 100).await.unwrap();
        assert_eq!((h.gap, h.events.len()), (Some(Gap::InvalidCursor), 2));
    }

    #[tokio::test]
    async fn subscribers_start_at_the_head_and_receive_in_order() {
        let b = InProcessBroker::new();
        let before = b.append(&key(), &ev(0), retention(10)).await.unwrap();
        let mut sub = b.subscribe(&key()).await.unwrap();
        assert_eq!(sub.start, Some(before));
        assert!(!sub.catch_up);
        let c1 = b.append(&key(), &ev(1), retention(10)).await.unwrap();
        let c2 = b.append(&key(), &ev(2), retention(10)).await.unwrap();
        for want in [c1, c2] {
            match sub.rx.recv().await.unwrap() {
                Live::Event(e) => assert_eq!(e.cursor, want),
                Live::Resync => panic!("unexpected resync"),
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiting_subscriber_runs_before_the_publisher_is_answered() {
        let b = Arc::new(InProcessBroker::new());
        let mut sub = b.subscribe(&key()).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let seen = order.clone();
        let reader = tokio::spawn(async move {
            sub.rx.recv().await.unwrap();
            seen.lock().unwrap().push("delivered");
        });
        // The reader is waiting on the channel before the publish.
        tokio::task::yield_now().await;
        b.append(&key(), &ev(1), retention(10)).await.unwrap();
        order.lock().unwrap().push("answered");
        reader.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["delivered", "answered"]);

        // With nobody subscribed, the append does not give up its turn: there is no one to run.
        let other = ChannelKey::new(
            TenantSlug::parse("acme").unwrap(),
            ChannelName::parse("nobody").unwrap(),
        );
        let (_, reached) = b.append_now(
            &[Append {
                channel: other,
                event: ev(2),
                retention: retention(10),
            }],
            None,
            None,
        );
        assert_eq!(reached, 0);
    }

    fn keyed(n: u64) -> Idempotency {
        Idempotency {
            tenant: TenantSlug::parse("acme").unwrap(),
            key: format!("key-{n:04}"),
            fingerprint: "f".repeat(64),
        }
    }

    fn one(n: u64) -> Vec<Append> {
        vec![Append {
            channel: key(),
            event: ev(n),
            retention: retention(10),
        }]
    }

    #[tokio::test]
    async fn remembered_keys_stay_within_their_budget_forgetting_the_oldest() {
        let budget = 64 << 10;
        let b = InProcessBroker::with_budgets(Budgets {
            idempotency_bytes: budget,
            ..Budgets::default()
        });
        for n in 0..2_000 {
            let r = b
                .append_batch(&one(n), Some(&keyed(n)), None)
                .await
                .unwrap();
            assert!(matches!(r, Appended::Fresh(_)));
            assert!(b.idempotency_bytes() <= budget);
        }
        assert!(b.idempotency_bytes() > budget / 2, "the budget is used");
        let newest = b.append_batch(&one(0), Some(&keyed(1_999)), None).await;
        assert!(matches!(newest.unwrap(), Appended::Repeat(_)));
        let oldest = b.append_batch(&one(0), Some(&keyed(0)), None).await;
        assert!(matches!(oldest.unwrap(), Appended::Fresh(_)));
    }

    #[tokio::test]
    async fn histories_together_stay_within_their_budget() {
        let budget = 256 << 10;
        let b = InProcessBroker::with_budgets(Budgets {
            history_bytes: budget,
            ..Budgets::default()
        });
        let big = Event {
            event_type: EventType::message(),
            data: EventData::from_text(&"x".repeat(4 << 10)),
        };
        let largest = event_bytes(&big);
        let keep = Retention {
            max_len: 1_000,
            ttl: Duration::from_secs(60),
        };
        let channel = |n: usize| {
            ChannelKey::new(
                TenantSlug::parse("acme").unwrap(),
                ChannelName::parse(&format!("c{}", n % 20)).unwrap(),
            )
        };
        let mut first = Vec::new();
        for n in 0..1_000 {
            let c = b.append(&channel(n), &big, keep).await.unwrap();
            if n < 20 {
                first.push(c);
            }
            assert!(b.history_bytes() <= budget + largest);
        }
        assert!(
            b.history_bytes() > budget - 2 * largest,
            "the budget is used"
        );
        // What was dropped for the budget is a gap to a reader that needed it.
        let h = b.read(&channel(0), Some(first[0]), 10).await.unwrap();
        assert_eq!(h.gap, Some(Gap::HistoryTruncated));
        b.delete_history(&Target::Tenant(TenantSlug::parse("acme").unwrap()))
            .await
            .unwrap();
        assert_eq!(b.history_bytes(), 0);
    }

    #[tokio::test]
    async fn a_page_carries_at_most_page_bytes_and_says_more_follow() {
        let b = InProcessBroker::new();
        let big = |n: u64| Event {
            event_type: EventType::message(),
            data: EventData::from_text(&format!("{n:03}{}", "x".repeat(100 << 10))),
        };
        let keep = retention(100);
        let mut cursors = Vec::new();
        for n in 0..10 {
            cursors.push(b.append(&key(), &big(n), keep).await.unwrap());
        }
        let (mut after, mut seen) = (None, Vec::new());
        loop {
            let h = b.read(&key(), after, 256).await.unwrap();
            let bytes: usize = h.events.iter().map(|e| e.event.data.as_json().len()).sum();
            assert!(bytes <= PAGE_BYTES, "{bytes} bytes in one page");
            seen.extend(h.events.iter().map(|e| h.cursor_of(e)));
            after = seen.last().copied();
            if !h.full {
                break;
            }
            assert!(!h.events.is_empty());
        }
        assert_eq!(seen, cursors);
    }

    /// An append without a key must not wait for a keyed one in progress (nor for anything
    /// another channel holds).
    #[tokio::test]
    async fn appends_without_a_key_never_wait_for_keyed_ones() {
        use futures_util::FutureExt;
        let b = InProcessBroker::new();
        let held: Vec<_> = b.keys.iter().map(lock).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let other = b.clone();
        std::thread::spawn(move || {
            let r = other.append(&key(), &ev(1), retention(10)).now_or_never();
            let _ = tx.send(r.map(|r| r.is_ok()));
        });
        let done = rx.recv_timeout(Duration::from_secs(5));
        drop(held);
        assert_eq!(done, Ok(Some(true)), "the append went ahead");
    }
}
