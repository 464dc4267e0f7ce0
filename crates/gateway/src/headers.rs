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
use tollgate_core::{Decision, PolicySet, retry_after_secs};

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
