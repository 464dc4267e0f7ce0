//! The shared, reloadable state behind the layer, and the decision for one request.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use prometheus_client::metrics::counter::Counter;
use tollgate_core::enforce::{Enforcer, Outcome};
use tollgate_core::{Clock, Decision, LimitId, Policy, Subject};

use crate::config::ApiKeySource;
use crate::ledger::Ledger;
use crate::metrics::{Metrics, PolicyLabel};
use crate::problem::Problem;
use crate::routes::RouteTable;
use crate::store::LimitStore;

/// Who a presented API key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedKey {
    /// The key's id.
    pub id: u32,
    /// Its paid increments.
    pub increments: u32,
}

/// Turns a presented API key into its owner; must be cheap and do no I/O (it
/// runs on every request).
pub trait KeyResolver: Send + Sync + 'static {
    /// The key's owner, or `None` for an unknown or revoked key.
    fn resolve(&self, presented: &str) -> Option<ResolvedKey>;
}

/// What an admitted request carries on to the inner service (as a request
/// extension) and back (the RateLimit headers).
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The key that sent it.
    pub key: ResolvedKey,
    /// The endpoint (route index) it matched.
    pub endpoint: Option<u32>,
    /// The decision, for the RateLimit headers.
    pub decision: Decision,
}

/// Everything the layer needs to decide; swapped as a whole on reload.
pub struct Enforcement {
    pub(crate) enforcer: Enforcer<LimitStore>,
    pub(crate) routes: RouteTable,
    pub(crate) api_key: ApiKeySource,
    pub(crate) keys: Arc<dyn KeyResolver>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<Metrics>,
    /// Per-key evidence for limit-increase requests.
    pub(crate) ledger: Arc<Ledger>,
    /// Per-policy counters, created once so the hot path does not allocate labels.
    counters: Vec<(LimitId, Counter, Counter)>,
}

impl Enforcement {
    /// Enforcement of `enforcer`'s policies on `routes`.
    pub fn new(
        enforcer: Enforcer<LimitStore>,
        routes: RouteTable,
        api_key: ApiKeySource,
        keys: Arc<dyn KeyResolver>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        ledger: Arc<Ledger>,
    ) -> Self {
        let counters = enforcer
            .policies()
            .iter()
            .map(|(id, p)| {
                let label = PolicyLabel {
                    policy: p.name.clone(),
                };
                (
                    id,
                    metrics.admitted.get_or_create(&label).clone(),
                    metrics.rejected.get_or_create(&label).clone(),
                )
            })
            .collect();
        Self {
            enforcer,
            routes,
            api_key,
            keys,
            clock,
            metrics,
            ledger,
            counters,
        }
    }

    /// The same store, keys and escalation state with new policies and routes.
    pub fn reload(&self, policies: Vec<Policy>, routes: RouteTable) -> Self {
        Self::new(
            self.enforcer.reload(policies),
            routes,
            self.api_key.clone(),
            Arc::clone(&self.keys),
            Arc::clone(&self.clock),
            Arc::clone(&self.metrics),
            Arc::clone(&self.ledger),
        )
    }

    /// The enforcer (policies, store, escalation state).
    pub fn enforcer(&self) -> &Enforcer<LimitStore> {
        &self.enforcer
    }

