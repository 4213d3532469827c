//! The report task: proves this process alive, writes its subscriber counts and its exact
//! connection counts every [`REPORT_EVERY`], and gives released connections back as they come.
//! It is a task of its own so that a slow Redis round trip here never holds up fan-out.

use super::*;

pub(super) struct Reporter {
    pub(super) con: Con,
    pub(super) keys: Keys,
    pub(super) process: String,
    pub(super) shared: Arc<Shared>,
    /// Connections given back since they were last written.
    pub(super) released: mpsc::UnboundedReceiver<TenantSlug>,
    /// The counts last written for this process, so only changes are written.
    pub(super) reported: HashMap<ChannelKey, usize>,
    /// Tenants whose connection count this process last reported as non-zero.
    pub(super) reported_tenants: Vec<TenantSlug>,
}

impl Reporter {
    /// Runs until the broker is dropped (the release sender with it).
    pub(super) async fn run(mut self) {
        let mut report = tokio::time::interval(REPORT_EVERY);
        loop {
            tokio::select! {
                first = self.released.recv() => {
                    let Some(first) = first else { return };
                    self.write_releases(first).await;
                }
                _ = report.tick() => {
                    let written = tokio::time::timeout(COMMAND_TIMEOUT, self.report()).await;
                    if let Err(e) = written.map_err(unavailable).and_then(|r| r) {
                        tracing::debug!(error = %e, "cannot report subscriber counts");
                    }
                }
            }
        }
    }

    /// Gives released connections back (and whatever queued up behind the first). One that
    /// cannot be written is healed by the next report.
    async fn write_releases(&mut self, first: TenantSlug) {
        let mut cmds = Vec::new();
        let mut next = Some(first);
        while let Some(t) = next {
            let mut cmd = redis::cmd("HINCRBY");
            cmd.arg(self.keys.connections(&t))
                .arg(&self.process)
                .arg(-1);
            cmds.push(cmd);
            next = self.released.try_recv().ok();
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, self.con.each::<Value>(cmds)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot release connections"),
            Err(e) => tracing::debug!(error = %e, "cannot release connections"),
        }
    }

    /// Proves this process alive and writes the subscriber counts that changed, and this
    /// process's exact connection counts.
    async fn report(&mut self) -> Result<(), BrokerError> {
        let shared = self.shared.clone();
        let _counting = shared.counting.write().await;
        let mut cmds = Vec::new();
        let mut alive = redis::cmd("SET");
        alive
            .arg(self.keys.alive(&self.process))
            .arg(1)
            .arg("EX")
            .arg(ALIVE_SECS);
        cmds.push(alive);
        let now: HashMap<ChannelKey, usize> = self
            .shared
            .hub
            .counts()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        for (key, n) in &now {
            if self.reported.get(key) != Some(n) {
                let k = self.keys.subscribers(key);
                let mut set = redis::cmd("HSET");
                set.arg(&k).arg(&self.process).arg(*n);
                let mut expire = redis::cmd("EXPIRE");
                expire.arg(&k).arg(86_400);
                cmds.extend([set, expire]);
            }
        }
        for key in self.reported.keys().filter(|k| !now.contains_key(*k)) {
            let mut del = redis::cmd("HDEL");
            del.arg(self.keys.subscribers(key)).arg(&self.process);
            cmds.push(del);
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
        let gone = self
            .reported_tenants
            .iter()
            .filter(|t| !connections.iter().any(|(c, _)| c == *t))
            .map(|t| (t.clone(), 0));
        let writes: Vec<(TenantSlug, u64)> = connections.iter().cloned().chain(gone).collect();
        if self.keys.cluster {
            // Liveness lives in each tenant's hash, on the tenant's slot.
            let scripts = writes.iter().map(|(tenant, n)| {
                let mut con = self.con.clone();
                let mut invocation = REPORT_CONNECTIONS.prepare_invoke();
                invocation
                    .key(self.keys.connections(tenant))
                    .arg(&self.process)
                    .arg(*n)
                    .arg(ALIVE_SECS);
                async move { invocation.invoke_async::<i64>(&mut con).await }
            });
            futures_util::future::try_join_all(scripts)
                .await
                .map_err(unavailable)?;
        } else {
            for (tenant, n) in &writes {
                let mut cmd = redis::cmd(if *n == 0 { "HDEL" } else { "HSET" });
                cmd.arg(self.keys.connections(tenant)).arg(&self.process);
                if *n > 0 {
                    cmd.arg(*n);
                }
                cmds.push(cmd);
            }
        }
        self.con.each::<Value>(cmds).await.map_err(unavailable)?;
        self.reported = now;
        self.reported_tenants = connections.into_iter().map(|(t, _)| t).collect();
        Ok(())
    }
}
