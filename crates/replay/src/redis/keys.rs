//! The names of every Redis key and pub/sub channel the broker uses, and the control orders
//! sent on the control channel. `README.md` next to this file is the key layout, with the
//! slot each key lives on in Redis Cluster.

use super::*;

/// The key layout of one broker: its prefix, and whether it runs on Redis Cluster.
///
/// A channel's keys share the hash tag `{<tenant>/<channel>}` on either kind, so a channel's
/// script runs on one slot. On one Redis the tenant-wide keys keep the names they always had (no
/// migration); on Redis Cluster they carry the hash tag `{<tenant>}`, so each tenant-wide script
/// runs on the tenant's slot.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    pub(super) prefix: String,
    pub(super) cluster: bool,
}

impl Keys {
    fn tenant(&self, tenant: &TenantSlug) -> String {
        if self.cluster {
            format!("{{{tenant}}}")
        } else {
            tenant.to_string()
        }
    }

    /// A channel's stream and meta hash.
    pub(super) fn channel(&self, key: &ChannelKey) -> (String, String) {
        let base = format!("{}:{{{key}}}", self.prefix);
        (format!("{base}:s"), format!("{base}:m"))
    }

    /// Per channel: a hash of process id → that process's subscriber count.
    pub(super) fn subscribers(&self, key: &ChannelKey) -> String {
        format!("{}:{{{key}}}:n", self.prefix)
    }

    /// Per channel and append (Redis Cluster only): what the append of token `token` did.
    pub(super) fn token(&self, key: &ChannelKey, token: &str) -> String {
        format!("{}:{{{key}}}:t:{token}", self.prefix)
    }

    /// Where a channel's events are announced: a pub/sub channel on one Redis; on Redis Cluster
    /// a shard channel with the channel's hash tag, so that the append script may `SPUBLISH` it
    /// and it lives on the shard of the channel's keys.
    pub(super) fn announce(&self, key: &ChannelKey) -> String {
        if self.cluster {
            format!("{}:{{{key}}}:ev", self.prefix)
        } else {
            format!("{}:ev:{key}", self.prefix)
        }
    }

    pub(super) fn connections(&self, tenant: &TenantSlug) -> String {
        format!("{}:conn:{}", self.prefix, self.tenant(tenant))
    }

    pub(super) fn idempotency(&self, tenant: &TenantSlug, key: &str) -> String {
        format!("{}:idem:{}:{key}", self.prefix, self.tenant(tenant))
    }

    pub(super) fn quota(&self, tenant: &TenantSlug, day: i64) -> String {
        format!("{}:msgs:{}:{day}", self.prefix, self.tenant(tenant))
    }

    pub(super) fn alive(&self, process: &str) -> String {
        format!("{}:alive:{process}", self.prefix)
    }

    pub(super) fn alive_prefix(&self) -> String {
        format!("{}:alive:", self.prefix)
    }

    pub(super) fn control(&self) -> String {
        format!("{}:control", self.prefix)
    }

    /// A SCAN pattern for every channel key of a tenant.
    pub(super) fn tenant_channels_pattern(&self, tenant: &TenantSlug) -> String {
        format!("{}:{{{tenant}/*", glob_escape(&self.prefix))
    }
}

/// An order to every process, sent on the control channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Order {
    /// End the target's open streams.
    End(Target),
    /// Re-authorise the target's open streams.
    Recheck(Target),
}

/// `end <tenant>`, `end <tenant>/<channel>`, `recheck <tenant>` or `recheck <tenant>/<channel>`.
pub(super) fn encode_order(order: Order) -> String {
    let (verb, target) = match &order {
        Order::End(t) => ("end", t),
        Order::Recheck(t) => ("recheck", t),
    };
    match target {
        Target::Channel(key) => format!("{verb} {key}"),
        Target::Tenant(t) => format!("{verb} {t}"),
    }
}

pub(super) fn parse_order(payload: &[u8]) -> Option<Order> {
    let (verb, rest) = std::str::from_utf8(payload).ok()?.split_once(' ')?;
    let target = match rest.split_once('/') {
        Some((t, c)) => Target::Channel(ChannelKey::new(
            TenantSlug::parse(t).ok()?,
            ChannelName::parse(c).ok()?,
        )),
        None => Target::Tenant(TenantSlug::parse(rest).ok()?),
    };
    match verb {
        "end" => Some(Order::End(target)),
        "recheck" => Some(Order::Recheck(target)),
        _ => None,
    }
}

/// `s` with Redis glob characters escaped, for a SCAN MATCH pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme_orders() -> ChannelKey {
        ChannelKey::new(
            TenantSlug::parse("acme").unwrap(),
            ChannelName::parse("orders").unwrap(),
        )
    }

    #[test]
    fn one_redis_keeps_its_key_names() {
        let k = Keys {
            prefix: "h".into(),
            cluster: false,
        };
        let acme = TenantSlug::parse("acme").unwrap();
        assert_eq!(k.announce(&acme_orders()), "h:ev:acme/orders");
        assert_eq!(k.connections(&acme), "h:conn:acme");
        assert_eq!(k.idempotency(&acme, "x"), "h:idem:acme:x");
        assert_eq!(k.quota(&acme, 3), "h:msgs:acme:3");
    }

    #[test]
    fn on_a_cluster_every_key_names_its_slot() {
        let k = Keys {
            prefix: "h".into(),
            cluster: true,
        };
        let acme = TenantSlug::parse("acme").unwrap();
        let c = acme_orders();
        let (s, m) = k.channel(&c);
        for key in [s, m, k.subscribers(&c), k.token(&c, "1"), k.announce(&c)] {
            assert!(key.starts_with("h:{acme/orders}:"), "{key}");
        }
        for key in [
            k.connections(&acme),
            k.idempotency(&acme, "{x}"),
            k.quota(&acme, 3),
        ] {
            assert!(
                key.contains(":{acme}:") || key.ends_with(":{acme}"),
                "{key}"
            );
        }
    }
}
