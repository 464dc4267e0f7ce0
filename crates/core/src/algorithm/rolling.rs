//! The sliding log: the instants of the last `count` admitted requests.
//!
//! Exactness is the point: a slot returns exactly `W` after the request that used
//! it, as providers with a "rolling 60-second window" promise. Only the newest
//! `count` instants can matter (a request is admitted iff the `count`-th newest
//! has left the window), so the log is a ring of exactly `count` entries.
//!
//! To keep an active key near 100 bytes at `count = 50`, instants are stored as
//! their low 16 bits, read back relative to the newest (every live entry is
//! within 60,000 steps of it, so the difference never wraps twice), in a
//! resolution chosen per window so that a
//! whole window fits in 60,000 steps: 1 µs up to 60 ms windows, 1 ms up to 60 s,
//! 10 ms up to 10 min, and so on. An instant is rounded *up* to that resolution,
//! so a slot can return late by less than one step, never early. Times on a
//! millisecond grid are exact for every window up to 60 s.

use super::{LimitState, Peek, div_ceil};
use crate::clock::nanos_of;
use crate::quota::Quota;

/// The most steps a window may span, leaving room below `u16::MAX` for the
/// rounding of the newest and oldest instants.
const STEPS_PER_WINDOW: u64 = 60_000;

/// The resolution in nanoseconds the rolling log keeps instants at, for a
/// window of `window_nanos`: the smallest power of ten, from
/// 1 µs up, that spans the window in at most 60,000 steps.
pub fn resolution_nanos(window_nanos: u64) -> u64 {
    // Comparisons, not divisions: this runs on every decision.
    let mut step = 1_000;
    while window_nanos > STEPS_PER_WINDOW * step {
        step *= 10;
    }
    step
}

/// A ring of the newest admitted instants, oldest first.
#[derive(Clone, Debug, Default)]
pub(crate) struct RollingLog {
    /// The newest entry's instant, in resolution steps.
    newest: u64,
    /// The low 16 bits of each entry's instant; its length is the largest
    /// count this key has had since it was last idle (no allocation for a key
    /// never admitted).
    slots: Box<[u16]>,
    /// Index of the oldest entry.
    head: u32,
    /// Number of entries in use.
    len: u32,
}

impl RollingLog {
    /// The ring position of the `index`-th oldest entry (no division: this is
    /// on every decision's path).
    fn position(&self, index: u32) -> usize {
        let at = (self.head + index) as usize;
        if at >= self.slots.len() {
            at - self.slots.len()
        } else {
            at
        }
    }

    fn step_at(&self, index: u32) -> u64 {
        let newest = self.slots[self.position(self.len - 1)];
        self.newest - u64::from(newest.wrapping_sub(self.slots[self.position(index)]))
    }

    /// Grows the ring to `count` entries (a first charge, or a tier raise),
    /// keeping every entry.
    fn grow(&mut self, count: u32) {
        let mut slots = vec![0u16; count as usize].into_boxed_slice();
        for (i, slot) in slots.iter_mut().take(self.len as usize).enumerate() {
            *slot = self.slots[(self.head as usize + i) % self.slots.len()];
        }
        self.slots = slots;
        self.head = 0;
    }

    /// Drops the entries whose slots have returned by `now`.
    fn expire(&mut self, step: u64, window: u64, now: u64) {
        while self.len > 0 && self.step_at(0) * step + window <= now {
            self.head = self.position(1) as u32;
            self.len -= 1;
        }
    }
}

impl LimitState for RollingLog {
    fn fresh(_: &Quota) -> Self {
        Self::default()
    }

    fn peek(&mut self, quota: &Quota, now: u64) -> Peek {
        let count = quota.rate.count();
        let window = nanos_of(quota.rate.window());
        let step = resolution_nanos(window);
        self.expire(step, window, now);
        if self.len < count {
            let oldest = if self.len == 0 {
                div_ceil(now, step)
            } else {
                self.step_at(0)
            };
            Peek::admit(count - self.len - 1, oldest * step + window - now)
        } else {
            // The slot whose return brings the count below the limit.
            Peek::reject(self.step_at(self.len - count) * step + window - now)
        }
    }

    fn charge(&mut self, quota: &Quota, now: u64) {
        let count = quota.rate.count();
        let step = resolution_nanos(nanos_of(quota.rate.window()));
        if self.slots.len() < count as usize {
            self.grow(count);
        }
        let mut at = div_ceil(now, step);
        if self.len > 0 {
            // A clock that stepped back must not make the log go backwards.
            at = at.max(self.newest);
        }
        let tail = self.position(self.len);
        self.slots[tail] = at as u16; // the low 16 bits; see the module docs
        self.newest = at;
        self.len += 1;
    }

    fn is_idle(&self, window_nanos: u64, now: u64) -> bool {
        self.len == 0 || self.newest * resolution_nanos(window_nanos) + window_nanos <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Rate;
    use std::time::Duration;

    #[test]
    fn resolution_spans_a_window_in_at_most_sixty_thousand_steps() {
        assert_eq!(resolution_nanos(60_000_000_000), 1_000_000);
        assert_eq!(resolution_nanos(1_000_000_000), 100_000);
        assert_eq!(resolution_nanos(61_000_000_000), 10_000_000);
        assert_eq!(resolution_nanos(1_000_000), 1_000);
    }

    #[test]
    fn seeds_example_slots_return_sixty_seconds_after_use() {
        let quota = Quota::rolling(Rate::per_minute(50));
        let mut log = RollingLog::fresh(&quota);
        let s = 1_000_000_000;
        let at = |secs: u64| 1_700_000_000 * s + secs * s;
        assert_eq!(log.peek(&quota, at(0)).remaining, 49);
        log.charge(&quota, at(0));
        assert_eq!(log.peek(&quota, at(30)).remaining, 48);
        log.charge(&quota, at(30));
        // At 60 s the first slot is back: 49 left before this request.
        let at_60 = log.peek(&quota, at(60));
        assert_eq!(at_60.remaining, 48, "49 free, this one would use one");
        assert_eq!(at_60.reset_after, Duration::from_secs(30));
        assert_eq!(log.peek(&quota, at(90)).remaining, 49);
    }

    #[test]
    fn a_long_busy_key_keeps_its_entries_in_order_as_the_low_bits_wrap() {
        let quota = Quota::rolling(Rate::new(3, Duration::from_secs(60)));
        let mut log = RollingLog::fresh(&quota);
        let ms = 1_000_000;
        let mut now = 5 * ms;
        for _ in 0..10_000 {
            if log.peek(&quota, now).admitted {
                log.charge(&quota, now);
            }
            now += 7_777 * ms;
        }
        // Every 7.777 s, 3 per 60 s: in any minute at most 3 admitted.
        let admitted: Vec<u64> = (0..log.len).map(|i| log.step_at(i)).collect();
        assert_eq!(admitted.len(), 3);
        assert!(admitted.windows(2).all(|w| w[0] < w[1]));
    }
}
