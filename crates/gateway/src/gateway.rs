//! The gateway put together: configuration, keys, enforcement, proxy and admin
//! API, ready to serve.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use tokio::net::TcpListener;
use tollgate_core::enforce::Enforcer;
use tollgate_core::{Clock, MemoryStore};

use crate::config::{ConfigError, GatewayConfig};
use crate::increase::handlers as increase;
use crate::keys::{KeyError, Keys};
use crate::layer::{Enforcement, KeyResolver, RateLimitLayer, ResolvedKey};
use crate::ledger::{KeyActivity, Ledger};
use crate::metrics::Metrics;
use crate::proxy::{ForwardTable, Proxy, forward};
use crate::routes::RouteTable;
use crate::store::LimitStore;

impl KeyResolver for Keys {
    fn resolve(&self, presented: &str) -> Option<ResolvedKey> {
        self.authenticate_id(presented)
            .map(|(id, increments)| ResolvedKey { id, increments })
    }

    fn resolve_in(
        &self,
        presented: &str,
        ledger: &Arc<Ledger>,
    ) -> Option<(ResolvedKey, Arc<KeyActivity>)> {
        self.authenticate_in(presented, ledger)
            .map(|(id, increments, activity)| (ResolvedKey { id, increments }, activity))
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key database could not be opened.
    #[error("cannot open the key database: {0}")]
    Keys(#[from] KeyError),
    /// Redis could not be reached at start-up.
    #[error("cannot reach Redis at {url}: {source}; is it running? (`redis-cli -u {url} ping`)")]
    Redis {
        /// The URL.
        url: String,
        /// Why.
        source: tollgate_core::StoreError,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}; is another process using it?")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running gateway's shared parts.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) config: Arc<ArcSwap<GatewayConfig>>,
    pub(crate) enforcement: Arc<ArcSwap<Enforcement>>,
    pub(crate) forward: Arc<ArcSwap<ForwardTable>>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) admin_token: Option<Arc<str>>,
}

impl Gateway {
    /// A gateway for `config` with its key database opened from the configured
    /// path and the admin token read from the configured environment variable.
    pub async fn open(config: GatewayConfig, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let keys = Keys::open(&config.database).await?;
        let token = config
            .admin
            .as_ref()
            .and_then(|a| std::env::var(&a.token_env).ok())
            .filter(|t| !t.is_empty());
        let store = match &config.redis {
            None => LimitStore::Memory(Arc::new(MemoryStore::new(Arc::clone(&clock)))),
            Some(redis) => LimitStore::Redis(connect_redis(redis, Arc::clone(&clock)).await?),
        };
        Ok(Self::with_store(config, keys, clock, token, store))
    }

    /// A gateway from parts (tests and embedding), with limit state in memory.
    pub fn new(
        config: GatewayConfig,
        keys: Keys,
        clock: Arc<dyn Clock>,
        admin_token: Option<String>,
    ) -> Self {
        let store = LimitStore::Memory(Arc::new(MemoryStore::new(Arc::clone(&clock))));
        Self::with_store(config, keys, clock, admin_token, store)
    }

    /// A gateway from parts, with limit state in `store`.
    pub fn with_store(
        config: GatewayConfig,
        keys: Keys,
        clock: Arc<dyn Clock>,
        admin_token: Option<String>,
        store: LimitStore,
    ) -> Self {
        let keys = Arc::new(keys);
        let metrics = Metrics::new();
        let ledger = Arc::new(Ledger::new(clock.now()));
        let enforcer = Enforcer::new(config.policies.clone(), store, config.escalation);
        let enforcement = Enforcement::new(
            enforcer,
            RouteTable::new(&config.routes),
            config.api_key.clone(),
            Arc::clone(&keys) as Arc<dyn KeyResolver>,
            clock,
            Arc::clone(&metrics),
            Arc::clone(&ledger),
        );
        let forward = ForwardTable::new(config.routes.clone(), config.upstreams.clone());
        Self {
            config: Arc::new(ArcSwap::from_pointee(config)),
            enforcement: Arc::new(ArcSwap::from_pointee(enforcement)),
            forward: Arc::new(ArcSwap::from_pointee(forward)),
            keys,
            metrics,
            admin_token: admin_token.map(Arc::from),
        }
    }

    /// The router clients talk to: enforcement in front of the proxy.
    pub fn app(&self) -> Router {
        self.app_with(self.proxy())
    }

    fn proxy(&self) -> Arc<Proxy> {
        Arc::new(Proxy::new(
            Arc::clone(&self.forward),
            Arc::clone(&self.metrics),
            self.config.load().api_key.header.clone(),
        ))
    }

