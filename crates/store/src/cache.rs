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

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use herald_core::{ChannelName, KeyId, TenantSlug};

use crate::{ApiKeyAuth, ChannelSettings, SigningKey, Store, StoreError, Tenant, TenantId};

/// How long an answer from the store is trusted.
pub const TTL: Duration = Duration::from_secs(1);
/// Entries kept at most per cache.
pub const MAX_ENTRIES: u64 = 100_000;

/// A bounded, expiring, single-flight cache of store answers.
pub struct Cache<K, V> {
    entries: moka::future::Cache<K, V>,
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity` entries, each trusted for [`TTL`].
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(TTL)
                .build(),
        }
    }

    /// The cached value of `key`, or the one `load` answers. Concurrent misses of one key wait
    /// for a single `load`; a failed load is not cached, and every waiter gets its error.
    pub async fn get_or_load<F>(&self, key: K, load: F) -> Result<V, StoreError>
    where
        F: Future<Output = Result<V, StoreError>>,
    {
        self.entries
            .try_get_with(key, load)
            .await
            .map_err(StoreError::shared)
    }

    /// Drops `key`, so that the next read loads it again.
    pub async fn forget(&self, key: &K) {
        self.entries.invalidate(key).await;
    }
}

/// Cached reads of the control plane.
pub struct ControlView {
    store: Store,
    tenants: Cache<TenantSlug, Option<Arc<Tenant>>>,
    keys: Cache<KeyId, Option<Arc<ApiKeyAuth>>>,
    channels: Cache<(TenantId, ChannelName), Arc<ChannelSettings>>,
    signing_keys: Cache<TenantId, Arc<[SigningKey]>>,
}

impl ControlView {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tenants: Cache::new(MAX_ENTRIES),
            keys: Cache::new(MAX_ENTRIES),
            channels: Cache::new(MAX_ENTRIES),
            signing_keys: Cache::new(MAX_ENTRIES),
        }
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

    /// A channel's settings (its own, or the tenant's defaults).
    pub async fn channel(
        &self,
        tenant: TenantId,
        channel: &ChannelName,
    ) -> Result<Arc<ChannelSettings>, StoreError> {
        self.channels
            .get_or_load((tenant, channel.clone()), async {
                Ok(Arc::new(
                    self.store.channel_settings(tenant, channel).await?,
                ))
            })
            .await
    }

    /// The tenant's signing keys that still verify, newest first.
    pub async fn signing_keys(&self, tenant: TenantId) -> Result<Arc<[SigningKey]>, StoreError> {
        self.signing_keys
            .get_or_load(tenant, async {
                Ok(self.store.signing_keys(tenant).await?.into())
            })
            .await
    }

    /// Drops a key from this process's cache at once (the admin API of the same process
    /// revoked it); other processes follow within [`TTL`].
    pub async fn forget_key(&self, id: &KeyId) {
        self.keys.forget(id).await;
    }

    /// Drops a tenant from this process's cache at once; other processes follow within [`TTL`].
    pub async fn forget_tenant(&self, slug: &TenantSlug) {
        self.tenants.forget(slug).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_concurrent_misses_cost_one_load() {
        let cache = Arc::new(Cache::<u32, Arc<String>>::new(10));
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
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached_and_reach_every_caller() {
        let cache = Cache::<u32, u32>::new(10);
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
    async fn entries_expire_after_the_ttl() {
        let cache = Cache::<u32, u32>::new(10);
        assert_eq!(cache.get_or_load(1, async { Ok(5) }).await.unwrap(), 5);
        tokio::time::sleep(TTL + Duration::from_millis(50)).await;
        assert_eq!(cache.get_or_load(1, async { Ok(6) }).await.unwrap(), 6);
    }
}
