//! One open stream: what it has sent per channel, and the writes that carry its frames.
//!
//! Resume stays exact per channel (a [`Lane`]): live events are trusted only while the lane is
//! not catching up, and those at or before the last one sent are dropped. A lane catches up —
//! reads history after its own cursor — when it starts from a cursor, when it fell behind its
//! channel's ring (`Lagged`), when the broker lost its connection (`Resync`), and when the
//! channel began a new life; until that read has succeeded, its live events are left to history,
//! so a failed read can never move the cursor past events that were not sent.
//!
//! Writes coalesce adaptively. The socket write is the cost of a delivery (a few µs, against a
//! reference count for the frame), so a *busy* stream — one whose last two writes came within
//! [`EdgeConfig::coalesce`](crate::EdgeConfig) of each other — gathers what arrives until one
//! interval after its last write, and then writes it as one chunk; any other stream writes at
//! once. One event soon after another is common on a quiet channel (two of them by chance) and
//! must not wait; a third within the window is traffic, and batching pays. Everything already
//! waiting in the channel's ring is taken in the same wake-up (one lock of the ring, no
//! reference count per event), and a write never passes [`MAX_WRITE`] bytes (or the server's
//! [`WriteBound`]). A stream that has scheduled a write is not woken by the events it will
//! carry: they wait in the channel's ring (shared by all its subscribers) and are read when the
//! write is due, and a busy stream whose write carried events goes on gathering for the next
//! interval: one wake-up (its timer) per write while it stays busy, not one per event; an
//! interval that gathered nothing makes it quiet again. Likewise, while the connection cannot
//! take more, it stops asking for chunks, and events wait in the ring, not in the stream.
//!
//! Per stream this holds its lanes, one timer (the next flush or heartbeat), the chunk being
//! gathered and at most one history page ([`herald_replay::PAGE_BYTES`] of data); an idle
//! stream holds no buffer of its own. A [`Feed`] is its response's body, polled by the
//! connection (no stream adapter, and no future kept between chunks): it waits on its sources
//! directly (its ring's wait, its grant's signal, its timers), and the rare round trip — a
//! history read, a re-check of its grant — is a boxed future that exists only while it runs.
//! A frame is encoded once per event by the hub; a one-channel stream's lone frame is written
//! as the shared bytes themselves, and several frames (or a multi-channel stream's own `id:`
//! line and the shared body) are copied into one chunk, which costs far less than the writes
//! it saves.

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, SelectAll, StreamExt};
use herald_core::{sse, Cursor, Epoch, MultiCursor};
use herald_replay::{
    BrokerError, ChannelKey, ConnectionPermit, Gap, History, Live, LiveEvent, LiveReceiver,
    StoredEvent,
};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, Sleep};

use crate::meter::{Slow, StreamMeter};
use crate::reauth::Grant;
use crate::stream_end::{EndReason, StreamEnd};
use crate::subscribe::gap_frame;
use crate::EdgeState;

/// Events read from history per round trip while catching up.
const PAGE: usize = 256;
/// How long to wait before retrying a history read that failed.
const RETRY_READ: Duration = Duration::from_secs(1);
/// The most bytes one chunk gathers (a frame larger than this goes alone). The lean HTTP/1 path
/// has one chunk in flight; hyper (h2c, later requests of a kept-alive connection) queues up to
/// 16 of a connection that cannot take them yet, so this also bounds what a stalled reader holds
/// there: 256 KiB.
pub const MAX_WRITE: usize = 16 << 10;
/// The most bytes one chunk gathers on a connection that writes each chunk before asking for
/// the next (the lean HTTP/1 path: [`WriteBound`]). A busy channel's subscriber then needs a
/// few writes per second, not one per 16 KiB: at 1,600 events/s of 256 bytes that is the
/// difference between 29 writes a second per subscriber and the 8 its coalescing asks for.
pub const MAX_LEAN_WRITE: usize = 64 << 10;

/// A request extension, set by a server that writes a stream's chunks one at a time and holds
/// none queued: the most bytes a chunk may gather there. Without it, [`MAX_WRITE`].
#[derive(Debug, Clone, Copy)]
pub struct WriteBound(pub usize);

