//! Many clients, one key: exactly N admitted per window, never N + 1.
//!
//! 4 stores (4 connections, as 4 gateway processes would have) × 16 tasks each
//! hammer one key, 2 requests per task per window (128 for a quota of 50), for
//! 200 windows. The injected time steps one period (two windows) at a time,
//! with a barrier between periods; within a period each task uses its own
//! instants, so requests reach Redis out of time order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Barrier;
use tollgate_core::{Charge, LimitId, Quota, Rate, Timestamp};
use tollgate_redis::RedisStore;

use crate::support::{cleanup, store, unique_prefix};

const STORES: usize = 4;
const TASKS_PER_STORE: usize = 16;
const REQUESTS_PER_TASK: u64 = 2;
const WINDOWS: usize = 200;
const QUOTA: u32 = 50;
const WINDOW_MS: u64 = 1_000;

/// Requests of period `p` are at `start + p × 2W + offset`, `offset < W / 2`: a
/// rolling slot used in one period has returned before the next begins, and
/// one period's requests share one aligned window.
fn instant(start: Timestamp, period: usize, task: usize, request: u64, spread: bool) -> Timestamp {
    let offset = if spread {
        (task as u64 * 37 + request * 101) % (WINDOW_MS / 2)
    } else {
        0
    };
    start + Duration::from_millis(period as u64 * 2 * WINDOW_MS + offset)
}

/// Runs the hammering for `quota`; returns the admissions per period.
async fn hammer(quota: Quota, spread: bool) -> Vec<u32> {
    let prefix = unique_prefix("hammer");
    let mut stores: Vec<RedisStore> = Vec::new();
    for _ in 0..STORES {
        stores.push(store(&prefix).await);
    }
    let admitted: Arc<Vec<AtomicU32>> = Arc::new((0..WINDOWS).map(|_| AtomicU32::new(0)).collect());
    let barrier = Arc::new(Barrier::new(STORES * TASKS_PER_STORE));
    let start = Timestamp::from_secs(1_700_000_000);
    let charge = [Charge {
        limit: LimitId(0),
        key: "key-12345",
        quota,
    }];
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for t in 0..TASKS_PER_STORE {
            let (store, admitted, barrier) = (store.clone(), admitted.clone(), barrier.clone());
            let charge = charge.clone();
            let task = s * TASKS_PER_STORE + t;
            tasks.push(tokio::spawn(async move {
                for period in 0..WINDOWS {
                    barrier.wait().await;
                    for request in 0..REQUESTS_PER_TASK {
                        let at = instant(start, period, task, request, spread);
                        let decision = store.decide_at(&charge, at).await.expect("redis decides");
                        if decision.is_admitted() {
                            admitted[period].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("task");
    }
    cleanup(&prefix).await;
    admitted.iter().map(|a| a.load(Ordering::Relaxed)).collect()
}

async fn exactly_quota_per_window(name: &str, quota: Quota, spread: bool) {
    let started = Instant::now();
    let per_window = hammer(quota, spread).await;
    let requests = WINDOWS * STORES * TASKS_PER_STORE * REQUESTS_PER_TASK as usize;
    let elapsed = started.elapsed();
    println!(
        "{name}: {requests} requests from {} tasks on {STORES} connections in {elapsed:.2?} \
         ({:.0} decisions/s), {QUOTA} admitted in each of {WINDOWS} windows",
        STORES * TASKS_PER_STORE,
        requests as f64 / elapsed.as_secs_f64()
    );
    let wrong: Vec<(usize, u32)> = per_window
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, n)| *n != QUOTA)
        .collect();
    assert!(
        wrong.is_empty(),
        "{name}: windows that admitted other than {QUOTA}: {wrong:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_admits_exactly_its_quota_across_clients() {
    let quota = Quota::rolling(Rate::new(QUOTA, Duration::from_millis(WINDOW_MS)));
    exactly_quota_per_window("rolling", quota, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fixed_admits_exactly_its_quota_across_clients() {
    let quota = Quota::fixed(Rate::new(QUOTA, Duration::from_millis(WINDOW_MS)));
    exactly_quota_per_window("fixed", quota, true).await;
}

/// GCRA refills continuously, so a period's requests share one instant: a full
/// bucket of `burst = N` admits exactly N.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcra_admits_exactly_its_burst_across_clients() {
    let quota = Quota::gcra(Rate::new(QUOTA, Duration::from_millis(WINDOW_MS)), QUOTA);
    exactly_quota_per_window("gcra", quota, false).await;
}
