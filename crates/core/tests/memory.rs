//! Memory per active key in [`MemoryStore`], and proof that idle keys are freed.
//!
//! Its own test binary, so that the counting global allocator sees only this
//! file's allocations; the tests take one lock so they never measure each other.
//! The counts are the bytes the store asks the allocator for (the allocator's own
//! per-block overhead is not included), after the keys are inserted, divided by
//! the number of keys. Run with `--nocapture` to see the figures (a few seconds,
//! debug build included):
//!
//! ```text
//! cargo test -p tollgate-core --test memory -- --nocapture
//! ```

use std::alloc::System;
use std::sync::Mutex;
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tollgate_core::{Charge, LimitId, ManualClock, MemoryStore, Quota, Rate, Timestamp};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Held by every test for its whole run: the allocator's counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

/// The most a store may keep once every key is idle and swept: the per-shard
/// table slots (64 shards), with room for the test harness's own allocations.
const RESIDUE_LIMIT: i64 = 64 * 1024;

/// Bytes currently allocated by the whole process.
fn live_bytes() -> i64 {
    let stats = GLOBAL.stats();
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64
}

/// What one run measured.
struct Figures {
    keys: u64,
    bytes_per_key: f64,
    /// Bytes above the empty store's once every key was idle and swept.
    residue_after_sweep: i64,
    len_after_sweep: usize,
}

/// Charges `keys` distinct keys `requests` times each under `quota`, measures
/// the bytes per key, then lets every key go idle, sweeps, and measures what is
/// left.
fn measure(quota: Quota, keys: u64, requests: u32) -> Figures {
    let start = Timestamp::from_secs(1_700_000_000);
    let clock = ManualClock::new(start);
    let store = MemoryStore::<u64>::new(clock.clone());
    let baseline = live_bytes();

    // Spread the requests over the first half of the window, 1 ms apart per
    // thousand keys, so every key is active when measured.
    for request in 0..requests {
        for key in 0..keys {
            let now = start + Duration::from_millis(key / 1_000 + u64::from(request) * 100);
            let charge = Charge {
                limit: LimitId(0),
                key,
                quota,
            };
            assert!(store.decide_at(&[charge], now).is_admitted());
        }
    }
    let used = live_bytes() - baseline;
    assert_eq!(store.len() as u64, keys, "every key is held");

    // Past the window (two for the sliding counter, whose previous bucket still
    // counts for one more window), every key is idle.
    clock.advance(2 * quota.rate.window() + Duration::from_secs(1));
    store.sweep();
    let figures = Figures {
        keys,
        bytes_per_key: used as f64 / keys as f64,
        residue_after_sweep: live_bytes() - baseline,
        len_after_sweep: store.len(),
    };
    eprintln!(
        "memory: {} at {} keys, {} requests each: {:.1} B/key ({:.1} MiB); after sweep: len {}, {} B above the empty store",
        quota,
        keys,
        requests,
        figures.bytes_per_key,
        used as f64 / (1024.0 * 1024.0),
        figures.len_after_sweep,
        figures.residue_after_sweep,
    );
    figures
}

fn rolling() -> Quota {
    Quota::rolling(Rate::per_minute(50))
}

fn sliding_counter() -> Quota {
    Quota::sliding_counter(Rate::per_minute(50))
}

fn assert_freed(figures: &Figures) {
    assert_eq!(figures.len_after_sweep, 0, "idle keys are dropped");
    assert!(
        figures.residue_after_sweep <= RESIDUE_LIMIT,
        "{} keys idle past their window left {} B allocated after a sweep",
        figures.keys,
        figures.residue_after_sweep
    );
}

#[test]
fn rolling_50_per_minute_uses_at_most_256_bytes_per_key_and_frees_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let figures = measure(rolling(), 100_000, 1);
    assert!(
        figures.bytes_per_key <= 256.0,
        "rolling 50/60s: {:.1} B per key at 100k keys",
        figures.bytes_per_key
    );
    assert_freed(&figures);
}

#[test]
fn sliding_counter_uses_at_most_48_bytes_per_key_and_frees_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let figures = measure(sliding_counter(), 100_000, 1);
    assert!(
        figures.bytes_per_key <= 48.0,
        "sliding-counter 50/60s: {:.1} B per key at 100k keys",
        figures.bytes_per_key
    );
    assert_freed(&figures);
}

#[test]
fn a_million_idle_keys_are_freed_by_a_sweep() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rolling = measure(rolling(), 1_000_000, 1);
    assert!(
        rolling.bytes_per_key <= 256.0,
        "rolling 50/60s: {:.1} B per key at 1M keys",
        rolling.bytes_per_key
    );
    assert_freed(&rolling);
    let sliding = measure(sliding_counter(), 1_000_000, 1);
    assert!(
        sliding.bytes_per_key <= 48.0,
        "sliding-counter 50/60s: {:.1} B per key at 1M keys",
        sliding.bytes_per_key
    );
    assert_freed(&sliding);
}

/// A key at its limit holds all 50 entries: the most a rolling key costs. At
/// 100k keys the shards' tables are about 76 % full; at 250k just past a
/// doubling, 48 % full, the emptiest they get.
#[test]
fn rolling_keys_at_their_limit_use_at_most_256_bytes_each() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for keys in [100_000, 250_000] {
        let full = measure(rolling(), keys, 50);
        assert!(
            full.bytes_per_key <= 256.0,
            "rolling 50/60s, 50 requests per key: {:.1} B per key at {keys} keys",
            full.bytes_per_key
        );
        assert_freed(&full);
    }
}