/// One channel of a stream.
pub struct Lane {
    pub key: ChannelKey,
    pub hash: u32,
    /// The last event sent (or the position live delivery started from).
    pub last: Option<Cursor>,
    /// Whether history must be read after `last` before live events can be trusted again.
    pub catching_up: bool,
    /// The hub's generation when the lane joined it at the channel's head, catching up: if
    /// that first read finds nothing, the hub is told ([`Broker::prime`]), and later
    /// subscribers of the channel skip the read.
    pub prime: Option<NonZeroU64>,
}

impl Lane {
    /// Whether a live event is to be sent, moving `last` to it if so.
    fn admit(&mut self, cursor: Cursor) -> bool {
        if self.catching_up {
            // History after `last` will bring it: the hub was joined before the read.
            return false;
        }
        match self.last {
            Some(last) if last.epoch != cursor.epoch => {
                // The channel's history began a new life while we were connected; let
                // history say what the client lost.
                self.catching_up = true;
                false
            }
            Some(last) if cursor.position <= last.position => false,
            _ => {
                self.last = Some(cursor);
                true
            }
        }
    }
}

/// The live feeds of a stream's channels: a lone receiver for one channel, merged otherwise.
pub enum LiveFeeds {
    One(LiveReceiver),
    Many(SelectAll<BoxStream<'static, Item>>),
}

/// What a live feed gave.
pub enum Item {
    Live(usize, Live),
    /// The lane fell behind its channel's ring.
    Lagged(usize),
    /// The hub closed a channel (ended by the control plane).
    Closed,
}

impl LiveFeeds {
    pub fn many(receivers: Vec<LiveReceiver>) -> Self {
        let mut all = SelectAll::new();
        for (i, rx) in receivers.into_iter().enumerate() {
            all.push(
                rx.into_stream()
                    .map(move |item| match item {
                        Ok(live) => Item::Live(i, live),
                        Err(RecvError::Lagged(_)) => Item::Lagged(i),
                        // The ring's stream ends at its close instead; if not, it is one.
                        Err(RecvError::Closed) => Item::Closed,
                    })
                    .chain(futures_util::stream::once(async { Item::Closed }))
                    .boxed(),
            );
        }
        Self::Many(all)
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Item> {
        match self {
            Self::One(rx) => rx.poll_recv(cx).map(|item| match item {
                Ok(live) => Item::Live(0, live),
                Err(RecvError::Lagged(_)) => Item::Lagged(0),
                Err(RecvError::Closed) => Item::Closed,
            }),
            Self::Many(all) => all
                .poll_next_unpin(cx)
                .map(|item| item.unwrap_or(Item::Closed)),
        }
    }
}

/// The chunk being gathered for the next write.
#[derive(Default)]
struct Chunk {
    /// A lone shared frame, written as is.
    single: Option<Bytes>,
    /// Frames copied together, once there is more than one.
    buf: BytesMut,
    /// Events in it (a gap counts; the `retry:` line and heartbeats do not).
    events: u64,
    /// When the oldest live event in it reached this process.
    since: Option<std::time::Instant>,
    /// How long the last copied chunk was: the next one reserves that much at once, instead
    /// of growing (and copying itself) by doubling through a burst.
    hint: u32,
}

impl Chunk {
    fn len(&self) -> usize {
        self.single.as_ref().map_or(0, Bytes::len) + self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.single.is_none() && self.buf.is_empty()
    }

    fn push(&mut self, frame: Bytes) {
        if self.is_empty() {
            self.single = Some(frame);
        } else {
            self.buf().extend_from_slice(&frame);
        }
    }

    /// [`Chunk::push`] of a shared frame seen by reference: cloned only if it goes alone.
    fn push_ref(&mut self, frame: &Bytes) {
        if self.is_empty() {
            self.single = Some(frame.clone());
        } else {
            self.buf().extend_from_slice(frame);
        }
    }

    /// The buffer to append to, holding whatever was gathered before.
    fn buf(&mut self) -> &mut BytesMut {
        if let Some(first) = self.single.take() {
            self.buf
                .reserve((first.len() + 512).max(self.hint as usize));
            self.buf.extend_from_slice(&first);
        }
        &mut self.buf
    }

