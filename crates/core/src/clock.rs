//! Time as a parameter.
//!
//! Every decision in this crate takes the current instant as an argument, so the
//! algorithms can be tested with a [`ManualClock`] that never sleeps, and so that an
//! external store (Redis) can bring its own time. [`SystemClock`] is what
//! production code passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant, in nanoseconds since the Unix epoch.
///
/// Wall-clock based (not process-relative) so that several processes sharing one
/// budget, and a store that keeps time itself, agree on what "now" means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// An instant from nanoseconds since the Unix epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// An instant from milliseconds since the Unix epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis * 1_000_000)
    }

    /// An instant from whole seconds since the Unix epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs * 1_000_000_000)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch (truncated).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos_of(rhs)))
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(nanos_of(rhs)))
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
///
/// In `u64` arithmetic, not through `Duration::as_nanos`'s `u128`: every
/// decision converts its quota's window.
pub(crate) fn nanos_of(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// A source of the current instant.
///
/// Implementations must be cheap: the store asks once per decision.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The system's wall clock, made monotonic.
///
/// Reads the wall clock once, then advances with the monotonic clock, so that a
/// wall-clock step (NTP, a VM resume) can never move a slot log backwards and
/// return slots early.
#[derive(Clone, Debug)]
pub struct SystemClock {
    wall_at_start: Timestamp,
    mono_at_start: std::time::Instant,
}

impl SystemClock {
    /// A clock anchored at the current wall-clock time.
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self {
            wall_at_start: Timestamp::from_nanos(nanos_of(wall)),
            mono_at_start: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        self.wall_at_start + self.mono_at_start.elapsed()
    }
}

/// A clock that moves only when told to: for tests and simulations.
///
/// Cloning shares the time, so a test can hold one handle and give another to the
/// code under test.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_secs(100));
/// let shared = clock.clone();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(shared.now(), Timestamp::from_millis(101_500));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `start` until advanced.
    pub fn new(start: Timestamp) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(start.as_nanos())),
        }
    }

    /// The instant it reads (also through [`Clock::now`]; inherent so tests need
    /// not import the trait).
    pub fn now(&self) -> Timestamp {
        Timestamp::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(nanos_of(by), Ordering::SeqCst);
    }

    /// Sets the clock to `to`; it may move backwards, to test that nothing breaks.
    pub fn set(&self, to: Timestamp) {
        self.nanos.store(to.as_nanos(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        ManualClock::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_of_agrees_with_as_nanos_and_saturates() {
        let largest = Duration::new(u64::MAX / 1_000_000_000, (u64::MAX % 1_000_000_000) as u32);
        for d in [
            Duration::ZERO,
            Duration::from_millis(1_500),
            Duration::from_secs(60),
            largest,
        ] {
            assert_eq!(u128::from(nanos_of(d)), d.as_nanos(), "{d:?}");
        }
        assert_eq!(nanos_of(largest + Duration::from_nanos(1)), u64::MAX);
        assert_eq!(nanos_of(Duration::MAX), u64::MAX);
    }
}
