//! The decide script: what the store sends it, and what it answers.
//!
//! `decide.lua` holds the algorithms; this module turns [`Charge`]s into its
//! arguments and its flat integer reply into a [`Decision`] built exactly as
//! `MemoryStore` builds one.

use std::time::Duration;

use redis::{Script, ScriptInvocation};
use tollgate_core::{Algorithm, Charge, Decision, LimitId, Quota, StoreError, Timestamp, Verdict};

use crate::keys::{RedisKey, state_key};

/// The script's source: every limit of one request checked, and charged only if
/// all admit, in one `EVALSHA`.
pub(crate) const SOURCE: &str = include_str!("decide.lua");

/// Integers the script answers per charge: admitted, remaining, retry and reset
/// (nanoseconds).
const PER_CHARGE: usize = 4;

/// The script, hashed once: [`Script`] sends `EVALSHA` and loads the source
/// only when the server answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).
pub(crate) fn script() -> Script {
    Script::new(SOURCE)
}

/// A duration in nanoseconds, saturating (as the core's `nanos_of`).
fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The script's arguments for one charge: algorithm, count, window (ns, the
/// state's signature), window (µs, rounded up), step (µs) or interval (ns), burst.
fn charge_args(quota: &Quota) -> [u64; 5] {
    let count = u64::from(quota.rate.count());
    let window = nanos_of(quota.rate.window());
    let window_us = window.div_ceil(1_000);
    match quota.algorithm {
        Algorithm::Rolling => [
            count,
            window,
            window_us,
            tollgate_core::algorithm::rolling::resolution_nanos(window) / 1_000,
            0,
        ],
        Algorithm::Fixed | Algorithm::SlidingCounter => [count, window, window_us, 0, 0],
        Algorithm::Gcra { .. } => {
            let (interval, burst) = tollgate_core::algorithm::gcra::interval_and_burst(quota);
            [count, window, window_us, interval, burst]
        }
    }
}

fn algorithm_tag(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Rolling => "r",
        Algorithm::Fixed => "f",
        Algorithm::Gcra { .. } => "g",
        Algorithm::SlidingCounter => "s",
    }
}

/// How the script is to run, besides the charges.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    /// An injected instant, or `None` for Redis's `TIME`.
    pub now: Option<Timestamp>,
    /// Charge when every limit admits (a decision), or only look (a peek).
    pub commit: bool,
    /// How long a written key outlives its state.
    pub ttl_grace: Duration,
}

/// Fills an invocation of `script` for `charges`. Owns everything it needs, so
/// the future that sends it does not borrow the keys.
pub(crate) fn invocation<'a, K: RedisKey>(
    script: &'a Script,
    prefix: &str,
    charges: &[Charge<K>],
    run: Run,
) -> ScriptInvocation<'a> {
    let mut call = script.prepare_invoke();
    // Microseconds, rounded up like the rolling log's instants (never early).
    match run.now {
        Some(now) => call.arg(now.as_nanos().div_ceil(1_000)),
        None => call.arg(""),
    };
    call.arg(run.ttl_grace.as_millis() as u64);
    call.arg(if run.commit { "1" } else { "0" });
    for charge in charges {
        call.key(state_key(prefix, &charge.key, charge.limit.0));
        call.arg(algorithm_tag(charge.quota.algorithm));
        for value in charge_args(&charge.quota) {
            call.arg(value);
        }
    }
    call
}

/// The decision from the script's reply, as `MemoryStore` makes it: when nothing
/// was charged (the request was rejected, or only looked at), a limit that
/// would have admitted it still has the slot it would have taken, so its
/// remaining count is one more than its peek said.
///
/// `limits` holds each charge's limit and quota count, in the charges' order.
pub(crate) fn decision(limits: &[(LimitId, u32)], reply: &[i64]) -> Result<Decision, StoreError> {
    let malformed = || {
        StoreError::permanent(format!(
            "the decide script answered {reply:?} for {} charges: expected {} non-negative integers",
            limits.len(),
            1 + PER_CHARGE * limits.len()
        ))
    };
    let values: Vec<u64> = reply
        .iter()
        .map(|v| u64::try_from(*v))
        .collect::<Result<_, _>>()
        .map_err(|_| malformed())?;
    let [all, per_charge @ ..] = values.as_slice() else {
        return Err(malformed());
    };
    if per_charge.len() != PER_CHARGE * limits.len() {
        return Err(malformed());
    }
    let charged = *all == 1;
    let verdicts =
        limits
            .iter()
            .zip(per_charge.chunks_exact(PER_CHARGE))
            .map(|(&(limit, quota), v)| {
                let admitted = v[0] == 1;
                let remaining = u32::try_from(v[1]).unwrap_or(u32::MAX);
                Verdict {
                    limit,
                    admitted,
                    quota,
                    remaining: if admitted && !charged {
                        remaining + 1
                    } else {
                        remaining
                    },
                    retry_after: Duration::from_nanos(v[2]),
                    reset_after: Duration::from_nanos(v[3]),
                }
            });
    Ok(Decision::new(verdicts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_reply_is_a_permanent_error() {
        let error = decision(&[(LimitId(0), 5)], &[1, 1, 4]).unwrap_err();
        assert!(!error.is_transient());
        assert!(error.to_string().contains("expected 5"), "{error}");
    }

    #[test]
    fn an_uncharged_limit_gives_its_slot_back() {
        let limits = [(LimitId(1), 5), (LimitId(2), 5)];
        let decision = decision(&limits, &[0, 1, 3, 0, 9, 0, 0, 7, 7]).unwrap();
        assert!(!decision.is_admitted());
        assert_eq!(decision.verdicts()[0].remaining, 4);
        assert_eq!(decision.retry_after(), Some(Duration::from_nanos(7)));
    }
}
