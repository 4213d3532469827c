//! The pub/sub task: the one owner of the pub/sub connection, which subscribes to the channels
//! that have local subscribers, hands announcements to the hub, reports this process's
//! subscriber and connection counts, and resubscribes after a reconnect.

use super::*;

/// The one task that owns the pub/sub connection.
pub(super) struct PubSubActor {
    pub(super) client: redis::Client,
    /// Connections given back since they were last written.
    pub(super) released: mpsc::UnboundedReceiver<TenantSlug>,
    pub(super) con: ConnectionManager,
    pub(super) process: String,
    /// The counts last written for this process, so only changes are written.
    pub(super) reported: HashMap<ChannelKey, usize>,
    /// Tenants whose connection count this process last reported as non-zero.
    pub(super) reported_tenants: Vec<TenantSlug>,
    pub(super) shared: Arc<Shared>,
    pub(super) prefix: String,
    pub(super) commands: mpsc::Receiver<Command>,
    /// Channels subscribed on the current connection, by announce name.
    pub(super) subscribed: HashMap<String, ChannelKey>,
}

impl PubSubActor {
    pub(super) async fn run(mut self, first: (PubSubSink, PubSubStream)) {
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
