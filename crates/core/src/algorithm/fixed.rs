//! Aligned fixed windows: `[k·W, (k+1)·W)` since the epoch.

use super::{LimitState, Peek};
use crate::clock::nanos_of;
use crate::quota::Quota;

/// The count in the current aligned window.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FixedWindow {
    /// Index of the window `count` belongs to (`now / W`).
    window: u64,
    count: u32,
}

impl LimitState for FixedWindow {
    fn fresh(_: &Quota) -> Self {
        Self::default()
    }

    fn peek(&mut self, quota: &Quota, now: u64) -> Peek {
        let width = nanos_of(quota.rate.window());
        // A clock that stepped back stays in the newest window seen; looking
        // changes nothing (only a charge moves to a new window).
        let window = (now / width).max(self.window);
        let count = if window == self.window { self.count } else { 0 };
        let window_ends_in = ((window + 1) * width).saturating_sub(now);
        let limit = quota.rate.count();
        if count < limit {
            Peek::admit(limit - count - 1, window_ends_in)
        } else {
            Peek::reject(window_ends_in)
        }
    }

    fn charge(&mut self, quota: &Quota, now: u64) {
        let window = (now / nanos_of(quota.rate.window())).max(self.window);
        if window != self.window {
            self.window = window;
            self.count = 0;
        }
        self.count += 1;
    }

    fn is_idle(&self, window_nanos: u64, now: u64) -> bool {
        now / window_nanos != self.window
    }
}
