//! A channel's broadcast ring that is small while the channel is quiet and grows while it is
//! busy.
//!
//! `tokio::sync::broadcast` preallocates its whole ring when the channel is created: with the
//! hub's bound of [`HUB_CAPACITY`](crate::hub::HUB_CAPACITY) slots that was about 40 KiB per
//! channel, most of the memory of an idle stream. This ring starts with
//! [`RING_INITIAL`] slots and doubles, up to its bound, whenever an event would otherwise
//! overwrite one that a subscriber has not read yet. Growing happens under the ring's lock and
//! copies every retained event to the same absolute position, and each receiver holds only
//! that position: no subscriber loses, doubles or reorders an event because the ring grew. Only
//! a subscriber that falls behind the ring *at its bound* lags, exactly as before (and catches up
//! from history after its own cursor). A ring that did not need to grow since the last
//! [`Sender::trim`], and that every subscriber has read to the end, goes back to its initial
//! size.
//!
//! Its interface is the part of `tokio::sync::broadcast` the hub and the streams use, with the
//! same error types: `recv`, `try_recv`, `Lagged(n)` when a receiver fell behind, `Closed` once
//! the last sender is gone and everything sent was read.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use futures_util::Stream;
use tokio::sync::broadcast::error::{RecvError, SendError, TryRecvError};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

use crate::hub::Live;

/// The slots a ring starts with: what a quiet channel costs.
pub const RING_INITIAL: usize = 16;

/// One ring slot: the value and how many receivers that existed when it was sent still have to
/// read it (the value is dropped when the last one has).
struct Slot {
    val: Option<Live>,
    rem: u32,
}

impl Slot {
    const EMPTY: Slot = Slot { val: None, rem: 0 };
}

struct Ring {
    /// A power of two long; the event at absolute position `p` is in slot `p & (len - 1)`.
    slots: Box<[Slot]>,
    /// The oldest position still retained.
    head: u64,
    /// The position the next event gets.
    tail: u64,
    /// The most slots this ring may grow to.
    max: usize,
    receivers: usize,
    senders: usize,
    /// Whether the ring grew since the last trim.
    grew: bool,
}

impl Ring {
    fn mask(&self) -> u64 {
        self.slots.len() as u64 - 1
    }

    fn slot(&mut self, pos: u64) -> &mut Slot {
        let i = (pos & self.mask()) as usize;
        &mut self.slots[i]
    }

    /// Moves every retained event to a ring of `len` slots, each at its own position.
    fn resize(&mut self, len: usize) {
        debug_assert!(len.is_power_of_two() && len as u64 >= self.tail - self.head);
        let mut slots: Box<[Slot]> = (0..len).map(|_| Slot::EMPTY).collect();
        let mask = len as u64 - 1;
        for pos in self.head..self.tail {
            slots[(pos & mask) as usize] = std::mem::replace(self.slot(pos), Slot::EMPTY);
        }
        self.slots = slots;
    }

    /// Whether some receiver has not read everything retained.
    fn unread(&self) -> bool {
        let mask = self.mask();
        (self.head..self.tail).any(|pos| self.slots[(pos & mask) as usize].rem > 0)
    }
}

