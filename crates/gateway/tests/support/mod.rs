//! A real upstream and a real gateway on 127.0.0.1, with a manual clock.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tollgate_core::{ManualClock, Timestamp};
use tollgate_gateway::Gateway;
use tollgate_gateway::config::GatewayConfig;
use tollgate_gateway::keys::Keys;

/// The example API: counts what reaches it.
#[derive(Clone, Default)]
pub struct Upstream {
    pub hits: Arc<AtomicU64>,
}

impl Upstream {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn hit(State(upstream): State<Upstream>, headers: http::HeaderMap) -> String {
    upstream.hits.fetch_add(1, Ordering::SeqCst);
    let key = headers
        .get("x-tollgate-key-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let leaked = headers.contains_key("x-api-key");
    format!("{{\"key_id\":\"{key}\",\"leaked_secret\":{leaked}}}")
}

async fn slow(State(upstream): State<Upstream>) -> &'static str {
    upstream.hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

/// Starts the upstream on a free loopback port.
pub async fn start_upstream() -> (SocketAddr, Upstream) {
    let upstream = Upstream::default();
    let app = Router::new()
        .route("/slow", get(slow))
        .fallback(any(hit))
        .with_state(upstream.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, upstream)
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const START: Timestamp = Timestamp::from_secs(1_800_000_000);

/// A gateway serving on loopback, with its clock and keys.
pub struct TestGateway {
    pub url: String,
    pub admin_url: String,
    pub clock: ManualClock,
    pub gateway: Gateway,
    pub upstream: Upstream,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    pub served: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    /// Starts a gateway whose configuration is `config` with `UPSTREAM` replaced
    /// by a fresh upstream's address.
    pub async fn start(config: &str) -> Self {
        let (upstream_address, upstream) = start_upstream().await;
        let text = config.replace("UPSTREAM", &format!("http://{upstream_address}"));
        let config = GatewayConfig::parse(&text, Path::new("test-gateway.toml")).unwrap();
        let clock = ManualClock::new(START);
        let keys = Keys::open_in_memory().await.unwrap();
        let gateway = Gateway::new(
            config,
            keys,
            Arc::new(clock.clone()),
            Some(ADMIN_TOKEN.to_owned()),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(gateway.clone().serve(listener, Some(admin), async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            url,
            admin_url,
            clock,
            gateway,
            upstream,
            client,
            stop: Some(stop),
            served,
        }
    }

    /// Creates a key with a known secret; returns its id.
    pub async fn key(&self, secret: &str) -> u32 {
        self.gateway
            .keys()
            .create_with_secret("test", secret, "test")
            .await
            .unwrap()
            .id
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.url));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send().await.unwrap()
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(35), &mut self.served).await;
    }
}

/// The problem body of a response.
pub async fn problem(response: reqwest::Response) -> serde_json::Value {
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/problem+json"
    );
    response.json().await.unwrap()
}
