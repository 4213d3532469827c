//! The names of every Redis key and pub/sub channel the broker uses, and the control orders
//! sent on the control channel.

use super::*;

/// Per channel: a hash of process id → that process's subscriber count.
pub(super) fn subscribers_key(prefix: &str, key: &ChannelKey) -> String {
    format!("{prefix}:{{{key}}}:n")
}

pub(super) fn pubsub_name(prefix: &str, key: &ChannelKey) -> String {
    format!("{prefix}:ev:{key}")
}

pub(super) fn connections_key(prefix: &str, tenant: &TenantSlug) -> String {
    format!("{prefix}:conn:{tenant}")
}

pub(super) fn alive_key(prefix: &str, process: &str) -> String {
    format!("{prefix}:alive:{process}")
}

pub(super) fn control_name(prefix: &str) -> String {
    format!("{prefix}:control")
}

/// A control order: `end <tenant>` or `end <tenant>/<channel>`.
pub(super) fn encode_end(target: &Target) -> String {
    match target {
        Target::Channel(key) => format!("end {key}"),
        Target::Tenant(t) => format!("end {t}"),
    }
}

pub(super) fn parse_end(payload: &[u8]) -> Option<Target> {
    let rest = std::str::from_utf8(payload).ok()?.strip_prefix("end ")?;
    Some(match rest.split_once('/') {
        Some((t, c)) => Target::Channel(ChannelKey::new(
            TenantSlug::parse(t).ok()?,
            ChannelName::parse(c).ok()?,
        )),
        None => Target::Tenant(TenantSlug::parse(rest).ok()?),
    })
}

/// `s` with Redis glob characters escaped, for a SCAN MATCH pattern.
pub(super) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
