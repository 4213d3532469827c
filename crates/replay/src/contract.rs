//! The broker contract: what every [`Broker`] promises, as tests any backend runs.
//!
//! A backend's test file calls [`broker_contract!`](crate::broker_contract) with a module name
//! and an async function that makes a fresh broker (and a guard that cleans up after it, or
//! `()`); every promise becomes a `#[tokio::test]` in that module:
//!
//! ```ignore
//! herald_replay::broker_contract!(in_process, || async { (InProcessBroker::new(), ()) });
//! ```

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use herald_core::{ChannelName, Cursor, Epoch, Event, EventData, EventType, Position, TenantSlug};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    Append, Appended, Broker, ChannelKey, DailyQuota, Gap, Idempotency, Live, Retention,
    Subscription, Target,
};

/// One `#[tokio::test]` per promise of the contract, in module `$module`, each on a broker
/// that `$make()` makes (it answers `(Arc<broker>, guard)`; the guard lives as long as the test).
#[macro_export]
macro_rules! broker_contract {
    ($module:ident, $make:expr) => {
        $crate::__broker_contract!(
            $module,
            $make,
            resume_reads_exactly_the_missed_events,
            trimming_is_a_truncation_gap_only_when_something_was_lost,
            unknown_and_ahead_cursors_are_invalid,
            live_events_follow_append_order_after_the_start,
            a_catch_up_that_found_nothing_spares_later_subscribers_theirs,
            channels_and_tenants_are_separate,
            pages_continue_where_they_stop,
            pages_are_bounded_by_bytes_and_say_more_follow,
            a_cursor_of_another_channel_is_never_placed,
            ending_streams_closes_subscriptions_of_the_target_only,
            recheck_orders_reach_the_listeners_and_leave_streams_open,
            deleting_history_starts_a_new_life,
            batches_append_in_order_across_channels,
            idempotent_appends_happen_once_however_many_race,
            channel_info_reports_head_and_retained,
            the_daily_quota_refuses_whole_batches_past_the_limit,
            connection_permits_are_counted_until_dropped,
            a_burst_reaches_every_subscriber_exactly_while_rings_grow
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __broker_contract {
    ($module:ident, $make:expr, $($name:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let (broker, _guard) = ($make)().await;
                    $crate::contract::$name(broker).await
                }
            )*
        }
    };
}

pub fn key(channel: &str) -> ChannelKey {
    ChannelKey::new(
        TenantSlug::parse("acme").unwrap(),
        ChannelName::parse(channel).unwrap(),
    )
}

pub fn ev(n: u64) -> Event {
    Event {
        event_type: EventType::parse("n").unwrap(),
        data: EventData::from_value(&n.into()),
    }
}

pub fn keep(max_len: u32) -> Retention {
    Retention {
        max_len,
        ttl: Duration::from_secs(3600),
    }
}

pub async fn resume_reads_exactly_the_missed_events(b: Arc<impl Broker>) {
    let mut cursors = Vec::new();
    for n in 0..10 {
        cursors.push(b.append(&key("c"), &ev(n), keep(100)).await.unwrap());
    }
    assert!(cursors.windows(2).all(|w| w[0].position < w[1].position));
    let h = b.read(&key("c"), Some(cursors[3]), 100).await.unwrap();
    assert_eq!(h.gap, None);
    let got: Vec<_> = h.events.iter().map(|e| e.event.clone()).collect();
    assert_eq!(got, (4..10).map(ev).collect::<Vec<_>>());
    assert_eq!(h.cursor_of(&h.events[0]), cursors[4]);
    let h = b.read(&key("c"), Some(cursors[9]), 100).await.unwrap();
    assert!(h.events.is_empty() && h.gap.is_none());
    let h = b.read(&key("c"), None, 100).await.unwrap();
    assert_eq!(h.events.len(), 10);
}

pub async fn trimming_is_a_truncation_gap_only_when_something_was_lost(b: Arc<impl Broker>) {
    let mut cursors = Vec::new();
    for n in 0..8 {
        cursors.push(b.append(&key("c"), &ev(n), keep(3)).await.unwrap());
    }
    // 5, 6, 7 are retained; 4 is the newest dropped.
    let h = b.read(&key("c"), Some(cursors[1]), 100).await.unwrap();
    assert_eq!(h.gap, Some(Gap::HistoryTruncated));
    assert_eq!(
        h.events.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![ev(5), ev(6), ev(7)]
    );
    let h = b.read(&key("c"), Some(cursors[4]), 100).await.unwrap();
    assert_eq!(h.gap, None, "the reader of event 4 lost nothing");
    assert_eq!(h.events.len(), 3);
}

pub async fn unknown_and_ahead_cursors_are_invalid(b: Arc<impl Broker>) {
    let c = b.append(&key("c"), &ev(0), keep(10)).await.unwrap();
    let other_life = Cursor::new(Epoch(c.epoch.0.wrapping_add(1)), c.position);
    let h = b.read(&key("c"), Some(other_life), 100).await.unwrap();
    assert_eq!((h.gap, h.events.len()), (Some(Gap::InvalidCursor), 1));
    let ahead = Cursor::new(c.epoch, Position::new(c.position.ms + 1_000_000, 0));
    let h = b.read(&key("c"), Some(ahead), 100).await.unwrap();
    assert_eq!((h.gap, h.events.len()), (Some(Gap::InvalidCursor), 1));
    let h = b.read(&key("never-used"), Some(c), 100).await.unwrap();
    assert!(h.gap.is_some() && h.events.is_empty());
}

pub async fn live_events_follow_append_order_after_the_start(b: Arc<impl Broker>) {
    let before = b.append(&key("c"), &ev(0), keep(100)).await.unwrap();
    let mut sub = b.subscribe(&key("c")).await.unwrap();
    assert_eq!(sub.start, Some(before));
    let mut appended = Vec::new();
    for n in 1..=50 {
        appended.push(b.append(&key("c"), &ev(n), keep(100)).await.unwrap());
    }
    for want in appended {
        let got = tokio::time::timeout(Duration::from_secs(5), sub.rx.recv())
            .await
            .expect("live event in time")
            .unwrap();
        match got {
            Live::Event(e) => assert_eq!(e.cursor, want),
            Live::Resync => panic!("unexpected resync"),
        }
    }
}

/// A quiet channel's first subscriber reads history once (the node's subscription may have
/// missed something); when that read finds nothing after its start, it primes the hub, and
/// later subscribers start live, without a read, and still receive every later event.
pub async fn a_catch_up_that_found_nothing_spares_later_subscribers_theirs(b: Arc<impl Broker>) {
    let before = b.append(&key("c"), &ev(0), keep(100)).await.unwrap();
    let mut first = b.subscribe(&key("c")).await.unwrap();
    assert_eq!(first.start, Some(before));
    if first.catch_up {
        let h = b.read(&key("c"), first.start, 100).await.unwrap();
        assert!(h.events.is_empty() && h.gap.is_none() && !h.full);
        b.prime(&key("c"), first.start, first.generation);
    }
    let mut later = b.subscribe(&key("c")).await.unwrap();
    assert!(!later.catch_up, "a primed channel needs no read");
    assert_eq!(later.start, Some(before));
    let after = b.append(&key("c"), &ev(1), keep(100)).await.unwrap();
    for sub in [&mut first, &mut later] {
        let got = tokio::time::timeout(Duration::from_secs(5), sub.rx.recv())
            .await
            .expect("live event in time")
            .unwrap();
        assert!(matches!(got, Live::Event(e) if e.cursor == after));
    }
}

pub async fn channels_and_tenants_are_separate(b: Arc<impl Broker>) {
    let other_tenant = ChannelKey::new(
        TenantSlug::parse("other").unwrap(),
        ChannelName::parse("c").unwrap(),
    );
    b.append(&key("c"), &ev(1), keep(10)).await.unwrap();
    b.append(&key("d"), &ev(2), keep(10)).await.unwrap();
    b.append(&other_tenant, &ev(3), keep(10)).await.unwrap();
    let h = b.read(&key("c"), None, 10).await.unwrap();
    assert_eq!(
        h.events.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![ev(1)]
    );
    let h = b.read(&other_tenant, None, 10).await.unwrap();
    assert_eq!(
        h.events.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![ev(3)]
    );
}

pub async fn pages_continue_where_they_stop(b: Arc<impl Broker>) {
    let first = b.append(&key("c"), &ev(0), keep(100)).await.unwrap();
    for n in 1..25 {
        b.append(&key("c"), &ev(n), keep(100)).await.unwrap();
    }
    let mut after = first;
    let mut seen = vec![ev(0)];
    loop {
        let h = b.read(&key("c"), Some(after), 7).await.unwrap();
        assert_eq!(h.gap, None);
        seen.extend(h.events.iter().map(|e| e.event.clone()));
        match h.events.last() {
            Some(last) => after = h.cursor_of(last),
            None => break,
        }
    }
    assert_eq!(seen, (0..25).map(ev).collect::<Vec<_>>());
}

pub async fn pages_are_bounded_by_bytes_and_say_more_follow(b: Arc<impl Broker>) {
    let big = |n: u64| Event {
        event_type: EventType::message(),
        data: EventData::from_text(&format!("{n:03}{}", "x".repeat(60 << 10))),
    };
    let mut written = Vec::new();
    for n in 0..12 {
        written.push(b.append(&key("c"), &big(n), keep(100)).await.unwrap());
    }
    let (mut after, mut read, mut pages) = (None, Vec::new(), 0);
    loop {
        let h = b.read(&key("c"), after, 256).await.unwrap();
        let bytes: usize = h.events.iter().map(|e| e.event.data.as_json().len()).sum();
        assert!(bytes <= crate::PAGE_BYTES, "{bytes} bytes in one page");
        read.extend(h.events.iter().map(|e| h.cursor_of(e)));
        after = read.last().copied();
        pages += 1;
        if !h.full {
            break;
        }
    }
    assert_eq!(read, written, "every event, once, in order");
    assert!(pages >= 3, "{pages} pages");
    // A page that ends the history says so.
    let h = b.read(&key("c"), after, 256).await.unwrap();
    assert!(h.events.is_empty() && !h.full);
}

pub async fn a_cursor_of_another_channel_is_never_placed(b: Arc<impl Broker>) {
    b.append(&key("a"), &ev(0), keep(10)).await.unwrap();
    let foreign = b.append(&key("b"), &ev(1), keep(10)).await.unwrap();
    b.append(&key("a"), &ev(2), keep(10)).await.unwrap();
    let h = b.read(&key("a"), Some(foreign), 10).await.unwrap();
    assert_eq!(h.gap, Some(Gap::InvalidCursor));
    assert_eq!(h.events.len(), 2, "everything retained follows the gap");
}

pub async fn ending_streams_closes_subscriptions_of_the_target_only(b: Arc<impl Broker>) {
    let mut c = b.subscribe(&key("c")).await.unwrap();
    let mut d = b.subscribe(&key("d")).await.unwrap();
    b.end_streams(&Target::Channel(key("c"))).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), c.rx.recv()).await;
    assert!(matches!(closed, Ok(Err(RecvError::Closed))), "{closed:?}");
    let after = b.append(&key("d"), &ev(1), keep(10)).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), d.rx.recv()).await {
        Ok(Ok(Live::Event(e))) => assert_eq!(e.cursor, after),
        other => panic!("the other channel lives on: {other:?}"),
    }
    b.end_streams(&Target::Tenant(TenantSlug::parse("acme").unwrap()))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), d.rx.recv()).await;
    assert!(matches!(closed, Ok(Err(RecvError::Closed))), "{closed:?}");
    // A new subscriber is served again.
    let mut again = b.subscribe(&key("c")).await.unwrap();
    let c1 = b.append(&key("c"), &ev(2), keep(10)).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), again.rx.recv()).await {
        Ok(Ok(Live::Event(e))) => assert_eq!(e.cursor, c1),
        other => panic!("resubscribed: {other:?}"),
    }
}

