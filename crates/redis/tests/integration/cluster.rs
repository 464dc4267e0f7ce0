//! A Redis Cluster of three primaries, started by the tests (on free loopback
//! ports), with a per-key limit and a per-route limit whose keys live in
//! different slots on different nodes: no CROSSSLOT errors, no over-admission
//! under concurrency, every reservation either admitted or taken back, and the
//! same decisions as `MemoryStore` for a request sequence.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Barrier;
use tollgate_core::{Algorithm, Charge, LimitId, ManualClock, MemoryStore, Quota, Rate, Timestamp};
use tollgate_redis::RedisStore;

use crate::support::{Cluster, Rng, unique_prefix};

const PER_KEY: LimitId = LimitId(0);
const PER_ROUTE: LimitId = LimitId(1);

/// The slot of `key` as the cluster says (`CLUSTER KEYSLOT`).
async fn keyslot(cluster: &Cluster, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut cluster.node().await)
        .await
        .expect("CLUSTER KEYSLOT")
}

/// An API key whose slot is served by another node than `route`'s: the test's
/// keys always span two nodes, not merely two slots.
async fn keys_apart(cluster: &Cluster, prefix: &str, route: &str, n: usize) -> Vec<String> {
    let route_node = cluster
        .node_of(keyslot(cluster, &format!("{prefix}:{{{route}}}:1")).await)
        .await;
    let mut keys = Vec::new();
    for i in 0.. {
        let key = format!("key-{i}");
        let slot = keyslot(cluster, &format!("{prefix}:{{{key}}}:0")).await;
        if cluster.node_of(slot).await != route_node {
            keys.push(key);
            if keys.len() == n {
                break;
            }
        }
    }
    keys
}

#[tokio::test]
async fn one_keys_limits_are_one_script_and_a_shared_limit_splits() {
    let cluster = Cluster::shared().await;
    let prefix = unique_prefix("cluster-slots");
    let store = cluster.store(&prefix).await;
    assert!(store.is_cluster());
    let key = keys_apart(&cluster, &prefix, "route-users", 1)
        .await
        .remove(0);
    // The store's key names: one API key's limits (with or without an endpoint)
    // share its slot.
    let per_key = keyslot(&cluster, &format!("{prefix}:{{{key}}}:0")).await;
    let per_key_endpoint = keyslot(&cluster, &format!("{prefix}:{{{key}}}:users:2")).await;
    let route = keyslot(&cluster, &format!("{prefix}:{{route-users}}:1")).await;
    assert_eq!(per_key, per_key_endpoint);
    assert_ne!(per_key, route);

    let rate = Rate::per_minute(100);
    let own = [
        Charge {
            limit: PER_KEY,
            key: (key.as_str(), ""),
            quota: Quota::rolling(rate),
        },
        Charge {
            limit: LimitId(2),
            key: (key.as_str(), "users"),
            quota: Quota::gcra(rate, 10),
        },
    ];
    for _ in 0..10 {
        assert!(store.decide_at(&own, now()).await.unwrap().is_admitted());
    }
    assert_eq!(store.split_stats().split_decisions, 0);
    let both = [
        Charge {
            limit: PER_KEY,
            key: key.as_str(),
            quota: Quota::rolling(rate),
        },
        Charge {
            limit: PER_ROUTE,
            key: "route-users",
            quota: Quota::fixed(rate),
        },
    ];
    for left in (95..100).rev() {
        let decision = store.decide_at(&both, now()).await.unwrap();
        assert!(decision.is_admitted());
        assert_eq!(decision.verdicts()[1].remaining, left);
    }
    let peek = store.peek_at(&both, now()).await.unwrap();
    assert_eq!(peek.verdicts()[1].remaining, 95);
    assert_eq!(store.split_stats().split_decisions, 5);
    assert_eq!(store.split_stats().undone_charges, 0);
}

fn now() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

const STORES: usize = 4;
const TASKS_PER_STORE: usize = 16;
const KEYS: usize = 8;
const REQUESTS_PER_TASK: u64 = 2;
const PERIODS: usize = 40;
const WINDOW_MS: u64 = 1_000;
const KEY_QUOTA: u32 = 10;
const ROUTE_QUOTA: u32 = 50;

