//! One `EVALSHA` per decision, whatever the number of charges, counted by the
//! server itself (`INFO commandstats`), and what a decision costs in time.
//!
//! Command counts are server-wide, so this test starts a redis-server of its own
//! on a free loopback port: no other test's commands can blur the count.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tollgate_core::{Algorithm, Charge, LimitId, Quota, Rate, Store, Timestamp};
use tollgate_redis::RedisStore;

use crate::support::command_calls;

/// A redis-server for one test, stopped when dropped.
struct PrivateServer {
    child: Child,
    url: String,
}

impl PrivateServer {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "this test starts a redis-server of its own and could not: {e}; \
                     install it with `apt-get install -y redis-server` (`.ci/run` does)"
                )
            });
        let server = Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        server.wait_until_ready().await;
        server
    }

    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.connection().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server at {} did not answer within 10 s",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut conn = redis::Client::open(self.url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(conn)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