pub async fn recheck_orders_reach_the_listeners_and_leave_streams_open(b: Arc<impl Broker>) {
    let mut orders = b.rechecks();
    let mut c = b.subscribe(&key("c")).await.unwrap();
    let channel = Target::Channel(key("c"));
    let tenant = Target::Tenant(TenantSlug::parse("acme").unwrap());
    for target in [&channel, &tenant] {
        b.recheck_streams(target).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), orders.recv()).await {
            Ok(Ok(got)) => assert_eq!(&got, target),
            other => panic!("the order arrives: {other:?}"),
        }
    }
    // Re-checking is the edge's business: the subscription itself lives on.
    let after = b.append(&key("c"), &ev(1), keep(10)).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), c.rx.recv()).await {
        Ok(Ok(Live::Event(e))) => assert_eq!(e.cursor, after),
        other => panic!("the stream lives on: {other:?}"),
    }
}

pub async fn deleting_history_starts_a_new_life(b: Arc<impl Broker>) {
    let old = b.append(&key("c"), &ev(0), keep(10)).await.unwrap();
    let other_tenant = ChannelKey::new(
        TenantSlug::parse("other").unwrap(),
        ChannelName::parse("c").unwrap(),
    );
    b.append(&other_tenant, &ev(9), keep(10)).await.unwrap();
    b.delete_history(&Target::Tenant(TenantSlug::parse("acme").unwrap()))
        .await
        .unwrap();
    let h = b.read(&key("c"), Some(old), 10).await.unwrap();
    assert_eq!((h.gap, h.events.len()), (Some(Gap::InvalidCursor), 0));
    assert_eq!(
        b.read(&other_tenant, None, 10).await.unwrap().events.len(),
        1,
        "other tenants keep theirs"
    );
    let new = b.append(&key("c"), &ev(1), keep(10)).await.unwrap();
    assert_ne!(new.epoch, old.epoch);
    b.delete_history(&Target::Channel(key("c"))).await.unwrap();
    assert!(b.read(&key("c"), None, 10).await.unwrap().events.is_empty());
}