/// 4 stores (4 cluster connections, as 4 gateways) × 16 tasks, 8 API keys, each
/// request charging its key's limit and the route's, 2 requests per task per
/// period: 16 per key for a quota of 10, 128 in all for the route's 50. Periods
/// are two windows apart (so each starts afresh), with a barrier between them.
/// Returns the admissions per period per key.
async fn hammer(
    key_quota: Quota,
    route_quota: Quota,
    route_first: bool,
    spread: bool,
) -> Vec<[u32; KEYS]> {
    let cluster = Cluster::shared().await;
    let prefix = unique_prefix("cluster-hammer");
    let route = "route-users";
    let keys = keys_apart(&cluster, &prefix, route, KEYS).await;
    let mut stores: Vec<RedisStore> = Vec::new();
    for _ in 0..STORES {
        stores.push(cluster.store(&prefix).await);
    }
    let admitted: Arc<Vec<[AtomicU32; KEYS]>> = Arc::new(
        (0..PERIODS)
            .map(|_| std::array::from_fn(|_| AtomicU32::new(0)))
            .collect(),
    );
    let barrier = Arc::new(Barrier::new(STORES * TASKS_PER_STORE));
    let start = now();
    let charges = |k: usize| {
        let mut charges = vec![
            Charge {
                limit: PER_KEY,
                key: keys[k].clone(),
                quota: key_quota,
            },
            Charge {
                limit: PER_ROUTE,
                key: route.to_owned(),
                quota: route_quota,
            },
        ];
        if route_first {
            charges.reverse();
        }
        charges
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for t in 0..TASKS_PER_STORE {
            let task = s * TASKS_PER_STORE + t;
            let k = task % KEYS;
            let (store, admitted, barrier) = (store.clone(), admitted.clone(), barrier.clone());
            let charges = charges(k);
            tasks.push(tokio::spawn(async move {
                for period in 0..PERIODS {
                    barrier.wait().await;
                    for request in 0..REQUESTS_PER_TASK {
                        let offset = if spread {
                            (task as u64 * 37 + request * 101) % (WINDOW_MS / 2)
                        } else {
                            0
                        };
                        let at =
                            start + Duration::from_millis(period as u64 * 2 * WINDOW_MS + offset);
                        // No CROSSSLOT, nor any other error.
                        let decision = store
                            .decide_at(&charges, at)
                            .await
                            .expect("the cluster decides");
                        if decision.is_admitted() {
                            admitted[period][k].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("task");
    }
    let elapsed = started.elapsed();

    // Every reservation was admitted or taken back: what the limits hold after
    // the last period is exactly what they admitted in it.
    let last = PERIODS - 1;
    // After every request of the period (at their instant, when they share
    // one: GCRA refills continuously).
    let after = if spread { WINDOW_MS / 2 } else { 0 };
    let end = start + Duration::from_millis(last as u64 * 2 * WINDOW_MS + after);
    let store = &stores[0];
    let mut route_used = 0;
    for (k, key) in keys.iter().enumerate() {
        let peek = store.peek_at(&charges(k), end).await.unwrap();
        let verdict = |limit| {
            peek.verdicts()
                .iter()
                .find(|v| v.limit == limit)
                .copied()
                .unwrap()
        };
        let own = admitted[last][k].load(Ordering::Relaxed);
        assert_eq!(
            verdict(PER_KEY).remaining,
            key_quota.rate.count() - own,
            "{key}: the per-key limit holds other than the {own} it admitted"
        );
        route_used = route_quota.rate.count() - verdict(PER_ROUTE).remaining;
    }
    let per_period: Vec<[u32; KEYS]> = admitted
        .iter()
        .map(|keys| std::array::from_fn(|k| keys[k].load(Ordering::Relaxed)))
        .collect();
    assert_eq!(
        route_used,
        per_period[last].iter().sum::<u32>(),
        "the route's limit holds other than it admitted"
    );
    let stats = stores
        .iter()
        .map(RedisStore::split_stats)
        .fold((0, 0, 0), |a, s| {
            (
                a.0 + s.split_decisions,
                a.1 + s.undone_charges,
                a.2 + s.undo_errors,
            )
        });
    let requests = PERIODS * STORES * TASKS_PER_STORE * REQUESTS_PER_TASK as usize;
    let totals: Vec<u32> = per_period.iter().map(|p| p.iter().sum()).collect();
    println!(
        "cluster, {key_quota} per key + {route_quota} per route{}: {requests} requests in {elapsed:.2?} \
         ({:.0}/s), {} split decisions, {} charges taken back, {} failed undos; admitted per period: \
         min {}, max {} (route quota {})",
        if route_first { ", route first" } else { "" },
        requests as f64 / elapsed.as_secs_f64(),
        stats.0,
        stats.1,
        stats.2,
        totals.iter().min().unwrap(),
        totals.iter().max().unwrap(),
        route_quota.rate.count()
    );
    assert_eq!(stats.0 as usize, requests, "every request spans two slots");
    assert_eq!(stats.2, 0, "no undo failed");
    per_period
}

/// Never over: at most the route's quota per period, at most the key's quota
/// per key. Under only briefly: reservations awaiting their undo may reject a
/// request that one atomic script would have admitted, so each period admits at
/// least 80% of what the limits allow together.
fn never_over(per_period: &[[u32; KEYS]], key_quota: u32, route_quota: u32) {
    let allowed = route_quota.min(key_quota * KEYS as u32);
    for (period, keys) in per_period.iter().enumerate() {
        let total: u32 = keys.iter().sum();
        assert!(
            total <= route_quota,
            "period {period}: {total} admitted for a route quota of {route_quota}: {keys:?}"
        );
        assert!(
            keys.iter().all(|&n| n <= key_quota),
            "period {period}: a key admitted more than {key_quota}: {keys:?}"
        );
        assert!(
            total >= allowed * 4 / 5,
            "period {period}: only {total} admitted: {keys:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_and_per_route_limits_in_different_slots_never_over_admit() {
    let window = Duration::from_millis(WINDOW_MS);
    let per_period = hammer(
        Quota::rolling(Rate::new(KEY_QUOTA, window)),
        Quota::fixed(Rate::new(ROUTE_QUOTA, window)),
        false,
        true,
    )
    .await;
    never_over(&per_period, KEY_QUOTA, ROUTE_QUOTA);
}

/// The route's limit first: its reservations are the ones taken back when a
/// key's limit rejects, as most do here (6 per key, 8 keys: 48 of the route's
/// 50). GCRA at one instant per period (a full bucket of burst N admits N) and
/// the sliding counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_of_the_shared_limit_are_taken_back_exactly() {
    let window = Duration::from_millis(WINDOW_MS);
    let key_quota = 6;
    let per_period = hammer(
        Quota::gcra(Rate::new(key_quota, window), key_quota),
        Quota::sliding_counter(Rate::new(ROUTE_QUOTA, window)),
        true,
        false,
    )
    .await;
    never_over(&per_period, key_quota, ROUTE_QUOTA);
}

/// One request at a time, each charging an API key's limit and a shared one in
/// another slot (in a random order): the cluster's reserve-then-undo decides
/// exactly as `MemoryStore` decides all at once, for every algorithm.
#[tokio::test]
async fn split_decisions_are_memory_stores_decisions() {
    let cluster = Cluster::shared().await;
    let algorithms = [
        Algorithm::Rolling,
        Algorithm::Fixed,
        Algorithm::Gcra { burst: 4 },
        Algorithm::SlidingCounter,
    ];
    let mut summary = HashMap::new();
    for (a, algorithm) in algorithms.into_iter().enumerate() {
        let prefix = unique_prefix("cluster-conformance");
        let redis = cluster.store(&prefix).await;
        let keys = keys_apart(&cluster, &prefix, "shared", 4).await;
        let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
        let memory = MemoryStore::new(clock.clone());
        let mut rng = Rng::new(0x5107 + a as u64);
        let window = Duration::from_millis(1_000);
        let per_key = Quota {
            rate: Rate::new(5, window),
            algorithm,
        };
        let shared = Quota {
            rate: Rate::new(12, window),
            algorithm,
        };
        let mut admitted = 0;
        const OPS: usize = 600;
        for op in 0..OPS {
            match rng.below(10) {
                0..=3 => {}
                4 => clock.advance(window + Duration::from_millis(rng.below(1_000))),
                _ => clock.advance(Duration::from_millis(rng.below(60))),
            }
            let key = &keys[rng.below(keys.len() as u64) as usize];
            let mut charges = vec![
                Charge {
                    limit: PER_KEY,
                    key: key.clone(),
                    quota: per_key,
                },
                Charge {
                    limit: PER_ROUTE,
                    key: "shared".to_owned(),
                    quota: shared,
                },
            ];
            if rng.below(2) == 0 {
                charges.reverse();
            }
            let now = clock.now();
            if rng.below(10) == 0 {
                let got = redis.peek_at(&charges, now).await.unwrap();
                assert_eq!(
                    got,
                    memory.peek_at(&charges, now),
                    "{algorithm:?} op {op}: peek"
                );
            }
            let expected = memory.decide_at(&charges, now);
            let got = redis
                .decide_at(&charges, now)
                .await
                .expect("the cluster decides");
            assert_eq!(
                got, expected,
                "{algorithm:?} op {op}: cluster (left) and memory (right) disagree"
            );
            admitted += usize::from(expected.is_admitted());
        }
        let stats = redis.split_stats();
        assert!(
            admitted > OPS / 10 && admitted < OPS * 9 / 10,
            "{algorithm:?}: {admitted} of {OPS} admitted; the case should exercise both outcomes"
        );
        assert!(
            stats.undone_charges > 0,
            "{algorithm:?}: no reservation was ever taken back"
        );
        summary.insert(format!("{algorithm:?}"), (admitted, stats.undone_charges));
    }
    println!(
        "split decisions as memory's, per algorithm (admitted of 600, charges taken back): {summary:?}"
    );
}
