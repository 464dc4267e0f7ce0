//! Building the layer by hand, for embedding in an existing service.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderName;
use tollgate_core::abuse::EscalationPolicy;
use tollgate_core::enforce::Enforcer;
use tollgate_core::{Clock, MemoryStore, PolicySet, SystemClock};

use crate::store::LimitStore;

use super::{Enforcement, KeyResolver, RateLimitLayer, ResolvedKey};
use crate::config::{ApiKeySource, Route};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::routes::RouteTable;

impl<F> KeyResolver for F
where
    F: Fn(&str) -> Option<ResolvedKey> + Send + Sync + 'static,
{
    fn resolve(&self, presented: &str) -> Option<ResolvedKey> {
        self(presented)
    }
}

/// Builds a [`RateLimitLayer`] without a configuration file.
///
/// ```
/// use tollgate_core::{Endpoints, Policy, PolicySet, Quota, Rate, Scope};
/// use tollgate_gateway::layer::{RateLimitLayer, ResolvedKey};
///
/// let policies = PolicySet::new(vec![Policy {
///     name: "per-key".into(), scope: Scope::PerKey, quota: Quota::rolling(Rate::per_minute(50)),
///     endpoints: Endpoints::All, tier_step: None,
/// }]);
/// let keys = |presented: &str| (presented == "demo-key").then_some(ResolvedKey { id: 1, increments: 0 });
/// let layer = RateLimitLayer::builder(policies, keys).build();
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello" }))
///     .layer(layer);
/// ```
pub struct LayerBuilder {
    policies: PolicySet,
    keys: Arc<dyn KeyResolver>,
    routes: Vec<Route>,
    api_key: ApiKeySource,
    escalation: EscalationPolicy,
    clock: Arc<dyn Clock>,
}

impl RateLimitLayer {
    /// A builder for a layer enforcing `policies` for the keys `keys` knows.
    pub fn builder(policies: PolicySet, keys: impl KeyResolver) -> LayerBuilder {
        LayerBuilder {
            policies,
            keys: Arc::new(keys),
            routes: Vec::new(),
            api_key: ApiKeySource {
                header: HeaderName::from_static("x-api-key"),
                scheme: None,
            },
            escalation: EscalationPolicy::default(),
            clock: Arc::new(SystemClock::new()),
        }
    }
}

impl LayerBuilder {
    /// Routes, for per-route and per-key-route policies (a route's index is its
    /// endpoint id).
    pub fn routes(mut self, routes: Vec<Route>) -> Self {
        self.routes = routes;
        self
    }

    /// Where clients present their key (default `X-Api-Key`).
    pub fn api_key(mut self, header: HeaderName, scheme: Option<String>) -> Self {
        self.api_key = ApiKeySource { header, scheme };
        self
    }

    /// When hammering after a `429` becomes a block.
    pub fn escalation(mut self, escalation: EscalationPolicy) -> Self {
        self.escalation = escalation;
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The layer.
    pub fn build(self) -> RateLimitLayer {
        let store = LimitStore::Memory(Arc::new(MemoryStore::new(Arc::clone(&self.clock))));
        let enforcement = Enforcement::new(
            Enforcer::new(self.policies, store, self.escalation),
            RouteTable::new(&self.routes),
            self.api_key,
            self.keys,
            Arc::clone(&self.clock),
            Metrics::new(),
            Arc::new(Ledger::new(self.clock.now())),
        );
        RateLimitLayer::new(Arc::new(ArcSwap::from_pointee(enforcement)))
    }
}
