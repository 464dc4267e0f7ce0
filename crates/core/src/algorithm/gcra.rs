//! The generic cell rate algorithm: a theoretical arrival time per key.

use super::{LimitState, Peek, div_ceil};
use crate::clock::nanos_of;
use crate::quota::{Algorithm, Quota};

/// The theoretical arrival time: when the bucket would be empty again.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Gcra {
    tat: u64,
}

/// The emission interval `T = W / count` (rounded up to the nanosecond, so the
/// rate is never exceeded) and the burst.
pub fn interval_and_burst(quota: &Quota) -> (u64, u64) {
    let interval = div_ceil(nanos_of(quota.rate.window()), u64::from(quota.rate.count()));
    let burst = match quota.algorithm {
        Algorithm::Gcra { burst } => u64::from(burst.max(1)),
        _ => 1,
    };
    (interval, burst)
}

impl LimitState for Gcra {
    fn fresh(_: &Quota) -> Self {
        Self::default()
    }

    fn peek(&mut self, quota: &Quota, now: u64) -> Peek {
        let (interval, burst) = interval_and_burst(quota);
        let tat = self.tat.max(now);
        let tolerance = (burst - 1) * interval;
        if tat - now > tolerance {
            return Peek::reject(tat - tolerance - now);
        }
        let next_tat = tat + interval;
        let remaining = (now + burst * interval - next_tat) / interval;
        let reset_after = next_tat - (burst - remaining - 1) * interval - now;
        Peek::admit(u32::try_from(remaining).unwrap_or(u32::MAX), reset_after)
    }

    fn charge(&mut self, quota: &Quota, now: u64) {
        let (interval, _) = interval_and_burst(quota);
        self.tat = self.tat.max(now) + interval;
    }

    fn is_idle(&self, _: u64, now: u64) -> bool {
        self.tat <= now
    }
}
