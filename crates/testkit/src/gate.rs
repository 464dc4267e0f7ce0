//! The limiter in front of every route, strict mode, and the record of every
//! request for analysis.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use axum::http::Method;
use parking_lot::Mutex;
use tollgate_core::{Decision, MemoryStore, PolicySet, Subject, Timestamp, retry_after_secs};

use crate::endpoint::Endpoint;
use crate::faults::Fault;

/// One request as the API saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// When it arrived (by the API's clock).
    pub at: Timestamp,
    /// The API key it carried (empty when none).
    pub key: String,
    /// Its method.
    pub method: Method,
    /// Its path and query.
    pub path: String,
    /// The endpoint it matched.
    pub endpoint: Option<Endpoint>,
    /// The status answered; `None` when the connection was closed without one.
    pub status: Option<u16>,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
}

/// Counters for one API key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyStats {
    /// Requests received.
    pub requests: u64,
    /// Requests answered `429`.
    pub limited: u64,
    /// Requests that came before the retry instant the key was last told.
    pub early: u64,
    /// Requests answered `403` (blocked).
    pub forbidden: u64,
}

/// A key blocked in strict mode: the evidence that a client misbehaved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEvent {
    /// The key blocked.
    pub key: String,
    /// When the early request arrived.
    pub at: Timestamp,
    /// The retry instant the key had been told (the early request came before it).
    pub told_until: Timestamp,
    /// When the block ends.
    pub until: Timestamp,
    /// The early request's path and query.
    pub path: String,
}

/// What the gate says about one request.
pub(crate) enum Admission {
    /// Every limit admitted it and was charged.
    Admitted(Decision),
    /// A limit rejected it; `wait` is the exact time until it would admit.
    Limited { decision: Decision, wait: Duration },
    /// The key is blocked until `until`.
    Blocked,
}

/// The limiter, strict mode and the request log, behind one lock so that a
/// request's early check, decision and retry instant are one step: two requests
/// of a key can never both be judged against a stale retry instant.
pub(crate) struct Gate {
    policies: PolicySet,
    store: MemoryStore<u64>,
    /// The block for an early request: `Some` in strict mode.
    strict_block: Option<Duration>,
    /// Whether a `429` says `Retry-After` (else the client is told nothing and
    /// must wait the documented window).
    tells_retry_after: bool,
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// The number the limiter knows each key by.
    ids: HashMap<String, u32>,
    keys: BTreeMap<String, KeyState>,
    log: Vec<LogEntry>,
    blocks: Vec<BlockEvent>,
}

#[derive(Default)]
struct KeyState {
    stats: KeyStats,
    /// The retry instant last told: a request before it is early.
    told_until: Option<Timestamp>,
    blocked_until: Option<Timestamp>,
}

impl Gate {
    pub(crate) fn new(
        policies: PolicySet,
        store: MemoryStore<u64>,
        strict_block: Option<Duration>,
        tells_retry_after: bool,
    ) -> Self {
        Self {
            policies,
            store,
            strict_block,
            tells_retry_after,
            state: Mutex::new(GateState::default()),
        }
    }

    pub(crate) fn policies(&self) -> &PolicySet {
        &self.policies
    }

    pub(crate) fn tells_retry_after(&self) -> bool {
        self.tells_retry_after
    }

    /// Decides a request of `key` to `endpoint` that arrived at `now`.
    pub(crate) fn admit(
        &self,
        key: &str,
        endpoint: Option<Endpoint>,
        path: &str,
        now: Timestamp,
    ) -> Admission {
        let mut guard = self.state.lock();
        let GateState {
            ids, keys, blocks, ..
        } = &mut *guard;
        let next_id = ids.len() as u32;
        let id = *ids.entry(key.to_owned()).or_insert(next_id);
        let state = keys.entry(key.to_owned()).or_default();
        if state.blocked_until.is_some_and(|until| now < until) {
            return Admission::Blocked;
        }
        if let Some(told_until) = state.told_until.filter(|told| now < *told) {
            state.stats.early += 1;
            if let Some(block) = self.strict_block {
                let until = now + block;
                (state.blocked_until, state.told_until) = (Some(until), None);
                let (key, path) = (key.to_owned(), path.to_owned());
                blocks.push(BlockEvent {
                    key,
                    at: now,
                    told_until,
                    until,
                    path,
                });
                return Admission::Blocked;
            }
        }
        let subject = Subject {
            key: id,
            endpoint: endpoint.map(Endpoint::id),
            increments: 0,
        };
        let decision = self.store.decide_at(&self.policies.charges(&subject), now);
        let Some(wait) = decision.retry_after() else {
            return Admission::Admitted(decision);
        };
        state.told_until = Some(now + self.told_wait(&decision, wait));
        Admission::Limited { decision, wait }
    }

