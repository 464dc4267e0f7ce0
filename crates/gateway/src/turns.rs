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
//! So a worker that has held its core for [`yield_after`](crate::config::GatewayConfig::yield_after)
//! calls `sched_yield`. The kernel then runs a thread that has waited long
//! enough, or returns at once when none waits. A worker that was switched out
//! meanwhile (it slept, or was preempted) has let others run, and starts
//! over: turns are given only in the long stretches that make the tail, not
//! every `yield_after`, because each one costs a switch and some batching.
//! The worker looks at the clock once in [`REQUESTS_PER_LOOK`] requests, and
//! at how often the kernel put it on a core (`/proc/thread-self/schedstat`)
//! once per `yield_after` at most. docs/benchmarks-gateway.md has what it
//! does to the p99 and the requests per second beside wrk on two cores.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// How many requests go by between two looks at the clock.
const REQUESTS_PER_LOOK: u32 = 8;

/// When a thread that serves requests gives others a turn.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Turns {
    /// How long the thread may hold its core; `None`: as long as the kernel lets it.
    after: Option<Duration>,
    /// Requests begun since the last look at the clock.
    requests: u32,
    /// When the current stretch began: at the first look after the last turn
    /// given or taken (or ever).
    since: Option<Instant>,
}

impl Turns {
    /// A thread that gives others a turn after holding its core for `after`
    /// (`None`: never).
    pub(crate) const fn new(after: Option<Duration>) -> Self {
        Self {
            after,
            requests: 0,
            since: None,
        }
    }

    /// A request begins. `now` reads the clock (once in [`REQUESTS_PER_LOOK`]
    /// requests); `switched` says whether the thread was switched out since
    /// it was last asked (only once a stretch has lasted `after`). True when
    /// the thread should give others a turn now; the next stretch begins at
    /// the next look.
    pub(crate) fn request_started(
        &mut self,
        now: impl FnOnce() -> Instant,
        switched: impl FnOnce() -> bool,
    ) -> bool {
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
                if switched() {
                    // Others had the core in this stretch: a new one begins.
                    self.since = Some(now);
                    false
                } else {
                    self.since = None;
                    true
                }
            }
            Some(_) => false,
            None => {
                self.since = Some(now);
                false
            }
        }
    }
}

/// How many times the kernel has put this thread on a core, from
/// `/proc/thread-self/schedstat` (its third field), read through a file kept
/// open: one `pread` per reading.
struct Runs {
    schedstat: File,
    last: u64,
}

impl Runs {
    /// Opens the calling thread's own counter; `None` where there is none
    /// (no procfs, or a kernel without scheduler statistics).
    fn of_this_thread() -> Option<Self> {
        let schedstat = File::open("/proc/thread-self/schedstat").ok()?;
        let mut runs = Self { schedstat, last: 0 };
        runs.last = runs.read()?;
        Some(runs)
    }

    fn read(&self) -> Option<u64> {
        let mut buf = [0u8; 96];
        let n = self.schedstat.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        text.split_ascii_whitespace().nth(2)?.parse().ok()
    }

    /// Whether the thread was put on a core again (so was switched out)
    /// since the last call. False when the counter cannot be read: the thread
    /// then gives a turn after every `yield_after` of serving.
    fn switched(&mut self) -> bool {
        match self.read() {
            Some(runs) => std::mem::replace(&mut self.last, runs) != runs,
            None => false,
        }
    }
}

/// What a worker thread keeps besides [`Turns`]: its run counter and the
/// metric of turns given.
struct Worker {
    runs: Option<Runs>,
    given: Counter,
}

