//! The four ways to enforce a [`Rate`](crate::Rate), each as a small state value
//! that decides and records, with the time passed in.
//!
//! A state answers two questions separately — would one more request be admitted
//! (`LimitState::peek`), and record that it was (`LimitState::charge`) — so the
//! store can ask every limit a request matches before charging any of them.

mod fixed;
pub mod gcra;
pub mod rolling;
mod sliding_counter;

pub(crate) use fixed::FixedWindow;
pub(crate) use gcra::Gcra;
pub(crate) use rolling::RollingLog;
pub(crate) use sliding_counter::SlidingCounter;

use std::time::Duration;

use crate::quota::Quota;

/// What one limit says about one request, before anything is charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peek {
    /// Whether this limit admits the request.
    pub admitted: bool,
    /// Requests left after this one if admitted; 0 when rejected.
    pub remaining: u32,
    /// When rejected: how long until this limit would admit it.
    pub retry_after: Duration,
    /// How long until the next used slot returns, counting this request if admitted.
    pub reset_after: Duration,
}

impl Peek {
    pub(crate) fn admit(remaining: u32, reset_after_nanos: u64) -> Self {
        Self {
            admitted: true,
            remaining,
            retry_after: Duration::ZERO,
            reset_after: Duration::from_nanos(reset_after_nanos),
        }
    }

    pub(crate) fn reject(retry_after_nanos: u64) -> Self {
        let wait = Duration::from_nanos(retry_after_nanos);
        Self {
            admitted: false,
            remaining: 0,
            retry_after: wait,
            reset_after: wait,
        }
    }
}

/// The state one limit keeps for one key.
pub(crate) trait LimitState: Sized {
    /// The state of a key with no history.
    fn fresh(quota: &Quota) -> Self;
    /// Whether one more request at `now` (nanoseconds) would be admitted.
    /// May drop history that no longer matters; never changes the outcome of
    /// later decisions.
    fn peek(&mut self, quota: &Quota, now: u64) -> Peek;
    /// Records a request at `now` that every limit admitted.
    fn charge(&mut self, quota: &Quota, now: u64);
    /// True when the state remembers nothing that affects a future decision, so
    /// the key can be forgotten.
    fn is_idle(&self, window_nanos: u64, now: u64) -> bool;
}

/// `a / b` rounded up.
pub(crate) const fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}
