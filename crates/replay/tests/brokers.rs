//! The broker contract ([`herald_replay::contract`]), run on every backend: the in-process
//! broker, Redis (`HERALD_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`), each test in its
//! own key space, and Redis Cluster (three private masters per test, `herald_cluster`); then
//! what only Redis can show.

use std::sync::Arc;
use std::time::Duration;

use herald_cluster::redis_cluster::RedisCluster;
use herald_core::TenantSlug;
use herald_replay::contract::{ev, keep, key};
use herald_replay::{Broker, Gap, Presence, RedisBroker, RedisConfig, Target};

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

/// What a subscriber has seen: events, and how often it was told to resync.
#[derive(Default)]
struct Followed {
    events: Vec<(herald_core::Cursor, herald_core::Event)>,
    resyncs: usize,
}

/// What a subscriber does with its subscription, as the edge does: take live events after
/// the last one it has, and re-read history after it on `Resync` (or when it fell behind).
async fn follow(
    b: Arc<RedisBroker>,
    mut sub: herald_replay::Subscription,
    got: Arc<std::sync::Mutex<Followed>>,
) {
    use herald_replay::Live;
    use tokio::sync::broadcast::error::RecvError;
    let mut last = sub.start;
    loop {
        let catch_up = match sub.rx.recv().await {
            Ok(Live::Event(e)) => {
                if last.is_none_or(|l| e.cursor.position > l.position) {
                    let event = b.read(&key("c"), last, 1).await.unwrap();
                    // The live frame carries no typed event; history has it, at that cursor.
                    assert_eq!(event.cursor_of(&event.events[0]), e.cursor);
                    got.lock()
                        .unwrap()
                        .events
                        .push((e.cursor, event.events[0].event.clone()));
                    last = Some(e.cursor);
                }
                false
            }
            Ok(Live::Resync) | Err(RecvError::Lagged(_)) => true,
            Err(RecvError::Closed) => return,
        };
        if catch_up {
            got.lock().unwrap().resyncs += 1;
            let h = b.read(&key("c"), last, 10_000).await.unwrap();
            assert_eq!(h.gap, None, "nothing was trimmed");
            for e in &h.events {
                got.lock()
                    .unwrap()
                    .events
                    .push((h.cursor_of(e), e.event.clone()));
                last = Some(h.cursor_of(e));
            }
        }
    }
}

