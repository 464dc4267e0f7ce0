//! Decisions per second through `RedisStore` against one Redis: the client half
//! of `bench/redis/run.sh`, which runs `redis-benchmark` on the same script
//! beside it.
//!
//! ```text
//! redis_bench URL DECISIONS TASKS KEYS [CONNECTIONS] [THREADS]
//! ```
//!
//! `TASKS` concurrent tasks decide a rolling `50/60s` limit for random keys
//! `bench-000000000000` … (`KEYS` of them, as redis-benchmark's `-r KEYS
//! __rand_int__`), `DECISIONS` in all, through `CONNECTIONS` stores (1 by
//! default: one multiplexed connection shared by every task, as a gateway
//! shares one store) on a runtime of `THREADS` worker threads (1 by default, as
//! redis-benchmark is one thread). Prints decisions per second and the latency
//! percentiles, then `MEMORY USAGE` of one key whose log holds 50 requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tollgate_core::{Charge, LimitId, Quota, Rate, Store};
use tollgate_redis::RedisStore;

fn arg(args: &[String], i: usize, name: &str, default: Option<u64>) -> u64 {
    match args.get(i) {
        Some(v) => v.parse().unwrap_or_else(|_| panic!("{name}: not a number: {v}")),
        None => default.unwrap_or_else(|| panic!("usage: redis_bench URL DECISIONS TASKS KEYS [CONNECTIONS] [THREADS]; {name} missing")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let decisions = arg(&args, 1, "DECISIONS", Some(200_000));
    let tasks = arg(&args, 2, "TASKS", Some(50));
    let keys = arg(&args, 3, "KEYS", Some(100_000));
    let connections = arg(&args, 4, "CONNECTIONS", Some(1)).max(1);
    let threads = arg(&args, 5, "THREADS", Some(1)).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads as usize)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(url, decisions, tasks, keys, connections));
}

fn charge(key: u64) -> [Charge<String>; 1] {
    [Charge {
        limit: LimitId(0),
        key: format!("bench-{key:012}"),
        quota: Quota::rolling(Rate::per_minute(50)),
    }]
}

async fn run(url: String, decisions: u64, tasks: u64, keys: u64, connections: u64) {
    let mut stores = Vec::new();
    for _ in 0..connections {
        stores.push(
            RedisStore::connect(&url)
                .await
                .expect("a Redis to benchmark"),
        );
    }
    // Loads the script, so that no timed decision pays for it.
    stores[0]
        .decide(&charge(keys + 1))
        .await
        .expect("a decision");

    let next = Arc::new(AtomicU64::new(0));
    let admitted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = stores[(t % connections) as usize].clone();
        let (next, admitted) = (next.clone(), admitted.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // xorshift64*, seeded per task.
            let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (t + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            while next.fetch_add(1, Ordering::Relaxed) < decisions {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let key = state.wrapping_mul(0x2545_F491_4F6C_DD1D) % keys;
                let began = Instant::now();
                let decision = store.decide(&charge(key)).await.expect("a decision");
                latencies.push(began.elapsed());
                if decision.is_admitted() {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(decisions as usize);
    for handle in handles {
        latencies.extend(handle.await.expect("a benchmark task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "store: {decisions} decisions in {:.2} s: {:.0} decisions/s ({} admitted); {tasks} tasks, \
         {connections} connection(s); latency p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        elapsed.as_secs_f64(),
        decisions as f64 / elapsed.as_secs_f64(),
        admitted.load(Ordering::Relaxed),
        at(0.50),
        at(0.99),
        latencies[latencies.len() - 1]
    );

    // Bytes per key: a log of 50 (a full 50/60s), key name included.
    let full = keys + 2;
    for _ in 0..50 {
        stores[0].decide(&charge(full)).await.expect("a decision");
    }
    let name = format!("{}:{{bench-{full:012}}}:0", stores[0].prefix());
    let client = redis::Client::open(url.as_str()).expect("the URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("a connection");
    let usage: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .expect("MEMORY USAGE");
    let value: Vec<u8> = redis::cmd("GET")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .expect("GET");
    println!(
        "bytes per key: rolling 50/60s with 50 requests logged: MEMORY USAGE {usage} B (value {} B, key name {} B: {name})",
        value.len(),
        name.len()
    );
}
