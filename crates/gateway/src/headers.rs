//! The IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers-09 and
//! later): one list item per policy that counted the request.
//!
//! ```text
//! RateLimit-Policy: "per-key";q=50;w=60, "user-list";q=20;w=1
//! RateLimit: "per-key";r=12;t=8, "user-list";r=19;t=1
//! ```
//!
//! Policy names are checked at configuration time to be plain tokens, so they
//! never need escaping inside the quoted strings.

use std::fmt::Write;

use http::{HeaderMap, HeaderName, HeaderValue};
use tollgate_core::{Decision, LimitId, PolicySet, retry_after_secs};

/// Appends `n` in decimal, without the formatter's machinery (a `429`'s body
/// and every answer's RateLimit field are written per request).
pub(crate) fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `RateLimit-Policy`.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Whether a policy name can go into the fields unescaped.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// Adds both fields for `decision` to `headers`.
pub fn insert(headers: &mut HeaderMap, policies: &PolicySet, decision: &Decision) {
    if decision.verdicts().is_empty() {
        return;
    }
    let (mut policy, mut state) = (String::with_capacity(64), String::with_capacity(64));
    for verdict in decision.verdicts() {
        let Some(p) = policies.get(verdict.limit) else {
            continue;
        };
        let window = p.quota.rate.window();
        let window_secs = retry_after_secs(window).max(1);
        let separator = if policy.is_empty() { "" } else { ", " };
        let _ = write!(
            policy,
            "{separator}\"{}\";q={};w={window_secs}",
            p.name, verdict.quota
        );
        let _ = write!(
            state,
            "{separator}\"{}\";r={};t={}",
            p.name,
            verdict.remaining,
            retry_after_secs(verdict.reset_after)
        );
    }
    if let (Ok(policy), Ok(state)) = (HeaderValue::try_from(policy), HeaderValue::try_from(state)) {
        headers.insert(RATELIMIT_POLICY.clone(), policy);
        headers.insert(RATELIMIT.clone(), state);
    }
}

/// `RateLimit-Policy` items rendered once per policy at its base quota, the
/// value for a decision with one verdict at that quota (the common case).
#[derive(Default)]
pub(crate) struct Rendered {
    policies: Vec<(LimitId, u32, HeaderValue)>,
}

impl Rendered {
    /// The items of every policy in `policies`.
    pub(crate) fn new(policies: &PolicySet) -> Self {
        let policies = policies
            .iter()
            .filter_map(|(id, p)| {
                let quota = p.quota.rate.count();
                let window_secs = retry_after_secs(p.quota.rate.window()).max(1);
                let value = format!("\"{}\";q={quota};w={window_secs}", p.name);
                Some((id, quota, HeaderValue::try_from(value).ok()?))
            })
            .collect();
        Self { policies }
    }
}

/// [`insert`], taking `RateLimit-Policy` from `rendered` when it can.
pub(crate) fn insert_rendered(
    headers: &mut HeaderMap,
    policies: &PolicySet,
    decision: &Decision,
    rendered: &Rendered,
) {
    let [verdict] = decision.verdicts() else {
        return insert(headers, policies, decision);
    };
    let (Some(p), Some((_, _, policy))) = (
        policies.get(verdict.limit),
        rendered
            .policies
            .iter()
            .find(|(id, quota, _)| *id == verdict.limit && *quota == verdict.quota),
    ) else {
        return insert(headers, policies, decision);
    };
    let mut state = String::with_capacity(64);
    state.push('"');
    state.push_str(&p.name);
    state.push_str("\";r=");
    push_int(&mut state, verdict.remaining);
    state.push_str(";t=");
    push_int(&mut state, retry_after_secs(verdict.reset_after));
    if let Ok(state) = HeaderValue::try_from(state) {
        headers.insert(RATELIMIT_POLICY.clone(), policy.clone());
        headers.insert(RATELIMIT.clone(), state);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tollgate_core::{Endpoints, Policy, Quota, Rate, Scope, Verdict};

    use super::*;

    #[test]
    fn the_rendered_policy_is_the_formatted_one() {
        let policies = PolicySet::new(vec![Policy {
            name: "per-key".into(),
            scope: Scope::PerKey,
            quota: Quota::rolling(Rate::new(50, Duration::from_millis(1500))),
            endpoints: Endpoints::All,
            tier_step: None,
        }]);
        let rendered = Rendered::new(&policies);
        let (id, _) = policies.iter().next().unwrap();
        for quota in [50, 60] {
            let decision = Decision::new([Verdict {
                limit: id,
                admitted: true,
                quota,
                remaining: 7,
                retry_after: Duration::ZERO,
                reset_after: Duration::from_millis(2500),
            }]);
            let (mut fast, mut slow) = (HeaderMap::new(), HeaderMap::new());
            insert_rendered(&mut fast, &policies, &decision, &rendered);
            insert(&mut slow, &policies, &decision);
            assert_eq!(fast, slow);
            assert!(fast.contains_key(&RATELIMIT_POLICY));
        }
    }
}
