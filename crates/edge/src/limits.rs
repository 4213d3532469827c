//! Plans and rate limits.
//!
//! Publish rates are per API key and connect rates per client IP (and per tenant when its plan
//! sets one), each a GCRA limiter from governor keyed by what it limits. A plan's limits apply to
//! all its tenants, so there is one keyed limiter per plan; idle keys are forgotten every minute
//! (a key whose bucket is full again is indistinguishable from a new one), so memory follows the
//! active keys, not every key ever seen. Rates are per process; concurrent connections and daily
//! messages are counted across processes by the broker.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use herald_core::{ErrorCode, KeyId, TenantSlug};
use herald_http::ApiError;
use herald_store::{day_of, Plan, Plans, Tenant};
use time::OffsetDateTime;

/// Seconds from `t` to the next UTC midnight (at least 1).
pub fn secs_to_midnight(t: OffsetDateTime) -> u64 {
    let next = (day_of(t) + 1) * 86_400;
    u64::try_from(next - t.unix_timestamp()).unwrap_or(1).max(1)
}

type Keyed<K> = DefaultKeyedRateLimiter<K>;

/// Every rate limiter of a process.
pub struct Limits {
    plans: Arc<Plans>,
    default_plan: String,
    publish: HashMap<String, Keyed<KeyId>>,
    tenant_connects: HashMap<String, Keyed<TenantSlug>>,
    ip_connects: Option<Keyed<IpAddr>>,
}

