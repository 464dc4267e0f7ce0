//! Error responses as `application/problem+json` (RFC 9457): what happened, which
//! limit, and when to come back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use tollgate_core::Timestamp;

/// Where the problem types are documented.
const TYPE_BASE: &str = "https://tollgate.dev/problems/";

/// One problem response.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, fixed summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// This occurrence, in words.
    pub detail: String,
    /// The limits that rejected the request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// When rejected by a limit: how long until a retry can succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// When blocked: the end of the block (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_until: Option<String>,
    /// `Retry-After` in whole seconds, rounded up (sent as a header, not in the body).
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    /// A problem of kind `slug` (e.g. `rate-limited`).
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: format!("{TYPE_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            policies: Vec::new(),
            retry_after_ms: None,
            blocked_until: None,
            retry_after_secs: None,
        }
    }

    /// `401`: no key, or one the gateway does not know.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or unknown API key",
            detail,
        )
    }

    /// `429`: a limit rejected the request.
    pub fn rate_limited(policies: Vec<String>, detail: String, wait: Duration) -> Self {
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too Many Requests",
            detail,
        );
        problem.policies = policies;
        problem.retry_after_ms = Some(wait.as_nanos().div_ceil(1_000_000) as u64);
        problem.retry_after_secs = Some(tollgate_core::retry_after_secs(wait));
        problem
    }

    /// `403`: the key is blocked for hammering after a `429`.
    pub fn blocked(until: Timestamp, now: Timestamp) -> Self {
        let wait = until.saturating_since(now);
        let mut problem = Self::new(
            StatusCode::FORBIDDEN,
            "abnormal-usage-detected",
            "Abnormal usage detected",
            format!(
                "this key kept sending requests before its Retry-After and is blocked for {} s; wait for the block to end and honour Retry-After after every 429",
                tollgate_core::retry_after_secs(wait)
            ),
        );
        problem.blocked_until = Some(rfc3339(until));
        problem.retry_after_secs = Some(tollgate_core::retry_after_secs(wait));
        problem
    }

    /// `502`/`504`: the upstream did not answer properly.
    pub fn upstream(status: StatusCode, detail: impl Into<String>) -> Self {
        let (slug, title) = if status == StatusCode::GATEWAY_TIMEOUT {
            ("upstream-timeout", "Upstream timed out")
        } else {
            ("upstream-unavailable", "Upstream unavailable")
        };
        Self::new(status, slug, title, detail)
    }

    /// `404`: no route matches.
    pub fn no_route(method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no-route",
            "No route",
            format!("no route matches {method} {path}"),
        )
    }
}

/// An instant as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(at: Timestamp) -> String {
    let time = UNIX_EPOCH + Duration::from_nanos(at.as_nanos());
    humantime::format_rfc3339_millis(time.max(SystemTime::UNIX_EPOCH)).to_string()
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after_secs;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
