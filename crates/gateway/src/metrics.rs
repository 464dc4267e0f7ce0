//! Prometheus metrics: what was admitted, rejected and blocked per policy (never
//! per key: keys are unbounded and secret), and how long the upstream took.

use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tollgate_redis::ResilienceStats;

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
    /// Turns busy workers gave the other threads waiting for their cores
    /// (`yield_after`).
    pub worker_yields: Counter,
    /// 1 while the shared limit store is unreachable (decisions fall back or are refused).
    pub degraded: Gauge,
    /// What the shared store's circuit breaker did, brought up to date at
    /// each scrape ([`observe_store`](Self::observe_store)).
    store: StoreCounters,
    /// The counters of [`OUTCOMES`] in `requests`, each created on first use
    /// (so the family lists only outcomes that happened), then kept here so
    /// counting takes no lock.
    outcomes: [OnceLock<Counter>; OUTCOMES.len()],
}

/// The shared store's counters, kept by the store itself and copied here.
#[derive(Default)]
struct StoreCounters {
    fallbacks: Counter,
    refused: Counter,
    failures: Counter,
    circuit_opens: Counter,
    /// One scrape brings them up to date at a time.
    updating: Mutex<()>,
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
        let worker_yields = Counter::default();
        registry.register(
            "worker_yields",
            "Turns busy workers gave the other threads waiting for their cores (yield_after)",
            worker_yields.clone(),
        );
        let degraded = Gauge::default();
        registry.register(
            "store_degraded",
            "1 while the shared limit store (Redis) is unreachable",
            degraded.clone(),
        );
        let store = StoreCounters::default();
        registry.register(
            "store_fallback_decisions",
            "Decisions made locally (fail-open) while the shared limit store was unreachable",
            store.fallbacks.clone(),
        );
        registry.register(
            "store_refused_decisions",
            "Requests refused with 503 (fail-closed) while the shared limit store was unreachable",
            store.refused.clone(),
        );
        registry.register(
            "store_failures",
            "Decisions the shared limit store failed (an error or a timeout)",
            store.failures.clone(),
        );
        registry.register(
            "store_circuit_opens",
            "Outages of the shared limit store: times its circuit breaker opened",
            store.circuit_opens.clone(),
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
            worker_yields,
            degraded,
            store,
            outcomes: Default::default(),
        })
    }

    /// Brings the shared store's state and counters up to date: call before
    /// rendering. `None` for a store in this process (never degraded).
    pub fn observe_store(&self, stats: Option<ResilienceStats>) {
        let stats = stats.unwrap_or_default();
        self.degraded.set(i64::from(stats.degraded));
        let _updating = self
            .store
            .updating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let catch_up = |counter: &Counter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&self.store.fallbacks, stats.fallback_decisions);
        catch_up(&self.store.refused, stats.refused_decisions);
        catch_up(&self.store.failures, stats.store_failures);
        catch_up(&self.store.circuit_opens, stats.circuit_opens);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_stores_counters_are_brought_up_to_date_at_each_scrape() {
        let metrics = Metrics::new();
        let mut stats = ResilienceStats::default();
        stats.degraded = true;
        stats.fallback_decisions = 3;
        stats.store_failures = 4;
        stats.circuit_opens = 1;
        metrics.observe_store(Some(stats));
        let text = metrics.render();
        assert!(text.contains("tollgate_store_degraded 1"), "{text}");
        assert!(
            text.contains("tollgate_store_fallback_decisions_total 3"),
            "{text}"
        );
        assert!(text.contains("tollgate_store_failures_total 4"), "{text}");
        assert!(
            text.contains("tollgate_store_circuit_opens_total 1"),
            "{text}"
        );
        stats.degraded = false;
        stats.fallback_decisions = 10;
        stats.refused_decisions = 2;
        metrics.observe_store(Some(stats));
        let text = metrics.render();
        assert!(text.contains("tollgate_store_degraded 0"), "{text}");
        assert!(
            text.contains("tollgate_store_fallback_decisions_total 10"),
            "{text}"
        );
        assert!(
            text.contains("tollgate_store_refused_decisions_total 2"),
            "{text}"
        );
        assert!(text.contains("tollgate_store_failures_total 4"), "{text}");
    }
}