pub fn append(channel: &str, n: u64) -> Append {
    Append {
        channel: key(channel),
        event: ev(n),
        retention: keep(100),
    }
}

pub async fn batches_append_in_order_across_channels(b: Arc<impl Broker>) {
    let batch = [append("a", 1), append("b", 2), append("a", 3)];
    let Appended::Fresh(cursors) = b.append_batch(&batch, None, None).await.unwrap() else {
        panic!("a batch without a key is always fresh");
    };
    assert_eq!(cursors.len(), 3);
    assert!(cursors[0].position < cursors[2].position);
    let a = b.read(&key("a"), None, 10).await.unwrap();
    assert_eq!(
        a.events.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![ev(1), ev(3)]
    );
    assert_eq!(a.cursor_of(&a.events[1]), cursors[2]);
    let bb = b.read(&key("b"), None, 10).await.unwrap();
    assert_eq!(bb.cursor_of(&bb.events[0]), cursors[1]);
}

pub async fn idempotent_appends_happen_once_however_many_race(b: Arc<impl Broker>) {
    let idem = Idempotency {
        tenant: TenantSlug::parse("acme").unwrap(),
        key: "order-42".into(),
        fingerprint: "f1".into(),
    };
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (b, idem) = (b.clone(), idem.clone());
        tasks.push(tokio::spawn(async move {
            b.append_batch(&[append("c", 7)], Some(&idem), None)
                .await
                .unwrap()
        }));
    }
    let mut fresh = 0;
    let mut cursors = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Appended::Fresh(c) => {
                fresh += 1;
                cursors.push(c);
            }
            Appended::Repeat(c) => cursors.push(c),
            Appended::Conflict | Appended::QuotaExceeded => panic!("same fingerprint, no quota"),
        }
    }
    assert_eq!(fresh, 1);
    assert!(
        cursors.windows(2).all(|w| w[0] == w[1]),
        "every answer is the first one"
    );
    assert_eq!(b.read(&key("c"), None, 10).await.unwrap().events.len(), 1);
    let other = Idempotency {
        fingerprint: "f2".into(),
        ..idem.clone()
    };
    assert_eq!(
        b.append_batch(&[append("c", 8)], Some(&other), None)
            .await
            .unwrap(),
        Appended::Conflict
    );
    let other_tenant = Idempotency {
        tenant: TenantSlug::parse("other").unwrap(),
        ..idem
    };
    assert!(matches!(
        b.append_batch(&[append("c", 9)], Some(&other_tenant), None)
            .await
            .unwrap(),
        Appended::Fresh(_)
    ));
}

