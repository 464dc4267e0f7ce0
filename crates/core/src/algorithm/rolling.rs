//! The sliding log: the instants of the last `count` admitted requests.
//!
//! Exactness is the point: a slot returns exactly `W` after the request that used
//! it, as providers with a "rolling 60-second window" promise. Only the newest
//! `count` instants can matter (a request is admitted iff the `count`-th newest
//! has left the window), so the log holds at most `count` entries, and only
//! those still in the window.
//!
//! To keep a key at its limit under 256 bytes at `count = 50`, and a decision
//! to one cache line (see `RollingLog`), instants are stored as
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

/// How many of a key's oldest entries live inline.
const FRONT: usize = 5;
/// How many of a key's newest entries live inline before they move on (no
/// more than `FRONT`, so that an empty `front` can always take all of them).
const TAIL: usize = 5;
const _: () = assert!(TAIL <= FRONT);

/// The admitted instants still in the window, oldest first, in three parts:
/// the oldest few inline (`front`), the newest few inline (`tail`), and the
/// ones between in a separate ring (`middle`).
///
/// A decision reads the oldest entry (has its slot returned?) and appends the
/// newest. Both happen inline, on the cache line the table lookup brought in,
/// so a decision touches one line. The middle ring is touched only in batches:
/// when `tail` fills up its entries move there together, and when `front` runs
/// dry it takes up to `FRONT` entries from there at once. (Writing to a
/// separate line on every decision would cost as much as reading it: the
/// store's lock release waits for every earlier write to land.) A key with at
/// most `FRONT + TAIL` entries in its window never allocates.
///
/// Every entry in `front` is older than every entry in `middle`, and those
/// older than every one in `tail`; `front` is empty only when the whole log
/// is, so the oldest entry is always `front`'s first.
#[derive(Clone, Debug, Default)]
pub(crate) struct RollingLog {
    /// The newest entry's instant, in resolution steps.
    newest: u64,
    /// The middle ring of the entries' low 16 bits. Allocated on the first
    /// entry that does not fit inline, with room for `count - 1` entries (the
    /// most it can hold, as `front` holds at least one).
    middle: Box<[u16]>,
    /// The oldest entries' low 16 bits, in `front[start..end]`.
    front: [u16; FRONT],
    /// The newest entries' low 16 bits, in `tail[..tail_len]`.
    tail: [u16; TAIL],
    /// Where `middle`'s oldest entry is, and how many it holds (kept here,
    /// so that only moving entries in or out reads or writes `middle`).
    middle_head: u32,
    middle_len: u32,
    start: u8,
    end: u8,
    tail_len: u8,
}

/// `at` wrapped into a ring of `capacity` (no division: `at` is less than
/// twice `capacity`).
fn wrap(at: usize, capacity: usize) -> usize {
    if at >= capacity { at - capacity } else { at }
}

impl RollingLog {
    fn len(&self) -> u32 {
        self.front_len() as u32 + self.middle_len + u32::from(self.tail_len)
    }

    fn front_len(&self) -> usize {
        usize::from(self.end - self.start)
    }

    fn oldest_low_bits(&self) -> u16 {
        self.front[usize::from(self.start)]
    }

    /// The low 16 bits of the `index`-th oldest entry.
    fn low_bits(&self, index: u32) -> u16 {
        let mut index = index as usize;
        if index < self.front_len() {
            return self.front[usize::from(self.start) + index];
        }
        index -= self.front_len();
        let middle_len = self.middle_len as usize;
        if index < middle_len {
            let at = wrap(self.middle_head as usize + index, self.middle_capacity());
            return self.middle[at];
        }
        self.tail[index - middle_len]
    }

    /// An entry's instant from its low 16 bits, read back relative to the
    /// newest (see the module docs).
    fn decode(&self, low: u16) -> u64 {
        self.newest - u64::from((self.newest as u16).wrapping_sub(low))
    }

    fn step_at(&self, index: u32) -> u64 {
        self.decode(self.low_bits(index))
    }

    /// Drops the entries whose slots have returned by `now`.
    fn expire(&mut self, step: u64, window: u64, now: u64) {
        while self.start < self.end {
            if self.decode(self.oldest_low_bits()) * step + window > now {
                return;
            }
            self.start += 1;
            if self.start == self.end {
                self.refill_front();
            }
        }
    }

    /// Fills the empty `front` with the oldest entries of `middle`, or of
    /// `tail` when `middle` is empty.
    fn refill_front(&mut self) {
        let middle_len = self.middle_len as usize;
        let moved = if middle_len > 0 {
            let moved = middle_len.min(FRONT);
            let (head, capacity) = (self.middle_head as usize, self.middle_capacity());
            for (i, slot) in self.front.iter_mut().take(moved).enumerate() {
                *slot = self.middle[wrap(head + i, capacity)];
            }
            self.set_middle(wrap(head + moved, capacity), middle_len - moved);
            moved
        } else {
            // All of `tail` fits: it is no longer than `front`.
            let moved = usize::from(self.tail_len);
            self.front[..moved].copy_from_slice(&self.tail[..moved]);
            self.tail_len = 0;
            moved
        };
        self.start = 0;
        self.end = moved as u8;
    }