    /// The gathered bytes. A copied chunk leaves with its whole allocation: `split()` would
    /// keep the spare capacity here, and with it the allocation, for as long as the stream
    /// stays idle.
    fn take(&mut self) -> (Bytes, u64, Option<std::time::Instant>) {
        let bytes = match self.single.take() {
            Some(b) => b,
            None => {
                self.hint = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
                std::mem::take(&mut self.buf).freeze()
            }
        };
        (bytes, std::mem::take(&mut self.events), self.since.take())
    }
}

/// A history page being written out.
struct Page {
    lane: usize,
    epoch: Epoch,
    events: std::vec::IntoIter<StoredEvent>,
}

/// What a stream waits for besides its events, on the heap only while it runs: a store or
/// broker round trip makes a future of several KiB, which an idle stream must not carry.
type Work = Pin<Box<dyn Future<Output = Done> + Send>>;

/// What the stream's in-flight work gave.
enum Done {
    /// A history page of lane `.0`.
    Read(usize, Result<History, BrokerError>),
    /// The grant, re-checked: why the stream must end, if it must; and, for the check of a
    /// quiet moment, when that was (a heartbeat then goes).
    Checked(Grant, Option<EndReason>, Option<Instant>),
}

/// One subscriber's stream: its channels, what it has still to send, and its live feeds.
pub struct Feed {
    state: EdgeState,
    /// What opened the stream, checked again when the control plane changes (away while it is
    /// being checked).
    grant: Option<Grant>,
    /// The history read or grant check under way.
    work: Option<Work>,
    /// The span of the stream's catch-up, entered until its first chunk.
    replay: Option<Box<tracing::Span>>,
    /// Counts the connection against the tenant's quota until the stream ends.
    _permit: ConnectionPermit,
    meter: StreamMeter,
    /// Logs the stream's end.
    end: StreamEnd,
    lanes: Vec<Lane>,
    multi: bool,
    live: LiveFeeds,
    chunk: Chunk,
    page: Option<Box<Page>>,
    /// When the gathered chunk is to be written, if it waits.
    flush_at: Option<Instant>,
    /// When the stream last wrote (for a write at once, when the event that went out arrived).
    last_write: Instant,
    /// Whether the last write came within one coalescing interval of the one before: the
    /// stream is busy, and gathers.
    busy: bool,
    /// Whether the write about to go out was a busy stream's scheduled one that carried
    /// events: the stream then goes on gathering without being woken by each event.
    gathering: bool,
    /// Fires at `flush_at`, or at the next heartbeat.
    timer: Pin<Box<Sleep>>,
    retry_read: Option<Pin<Box<Sleep>>>,
    /// The hub closed a channel: write what is gathered, then end.
    ending: bool,
    /// The most bytes a chunk gathers: [`MAX_WRITE`] or the server's [`WriteBound`].
    max_write: usize,
}

impl Feed {
    /// A stream that starts by writing `first` (the `retry:` line and any early gaps).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        state: EdgeState,
        grant: Grant,
        permit: ConnectionPermit,
        meter: StreamMeter,
        end: StreamEnd,
        lanes: Vec<Lane>,
        multi: bool,
        live: LiveFeeds,
        first: Vec<(Bytes, bool)>,
        bound: Option<WriteBound>,
        replay: Option<tracing::Span>,
    ) -> Self {
        let mut chunk = Chunk::default();
        for (frame, event) in first {
            chunk.events += u64::from(event);
            chunk.push(frame);
        }
        let now = Instant::now();
        let timer = Box::pin(tokio::time::sleep_until(now + state.config.heartbeat));
        // The `retry:` line is not traffic: the first event finds the stream quiet.
        let last_write = now.checked_sub(state.config.coalesce).unwrap_or(now);
        Self {
            state,
            grant: Some(grant),
            work: None,
            replay: replay.map(Box::new),
            _permit: permit,
            meter,
            end,
            lanes,
            multi,
            live,
            chunk,
            page: None,
            flush_at: None,
            last_write,
            busy: false,
            gathering: false,
            timer,
            retry_read: None,
            ending: false,
            max_write: bound.map_or(MAX_WRITE, |WriteBound(n)| n.max(1)),
        }
    }

