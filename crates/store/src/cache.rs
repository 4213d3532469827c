//! The control plane as the request path reads it: tenants, API keys, channel settings and
//! signing keys, through a short-lived cache, so that the hot path never waits on SQL, yet a
//! revoked key or a deleted tenant stops working everywhere within [`TTL`].
//!
//! Each cache is a [`moka`] cache: bounded ([`MAX_ENTRIES`], evicting the least useful entries by
//! TinyLFU, not clearing everything at the bound), expiring entries [`TTL`] after they were
//! loaded, and loading each missing key once however many requests miss it at the same time
//! (single flight: a thousand subscribers arriving together cost one query, not a thousand).
//! Entries are `Arc`s, so a hit is a reference count. Both routers use one [`ControlView`]; the
//! admin API of the same process tells it of its changes at once.
//!
//! **Stale if error.** An edge must ride out a database outage for the tenants, keys and channels
//! it has seen. Each cache therefore also remembers the last answer the store gave for every key,
//! and when a refresh finds the store unreachable it answers that one instead, for at most
//! [`Fallback::stale_for`] after it was loaded (then the error goes through: 503). Only answers
//! the store actually gave are remembered, the newest one wins, so a revocation or suspension
//! that reached this process is never undone by the fallback; [`Cache::forget`] drops both.
//! Once a load has found the store unreachable, the next [`RETRY`] does not wait on it again:
//! loads answer from what is known, or fail at once, and one load per [`RETRY`] tries the
//! store. A refresh that has something to fall back on, and any such probe, waits for the store
//! at most [`PATIENCE`]; only a load with nothing to fall back on while the store seems fine
//! waits for the pool's whole acquire timeout.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_core::{ChannelName, KeyId, TenantSlug};
use tokio::time::Instant;

use crate::{ApiKeyAuth, ChannelSettings, SigningKey, Store, StoreError, Tenant, TenantId};

/// How long an answer from the store is trusted.
pub const TTL: Duration = Duration::from_secs(1);
/// How long a channel's own settings are kept unused. They are not trusted by age but by their
/// tenant's `channels_version` ([`ControlView::channel`]); this only frees the memory of
/// channels no longer used, and bounds what a write that did not raise the counter could hide.
pub const CHANNEL_TTL: Duration = Duration::from_secs(60);
/// Entries kept at most per cache.
pub const MAX_ENTRIES: u64 = 100_000;
/// How long the last known answers are served while the store is unreachable, unless configured
/// otherwise (`--control-stale-secs`).
pub const DEFAULT_STALE_FOR: Duration = Duration::from_secs(600);
/// After a load found the store unreachable, how long until a load tries it again.
pub const RETRY: Duration = Duration::from_secs(1);
/// How long a load that can fall back on a last known answer waits for the store: a refresh
/// must not hold a publish for the pool's whole acquire timeout.
pub const PATIENCE: Duration = Duration::from_millis(500);

/// What the caches of one [`ControlView`] share about the store's health: how long a last known
/// answer may stand in for it, and whether it was unreachable a moment ago.
#[derive(Debug)]
pub struct Fallback {
    stale_for: Duration,
    state: Mutex<Health>,
}

#[derive(Debug, Clone, Copy)]
struct Health {
    /// When a load first found the store unreachable, in this outage.
    down_since: Option<Instant>,
    /// While down: when the next load may try the store.
    next_try: Instant,
}

impl Fallback {
    /// Last known answers stand in for an unreachable store for `stale_for` after they were
    /// loaded; `Duration::ZERO` turns the fallback off.
    pub fn new(stale_for: Duration) -> Fallback {
        Fallback {
            stale_for,
            state: Mutex::new(Health {
                down_since: None,
                next_try: Instant::now(),
            }),
        }
    }

    /// How long a last known answer may stand in for the store.
    pub fn stale_for(&self) -> Duration {
        self.stale_for
    }

    /// Since when loads find the store unreachable, if they do.
    pub fn down_since(&self) -> Option<Instant> {
        self.health().down_since
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a load should ask the store now: always while it answers; while it does not,
    /// one load per [`RETRY`], as a probe.
    fn attempt(&self) -> Attempt {
        let mut health = self.health();
        if health.down_since.is_none() {
            return Attempt::Ask;
        }
        let now = Instant::now();
        if now < health.next_try {
            return Attempt::Skip;
        }
        health.next_try = now + RETRY;
        Attempt::Probe
    }

    fn unreachable(&self) {
        let now = Instant::now();
        let mut health = self.health();
        health.next_try = now + RETRY;
        if health.down_since.is_none() {
            health.down_since = Some(now);
            tracing::warn!(
                stale_for_secs = self.stale_for.as_secs(),
                "the database is unreachable: answering from the last known control-plane view"
            );
        }
    }

    fn answered(&self) {
        if let Some(since) = self.health().down_since.take() {
            tracing::info!(
                down_for_ms = since.elapsed().as_millis() as u64,
                "the database answers again"
            );
        }
    }
}

/// What a load does about the store, given its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// It answers: ask it.
    Ask,
    /// It did not answer a moment ago: do not ask.
    Skip,
    /// It has not answered for a while: ask, but wait no longer than [`PATIENCE`].
    Probe,
}