fn quota(per_second: u64, burst: u64) -> Option<Quota> {
    let rate = NonZeroU32::new(u32::try_from(per_second).unwrap_or(u32::MAX))?;
    let burst = NonZeroU32::new(u32::try_from(burst).unwrap_or(u32::MAX)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl Limits {
    /// `connect_rate_per_ip`: stream connects per second per client IP, 0 for none.
    pub fn new(plans: Arc<Plans>, default_plan: String, connect_rate_per_ip: u32) -> Self {
        let mut publish = HashMap::new();
        let mut tenant_connects = HashMap::new();
        for (name, plan) in &plans.plans {
            if let Some(q) = quota(plan.publish_per_second, plan.publish_burst) {
                publish.insert(name.clone(), Keyed::dashmap(q));
            }
            if let Some(rate) = plan.connects_per_second {
                if let Some(q) = quota(rate, rate) {
                    tenant_connects.insert(name.clone(), Keyed::dashmap(q));
                }
            }
        }
        let ip_connects = quota(
            u64::from(connect_rate_per_ip),
            u64::from(connect_rate_per_ip),
        )
        .map(Keyed::dashmap);
        Self {
            plans,
            default_plan,
            publish,
            tenant_connects,
            ip_connects,
        }
    }

    /// The tenant's plan; a plan name the configuration no longer has falls back to the
    /// default plan.
    pub fn plan(&self, tenant: &Tenant) -> &Plan {
        self.plans.resolve(&tenant.plan, &self.default_plan)
    }

    /// Takes `n` publishes from the key's allowance.
    pub fn publish(&self, tenant: &Tenant, key: &KeyId, n: usize) -> Result<(), ApiError> {
        let Some(limiter) = self.publish.get(self.plan_name(tenant)) else {
            return Ok(());
        };
        check(limiter, key, n, "this API key's publish rate")
    }

    /// Takes one stream connect from the client IP's and the tenant's allowance.
    pub fn connect(&self, tenant: &Tenant, ip: Option<IpAddr>) -> Result<(), ApiError> {
        if let (Some(limiter), Some(ip)) = (&self.ip_connects, ip) {
            check(limiter, &ip, 1, "connects from this address")?;
        }
        if let Some(limiter) = self.tenant_connects.get(self.plan_name(tenant)) {
            check(limiter, &tenant.slug, 1, "this tenant's connect rate")?;
        }
        Ok(())
    }

    /// The name of the tenant's plan as [`Limits::plan`] resolves it: its limiters' key.
    fn plan_name<'a>(&'a self, tenant: &'a Tenant) -> &'a str {
        self.plans.resolve_named(&tenant.plan, &self.default_plan).0
    }

    /// Forgets keys whose allowance is full again: they are indistinguishable from new ones.
    pub fn forget_idle(&self) {
        for l in self.publish.values() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in self.tenant_connects.values() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.ip_connects {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Keys the publish limiters remember (for tests and metrics).
    pub fn remembered_keys(&self) -> usize {
        self.publish.values().map(|l| l.len()).sum()
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &Keyed<K>,
    key: &K,
    n: usize,
    what: &str,
) -> Result<(), ApiError> {
    let n = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
    match limiter.check_key_n(key, n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(rate_limited(what, wait))
        }
        Err(_) => Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                ErrorCode::RateLimited,
                format!("{what} is below the size of this request; send fewer events at once"),
            )
        }),
    }
}

fn rate_limited(what: &str, wait: Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError {
        retry_after: Some(secs.max(1)),
        ..ApiError::new(ErrorCode::RateLimited, format!("{what} is exceeded"))
    }
}

/// Starts forgetting idle rate-limit keys every minute.
pub fn spawn_forgetting(limits: Arc<Limits>, shutdown: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => limits.forget_idle(),
                () = shutdown.cancelled() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_store::{ChannelSettings, Plan, TenantId};
    use time::macros::datetime;

    fn tenant(plan: &str) -> Tenant {
        Tenant {
            id: TenantId(1),
            slug: TenantSlug::parse("acme").unwrap(),
            name: "Acme".into(),
            plan: plan.into(),
            allowed_origins: vec!["*".into()],
            suspended_at: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            channel_defaults: ChannelSettings::default(),
            channels_version: 0,
        }
    }

    fn plans(per_second: u64, burst: u64) -> Arc<Plans> {
        let mut plans = Plans::builtin();
        let free = plans.get("free").unwrap().clone();
        plans.plans.insert(
            "fast".into(),
            Plan {
                publish_per_second: per_second,
                publish_burst: burst,
                ..free
            },
        );
        Arc::new(plans)
    }

    /// A hundred thousand keys each publish once; once their buckets are full again they are
    /// forgotten, so the limiter's memory follows the active keys only.
    #[test]
    fn idle_keys_are_forgotten() {
        let limits = Limits::new(plans(100_000, 1), "free".into(), 0);
        let t = tenant("fast");
        for i in 0..100_000u32 {
            let key = KeyId::parse(&format!("k{i:07}")).unwrap();
            limits.publish(&t, &key, 1).unwrap();
        }
        assert_eq!(limits.remembered_keys(), 100_000);
        std::thread::sleep(Duration::from_millis(20));
        limits.forget_idle();
        assert_eq!(limits.remembered_keys(), 0);
    }

    #[test]
    fn a_burst_then_the_rate_and_batches_count_as_many() {
        let limits = Limits::new(plans(5, 5), "free".into(), 0);
        let (t, key) = (tenant("fast"), KeyId::parse("abcd1234").unwrap());
        limits.publish(&t, &key, 3).unwrap();
        limits.publish(&t, &key, 2).unwrap();
        let refused = limits.publish(&t, &key, 1).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert_eq!(refused.retry_after, Some(1));
        let too_big = limits.publish(&t, &key, 6).unwrap_err();
        assert_eq!(
            too_big.code,
            ErrorCode::RateLimited,
            "a batch over the burst can never pass"
        );
    }

    #[test]
    fn an_unknown_plan_falls_back_to_the_default() {
        let limits = Limits::new(plans(5, 5), "free".into(), 0);
        assert_eq!(limits.plan(&tenant("gone")).max_connections, 200);
    }

    /// The limits and the rates of a tenant whose plan is gone come from one fallback: with the
    /// default gone too, both are those of the first configured plan.
    #[test]
    fn an_unknown_plan_is_rate_limited_as_the_plan_it_falls_back_to() {
        let limits = Limits::new(plans(5, 5), "also-gone".into(), 0);
        let (t, key) = (tenant("gone"), KeyId::parse("abcd1234").unwrap());
        let fallback = limits.plan(&t).clone();
        let burst = usize::try_from(fallback.publish_burst).unwrap();
        limits.publish(&t, &key, burst).unwrap();
        let refused = limits.publish(&t, &key, 1).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
    }

    #[test]
    fn days_and_midnights_follow_utc() {
        let t = datetime!(2026-11-21 23:59:30 UTC);
        assert_eq!(secs_to_midnight(t), 30);
        assert_eq!(day_of(t) + 1, day_of(datetime!(2026-11-22 00:00:00 UTC)));
        assert_eq!(secs_to_midnight(datetime!(2026-11-22 00:00:00 UTC)), 86_400);
    }
}