/// A channel's slot moves to another master (`SETSLOT IMPORTING/MIGRATING`, `MIGRATE`,
/// `SETSLOT NODE`) while a publisher appends to it through another process: every append
/// succeeds (the client follows `ASK` and `MOVED`), and a subscriber ends with every event once,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moving_to_another_master_loses_nothing_and_doubles_nothing() {
    let cluster = Arc::new(tokio::task::spawn_blocking(private_cluster).await.unwrap());
    let (subscriber, publisher) = (on_cluster(&cluster).await, on_cluster(&cluster).await);
    let sub = subscriber.subscribe(&key("c")).await.unwrap();
    let got: Arc<std::sync::Mutex<Followed>> = Arc::default();
    let follower = tokio::spawn(follow(subscriber.clone(), sub, Arc::clone(&got)));

    const EVENTS: u64 = 300;
    let publishing = tokio::spawn(async move {
        for n in 0..EVENTS {
            // Each publish retries with its key until it is stored, as a client does on a 503.
            let idem = herald_replay::Idempotency {
                tenant: TenantSlug::parse("acme").unwrap(),
                key: format!("e{n}"),
                fingerprint: format!("f{n}"),
            };
            let mut tries = 0;
            let append = herald_replay::Append {
                retention: keep(1000),
                ..herald_replay::contract::append("c", n)
            };
            while publisher
                .append_batch(std::slice::from_ref(&append), Some(&idem), None)
                .await
                .is_err()
            {
                tries += 1;
                assert!(tries < 100, "event {n} was never stored");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mover = cluster.clone();
    let (from, to) = tokio::task::spawn_blocking(move || {
        let slot = mover.slot_of("herald-test:{acme/c}:s").unwrap();
        let from = mover.owner_of(slot).unwrap();
        let to = (from + 1) % mover.masters.len();
        mover.move_slot(slot, to).unwrap();
        assert_eq!(mover.owner_of(slot).unwrap(), to);
        (from, to)
    })
    .await
    .unwrap();
    assert_ne!(from, to);
    publishing.await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while got.lock().unwrap().events.len() < EVENTS as usize
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    follower.abort();
    let got = std::mem::take(&mut *got.lock().unwrap());
    assert!(
        got.resyncs > 0,
        "the subscriber was told to resync when its shard channel moved"
    );
    let got: Vec<herald_core::Event> = got.events.into_iter().map(|(_, e)| e).collect();
    let want: Vec<herald_core::Event> = (0..EVENTS).map(ev).collect();
    assert_eq!(got.len(), want.len(), "every event once");
    assert!(got == want, "in order");
    let stored = subscriber.read(&key("c"), None, 10_000).await.unwrap();
    assert_eq!(stored.events.len(), EVENTS as usize, "stored once each");
}

/// A TCP proxy to Redis that can stall every connection but the pub/sub one: the command path
/// blocked (a slow or hung Redis round trip) while announcements still flow.
struct StallingProxy {
    port: u16,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl StallingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let pubsub = Arc::new(AtomicBool::new(false));
                    let (flag_up, pubsub_up) = (flag.clone(), pubsub.clone());
                    // Client to server: a connection that subscribes is the pub/sub one.
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 {
                                return;
                            }
                            if buf[..n].windows(9).any(|w| w == b"SUBSCRIBE") {
                                pubsub_up.store(true, Ordering::SeqCst);
                            }
                            while flag_up.load(Ordering::SeqCst)
                                && !pubsub_up.load(Ordering::SeqCst)
                            {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        while flag.load(Ordering::SeqCst) && !pubsub.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, stalled }
    }

    fn stall(&self) {
        self.stalled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// While this process's command connection hangs (its count reports and connection releases
/// cannot reach Redis), announcements from another process still reach its subscribers at
/// once: the pub/sub task never waits for a command's round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_command_connection_does_not_hold_up_fan_out() {
    let (publisher, space) = redis().await;
    let upstream = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("HERALD_TEST_REDIS_URL is redis://host:port");
    let proxy = StallingProxy::start(upstream).await;
    let edge = RedisBroker::connect(RedisConfig {
        url: format!("redis://127.0.0.1:{}", proxy.port),
        prefix: space.prefix.clone(),
        cluster: false,
    })
    .await
    .unwrap();
    let mut sub = edge.subscribe(&key("c")).await.unwrap();
    let acme = TenantSlug::parse("acme").unwrap();
    let permits: Vec<_> =
        futures_util::future::join_all((0..20).map(|_| edge.acquire_connection(&acme, 100))).await;
    proxy.stall();
    // Releases queue up for the command connection, which now hangs.
    drop(permits);
    let mut slowest = Duration::ZERO;
    for n in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let sent = tokio::time::Instant::now();
        let cursor = publisher
            .append(&key("c"), &ev(n), keep(100))
            .await
            .unwrap();
        let live = tokio::time::timeout(Duration::from_secs(5), sub.rx.recv())
            .await
            .expect("the announcement arrives")
            .unwrap();
        match live {
            herald_replay::Live::Event(e) => assert_eq!(e.cursor, cursor),
            herald_replay::Live::Resync => panic!("the pub/sub connection never dropped"),
        }
        slowest = slowest.max(sent.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "an announcement took {slowest:?} while commands hung"
    );
}

/// A re-authorisation order sent by one process reaches the others within a second: this is how
/// a channel turning private reaches streams open on every edge.
#[tokio::test]
async fn recheck_orders_reach_every_process_within_a_second() {
    let (a, space) = redis().await;
    let b = RedisBroker::connect(RedisConfig {
        url: redis_url(),
        prefix: space.prefix.clone(),
        cluster: false,
    })
    .await
    .unwrap();
    let mut orders = b.rechecks();
    let target = Target::Channel(key("c"));
    a.recheck_streams(&target).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(1), orders.recv()).await {
        Ok(Ok(got)) => assert_eq!(got, target),
        other => panic!("the other process hears the order: {other:?}"),
    }
}
