//! What the gateway keeps about each key between its requests: the key's
//! escalation state, and the evidence an admin weighs when the key asks for a
//! higher limit (its 429s, strikes, blocks, and peak use of its limit per day).
//! Kept in memory since the gateway started.
//!
//! Both live in one record per key, [`KeyActivity`], so that a request reads
//! and updates them with one memory access and one uncontended lock. The key
//! registry keeps a handle to each key's record beside the key itself, so the
//! hot path reaches it without a lookup here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tollgate_core::Timestamp;
use tollgate_core::abuse::{Escalation, EscalationCell};

/// Days of peak usage kept per key.
const DAYS: usize = 7;
const SHARDS: usize = 32;

/// One day's highest use of a key's per-key limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DayPeak {
    /// Days since the Unix epoch (UTC).
    pub day: u32,
    /// The most requests in use at once in the window.
    pub used: u32,
    /// The limit at that moment.
    pub limit: u32,
}

/// What the gateway saw of one key, as an admin reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    /// Requests answered `429`.
    pub rejected: u64,
    /// Requests rejected again before their retry instant.
    pub strikes: u64,
    /// Times the key was blocked.
    pub blocks: u64,
    /// Requests refused with `403` while blocked.
    pub refused_while_blocked: u64,
    /// Peak use per day, newest last.
    pub peaks: Vec<DayPeak>,
}

/// One key's record: its escalation state and its evidence, under one lock.
///
/// Only that key's requests take the lock, one at a time for each of their
/// few updates, so it is almost never contended.
#[derive(Debug, Default)]
pub struct KeyActivity {
    state: parking_lot::Mutex<ActivityState>,
}

#[derive(Debug, Default)]
struct ActivityState {
    /// Read and written on every request: first.
    escalation: Escalation,
    rejected: u64,
    strikes: u64,
    blocks: u64,
    refused_while_blocked: u64,
    /// Peak use per day, oldest first; `peaks[..days]` are in use.
    peaks: [DayPeak; DAYS],
    days: usize,
}

impl KeyActivity {
    /// Records an admitted request that left `used` of `limit` in use.
    pub fn admitted(&self, now: Timestamp, used: u32, limit: u32) {
        let day = (now.as_millis() / 86_400_000) as u32;
        let mut state = self.state.lock();
        let days = state.days;
        match days.checked_sub(1).map(|last| &mut state.peaks[last]) {
            Some(peak) if peak.day == day => {
                if used > peak.used || limit != peak.limit {
                    peak.used = peak.used.max(used);
                    peak.limit = limit;
                }
            }
            _ => {
                if days == DAYS {
                    state.peaks.rotate_left(1);
                    state.days -= 1;
                }
                let slot = state.days;
                state.peaks[slot] = DayPeak { day, used, limit };
                state.days += 1;
            }
        }
    }

    /// Records a `429`.
    pub fn rejected(&self, struck: bool) {
        let mut state = self.state.lock();
        state.rejected += 1;
        state.strikes += u64::from(struck);
    }

    /// Records a `403`; `now_blocked` when this request caused the block.
    pub fn refused(&self, now_blocked: bool) {
        let mut state = self.state.lock();
        state.refused_while_blocked += 1;
        state.blocks += u64::from(now_blocked);
        state.strikes += u64::from(now_blocked);
    }

    /// What was recorded so far.
    pub fn record(&self) -> KeyRecord {
        let state = self.state.lock();
        KeyRecord {
            rejected: state.rejected,
            strikes: state.strikes,
            blocks: state.blocks,
            refused_while_blocked: state.refused_while_blocked,
            peaks: state.peaks[..state.days].to_vec(),
        }
    }

    /// The key's escalation state.
    pub fn escalation(&self) -> Escalation {
        self.state.lock().escalation
    }
}

impl EscalationCell for KeyActivity {
    fn update<R>(&self, f: impl FnOnce(&mut Escalation) -> R) -> R {
        f(&mut self.state.lock().escalation)
    }
}

/// Hashes key ids (small integers the gateway hands out, not chosen by
/// clients) with one multiplication instead of SipHash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        // The product's well-mixed high half goes to the low bits the table
        // indexes by (the ids in one shard share their low bits).
        self.0 = u64::from(n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(32);
    }
}

type Records = HashMap<u32, Arc<KeyActivity>, BuildHasherDefault<IdHasher>>;

