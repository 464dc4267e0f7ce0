//! Escalation state for many keys at once.

use std::hash::Hash;
use std::time::Duration;

use hashbrown::HashMap;

use super::{Escalated, Escalation, EscalationPolicy, Gate};
use crate::clock::Timestamp;
use crate::store::shards::{DEFAULT_SHARDS, Shards};

/// The escalation state of every key that has been rejected lately, sharded like
/// the limit store. Keys in good standing cost nothing: a key is only stored once
/// it received a `429`, and is forgotten once that no longer matters.
pub struct AbuseTracker<K> {
    policy: EscalationPolicy,
    shards: Shards<Shard<K>>,
}

struct Shard<K> {
    states: HashMap<K, Escalation, foldhash::fast::RandomState>,
    /// When this shard next forgets its calm keys (at most once a second, so a
    /// flood of rejections does not rescan the shard every time).
    next_sweep: Timestamp,
}

const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl<K: Hash + Eq + Clone> AbuseTracker<K> {
    /// A tracker that escalates by `policy`.
    pub fn new(policy: EscalationPolicy) -> Self {
        Self {
            policy,
            shards: Shards::new(DEFAULT_SHARDS, || Shard {
                states: HashMap::default(),
                next_sweep: Timestamp::EPOCH,
            }),
        }
    }

    /// The escalation policy.
    pub fn policy(&self) -> &EscalationPolicy {
        &self.policy
    }

    fn with<R>(
        &self,
        key: &K,
        f: impl FnOnce(&mut HashMap<K, Escalation, foldhash::fast::RandomState>) -> R,
    ) -> R {
        let index = self.shards.index(self.shards.hash(key));
        f(&mut self.shards.lock(index).states)
    }

    /// Whether a request from `key` at `now` may go on to the limits, and
    /// whether the key has escalation state (so its admission must be recorded).
    pub fn on_request(&self, key: &K, now: Timestamp) -> (Gate, bool) {
        self.with(key, |map| match map.get(key) {
            Some(state) => (state.on_request(now), true),
            None => (Gate::Pass, false),
        })
    }

    /// Records that `key` got a `429` at `now`, told to wait `retry_after`.
    pub fn on_rejection(&self, key: &K, now: Timestamp, retry_after: Duration) -> Escalated {
        let index = self.shards.index(self.shards.hash(key));
        let mut shard = self.shards.lock(index);
        let escalated = shard.states.entry(key.clone()).or_default().on_rejection(
            &self.policy,
            now,
            retry_after,
        );
        if now >= shard.next_sweep {
            shard
                .states
                .retain(|_, state| !state.is_idle(&self.policy, now));
            shard.next_sweep = now + SWEEP_EVERY;
        }
        escalated
    }

    /// Records that a request from `key` was admitted (see
    /// [`Escalation::on_admission`]); only needed when [`on_request`](Self::on_request)
    /// said the key has state.
    pub fn on_admission(&self, key: &K) {
        self.with(key, |map| {
            if let Some(state) = map.get_mut(key) {
                state.on_admission();
            }
        });
    }

    /// Lifts `key`'s block; returns whether it was blocked at `now`.
    pub fn unblock(&self, key: &K, now: Timestamp) -> bool {
        self.with(key, |map| {
            map.get_mut(key).is_some_and(|state| {
                let was = state.blocked_until(now).is_some();
                state.unblock();
                was
            })
        })
    }

    /// The state of `key`, if it has any.
    pub fn get(&self, key: &K) -> Option<Escalation> {
        self.with(key, |map| map.get(key).copied())
    }

    /// Every key blocked at `now`, with the end of its block.
    pub fn blocked(&self, now: Timestamp) -> Vec<(K, Timestamp)> {
        (0..self.shards.len())
            .flat_map(|i| {
                self.shards
                    .lock(i)
                    .states
                    .iter()
                    .filter_map(|(k, s)| s.blocked_until(now).map(|u| (k.clone(), u)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}