thread_local! {
    static TURNS: Cell<Turns> = const { Cell::new(Turns::new(None)) };
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Makes this thread, a worker, give the threads waiting for its core a turn
/// after holding it for `after` (`None`: never), counting each in `given`.
/// Threads that do not call it never give one.
pub(crate) fn give_turns_on_this_thread(after: Option<Duration>, given: Counter) {
    TURNS.set(Turns::new(after));
    let runs = after.and_then(|_| Runs::of_this_thread());
    if after.is_some() && runs.is_none() {
        tracing::debug!(
            "no run count in /proc/thread-self/schedstat: this worker gives a turn every yield_after, switched out meanwhile or not"
        );
    }
    WORKER.set(Some(Worker { runs, given }));
}

/// A request begins on this thread: gives others a turn when it is time.
pub(crate) fn request_started() {
    let mut turns = TURNS.get();
    let give = turns.request_started(Instant::now, || {
        WORKER.with_borrow_mut(|worker| {
            worker
                .as_mut()
                .and_then(|w| w.runs.as_mut())
                .is_some_and(Runs::switched)
        })
    });
    TURNS.set(turns);
    if give {
        std::thread::yield_now();
        WORKER.with_borrow_mut(|worker| {
            if let Some(worker) = worker {
                worker.given.inc();
                // The turn just given is not a switch of the next stretch.
                if let Some(runs) = worker.runs.as_mut() {
                    runs.switched();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `n` requests at `at`, the thread switched out meanwhile or not;
    /// true if any of them should give a turn.
    fn requests(turns: &mut Turns, n: u32, at: Instant, switched: bool) -> bool {
        (0..n).fold(false, |give, _| {
            turns.request_started(|| at, || switched) || give
        })
    }

    #[test]
    fn a_thread_that_held_its_core_for_the_stretch_gives_a_turn_then_starts_over() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut turns = Turns::new(Some(ms));
        let n = REQUESTS_PER_LOOK;
        assert!(!requests(&mut turns, n, t0, false), "the stretch begins");
        assert!(!requests(&mut turns, n, t0 + ms / 2, false));
        assert!(requests(&mut turns, n, t0 + ms, false), "1 ms on the core");
        assert!(
            !requests(&mut turns, n, t0 + ms + ms / 10, false),
            "a new stretch began after the turn given"
        );
        assert!(!requests(&mut turns, n, t0 + 2 * ms, false));
        assert!(requests(&mut turns, n, t0 + 3 * ms, false));
    }

    #[test]
    fn a_thread_switched_out_meanwhile_starts_over_instead() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut turns = Turns::new(Some(ms));
        let n = REQUESTS_PER_LOOK;
        requests(&mut turns, n, t0, false);
        assert!(
            !requests(&mut turns, n, t0 + ms, true),
            "others had the core in this stretch"
        );
        assert!(!requests(&mut turns, n, t0 + ms + ms / 2, false));
        assert!(
            requests(&mut turns, n, t0 + 2 * ms, false),
            "1 ms on the core since"
        );
    }

    #[test]
    fn the_clock_is_read_once_in_so_many_requests_and_never_when_off() {
        let reads = Cell::new(0);
        let t0 = Instant::now();
        let mut on = Turns::new(Some(Duration::from_millis(1)));
        let mut off = Turns::new(None);
        for _ in 0..4 * REQUESTS_PER_LOOK {
            on.request_started(
                || {
                    reads.set(reads.get() + 1);
                    t0
                },
                || panic!("a stretch shorter than 1 ms asks nothing more"),
            );
            assert!(!off.request_started(
                || panic!("a thread that never gives a turn reads no clock"),
                || panic!("nor its runs"),
            ));
        }
        assert_eq!(reads.get(), 4);
    }

    #[test]
    fn a_worker_thread_that_keeps_its_core_gives_turns_and_counts_them() {
        let busy = |after: Option<Duration>, until: Duration| {
            let given = Counter::default();
            let counted = given.clone();
            std::thread::spawn(move || {
                give_turns_on_this_thread(after, counted.clone());
                // Requests that cost nothing: the thread holds its core until
                // the kernel takes it away, and gives a turn at the first
                // millisecond it kept whole.
                let deadline = Instant::now() + until;
                while counted.get() == 0 && Instant::now() < deadline {
                    request_started();
                }
            })
            .join()
            .unwrap();
            given.get()
        };
        assert!(busy(Some(Duration::from_millis(1)), Duration::from_secs(10)) >= 1);
        assert_eq!(
            busy(None, Duration::from_millis(20)),
            0,
            "yield_after = \"off\""
        );
    }

    #[test]
    fn a_thread_reads_how_often_it_was_put_on_a_core() {
        if !std::path::Path::new("/proc/self/schedstat").exists() {
            eprintln!("no scheduler statistics in /proc here: nothing to read");
            return;
        }
        let mut runs = Runs::of_this_thread().expect("this thread's run count is readable");
        let before = runs.last;
        // Sleeping takes this thread off its core; waking puts it back.
        std::thread::sleep(Duration::from_millis(1));
        assert!(runs.switched(), "slept and woke: switched");
        assert!(runs.last > before);
    }
}