    /// Appends the newest entry, `count` being the limit it was admitted under.
    fn push(&mut self, low: u16, count: u32) {
        if self.start == self.end {
            // An empty log: the entry is the oldest too.
            self.front[0] = low;
            self.start = 0;
            self.end = 1;
            return;
        }
        if usize::from(self.tail_len) == TAIL {
            self.flush_tail(count);
        }
        self.tail[usize::from(self.tail_len)] = low;
        self.tail_len += 1;
    }

    /// Empties the full `tail`: into `front`'s free room while `middle` is
    /// empty (order is kept: nothing lies between them), the rest into
    /// `middle`.
    fn flush_tail(&mut self, count: u32) {
        let mut from = 0;
        if self.middle_len == 0 {
            let (start, end) = (usize::from(self.start), usize::from(self.end));
            self.front.copy_within(start..end, 0);
            let end = end - start;
            from = (FRONT - end).min(TAIL);
            self.front[end..end + from].copy_from_slice(&self.tail[..from]);
            self.start = 0;
            self.end = (end + from) as u8;
        }
        let moving = TAIL - from;
        if moving > 0 {
            let middle_len = self.middle_len as usize;
            if middle_len + moving > self.middle_capacity() {
                self.grow_middle((count as usize).saturating_sub(1).max(middle_len + moving));
            }
            let (head, capacity) = (self.middle_head as usize, self.middle_capacity());
            for (i, low) in self.tail[from..].iter().enumerate() {
                self.middle[wrap(head + middle_len + i, capacity)] = *low;
            }
            self.set_middle(head, middle_len + moving);
        }
        self.tail_len = 0;
    }

    fn middle_capacity(&self) -> usize {
        self.middle.len()
    }

    fn set_middle(&mut self, head: usize, len: usize) {
        self.middle_head = head as u32;
        self.middle_len = len as u32;
    }

    /// Reallocates `middle` with room for `capacity` entries, keeping every
    /// entry in order.
    fn grow_middle(&mut self, capacity: usize) {
        let (head, len, old) = (
            self.middle_head as usize,
            self.middle_len as usize,
            self.middle_capacity(),
        );
        let mut middle = vec![0u16; capacity].into_boxed_slice();
        for i in 0..len {
            middle[i] = self.middle[wrap(head + i, old)];
        }
        self.middle = middle;
        self.set_middle(0, len);
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
        let len = self.len();
        if len < count {
            let oldest = if len == 0 {
                div_ceil(now, step)
            } else {
                self.decode(self.oldest_low_bits())
            };
            Peek::admit(count - len - 1, oldest * step + window - now)
        } else {
            // The slot whose return brings the count below the limit.
            Peek::reject(self.step_at(len - count) * step + window - now)
        }
    }

    fn charge(&mut self, quota: &Quota, now: u64) {
        let count = quota.rate.count();
        let step = resolution_nanos(nanos_of(quota.rate.window()));
        let mut at = div_ceil(now, step);
        if self.len() > 0 {
            // A clock that stepped back must not make the log go backwards.
            at = at.max(self.newest);
        }
        self.push(at as u16, count); // the low 16 bits; see the module docs
        self.newest = at;
    }

    fn is_idle(&self, window_nanos: u64, now: u64) -> bool {
        self.len() == 0 || self.newest * resolution_nanos(window_nanos) + window_nanos <= now
    }
}

// A `u64` key and its log fill exactly one cache line in the store's table.
const _: () = assert!(std::mem::size_of::<(u64, RollingLog)>() == 64);

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
        let admitted: Vec<u64> = (0..log.len()).map(|i| log.step_at(i)).collect();
        assert_eq!(admitted.len(), 3);
        assert!(admitted.windows(2).all(|w| w[0] < w[1]));
    }

    /// Every entry passes through `front`, `middle` and `tail` and comes back
    /// in order, whatever the limit does meanwhile: a raise grows `middle`
    /// with its entries kept, a cut leaves them until they expire.
    #[test]
    fn entries_keep_their_order_through_every_part_of_the_log() {
        let ms = 1_000_000;
        let quota = |count| Quota::rolling(Rate::new(count, Duration::from_secs(60)));
        let mut log = RollingLog::fresh(&quota(20));
        let mut expected = std::collections::VecDeque::new();
        let mut now = 1_700_000_000_000 * ms;
        for round in 0..2_000u64 {
            let count = match round % 300 {
                0..=99 => 20,
                100..=199 => 60, // a raise: `middle` grows
                _ => 7,          // a cut: more entries than the limit, for a while
            };
            now += (round * 7_919 % 5_000) * ms;
            let peek = log.peek(&quota(count), now);
            while expected.front().is_some_and(|t| t + 60_000 * ms <= now) {
                expected.pop_front();
            }
            assert_eq!(
                peek.admitted,
                expected.len() < count as usize,
                "round {round}"
            );
            if peek.admitted {
                log.charge(&quota(count), now);
                expected.push_back(now);
            }
            let held: Vec<u64> = (0..log.len()).map(|i| log.step_at(i) * ms).collect();
            assert_eq!(held, Vec::from(expected.clone()), "round {round}");
        }
    }
}
