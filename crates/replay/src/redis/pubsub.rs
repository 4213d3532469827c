//! The fan-out task: the one owner of the pub/sub side, which subscribes to the channels that
//! have local subscribers, hands announcements to the hub, and resubscribes after a reconnect.
//!
//! Its loop never waits for Redis: a subscribe or an unsubscribe is a spawned task whose answer
//! comes back as a message, and the counts a process reports are written by another task
//! ([`super::report`]). While a subscribe is in flight, announcements of its channel are held
//! back and handed on once the callers are joined, so none falls between the confirmation and
//! the join; one slow round trip therefore stalls no channel's fan-out.
//!
//! On one Redis this is one pub/sub connection, reconnected as a whole. On Redis Cluster it is
//! the cluster client's connection to each master, with `SSUBSCRIBE`: announcements stay on the
//! shard of their channel. The client resubscribes a node by itself after a reconnect or a
//! slot-map refresh; when a slot moves, the old owner ends its shard channels (`sunsubscribe`)
//! and this task subscribes again (the client follows `MOVED` to the new owner). Every
//! confirmation of a channel already followed means announcements may have been lost meanwhile,
//! so its subscribers resync from history.

use std::collections::HashSet;

use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind};

use super::*;

/// Where subscriptions are made: cheap to clone into a spawned task.
#[derive(Clone)]
pub(super) enum Subscriber {
    Single(PubSubSink),
    Cluster(ClusterConnection),
}

impl Subscriber {
    async fn subscribe(self, names: Vec<String>) -> Result<(), BrokerError> {
        let round_trip = async {
            match self {
                Subscriber::Single(mut sink) => sink.subscribe(&names).await,
                // A shard subscription names one slot: one command per channel.
                Subscriber::Cluster(con) => {
                    futures_util::future::try_join_all(names.iter().map(|n| {
                        let mut con = con.clone();
                        async move { con.ssubscribe(n).await }
                    }))
                    .await
                    .map(drop)
                }
            }
        };
        tokio::time::timeout(COMMAND_TIMEOUT, round_trip)
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
    }

    async fn unsubscribe(self, names: Vec<String>) -> Result<(), BrokerError> {
        let round_trip = async {
            match self {
                Subscriber::Single(mut sink) => sink.unsubscribe(&names).await,
                Subscriber::Cluster(con) => {
                    futures_util::future::try_join_all(names.iter().map(|n| {
                        let mut con = con.clone();
                        async move { con.sunsubscribe(n).await }
                    }))
                    .await
                    .map(drop)
                }
            }
        };
        tokio::time::timeout(COMMAND_TIMEOUT, round_trip)
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
    }
}

/// What arrives from Redis.
enum Incoming {
    Message {
        name: String,
        payload: Vec<u8>,
    },
    /// A shard subscription confirmed (Redis Cluster).
    Confirmed(String),
    /// A shard subscription ended by the server: its slot moved (Redis Cluster).
    Dropped(String),
    /// A node's connection was lost; the client reconnects it (Redis Cluster).
    Disconnected,
}

/// What the task reads from.
pub(super) enum Source {
    Single(PubSubStream),
    Cluster(mpsc::UnboundedReceiver<PushInfo>),
}

impl Source {
    /// The next thing Redis sent; `None` when the connection is gone (one Redis only).
    async fn next(&mut self) -> Option<Incoming> {
        match self {
            Source::Single(stream) => {
                let msg = stream.next().await?;
                Some(Incoming::Message {
                    name: msg.get_channel_name().to_owned(),
                    payload: msg.get_payload_bytes().to_vec(),
                })
            }
            Source::Cluster(pushes) => loop {
                let PushInfo { kind, data } = pushes.recv().await?;
                let mut data = data.into_iter();
                let name = data
                    .next()
                    .and_then(|v| redis::from_redis_value::<String>(v).ok());
                let incoming = match (kind, name) {
                    (PushKind::Disconnection, _) => Incoming::Disconnected,
                    (PushKind::Message | PushKind::SMessage, Some(name)) => {
                        match data.next().map(redis::from_redis_value::<Vec<u8>>) {
                            Some(Ok(payload)) => Incoming::Message { name, payload },
                            _ => continue,
                        }
                    }
                    (PushKind::SSubscribe, Some(name)) => Incoming::Confirmed(name),
                    (PushKind::SUnsubscribe, Some(name)) => Incoming::Dropped(name),
                    _ => continue,
                };
                return Some(incoming);
            },
        }
    }
}

/// A subscribe in flight: who waits for it, and what arrived for it meanwhile.
struct Pending {
    key: ChannelKey,
    /// Tells this subscribe's answer from a later one's for the same channel.
    generation: u64,
    waiters: Vec<(Option<Cursor>, oneshot::Sender<Subscription>)>,
    held: Vec<Vec<u8>>,
    /// Whether its confirmation push has arrived (Redis Cluster), which may come before or
    /// after the subscribe's answer.
    confirmed: bool,
}

