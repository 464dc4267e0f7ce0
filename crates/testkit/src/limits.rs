//! The provider's limits, and how it advertises them.

use std::fmt::Write;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tollgate_core::{Decision, Endpoints, Policy, PolicySet, Quota, Rate, Scope, retry_after_secs};

use crate::endpoint::Endpoint;

/// One endpoint's own limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointLimit {
    /// The endpoint limited.
    pub endpoint: Endpoint,
    /// What it allows.
    pub quota: Quota,
    /// [`Scope::PerKeyEndpoint`] (each key its own budget on the endpoint) or
    /// [`Scope::PerEndpoint`] (one budget that every key shares).
    pub scope: Scope,
}

/// What the example API allows: a per-key limit over every endpoint, and
/// per-endpoint limits on top. A request must fit all that apply.
///
/// ```
/// use tollgate_testkit::{Endpoint, Limits};
/// use tollgate_core::{Quota, Rate};
///
/// // The seeds' provider: 50 per rolling 60 s per key, 20/s on the user list.
/// assert_eq!(Limits::default(), Limits::per_key(Quota::rolling(Rate::per_minute(50)))
///     .endpoint(Endpoint::ChannelUsers, Quota::rolling(Rate::per_second(20))));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The limit every request of a key counts against (`None`: no such limit).
    pub per_key: Option<Quota>,
    /// Limits of single endpoints.
    pub endpoints: Vec<EndpointLimit>,
}

impl Default for Limits {
    /// The seeds' provider: `rolling` 50 per 60 s per key, and 20 per rolling
    /// second per key on [`Endpoint::ChannelUsers`].
    fn default() -> Self {
        Limits::per_key(Quota::rolling(Rate::per_minute(50)))
            .endpoint(Endpoint::ChannelUsers, Quota::rolling(Rate::per_second(20)))
    }
}

impl Limits {
    /// No limit at all: every request is admitted.
    pub fn none() -> Self {
        Self {
            per_key: None,
            endpoints: Vec::new(),
        }
    }

    /// Only a per-key limit.
    pub fn per_key(quota: Quota) -> Self {
        Self {
            per_key: Some(quota),
            endpoints: Vec::new(),
        }
    }

    /// Adds a limit on `endpoint` that each key has for itself.
    pub fn endpoint(mut self, endpoint: Endpoint, quota: Quota) -> Self {
        self.endpoints.push(EndpointLimit {
            endpoint,
            quota,
            scope: Scope::PerKeyEndpoint,
        });
        self
    }

    /// Adds a limit on `endpoint` that all keys share.
    pub fn shared_endpoint(mut self, endpoint: Endpoint, quota: Quota) -> Self {
        self.endpoints.push(EndpointLimit {
            endpoint,
            quota,
            scope: Scope::PerEndpoint,
        });
        self
    }

    /// The core's policies: `per-key` first, then one per endpoint limit, named
    /// after the endpoint.
    pub(crate) fn policies(&self) -> PolicySet {
        let per_key = self.per_key.map(|quota| Policy {
            name: "per-key".into(),
            scope: Scope::PerKey,
            quota,
            endpoints: Endpoints::All,
            tier_step: None,
        });
        let endpoints = self.endpoints.iter().map(|limit| Policy {
            name: limit.endpoint.name().into(),
            scope: limit.scope,
            quota: limit.quota,
            endpoints: Endpoints::Only(vec![limit.endpoint.id()]),
            tier_step: None,
        });
        PolicySet::new(per_key.into_iter().chain(endpoints).collect())
    }
}

/// Which rate-limit headers the API advertises (`Retry-After` on a `429` is
/// configured apart, see [`ExampleApiBuilder::retry_after`]).
///
/// [`ExampleApiBuilder::retry_after`]: crate::ExampleApiBuilder::retry_after
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeaderStyle {
    /// None: a client has to discover the limits from its `429`s.
    None,
    /// The IETF fields, one item per limit that counted the request:
    /// `RateLimit-Policy: "per-key";q=50;w=60` and `RateLimit: "per-key";r=12;t=8`.
    #[default]
    Ietf,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
    /// (seconds from now, rounded up) of the tightest limit; the window is not said.
    XRateLimit,
}

impl HeaderStyle {
    /// Adds the headers of this style for `decision` to `headers`.
    pub(crate) fn insert(self, headers: &mut HeaderMap, policies: &PolicySet, decision: &Decision) {
        match self {
            HeaderStyle::None => {}
            HeaderStyle::Ietf => ietf(headers, policies, decision),
            HeaderStyle::XRateLimit => x_ratelimit(headers, decision),
        }
    }
}

/// When a verdict's limit frees a slot: its retry time if it rejected.
fn reset_of(verdict: &tollgate_core::Verdict) -> Duration {
    if verdict.admitted {
        verdict.reset_after
    } else {
        verdict.retry_after
    }
}

fn ietf(headers: &mut HeaderMap, policies: &PolicySet, decision: &Decision) {
    let (mut policy, mut state) = (String::new(), String::new());
    for verdict in decision.verdicts() {
        let Some(p) = policies.get(verdict.limit) else {
            continue;
        };
        let separator = if policy.is_empty() { "" } else { ", " };
        let window = retry_after_secs(p.quota.rate.window()).max(1);
        let _ = write!(
            policy,
            "{separator}\"{}\";q={};w={window}",
            p.name, verdict.quota
        );
        let reset = retry_after_secs(reset_of(verdict));
        let _ = write!(
            state,
            "{separator}\"{}\";r={};t={reset}",
            p.name, verdict.remaining
        );
    }
    insert(headers, "ratelimit-policy", policy);
    insert(headers, "ratelimit", state);
}

fn x_ratelimit(headers: &mut HeaderMap, decision: &Decision) {
    let Some(tightest) = decision.tightest() else {
        return;
    };
    insert(headers, "x-ratelimit-limit", tightest.quota.to_string());
    insert(
        headers,
        "x-ratelimit-remaining",
        tightest.remaining.to_string(),
    );
    insert(
        headers,
        "x-ratelimit-reset",
        retry_after_secs(reset_of(tightest)).to_string(),
    );
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Some(value) = HeaderValue::try_from(value).ok().filter(|v| !v.is_empty()) {
        headers.insert(HeaderName::from_static(name), value);
    }
}
