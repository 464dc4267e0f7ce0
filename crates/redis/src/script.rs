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
pub(crate) const PER_CHARGE: usize = 4;

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

/// What a script run does with the charges it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Only look: what a decision would answer (an admin's peek).
    Peek,
    /// Charge every limit if every limit admits: a decision.
    Commit,
    /// As [`Commit`](Self::Commit), and answer a receipt per charge that the
    /// undo script takes the charge back with.
    Reserve,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Self::Peek => "0",
            Self::Commit => "1",
            Self::Reserve => "2",
        }
    }
}

/// One charge as the scripts take it: its Redis key, algorithm and numbers.
#[derive(Clone, Debug)]
pub(crate) struct Rendered {
    pub key: String,
    tag: &'static str,
    args: [u64; 5],
    pub limit: LimitId,
    pub count: u32,
}

/// Renders `charges` once, so the futures that send them own their arguments
/// and borrow neither the charges nor their keys.
pub(crate) fn render<K: RedisKey>(prefix: &str, charges: &[Charge<K>]) -> Vec<Rendered> {
    charges
        .iter()
        .map(|charge| Rendered {
            key: state_key(prefix, &charge.key, charge.limit.0),
            tag: algorithm_tag(charge.quota.algorithm),
            args: charge_args(&charge.quota),
            limit: charge.limit,
            count: charge.quota.rate.count(),
        })
        .collect()
}

/// An instant as the scripts take it: microseconds, rounded up like the rolling
/// log's instants (never early), or `""` for Redis's `TIME`.
fn now_arg(call: &mut ScriptInvocation<'_>, now: Option<Timestamp>) {
    match now {
        Some(now) => call.arg(now.as_nanos().div_ceil(1_000)),
        None => call.arg(""),
    };
}

/// An invocation of the decide script for `charges`.
pub(crate) fn invocation<'a, 'c>(
    script: &'a Script,
    charges: impl IntoIterator<Item = &'c Rendered>,
    now: Option<Timestamp>,
    mode: Mode,
    ttl_grace: Duration,
) -> ScriptInvocation<'a> {
    let mut call = script.prepare_invoke();
    now_arg(&mut call, now);
    call.arg(ttl_grace.as_millis() as u64);
    call.arg(mode.arg());
    for charge in charges {
        call.key(&charge.key);
        call.arg(charge.tag);
        for value in charge.args {
            call.arg(value);
        }
    }
    call
}

/// An invocation of the undo script, taking back each of `charges` by the
/// receipt its reservation answered.
pub(crate) fn undo_invocation<'a, 'c>(
    script: &'a Script,
    charges: impl IntoIterator<Item = (&'c Rendered, u64)>,
    now: Option<Timestamp>,
) -> ScriptInvocation<'a> {
    let mut call = script.prepare_invoke();
    now_arg(&mut call, now);
    for (charge, receipt) in charges {
        call.key(&charge.key);
        call.arg(charge.tag);
        // The window in ns (the state's signature) and GCRA's interval.
        call.arg(charge.args[1]);
        call.arg(if charge.tag == "g" { charge.args[3] } else { 0 });
        call.arg(receipt);
    }
    call
}

/// The undo script's source.
pub(crate) const UNDO_SOURCE: &str = include_str!("undo.lua");

/// The undo script, hashed once.
pub(crate) fn undo_script() -> Script {
    Script::new(UNDO_SOURCE)
}

/// The decide script's reply, parsed: whether it charged, each charge's four
/// verdict numbers (admitted, remaining, retry ns, reset ns) and, when it
/// reserved, each charge's receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub charged: bool,
    pub verdicts: Vec<[u64; PER_CHARGE]>,
    pub receipts: Vec<u64>,
}

/// Parses the decide script's reply for `n` charges run in `mode`.
pub(crate) fn parse(n: usize, mode: Mode, reply: &[i64]) -> Result<Reply, StoreError> {
    let receipts = if mode == Mode::Reserve { n } else { 0 };
    let expected = 1 + PER_CHARGE * n + receipts;
    let malformed = || {
        StoreError::permanent(format!(
            "the decide script answered {reply:?} for {n} charges: expected {expected} \
             non-negative integers"
        ))
    };
    let values: Vec<u64> = reply
        .iter()
        .map(|v| u64::try_from(*v))
        .collect::<Result<_, _>>()
        .map_err(|_| malformed())?;
    if values.len() != expected {
        return Err(malformed());
    }
    let (verdicts, receipts) = values[1..].split_at(PER_CHARGE * n);
    Ok(Reply {
        charged: values[0] == 1,
        verdicts: verdicts
            .chunks_exact(PER_CHARGE)
            .map(|v| [v[0], v[1], v[2], v[3]])
            .collect(),
        receipts: receipts.to_vec(),
    })
}

/// The decision from every charge's verdict numbers, as `MemoryStore` makes it:
/// when nothing was charged (the request was rejected, or only looked at), a
/// limit that would have admitted it still has the slot it would have taken, so
/// its remaining count is one more than its peek said.
///
/// `limits` holds each charge's limit and quota count, in the charges' order.
pub(crate) fn assemble(
    limits: impl IntoIterator<Item = (LimitId, u32)>,
    verdicts: &[[u64; PER_CHARGE]],
    charged: bool,
) -> Decision {
    Decision::new(limits.into_iter().zip(verdicts).map(|((limit, quota), v)| {
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
    }))
}

/// The decision from one script's reply for all of a request's charges.
#[cfg(test)]
fn decision(limits: &[(LimitId, u32)], reply: &[i64]) -> Result<Decision, StoreError> {
    let parsed = parse(limits.len(), Mode::Commit, reply)?;
    Ok(assemble(
        limits.iter().copied(),
        &parsed.verdicts,
        parsed.charged,
    ))
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
    fn a_reservation_answers_a_receipt_per_charge() {
        let reply = parse(2, Mode::Reserve, &[1, 1, 3, 0, 9, 1, 0, 0, 7, 42, 43]).unwrap();
        assert!(reply.charged);
        assert_eq!(reply.verdicts, [[1, 3, 0, 9], [1, 0, 0, 7]]);
        assert_eq!(reply.receipts, [42, 43]);
        assert!(parse(2, Mode::Commit, &[1, 1, 3, 0, 9, 1, 0, 0, 7, 42, 43]).is_err());
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