    /// The next chunk of the response body; `None` ends the stream.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        // The catch-up's span covers the stream until its first chunk.
        let Some(replay) = self.replay.take() else {
            return self.poll_chunk(cx);
        };
        let next = replay.in_scope(|| self.poll_chunk(cx));
        if next.is_pending() {
            self.replay = Some(replay);
        }
        next
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if let Some(work) = self.work.as_mut() {
                let done = ready!(work.as_mut().poll(cx));
                self.work = None;
                match done {
                    Done::Read(i, history) => self.read(i, history),
                    Done::Checked(grant, lost, quiet) => {
                        self.grant = Some(grant);
                        if let Some(reason) = lost {
                            self.end.ending(reason);
                            return Poll::Ready(None);
                        }
                        if let Some(now) = quiet {
                            self.last_write = now;
                            self.rearm_heartbeat();
                            self.chunk.push(Bytes::from_static(sse::KEEPALIVE));
                        }
                    }
                }
                continue;
            }
            if self.page.is_some() {
                self.fill_from_page();
                self.last_write = Instant::now();
                return Poll::Ready(Some(self.write()));
            }
            if self.ending {
                return Poll::Ready((!self.chunk.is_empty()).then(|| self.write()));
            }
            if self.retry_read.is_none() {
                if let Some(i) = self.lanes.iter().position(|l| l.catching_up) {
                    self.start_read(i);
                    continue;
                }
            }
            if !self.chunk.is_empty() && self.flush_at.is_none() {
                let bytes = self.write();
                if std::mem::take(&mut self.gathering) {
                    // Still busy: the next write is one interval after this one, and what
                    // comes meanwhile waits in the ring for it.
                    let next = self.last_write + self.state.config.coalesce;
                    self.flush_at = Some(next);
                    self.timer.as_mut().reset(next);
                }
                return Poll::Ready(Some(bytes));
            }
            // The process is draining, or the credential may have lost its grant: end the
            // stream (a revoked one's reconnect is refused). First, so that no flow of events
            // keeps either waiting. One signal for both: a stream waits on the process's
            // shutdown only through its tenant's signal, a child of it.
            let grant = self
                .grant
                .as_mut()
                .expect("the grant is here while no check runs");
            if grant.poll_changed(cx).is_ready() {
                if self.state.shutdown.is_cancelled() {
                    self.end.ending(EndReason::Drain);
                    return Poll::Ready(None);
                }
                self.start_check(None);
                continue;
            }
            // A stream gathering for a write it has scheduled is not woken by each event: they
            // wait in the channel's ring and are read at once when the write is due.
            if self.flush_at.is_none() {
                if let Poll::Ready(item) = self.live.poll_next(cx) {
                    let newest = self.take(item);
                    let newest = self.take_ready().or(newest);
                    if let Some(at) = newest {
                        self.schedule(Instant::from_std(at));
                    }
                    continue;
                }
            }
            if let Some(retry) = self.retry_read.as_mut() {
                if retry.as_mut().poll(cx).is_ready() {
                    self.retry_read = None;
                    continue;
                }
            }
            ready!(self.timer.as_mut().poll(cx));
            if let Some(at) = self.flush_at.take() {
                self.take_ready();
                // A window that gathered nothing ends the busy spell: the stream listens
                // again, and its next event, one interval or more after the last write, goes
                // at once.
                if !self.chunk.is_empty() {
                    self.last_write = at;
                    // A full chunk leaves more waiting: that goes at once.
                    self.gathering = self.busy && !self.ending && self.chunk.len() < self.max_write;
                }
                self.rearm_heartbeat();
                continue;
            }
            let due = self.last_write + self.state.config.heartbeat;
            let now = Instant::now();
            if now < due {
                self.timer.as_mut().reset(due);
                continue;
            }
            // A quiet moment to re-check the grant (cached lookups), for processes that
            // missed an announcement of a change; the heartbeat goes after it. The timer is
            // re-armed then: until then it stays fired and is not polled (the check is).
            self.start_check(Some(now));
        }
    }

    /// Starts re-checking the grant; `quiet` is the moment of a heartbeat that waits for it.
    fn start_check(&mut self, quiet: Option<Instant>) {
        let mut grant = self.grant.take().expect("one check at a time");
        let state = self.state.clone();
        self.work = Some(Box::pin(async move {
            let lost = grant.lost(&state).await;
            Done::Checked(grant, lost, quiet)
        }));
    }

    /// Hands the gathered chunk to the connection.
    fn write(&mut self) -> Bytes {
        let (bytes, events, since) = self.chunk.take();
        self.flush_at = None;
        self.meter.wrote(bytes.len(), events, since);
        self.end.delivered(events);
        bytes
    }

    /// Decides when the gathered chunk goes, given that the newest event in it arrived at `at`:
    /// at once when the chunk is full or the stream is not busy, else one interval after the
    /// last write. `at` is the event's own arrival time, read once per event by the hub: no
    /// clock is read here.
    fn schedule(&mut self, at: Instant) {
        if self.chunk.len() >= self.max_write {
            self.flush_at = None;
            self.last_write = at;
            return;
        }
        if self.flush_at.is_some() {
            return;
        }
        let next = self.last_write + self.state.config.coalesce;
        if at >= next || !self.busy {
            // Written at once; the stream turns busy if this write follows the last one within
            // the interval, and quiet again once one interval passes without a write.
            self.busy = at < next;
            self.last_write = at;
        } else {
            self.flush_at = Some(next);
            self.timer.as_mut().reset(next);
        }
    }

    fn rearm_heartbeat(&mut self) {
        let at = self.last_write + self.state.config.heartbeat;
        self.timer.as_mut().reset(at);
    }

    /// Gathers one live item; returns when its event arrived, if it is to be sent.
    fn take(&mut self, item: Item) -> Option<std::time::Instant> {
        match item {
            Item::Live(i, Live::Event(event)) => {
                gather(&mut self.lanes, &mut self.chunk, self.multi, i, &event)
            }
            Item::Live(i, Live::Resync) => {
                self.resync(i);
                None
            }
            Item::Lagged(i) => {
                self.meter.slow(Slow::Lagged);
                self.lanes[i].catching_up = true;
                None
            }
            // A reconnect is checked anew.
            Item::Closed => {
                self.end.ending(EndReason::Closed);
                self.ending = true;
                None
            }
        }
    }

    fn resync(&mut self, i: usize) {
        self.meter.slow(Slow::Resync);
        self.lanes[i].catching_up = true;
    }

    /// Gathers what is already waiting, without waiting, up to the chunk's bound; returns when
    /// the newest event gathered arrived. A lone channel's burst is read under one lock of its
    /// ring, each event seen in place (no reference count taken).
    fn take_ready(&mut self) -> Option<std::time::Instant> {
        let max = self.max_write;
        let mut newest = None;
        if let LiveFeeds::One(rx) = &mut self.live {
            if self.ending || self.chunk.len() >= max {
                return None;
            }
            let (lanes, chunk, multi) = (&mut self.lanes, &mut self.chunk, self.multi);
            let mut resync = false;
            let end = rx.try_recv_each(|live| {
                match live {
                    Live::Event(event) => {
                        newest = gather(lanes, chunk, multi, 0, event).or(newest);
                    }
                    Live::Resync => resync = true,
                }
                chunk.len() < max
            });
            if resync {
                self.resync(0);
            }
            // Neither gathers an event.
            match end {
                Ok(()) | Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Lagged(_)) => _ = self.take(Item::Lagged(0)),
                Err(TryRecvError::Closed) => _ = self.take(Item::Closed),
            }
            return newest;
        }
        while self.chunk.len() < max && !self.ending {
            let LiveFeeds::Many(all) = &mut self.live else {
                break;
            };
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let Poll::Ready(item) = all.poll_next_unpin(&mut cx) else {
                break;
            };
            newest = self.take(item.unwrap_or(Item::Closed)).or(newest);
        }
        newest
    }

    /// Starts reading one page of lane `i`'s history after its `last`.
    fn start_read(&mut self, i: usize) {
        let (key, after) = (self.lanes[i].key.clone(), self.lanes[i].last);
        let broker = self.state.broker.clone();
        self.work = Some(Box::pin(async move {
            Done::Read(i, broker.read(&key, after, PAGE).await)
        }));
    }

    /// Takes in a history page of lane `i`.
    fn read(&mut self, i: usize, history: Result<History, BrokerError>) {
        let prime = match &history {
            Ok(_) => self.lanes[i].prime.take(),
            Err(_) => None,
        };
        let key = &self.lanes[i].key;
        match history {
            Ok(history) => {
                let nothing_after = history.events.is_empty() && history.gap.is_none();
                if let Some(generation) = prime.filter(|_| nothing_after && !history.full) {
                    let start = self.lanes[i].last;
                    self.state.broker.prime(key, start, generation.get());
                }
                if let Some(gap) = history.gap {
                    self.chunk.push(gap_frame(&key.channel, gap));
                    self.chunk.events += 1;
                    if gap == Gap::InvalidCursor {
                        self.lanes[i].last = None;
                    }
                }
                self.lanes[i].catching_up = history.full;
                if !history.events.is_empty() {
                    self.page = Some(Box::new(Page {
                        lane: i,
                        epoch: history.epoch,
                        events: history.events.into_iter(),
                    }));
                }
            }
            Err(e) => {
                // The stream stays open (heartbeats continue) and tries again.
                tracing::warn!(channel = %key, error = %e, "history read failed; retrying");
                self.retry_read = Some(Box::pin(tokio::time::sleep(RETRY_READ)));
            }
        }
    }

    /// Encodes the page's next events into the chunk, up to its bound.
    fn fill_from_page(&mut self) {
        let Some(page) = self.page.as_mut() else {
            return;
        };
        let (i, epoch) = (page.lane, page.epoch);
        while self.chunk.len() < self.max_write {
            let Some(e) = self.page.as_mut().and_then(|p| p.events.next()) else {
                self.page = None;
                return;
            };
            let cursor = Cursor::new(epoch, e.position);
            self.lanes[i].last = Some(cursor);
            let id = if self.multi {
                multi_cursor(&self.lanes).encode()
            } else {
                cursor.to_string()
            };
            let data = e.event.data.rendered();
            sse::write_event(self.chunk.buf(), Some(&id), &e.event.event_type, &data);
            self.chunk.events += 1;
        }
        if self.page.as_ref().is_some_and(|p| p.events.len() == 0) {
            self.page = None;
        }
    }
}

