//! One `EVALSHA` per decision, whatever the number of charges, counted by the
//! server itself (`INFO commandstats`), and what a decision costs in time.
//!
//! Command counts are server-wide, so this test starts a redis-server of its own
//! on a free loopback port: no other test's commands can blur the count.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tollgate_core::{Algorithm, Charge, LimitId, Quota, Rate, Store, Timestamp};
use tollgate_redis::RedisStore;

use crate::support::{PrivateServer, command_calls};

/// `n` charges on one API key: distinct limits, every algorithm.
fn charges(n: u32) -> Vec<Charge<&'static str>> {
    (0..n)
        .map(|i| Charge {
            limit: LimitId(i),
            key: "key-12345",
            quota: Quota {
                rate: Rate::per_minute(1_000_000),
                algorithm: match i % 4 {
                    0 => Algorithm::Rolling,
                    1 => Algorithm::Fixed,
                    2 => Algorithm::Gcra { burst: 1_000 },
                    _ => Algorithm::SlidingCounter,
                },
            },
        })
        .collect()
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[tokio::test]
async fn one_evalsha_per_decision_whatever_the_number_of_charges() {
    let server = PrivateServer::start().await;
    let store = RedisStore::connect(&server.url)
        .await
        .expect("private server");
    let mut conn = server.connection().await.expect("private server");
    // The first decision loads the script (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA).
    store.decide(&charges(1)).await.unwrap();

    const DECISIONS: u64 = 50;
    let mut total_charges = 0;
    for n in 1..=8 {
        let before = command_calls(&mut conn).await;
        let charges = charges(n);
        for _ in 0..DECISIONS {
            assert!(store.decide(&charges).await.unwrap().is_admitted());
        }
        let calls = delta(&before, &command_calls(&mut conn).await);
        total_charges += u64::from(n) * DECISIONS;
        // From the store: EVALSHA only. From inside the script: TIME once, one
        // GET and one SET per charge. From this test: the INFO before.
        let expected = HashMap::from([
            ("evalsha".to_owned(), DECISIONS),
            ("time".to_owned(), DECISIONS),
            ("get".to_owned(), u64::from(n) * DECISIONS),
            ("set".to_owned(), u64::from(n) * DECISIONS),
            ("info".to_owned(), 1),
        ]);
        assert_eq!(calls, expected, "{n} charges per decision");
    }
    println!(
        "{} decisions, {total_charges} charges: one EVALSHA each",
        8 * DECISIONS
    );

    // After a SCRIPT FLUSH (a restarted server), the store reloads the script.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(store.decide(&charges(3)).await.unwrap().is_admitted());
}

/// Sequential decisions on an idle loopback server, each admitted, the rolling
/// log at its steady 48 slots; printed, not asserted (the client here is a debug
/// build).
#[tokio::test]
async fn decision_latency() {
    let server = PrivateServer::start().await;
    let store = RedisStore::connect(&server.url)
        .await
        .expect("private server");
    let per_minute = Rate::per_minute(50);
    let limits = [
        Quota::rolling(per_minute),
        Quota::fixed(Rate::per_second(20)),
        Quota::gcra(per_minute, 10),
        Quota::sliding_counter(per_minute),
    ];
    let mut now = Timestamp::from_secs(1_700_000_000);
    for n in [1, 4] {
        let charges: Vec<_> = limits[..n]
            .iter()
            .enumerate()
            .map(|(i, quota)| Charge {
                limit: LimitId(i as u32),
                key: "key-12345",
                quota: *quota,
            })
            .collect();
        let mut took = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            // 1.25 s apart: 48 per rolling minute, within every limit (the
            // sliding counter's estimate rejects some at exactly 50).
            now = now + Duration::from_millis(1_250);
            let started = Instant::now();
            let decision = store.decide_at(&charges, now).await.unwrap();
            took.push(started.elapsed());
            assert!(decision.is_admitted());
        }
        took.sort();
        let mean = took.iter().sum::<Duration>() / took.len() as u32;
        println!(
            "latency, {n} charge(s): mean {mean:.1?}, p50 {:.1?}, p99 {:.1?}, max {:.1?}",
            took[took.len() / 2],
            took[took.len() * 99 / 100],
            took[took.len() - 1]
        );
    }
}