    /// What the client was told to wait: `Retry-After` in whole seconds, rounded
    /// up; without it, what such a provider documents: the rejecting limit's window.
    fn told_wait(&self, decision: &Decision, wait: Duration) -> Duration {
        if self.tells_retry_after {
            return Duration::from_secs(retry_after_secs(wait));
        }
        decision
            .rejections()
            .filter_map(|v| self.policies.get(v.limit))
            .map(|p| p.quota.rate.window())
            .max()
            .unwrap_or(wait)
    }

    /// Records a request once its answer is known.
    pub(crate) fn record(&self, entry: LogEntry) {
        let mut state = self.state.lock();
        if !entry.key.is_empty() {
            let stats = &mut state.keys.entry(entry.key.clone()).or_default().stats;
            stats.requests += 1;
            stats.limited += u64::from(entry.status == Some(429));
            stats.forbidden += u64::from(entry.status == Some(403));
        }
        state.log.push(entry);
    }

    pub(crate) fn log(&self) -> Vec<LogEntry> {
        self.state.lock().log.clone()
    }

    pub(crate) fn stats(&self) -> BTreeMap<String, KeyStats> {
        let state = self.state.lock();
        state
            .keys
            .iter()
            .map(|(k, s)| (k.clone(), s.stats))
            .collect()
    }

    pub(crate) fn blocks(&self) -> Vec<BlockEvent> {
        self.state.lock().blocks.clone()
    }

    pub(crate) fn blocked_keys(&self) -> Vec<String> {
        let state = self.state.lock();
        let keys: BTreeSet<_> = state.blocks.iter().map(|b| b.key.clone()).collect();
        keys.into_iter().collect()
    }

    /// Lifts a key's block and forgets its retry instant; true if it was blocked.
    pub(crate) fn unblock(&self, key: &str, now: Timestamp) -> bool {
        let mut state = self.state.lock();
        let Some(state) = state.keys.get_mut(key) else {
            return false;
        };
        let was_blocked = state.blocked_until.is_some_and(|until| now < until);
        (state.blocked_until, state.told_until) = (None, None);
        was_blocked
    }

    /// The most requests `key` sent within any window `(t − window, t]`.
    pub(crate) fn max_in_any_window(&self, key: &str, window: Duration) -> usize {
        let mut times: Vec<Timestamp> = {
            let state = self.state.lock();
            state
                .log
                .iter()
                .filter(|e| e.key == key)
                .map(|e| e.at)
                .collect()
        };
        times.sort_unstable();
        max_in_window(&times, window)
    }
}

/// The largest number of sorted `times` within any half-open window of `window`.
fn max_in_window(times: &[Timestamp], window: Duration) -> usize {
    let mut first = 0;
    let mut most = 0;
    for (last, t) in times.iter().enumerate() {
        while t.saturating_since(times[first]) >= window {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_what_is_strictly_less_than_its_length_apart() {
        let at = |ms| Timestamp::from_millis(ms);
        let times = [at(0), at(500), at(999), at(1000), at(1001), at(5000)];
        assert_eq!(max_in_window(&times, Duration::from_secs(1)), 4);
        assert_eq!(max_in_window(&times, Duration::from_millis(1)), 1);
        assert_eq!(max_in_window(&[], Duration::from_secs(1)), 0);
    }
}