struct Shared {
    ring: Mutex<Ring>,
    /// Wakes every receiver waiting for the next event (or for the end). In an `Arc` of its
    /// own, so that a receiver's wait can own its place in it.
    notify: Arc<Notify>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ring> {
        // Nothing panics while holding it with the ring inconsistent; keep serving.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending half; the ring closes when the last one is dropped.
pub struct Sender {
    shared: Arc<Shared>,
}

/// A subscriber's place in the ring: the absolute position of the next event it reads, and its
/// wait for the next send (allocated at its first wait, then re-armed in place).
pub struct Receiver {
    shared: Arc<Shared>,
    next: u64,
    waiter: Option<Pin<Box<OwnedNotified>>>,
}

/// A ring of [`RING_INITIAL`] slots (or `max`, if smaller) that may grow to `max`.
pub fn channel(max: usize) -> Sender {
    let max = max.max(1).next_power_of_two();
    let initial = RING_INITIAL.min(max);
    Sender {
        shared: Arc::new(Shared {
            ring: Mutex::new(Ring {
                slots: (0..initial).map(|_| Slot::EMPTY).collect(),
                head: 0,
                tail: 0,
                max,
                receivers: 0,
                senders: 1,
                grew: false,
            }),
            notify: Arc::new(Notify::new()),
        }),
    }
}

impl Sender {
    /// Passes a value to every current receiver; gives it back if there is none.
    pub fn send(&self, val: Live) -> Result<usize, SendError<Live>> {
        let receivers = {
            let mut ring = self.shared.lock();
            if ring.receivers == 0 {
                return Err(SendError(val));
            }
            let len = ring.slots.len();
            if ring.tail - ring.head == len as u64 {
                let head = ring.head;
                if ring.slot(head).rem > 0 && len < ring.max {
                    // Someone has not read the oldest yet: make room rather than overwrite it.
                    ring.resize(len * 2);
                    ring.grew = true;
                } else {
                    // Read by everyone, or the ring is at its bound: whoever has not read it
                    // lags.
                    *ring.slot(head) = Slot::EMPTY;
                    ring.head += 1;
                }
            }
            let tail = ring.tail;
            let receivers = ring.receivers;
            *ring.slot(tail) = Slot {
                val: Some(val),
                rem: u32::try_from(receivers).unwrap_or(u32::MAX),
            };
            ring.tail += 1;
            receivers
        };
        // Outside the ring's lock, so that woken receivers do not wait for it.
        self.shared.notify.notify_waiters();
        Ok(receivers)
    }

    /// A receiver of everything sent from now on.
    pub fn subscribe(&self) -> Receiver {
        let mut ring = self.shared.lock();
        ring.receivers += 1;
        Receiver {
            shared: self.shared.clone(),
            next: ring.tail,
            waiter: None,
        }
    }

    pub fn receiver_count(&self) -> usize {
        self.shared.lock().receivers
    }

    /// How many slots the ring has now.
    pub fn slots(&self) -> usize {
        self.shared.lock().slots.len()
    }

    /// Returns the ring to its initial size if it did not grow since the last trim and every
    /// receiver has read everything in it; answers whether it did.
    pub fn trim(&self) -> bool {
        let mut ring = self.shared.lock();
        let initial = RING_INITIAL.min(ring.max);
        let grew = std::mem::take(&mut ring.grew);
        if grew || ring.slots.len() <= initial || ring.unread() {
            return false;
        }
        // Nothing retained is still needed: start empty after the last event sent.
        ring.head = ring.tail;
        ring.resize(initial);
        true
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let last = {
            let mut ring = self.shared.lock();
            ring.senders -= 1;
            ring.senders == 0
        };
        if last {
            self.shared.notify.notify_waiters();
        }
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.shared.lock();
        f.debug_struct("Sender")
            .field("slots", &ring.slots.len())
            .field("receivers", &ring.receivers)
            .finish()
    }
}

impl Ring {
    /// A receiver at `next` that fell behind the oldest retained event: it moves there, and
    /// hears how many it missed.
    fn lag(&self, next: &mut u64) -> Result<(), TryRecvError> {
        if *next < self.head {
            let missed = self.head - *next;
            *next = self.head;
            return Err(TryRecvError::Lagged(missed));
        }
        Ok(())
    }

    /// Why a receiver that has read everything gets nothing.
    fn nothing(&self) -> TryRecvError {
        if self.senders == 0 {
            TryRecvError::Closed
        } else {
            TryRecvError::Empty
        }
    }

    /// Counts the slot at `next` read by one more receiver, and moves `next` past it.
    fn read(&mut self, next: &mut u64) -> &mut Slot {
        let slot = self.slot(*next);
        *next += 1;
        slot.rem = slot.rem.saturating_sub(1);
        slot
    }
}

const HOLDS_VALUE: &str = "a retained slot this receiver has not read holds its value";

/// Takes the receiver's next value, if there is one.
fn take(shared: &Shared, next: &mut u64) -> Result<Live, TryRecvError> {
    let mut ring = shared.lock();
    ring.lag(next)?;
    if *next == ring.tail {
        return Err(ring.nothing());
    }
    let slot = ring.read(next);
    let val = if slot.rem == 0 {
        slot.val.take()
    } else {
        slot.val.clone()
    };
    Ok(val.expect(HOLDS_VALUE))
}

impl Receiver {
    /// The next value without waiting.
    pub fn try_recv(&mut self) -> Result<Live, TryRecvError> {
        take(&self.shared, &mut self.next)
    }

    /// Reads everything waiting, in order, under one lock and without cloning a value: `f` is
    /// shown each value by reference (a value shown is read) and answers whether it wants the
    /// next one. Ends `Ok` when `f` declined, else with why there is no next value: `Empty`,
    /// `Closed`, or `Lagged` (then before reading anything, as `try_recv` would).
    ///
    /// This is how a stream gathers a burst: one lock and no reference count per event, where
    /// `try_recv` takes the lock and clones the event for each. `f` runs under the ring's lock,
    /// so it must be short and must not touch the ring.
    pub fn try_recv_each(&mut self, mut f: impl FnMut(&Live) -> bool) -> Result<(), TryRecvError> {
        let mut ring = self.shared.lock();
        ring.lag(&mut self.next)?;
        while self.next < ring.tail {
            let slot = ring.read(&mut self.next);
            let more = f(slot.val.as_ref().expect(HOLDS_VALUE));
            if slot.rem == 0 {
                slot.val = None;
            }
            if !more {
                return Ok(());
            }
        }
        Err(ring.nothing())
    }

    /// The next value, waiting for it.
    pub async fn recv(&mut self) -> Result<Live, RecvError> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next value, or `Pending` with the task woken by the next send (or the close).
    ///
    /// The wait is armed before each look at the ring, so that a send after the look wakes it,
    /// and it is in the ring's list of waiters only from a look that found nothing until the
    /// next send: a receiver that stops asking after it was given a value is not woken by the
    /// sends that follow.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Live, RecvError>> {
        let notify = &self.shared.notify;
        let waiter = self
            .waiter
            .get_or_insert_with(|| Box::pin(notify.clone().notified_owned()));
        loop {
            match take(&self.shared, &mut self.next) {
                Ok(val) => return Poll::Ready(Ok(val)),
                Err(TryRecvError::Lagged(n)) => return Poll::Ready(Err(RecvError::Lagged(n))),
                Err(TryRecvError::Closed) => return Poll::Ready(Err(RecvError::Closed)),
                Err(TryRecvError::Empty) => {
                    ready!(waiter.as_mut().poll(cx));
                    // Woken (and out of the list): armed anew, in place, before the next look.
                    waiter.set(notify.clone().notified_owned());
                }
            }
        }
    }

    /// The values as a stream that ends when the ring closes; a lag is an `Err(Lagged(n))`.
    pub fn into_stream(mut self) -> impl Stream<Item = Result<Live, RecvError>> + Send + 'static {
        futures_util::stream::poll_fn(move |cx| match ready!(self.poll_recv(cx)) {
            Err(RecvError::Closed) => Poll::Ready(None),
            item => Poll::Ready(Some(item)),
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut ring = self.shared.lock();
        ring.receivers -= 1;
        // Whatever this receiver had not read yet, it never will.
        for pos in self.next.max(ring.head)..ring.tail {
            let slot = ring.slot(pos);
            slot.rem = slot.rem.saturating_sub(1);
            if slot.rem == 0 {
                slot.val = None;
            }
        }
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("next", &self.next)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resync() -> Live {
        Live::Resync
    }

    fn send_n(tx: &Sender, n: usize) {
        for _ in 0..n {
            tx.send(resync()).unwrap();
        }
    }

    /// Counts its wake-ups.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A receiver that found nothing is woken by the next send; one that was given a value and
    /// asks for nothing more is not woken by the sends after it (a stream gathering for a
    /// scheduled write must not be woken per event).
    #[test]
    fn only_a_receiver_that_waits_is_woken() {
        let tx = channel(1024);
        let mut rx = tx.subscribe();
        let wakes = Arc::new(Wakes(Default::default()));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let count = || wakes.0.load(std::sync::atomic::Ordering::SeqCst);

        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.send(resync()).unwrap();
        assert_eq!(count(), 1);
        assert!(matches!(
            rx.poll_recv(&mut cx),
            Poll::Ready(Ok(Live::Resync))
        ));
        send_n(&tx, 3);
        assert_eq!(count(), 1, "woken after it stopped asking");
        for _ in 0..3 {
            assert!(matches!(
                rx.poll_recv(&mut cx),
                Poll::Ready(Ok(Live::Resync))
            ));
        }
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(tx);
        assert_eq!(count(), 2, "the close wakes it");
        assert!(matches!(
            rx.poll_recv(&mut cx),
            Poll::Ready(Err(RecvError::Closed))
        ));
    }

    #[test]
    fn an_idle_ring_is_small() {
        let tx = channel(1024);
        let _rx = tx.subscribe();
        assert_eq!(tx.slots(), RING_INITIAL);
        assert!(
            std::mem::size_of::<Slot>() <= 24,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }

    #[test]
    fn it_grows_instead_of_overwriting_what_is_unread() {
        let tx = channel(1024);
        let mut rx = tx.subscribe();
        send_n(&tx, 100);
        assert_eq!(tx.slots(), 128);
        for _ in 0..100 {
            assert!(rx.try_recv().is_ok());
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        // It grew since the last trim: it stays; then, drained and not grown, it shrinks.
        assert!(!tx.trim());
        assert!(tx.trim());
        assert_eq!(tx.slots(), RING_INITIAL);
        tx.send(resync()).unwrap();
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn a_read_ring_is_reused_not_grown() {
        let tx = channel(1024);
        let mut rx = tx.subscribe();
        for _ in 0..1000 {
            tx.send(resync()).unwrap();
            assert!(rx.try_recv().is_ok());
        }
        assert_eq!(tx.slots(), RING_INITIAL);
    }

    #[test]
    fn at_its_bound_a_slow_receiver_lags() {
        let tx = channel(32);
        let mut rx = tx.subscribe();
        send_n(&tx, 40);
        assert_eq!(tx.slots(), 32);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Lagged(8))));
        for _ in 0..32 {
            assert!(rx.try_recv().is_ok());
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    }

    #[test]
    fn a_dropped_receiver_releases_what_it_did_not_read() {
        let tx = channel(1024);
        let rx = tx.subscribe();
        let mut other = tx.subscribe();
        tx.send(resync()).unwrap();
        drop(rx);
        assert!(other.try_recv().is_ok());
        let ring = tx.shared.lock();
        assert!(!ring.unread());
        assert!(ring.slots.iter().all(|s| s.val.is_none()));
    }

    fn position(live: &Live) -> u64 {
        match live {
            Live::Event(e) => e.cursor.position.ms,
            Live::Resync => 0,
        }
    }

    fn numbered(n: u64) -> Live {
        use herald_core::{Cursor, Epoch, Event, EventData, EventType, Position};
        let event = Event {
            event_type: EventType::message(),
            data: EventData::from_text("x"),
        };
        let cursor = Cursor::new(Epoch(1), Position::new(n, 0));
        Live::Event(Arc::new(crate::LiveEvent::encode(cursor, &event)))
    }

    #[test]
    fn reading_each_takes_what_waits_in_order_and_stops_when_asked() {
        let tx = channel(1024);
        let mut rx = tx.subscribe();
        let mut other = tx.subscribe();
        for n in 1..=10 {
            tx.send(numbered(n)).unwrap();
        }
        let mut seen = Vec::new();
        let end = rx.try_recv_each(|live| {
            seen.push(position(live));
            seen.len() < 4
        });
        assert!(end.is_ok());
        assert_eq!(seen, [1, 2, 3, 4]);
        let end = rx.try_recv_each(|live| {
            seen.push(position(live));
            true
        });
        assert!(matches!(end, Err(TryRecvError::Empty)));
        assert_eq!(seen, (1..=10).collect::<Vec<_>>());
        // Read by one, the values are still there for the other, and freed once it has read.
        assert!(matches!(other.try_recv(), Ok(ref l) if position(l) == 1));
        assert!(matches!(
            other.try_recv_each(|_| true),
            Err(TryRecvError::Empty)
        ));
        assert!(tx.shared.lock().slots.iter().all(|s| s.val.is_none()));
        drop(tx);
        assert!(matches!(
            rx.try_recv_each(|_| true),
            Err(TryRecvError::Closed)
        ));
    }

    #[test]
    fn reading_each_reports_a_lag_before_reading() {
        let tx = channel(16);
        let mut rx = tx.subscribe();
        for n in 1..=20 {
            tx.send(numbered(n)).unwrap();
        }
        let mut seen = Vec::new();
        let end = rx.try_recv_each(|live| {
            seen.push(position(live));
            true
        });
        assert!(matches!(end, Err(TryRecvError::Lagged(4))));
        assert!(seen.is_empty());
        assert!(rx
            .try_recv_each(|live| {
                seen.push(position(live));
                true
            })
            .is_err());
        assert_eq!(seen, (5..=20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn closes_after_what_was_sent() {
        let tx = channel(16);
        let mut rx = tx.subscribe();
        assert!(tx.send(resync()).is_ok());
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        drop(tx);
        let (first, second) = waiting.await.unwrap();
        assert!(first.is_ok());
        assert!(matches!(second, Err(RecvError::Closed)));
    }

    /// Many receivers on several threads, woken or not as the sender races them: each sees
    /// strictly increasing positions, accounts for every event (read or reported lagged) and
    /// reaches the last one, so no wake-up is ever lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_receivers_miss_no_wake_up_and_account_for_every_event() {
        use herald_core::{Cursor, Epoch, Event, EventData, EventType, Position};
        const EVENTS: u64 = 20_000;
        let tx = channel(256);
        let receivers: Vec<_> = (0..8).map(|_| tx.subscribe()).collect();
        let readers: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(i, mut rx)| {
                tokio::spawn(async move {
                    let (mut last, mut seen) = (0u64, 0u64);
                    while last < EVENTS {
                        match rx.recv().await {
                            Ok(Live::Event(e)) => {
                                assert!(e.cursor.position.ms > last, "in order");
                                last = e.cursor.position.ms;
                                seen += 1;
                            }
                            Err(RecvError::Lagged(n)) => seen += n,
                            other => panic!("{other:?}"),
                        }
                        if i % 2 == 1 && last % 97 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    seen
                })
            })
            .collect();
        let event = Event {
            event_type: EventType::message(),
            data: EventData::from_text("x"),
        };
        for n in 1..=EVENTS {
            let cursor = Cursor::new(Epoch(1), Position::new(n, 0));
            tx.send(Live::Event(Arc::new(crate::LiveEvent::encode(
                cursor, &event,
            ))))
            .unwrap();
            if n % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for reader in readers {
            let seen = tokio::time::timeout(std::time::Duration::from_secs(20), reader)
                .await
                .expect("every receiver reaches the last event")
                .unwrap();
            assert_eq!(seen, EVENTS);
        }
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let tx = channel(16);
        let mut rx = tx.subscribe();
        let waiting = tokio::spawn(async move { rx.recv().await.is_ok() });
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        tx.send(resync()).unwrap();
        assert!(waiting.await.unwrap());
    }
}
