//! The broker contract ([`herald_replay::contract`]), run on every backend: the in-process
//! broker, Redis (`HERALD_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`), each test in its
//! own key space, and Redis Cluster (three private masters per test, `herald_cluster`); then
//! what only Redis can show.

use std::sync::Arc;
use std::time::Duration;

use herald_cluster::redis_cluster::RedisCluster;
use herald_core::TenantSlug;
use herald_replay::contract::{ev, keep, key};
use herald_replay::{Broker, Gap, Presence, RedisBroker, RedisConfig};

fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis key space of its own, deleted when the test ends.
struct Space {
    prefix: String,
}

impl Space {
    /// Deletes every key of the space.
    fn wipe(&self) {
        assert!(self.prefix.starts_with("herald-test-"));
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        self.wipe();
    }
}

async fn redis() -> (Arc<RedisBroker>, Space) {
    let prefix = format!("herald-test-{:016x}", rand::random::<u64>());
    let broker = RedisBroker::connect(RedisConfig {
        url: redis_url(),
        prefix: prefix.clone(),
        cluster: false,
    })
    .await
    .expect("Redis must be reachable for the broker tests");
    (broker, Space { prefix })
}

/// A Redis Cluster of the test's own: three masters on free ports, stopped with the guard.
fn private_cluster() -> RedisCluster {
    let dir = std::env::temp_dir().join(format!(
        "herald-replay-cluster-{:016x}",
        rand::random::<u64>()
    ));
    RedisCluster::start(&dir, 3, false).expect("redis-server and redis-cli on PATH")
}

async fn on_cluster(cluster: &RedisCluster) -> Arc<RedisBroker> {
    RedisBroker::connect(RedisConfig {
        url: cluster.seeds(),
        prefix: "herald-test".into(),
        cluster: true,
    })
    .await
    .expect("the private Redis Cluster answers")
}

async fn redis_cluster() -> (Arc<RedisBroker>, RedisCluster) {
    let cluster = tokio::task::spawn_blocking(private_cluster).await.unwrap();
    (on_cluster(&cluster).await, cluster)
}

herald_replay::broker_contract!(in_process, || async {
    (herald_replay::InProcessBroker::new(), ())
});
herald_replay::broker_contract!(on_redis, redis);
herald_replay::broker_contract!(on_redis_cluster, redis_cluster);

#[tokio::test]
async fn redis_data_loss_starts_a_new_life() {
    let (b, space) = redis().await;
    let old = b.append(&key("c"), &ev(0), keep(10)).await.unwrap();
    // Lose everything, as a Redis restart without persistence would.
    space.wipe();
    let new = b.append(&key("c"), &ev(1), keep(10)).await.unwrap();
    assert_ne!(old.epoch, new.epoch);
    let h = b.read(&key("c"), Some(old), 10).await.unwrap();
    assert_eq!(h.gap, Some(Gap::InvalidCursor));
    assert_eq!(
        h.events.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![ev(1)]
    );
}

/// Two Redis brokers on one key space are two edge processes: the limit holds across both.
#[tokio::test]
async fn connection_limits_hold_across_processes() {
    let (a, space) = redis().await;
    let b = RedisBroker::connect(RedisConfig {
        url: redis_url(),
        prefix: space.prefix.clone(),
        cluster: false,
    })
    .await
    .unwrap();
    let acme = TenantSlug::parse("acme").unwrap();
    let _a1 = a.acquire_connection(&acme, 3).await.unwrap().unwrap();
    let _a2 = a.acquire_connection(&acme, 3).await.unwrap().unwrap();
    // Let both processes prove they are alive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b1 = b.acquire_connection(&acme, 3).await.unwrap().unwrap();
    assert_eq!(b1.total, 3);
    assert!(b.acquire_connection(&acme, 3).await.unwrap().is_none());
    assert!(a.acquire_connection(&acme, 3).await.unwrap().is_none());
}
