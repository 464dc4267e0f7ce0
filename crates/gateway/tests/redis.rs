//! Two gateways, one budget: limit state in a real Redis on 127.0.0.1:6379.

#[allow(dead_code)] // this binary uses only the upstream
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tollgate_core::{Clock, SystemClock};
use tollgate_gateway::config::{GatewayConfig, RedisConfig};
use tollgate_gateway::keys::Keys;
use tollgate_gateway::store::LimitStore;
use tollgate_gateway::{Gateway, connect_redis};

const KEY: &str = "tg_shared_budget_key_00001";

async fn gateway(upstream: std::net::SocketAddr, prefix: &str) -> String {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
[[upstreams]]
name = "api"
url = "http://{upstream}"
[[routes]]
name = "all"
path = "/{{*rest}}"
[[limits]]
name = "per-key"
rate = "7/60s"
"#
    );
    let config = GatewayConfig::parse(&text, Path::new("shared.toml")).unwrap();
    let redis = RedisConfig {
        url: "redis://127.0.0.1:6379".into(),
        fail_open: false,
        per_limit_fail: Vec::new(),
        instances: 2,
        prefix: prefix.into(),
        cluster: false,
    };
    let clock = Arc::new(SystemClock::new());
    let store = connect_redis(&redis, clock.clone())
        .await
        .unwrap_or_else(|e| {
            panic!("{e}: start Redis with `scripts/test` or `redis-server --daemonize yes`")
        });
    let keys = Keys::open_in_memory().await.unwrap();
    keys.create_with_secret("shared", KEY, "test")
        .await
        .unwrap();
    let gateway = Gateway::with_store(config, keys, clock, None, LimitStore::Redis(store));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(gateway.serve(listener, None, std::future::pending()));
    url
}

#[tokio::test]
async fn two_gateways_on_one_redis_admit_exactly_one_budget_between_them() {
    let (upstream, hits) = support::start_upstream().await;
    let prefix = format!(
        "tollgate-test-{}-{}",
        std::process::id(),
        SystemClock::new().now().as_nanos()
    );
    let urls = [
        gateway(upstream, &prefix).await,
        gateway(upstream, &prefix).await,
    ];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for i in 0..20 {
        let response = client
            .get(format!("{}/x", urls[i % 2]))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(admitted, 7, "{statuses:?}");
    assert_eq!(hits.hits(), 7);
    assert!(
        statuses.iter().all(|s| [200, 429, 403].contains(s)),
        "{statuses:?}"
    );
}

/// A limit's own `fail` reaches the store's circuit breaker.
#[tokio::test]
async fn a_limits_own_fail_mode_reaches_the_store() {
    let limit = tollgate_core::LimitId(1);
    let redis = RedisConfig {
        url: "redis://127.0.0.1:6379".into(),
        fail_open: true,
        per_limit_fail: vec![(limit, false)],
        instances: 1,
        prefix: "tollgate-test-fail-mode".into(),
        cluster: false,
    };
    let store = connect_redis(&redis, Arc::new(SystemClock::new()))
        .await
        .unwrap_or_else(|e| {
            panic!("{e}: start Redis with `scripts/test` or `redis-server --daemonize yes`")
        });
    let config = store.config();
    assert_eq!(config.mode, tollgate_redis::FailMode::Open);
    assert_eq!(
        config.per_limit.get(&limit),
        Some(&tollgate_redis::FailMode::Closed)
    );
}

/// `cluster = true` talks to the server as a cluster node: a plain server
/// (the test server, not in cluster mode) refuses, where a plain connection
/// to it succeeds.
#[tokio::test]
async fn cluster_mode_reaches_the_connection() {
    let mut redis = RedisConfig {
        url: "redis://127.0.0.1:6379".into(),
        fail_open: true,
        per_limit_fail: Vec::new(),
        instances: 1,
        prefix: "tollgate-test-cluster-mode".into(),
        cluster: false,
    };
    assert!(
        connect_redis(&redis, Arc::new(SystemClock::new()))
            .await
            .is_ok()
    );
    redis.cluster = true;
    let err = connect_redis(&redis, Arc::new(SystemClock::new()))
        .await
        .expect_err("a plain server is no cluster node");
    assert!(err.to_string().contains("redis://127.0.0.1:6379"), "{err}");
}
