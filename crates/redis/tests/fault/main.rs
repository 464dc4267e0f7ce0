//! Redis stopped mid-load and started again: decisions keep coming fast in the
//! configured fail mode, nothing crashes, and the store recovers by itself.
//!
//! A test binary of its own, so that no other test competes for the two cores
//! while latencies are measured. The redis-server is this test's own, on a free
//! loopback port: the shared one on 6379 is never stopped.

#[allow(dead_code)]
#[path = "../integration/support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tollgate_core::{Charge, LimitId, Quota, Rate, Store, SystemClock};
use tollgate_redis::{FailMode, RedisStore, ResilientConfig, ResilientStore};

use support::PrivateServer;

/// One decision of the load: when it began, how long it took, whether it was
/// answered (a decision, admitted or not) or refused (an error).
#[derive(Clone, Copy)]
struct Sample {
    began: Instant,
    took: Duration,
    answered: bool,
}

type Guarded = ResilientStore<u64, RedisStore>;

/// Decides for random keys, one decision a millisecond, until `stop`.
fn load(store: Guarded, task: u64, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let mut samples = Vec::with_capacity(8_192);
        let mut rng = support::Rng::new(task);
        while !stop.load(Ordering::Relaxed) {
            let charge = [Charge {
                limit: LimitId(0),
                key: rng.below(10_000),
                quota: Quota::rolling(Rate::per_minute(1_000)),
            }];
            let began = Instant::now();
            let answer = store.decide(&charge).await;
            samples.push(Sample {
                began,
                took: began.elapsed(),
                answered: answer.is_ok(),
            });
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples
    })
}

async fn wait_for(what: &str, within: Duration, done: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_load_then_started_again() {
    let mut server = PrivateServer::start().await;
    let redis = RedisStore::connect(&server.url)
        .await
        .expect("private server");
    let config = ResilientConfig {
        instances: 2,
        timeout: Duration::from_millis(50),
        failures_to_open: 3,
        cool_down: Duration::from_millis(200),
        ..Default::default()
    };
    let open: Guarded = ResilientStore::new(redis.clone(), SystemClock::new(), config.clone());
    let closed: Guarded = ResilientStore::new(
        redis,
        SystemClock::new(),
        ResilientConfig {
            mode: FailMode::Closed,
            ..config
        },
    );

    // Loaded once (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA) before the load
    // starts, so no timed decision pays for it.
    open.primary()
        .decide(&[Charge {
            limit: LimitId(9),
            key: 0u64,
            quota: Quota::fixed(Rate::per_second(1)),
        }])
        .await
        .expect("private server");
    let stop = Arc::new(AtomicBool::new(false));
    let open_tasks: Vec<_> = (0..4)
        .map(|t| load(open.clone(), t, stop.clone()))
        .collect();
    let closed_tasks: Vec<_> = (4..6)
        .map(|t| load(closed.clone(), t, stop.clone()))
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    // Up: decisions reach Redis. (Not necessarily all: on a machine busy with
    // other work, a debug build may miss the 50 ms now and then.)
    let up_fallbacks = open.fallback_decisions();
    let up_refusals = closed.stats().refused_decisions;

    server.stop();
    let to_open = wait_for(
        "both circuits open after Redis stops",
        Duration::from_secs(5),
        || open.is_degraded() && closed.is_degraded(),
    )
    .await;
    let opened = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Fail-open decides locally, each limit halved (two instances).
    let tight = [Charge {
        limit: LimitId(1),
        key: 7u64,
        quota: Quota::fixed(Rate::per_minute(10)),
    }];
    let mut admitted = 0;
    for _ in 0..10 {
        admitted += usize::from(open.decide(&tight).await.expect("fail-open").is_admitted());
    }
    assert_eq!(admitted, 5, "fail-open with 2 instances allows 10 / 2");
    assert!(closed.decide(&tight).await.is_err(), "fail-closed refuses");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let restarting = Instant::now();
    server.restart().await;
    let to_recover = wait_for(
        "both circuits close after Redis returns",
        Duration::from_secs(10),
        || !open.is_degraded() && !closed.is_degraded(),
    )
    .await;
    let recovered = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut open_samples = Vec::new();
    for task in open_tasks {
        open_samples.extend(task.await.expect("a load task (no panic)"));
    }
    let mut closed_samples = Vec::new();
    for task in closed_tasks {
        closed_samples.extend(task.await.expect("a load task (no panic)"));
    }
    let down = |s: &Sample| s.began >= opened && s.began < restarting;
    let settled = |s: &Sample| s.began >= recovered + Duration::from_millis(100);
    let mut down_latency: Vec<Duration> = open_samples
        .iter()
        .chain(&closed_samples)
        .filter(|s| down(s))
        .map(|s| s.took)
        .collect();
    down_latency.sort();
    let (p50, p99, max) = (
        percentile(&down_latency, 50),
        percentile(&down_latency, 99),
        *down_latency.last().expect("decisions while down"),
    );
    let stats = open.stats();
    println!(
        "Redis down: circuits open {to_open:.1?} after the kill; {} decisions while open: \
         p50 {p50:.1?}, p99 {p99:.1?}, max {max:.1?}; recovered {to_recover:.1?} after the \
         restart; fail-open {:?}; fail-closed {:?}",
        down_latency.len(),
        stats,
        closed.stats()
    );
    assert!(
        down_latency.len() > 500,
        "too little load while down: {}",
        down_latency.len()
    );
    assert!(
        p99 <= Duration::from_millis(5),
        "p99 {p99:?} while Redis is down"
    );
    assert!(
        open_samples.iter().all(|s| s.answered),
        "fail-open answers every decision"
    );
    assert!(
        closed_samples
            .iter()
            .filter(|s| down(s))
            .all(|s| !s.answered),
        "fail-closed refuses while down"
    );
    let up = open_samples.iter().filter(|s| s.began < opened).count() as u64;
    let closed_up = closed_samples.iter().filter(|s| s.began < opened).count() as u64;
    assert!(
        up_fallbacks * 20 <= up && up_refusals * 20 <= closed_up,
        "while Redis was up, {up_fallbacks} of {up} fail-open decisions fell back and \
         {up_refusals} of {closed_up} fail-closed ones were refused"
    );
    assert!(stats.fallback_decisions > 0 && stats.circuit_opens >= 1);
    // Recovered without a restart: decisions reach the new server again, and
    // fail-closed answers again (a late 50 ms miss aside).
    assert!(
        open_samples
            .iter()
            .filter(|s| settled(s))
            .all(|s| s.answered)
    );
    let settled_closed: Vec<_> = closed_samples.iter().filter(|s| settled(s)).collect();
    let answered = settled_closed.iter().filter(|s| s.answered).count();
    assert!(
        !settled_closed.is_empty() && answered * 20 >= settled_closed.len() * 19,
        "after recovery, fail-closed answered {answered} of {}",
        settled_closed.len()
    );
    let mut conn = server.connection().await.expect("the restarted server");
    let keys: u64 = redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("DBSIZE");
    assert!(
        keys > 100,
        "only {keys} keys written to the restarted server"
    );
    open.primary().decide(&tight).await.expect("Redis again");
}