pub async fn channel_info_reports_head_and_retained(b: Arc<impl Broker>) {
    let info = b.channel_info(&key("c")).await.unwrap();
    assert_eq!((info.last, info.retained), (None, 0));
    for n in 0..4 {
        b.append(&key("c"), &ev(n), keep(3)).await.unwrap();
    }
    let last = b.append(&key("c"), &ev(4), keep(3)).await.unwrap();
    let info = b.channel_info(&key("c")).await.unwrap();
    assert_eq!((info.last, info.retained), (Some(last), 3));
}

pub async fn the_daily_quota_refuses_whole_batches_past_the_limit(b: Arc<impl Broker>) {
    let quota = |day| DailyQuota {
        tenant: TenantSlug::parse("acme").unwrap(),
        day,
        limit: 3,
    };
    let today = quota(20_000);
    let two = [append("c", 1), append("c", 2)];
    assert!(matches!(
        b.append_batch(&two, None, Some(&today)).await.unwrap(),
        Appended::Fresh(_)
    ));
    assert_eq!(
        b.append_batch(&two, None, Some(&today)).await.unwrap(),
        Appended::QuotaExceeded,
        "2 + 2 > 3"
    );
    assert!(matches!(
        b.append_batch(&[append("c", 3)], None, Some(&today))
            .await
            .unwrap(),
        Appended::Fresh(_)
    ));
    assert_eq!(
        b.append_batch(&[append("c", 4)], None, Some(&today))
            .await
            .unwrap(),
        Appended::QuotaExceeded
    );
    assert_eq!(
        b.read(&key("c"), None, 10).await.unwrap().events.len(),
        3,
        "refused batches appended nothing"
    );
    assert!(
        matches!(
            b.append_batch(&[append("c", 5)], None, Some(&quota(20_001)))
                .await
                .unwrap(),
            Appended::Fresh(_)
        ),
        "a new day"
    );
}

