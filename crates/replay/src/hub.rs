//! The node's hub: one broadcast channel per channel that has local subscribers.
//!
//! An event reaches the hub once per node, is encoded into its SSE frame once, and the same
//! [`Bytes`] go to every local subscriber, so a delivery costs a reference count, never a
//! serialisation. Each channel's broadcast ring is the bound on what slow subscribers can hold
//! in memory: a subscriber that falls behind it gets `Lagged` and catches up from the replay
//! store after its own cursor instead of the hub buffering for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use herald_core::{sse, Cursor, Event};
use tokio::sync::broadcast;

use crate::ring;
use crate::{ChannelKey, Target};

/// What the hub sends a subscriber.
///
/// A ring slot holds one of these, so it is one pointer: the event itself is allocated once,
/// when it reaches the hub. A channel's ring starts at [`ring::RING_INITIAL`] slots and grows
/// to at most [`HUB_CAPACITY`] while the channel is busy.
#[derive(Debug, Clone)]
pub enum Live {
    /// The next event of the channel.
    Event(Arc<LiveEvent>),
    /// Live delivery was interrupted (the broker's connection was lost and regained): events may
    /// be missing, so the subscriber re-reads history after its own cursor.
    Resync,
}

/// One event as every local subscriber receives it: its cursor and its encoded frame.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub cursor: Cursor,
    /// When the event reached this process.
    pub at: std::time::Instant,
    frame: Bytes,
    body_at: usize,
}

impl LiveEvent {
    pub fn encode(cursor: Cursor, event: &Event) -> Self {
        let id = cursor.to_string();
        let frame = sse::event(Some(&id), &event.event_type, &event.data.rendered());
        Self {
            cursor,
            at: std::time::Instant::now(),
            frame,
            body_at: "id: ".len() + id.len() + 1,
        }
    }

    /// The whole frame, `id:` line included: what a one-channel stream writes.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The frame without its `id:` line, for streams whose ids are their own.
    pub fn body(&self) -> &[u8] {
        &self.frame[self.body_at..]
    }
}

/// A local subscriber's place in a channel's fan-out.
#[derive(Debug)]
pub struct Subscription {
    pub rx: ring::Receiver,
    /// The channel's head when the subscription began: events at or before it were appended
    /// before the subscriber joined. `None` when the channel had no event in its current life.
    pub start: Option<Cursor>,
    /// Whether events after `start` may have been appended before the node's own subscription to
    /// the channel was confirmed; the subscriber then reads history after `start` once.
    pub catch_up: bool,
    /// The channel's live feed as of the join: a catch-up that finds nothing after `start`
    /// passes it to [`Hub::prime`].
    pub generation: u64,
}

struct Entry {
    tx: ring::Sender,
    /// Where the feed stands; locked only with this channel's own publish and joins.
    at: Mutex<Head>,
}

#[derive(Clone, Copy)]
struct Head {
    /// The last event the hub passed on, or the head it was created with.
    last: Option<Cursor>,
    /// Whether `last` came from the live feed (so `rx` holds everything after it).
    primed: bool,
    /// Which unbroken stretch of live delivery this is: a new value, unique in the hub, when
    /// the entry is created and whenever delivery was interrupted.
    generation: u64,
}

/// Each channel's broadcast ring at its largest, on every broker: how many events a subscriber
/// may fall behind live delivery before it catches up from history. A quiet channel's ring is
/// much smaller ([`ring::RING_INITIAL`]); it grows only when an event would otherwise overwrite
/// one a subscriber has not read.
pub const HUB_CAPACITY: usize = 1024;

/// Re-authorisation orders a node keeps before its slowest listener misses some (and, told
/// that it lagged, re-checks everything).
const RECHECK_CAPACITY: usize = 256;

/// The node's channels with local subscribers. The map is read-locked on the hot path (publish,
/// join), so channels never wait for each other; it is written only when a channel is first
/// followed or forgotten.
pub struct Hub {
    channels: RwLock<HashMap<ChannelKey, Entry>>,
    capacity: usize,
    /// The last [`Head::generation`] handed out.
    generations: AtomicU64,
    /// Orders to re-authorise the open streams of a target, from any process.
    rechecks: broadcast::Sender<Target>,
}

