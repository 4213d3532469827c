//! The in-process broker: history in memory, fan-out through the node's hub. For one node only;
//! history is lost on restart. Each channel's history draws a random epoch when it begins, so a
//! cursor from before a restart (or from another channel) is never placed in this history.
//!
//! Each channel has its own lock, held while an event is appended *and* handed to the hub, and
//! while a subscriber joins, so a joiner's start is exactly the channel's head: no event can be
//! between the two.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_core::{Cursor, Epoch, Position};

use crate::hub::{Hub, LiveEvent, Subscription};
use herald_core::TenantSlug;

use crate::{
    Append, Appended, Broker, BrokerError, ChannelInfo, ChannelKey, ConnectionPermit, DailyQuota,
    Gap, History, Idempotency, Presence, Retention, StoredEvent, Target, IDEMPOTENCY_TTL,
};

/// A single-node broker that keeps every channel's history in memory.
pub struct InProcessBroker {
    /// Idempotency keys: `(tenant, key)` → what was asked and answered.
    idempotency: Mutex<HashMap<(String, String), Remembered>>,
    /// Messages per tenant and UTC day; taken after `idempotency`.
    daily: Mutex<HashMap<(TenantSlug, i64), u64>>,
    /// Open connections per tenant.
    connections: Arc<Mutex<HashMap<TenantSlug, u64>>>,
    channels: Mutex<HashMap<ChannelKey, Arc<Mutex<ChannelState>>>>,
    hub: Hub,
}

/// An idempotent append: its fingerprint, its cursors, and when it happened.
type Remembered = (String, Vec<Cursor>, std::time::Instant);

struct ChannelState {
    epoch: Epoch,
    events: VecDeque<StoredEvent>,
    /// The newest position ever appended in this life.
    head: Option<Position>,
    /// The newest position dropped by trimming: a cursor before it has missed events.
    trimmed: Option<Position>,
    retention: Retention,
}

impl InProcessBroker {
    /// A broker with a fresh epoch; also starts a background sweep that drops channels whose
    /// history has expired and that nobody follows.
    pub fn new() -> Arc<Self> {
        let broker = Arc::new(Self {
            idempotency: Mutex::default(),
            daily: Mutex::default(),
            connections: Arc::default(),
            channels: Mutex::default(),
            hub: Hub::new(crate::hub::HUB_CAPACITY),
        });
        tokio::spawn(sweep(Arc::downgrade(&broker)));
        broker
    }

