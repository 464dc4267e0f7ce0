//! A busy worker gives the other threads waiting for its core a turn.
//!
//! Linux's fair scheduler does not always let a thread that wakes up take a
//! busy core at once: not when it has had more than its share lately, nor
//! before the running thread has used its slice. Such a thread is looked at
//! again at the next timer tick, and a kernel that ticks at 250 Hz (Debian's)
//! looks every 4 ms. A worker under load seldom runs out of work, so another
//! thread on its core (an upstream on the same host, a sidecar, a load
//! generator) can wait one or two ticks for it, and whatever that thread
//! answers or asks for waits as long: the gateway's p99 latency becomes the
//! scheduler's tick.
//!
//! So a worker calls `sched_yield` once [`yield_after`](crate::config::GatewayConfig::yield_after)
//! has passed since it last did, at the next look at the clock (one in
//! [`REQUESTS_PER_LOOK`] requests). The kernel then runs a thread that has
//! waited long enough, or returns at once when none waits: no cost beyond the
//! system call, at most once per `yield_after`, and only while requests come.
//! docs/benchmarks-gateway.md has what it does to the p99 and the requests per
//! second beside wrk on two cores.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// How many requests go by between two looks at the clock.
const REQUESTS_PER_LOOK: u32 = 8;

/// When a thread that serves requests gives others a turn.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Turns {
    /// How long the thread serves between two turns given; `None`: never gives one.
    after: Option<Duration>,
    /// Requests begun since the last look at the clock.
    requests: u32,
    /// When the current stretch began: at the first look after the last turn
    /// given (or ever).
    since: Option<Instant>,
}

impl Turns {
    /// A thread that gives others a turn every `after` (`None`: never).
    pub(crate) const fn new(after: Option<Duration>) -> Self {
        Self {
            after,
            requests: 0,
            since: None,
        }
    }

    /// A request begins; `now` reads the clock (called once in
    /// [`REQUESTS_PER_LOOK`] requests). True when the thread should give
    /// others a turn now; the next stretch begins at the next look.
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
    static TURNS: Cell<Turns> = const { Cell::new(Turns::new(None)) };
    /// Counts the turns this thread gave (`tollgate_worker_yields_total`).
    static GIVEN: RefCell<Option<Counter>> = const { RefCell::new(None) };
}

/// Makes this thread, a worker, give the threads waiting for its core a turn
/// every `after` while it serves (`None`: never), counting each in `given`.
/// Threads that do not call it never give one.
pub(crate) fn give_turns_on_this_thread(after: Option<Duration>, given: Counter) {
    TURNS.set(Turns::new(after));
    GIVEN.set(Some(given));
}

/// A request begins on this thread: gives others a turn when it is time.
pub(crate) fn request_started() {
    let mut turns = TURNS.get();
    let give = turns.request_started(Instant::now);
    TURNS.set(turns);
    if give {
        std::thread::yield_now();
        GIVEN.with_borrow(|given| given.as_ref().map(Counter::inc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `n` requests at `at`; true if any of them should give a turn.
    fn requests(turns: &mut Turns, n: u32, at: Instant) -> bool {
        (0..n).fold(false, |give, _| turns.request_started(|| at) || give)
    }

    #[test]
    fn a_serving_thread_gives_a_turn_once_per_stretch_then_starts_over() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut turns = Turns::new(Some(ms));
        assert!(
            !requests(&mut turns, REQUESTS_PER_LOOK, t0),
            "the stretch begins"
        );
        assert!(!requests(&mut turns, REQUESTS_PER_LOOK, t0 + ms / 2));
        assert!(
            requests(&mut turns, REQUESTS_PER_LOOK, t0 + ms),
            "1 ms of serving"
        );
        assert!(
            !requests(&mut turns, REQUESTS_PER_LOOK, t0 + ms + ms / 10),
            "a new stretch began after the turn given"
        );
        assert!(!requests(&mut turns, REQUESTS_PER_LOOK, t0 + 2 * ms));
        assert!(requests(&mut turns, REQUESTS_PER_LOOK, t0 + 3 * ms));
    }

    #[test]
    fn the_clock_is_read_once_in_so_many_requests_and_never_when_off() {
        let reads = Cell::new(0);
        let t0 = Instant::now();
        let mut on = Turns::new(Some(Duration::from_millis(1)));
        let mut off = Turns::new(None);
        for _ in 0..4 * REQUESTS_PER_LOOK {
            on.request_started(|| {
                reads.set(reads.get() + 1);
                t0
            });
            assert!(
                !off.request_started(|| panic!("a thread that never gives a turn reads no clock"))
            );
        }
        assert_eq!(reads.get(), 4);
    }
}
