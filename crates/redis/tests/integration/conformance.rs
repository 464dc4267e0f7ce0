//! The same random requests decided by `MemoryStore` and `RedisStore` get
//! identical decisions: admitted, remaining, retry and reset, for every limit.
//!
//! Like the core's reference-model tests: a manual clock on a millisecond grid,
//! windows from 50 ms to 150 s, up to 64 keys, a per-key limit with tier changes
//! and (nine requests in ten) a limit shared by all keys, same-instant bursts, long idle spells, and for GCRA a clock that
//! sometimes steps back. 20,000 requests per algorithm.

use std::collections::HashMap;
use std::time::Duration;

use tollgate_core::{Algorithm, Charge, LimitId, ManualClock, MemoryStore, Quota, Rate, Timestamp};

use crate::support::{Rng, cleanup, store, unique_prefix};

const CASES: usize = 16;
const OPS_PER_CASE: usize = 1_250;
const MS: u64 = 1_000_000;

#[derive(Clone, Debug)]
struct Case {
    seed: u64,
    count: u32,
    window_ms: u64,
    keys: u64,
    shared_count: u32,
}

impl Case {
    /// Case `i`: every count and every window come up (7 and 5 are coprime);
    /// keys and the shared limit at random.
    fn new(i: usize) -> Self {
        const COUNTS: [u32; 7] = [1, 2, 4, 5, 10, 20, 50];
        // 50 ms: 1 µs steps in the rolling log; 150 s: 10 ms steps.
        const WINDOWS_MS: [u64; 5] = [50, 1_000, 10_000, 60_000, 150_000];
        let seed = 0xC0FFEE + i as u64 * 7_919;
        let mut rng = Rng::new(seed);
        Self {
            seed,
            count: COUNTS[i % COUNTS.len()],
            window_ms: WINDOWS_MS[i % WINDOWS_MS.len()],
            keys: 1 + rng.below(64),
            shared_count: rng.pick(&[5, 40, 1_000]),
        }
    }
}

/// Replays one case through both stores; returns how many requests were admitted.
async fn replay(case: &Case, algorithm: impl Fn(&mut Rng) -> Algorithm) -> usize {
    let mut rng = Rng::new(case.seed ^ 0x5EED);
    let algorithm = algorithm(&mut rng);
    // A clock that steps back, for GCRA only. Redis expires keys on its own
    // clock, not the injected one: a fixed or sliding-counter key charged just
    // before its window ends can expire in real time before the test's clock
    // steps back into that window, which the memory store still remembers; and
    // a peek in MemoryStore drops expired rolling slots that Redis keeps. Both
    // are within the contract (the system clock never steps back).
    let steps_back = matches!(algorithm, Algorithm::Gcra { .. });
    let window = Duration::from_millis(case.window_ms);
    let base = Quota {
        rate: Rate::new(case.count, window),
        algorithm,
    };
    let shared_quota = Quota {
        rate: Rate::new(case.shared_count, window),
        algorithm,
    };
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    // No sweeps: after a step back a swept key could matter again, and MemoryStore
    // would have forgotten it while Redis (whose keys expire on its own clock)
    // had not.
    let memory = MemoryStore::new(clock.clone()).sweep_every(Duration::from_secs(1 << 40));
    let prefix = unique_prefix("conformance");
    let redis = store(&prefix).await;
    let mut tiers: HashMap<u64, u32> = HashMap::new();
    let mean_gap_ms = (case.window_ms / u64::from(case.count) / case.keys).max(1);
    let mut admitted = 0;
    for op in 0..OPS_PER_CASE {
        match rng.below(200) {
            // Idle spells (and rebases of the rolling log).
            0 | 1 => clock.advance(
                window * (1 + rng.below(3) as u32) + Duration::from_millis(rng.below(70_000)),
            ),
            2 if steps_back => clock.set(clock.now() - Duration::from_millis(rng.below(50))),
            3..=60 => {} // same instant
            _ => clock.advance(Duration::from_millis(rng.below(2 * mean_gap_ms + 1))),
        }
        let key = rng.below(case.keys);
        if rng.below(200) == 0 {
            tiers.insert(key, rng.below(3) as u32);
        }
        let count = case.count * (1 + tiers.get(&key).copied().unwrap_or(0));
        let charges = [
            Charge {
                limit: LimitId(0),
                key,
                quota: base.with_count(count),
            },
            Charge {
                limit: LimitId(1),
                key: u64::MAX,
                quota: shared_quota,
            },
        ];
        // One request in ten matches the per-key limit only.
        let charges = if rng.below(10) == 0 {
            &charges[..1]
        } else {
            &charges[..]
        };
        let now = clock.now();
        // One in twenty, first an admin's look, which must charge nothing.
        if rng.below(20) == 0 {
            let expected = memory.peek_at(charges, now);
            let got = redis.peek_at(charges, now).await.expect("redis peeks");
            assert_eq!(got, expected, "{algorithm:?} {case:?} op {op}: peek");
        }
        let expected = memory.decide_at(charges, now);
        let got = redis.decide_at(charges, now).await.expect("redis decides");
        assert_eq!(
            got,
            expected,
            "{algorithm:?} {case:?} op {op} key {key} at +{}ms: redis (left) disagrees with memory (right)",
            (now.as_nanos() / MS) % 10_000_000
        );
        admitted += usize::from(expected.is_admitted());
    }
    cleanup(&prefix).await;
    admitted
}

/// Runs every case of one algorithm and checks the runs were not trivial.
async fn conform(name: &str, algorithm: impl Fn(&mut Rng) -> Algorithm + Copy) {
    let mut admitted = 0;
    for i in 0..CASES {
        admitted += replay(&Case::new(i), algorithm).await;
    }
    let total = CASES * OPS_PER_CASE;
    println!("{name}: {total} requests, {admitted} admitted, 0 disagreements");
    assert!(
        admitted > total / 10 && admitted < total * 9 / 10,
        "{name}: {admitted} of {total} admitted; the cases should exercise both outcomes"
    );
}

#[tokio::test]
async fn rolling_decides_as_memory_does() {
    conform("rolling", |_| Algorithm::Rolling).await;
}

#[tokio::test]
async fn fixed_decides_as_memory_does() {
    conform("fixed", |_| Algorithm::Fixed).await;
}

#[tokio::test]
async fn gcra_decides_as_memory_does() {
    conform("gcra", |rng| Algorithm::Gcra {
        burst: 1 + rng.below(8) as u32,
    })
    .await;
}

#[tokio::test]
async fn sliding_counter_decides_as_memory_does() {
    conform("sliding-counter", |_| Algorithm::SlidingCounter).await;
}