/// A bounded, expiring, single-flight cache of store answers, answering the last known one
/// while the store is unreachable (see the module's documentation).
pub struct Cache<K, V> {
    fresh: moka::future::Cache<K, V>,
    known: moka::future::Cache<K, Known<V>>,
    fallback: Arc<Fallback>,
    stats: CacheStats,
}

/// How often a [`Cache`] answered from memory and how often it loaded, for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Reads answered without a load of their own: a fresh entry, or the load another read of
    /// the same key had in flight (single flight).
    hits: AtomicU64,
    /// Reads that ran a load (whatever it answered: the store, a last known answer, an error).
    misses: AtomicU64,
}

impl CacheStats {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// The last answer the store gave for a key, and when.
#[derive(Clone)]
struct Known<V> {
    value: V,
    loaded: Instant,
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity` entries, each trusted for `ttl`, with `fallback`'s bound on
    /// answering stale.
    pub fn new(capacity: u64, ttl: Duration, fallback: Arc<Fallback>) -> Self {
        Self {
            fresh: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            known: moka::future::Cache::builder()
                .max_capacity(capacity)
                // Only to free the memory: the bound itself is checked on `Known::loaded`.
                .time_to_live(fallback.stale_for)
                .support_invalidation_closures()
                .build(),
            fallback,
            stats: CacheStats::default(),
        }
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The cached value of `key`, or the one `load` answers. Concurrent misses of one key wait
    /// for a single `load`; a failed load is not cached, and every waiter gets its error, or,
    /// when the store was unreachable, the last known answer while it is young enough.
    pub async fn get_or_load<F>(&self, key: K, load: F) -> Result<V, StoreError>
    where
        F: Future<Output = Result<V, StoreError>>,
    {
        let fallback = &self.fallback;
        let loaded_here = AtomicBool::new(false);
        let init = async {
            loaded_here.store(true, Ordering::Relaxed);
            let known = self
                .known
                .get(&key)
                .await
                .filter(|k| k.loaded.elapsed() <= fallback.stale_for);
            let attempt = fallback.attempt();
            if attempt == Attempt::Skip {
                return known.map(|k| k.value).ok_or_else(not_retried_yet);
            }
            let loaded = if known.is_some() || attempt == Attempt::Probe {
                tokio::time::timeout(PATIENCE, load)
                    .await
                    .unwrap_or_else(|_elapsed| Err(too_slow()))
            } else {
                load.await
            };
            match loaded {
                Ok(value) => {
                    fallback.answered();
                    if !fallback.stale_for.is_zero() {
                        let known = Known {
                            value: value.clone(),
                            loaded: Instant::now(),
                        };
                        self.known.insert(key.clone(), known).await;
                    }
                    Ok(value)
                }
                Err(e) if e.is_unavailable() => {
                    fallback.unreachable();
                    known.map(|k| k.value).ok_or(e)
                }
                Err(e) => Err(e),
            }
        };
        let answer = self.fresh.try_get_with(key.clone(), init).await;
        let counter = if loaded_here.load(Ordering::Relaxed) {
            &self.stats.misses
        } else {
            &self.stats.hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer.map_err(StoreError::shared)
    }

    /// [`Cache::get_or_load`], except that a cached value `stale` refuses is loaded again (the
    /// last known answer still stands in for an unreachable store).
    pub async fn get_or_load_unless<F>(
        &self,
        key: K,
        stale: impl FnOnce(&V) -> bool,
        load: F,
    ) -> Result<V, StoreError>
    where
        F: Future<Output = Result<V, StoreError>>,
    {
        if let Some(value) = self.fresh.get(&key).await {
            if !stale(&value) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(value);
            }
            self.fresh.invalidate(&key).await;
        }
        self.get_or_load(key, load).await
    }

    /// Drops `key`, its last known answer included, so that the next read loads it again.
    pub async fn forget(&self, key: &K) {
        self.fresh.invalidate(key).await;
        self.known.invalidate(key).await;
    }

    /// Drops every entry for which `which` holds, last known answers included: no read answers
    /// them again.
    pub fn forget_if(&self, which: impl Fn(&K, &V) -> bool + Send + Sync + 'static) {
        let which = Arc::new(which);
        let also = which.clone();
        // These fail only on caches built without invalidation closures, which `new` never does.
        let _ = self.fresh.invalidate_entries_if(move |k, v| which(k, v));
        let _ = self
            .known
            .invalidate_entries_if(move |k, known| also(k, &known.value));
    }
}

/// What a load gets when the store was found unreachable less than [`RETRY`] ago and there is
/// nothing to fall back on.
fn not_retried_yet() -> StoreError {
    StoreError::Unavailable(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the database was unreachable a moment ago",
    )))
}

fn too_slow() -> StoreError {
    StoreError::Unavailable(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {} ms", PATIENCE.as_millis()),
    )))
}

/// A channel's own settings (`None`: it has none, its tenant's defaults apply), as read while
/// the tenant's `channels_version` was `version`.
#[derive(Clone)]
struct OwnSettings {
    version: i64,
    settings: Option<ChannelSettings>,
}

/// Cached reads of the control plane.
pub struct ControlView {
    store: Store,
    fallback: Arc<Fallback>,
    tenants: Cache<TenantSlug, Option<Arc<Tenant>>>,
    keys: Cache<KeyId, Option<Arc<ApiKeyAuth>>>,
    channels: Cache<(TenantId, ChannelName), OwnSettings>,
    signing_keys: Cache<TenantId, Arc<[SigningKey]>>,
}

impl ControlView {
    /// The view of `store`, answering from its last known answers for up to `stale_for` while
    /// the store is unreachable.
    pub fn new(store: Store, stale_for: Duration) -> Self {
        let fallback = Arc::new(Fallback::new(stale_for));
        Self {
            store,
            tenants: Cache::new(MAX_ENTRIES, TTL, fallback.clone()),
            keys: Cache::new(MAX_ENTRIES, TTL, fallback.clone()),
            channels: Cache::new(MAX_ENTRIES, CHANNEL_TTL, fallback.clone()),
            signing_keys: Cache::new(MAX_ENTRIES, TTL, fallback.clone()),
            fallback,
        }
    }

    /// The store's health as this view's loads saw it.
    pub fn fallback(&self) -> &Fallback {
        &self.fallback
    }

    /// Each cache's hits and misses, by the name `/metrics` labels it with.
    pub fn cache_stats(&self) -> [(&'static str, &CacheStats); 4] {
        [
            ("tenants", self.tenants.stats()),
            ("api_keys", self.keys.stats()),
            ("channels", self.channels.stats()),
            ("signing_keys", self.signing_keys.stats()),
        ]
    }

    /// The tenant called `slug`, if there is one.
    pub async fn tenant(&self, slug: &TenantSlug) -> Result<Option<Arc<Tenant>>, StoreError> {
        self.tenants
            .get_or_load(slug.clone(), async {
                Ok(self.store.tenant_by_slug(slug).await?.map(Arc::new))
            })
            .await
    }

    /// What authenticating with key `id` needs, if the key exists.
    pub async fn api_key(&self, id: &KeyId) -> Result<Option<Arc<ApiKeyAuth>>, StoreError> {
        self.keys
            .get_or_load(id.clone(), async {
                Ok(self.store.api_key_auth(id).await?.map(Arc::new))
            })
            .await
    }

    /// A channel's settings: its own, or the defaults of `tenant`, the row the caller works with
    /// (from [`ControlView::tenant`], so at most [`TTL`] old).
    ///
    /// A channel's own row is read again only once `tenant` counts a channel change the cached
    /// one was not read under: every write of a channel row raises the tenant's
    /// `channels_version`, and the counter is read (with the tenant) before the row, so a cached
    /// row is at least as new as the counter it is kept with. A channel that is used but never
    /// changed costs no query, however rarely it is used; a change made on any process is seen
    /// as soon as the tenant row is, within [`TTL`].
    pub async fn channel(
        &self,
        tenant: &Tenant,
        channel: &ChannelName,
    ) -> Result<ChannelSettings, StoreError> {
        let version = tenant.channels_version;
        let own = self
            .channels
            .get_or_load_unless(
                (tenant.id, channel.clone()),
                |own| own.version < version,
                async {
                    let own = self.store.channel(tenant.id, channel).await?;
                    Ok(OwnSettings {
                        version,
                        settings: own.map(|c| c.settings),
                    })
                },
            )
            .await?;
        Ok(own
            .settings
            .unwrap_or_else(|| tenant.channel_defaults.clone()))
    }

    /// The tenant's signing keys that still verify, newest first.
    pub async fn signing_keys(&self, tenant: TenantId) -> Result<Arc<[SigningKey]>, StoreError> {
        self.signing_keys
            .get_or_load(tenant, async {
                Ok(self.store.signing_keys(tenant).await?.into())
            })
            .await
    }

    /// Drops a key from this process's cache at once, its last known answer included (the admin
    /// API of the same process revoked it); other processes follow within [`TTL`] while they
    /// reach the store.
    pub async fn forget_key(&self, id: &KeyId) {
        self.keys.forget(id).await;
    }

    /// Drops a tenant from this process's cache at once, its last known answer included; other
    /// processes follow within [`TTL`] while they reach the store.
    pub async fn forget_tenant(&self, slug: &TenantSlug) {
        self.tenants.forget(slug).await;
    }

    /// Drops one channel's settings from this process's cache at once.
    pub async fn forget_channel(&self, tenant: TenantId, channel: &ChannelName) {
        self.channels.forget(&(tenant, channel.clone())).await;
    }

    /// Drops everything this process caches about a tenant (its row, channel settings, API keys
    /// and signing keys), so that the next reads see the store as it is now: what an edge does
    /// when told that the tenant's access rules changed.
    pub async fn forget_everything_of(&self, tenant: TenantId, slug: &TenantSlug) {
        self.tenants.forget(slug).await;
        self.signing_keys.forget(&tenant).await;
        self.channels.forget_if(move |(t, _), _| *t == tenant);
        self.keys
            .forget_if(move |_, k| k.as_ref().is_some_and(|k| k.tenant_id == tenant));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cache<V: Clone + Send + Sync + 'static>(capacity: u64) -> Cache<u32, V> {
        Cache::new(capacity, TTL, Arc::new(Fallback::new(DEFAULT_STALE_FOR)))
    }

    fn unreachable() -> StoreError {
        StoreError::Unavailable(sqlx::Error::PoolTimedOut)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_concurrent_misses_cost_one_load() {
        let cache = Arc::new(cache::<Arc<String>>(10));
        let loads = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(AtomicUsize::new(0));
        // Loads are held until every task has asked, so that all hundred miss together.
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (cache, loads, asked, release) =
                (cache.clone(), loads.clone(), asked.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                asked.fetch_add(1, Ordering::SeqCst);
                cache
                    .get_or_load(7, async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        let _permit = release.acquire().await.expect("never closed");
                        Ok(Arc::new("seven".to_owned()))
                    })
                    .await
            }));
        }
        while asked.load(Ordering::SeqCst) < 100 {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        // Enough for every load that started: a second one would finish too, and be counted.
        release.add_permits(100);
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().as_str(), "seven");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // The one that loaded missed; the 99 that waited on its load hit.
        assert_eq!((cache.stats().misses(), cache.stats().hits()), (1, 99));
        cache
            .get_or_load(7, async {
                unreachable!("a fresh entry is not loaded again")
            })
            .await
            .unwrap();
        assert_eq!((cache.stats().misses(), cache.stats().hits()), (1, 100));
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached_and_reach_every_caller() {
        let cache = cache::<u32>(10);
        let err = cache
            .get_or_load(1, async { Err(StoreError::NotFound) })
            .await
            .unwrap_err();
        assert!(matches!(err.kind(), StoreError::NotFound), "{err:?}");
        assert_eq!(cache.get_or_load(1, async { Ok(5) }).await.unwrap(), 5);
        assert_eq!(cache.get_or_load(1, async { Ok(6) }).await.unwrap(), 5);
        cache.forget(&1).await;
        assert_eq!(cache.get_or_load(1, async { Ok(6) }).await.unwrap(), 6);
    }

    #[tokio::test]
    async fn forgetting_by_predicate_drops_only_what_matches() {
        let cache = cache::<u32>(10);
        for k in 1..=4 {
            cache.get_or_load(k, async move { Ok(k) }).await.unwrap();
        }
        cache.forget_if(|k, _| k % 2 == 0);
        for k in 1..=4 {
            let reloaded = cache.get_or_load(k, async { Ok(0) }).await.unwrap() == 0;
            assert_eq!(reloaded, k % 2 == 0, "key {k}");
        }
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let cache = cache::<u32>(10);
        assert_eq!(cache.get_or_load(1, async { Ok(5) }).await.unwrap(), 5);
        tokio::time::sleep(TTL + Duration::from_millis(50)).await;
        assert_eq!(cache.get_or_load(1, async { Ok(6) }).await.unwrap(), 6);
    }

    /// A cache that asks the store on every read (nothing stays fresh), so that whatever it
    /// answers without asking comes from the fallback.
    fn always_asking(stale_for: Duration) -> (Cache<u32, u32>, Arc<Fallback>) {
        let fallback = Arc::new(Fallback::new(stale_for));
        (Cache::new(10, Duration::ZERO, fallback.clone()), fallback)
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_known_answer_stands_in_for_an_unreachable_store_until_its_bound() {
        let stale_for = Duration::from_secs(600);
        let (cache, fallback) = always_asking(stale_for);
        let asked = AtomicUsize::new(0);
        let count = |v| {
            let asked = &asked;
            async move {
                asked.fetch_add(1, Ordering::SeqCst);
                Ok(v)
            }
        };
        assert_eq!(cache.get_or_load(1, async { Ok(5) }).await.unwrap(), 5);
        assert!(fallback.down_since().is_none());

        tokio::time::advance(Duration::from_secs(300)).await;
        let stale = cache.get_or_load(1, async { Err(unreachable()) }).await;
        assert_eq!(stale.unwrap(), 5, "the last known answer, five minutes old");
        assert!(fallback.down_since().is_some());
        // Within RETRY of the failure the store is left alone: known keys answer at once, a key
        // never seen fails at once.
        assert_eq!(cache.get_or_load(1, count(7)).await.unwrap(), 5);
        let never_seen = cache.get_or_load(2, count(7)).await.unwrap_err();
        assert!(never_seen.is_unavailable(), "{never_seen:?}");
        assert_eq!(asked.load(Ordering::SeqCst), 0);
        // What is not an outage is not masked.
        tokio::time::advance(RETRY).await;
        let broken = cache
            .get_or_load(1, async {
                Err(StoreError::Other(sqlx::Error::ColumnNotFound("x".into())))
            })
            .await
            .unwrap_err();
        assert!(matches!(broken.kind(), StoreError::Other(_)), "{broken:?}");

        // Right up to the bound after the load, and not a moment longer.
        tokio::time::advance(Duration::from_secs(600) - Duration::from_secs(300) - RETRY).await;
        let at_bound = cache.get_or_load(1, async { Err(unreachable()) }).await;
        assert_eq!(at_bound.unwrap(), 5, "exactly {stale_for:?} old");
        tokio::time::advance(RETRY).await;
        let too_old = cache
            .get_or_load(1, async { Err(unreachable()) })
            .await
            .unwrap_err();
        assert!(too_old.is_unavailable(), "{too_old:?}");

        // The store answers again: its answer, and the outage is over.
        tokio::time::advance(RETRY).await;
        assert_eq!(cache.get_or_load(1, count(8)).await.unwrap(), 8);
        assert!(fallback.down_since().is_none());
        assert_eq!(cache.get_or_load(2, count(9)).await.unwrap(), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_revocation_that_reached_the_cache_is_never_undone_by_the_fallback() {
        let (cache, _) = always_asking(DEFAULT_STALE_FOR);
        // 1 = a valid key, 0 = the same key revoked.
        assert_eq!(cache.get_or_load(1, async { Ok(1) }).await.unwrap(), 1);
        assert_eq!(cache.get_or_load(1, async { Ok(0) }).await.unwrap(), 0);
        let during_outage = cache.get_or_load(1, async { Err(unreachable()) }).await;
        assert_eq!(
            during_outage.unwrap(),
            0,
            "the newest answer, the revocation"
        );
        // Forgetting (a revocation by this process) drops the last known answer too.
        tokio::time::advance(RETRY).await;
        assert_eq!(cache.get_or_load(1, async { Ok(1) }).await.unwrap(), 1);
        cache.forget(&1).await;
        tokio::time::advance(RETRY).await;
        let forgotten = cache
            .get_or_load(1, async { Err(unreachable()) })
            .await
            .unwrap_err();
        assert!(forgotten.is_unavailable(), "{forgotten:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_with_a_fallback_waits_for_the_store_no_longer_than_the_patience() {
        let (cache, fallback) = always_asking(DEFAULT_STALE_FOR);
        assert_eq!(cache.get_or_load(1, async { Ok(5) }).await.unwrap(), 5);
        let started = Instant::now();
        let hung = cache.get_or_load(1, std::future::pending()).await;
        assert_eq!(hung.unwrap(), 5);
        assert_eq!(started.elapsed(), PATIENCE);
        assert!(fallback.down_since().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_bound_turns_the_fallback_off() {
        let (cache, _) = always_asking(Duration::ZERO);
        assert_eq!(cache.get_or_load(1, async { Ok(5) }).await.unwrap(), 5);
        let err = cache
            .get_or_load(1, async { Err(unreachable()) })
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
    }
}