impl Hub {
    /// `capacity` is each channel's broadcast ring at its largest: how far a subscriber may fall
    /// behind before it has to catch up from the replay store.
    pub fn new(capacity: usize) -> Self {
        Self {
            channels: RwLock::new(HashMap::new()),
            capacity,
            generations: AtomicU64::new(0),
            rechecks: broadcast::channel(RECHECK_CAPACITY).0,
        }
    }

    /// Tells this node's listeners that the target's access rules changed.
    pub fn recheck(&self, target: &Target) {
        // An error only means nobody is listening.
        let _ = self.rechecks.send(target.clone());
    }

    /// The re-authorisation orders this node receives from now on. A `Lagged` receiver lost
    /// some: it should re-check everything.
    pub fn rechecks(&self) -> broadcast::Receiver<Target> {
        self.rechecks.subscribe()
    }

    // A panic while holding these locks leaves the map itself consistent; keep serving.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<ChannelKey, Entry>> {
        self.channels.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<ChannelKey, Entry>> {
        self.channels.write().unwrap_or_else(|e| e.into_inner())
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Joins the channel if the hub already follows it.
    pub fn join(&self, key: &ChannelKey) -> Option<Subscription> {
        self.read().get(key).map(Entry::subscription)
    }

    /// Joins the channel, creating its entry with `head` as its last known event when the hub
    /// does not follow it yet. `exact` says that no event after `head` can be in flight (the
    /// caller holds the channel's append lock); otherwise new subscribers catch up once.
    pub fn join_or_create(
        &self,
        key: &ChannelKey,
        head: Option<Cursor>,
        exact: bool,
    ) -> Subscription {
        if let Some(sub) = self.join(key) {
            return sub;
        }
        let mut channels = self.write();
        channels
            .entry(key.clone())
            .or_insert_with(|| Entry {
                tx: ring::channel(self.capacity),
                at: Mutex::new(Head {
                    last: head,
                    primed: exact,
                    generation: self.next_generation(),
                }),
            })
            .subscription()
    }

    /// Whether the hub follows the channel (has an entry for it).
    pub fn contains(&self, key: &ChannelKey) -> bool {
        self.read().contains_key(key)
    }

    /// Passes an event to the channel's local subscribers; answers how many it has. Events of one
    /// channel must be passed in append order, by one caller at a time.
    pub fn publish(&self, key: &ChannelKey, event: LiveEvent) -> usize {
        let tx = {
            let channels = self.read();
            let Some(entry) = channels.get(key) else {
                return 0;
            };
            let mut head = entry.head();
            head.last = Some(event.cursor);
            head.primed = true;
            drop(head);
            entry.tx.clone()
        };
        // Sent outside the lock: waking every subscriber is the slow part, and it must not hold
        // up other channels. An error only means nobody is listening any more.
        tx.send(Live::Event(Arc::new(event))).unwrap_or(0)
    }

    /// Tells every subscriber that live delivery was interrupted; answers how many channels.
    pub fn resync_all(&self) -> usize {
        let senders: Vec<_> = self
            .read()
            .values()
            .map(|e| {
                self.interrupted(e);
                e.tx.clone()
            })
            .collect();
        for tx in &senders {
            let _ = tx.send(Live::Resync);
        }
        senders.len()
    }

    /// Tells the subscribers of one channel that its live delivery was interrupted (its shard
    /// moved or reconnected, on Redis Cluster); answers whether this process follows it.
    pub fn resync(&self, key: &ChannelKey) -> bool {
        let tx = {
            let channels = self.read();
            let Some(entry) = channels.get(key) else {
                return false;
            };
            self.interrupted(entry);
            entry.tx.clone()
        };
        let _ = tx.send(Live::Resync);
        true
    }

    /// Live delivery of `entry`'s channel was interrupted: nothing joined from now on may
    /// trust it until it is primed again, and no catch-up begun before may prime it.
    fn interrupted(&self, entry: &Entry) {
        let mut head = entry.head();
        head.primed = false;
        head.generation = self.next_generation();
    }

    /// A subscriber that joined at `generation` with `start` read the channel's history after
    /// `start` and found nothing. If delivery has been unbroken since (the same generation) and
    /// no live event came (the head is still `start`), every event after `start` reaches the
    /// hub live: later subscribers need not read history, the channel is primed. Answers
    /// whether it was primed by this call.
    ///
    /// The read was made after the join, so after the node's subscription to the channel was
    /// confirmed (entries exist only then): what it did not see was appended after it, and is
    /// announced to the hub.
    pub fn prime(&self, key: &ChannelKey, start: Option<Cursor>, generation: u64) -> bool {
        let channels = self.read();
        let Some(entry) = channels.get(key) else {
            return false;
        };
        let mut head = entry.head();
        if head.primed || head.generation != generation || head.last != start {
            return false;
        }
        head.primed = true;
        true
    }

    /// Ends every local subscription of the target: dropping a channel's sender closes its
    /// receivers once they have read what was already sent.
    pub fn close(&self, target: &Target) {
        let closed: Vec<Entry> = {
            let mut channels = self.write();
            let keys: Vec<ChannelKey> = channels
                .keys()
                .filter(|k| target.covers(k))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| channels.remove(k)).collect()
        };
        drop(closed);
    }

