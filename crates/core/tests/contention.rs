//! Many threads, one key: the store never admits more than the quota.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tollgate_core::{Charge, LimitId, ManualClock, MemoryStore, Quota, Rate, Timestamp};

const THREADS: usize = 8;
const ROUNDS: usize = 10_000;
const LIMIT: u32 = 10;
/// Attempts per thread per round: 8 × 3 = 24 racing for 10 slots.
const ATTEMPTS: usize = 3;

fn exactly_the_quota_per_window(quota: Quota, charges: impl Fn(u32) -> Vec<Charge<u64>> + Sync) {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let store = MemoryStore::new(clock.clone());
    let admitted = AtomicU32::new(0);
    let barrier = Barrier::new(THREADS + 1);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (store, admitted, barrier, charges) = (&store, &admitted, &barrier, &charges);
            scope.spawn(move || {
                for _ in 0..ROUNDS {
                    barrier.wait(); // the round starts
                    for attempt in 0..ATTEMPTS {
                        let request = charges((thread * ATTEMPTS + attempt) as u32);
                        if store.decide_now(&request).is_admitted() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    barrier.wait(); // the round is over
                }
            });
        }
        for round in 0..ROUNDS {
            barrier.wait();
            barrier.wait();
            let got = admitted.swap(0, Ordering::Relaxed);
            assert_eq!(
                got, LIMIT,
                "round {round}: {got} admitted for a quota of {LIMIT}"
            );
            // The next window: every slot of this one has returned.
            clock.advance(quota.rate.window());
        }
    });
    assert!(clock.now() > Timestamp::from_secs(1_700_000_000));
}

#[test]
fn eight_threads_on_one_key_admit_exactly_the_rolling_quota_every_window() {
    let quota = Quota::rolling(Rate::new(LIMIT, Duration::from_secs(60)));
    exactly_the_quota_per_window(quota, |_| {
        vec![Charge {
            limit: LimitId(0),
            key: 42,
            quota,
        }]
    });
}

#[test]
fn eight_threads_on_a_per_key_and_a_shared_limit_never_over_admit_either() {
    // Each thread has its own per-key limit of 2 (16 in all), and all share one
    // endpoint limit of 10: the shared limit binds, exactly.
    let per_key = Quota::rolling(Rate::new(2, Duration::from_secs(60)));
    let shared = Quota::fixed(Rate::new(LIMIT, Duration::from_secs(60)));
    exactly_the_quota_per_window(shared, |attempt| {
        vec![
            Charge {
                limit: LimitId(0),
                key: u64::from(attempt / ATTEMPTS as u32),
                quota: per_key,
            },
            Charge {
                limit: LimitId(1),
                key: 7,
                quota: shared,
            },
        ]
    });
}

#[test]
fn a_rejection_leaves_every_other_limit_untouched() {
    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let store = MemoryStore::new(clock.clone());
    let per_key = Quota::rolling(Rate::per_minute(50));
    let endpoint = Quota::fixed(Rate::per_second(1));
    let request = |key: u64| {
        [
            Charge {
                limit: LimitId(0),
                key,
                quota: per_key,
            },
            Charge {
                limit: LimitId(1),
                key: 0,
                quota: endpoint,
            },
        ]
    };
    assert!(store.decide_now(&request(1)).is_admitted());
    // The endpoint is full for this second: key 2's request is rejected...
    for _ in 0..5 {
        let rejected = store.decide_now(&request(2));
        assert!(!rejected.is_admitted());
        let [key_verdict, endpoint_verdict] = rejected.verdicts() else {
            panic!()
        };
        assert!(key_verdict.admitted && !endpoint_verdict.admitted);
        assert_eq!(key_verdict.remaining, 50, "nothing charged to the key");
    }
    // ...and key 2's own budget is whole when the endpoint frees up.
    clock.advance(Duration::from_secs(1));
    let next = store.decide_now(&request(2));
    assert!(next.is_admitted());
    assert_eq!(next.verdicts()[0].remaining, 49);
}
