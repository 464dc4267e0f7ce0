//! The server the tests use, unique prefixes, and a deterministic generator.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tollgate_redis::RedisStore;

/// The server under test.
pub fn url() -> String {
    std::env::var("TOLLGATE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn unreachable(url: &str, error: impl std::fmt::Display) -> ! {
    panic!(
        "tollgate-redis's tests need a redis-server at {url}, which did not answer: {error}\n\
         start one with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no` \
         (Debian: `apt-get install -y redis-server`), or run `.ci/run`, which does both; \
         TOLLGATE_REDIS_URL points the tests at another server"
    )
}

/// A store on the test server under `prefix`; fails the test, saying how to
/// start a server, when there is none.
pub async fn store(prefix: &str) -> RedisStore {
    let url = url();
    match RedisStore::connect(&url).await {
        Ok(store) => store.with_prefix(prefix),
        Err(e) => unreachable(&url, e),
    }
}

/// A plain connection to the test server, for inspecting it.
pub async fn raw() -> MultiplexedConnection {
    let url = url();
    let client = redis::Client::open(url.as_str()).unwrap_or_else(|e| unreachable(&url, e));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| unreachable(&url, e))
}

/// A prefix no other test (nor another run) uses.
pub fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = SplitMix(nanos ^ u64::from(std::process::id()) << 32);
    rng.0 ^= COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("tgtest-{test}-{:016x}", rng.next())
}

/// Deletes every key under `prefix`; returns how many there were.
pub async fn cleanup(prefix: &str) -> usize {
    let mut conn = raw().await;
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    for chunk in keys.chunks(500) {
        let _: () = conn.del(chunk).await.expect("DEL");
    }
    keys.len()
}

/// `INFO commandstats` as calls per command.
pub async fn command_calls(conn: &mut MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// A tiny deterministic generator, so one seed replays one case exactly.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
}
