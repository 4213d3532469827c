//! Open streams follow the control plane: a stream stays open only while the credential that
//! opened it still grants every one of its channels.
//!
//! A stream is authorised when it opens. When a change that could take that away is made — a
//! channel or the tenant's default visibility turning private, a key revoked, a signing key
//! rotated — the admin API announces it with [`Broker::recheck_streams`](herald_replay::Broker),
//! and every process, told through [`Broker::rechecks`](herald_replay::Broker), drops what it
//! caches about the tenant and wakes that tenant's open streams. Each checks its grant again
//! against the store and ends if it no longer holds; the client's reconnect is then refused
//! like any new connect (401 or 403).
//!
//! Nothing here runs per event: a stream waits on its tenant's signal next to its events, and
//! checks only when woken, when the signing key of its token stops verifying (the end of a
//! rotation's grace period), and at its heartbeats, which catch an announcement lost with the
//! broker's connection. A token's own `exp` is checked when the stream opens only: an open
//! stream is not cut when its token expires (API.md §4).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use herald_core::{ChannelName, Scope, TenantSlug};
use herald_replay::{Broker, Target};
use herald_store::{ControlView, StoreError, Tenant, TenantId, Visibility};
use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::auth::Credential;
use crate::stream_end::EndReason;
use crate::EdgeState;

/// Each tenant's signal to its open streams on this process: cancelled (and replaced) when the
/// tenant's access rules change, and when the process starts draining. A signal is a child of
/// the process's shutdown token, so a stream waits on one signal for both, and a draining
/// process wakes every stream through it.
pub struct Reauth {
    tenants: Mutex<HashMap<TenantSlug, Signal>>,
    shutdown: CancellationToken,
}

struct Signal {
    tenant: TenantId,
    token: CancellationToken,
    /// Streams waiting on the signal; the entry goes with the last one.
    streams: usize,
}

