//! One attempt to deliver a submission, through the source's pacer.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, StatusCode, header};
use rand::Rng;
use tollgate_sql::{Attempt, ProviderAnswer, Submission};

use super::pacer_priority;
use crate::daemon::FORBIDDEN_REST;
use crate::import::SourceContext;
use crate::import::context::ms;

/// Attempts that end without an answer or with a server error before a
/// submission is given up (`failed`): with [`backoff`], about four hours.
/// `tollgate outbox retry` queues it again.
pub const MAX_ATTEMPTS: u32 = 50;

/// The wait before the next attempt after `attempts` failed ones: 0.5 s
/// doubling, up to 5 minutes, with full jitter so that a provider coming back
/// from an outage is not met by every submission at once.
pub fn backoff(attempts: u32) -> Duration {
    let ceiling = Duration::from_millis(500)
        .saturating_mul(1 << attempts.saturating_sub(1).min(10))
        .min(Duration::from_secs(300));
    ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Sends `submission` (claimed, in flight) to its source once, through the
/// pacer at its priority, and says how it ended.
pub async fn deliver(ctx: &SourceContext, submission: &Submission) -> Attempt {
    let permit = ctx
        .pacer
        .acquire_with(&[], pacer_priority(submission.priority))
        .await;
    let id = permit.id;
    ctx.note_sent(id, &[]).await;
    ctx.note_call().await;
    let method = Method::from_bytes(submission.method.as_bytes()).unwrap_or(Method::POST);
    let url = format!("{}{}", ctx.source.base_url, submission.path);
    let mut request = ctx
        .http
        .request(method, &url)
        .header(&ctx.key_header, &ctx.key_value)
        .body(submission.body.clone());
    if let Some(content_type) = &submission.content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    if let Some(name) = &ctx.source.submit.idempotency_header {
        request = request.header(name, &submission.idempotency_key);
    }
    let (result, paused) = ctx.send_paced(permit, request).await;
    let now = ctx.now_ms();
    let (status, headers, body) = match result {
        Ok(answered) => answered,
        Err(err) => {
            let problem = if err.is_timeout() {
                format!("no answer within {:?}", ctx.source.timeout)
            } else {
                format!("the request failed: {err}")
            };
            return retry(ctx, submission, problem, now);
        }
    };
    let answer = ProviderAnswer {
        status: status.as_u16(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.to_vec(),
    };
    match status {
        s if s.is_success() => Attempt::Delivered(answer),
        StatusCode::TOO_MANY_REQUESTS => {
            ctx.stats.rejected_429.fetch_add(1, Ordering::Relaxed);
            let until = paused.map_or(now, ms);
            if let Some(at) = paused {
                ctx.note_429(at).await;
            }
            Attempt::Retry {
                error: "429 Too Many Requests: waiting for the retry instant".into(),
                at_ms: until,
            }
        }
        StatusCode::FORBIDDEN => {
            ctx.stats.forbidden.store(true, Ordering::SeqCst);
            tracing::error!(source = %ctx.source.name, "403 Forbidden on a submission: the key is blocked; stopping every request to this source");
            Attempt::Retry {
                error: "403 Forbidden: the key is blocked; every request to this source rests"
                    .into(),
                at_ms: now + i64::try_from(FORBIDDEN_REST.as_millis()).unwrap_or(i64::MAX),
            }
        }
        s if s.is_server_error() => retry(ctx, submission, s.to_string(), now),
        s => Attempt::Failed {
            error: format!(
                "the provider refused it with {s}: its answer is kept; correct the submission and submit it again"
            ),
            answer: Some(answer),
        },
    }
}

/// Another attempt later, or failed after [`MAX_ATTEMPTS`].
fn retry(ctx: &SourceContext, submission: &Submission, problem: String, now: i64) -> Attempt {
    ctx.stats.failures.fetch_add(1, Ordering::Relaxed);
    if submission.attempts >= MAX_ATTEMPTS {
        return Attempt::Failed {
            error: format!(
                "given up after {} attempts; the last: {problem}",
                submission.attempts
            ),
            answer: None,
        };
    }
    let wait = backoff(submission.attempts);
    tracing::warn!(source = %ctx.source.name, id = submission.id, %problem, attempt = submission.attempts, ?wait, "submission not delivered; trying again");
    Attempt::Retry {
        error: problem,
        at_ms: now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_five_minutes() {
        for _ in 0..50 {
            let first = backoff(1);
            assert!((250..=500).contains(&first.as_millis()), "{first:?}");
            let fourth = backoff(4);
            assert!((2_000..=4_000).contains(&fourth.as_millis()), "{fourth:?}");
            let late = backoff(40);
            assert!((150..=300).contains(&late.as_secs()), "{late:?}");
        }
    }
}