    /// The API key a request presents, if it presents one in the configured way.
    pub(crate) fn presented_key<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        let value = headers.get(&self.api_key.header)?.to_str().ok()?.trim();
        let key = match &self.api_key.scheme {
            None => value,
            Some(scheme) => {
                let (given, rest) = value.split_once(' ')?;
                if !given.eq_ignore_ascii_case(scheme) {
                    return None;
                }
                rest.trim()
            }
        };
        (!key.is_empty()).then_some(key)
    }

    fn count(&self, decision: &Decision) {
        for verdict in decision.verdicts() {
            if let Some((_, admitted, rejected)) =
                self.counters.iter().find(|(id, ..)| *id == verdict.limit)
            {
                if decision.is_admitted() {
                    admitted.inc();
                } else if !verdict.admitted {
                    rejected.inc();
                }
            }
        }
    }

    /// Decides a request: `Ok` to pass it on, `Err` with the response to send
    /// instead. Nothing reaches the inner service for a `401`, `403` or `429`.
    pub async fn admit(&self, parts: &Parts) -> Result<Admitted, Response> {
        let Some(presented) = self.presented_key(&parts.headers) else {
            self.metrics.outcome("unauthorized");
            let how = match &self.api_key.scheme {
                Some(scheme) => format!("`{}: {scheme} <key>`", self.api_key.header),
                None => format!("`{}: <key>`", self.api_key.header),
            };
            return Err(
                Problem::unauthorized(format!("no API key: send it as {how}")).into_response(),
            );
        };
        let Some(key) = self.keys.resolve(presented) else {
            self.metrics.outcome("unauthorized");
            return Err(Problem::unauthorized(format!(
                "unknown or revoked API key ending in `{}`",
                crate::keys::last5(presented)
            ))
            .into_response());
        };
        let endpoint = self.routes.find(&parts.method, parts.uri.path());
        let subject = Subject {
            key: key.id,
            endpoint,
            increments: key.increments,
        };
        let now = self.clock.now();
        let outcome = match self.enforcer.check(&subject, now).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::error!(%err, "limit store failed");
                return Err(Problem::new(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "limit-store-unavailable",
                    "Limit store unavailable",
                    "the gateway cannot reach its limit store; retry shortly",
                )
                .into_response());
            }
        };
        match outcome {
            Outcome::Admitted(decision) => {
                self.count(&decision);
                self.metrics.outcome("admitted");
                self.record_peak(key.id, now, &decision);
                Ok(Admitted {
                    key,
                    endpoint,
                    decision,
                })
            }
            Outcome::Limited { decision, struck } => {
                self.count(&decision);
                self.metrics.outcome("limited");
                if struck {
                    self.metrics.strikes.inc();
                }
                self.ledger.rejected(key.id, struck);
                Err(self.limited(&decision))
            }
            Outcome::Blocked { until, now_blocked } => {
                self.metrics.outcome("blocked");
                self.ledger.refused(key.id, now_blocked);
                if now_blocked {
                    self.metrics.strikes.inc();
                    self.metrics.blocks.inc();
                    tracing::warn!(key = key.id, until = %crate::problem::rfc3339(until), "key blocked for hammering after 429");
                }
                Err(Problem::blocked(until, now).into_response())
            }
        }
    }

    /// Records how much of its per-key limit an admitted request left in use.
    fn record_peak(&self, key: u32, now: tollgate_core::Timestamp, decision: &Decision) {
        let policies = self.enforcer.policies();
        let per_key = decision.verdicts().iter().find(|v| {
            policies
                .get(v.limit)
                .is_some_and(|p| p.scope == tollgate_core::Scope::PerKey)
        });
        if let Some(v) = per_key {
            self.ledger
                .admitted(key, now, v.quota - v.remaining, v.quota);
        }
    }

    /// The `429` for a rejected decision, naming every policy that rejected it.
    fn limited(&self, decision: &Decision) -> Response {
        let policies = self.enforcer.policies();
        let wait = decision.retry_after().unwrap_or_default();
        let names: Vec<String> = decision
            .rejections()
            .filter_map(|v| policies.get(v.limit).map(|p| p.name.clone()))
            .collect();
        let detail = decision
            .rejections()
            .filter_map(|v| {
                policies.get(v.limit).map(|p| {
                    format!(
                        "`{}` allows {} per {}",
                        p.name,
                        v.quota,
                        window_words(p.quota.rate.window())
                    )
                })
            })
            .collect::<Vec<_>>()
            .join("; ");
        let detail = format!("{detail}; retry in {:.3} s, not before", wait.as_secs_f64());
        let mut response = Problem::rate_limited(names, detail, wait).into_response();
        crate::headers::insert(response.headers_mut(), policies, decision);
        response
    }

    /// Adds the RateLimit headers of an admitted request to its response.
    pub fn annotate(&self, response: &mut Response, admitted: &Admitted) {
        crate::headers::insert(
            response.headers_mut(),
            self.enforcer.policies(),
            &admitted.decision,
        );
    }
}

fn window_words(window: std::time::Duration) -> String {
    if window.subsec_nanos() == 0 {
        format!("{} s", window.as_secs())
    } else {
        format!("{} ms", window.as_millis())
    }
}
