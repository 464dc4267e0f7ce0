//! A busy worker gives the other threads waiting for its core a turn.
//!
//! Linux's fair scheduler lets a thread that wakes up take the core at once
//! only while it has had less than its share of it; otherwise the thread waits
//! until the kernel looks again, at the next timer tick. Kernels built to tick
//! at 250 Hz and not to preempt in the kernel (Debian's default) look every
//! 4 ms. A worker under load seldom runs out of work, so another thread on its
//! core (an upstream on the same host, a sidecar, a load generator) can wait
//! one or two ticks for it, and whatever that thread answers or asks for waits
//! as long: the gateway's p99 latency becomes the scheduler's tick.
//!
//! So a worker that has served requests for [`yield_after`] without running out
//! of work calls `sched_yield`. The kernel then runs a thread that has waited
//! long enough, or returns at once when none waits (no cost beyond the system
//! call). Measured beside wrk on two cores, this cut the p99 of the 429 path to
//! about a third, for a few per cent of requests per second
//! (docs/benchmarks-gateway.md).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How many requests go by between two looks at the clock.
const REQUESTS_PER_LOOK: u32 = 8;

/// When a thread that serves requests should give others a turn.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stretch {
    /// How long the thread may serve without a rest; `None`: as long as it has work.
    after: Option<Duration>,
    /// Requests begun since the last look at the clock.
    requests: u32,
    /// When the stretch began: at the first look after the thread's last rest
    /// or turn given.
    since: Option<Instant>,
}

impl Stretch {
    /// A thread that yields after `after` of serving without a rest.
    pub(crate) const fn new(after: Option<Duration>) -> Self {
        Self {
            after,
            requests: 0,
            since: None,
        }
    }

    /// The thread ran out of work and slept: others had the core meanwhile.
    pub(crate) fn rested(&mut self) {
        self.since = None;
    }

    /// A request begins; `now` reads the clock (called once in
    /// [`REQUESTS_PER_LOOK`] requests). True when the thread should give
    /// others a turn now; the next stretch then begins with the next look.
    pub(crate) fn request_started(&mut self, now: impl FnOnce() -> Instant) -> bool {
        let Some(after) = self.after else {
            return false;
        };
        self.requests += 1;
        if self.requests < REQUESTS_PER_LOOK {
            return false;
        }
        self.requests = 0;
        let now = now();
        match self.since {
            Some(since) if now.saturating_duration_since(since) >= after => {
                self.since = None;
                true
            }
            Some(_) => false,
            None => {
                self.since = Some(now);
                false
            }
        }
    }
}

thread_local! {
    static STRETCH: Cell<Stretch> = const { Cell::new(Stretch::new(None)) };
}

/// Makes this thread, a worker, give others a turn after serving for `after`
/// without a rest (`None`: never). Threads that do not call it never yield.
pub(crate) fn yield_after(after: Option<Duration>) {
    STRETCH.set(Stretch::new(after));
}

/// This thread ran out of work and slept (its runtime's unpark hook).
pub(crate) fn rested() {
    let mut stretch = STRETCH.get();
    stretch.rested();
    STRETCH.set(stretch);
}

/// A request begins on this thread: gives others a turn when it is time.
pub(crate) fn request_started() {
    let mut stretch = STRETCH.get();
    if stretch.request_started(Instant::now) {
        std::thread::yield_now();
    }
    STRETCH.set(stretch);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `n` requests at `at`; true if any of them should yield.
    fn requests(stretch: &mut Stretch, n: u32, at: Instant) -> bool {
        (0..n).fold(false, |yielded, _| {
            stretch.request_started(|| at) || yielded
        })
    }

    #[test]
    fn a_worker_busy_for_the_whole_stretch_yields_once_then_starts_over() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut stretch = Stretch::new(Some(ms));
        assert!(
            !requests(&mut stretch, REQUESTS_PER_LOOK, t0),
            "the stretch begins"
        );
        assert!(!requests(&mut stretch, REQUESTS_PER_LOOK, t0 + ms / 2));
        assert!(
            requests(&mut stretch, REQUESTS_PER_LOOK, t0 + ms),
            "1 ms of serving"
        );
        assert!(
            !requests(&mut stretch, REQUESTS_PER_LOOK, t0 + ms + ms / 2),
            "a new stretch began after the turn given"
        );
        assert!(requests(&mut stretch, REQUESTS_PER_LOOK, t0 + 3 * ms));
    }

    #[test]
    fn a_rest_starts_the_stretch_over() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut stretch = Stretch::new(Some(ms));
        requests(&mut stretch, REQUESTS_PER_LOOK, t0);
        stretch.rested();
        assert!(
            !requests(&mut stretch, REQUESTS_PER_LOOK, t0 + 2 * ms),
            "the thread slept: others had the core"
        );
        assert!(requests(&mut stretch, REQUESTS_PER_LOOK, t0 + 3 * ms));
    }

    #[test]
    fn the_clock_is_read_once_in_so_many_requests_and_never_when_off() {
        let reads = Cell::new(0);
        let t0 = Instant::now();
        let mut on = Stretch::new(Some(Duration::from_millis(1)));
        let mut off = Stretch::new(None);
        for _ in 0..4 * REQUESTS_PER_LOOK {
            on.request_started(|| {
                reads.set(reads.get() + 1);
                t0
            });
            assert!(!off.request_started(|| panic!("a worker that never yields reads no clock")));
        }
        assert_eq!(reads.get(), 4);
    }
}
