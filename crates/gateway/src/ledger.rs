//! What the gateway saw of each key: the evidence an admin weighs when a key
//! asks for a higher limit (its 429s, strikes, blocks, and peak use of its
//! limit per day). Kept in memory since the gateway started.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use serde::Serialize;
use tollgate_core::Timestamp;

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

/// Counters for one key.
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

type Records = HashMap<u32, KeyRecord, BuildHasherDefault<IdHasher>>;

/// Per-key records, sharded by key id.
pub struct Ledger {
    shards: Vec<Mutex<Records>>,
    /// When counting began (the gateway's start).
    pub since: Timestamp,
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

    fn with<R>(&self, key: u32, f: impl FnOnce(&mut KeyRecord) -> R) -> R {
        let mut shard = self.shards[key as usize % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(shard.entry(key).or_default())
    }

    /// Records an admitted request that left `used` of `limit` in use.
    pub fn admitted(&self, key: u32, now: Timestamp, used: u32, limit: u32) {
        let day = (now.as_millis() / 86_400_000) as u32;
        self.with(key, |record| match record.peaks.last_mut() {
            Some(peak) if peak.day == day => {
                if used > peak.used || limit != peak.limit {
                    peak.used = peak.used.max(used);
                    peak.limit = limit;
                }
            }
            _ => {
                if record.peaks.len() == DAYS {
                    record.peaks.remove(0);
                }
                record.peaks.push(DayPeak { day, used, limit });
            }
        });
    }

    /// Records a `429`.
    pub fn rejected(&self, key: u32, struck: bool) {
        self.with(key, |record| {
            record.rejected += 1;
            record.strikes += u64::from(struck);
        });
    }

    /// Records a `403`; `now_blocked` when this request caused the block.
    pub fn refused(&self, key: u32, now_blocked: bool) {
        self.with(key, |record| {
            record.refused_while_blocked += 1;
            record.blocks += u64::from(now_blocked);
            record.strikes += u64::from(now_blocked);
        });
    }

    /// The record of `key` (empty if it was never seen).
    pub fn record(&self, key: u32) -> KeyRecord {
        self.with(key, |record| record.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_daily_peak_for_a_week() {
        let ledger = Ledger::new(Timestamp::EPOCH);
        for day in 0..10u64 {
            let noon = Timestamp::from_secs(day * 86_400 + 43_200);
            ledger.admitted(1, noon, 10, 50);
            ledger.admitted(1, noon, 30 + day as u32, 50);
            ledger.admitted(1, noon, 5, 50);
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
        ledger.rejected(1, false);
        ledger.rejected(1, true);
        ledger.refused(1, true);
        let record = ledger.record(1);
        assert_eq!((record.rejected, record.strikes, record.blocks), (2, 2, 1));
    }
}
