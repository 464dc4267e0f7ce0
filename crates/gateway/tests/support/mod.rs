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
#[derive(Clone)]
pub struct Upstream {
    pub hits: Arc<AtomicU64>,
    /// `/held` answers once a permit is added here.
    pub held: Arc<tokio::sync::Semaphore>,
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            hits: Arc::default(),
            held: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
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

async fn held(State(upstream): State<Upstream>) -> &'static str {
    upstream.hits.fetch_add(1, Ordering::SeqCst);
    upstream.held.acquire().await.unwrap().forget();
    "released"
}

/// How many times `/echo` repeats the body it was sent.
pub const ECHO_REPEATS: usize = 16;

/// Answers with the request's body `ECHO_REPEATS` times over, as a stream of
/// chunks: a large answer that arrives in many reads.
async fn echo(body: axum::body::Bytes) -> axum::body::Body {
    let chunks = std::iter::repeat_n(Ok::<_, std::convert::Infallible>(body), ECHO_REPEATS);
    axum::body::Body::from_stream(futures_util::stream::iter(chunks))
}

/// Starts the upstream on a free loopback port.
pub async fn start_upstream() -> (SocketAddr, Upstream) {
    let upstream = Upstream::default();
    let app = Router::new()
        .route("/slow", get(slow))
        .route("/held", get(held))
        .route("/echo", axum::routing::post(echo))
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

/// A hyper upstream that can close its idle keep-alive connections, as an
/// upstream with a short idle timeout does; it records what each request
/// looked like on the wire.
#[derive(Clone, Default)]
pub struct ClosingUpstream {
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    /// Connections closed so far.
    pub closed: Arc<AtomicU64>,
    /// `Host` and request target of each request.
    pub seen: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    close: Arc<tokio::sync::Notify>,
}

impl ClosingUpstream {
    /// Starts it on a free loopback port.
    pub async fn start() -> (SocketAddr, Self) {
        let upstream = Self::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let serving = upstream.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                serving.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serving.clone().connection(stream));
            }
        });
        (address, upstream)
    }

    async fn connection(self, stream: tokio::net::TcpStream) {
        let seen = Arc::clone(&self.seen);
        let service = hyper::service::service_fn(move |request: http::Request<_>| {
            let host = request.headers().get(http::header::HOST);
            let host = host.map_or("-", |h| h.to_str().unwrap()).to_owned();
            seen.lock().unwrap().push((host, request.uri().to_string()));
            async { Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned())) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        // Dropping the connection closes the socket without a word, as an
        // idle timeout does.
        tokio::select! {
            _ = connection => {}
            () = self.close.notified() => {}
        }
        self.closed.fetch_add(1, Ordering::SeqCst);
    }

    /// Closes every open connection, and returns once they are closed.
    pub async fn close_idle(&self) {
        self.close.notify_waiters();
        let open = self.accepted.load(Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), async {
            while self.closed.load(Ordering::SeqCst) < open {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the upstream closes its connections");
    }
}