    fn app_with(&self, proxy: Arc<Proxy>) -> Router {
        let config = self.config.load();
        let proxied = Router::new()
            .fallback(forward)
            .with_state(proxy)
            .layer(RateLimitLayer::new(Arc::clone(&self.enforcement)));
        // The gateway's own endpoints for integrators, outside every limit.
        let own = Router::new()
            .route(
                "/limit-increase-requests",
                axum::routing::post(increase::submit),
            )
            .route(
                "/limit-increase-requests/{id}",
                axum::routing::get(increase::status),
            )
            .with_state(self.clone());
        Router::new()
            .nest("/_tollgate", own)
            .fallback_service(proxied)
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                config.max_body as usize,
            ))
    }

    /// The admin router: health, metrics, and the token-protected admin API.
    pub fn admin_app(&self) -> Router {
        crate::admin::router(self.clone())
    }

    /// Swaps in a new configuration: limits, routes and upstreams change for the
    /// next request; connections, windows, blocks and keys stay. Listener
    /// addresses and the key database cannot change without a restart.
    pub fn reload(&self, config: GatewayConfig) {
        let enforcement = self.enforcement.load().reload(
            config.policies.policies().cloned().collect(),
            RouteTable::new(&config.routes),
        );
        self.enforcement.store(Arc::new(enforcement));
        self.forward.store(Arc::new(ForwardTable::new(
            config.routes.clone(),
            config.upstreams.clone(),
        )));
        self.config.store(Arc::new(config));
    }

    /// Re-reads the configuration file and swaps it in; a bad file changes nothing.
    pub fn reload_from_file(&self) -> Result<(), ConfigError> {
        let path = self.config.load().source.clone();
        let config = GatewayConfig::load(&path)?;
        self.reload(config);
        tracing::info!(path = %path.display(), "configuration reloaded");
        Ok(())
    }

    /// The URL of the `index`-th upstream of the current configuration.
    pub fn upstream_url(&self, index: usize) -> Option<String> {
        self.config
            .load()
            .upstreams
            .get(index)
            .map(|u| u.url.to_string().trim_end_matches('/').to_owned())
    }

    /// The key registry.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Serves clients on `listener` and the admin API on `admin` until
    /// `shutdown` completes, then lets in-flight requests finish. Everything
    /// runs on the caller's runtime.
    pub async fn serve(
        self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let stop = crate::server::shutdown_on(shutdown);
        let header_timeout = self.config.load().header_timeout;
        let front = self.front();
        let main = crate::server::serve_service(
            listener,
            move || front.connection(),
            header_timeout,
            stop.clone(),
            None,
        );
        tokio::join!(main, self.serve_admin(admin, stop));
        self.keys.close().await;
    }

    /// Serves clients on worker threads, one per listener, each with its own
    /// runtime, and the admin API on `admin` on the caller's runtime, until
    /// `shutdown` completes; then every worker lets its in-flight requests
    /// finish, and this returns once all have.
    pub async fn serve_workers(
        self,
        listeners: crate::workers::WorkerListeners,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let stop = crate::server::shutdown_on(shutdown);
        let (header_timeout, yield_after) = {
            let config = self.config.load();
            (config.header_timeout, config.yield_after)
        };
        let ended = crate::workers::start(
            listeners,
            &self.front(),
            header_timeout,
            yield_after,
            &self.metrics.worker_yields,
            &stop,
        );
        let workers = async {
            for end in ended {
                let _ = end.await;
            }
        };
        tokio::join!(workers, self.serve_admin(admin, stop));
        self.keys.close().await;
    }

    /// What clients talk to.
    fn front(&self) -> crate::front::Front {
        let proxy = self.proxy();
        crate::front::Front::new(
            self.app_with(Arc::clone(&proxy)),
            Arc::clone(&self.enforcement),
            proxy,
            self.config.load().max_body as usize,
        )
    }

    /// Serves the admin API, if there is a listener for it, until `stop` flips.
    async fn serve_admin(
        &self,
        admin: Option<TcpListener>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        if let Some(admin) = admin {
            let header_timeout = self.config.load().header_timeout;
            crate::server::serve(admin, self.admin_app(), header_timeout, stop).await;
        }
    }
}

/// Binds `address`, with an error that names it.
pub async fn bind(address: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen { address, source })
}

/// Connects to the configured Redis, behind the circuit breaker.
pub async fn connect_redis(
    config: &crate::config::RedisConfig,
    clock: Arc<dyn Clock>,
) -> Result<tollgate_redis::ResilientStore<u64>, StartError> {
    let connected = if config.cluster {
        tollgate_redis::RedisStore::connect_cluster(std::slice::from_ref(&config.url)).await
    } else {
        tollgate_redis::RedisStore::connect(&config.url).await
    };
    let primary = connected
        .map_err(|source| StartError::Redis {
            url: config.url.clone(),
            source,
        })?
        .with_prefix(&config.prefix);
    let resilience = tollgate_redis::ResilientConfig {
        mode: if config.fail_open {
            tollgate_redis::FailMode::Open
        } else {
            tollgate_redis::FailMode::Closed
        },
        instances: config.instances,
        per_limit: config
            .per_limit_fail
            .iter()
            .map(|(limit, open)| {
                let mode = if *open {
                    tollgate_redis::FailMode::Open
                } else {
                    tollgate_redis::FailMode::Closed
                };
                (*limit, mode)
            })
            .collect(),
        ..tollgate_redis::ResilientConfig::default()
    };
    Ok(tollgate_redis::ResilientStore::new(
        primary, clock, resilience,
    ))
}
