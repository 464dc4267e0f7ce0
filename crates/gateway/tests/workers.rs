//! The gateway on worker threads, each with its own runtime and listener.

#[allow(dead_code)] // this binary uses the upstream, not the single-runtime gateway
mod support;

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::net::TcpListener;
use tollgate_core::ManualClock;
use tollgate_gateway::Gateway;
use tollgate_gateway::config::GatewayConfig;
use tollgate_gateway::keys::Keys;
use tollgate_gateway::workers::WorkerListeners;

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
workers = 2

[[upstreams]]
name = "api"
url = "UPSTREAM"
timeout = "30s"

[[routes]]
name = "rest"
path = "/{*rest}"

[[limits]]
name = "per-key"
rate = "RATE"
"#;

const KEY: &str = "tg_worker_key_aaaaaaaaaa12345";

fn config_for(upstream: &str, rate: &str) -> GatewayConfig {
    let text = CONFIG.replace("UPSTREAM", upstream).replace("RATE", rate);
    GatewayConfig::parse(&text, Path::new("workers.toml")).unwrap()
}

#[tokio::test]
async fn workers_share_limits_reloads_and_metrics_and_drain_on_shutdown() {
    let (upstream_address, upstream) = support::start_upstream().await;
    let upstream_url = format!("http://{upstream_address}");
    let config = config_for(&upstream_url, "3/60s");
    let workers = config.workers.unwrap();
    assert_eq!(workers, NonZeroUsize::new(2).unwrap());
    let clock = ManualClock::new(support::START);
    let keys = Keys::open_in_memory().await.unwrap();
    let gateway = Gateway::new(config, keys, Arc::new(clock), None);
    let listeners = WorkerListeners::bind("127.0.0.1:0".parse().unwrap(), workers).unwrap();
    assert_eq!(listeners.workers(), 2);
    let url = format!("http://{}", listeners.local_addr().unwrap());
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(
        gateway
            .clone()
            .serve_workers(listeners, Some(admin), async {
                let _ = stopped.await;
            }),
    );
    gateway
        .keys()
        .create_with_secret("test", KEY, "test")
        .await
        .unwrap();
    // A new connection for every request, so the kernel spreads them over both
    // workers' listeners; a worker that did not serve would leave some hanging.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get = |path: &str| {
        client
            .get(format!("{url}{path}"))
            .header("x-api-key", KEY)
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get("/x").await.unwrap().status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429, 429, 429, 429],
        "one budget for all workers"
    );

    gateway.reload(config_for(&upstream_url, "10/60s"));
    assert_eq!(
        get("/x").await.unwrap().status(),
        StatusCode::OK,
        "reloaded everywhere"
    );

    let metrics = client
        .get(format!("{admin_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "tollgate_policy_admitted_total{policy=\"per-key\"} 4",
        "tollgate_policy_rejected_total{policy=\"per-key\"} 5",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // A request in flight when the shutdown comes is answered, then the
    // workers end.
    let hits = upstream.hits.load(Ordering::SeqCst);
    let in_flight = tokio::spawn(get("/held"));
    while upstream.hits.load(Ordering::SeqCst) == hits {
        tokio::task::yield_now().await;
    }
    stop.send(()).unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        while tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
            .await
            .is_ok()
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the workers stop accepting");
    assert!(!served.is_finished(), "a request is still in flight");
    upstream.held.add_permits(1);
    let answer = in_flight.await.unwrap().unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), "released");
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("the gateway ends once the request is answered")
        .unwrap();
}
