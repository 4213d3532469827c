//! One log line per stream when it ends: how long it lasted, what it delivered and why it
//! ended, so that "my subscriber stopped receiving" can be answered from the log.

use std::time::Instant;

use herald_core::TenantSlug;

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The client went away (the response body was dropped): the default, since nothing on our
    /// side chose to end it.
    ClientGone,
    /// This process is draining (SIGTERM).
    Drain,
    /// The control plane closed its channel: the tenant was suspended or deleted, told directly.
    Closed,
    /// A re-check found the tenant suspended or deleted.
    TenantInactive,
    /// A re-check found that the stream's credential no longer grants its channels: a channel
    /// turned private, its key was revoked, its token's signing key stopped verifying.
    AccessRevoked,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            EndReason::ClientGone => "client_gone",
            EndReason::Drain => "drain",
            EndReason::Closed => "closed",
            EndReason::TenantInactive => "tenant_inactive",
            EndReason::AccessRevoked => "access_revoked",
        }
    }
}

/// Logs the stream's end when dropped, with the stream itself.
pub(crate) struct StreamEnd {
    tenant: TenantSlug,
    channels: usize,
    opened: Instant,
    deliveries: u64,
    reason: EndReason,
}

impl StreamEnd {
    pub(crate) fn new(tenant: TenantSlug, channels: usize) -> Self {
        Self {
            tenant,
            channels,
            opened: Instant::now(),
            deliveries: 0,
            reason: EndReason::ClientGone,
        }
    }

    /// Counts events written to the stream.
    pub(crate) fn delivered(&mut self, events: u64) {
        self.deliveries += events;
    }

    /// Notes why the stream is ending, when this side ends it.
    pub(crate) fn ending(&mut self, reason: EndReason) {
        self.reason = reason;
    }
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        tracing::info!(
            tenant = %self.tenant,
            channels = self.channels,
            duration_ms = self.opened.elapsed().as_millis() as u64,
            deliveries = self.deliveries,
            reason = self.reason.as_str(),
            "stream ended"
        );
    }
}
