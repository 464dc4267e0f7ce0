//! What the store does besides deciding alike: Redis's own time, keys that
//! expire, errors that say whether to retry, a clock that steps back.

use std::time::Duration;

use redis::AsyncCommands;
use tollgate_core::{
    Charge, Decision, LimitId, ManualClock, MemoryStore, Quota, Rate, Store, Timestamp,
};
use tollgate_redis::{RedisStore, TTL_GRACE};

use crate::support::{cleanup, raw, store, unique_prefix};

fn rolling(count: u32, window: Duration) -> Charge<&'static str> {
    Charge {
        limit: LimitId(0),
        key: "key-12345",
        quota: Quota::rolling(Rate::new(count, window)),
    }
}

#[tokio::test]
async fn redis_time_decides_when_no_time_is_injected() {
    let prefix = unique_prefix("time");
    let store = store(&prefix).await;
    let charge = [rolling(3, Duration::from_secs(60))];
    for left in [2, 1, 0] {
        let decision = store.decide(&charge).await.unwrap();
        assert!(decision.is_admitted());
        assert_eq!(decision.verdicts()[0].remaining, left);
    }
    let fourth = store.decide(&charge).await.unwrap();
    let wait = fourth.retry_after().expect("the fourth is rejected");
    // A minute after the first, whose instant was rounded up to the log's
    // resolution (1 ms at 60 s), less the time since.
    let most = Duration::from_secs(60) + Duration::from_millis(1);
    assert!(wait > Duration::from_secs(59) && wait <= most, "{wait:?}");
    cleanup(&prefix).await;
}

#[tokio::test]
async fn keys_expire_once_their_state_stops_mattering() {
    let prefix = unique_prefix("ttl");
    let store = store(&prefix).await;
    let window = Duration::from_secs(10);
    let charge = [rolling(5, window)];
    store.decide(&charge).await.unwrap();
    let key = format!("{prefix}:{{key-12345}}:0");
    let ttl: i64 = raw().await.pttl(&key).await.unwrap();
    // The slot returns one window after the request, rounded up to the log's
    // resolution (1 ms at 10 s).
    let most = (window + TTL_GRACE).as_millis() as i64 + 1;
    assert!(ttl > most - 1_000 && ttl <= most, "PTTL {ttl} ms");
    // Nothing is written for a request that is rejected (a tier lowered to 1).
    let before: Vec<u8> = raw().await.get(&key).await.unwrap();
    let lowered = [rolling(1, window)];
    assert!(!store.decide(&lowered).await.unwrap().is_admitted());
    let after: Vec<u8> = raw().await.get(&key).await.unwrap();
    assert_eq!(before, after);
    assert_eq!(cleanup(&prefix).await, 1);
}

#[tokio::test]
async fn a_rejected_request_charges_no_limit() {
    let prefix = unique_prefix("all-or-none");
    let store = store(&prefix).await;
    let at = Timestamp::from_secs(1_700_000_000);
    let roomy = rolling(10, Duration::from_secs(60));
    let tight = Charge {
        limit: LimitId(1),
        key: "key-12345",
        quota: Quota::fixed(Rate::per_second(1)),
    };
    assert!(
        store
            .decide_at(std::slice::from_ref(&tight), at)
            .await
            .unwrap()
            .is_admitted()
    );
    let both = store.decide_at(&[roomy.clone(), tight], at).await.unwrap();
    assert!(!both.is_admitted());
    // Not charged: 10 left before this request, which would have taken one.
    assert_eq!(both.verdicts()[0].remaining, 10);
    let alone = store.decide_at(&[roomy], at).await.unwrap();
    assert_eq!(alone.verdicts()[0].remaining, 9);
    assert_eq!(
        store.decide_at::<&str>(&[], at).await.unwrap(),
        Decision::default()
    );
    cleanup(&prefix).await;
}

#[tokio::test]
async fn a_clock_that_steps_back_never_moves_the_log_back() {
    let prefix = unique_prefix("step-back");
    let redis = store(&prefix).await;
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let memory = MemoryStore::new(clock.clone());
    let charge = [rolling(3, Duration::from_secs(1))];
    let t = clock.now();
    let at = |ms: i64| {
        if ms < 0 {
            t - Duration::from_millis(ms.unsigned_abs())
        } else {
            t + Duration::from_millis(ms as u64)
        }
    };
    // Admitted at t, t − 100 ms and t − 50 ms: all three recorded at t, so none
    // returns before t + 1 s.
    let mut admitted = Vec::new();
    for ms in [0, -100, -50, -40, 899, 950, 999, 1_000, 1_001] {
        let expected = memory.decide_at(&charge, at(ms));
        assert_eq!(
            redis.decide_at(&charge, at(ms)).await.unwrap(),
            expected,
            "at {ms} ms"
        );
        admitted.push(expected.is_admitted());
    }
    assert_eq!(
        admitted,
        [true, true, true, false, false, false, false, true, true]
    );
    cleanup(&prefix).await;
}

#[tokio::test]
async fn a_key_of_another_type_is_a_permanent_error() {
    let prefix = unique_prefix("wrongtype");
    let store = store(&prefix).await;
    let key = format!("{prefix}:{{key-12345}}:0");
    let _: () = raw().await.rpush(&key, "not a limit").await.unwrap();
    let error = store
        .decide(&[rolling(3, Duration::from_secs(60))])
        .await
        .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("WRONGTYPE"), "{error}");
    cleanup(&prefix).await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_error() {
    // Port 1 on the loopback: nothing listens there.
    let error = RedisStore::connect("redis://127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
}

#[tokio::test]
async fn a_prefix_cannot_break_the_hash_tag() {
    let prefix = unique_prefix("a{b}");
    let store = store(&prefix).await;
    assert!(!store.prefix().contains('{') && !store.prefix().contains('}'));
    store
        .decide(&[rolling(3, Duration::from_secs(60))])
        .await
        .unwrap();
    assert_eq!(cleanup(store.prefix()).await, 1);
}