/// The answer of a spawned subscribe.
struct Done {
    names: Vec<(String, u64)>,
    result: Result<(), BrokerError>,
}

/// The one task that owns the pub/sub side.
pub(super) struct PubSubActor {
    /// Connects again (one Redis only).
    pub(super) client: Option<redis::Client>,
    pub(super) shared: Arc<Shared>,
    pub(super) keys: Keys,
    pub(super) commands: mpsc::Receiver<Command>,
    /// Channels subscribed, by announce name.
    pub(super) subscribed: HashMap<String, ChannelKey>,
    pending: HashMap<String, Pending>,
    generation: u64,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    /// Shard channels the server ended while they were still followed (Redis Cluster): being
    /// subscribed again.
    lost: HashSet<String>,
    /// Channels this task subscribed whose confirmation push is still to come (Redis Cluster):
    /// that one is no resubscription.
    unconfirmed: HashSet<String>,
}

impl PubSubActor {
    pub(super) fn new(
        client: Option<redis::Client>,
        shared: Arc<Shared>,
        keys: Keys,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            client,
            shared,
            keys,
            commands,
            subscribed: HashMap::new(),
            pending: HashMap::new(),
            generation: 0,
            done_tx,
            done_rx,
            lost: HashSet::new(),
            unconfirmed: HashSet::new(),
        }
    }

    pub(super) async fn run(mut self, first: (Subscriber, Source)) {
        let mut connection = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            let (subscriber, source) = match connection.take() {
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
            if self.serve(subscriber, source).await.is_break() {
                return;
            }
            self.shared.up.store(false, Ordering::Release);
            tracing::warn!("redis pub/sub connection lost; reconnecting");
        }
    }

    /// Connects again (one Redis) and restores every subscription the hub still needs;
    /// subscribers then resync from history, since announcements may have been lost meanwhile.
    async fn reconnect(&mut self) -> Option<(Subscriber, Source)> {
        let client = self.client.as_ref()?;
        let pubsub = tokio::time::timeout(COMMAND_TIMEOUT, client.get_async_pubsub())
            .await
            .ok()?
            .ok()?;
        let (mut sink, stream) = pubsub.split();
        tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(self.keys.control()))
            .await
            .ok()?
            .ok()?;
        self.subscribed.clear();
        self.refuse_pending();
        let keys = self.shared.hub.keys();
        if !keys.is_empty() {
            let names: Vec<String> = keys.iter().map(|k| self.keys.announce(k)).collect();
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
        let stats = &self.shared.stats;
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        let resynced = self.shared.hub.resync_all();
        stats.resyncs.fetch_add(resynced as u64, Ordering::Relaxed);
        Some((Subscriber::Single(sink), Source::Single(stream)))
    }

    /// Answers queued and in-flight subscribes while the connection is down: dropping the reply
    /// tells the caller the broker is unavailable.
    fn refuse_pending(&mut self) {
        while let Ok(Command::Subscribe { .. }) = self.commands.try_recv() {}
        self.pending.clear();
    }

    async fn serve(
        &mut self,
        subscriber: Subscriber,
        mut source: Source,
    ) -> std::ops::ControlFlow<()> {
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                incoming = source.next() => {
                    let Some(incoming) = incoming else {
                        return std::ops::ControlFlow::Continue(());
                    };
                    self.incoming(&subscriber, incoming);
                }
                Some(done) = self.done_rx.recv() => {
                    if self.subscribed_or_refused(done).is_err()
                        && matches!(subscriber, Subscriber::Single(_))
                    {
                        return std::ops::ControlFlow::Continue(());
                    }
                }
                command = self.commands.recv() => {
                    let Some(command) = command else { return std::ops::ControlFlow::Break(()) };
                    self.subscribe(&subscriber, command);
                }
                _ = sweep.tick() => self.sweep(&subscriber),
            }
        }
    }

    fn incoming(&mut self, subscriber: &Subscriber, incoming: Incoming) {
        match incoming {
            Incoming::Message { name, payload } => self.announce(&name, payload),
            Incoming::Confirmed(name) => {
                self.lost.remove(&name);
                // The confirmation of a subscribe this task made is no news; any other of a
                // followed channel is a resubscription after announcements may have been lost.
                if let Some(pending) = self.pending.get_mut(&name) {
                    pending.confirmed = true;
                } else if !self.unconfirmed.remove(&name) {
                    if let Some(key) = self.subscribed.get(&name) {
                        if self.shared.hub.resync(key) {
                            self.shared.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Incoming::Dropped(name) => {
                if self.subscribed.contains_key(&name) && self.lost.insert(name.clone()) {
                    tracing::info!(channel = %name, "shard channel moved; subscribing again");
                    self.resubscribe(subscriber, vec![name]);
                }
            }
            Incoming::Disconnected => {
                // The client reconnects and resubscribes the node by itself; should the node be
                // gone for good, subscribing again makes the client find the channels' new
                // owners. Each confirmation then resyncs its channel.
                let names: Vec<String> = self.subscribed.keys().cloned().collect();
                tracing::warn!("a redis cluster node connection was lost");
                self.shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                self.resubscribe(subscriber, names);
            }
        }
    }

    /// Subscribes `names` again until it works (Redis Cluster; a slot may be in the middle of
    /// moving), in a task of its own.
    fn resubscribe(&self, subscriber: &Subscriber, names: Vec<String>) {
        let subscriber = subscriber.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(50);
            for _ in 0..40 {
                tokio::time::sleep(wait).await;
                match subscriber.clone().subscribe(names.clone()).await {
                    Ok(()) => return,
                    Err(e) => tracing::debug!(error = %e, "resubscribing; trying again"),
                }
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            tracing::warn!("could not resubscribe moved shard channels");
        });
    }

    /// Starts subscribing the channels of this and every other queued command, in one spawned
    /// round trip; callers of channels already followed are joined at once.
    fn subscribe(&mut self, subscriber: &Subscriber, first: Command) {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match self.commands.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut fresh = Vec::new();
        for Command::Subscribe { key, head, reply } in batch {
            let name = self.keys.announce(&key);
            if self.subscribed.contains_key(&name) {
                let _ = reply.send(self.shared.hub.join_or_create(&key, head, false));
            } else if let Some(pending) = self.pending.get_mut(&name) {
                pending.waiters.push((head, reply));
            } else {
                self.generation += 1;
                fresh.push((name.clone(), self.generation));
                self.pending.insert(
                    name,
                    Pending {
                        key,
                        generation: self.generation,
                        waiters: vec![(head, reply)],
                        held: Vec::new(),
                        confirmed: false,
                    },
                );
            }
        }
        if fresh.is_empty() {
            return;
        }
        let (subscriber, done) = (subscriber.clone(), self.done_tx.clone());
        tokio::spawn(async move {
            let names = fresh.iter().map(|(n, _)| n.clone()).collect();
            let result = subscriber.subscribe(names).await;
            let _ = done.send(Done {
                names: fresh,
                result,
            });
        });
    }

    /// A spawned subscribe answered: its callers join the hub, then get what was held back for
    /// them; or, when it failed, are refused.
    fn subscribed_or_refused(&mut self, done: Done) -> Result<(), BrokerError> {
        for (name, generation) in done.names {
            if self
                .pending
                .get(&name)
                .is_none_or(|p| p.generation != generation)
            {
                continue;
            }
            let Some(pending) = self.pending.remove(&name) else {
                continue;
            };
            if done.result.is_err() {
                continue;
            }
            for (head, reply) in pending.waiters {
                let _ = reply.send(self.shared.hub.join_or_create(&pending.key, head, false));
            }
            if self.keys.cluster && !pending.confirmed {
                self.unconfirmed.insert(name.clone());
            }
            self.subscribed.insert(name.clone(), pending.key);
            for payload in pending.held {
                self.announce(&name, payload);
            }
        }
        done.result
    }

    /// Unsubscribes whatever the hub no longer follows: idle channels, and channels whose
    /// streams were ended.
    fn sweep(&mut self, subscriber: &Subscriber) {
        self.shared.hub.sweep();
        let followed: HashSet<ChannelKey> = self.shared.hub.keys().into_iter().collect();
        let idle: Vec<String> = self
            .subscribed
            .iter()
            .filter(|(_, key)| !followed.contains(*key))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &idle {
            self.subscribed.remove(name);
            self.lost.remove(name);
            self.unconfirmed.remove(name);
        }
        if !idle.is_empty() {
            let subscriber = subscriber.clone();
            tokio::spawn(async move {
                // One that fails costs only announcements nobody reads.
                if let Err(e) = subscriber.unsubscribe(idle).await {
                    tracing::debug!(error = %e, "cannot unsubscribe idle channels");
                }
            });
        }
    }

    fn announce(&mut self, name: &str, payload: Vec<u8>) {
        if let Some(pending) = self.pending.get_mut(name) {
            pending.held.push(payload);
            return;
        }
        let Some(key) = self.subscribed.get(name) else {
            if name == self.keys.control() {
                match parse_order(&payload) {
                    Some(Order::End(target)) => self.shared.hub.close(&target),
                    Some(Order::Recheck(target)) => self.shared.hub.recheck(&target),
                    None => tracing::warn!("unreadable control order ignored"),
                }
            }
            return;
        };
        match parse_announcement(&payload) {
            Some((cursor, event, trace)) => {
                crate::trace::fanout(key, cursor, trace, || {
                    self.shared
                        .hub
                        .publish(key, LiveEvent::encode(cursor, &event))
                });
            }
            None => tracing::warn!(channel = %key, "unreadable announcement ignored"),
        }
    }
}