pub async fn connection_permits_are_counted_until_dropped(b: Arc<impl Broker>) {
    let acme = TenantSlug::parse("acme").unwrap();
    let other = TenantSlug::parse("other").unwrap();
    let p1 = b
        .acquire_connection(&acme, 2)
        .await
        .unwrap()
        .expect("first");
    let p2 = b
        .acquire_connection(&acme, 2)
        .await
        .unwrap()
        .expect("second");
    assert_eq!(p2.total, 2);
    assert_eq!(b.connections(&acme).await.unwrap(), 2, "both are counted");
    assert!(
        b.acquire_connection(&acme, 2).await.unwrap().is_none(),
        "the third is refused"
    );
    assert!(
        b.acquire_connection(&other, 2).await.unwrap().is_some(),
        "other tenants are unaffected"
    );
    drop(p1);
    assert_eq!(
        b.connections(&acme).await.unwrap(),
        1,
        "a dropped permit stops counting"
    );
    let mut again = None;
    for _ in 0..250 {
        again = b.acquire_connection(&acme, 2).await.unwrap();
        if again.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a released connection can be taken again");
    drop((p2, again));
    assert_eq!(b.connections(&acme).await.unwrap(), 0);
}

/// What a stream does with its subscription, as the edge does: history after its cursor when it
/// starts catching up (`catch_up`, `Resync`, `Lagged`), then live events after the last one it
/// has. Reading one in every `pace` events, it sleeps a millisecond (a slow reader). Ends once it
/// has `end`, and answers every cursor it delivered.
async fn follow_exactly(
    b: Arc<impl Broker>,
    mut sub: Subscription,
    end: tokio::sync::watch::Receiver<Option<Cursor>>,
    pace: u64,
) -> Vec<Cursor> {
    let mut got = Vec::new();
    let mut last = sub.start;
    let mut catching_up = sub.catch_up;
    // As the edge does, a first read that finds nothing primes the hub.
    let mut prime = sub.catch_up.then_some(sub.generation);
    let mut taken = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if catching_up {
            loop {
                let h = b.read(&key("burst"), last, 256).await.unwrap();
                assert_eq!(h.gap, None, "nothing was trimmed");
                if let Some(generation) = prime.take() {
                    if h.events.is_empty() && !h.full {
                        b.prime(&key("burst"), last, generation);
                    }
                }
                for e in &h.events {
                    got.push(h.cursor_of(e));
                    last = Some(h.cursor_of(e));
                }
                if !h.full {
                    break;
                }
            }
            catching_up = false;
        }
        if last.is_some() && *end.borrow() == last {
            return got;
        }
        assert!(tokio::time::Instant::now() < deadline, "ended in time");
        match tokio::time::timeout(Duration::from_millis(100), sub.rx.recv()).await {
            Err(_) => continue,
            Ok(Ok(Live::Event(e))) => {
                if last.is_none_or(|l| e.cursor.position > l.position) {
                    got.push(e.cursor);
                    last = Some(e.cursor);
                }
            }
            Ok(Ok(Live::Resync) | Err(RecvError::Lagged(_))) => catching_up = true,
            Ok(Err(RecvError::Closed)) => panic!("the subscription was closed"),
        }
        taken += 1;
        if pace > 0 && taken.is_multiple_of(pace) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// A channel's ring starts small and grows while it is busy: during a burst of more events than
/// the ring holds at its largest, with subscribers joining throughout and some reading slowly
/// (so the ring grows, and the slowest lag past its bound), every subscriber ends with exactly
/// the events after its start, once each, in order.
pub async fn a_burst_reaches_every_subscriber_exactly_while_rings_grow(b: Arc<impl Broker>) {
    const EVENTS: u64 = 3000;
    let (end_tx, end) = tokio::sync::watch::channel(None);
    // (event before which it joins, how slowly it reads)
    let joins: &[(u64, u64)] = &[
        (0, 0),
        (0, 3),
        (0, 1),
        (10, 0),
        (200, 2),
        (700, 0),
        (1500, 1),
        (2999, 0),
    ];
    let mut followers = Vec::new();
    let mut appended = Vec::new();
    for n in 0..EVENTS {
        for &(_, pace) in joins.iter().filter(|(at, _)| *at == n) {
            let sub = b.subscribe(&key("burst")).await.unwrap();
            let start = sub.start;
            let follower = tokio::spawn(follow_exactly(b.clone(), sub, end.clone(), pace));
            followers.push((start, follower));
        }
        appended.push(b.append(&key("burst"), &ev(n), keep(10_000)).await.unwrap());
        if n.is_multiple_of(8) {
            // Let the subscribers run (the in-process broker never waits).
            tokio::task::yield_now().await;
        }
    }
    end_tx.send(appended.last().copied()).unwrap();
    for (i, (start, follower)) in followers.into_iter().enumerate() {
        let got = follower.await.unwrap();
        let want: Vec<Cursor> = appended
            .iter()
            .copied()
            .filter(|c| start.is_none_or(|s| c.position > s.position))
            .collect();
        assert_eq!(got.len(), want.len(), "subscriber {i}: how many");
        assert!(got == want, "subscriber {i}: the exact sequence");
    }
}
