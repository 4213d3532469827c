//! The edge's view of the control plane: tenants and API keys, read through a short-lived cache
//! so that the hot path never waits on SQL, yet a revoked key or a deleted tenant stops working
//! everywhere within [`TTL`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_core::{ChannelName, KeyId, TenantSlug};
use herald_store::{ApiKeyAuth, ChannelSettings, SigningKey, Store, StoreError, Tenant, TenantId};

/// How long an answer from the store is trusted.
pub const TTL: Duration = Duration::from_secs(1);
/// Entries kept at most per cache; beyond it the cache is cleared (a cheap, bounded policy that
/// only costs re-reads).
const MAX_ENTRIES: usize = 100_000;

struct Cache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), value));
    }

    fn forget(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Cached reads of the control plane.
pub struct ControlView {
    store: Store,
    tenants: Cache<TenantSlug, Option<Tenant>>,
    keys: Cache<KeyId, Option<ApiKeyAuth>>,
    channels: Cache<(TenantId, ChannelName), ChannelSettings>,
    signing_keys: Cache<TenantId, Vec<SigningKey>>,
}

impl ControlView {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tenants: Cache::new(),
            keys: Cache::new(),
            channels: Cache::new(),
            signing_keys: Cache::new(),
        }
    }

    pub async fn tenant(&self, slug: &TenantSlug) -> Result<Option<Tenant>, StoreError> {
        if let Some(t) = self.tenants.get(slug) {
            return Ok(t);
        }
        let t = self.store.tenant_by_slug(slug).await?;
        self.tenants.put(slug.clone(), t.clone());
        Ok(t)
    }

    pub async fn api_key(&self, id: &KeyId) -> Result<Option<ApiKeyAuth>, StoreError> {
        if let Some(k) = self.keys.get(id) {
            return Ok(k);
        }
        let k = self.store.api_key_auth(id).await?;
        self.keys.put(id.clone(), k.clone());
        Ok(k)
    }

    /// A channel's settings (its own, or the tenant's defaults).
    pub async fn channel(
        &self,
        tenant: TenantId,
        channel: &ChannelName,
    ) -> Result<ChannelSettings, StoreError> {
        let key = (tenant, channel.clone());
        if let Some(c) = self.channels.get(&key) {
            return Ok(c);
        }
        let c = self.store.channel_settings(tenant, channel).await?;
        self.channels.put(key, c.clone());
        Ok(c)
    }

    /// The tenant's signing keys that still verify, newest first.
    pub async fn signing_keys(&self, tenant: TenantId) -> Result<Vec<SigningKey>, StoreError> {
        if let Some(k) = self.signing_keys.get(&tenant) {
            return Ok(k);
        }
        let k = self.store.signing_keys(tenant).await?;
        self.signing_keys.put(tenant, k.clone());
        Ok(k)
    }

    /// Drops a key from this process's cache at once (the admin API of the same process
    /// revoked it); other processes follow within [`TTL`].
    pub fn forget_key(&self, id: &KeyId) {
        self.keys.forget(id);
    }

    pub fn forget_tenant(&self, slug: &TenantSlug) {
        self.tenants.forget(slug);
    }
}