    /// The channels the hub follows.
    pub fn keys(&self) -> Vec<ChannelKey> {
        self.read().keys().cloned().collect()
    }

    /// Forgets channels nobody listens to any more, and returns them; returns the rings of
    /// channels that were quiet since the last sweep to their small size.
    pub fn sweep(&self) -> Vec<ChannelKey> {
        let mut idle = Vec::new();
        self.write().retain(|key, e| {
            let keep = e.tx.receiver_count() > 0;
            if keep {
                e.tx.trim();
            } else {
                idle.push(key.clone());
            }
            keep
        });
        idle
    }

    /// How many slots the channel's ring has now (`None` if the hub does not follow it).
    pub fn ring_slots(&self, key: &ChannelKey) -> Option<usize> {
        self.read().get(key).map(|e| e.tx.slots())
    }

    /// Local subscribers of every channel the hub follows.
    pub fn counts(&self) -> Vec<(ChannelKey, usize)> {
        self.read()
            .iter()
            .map(|(k, e)| (k.clone(), e.tx.receiver_count()))
            .collect()
    }

    /// Local subscribers of a channel.
    pub fn subscribers(&self, key: &ChannelKey) -> usize {
        self.read().get(key).map_or(0, |e| e.tx.receiver_count())
    }
}

impl Entry {
    fn head(&self) -> std::sync::MutexGuard<'_, Head> {
        self.at.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subscription(&self) -> Subscription {
        // Under the head's lock, so no event is passed on between reading it and subscribing.
        let head = self.head();
        Subscription {
            rx: self.tx.subscribe(),
            start: head.last,
            catch_up: !head.primed,
            generation: head.generation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{ChannelName, Epoch, EventData, EventType, Position, TenantSlug};

    fn key() -> ChannelKey {
        ChannelKey::new(
            TenantSlug::parse("acme").unwrap(),
            ChannelName::parse("c").unwrap(),
        )
    }

    #[test]
    fn a_ring_slot_is_one_pointer() {
        // Each channel preallocates HUB_CAPACITY of these: this is its idle cost.
        assert!(
            std::mem::size_of::<Live>() <= 8,
            "{}",
            std::mem::size_of::<Live>()
        );
    }

    fn event(n: u64) -> LiveEvent {
        LiveEvent::encode(
            Cursor::new(Epoch(1), Position::new(n, 0)),
            &Event {
                event_type: EventType::message(),
                data: EventData::from_text("x"),
            },
        )
    }

    #[test]
    fn frames_are_shared_and_bodies_drop_the_id() {
        let e = event(5);
        assert_eq!(&e.frame()[..], b"id: 1-5-0\ndata: x\n\n");
        assert_eq!(e.body(), b"data: x\n\n");
    }

    #[test]
    fn an_idle_channel_s_ring_is_small() {
        let hub = Hub::new(HUB_CAPACITY);
        let _subs: Vec<_> = (0..10)
            .map(|_| hub.join_or_create(&key(), None, true))
            .collect();
        assert_eq!(hub.ring_slots(&key()), Some(ring::RING_INITIAL));
    }

    #[test]
    fn a_busy_channel_s_ring_grows_to_its_bound_and_shrinks_when_quiet() {
        let hub = Hub::new(HUB_CAPACITY);
        let mut reader = hub.join_or_create(&key(), None, true);
        let mut stalled = hub.join(&key()).unwrap();
        for n in 1..=2000 {
            hub.publish(&key(), event(n));
            // One keeps up, the other reads nothing.
            assert!(
                matches!(reader.rx.try_recv(), Ok(Live::Event(e)) if e.cursor.position.ms == n)
            );
        }
        assert_eq!(hub.ring_slots(&key()), Some(HUB_CAPACITY));
        // Past its bound, the stalled one lags, then reads the newest HUB_CAPACITY in order.
        assert!(matches!(
            stalled.rx.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(976))
        ));
        for n in 977..=2000 {
            assert!(
                matches!(stalled.rx.try_recv(), Ok(Live::Event(e)) if e.cursor.position.ms == n)
            );
        }
        // A sweep right after the burst keeps the ring; the next one, quiet since, shrinks it.
        hub.sweep();
        assert_eq!(hub.ring_slots(&key()), Some(HUB_CAPACITY));
        hub.sweep();
        assert_eq!(hub.ring_slots(&key()), Some(ring::RING_INITIAL));
        hub.publish(&key(), event(2001));
        for sub in [&mut reader, &mut stalled] {
            assert!(
                matches!(sub.rx.try_recv(), Ok(Live::Event(e)) if e.cursor.position.ms == 2001)
            );
        }
    }

    #[tokio::test]
    async fn joiners_start_after_the_last_event_passed_on() {
        let hub = Hub::new(16);
        let mut first = hub.join_or_create(&key(), None, false);
        assert!(first.catch_up);
        hub.publish(&key(), event(1));
        let second = hub.join(&key()).unwrap();
        assert_eq!(second.start.unwrap().position, Position::new(1, 0));
        assert!(!second.catch_up);
        assert!(matches!(first.rx.recv().await, Ok(Live::Event(e)) if e.cursor.position.ms == 1));
        drop((first, second));
        assert_eq!(hub.sweep(), vec![key()]);
        assert!(hub.join(&key()).is_none());
    }

    #[test]
    fn a_catch_up_that_found_nothing_primes_the_channel_for_later_joiners() {
        let hub = Hub::new(16);
        let head = Some(event(3).cursor);
        let first = hub.join_or_create(&key(), head, false);
        assert!(first.catch_up);
        assert!(hub.prime(&key(), first.start, first.generation));
        let later = hub.join(&key()).unwrap();
        assert!(!later.catch_up);
        assert_eq!(later.start, head);
        // Primed once: a second report changes nothing.
        assert!(!hub.prime(&key(), first.start, first.generation));
    }

    #[test]
    fn an_interruption_since_the_join_forbids_priming() {
        let hub = Hub::new(16);
        let first = hub.join_or_create(&key(), None, false);
        hub.resync(&key());
        // Its read may have missed what the interruption lost.
        assert!(!hub.prime(&key(), first.start, first.generation));
        assert!(hub.join(&key()).unwrap().catch_up);
        let after = hub.join(&key()).unwrap();
        hub.resync_all();
        assert!(!hub.prime(&key(), after.start, after.generation));
        assert!(hub.join(&key()).unwrap().catch_up);
    }

    #[test]
    fn a_live_event_or_a_new_entry_since_the_join_forbids_priming_with_an_old_start() {
        let hub = Hub::new(16);
        let first = hub.join_or_create(&key(), None, false);
        hub.publish(&key(), event(1));
        // Primed by the event itself; the report of a read that started at None is ignored.
        assert!(!hub.prime(&key(), first.start, first.generation));
        assert_eq!(hub.join(&key()).unwrap().start, Some(event(1).cursor));
        // A channel closed and followed again is a new entry: an old joiner cannot prime it.
        hub.close(&Target::Tenant(key().tenant.clone()));
        let again = hub.join_or_create(&key(), None, false);
        assert!(again.catch_up);
        assert_ne!(again.generation, first.generation);
        assert!(!hub.prime(&key(), first.start, first.generation));
        assert!(hub.join(&key()).unwrap().catch_up);
        drop((first, again));
    }
}
