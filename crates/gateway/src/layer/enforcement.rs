//! The shared, reloadable state behind the layer, and the decision for one request.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use http::request::Parts;
use prometheus_client::metrics::counter::Counter;
use tollgate_core::enforce::{Enforcer, Outcome};
use tollgate_core::{Clock, Decision, LimitId, Policy, Subject};

use crate::config::ApiKeySource;
use crate::headers::push_int;
use crate::ledger::{KeyActivity, Ledger};
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

    /// The key's owner and its record in `ledger`. A resolver that keeps a
    /// handle to the record beside the key (the gateway's key registry does)
    /// overrides this to save the ledger's lookup on every request.
    fn resolve_in(
        &self,
        presented: &str,
        ledger: &Arc<Ledger>,
    ) -> Option<(ResolvedKey, Arc<KeyActivity>)> {
        let key = self.resolve(presented)?;
        let activity = ledger.activity(key.id);
        Some((key, activity))
    }
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
    /// `RateLimit-Policy` items rendered once.
    rendered: crate::headers::Rendered,
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
        let rendered = crate::headers::Rendered::new(enforcer.policies());
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
            rendered,
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
        let Some((key, activity)) = self.keys.resolve_in(presented, &self.ledger) else {
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
        let outcome = match self.enforcer.check_in(&subject, now, &*activity).await {
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
                self.record_peak(&activity, now, &decision);
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
                activity.rejected(struck);
                Err(self.limited(&decision))
            }
            Outcome::Blocked { until, now_blocked } => {
                self.metrics.outcome("blocked");
                activity.refused(now_blocked);
                if now_blocked {
                    self.metrics.strikes.inc();
                    self.metrics.blocks.inc();
                    tracing::warn!(key = key.id, until = %crate::problem::rfc3339(until), "key blocked for hammering after 429");
                }
                Err(Problem::blocked(until, now).into_response())
            }
        }
    }

    /// [`admit`](Self::admit) without waiting, when the limit store answers at
    /// once (it is in this process); `None` when it may wait (Redis), and the
    /// caller awaits `admit` instead.
    pub fn admit_at_once(&self, parts: &Parts) -> Option<Result<Admitted, Response>> {
        if !self.enforcer.store().answers_at_once() {
            return None;
        }
        self.admit(parts).now_or_never()
    }

    /// Records how much of its per-key limit an admitted request left in use.
    fn record_peak(
        &self,
        activity: &KeyActivity,
        now: tollgate_core::Timestamp,
        decision: &Decision,
    ) {
        let policies = self.enforcer.policies();
        let per_key = decision.verdicts().iter().find(|v| {
            policies
                .get(v.limit)
                .is_some_and(|p| p.scope == tollgate_core::Scope::PerKey)
        });
        if let Some(v) = per_key {
            activity.admitted(now, v.quota - v.remaining, v.quota);
        }
    }

    /// The `429` for a rejected decision, naming every policy that rejected it.
    fn limited(&self, decision: &Decision) -> Response {
        let policies = self.enforcer.policies();
        let wait = decision.retry_after().unwrap_or_default();
        let plain = decision
            .rejections()
            .filter_map(|v| policies.get(v.limit))
            .all(|p| !needs_json_escape(&p.name));
        let mut response = if plain {
            limited_fast(policies, decision, wait)
        } else {
            limited_problem(policies, decision, wait)
        };
        crate::headers::insert_rendered(response.headers_mut(), policies, decision, &self.rendered);
        response
    }

    /// Adds the RateLimit headers of an admitted request to its response.
    pub fn annotate(&self, response: &mut Response, admitted: &Admitted) {
        self.annotate_headers(response.headers_mut(), admitted);
    }

    /// Adds the RateLimit headers of an admitted request to its response headers.
    pub fn annotate_headers(&self, headers: &mut http::HeaderMap, admitted: &Admitted) {
        crate::headers::insert_rendered(
            headers,
            self.enforcer.policies(),
            &admitted.decision,
            &self.rendered,
        );
    }
}

/// A window in words: `60 s`, or `1500 ms` when not whole seconds.
struct WindowWords(std::time::Duration);

impl WindowWords {
    fn push_to(&self, out: &mut String) {
        if self.0.subsec_nanos() == 0 {
            push_int(out, self.0.as_secs());
            out.push_str(" s");
        } else {
            push_int(out, self.0.as_millis());
            out.push_str(" ms");
        }
    }
}

impl std::fmt::Display for WindowWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut words = String::new();
        self.push_to(&mut words);
        f.write_str(&words)
    }
}

/// A wait in seconds with three decimals (`1.250`), the milliseconds rounded
/// half up: written with integers, as a float's exact formatting costs more
/// than the rest of the `429`'s body.
struct Seconds(std::time::Duration);

