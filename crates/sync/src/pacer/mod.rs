//! Pacing: requests to one source go out evenly spaced, inside every limit of
//! its budget, and all of them stop at a `429` until its retry instant.
//!
//! The pacer is shared by all the workers of a source. Each request names the
//! limits it counts against (the key's budget, and an endpoint's limit if it has
//! one); [`Pacer::acquire`] waits until every one of them has a slot and the
//! even spacing allows it, and [`Pacer::complete`] records the answer: the slot
//! returns one window after the answer arrived, announced limits are adopted,
//! and a `429` pauses every request of the source — a strict provider counts any
//! request that arrives before the retry instant as part of an attack, so
//! pausing only the worker that got it is not enough.

mod headers;
mod slots;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tollgate_core::{Clock, Rate, Timestamp};

pub use headers::Advice;
pub use slots::SlotLog;

/// The wait after a `429` that gives no `Retry-After`: a full minute, as the
/// seeds' provider asks.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Which limits of the pacer a request counts against (indexes from
/// [`Pacer::add_limit`]).
pub type Limits = Vec<usize>;

/// A taken slot; give it back with [`Pacer::complete`].
#[derive(Debug)]
#[must_use = "a permit must be completed, or its slots stay in use"]
pub struct Permit {
    limits: Limits,
    /// When the request was allowed out.
    pub sent_at: Timestamp,
}

/// What happened to a paced request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Any HTTP answer but `429`.
    Status(u16),
    /// No answer (timeout, connection error): the provider may still have
    /// counted it.
    Failed,
}

struct State {
    logs: Vec<SlotLog>,
    /// The key's budget limits (the first `key_limits` logs) may be replaced by
    /// what the provider announces.
    key_limits: usize,
    /// Whether announced limits replace the configured ones (`discover`).
    learn: bool,
    /// Every `429`: when it came and the instant it named.
    rejections: Vec<(Timestamp, Timestamp)>,
}

/// The pacer of one source (one API key).
pub struct Pacer {
    state: Mutex<State>,
    /// Wakes waiting workers when an answer frees a slot.
    freed: Notify,
    clock: Arc<dyn Clock>,
}

impl Pacer {
    /// A pacer for a key whose budget is `limits` (e.g. `50/60s`); with
    /// `learn`, limits the provider announces replace them.
    pub fn new(limits: &[Rate], learn: bool, clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::new(State {
                logs: limits.iter().copied().map(SlotLog::new).collect(),
                key_limits: limits.len(),
                learn,
                rejections: Vec::new(),
            }),
            freed: Notify::new(),
            clock,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a limit some requests count against (an endpoint's `20/s`); returns
    /// its index.
    pub fn add_limit(&self, rate: Rate) -> usize {
        let mut state = self.state();
        state.logs.push(SlotLog::new(rate));
        state.logs.len() - 1
    }

    /// The key's budget: the limits every request counts against.
    pub fn key_limits(&self) -> Limits {
        (0..self.state().key_limits).collect()
    }

    /// The key's budget as currently known.
    pub fn budget(&self) -> Vec<Rate> {
        let state = self.state();
        state.logs[..state.key_limits]
            .iter()
            .map(SlotLog::rate)
            .collect()
    }

    /// Waits until a request counting against `limits` (plus the key's budget)
    /// may go out, and takes its slots.
    pub async fn acquire(&self, extra: &[usize]) -> Permit {
        loop {
            let freed = self.freed.notified();
            let wait = {
                let mut state = self.state();
                let limits: Limits = (0..state.key_limits).chain(extra.iter().copied()).collect();
                let now = self.clock.now();
                let ready = limits
                    .iter()
                    .map(|i| state.logs[*i].ready_at(now))
                    .try_fold(now, |latest, at| at.map(|at| latest.max(at)));
                match ready {
                    Some(at) if at <= now => {
                        for i in &limits {
                            state.logs[*i].acquire(now);
                        }
                        return Permit {
                            limits,
                            sent_at: now,
                        };
                    }
                    Some(at) => Some(at.saturating_since(now)),
                    None => None,
                }
            };
            match wait {
                Some(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = freed => {}
                    }
                }
                None => freed.await,
            }
        }
    }

    /// Records the answer to a paced request. A `429` pauses every request of
    /// the source until its retry instant (60 s when it names none); returns
    /// that instant.
    pub fn complete(&self, permit: Permit, answer: Answer, advice: &Advice) -> Option<Timestamp> {
        let now = self.clock.now();
        let mut state = self.state();
        for i in &permit.limits {
            state.logs[*i].complete(now);
        }
        if state.learn && !advice.limits.is_empty() {
            let key_limits = state.key_limits;
            let learned: Vec<Rate> = advice.limits.clone();
            for (log, rate) in state.logs[..key_limits].iter_mut().zip(&learned) {
                log.learn(*rate);
            }
            for rate in learned.iter().skip(key_limits) {
                let at = state.key_limits;
                state.logs.insert(at, SlotLog::new(*rate));
                state.key_limits += 1;
            }
        }
        let paused = if answer == Answer::Status(429) {
            let until = now + advice.retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
            for log in &mut state.logs {
                log.pause_until(until);
            }
            state.rejections.push((now, until));
            Some(until)
        } else {
            None
        };
        drop(state);
        self.freed.notify_waiters();
        paused
    }

    /// Every `429` so far: when it arrived, and the instant it named.
    pub fn rejections(&self) -> Vec<(Timestamp, Timestamp)> {
        self.state().rejections.clone()
    }

    /// The instant requests are paused until, if they are.
    pub fn paused_until(&self) -> Option<Timestamp> {
        let now = self.clock.now();
        self.state().logs.iter().filter_map(|l| l.paused(now)).max()
    }
}