    fn channel(&self, key: &ChannelKey) -> Arc<Mutex<ChannelState>> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Mutex::new(ChannelState::new())))
            .clone()
    }

    fn existing(&self, key: &ChannelKey) -> Option<Arc<Mutex<ChannelState>>> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.get(key).cloned()
    }

    fn sweep_once(&self) {
        self.hub.sweep();
        self.idempotency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (_, _, at)| at.elapsed() < IDEMPOTENCY_TTL);
        let mut daily = self.daily.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(latest) = daily.keys().map(|(_, day)| *day).max() {
            daily.retain(|(_, day), _| *day >= latest - 1);
        }
        let now = now_ms();
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.retain(|key, state| {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.expire(now);
            !state.events.is_empty() || self.hub.contains(key)
        });
    }
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
    fn new() -> Self {
        Self {
            epoch: Epoch::random(),
            events: VecDeque::new(),
            head: None,
            trimmed: None,
            retention: Retention::default(),
        }
    }

    fn next_position(&self, now: u64) -> Position {
        match self.head {
            Some(head) if head.ms >= now => Position::new(head.ms, head.seq + 1),
            _ => Position::new(now, 0),
        }
    }

    fn drop_front(&mut self) {
        if let Some(e) = self.events.pop_front() {
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

#[async_trait]
impl Broker for InProcessBroker {
    async fn append_batch(
        &self,
        batch: &[Append],
        idempotency: Option<&Idempotency>,
        quota: Option<&DailyQuota>,
    ) -> Result<Appended, BrokerError> {
        // Lock order: idempotency keys, then channels sorted by key, so batches never deadlock.
        let mut keys = self.idempotency.lock().unwrap_or_else(|e| e.into_inner());
        let idem_key = idempotency.map(|i| (i.tenant.to_string(), i.key.clone()));
        if let (Some(i), Some(k)) = (idempotency, &idem_key) {
            if let Some((fingerprint, cursors, at)) = keys.get(k) {
                if at.elapsed() < IDEMPOTENCY_TTL {
                    return Ok(if *fingerprint == i.fingerprint {
                        Appended::Repeat(cursors.clone())
                    } else {
                        Appended::Conflict
                    });
                }
            }
        }
        if let Some(q) = quota {
            let mut daily = self.daily.lock().unwrap_or_else(|e| e.into_inner());
            let used = daily.entry((q.tenant.clone(), q.day)).or_insert(0);
            if *used + batch.len() as u64 > q.limit {
                return Ok(Appended::QuotaExceeded);
            }
            *used += batch.len() as u64;
        }
        let mut channels: Vec<(String, Arc<Mutex<ChannelState>>)> = Vec::new();
        for a in batch {
            let name = a.channel.to_string();
            if !channels.iter().any(|(n, _)| *n == name) {
                channels.push((name, self.channel(&a.channel)));
            }
        }
        channels.sort_by(|a, b| a.0.cmp(&b.0));
        let mut guards: Vec<_> = channels
            .iter()
            .map(|(_, c)| c.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let now = now_ms();
        let mut cursors = Vec::with_capacity(batch.len());
        for a in batch {
            let name = a.channel.to_string();
            let i = channels
                .iter()
                .position(|(n, _)| *n == name)
                .expect("every channel of the batch is locked");
            let state = &mut guards[i];
            let position = state.next_position(now);
            state.retention = a.retention;
            state.head = Some(position);
            state.events.push_back(StoredEvent {
                position,
                event: a.event.clone(),
            });
            while state.events.len() > a.retention.max_len as usize {
                state.drop_front();
            }
            state.expire(now);
            let cursor = Cursor::new(state.epoch, position);
            // Still under the channel's lock, so the hub sees its events in order.
            self.hub
                .publish(&a.channel, LiveEvent::encode(cursor, &a.event));
            cursors.push(cursor);
        }
        drop(guards);
        if let (Some(i), Some(k)) = (idempotency, idem_key) {
            keys.insert(
                k,
                (
                    i.fingerprint.clone(),
                    cursors.clone(),
                    std::time::Instant::now(),
                ),
            );
        }
        Ok(Appended::Fresh(cursors))
    }

    async fn channel_info(&self, key: &ChannelKey) -> Result<ChannelInfo, BrokerError> {
        Ok(match self.existing(key) {
            None => ChannelInfo {
                last: None,
                retained: 0,
            },
            Some(channel) => {
                let mut state = channel.lock().unwrap_or_else(|e| e.into_inner());
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
        let page = |state: &ChannelState, after: Option<Position>, gap| History {
            epoch: state.epoch,
            gap,
            events: state
                .events
                .iter()
                .filter(|e| after.is_none_or(|a| e.position > a))
                .take(limit)
                .cloned()
                .collect(),
        };
        let Some(channel) = self.existing(key) else {
            // No history at all: any cursor belongs to a life that has ended.
            return Ok(History {
                epoch: Epoch(0),
                gap: after.map(|_| Gap::InvalidCursor),
                events: Vec::new(),
            });
        };
        let mut state = channel.lock().unwrap_or_else(|e| e.into_inner());
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
        let state = channel.lock().unwrap_or_else(|e| e.into_inner());
        let head = state.head.map(|p| Cursor::new(state.epoch, p));
        Ok(self.hub.join_or_create(key, head, true))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn end_streams(&self, target: &Target) -> Result<(), BrokerError> {
        self.hub.close(target);
        Ok(())
    }

    async fn delete_history(&self, target: &Target) -> Result<(), BrokerError> {
        self.channels
            .lock()
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
    use herald_core::{ChannelName, Event, EventData, EventType, TenantSlug};

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
}
