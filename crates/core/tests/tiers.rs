//! Tiers change a key's limit at once, without resetting the slots it used.

use std::time::Duration;

use tollgate_core::{
    Charge, Endpoints, LimitId, ManualClock, MemoryStore, Policy, PolicySet, Quota, Rate, Scope,
    Subject, Timestamp,
};

fn per_key_policy(quota: Quota) -> PolicySet {
    PolicySet::new(vec![Policy {
        name: "per-key".into(),
        scope: Scope::PerKey,
        quota,
        endpoints: Endpoints::All,
        tier_step: Some(50),
    }])
}

/// Admits requests at the current instant until one is rejected; returns how many.
fn fill(store: &MemoryStore<u64>, charges: &[Charge<u64>]) -> u32 {
    let mut admitted = 0;
    while store.decide_now(charges).is_admitted() {
        admitted += 1;
    }
    admitted
}

#[test]
fn an_increment_takes_effect_on_the_next_request_and_keeps_the_used_slots() {
    for quota in [
        Quota::rolling(Rate::per_minute(50)),
        Quota::fixed(Rate::per_minute(50)),
        Quota::sliding_counter(Rate::per_minute(50)),
    ] {
        let clock = ManualClock::new(Timestamp::from_secs(6_000));
        let store = MemoryStore::new(clock.clone());
        let policies = per_key_policy(quota);
        let mut key = Subject {
            key: 1,
            endpoint: None,
            increments: 0,
        };
        assert_eq!(fill(&store, &policies.charges(&key)), 50, "{quota}");

        // +1 increment: 100 per minute, of which 50 are already used.
        clock.advance(Duration::from_secs(1));
        key.increments = 1;
        assert_eq!(fill(&store, &policies.charges(&key)), 50, "{quota}");

        // Back to the base tier within the same minute: 100 used, nothing left,
        // and raising it again does not forget what was used.
        key.increments = 0;
        assert_eq!(fill(&store, &policies.charges(&key)), 0, "{quota}");
        key.increments = 1;
        assert_eq!(fill(&store, &policies.charges(&key)), 0, "{quota}");
        key.increments = 2;
        assert_eq!(fill(&store, &policies.charges(&key)), 50, "{quota}");
    }
}

#[test]
fn increments_do_not_raise_a_limit_shared_by_every_key() {
    let policies = PolicySet::new(vec![Policy {
        name: "user-list".into(),
        scope: Scope::PerEndpoint,
        quota: Quota::fixed(Rate::per_second(20)),
        endpoints: Endpoints::Only(vec![1]),
        tier_step: Some(50),
    }]);
    let paid = Subject {
        key: 1,
        endpoint: Some(1),
        increments: 3,
    };
    assert_eq!(policies.charges(&paid)[0].quota.rate.count(), 20);
}

/// The sliding counter's documented bound: a rolling window never holds
/// `2 × count` admitted requests or more, even against traffic that bunches at
/// window edges; and against steady traffic it stays close to the limit.
#[test]
fn the_sliding_counter_stays_within_its_documented_error_bound() {
    let count = 100u32;
    let window = Duration::from_secs(10);
    let quota = Quota::sliding_counter(Rate::new(count, window));
    let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    let store = MemoryStore::new(clock.clone());
    let charge = [Charge {
        limit: LimitId(0),
        key: 1u64,
        quota,
    }];
    let mut admitted_at = Vec::new();
    // The estimate's worst case, in cycles of three windows: a burst at the
    // last millisecond of the first, steady attempts every 10 ms through the
    // second (each admitted as the first window's weight fades), then quiet.
    for step in 0..60_000u64 {
        let (window_index, at) = (step / 1_000, step % 1_000);
        let attempts = match (window_index % 3, at) {
            (0, 999) => 200,
            (1, _) => 1,
            _ => 0,
        };
        let now = clock.now();
        for _ in 0..attempts {
            if store.decide_now(&charge).is_admitted() {
                admitted_at.push(now.as_nanos());
            }
        }
        clock.advance(Duration::from_millis(10));
    }
    let width = window.as_nanos() as u64;
    let mut worst = 0usize;
    let mut first = 0usize;
    for (last, &t) in admitted_at.iter().enumerate() {
        while admitted_at[first] + width <= t {
            first += 1;
        }
        worst = worst.max(last + 1 - first);
    }
    println!("sliding-counter {count}/10s: at most {worst} admitted in a rolling window");
    assert!(worst < 2 * count as usize, "{worst}");
    assert!(
        worst > count as usize,
        "the bunching must show, or this test tests nothing"
    );
}