impl Reauth {
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        Self {
            tenants: Mutex::default(),
            shutdown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantSlug, Signal>> {
        // The map stays consistent whatever panicked while holding the lock.
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts following the tenant's changes for one more stream. Called before the stream is
    /// authorised, so that a change made while it is being authorised still reaches it.
    pub(crate) fn watch(self: &Arc<Self>, tenant: &Tenant) -> Watch {
        let mut tenants = self.lock();
        let signal = tenants
            .entry(tenant.slug.clone())
            .or_insert_with(|| Signal {
                tenant: tenant.id,
                token: self.shutdown.child_token(),
                streams: 0,
            });
        signal.streams += 1;
        Watch {
            reauth: self.clone(),
            tenant: tenant.slug.clone(),
            signal: Box::pin(signal.token.clone().cancelled_owned()),
        }
    }

    fn current(&self, tenant: &TenantSlug) -> CancellationToken {
        self.lock()
            .get(tenant)
            .map_or_else(|| self.shutdown.child_token(), |s| s.token.clone())
    }

    /// The tenants with open streams on this process.
    fn followed(&self) -> Vec<(TenantId, TenantSlug)> {
        self.lock()
            .iter()
            .map(|(slug, s)| (s.tenant, slug.clone()))
            .collect()
    }

    /// Wakes the tenant's open streams (every tenant's, for `None`).
    fn wake(&self, tenant: Option<&TenantSlug>) {
        for (slug, signal) in self.lock().iter_mut() {
            if tenant.is_none_or(|t| t == slug) {
                signal.token.cancel();
                signal.token = self.shutdown.child_token();
            }
        }
    }

    fn release(&self, tenant: &TenantSlug) {
        let mut tenants = self.lock();
        if let Some(signal) = tenants.get_mut(tenant) {
            signal.streams -= 1;
            if signal.streams == 0 {
                tenants.remove(tenant);
            }
        }
    }

    /// Follows the broker's re-authorisation orders until `shutdown`: each drops what this
    /// process caches about the tenant, then wakes its open streams, which read the store anew.
    pub(crate) fn listen(
        self: Arc<Self>,
        broker: &dyn Broker,
        view: Arc<ControlView>,
        shutdown: CancellationToken,
    ) {
        let mut orders = broker.rechecks();
        tokio::spawn(async move {
            loop {
                let order = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    order = orders.recv() => order,
                };
                match order {
                    Ok(target) => self.apply(&view, &target).await,
                    Err(RecvError::Lagged(lost)) => {
                        tracing::warn!(
                            lost,
                            "re-authorisation orders lost; re-checking every stream"
                        );
                        for (id, slug) in self.followed() {
                            view.forget_everything_of(id, &slug).await;
                        }
                        self.wake(None);
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    async fn apply(&self, view: &ControlView, target: &Target) {
        let (slug, channel) = match target {
            Target::Tenant(slug) => (slug, None),
            Target::Channel(key) => (&key.tenant, Some(&key.channel)),
        };
        let id = self.lock().get(slug).map(|s| s.tenant);
        match (id, channel) {
            (Some(id), Some(channel)) => view.forget_channel(id, channel).await,
            (Some(id), None) => view.forget_everything_of(id, slug).await,
            // No open stream of the tenant here: new requests read the store within the
            // cache's second anyway.
            (None, _) => return,
        }
        self.wake(Some(slug));
    }
}

/// One stream's place among its tenant's watchers.
pub(crate) struct Watch {
    reauth: Arc<Reauth>,
    tenant: TenantSlug,
    signal: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.reauth.release(&self.tenant);
    }
}

impl Watch {
    /// The grant to keep checking: `credential` as it opened `channels` of `tenant`.
    pub(crate) async fn grant(
        self,
        state: &EdgeState,
        tenant: Arc<Tenant>,
        channels: Vec<ChannelName>,
        credential: Credential,
    ) -> Grant {
        let mut grant = Grant {
            watch: self,
            tenant,
            channels,
            credential,
            until: None,
        };
        if let Credential::Token(token) = &grant.credential {
            if let Ok(keys) = state.view.signing_keys(grant.tenant.id).await {
                let expires = keys
                    .iter()
                    .find(|k| k.kid == token.kid)
                    .and_then(|k| k.expires_at);
                grant.until = expires.map(sleep_until);
            }
        }
        grant
    }
}

/// What a stream was authorised with, and when to check it again.
pub(crate) struct Grant {
    watch: Watch,
    tenant: Arc<Tenant>,
    channels: Vec<ChannelName>,
    credential: Credential,
    /// When the signing key of the stream's token stops verifying.
    until: Option<Pin<Box<Sleep>>>,
}

impl Grant {
    /// Ready when the grant must be checked again: the tenant's access rules changed, or the
    /// token's signing key stopped verifying; and when the process starts draining.
    pub(crate) fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let changed = self.watch.signal.as_mut().poll(cx).is_ready()
            || self
                .until
                .as_mut()
                .is_some_and(|until| until.as_mut().poll(cx).is_ready());
        if !changed {
            return Poll::Pending;
        }
        // Follow the next change before checking this one, so that none falls in between.
        let next = self.watch.reauth.current(&self.watch.tenant);
        self.watch.signal.set(next.cancelled_owned());
        self.until = None;
        Poll::Ready(())
    }

    /// Why the stream must end, if it must: the tenant is no longer active, or the credential
    /// no longer valid or no longer granting every channel. A store that cannot be reached
    /// keeps what is open.
    pub(crate) async fn lost(&mut self, state: &EdgeState) -> Option<EndReason> {
        match self.check(state).await {
            Ok(lost) => lost,
            Err(e) => {
                tracing::debug!(error = %e, "cannot re-check a stream; it stays open");
                None
            }
        }
    }

    async fn check(&mut self, state: &EdgeState) -> Result<Option<EndReason>, StoreError> {
        let view = &state.view;
        let tenant = match view.tenant(&self.tenant.slug).await? {
            Some(t) if t.id == self.tenant.id && t.suspended_at.is_none() => t,
            _ => return Ok(Some(EndReason::TenantInactive)),
        };
        let revoked = Ok(Some(EndReason::AccessRevoked));
        match &mut self.credential {
            Credential::Anonymous => {}
            Credential::Key(key) => match view.api_key(&key.key_id).await? {
                Some(fresh)
                    if !fresh.is_revoked()
                        && fresh.tenant_id == self.tenant.id
                        && fresh.scopes.contains(&Scope::Subscribe) =>
                {
                    *key = fresh;
                }
                _ => return revoked,
            },
            Credential::Token(token) => {
                let keys = view.signing_keys(self.tenant.id).await?;
                let Some(signer) = keys.iter().find(|k| k.kid == token.kid) else {
                    return revoked;
                };
                if signer
                    .expires_at
                    .is_some_and(|at| at <= OffsetDateTime::now_utc())
                {
                    return revoked;
                }
                self.until = signer.expires_at.map(sleep_until);
            }
        }
        for channel in &self.channels {
            let settings = view.channel(&tenant, channel).await?;
            let private = settings.visibility == Visibility::Private;
            if self.credential.check(channel, private).is_err() {
                return revoked;
            }
        }
        Ok(None)
    }
}

/// A timer that fires at `at` (at once when it is past).
fn sleep_until(at: OffsetDateTime) -> Pin<Box<Sleep>> {
    let left = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Box::pin(tokio::time::sleep(left))
}