impl Seconds {
    fn push_to(&self, out: &mut String) {
        let millis = (self.0.as_nanos() + 500_000) / 1_000_000;
        push_int(out, millis / 1000);
        let fraction = millis % 1000;
        out.push_str(match fraction {
            0..10 => ".00",
            10..100 => ".0",
            _ => ".",
        });
        push_int(out, fraction);
    }
}

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut seconds = String::new();
        self.push_to(&mut seconds);
        f.write_str(&seconds)
    }
}

/// The `429` problem through [`Problem`] and `serde_json`.
fn limited_problem(
    policies: &tollgate_core::PolicySet,
    decision: &Decision,
    wait: std::time::Duration,
) -> Response {
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
                    WindowWords(p.quota.rate.window())
                )
            })
        })
        .collect::<Vec<_>>()
        .join("; ");
    let detail = format!("{detail}; retry in {} s, not before", Seconds(wait));
    Problem::rate_limited(names, detail, wait).into_response()
}

/// Whether `serde_json` would escape anything in `text`.
fn needs_json_escape(text: &str) -> bool {
    text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// The `429` problem written straight into one buffer: the same bytes and
/// headers [`Problem::rate_limited`] gives, for policy names that need no
/// escaping.
fn limited_fast(
    policies: &tollgate_core::PolicySet,
    decision: &Decision,
    wait: std::time::Duration,
) -> Response {
    let mut body = String::with_capacity(256);
    body.push_str(
        "{\"type\":\"https://tollgate.dev/problems/rate-limited\",\"title\":\"Too Many Requests\",\"status\":429,\"detail\":\"",
    );
    let mut first = true;
    for v in decision.rejections() {
        if let Some(p) = policies.get(v.limit) {
            body.push_str(if first { "`" } else { "; `" });
            first = false;
            body.push_str(&p.name);
            body.push_str("` allows ");
            push_int(&mut body, v.quota);
            body.push_str(" per ");
            WindowWords(p.quota.rate.window()).push_to(&mut body);
        }
    }
    body.push_str("; retry in ");
    Seconds(wait).push_to(&mut body);
    body.push_str(" s, not before\"");
    let mut first = true;
    for v in decision.rejections() {
        if let Some(p) = policies.get(v.limit) {
            body.push_str(if first { ",\"policies\":[\"" } else { ",\"" });
            first = false;
            body.push_str(&p.name);
            body.push('"');
        }
    }
    if !first {
        body.push(']');
    }
    body.push_str(",\"retry_after_ms\":");
    push_int(&mut body, wait.as_nanos().div_ceil(1_000_000) as u64);
    body.push('}');
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(tollgate_core::retry_after_secs(wait)),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;
    use tollgate_core::{Endpoints, Policy, PolicySet, Quota, Rate, Scope, Verdict};

    use super::*;

    async fn parts(response: Response) -> (http::StatusCode, Vec<(String, String)>, Vec<u8>) {
        let (parts, body) = response.into_parts();
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        (parts.status, headers, body)
    }

    #[test]
    fn waits_are_written_in_seconds_with_the_milliseconds_rounded_half_up() {
        for (nanos, written) in [
            (0, "0.000"),
            (1_499_999, "0.001"),
            (1_500_000, "0.002"),
            (999_999_999, "1.000"),
            (1_050_000_000, "1.050"),
            (1_250_000_000, "1.250"),
            (61_000_400_000, "61.000"),
        ] {
            assert_eq!(Seconds(Duration::from_nanos(nanos)).to_string(), written);
        }
    }

    #[tokio::test]
    async fn the_fast_429_is_the_problem_429() {
        let policy = |name: &str, rate| Policy {
            name: name.into(),
            scope: Scope::PerKey,
            quota: Quota::rolling(rate),
            endpoints: Endpoints::All,
            tier_step: None,
        };
        let policies = PolicySet::new(vec![
            policy("per-key", Rate::per_minute(50)),
            policy("burst", Rate::new(3, Duration::from_millis(1500))),
            policy("open", Rate::per_second(10)),
        ]);
        let ids: Vec<_> = policies.iter().map(|(id, _)| id).collect();
        let verdict = |i: usize, admitted, retry_ms| Verdict {
            limit: ids[i],
            admitted,
            quota: 50 + i as u32,
            remaining: 0,
            retry_after: Duration::from_millis(retry_ms),
            reset_after: Duration::from_millis(retry_ms + 7),
        };
        for decision in [
            Decision::new([verdict(0, false, 12_345)]),
            Decision::new([
                verdict(0, false, 1),
                verdict(1, true, 0),
                verdict(2, false, 999),
            ]),
            Decision::new([verdict(1, false, 1500), verdict(2, false, 0)]),
            Decision::new([]),
        ] {
            let wait = decision.retry_after().unwrap_or_default();
            assert_eq!(
                parts(limited_fast(&policies, &decision, wait)).await,
                parts(limited_problem(&policies, &decision, wait)).await,
            );
        }
    }
}
