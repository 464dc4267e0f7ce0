//! The store against naive reference models that keep every timestamp.
//!
//! Each property drives ≥ 2²⁰ (about 1.05 million) random requests per algorithm
//! through [`MemoryStore`] — 64 cases × 16,384 requests over up to 64 keys, with
//! a manual clock on a millisecond grid, tier changes, long idle gaps and a second
//! limit shared by all keys — and demands the same decision, remaining count and
//! retry time as the model, every time.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use tollgate_core::{Algorithm, Charge, LimitId, ManualClock, MemoryStore, Quota, Rate, Timestamp};

const OPS_PER_CASE: usize = 16_384;
const MS: u64 = 1_000_000;

/// What a model says about one request at `now`: admitted, remaining, retry (ns).
type Answer = (bool, u32, u64);

/// A limit that remembers everything, per key.
trait Model {
    fn decide(&mut self, key: u64, limit: u32, now: u64) -> Answer;
    fn charge(&mut self, key: u64, now: u64);
}

/// Every admitted instant; admitted iff fewer than `limit` in `(now − W, now]`.
struct RollingModel {
    window: u64,
    admitted: HashMap<u64, Vec<u64>>,
}

impl Model for RollingModel {
    fn decide(&mut self, key: u64, limit: u32, now: u64) -> Answer {
        let times = self.admitted.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let live: Vec<u64> = times
            .iter()
            .copied()
            .filter(|t| t + self.window > now)
            .collect();
        let used = live.len() as u32;
        if used < limit {
            (true, limit - used - 1, 0)
        } else {
            // The slot that brings the count below the limit.
            let returning = live[(used - limit) as usize];
            (false, 0, returning + self.window - now)
        }
    }
    fn charge(&mut self, key: u64, now: u64) {
        self.admitted.entry(key).or_default().push(now);
    }
}

/// Every admitted instant, counted per aligned window.
struct FixedModel {
    window: u64,
    admitted: HashMap<u64, Vec<u64>>,
}

impl Model for FixedModel {
    fn decide(&mut self, key: u64, limit: u32, now: u64) -> Answer {
        let index = now / self.window;
        let used = self.admitted.get(&key).map_or(0, |v| {
            v.iter().filter(|t| *t / self.window == index).count()
        }) as u32;
        if used < limit {
            (true, limit - used - 1, 0)
        } else {
            (false, 0, (index + 1) * self.window - now)
        }
    }
    fn charge(&mut self, key: u64, now: u64) {
        self.admitted.entry(key).or_default().push(now);
    }
}

/// A token bucket (the textbook dual of GCRA): `burst` tokens, one back every
/// `W / count`. Kept as a level and the instant it was read, per key; a charge
/// takes one token at the interval of the key's tier at that moment.
struct TokenBucketModel {
    window: u64,
    burst: u64,
    /// Per key: credit in nanoseconds (one token = one interval) as of an instant.
    buckets: HashMap<u64, (u64, u64)>,
    /// The count the last `decide` used, for the `charge` that follows it.
    last_count: u32,
}

impl TokenBucketModel {
    fn interval(&self, count: u32) -> u64 {
        self.window.div_ceil(u64::from(count))
    }

    /// The credit at `now`: as recorded plus the time since, up to a full bucket.
    fn level(&self, key: u64, interval: u64, now: u64) -> u64 {
        let full = self.burst * interval;
        match self.buckets.get(&key) {
            Some(&(credit, at)) => (credit + (now - at)).min(full),
            None => full,
        }
    }
}

impl Model for TokenBucketModel {
    fn decide(&mut self, key: u64, limit: u32, now: u64) -> Answer {
        self.last_count = limit;
        let interval = self.interval(limit);
        let level = self.level(key, interval, now);
        if level >= interval {
            (true, ((level - interval) / interval) as u32, 0)
        } else {
            (false, 0, interval - level)
        }
    }
    fn charge(&mut self, key: u64, now: u64) {
        let interval = self.interval(self.last_count);
        let level = self.level(key, interval, now);
        self.buckets.insert(key, (level - interval, now));
    }
}

