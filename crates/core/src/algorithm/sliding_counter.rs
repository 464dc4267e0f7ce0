//! The two-bucket estimate of a rolling window: the previous aligned window's
//! count, weighted by how much of it still overlaps the rolling window, plus the
//! current one's.
//!
//! Eight bytes a key. The estimate assumes the previous window's requests were
//! spread evenly; when they bunched at its end, a rolling window can hold up to
//! `count + count × f` admitted requests (`f`: the elapsed fraction of the
//! current window), so strictly less than `2 × count`. Counts are 16-bit: a limit
//! above 65,535 per window saturates there.

use super::{LimitState, Peek, div_ceil};
use crate::clock::nanos_of;
use crate::quota::Quota;

/// Counts of the previous and the current aligned window.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SlidingCounter {
    /// Index of the current window, modulo 2³² (compared with wrapping
    /// arithmetic; an idle key is swept long before an index can wrap).
    window: u32,
    previous: u16,
    current: u16,
}

impl SlidingCounter {
    /// Rolls the buckets forward to window `index`.
    fn roll(&mut self, index: u32) {
        if self.previous == 0 && self.current == 0 {
            self.window = index;
            return;
        }
        // A clock that stepped back stays in the newest window seen.
        if (index.wrapping_sub(self.window) as i32) < 0 {
            return;
        }
        match index.wrapping_sub(self.window) {
            0 => {}
            1 => {
                self.previous = self.current;
                self.current = 0;
            }
            _ => {
                self.previous = 0;
                self.current = 0;
            }
        }
        self.window = index;
    }
}

/// The wait, from `elapsed` into a window of `width`, until
/// `previous × (width − e) ≤ room × width`, i.e. `e ≥ width − room × width / previous`.
fn wait_for_room(previous: u128, room: u128, width: u128, elapsed: u128) -> u128 {
    if previous == 0 {
        return 0;
    }
    let needed = width - (room * width / previous).min(width);
    needed.saturating_sub(elapsed)
}

impl LimitState for SlidingCounter {
    fn fresh(_: &Quota) -> Self {
        Self::default()
    }

    fn peek(&mut self, quota: &Quota, now: u64) -> Peek {
        let width = nanos_of(quota.rate.window());
        // Looking changes nothing: only a charge moves the buckets forward.
        let mut this = *self;
        this.roll((now / width) as u32);
        let elapsed = u128::from(now % width);
        let (w, limit) = (
            u128::from(width),
            u128::from(quota.rate.count().min(65_535)),
        );
        let (previous, current) = (u128::from(this.previous), u128::from(this.current));
        let used = previous * (w - elapsed) + (current + 1) * w;
        if used <= limit * w {
            let remaining = (limit * w - used) / w;
            let reset_after = if previous > 0 {
                div_ceil(width, u64::from(this.previous)).min(width - elapsed as u64)
            } else {
                width - elapsed as u64
            };
            return Peek::admit(remaining as u32, reset_after);
        }
        let wait = if current < limit {
            wait_for_room(previous, limit - current - 1, w, elapsed)
        } else {
            // Full this window: wait for the next, where this window's count
            // becomes the weighted previous one.
            (w - elapsed) + wait_for_room(current, limit - 1, w, 0)
        };
        Peek::reject(u64::try_from(wait.max(1)).unwrap_or(u64::MAX))
    }

    fn charge(&mut self, quota: &Quota, now: u64) {
        self.roll((now / nanos_of(quota.rate.window())) as u32);
        self.current = self.current.saturating_add(1);
    }

    fn is_idle(&self, window_nanos: u64, now: u64) -> bool {
        ((now / window_nanos) as u32).wrapping_sub(self.window) >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Rate;

    #[test]
    fn the_previous_window_weighs_less_as_the_current_one_advances() {
        let quota = Quota::sliding_counter(Rate::per_second(10));
        let mut state = SlidingCounter::fresh(&quota);
        let s = 1_000_000_000u64;
        for _ in 0..10 {
            assert!(state.peek(&quota, 100 * s).admitted);
            state.charge(&quota, 100 * s);
        }
        assert!(!state.peek(&quota, 100 * s + s / 2).admitted);
        // Half-way through the next window the previous ten weigh five.
        let mut admitted = 0;
        while state.peek(&quota, 101 * s + s / 2).admitted {
            state.charge(&quota, 101 * s + s / 2);
            admitted += 1;
        }
        assert_eq!(admitted, 5);
    }

    #[test]
    fn a_rejection_says_when_a_request_fits_again() {
        let quota = Quota::sliding_counter(Rate::per_second(4));
        let mut state = SlidingCounter::fresh(&quota);
        let s = 1_000_000_000u64;
        for _ in 0..4 {
            state.peek(&quota, 10 * s);
            state.charge(&quota, 10 * s);
        }
        let peek = state.peek(&quota, 10 * s);
        assert!(!peek.admitted);
        let retry = 10 * s + nanos_of(peek.retry_after);
        assert!(state.peek(&quota, retry).admitted);
        assert!(!state.peek(&quota, retry - 1_000_000).admitted);
    }
}