/// A stream is the body of its response: its chunks as they come, its end when it ends.
impl http_body::Body for Feed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .poll_next(cx)
            .map(|chunk| chunk.map(|bytes| Ok(http_body::Frame::data(bytes))))
    }
}

/// Gathers one live event of lane `i` into `chunk`; returns when it arrived, if it is to be
/// sent. A one-channel stream's frame is the shared one; a multi-channel stream writes its own
/// `id:` line before the shared body.
fn gather(
    lanes: &mut [Lane],
    chunk: &mut Chunk,
    multi: bool,
    i: usize,
    event: &LiveEvent,
) -> Option<std::time::Instant> {
    if !lanes[i].admit(event.cursor) {
        return None;
    }
    if multi {
        let id = multi_cursor(lanes).encode();
        let buf = chunk.buf();
        sse::write_id(buf, &id);
        buf.extend_from_slice(event.body());
    } else {
        chunk.push_ref(event.frame());
    }
    chunk.events += 1;
    chunk.since.get_or_insert(event.at);
    Some(event.at)
}

fn multi_cursor(lanes: &[Lane]) -> MultiCursor {
    let mut m = MultiCursor::default();
    for lane in lanes {
        m.set(lane.hash, lane.last);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{ChannelName, Position, TenantSlug};

    fn lane(last: u64, catching_up: bool) -> Lane {
        Lane {
            key: ChannelKey::new(
                TenantSlug::parse("acme").unwrap(),
                ChannelName::parse("c").unwrap(),
            ),
            hash: 0,
            last: Some(at(last)),
            catching_up,
            prime: None,
        }
    }

    fn at(n: u64) -> Cursor {
        Cursor::new(Epoch(7), Position::new(n, 0))
    }

    #[test]
    fn live_events_after_the_cursor_are_sent_once_in_order() {
        let mut l = lane(5, false);
        assert!(!l.admit(at(4)));
        assert!(!l.admit(at(5)));
        assert!(l.admit(at(6)));
        assert!(!l.admit(at(6)));
        assert_eq!(l.last, Some(at(6)));
    }

    /// A lane whose history read failed must not let live events move its cursor: the events
    /// between would then never be read, and no gap said.
    #[test]
    fn a_lane_catching_up_leaves_live_events_to_history() {
        let mut l = lane(5, true);
        assert!(!l.admit(at(9)));
        assert_eq!(l.last, Some(at(5)));
        assert!(l.catching_up);
    }

    #[test]
    fn a_new_life_of_the_history_is_caught_up_from_history() {
        let mut l = lane(5, false);
        assert!(!l.admit(Cursor::new(Epoch(8), Position::new(1, 0))));
        assert!(l.catching_up);
        assert_eq!(l.last, Some(at(5)));
    }

    #[test]
    fn a_lone_frame_is_written_as_the_shared_bytes() {
        let mut c = Chunk::default();
        let frame = Bytes::from_static(b"data: a\n\n");
        c.push(frame.clone());
        let (bytes, _, _) = c.take();
        assert_eq!(bytes.as_ptr(), frame.as_ptr());
        c.push(frame.clone());
        c.push(Bytes::from_static(b"data: b\n\n"));
        assert_eq!(&c.take().0[..], b"data: a\n\ndata: b\n\n");
        assert!(c.is_empty());
    }
}
