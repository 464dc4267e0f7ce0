//! The server the tests use, servers and clusters of their own, unique
//! prefixes, and a deterministic generator.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    let mut rng = Rng::new(
        nanos ^ u64::from(std::process::id()) << 32 ^ COUNTER.fetch_add(1, Ordering::Relaxed),
    );
    format!("tgtest-{test}-{:016x}", rng.next_u64())
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

/// The deterministic generator of the test kit, so one seed replays one case exactly.
pub use tollgate_testkit::Rng;

/// `n` distinct loopback ports, free when asked (the server that takes one may
/// still lose a race, which fails the test loudly).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}

/// Starts `redis-server` with `args`, output discarded.
fn redis_server(args: &[&str]) -> Child {
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "this test starts redis-server processes of its own and could not: {e}; \
                 install it with `apt-get install -y redis-server` (`.ci/run` does)"
            )
        })
}

/// A plain connection to `url`, once it answers `PING`.
async fn ping(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await?;
    Ok(conn)
}

/// Waits up to 10 s for `url` to answer.
async fn wait_until_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if ping(url).await.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redis-server at {url} did not answer within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A redis-server for one test on a free loopback port, stopped when dropped;
/// the test may stop and start it again (on the same port).
pub struct PrivateServer {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
}

impl PrivateServer {
    pub async fn start() -> Self {
        let port = free_ports(1)[0];
        let mut server = Self {
            child: None,
            port,
            url: format!("redis://127.0.0.1:{port}"),
        };
        server.restart().await;
        server
    }

    /// Kills the server (as a crash would: no shutdown, no goodbye).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on its port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = Some(redis_server(&["--port", &self.port.to_string()]));
        wait_until_ready(&self.url).await;
    }

    pub async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        ping(&self.url).await
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of three primaries (no replicas) on free loopback ports, in
/// a directory of its own; stopped and removed when the last test using it
/// drops it.
pub struct Cluster {
    children: Vec<Child>,
    pub ports: Vec<u16>,
    dir: PathBuf,
}

impl Cluster {
    /// The cluster the tests running now share, started if there is none.
    pub async fn shared() -> Arc<Cluster> {
        static SHARED: tokio::sync::Mutex<Weak<Cluster>> =
            tokio::sync::Mutex::const_new(Weak::new());
        let mut shared = SHARED.lock().await;
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(Self::start().await);
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    async fn start() -> Self {
        let dir = std::env::temp_dir().join(unique_prefix("tollgate-cluster"));
        std::fs::create_dir_all(&dir).expect("a directory for the cluster's node files");
        let mut cluster = Self {
            children: Vec::new(),
            ports: Vec::new(),
            dir,
        };
        // Each node's client port and cluster bus port (Redis 7's `cluster-port`;
        // by default the port + 10000, which may not be free).
        let ports = free_ports(6);
        for pair in ports.chunks(2) {
            let (port, bus) = (pair[0], pair[1]);
            let conf = cluster.dir.join(format!("nodes-{port}.conf"));
            cluster.children.push(redis_server(&[
                "--port",
                &port.to_string(),
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus.to_string(),
                "--cluster-config-file",
                conf.to_str().expect("a UTF-8 temporary directory"),
                "--dir",
                cluster.dir.to_str().expect("a UTF-8 temporary directory"),
            ]));
            cluster.ports.push(port);
        }
        for url in cluster.urls() {
            wait_until_ready(&url).await;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&nodes)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .output()
        })
        .await
        .expect("redis-cli's task")
        .unwrap_or_else(|e| panic!("`redis-cli --cluster create` could not run: {e}"));
        assert!(
            created.status.success(),
            "`redis-cli --cluster create` failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_until_ok().await;
        cluster
    }

    /// Waits up to 20 s for every node's `CLUSTER INFO` to say `cluster_state:ok`.
    async fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for url in self.urls() {
            loop {
                let mut conn = ping(&url).await.expect("a cluster node");
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await
                    .expect("CLUSTER INFO");
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster at {url} was not ok within 20 s: {info}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// A store on the cluster under `prefix`.
    pub async fn store(&self, prefix: &str) -> RedisStore {
        RedisStore::connect_cluster(&self.urls())
            .await
            .expect("the test cluster")
            .with_prefix(prefix)
    }

    /// A plain connection to the first node.
    pub async fn node(&self) -> MultiplexedConnection {
        ping(&self.urls()[0]).await.expect("a cluster node")
    }

    /// The node (its port) that serves `slot`, from `CLUSTER NODES`.
    pub async fn node_of(&self, slot: u16) -> u16 {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut self.node().await)
            .await
            .expect("CLUSTER NODES");
        // `<id> <ip>:<port>@<bus> <flags> <primary> <ping> <pong> <epoch> <link> <slots>...`
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields[1]
                .split(['@', ','])
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .expect("a node's address");
            let serves = fields.iter().skip(8).any(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                match (start.parse::<u16>(), end.parse::<u16>()) {
                    (Ok(start), Ok(end)) => (start..=end).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                return port;
            }
        }
        panic!("no node serves slot {slot}: {nodes}")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
