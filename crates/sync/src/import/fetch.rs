//! One paced request, and what to do with each kind of answer.
//!
//! A `429` is waited out (the pacer pauses the whole source until its retry
//! instant) and the same request goes again: it never ends an import and never
//! retries early. A `403` stops the source: the key is blocked, and calling
//! again would only prolong it. Server errors, timeouts and broken connections
//! are retried with jittered exponential backoff, a few times, then reported.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use rand::Rng;

use super::context::SourceContext;

/// Attempts for a request that fails without a `429` (server errors, timeouts,
/// unusable bodies).
pub const MAX_ATTEMPTS: u32 = 5;

/// A usable answer.
#[derive(Debug)]
pub enum Fetched {
    /// `2xx`.
    Body {
        /// Its headers.
        headers: HeaderMap,
        /// Its body.
        body: Bytes,
    },
    /// `304`: nothing changed since the validators sent.
    NotModified,
}

/// Why a request gave up.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// `403`: the provider blocked the key.
    #[error(
        "the provider answered 403 Forbidden: the key is blocked or not allowed; this source is stopped"
    )]
    Forbidden,
    /// Another `4xx`: the request itself is wrong.
    #[error("the provider refused the request with {0}: check the resource's path and query")]
    Refused(StatusCode),
    /// Server errors or failures, `MAX_ATTEMPTS` times.
    #[error("no usable answer after {MAX_ATTEMPTS} attempts: {0}")]
    Unavailable(String),
}

/// The wait before attempt `attempt` (1-based) after a failure: 0.5 s doubling,
/// up to 30 s, with full jitter so that many clients do not retry in step.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(500)
        .saturating_mul(1 << attempt.min(6))
        .min(Duration::from_secs(30));
    ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Sends a GET for `url` through the pacer, counting against `limits` (an
/// endpoint's own limit, if any) besides the key's budget.
pub async fn fetch(
    ctx: &SourceContext,
    limits: &[usize],
    url: &str,
    validators: &[(http::HeaderName, String)],
) -> Result<Fetched, FetchError> {
    let mut failures = 0;
    loop {
        if ctx.stats.forbidden.load(Ordering::SeqCst) {
            return Err(FetchError::Forbidden);
        }
        let permit = ctx.pacer.acquire(limits).await;
        let id = permit.id;
        ctx.note_sent(id, limits).await;
        ctx.note_call().await;
        let mut request = ctx.http.get(url).header(&ctx.key_header, &ctx.key_value);
        for (name, value) in validators {
            request = request.header(name, value);
        }
        let (result, paused) = ctx.send_paced(permit, request).await;
        let problem = match result {
            Ok((status, headers, body)) if status.is_success() => {
                return Ok(Fetched::Body { headers, body });
            }
            Ok((StatusCode::NOT_MODIFIED, ..)) => return Ok(Fetched::NotModified),
            Ok((StatusCode::TOO_MANY_REQUESTS, ..)) => {
                ctx.stats.rejected_429.fetch_add(1, Ordering::Relaxed);
                if let Some(until) = paused {
                    ctx.note_429(until).await;
                }
                continue;
            }
            Ok((StatusCode::FORBIDDEN, ..)) => {
                ctx.stats.forbidden.store(true, Ordering::SeqCst);
                tracing::error!(source = %ctx.source.name, "403 Forbidden: the key is blocked; stopping every request to this source");
                return Err(FetchError::Forbidden);
            }
            Ok((status, ..)) if status.is_client_error() => {
                return Err(FetchError::Refused(status));
            }
            Ok((status, ..)) => format!("{status}"),
            Err(err) if err.is_timeout() => format!("timed out after {:?}", ctx.source.timeout),
            Err(err) => format!("request failed: {err}"),
        };
        failures += 1;
        ctx.stats.failures.fetch_add(1, Ordering::Relaxed);
        if failures >= MAX_ATTEMPTS {
            return Err(FetchError::Unavailable(problem));
        }
        tracing::warn!(source = %ctx.source.name, %url, %problem, attempt = failures, "retrying after a failure");
        tokio::time::sleep(backoff(failures)).await;
    }
}