/// A tiny deterministic generator, so one seed replays one case exactly.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug)]
struct Case {
    seed: u64,
    count: u32,
    window_ms: u64,
    keys: u64,
    shared_count: u32,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<u64>(),
        prop::sample::select(vec![1u32, 2, 4, 5, 10, 20, 50]),
        prop::sample::select(vec![1_000u64, 10_000, 60_000]),
        1u64..=64,
        prop::sample::select(vec![5u32, 40, 1_000]),
    )
        .prop_map(|(seed, count, window_ms, keys, shared_count)| Case {
            seed,
            count,
            window_ms,
            keys,
            shared_count,
        })
}

/// Replays one case: every request charges its key's limit (with the key's tier)
/// and one limit shared by all keys; the store must agree with the models.
fn replay(case: &Case, algorithm: Algorithm, mut per_key: impl Model, mut shared: impl Model) {
    let window = case.window_ms * MS;
    let base = Quota {
        rate: Rate::new(case.count, Duration::from_millis(case.window_ms)),
        algorithm,
    };
    let shared_quota = Quota {
        rate: Rate::new(case.shared_count, Duration::from_millis(case.window_ms)),
        algorithm,
    };
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let store =
        MemoryStore::new(clock.clone()).sweep_every(Duration::from_millis(case.window_ms / 2));
    let mut rng = SplitMix(case.seed);
    let mut tiers: HashMap<u64, u32> = HashMap::new();
    // Mean gap so that keys hover around their limit: admissions and rejections.
    let mean_gap_ms = (case.window_ms / u64::from(case.count) / case.keys).max(1);
    for op in 0..OPS_PER_CASE {
        let gap = match rng.below(100) {
            0 => window * (1 + rng.below(3)) + rng.below(70_000) * MS, // idle spells, rebases
            1..=30 => 0,                                               // same instant
            _ => rng.below(2 * mean_gap_ms + 1) * MS,
        };
        clock.advance(Duration::from_nanos(gap));
        let key = rng.below(case.keys);
        // Tier changes: the log and the window counts keep their history; GCRA
        // re-reads its arrival time at the new interval, which a token bucket
        // does not model, so it is tested at a fixed tier.
        if !matches!(algorithm, Algorithm::Gcra { .. }) && rng.below(200) == 0 {
            tiers.insert(key, rng.below(3) as u32);
        }
        let count = case.count * (1 + tiers.get(&key).copied().unwrap_or(0));
        let now = clock.now().as_nanos();
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
        let decision = store.decide_now(&charges);
        let expect_key = per_key.decide(key, count, now);
        let expect_shared = shared.decide(u64::MAX, case.shared_count, now);
        let admitted = expect_key.0 && expect_shared.0;
        let context = format!(
            "{case:?} op {op} key {key} at +{}ms",
            (now / MS) % 1_000_000
        );
        assert_eq!(decision.is_admitted(), admitted, "{context}");
        for (verdict, expected) in decision.verdicts().iter().zip([expect_key, expect_shared]) {
            assert_eq!(verdict.admitted, expected.0, "{context}");
            let remaining = if expected.0 && !admitted {
                expected.1 + 1
            } else {
                expected.1
            };
            assert_eq!(verdict.remaining, remaining, "{context}");
            assert_eq!(
                verdict.retry_after,
                Duration::from_nanos(expected.2),
                "{context}"
            );
        }
        if admitted {
            per_key.charge(key, now);
            shared.charge(u64::MAX, now);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rolling_agrees_with_a_log_of_every_request(case in case()) {
        let window = case.window_ms * MS;
        replay(&case, Algorithm::Rolling,
            RollingModel { window, admitted: HashMap::new() },
            RollingModel { window, admitted: HashMap::new() });
    }

    #[test]
    fn fixed_agrees_with_counts_per_aligned_window(case in case()) {
        let window = case.window_ms * MS;
        replay(&case, Algorithm::Fixed,
            FixedModel { window, admitted: HashMap::new() },
            FixedModel { window, admitted: HashMap::new() });
    }

    #[test]
    fn gcra_agrees_with_a_token_bucket(case in case(), burst in 1u32..=8) {
        let window = case.window_ms * MS;
        replay(&case, Algorithm::Gcra { burst },
            TokenBucketModel { window, burst: u64::from(burst), buckets: HashMap::new(), last_count: 1 },
            TokenBucketModel { window, burst: u64::from(burst), buckets: HashMap::new(), last_count: 1 });
    }
}
