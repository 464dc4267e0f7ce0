//! Prometheus metrics: what was admitted, rejected and blocked per policy (never
//! per key: keys are unbounded and secret), and how long the upstream took.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a per-policy counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    /// The policy's name.
    pub policy: String,
}

/// Labels of a per-outcome counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `admitted`, `limited`, `blocked`, `unauthorized`, `no_route`.
    pub outcome: &'static str,
}

/// Every metric the gateway keeps.
pub struct Metrics {
    registry: Registry,
    /// Requests by outcome.
    pub requests: Family<OutcomeLabel, Counter>,
    /// Requests each policy admitted (charged).
    pub admitted: Family<PolicyLabel, Counter>,
    /// Requests each policy rejected.
    pub rejected: Family<PolicyLabel, Counter>,
    /// Requests that came before their retry instant.
    pub strikes: Counter,
    /// Keys blocked.
    pub blocks: Counter,
    /// Upstream response time, seconds.
    pub upstream_seconds: Histogram,
    /// 1 while the shared limit store is unreachable (decisions fall back or are refused).
    pub degraded: Gauge,
    /// The counters of [`OUTCOMES`] in `requests`, each created on first use
    /// (so the family lists only outcomes that happened), then kept here so
    /// counting takes no lock.
    outcomes: [OnceLock<Counter>; OUTCOMES.len()],
}

/// The outcomes [`Metrics::outcome`] counts without a lock.
const OUTCOMES: [&str; 5] = ["admitted", "limited", "blocked", "unauthorized", "no_route"];

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("tollgate");
        let requests = Family::<OutcomeLabel, Counter>::default();
        let admitted = Family::<PolicyLabel, Counter>::default();
        let rejected = Family::<PolicyLabel, Counter>::default();
        let strikes = Counter::default();
        let blocks = Counter::default();
        let upstream_seconds = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register("requests", "Requests by outcome", requests.clone());
        registry.register(
            "policy_admitted",
            "Requests a policy admitted and charged",
            admitted.clone(),
        );
        registry.register(
            "policy_rejected",
            "Requests a policy rejected (429)",
            rejected.clone(),
        );
        registry.register(
            "strikes",
            "Requests sent before their retry instant",
            strikes.clone(),
        );
        registry.register(
            "blocks",
            "Keys blocked for hammering after a 429",
            blocks.clone(),
        );
        let degraded = Gauge::default();
        registry.register(
            "store_degraded",
            "1 while the shared limit store (Redis) is unreachable",
            degraded.clone(),
        );
        registry.register(
            "upstream_seconds",
            "Upstream response time",
            upstream_seconds.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            admitted,
            rejected,
            strikes,
            blocks,
            upstream_seconds,
            degraded,
            outcomes: Default::default(),
        })
    }

    /// Counts one request's outcome.
    pub fn outcome(&self, outcome: &'static str) {
        match OUTCOMES.iter().position(|o| *o == outcome) {
            Some(i) => self.outcomes[i]
                .get_or_init(|| {
                    self.requests
                        .get_or_create(&OutcomeLabel { outcome })
                        .clone()
                })
                .inc(),
            None => self.requests.get_or_create(&OutcomeLabel { outcome }).inc(),
        };
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