/// Every key's [`KeyActivity`], by key id, sharded.
pub struct Ledger {
    shards: Vec<Mutex<Records>>,
    /// When counting began (the gateway's start).
    pub since: Timestamp,
}

/// A shard's records; a panic elsewhere while holding the lock leaves them usable.
fn lock(shard: &Mutex<Records>) -> std::sync::MutexGuard<'_, Records> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// An empty ledger starting at `since`.
    pub fn new(since: Timestamp) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Records::default()))
                .collect(),
            since,
        }
    }

    fn shard(&self, key: u32) -> std::sync::MutexGuard<'_, Records> {
        lock(&self.shards[key as usize % SHARDS])
    }

    /// The record of `key`, created empty on first use. Keep the handle to
    /// skip this lookup on the key's next requests.
    pub fn activity(&self, key: u32) -> Arc<KeyActivity> {
        Arc::clone(self.shard(key).entry(key).or_default())
    }

    /// The record of `key`, if it was ever seen.
    fn existing(&self, key: u32) -> Option<Arc<KeyActivity>> {
        self.shard(key).get(&key).cloned()
    }

    /// What was recorded of `key` (empty if it was never seen).
    pub fn record(&self, key: u32) -> KeyRecord {
        self.existing(key)
            .map(|activity| activity.record())
            .unwrap_or_default()
    }

    /// The escalation state of `key`, if it was ever seen.
    pub fn escalation(&self, key: u32) -> Option<Escalation> {
        self.existing(key).map(|activity| activity.escalation())
    }

    /// Every key blocked at `now`, with the end of its block, by key id.
    pub fn blocked(&self, now: Timestamp) -> Vec<(u32, Timestamp)> {
        let mut blocked: Vec<(u32, Timestamp)> = Vec::new();
        for shard in &self.shards {
            blocked.extend(lock(shard).iter().filter_map(|(key, activity)| {
                Some((*key, activity.escalation().blocked_until(now)?))
            }));
        }
        blocked.sort_unstable_by_key(|(key, _)| *key);
        blocked
    }

    /// Lifts `key`'s block; returns whether it was blocked at `now`.
    pub fn unblock(&self, key: u32, now: Timestamp) -> bool {
        self.existing(key).is_some_and(|activity| {
            activity.update(|state| {
                let was = state.blocked_until(now).is_some();
                state.unblock();
                was
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tollgate_core::abuse::EscalationPolicy;

    use super::*;

    #[test]
    fn keeps_the_daily_peak_for_a_week() {
        let ledger = Ledger::new(Timestamp::EPOCH);
        let activity = ledger.activity(1);
        for day in 0..10u64 {
            let noon = Timestamp::from_secs(day * 86_400 + 43_200);
            activity.admitted(noon, 10, 50);
            activity.admitted(noon, 30 + day as u32, 50);
            activity.admitted(noon, 5, 50);
        }
        let record = ledger.record(1);
        assert_eq!(record.peaks.len(), 7);
        assert_eq!(
            record.peaks[0],
            DayPeak {
                day: 3,
                used: 33,
                limit: 50
            }
        );
        assert_eq!(
            record.peaks[6],
            DayPeak {
                day: 9,
                used: 39,
                limit: 50
            }
        );
        activity.rejected(false);
        activity.rejected(true);
        activity.refused(true);
        let record = ledger.record(1);
        assert_eq!((record.rejected, record.strikes, record.blocks), (2, 2, 1));
        assert_eq!(ledger.record(2), KeyRecord::default());
    }

    #[test]
    fn one_record_per_key_holds_its_block_until_an_unblock() {
        let ledger = Ledger::new(Timestamp::EPOCH);
        let policy = EscalationPolicy {
            strikes: 1,
            ..EscalationPolicy::default()
        };
        let now = Timestamp::from_secs(100);
        let wait = Duration::from_secs(5);
        let seven = ledger.activity(7);
        seven.update(|state| state.on_rejection(&policy, now, wait));
        seven.update(|state| state.on_rejection(&policy, now, wait));
        ledger.activity(3);

        // The handle and the ledger's lookup reach the same record.
        let until = ledger.escalation(7).and_then(|e| e.blocked_until(now));
        assert!(until.is_some());
        assert_eq!(ledger.blocked(now), vec![(7, until.unwrap())]);
        assert!(!ledger.unblock(3, now));
        assert!(!ledger.unblock(8, now));
        assert!(ledger.unblock(7, now));
        assert_eq!(seven.escalation().blocked_until(now), None);
        assert!(ledger.blocked(now).is_empty());
    }
}
