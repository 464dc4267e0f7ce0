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
//!
//! [`Pacer::acquire_with`] names a [`Priority`]: while an urgent or normal
//! submission of the outbox waits, no import takes a slot, so a submission gets
//! the next slot the budget gives. Priority decides only who goes; when the
//! next slot is free is the same for everyone.

mod headers;
mod shared;
mod slots;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tollgate_core::{Clock, Rate, Timestamp};
use tollgate_redis::SharedSlots;

use shared::Shared;

pub use headers::Advice;
pub use slots::SlotLog;

/// The wait after a `429` that gives no `Retry-After`: a full minute, as the
/// seeds' provider asks.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Which endpoint limits of the pacer a request counts against besides the
/// key's budget (indexes from [`Pacer::add_limit`]).
pub type Limits = Vec<usize>;

/// Who gets the next slot when several wait: every waiting request of a
/// higher priority goes before any of a lower one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// An urgent submission: before everything else.
    Urgent,
    /// A normal submission: before the imports.
    Normal,
    /// The imports (and bulk submissions, which go along with them).
    #[default]
    Import,
}

impl Priority {
    fn rank(self) -> usize {
        self as usize
    }
}

/// Counts a request as waiting for a slot while it lives; wakes the other
/// waiters when it stops waiting, since a lower priority may go now.
struct Waiting<'a> {
    pacer: &'a Pacer,
    rank: usize,
}

impl<'a> Waiting<'a> {
    fn new(pacer: &'a Pacer, priority: Priority) -> Self {
        let rank = priority.rank();
        pacer.state().waiting[rank] += 1;
        Self { pacer, rank }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pacer.state().waiting[self.rank] -= 1;
        self.pacer.freed.notify_waiters();
    }
}

/// A taken slot; give it back with [`Pacer::complete`].
#[derive(Debug)]
#[must_use = "a permit must be completed, or its slots stay in use"]
pub struct Permit {
    /// How many of the key's budget limits it took a slot of.
    key_limits: usize,
    endpoints: Limits,
    /// Names the request in the shared budget and the storage layer.
    pub id: u64,
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

/// A request a previous process sent, for [`Pacer::restore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastRequest {
    /// The endpoint limit it also counted against, by name.
    pub endpoint: Option<String>,
    /// When it went out.
    pub sent_at: Timestamp,
    /// When its answer arrived (or its process stopped).
    pub answered_at: Timestamp,
}

struct State {
    /// The key's budget: every request counts against each. New limits the
    /// provider announces are pushed at the end, so indexes never move.
    key_logs: Vec<SlotLog>,
    /// Endpoints' own limits, by name.
    endpoint_logs: Vec<(String, SlotLog)>,
    /// Whether announced limits replace the configured ones (`discover`).
    learn: bool,
    /// Every `429`: when it came and the instant it named.
    rejections: Vec<(Timestamp, Timestamp)>,
    /// Requests waiting for a slot, by [`Priority`] rank.
    waiting: [usize; 3],
}

/// The pacer of one source (one API key).
pub struct Pacer {
    state: Mutex<State>,
    /// Wakes waiting workers when an answer frees a slot.
    freed: Notify,
    clock: Arc<dyn Clock>,
    /// The budget shared with other processes on the same key, if any.
    shared: OnceLock<Shared>,
}

impl Pacer {
    /// A pacer for a key whose budget is `limits` (e.g. `50/60s`); with
    /// `learn`, limits the provider announces replace them.
    pub fn new(limits: &[Rate], learn: bool, clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::new(State {
                key_logs: limits.iter().copied().map(SlotLog::new).collect(),
                endpoint_logs: Vec::new(),
                learn,
                rejections: Vec::new(),
                waiting: [0; 3],
            }),
            freed: Notify::new(),
            clock,
            shared: OnceLock::new(),
        }
    }

    /// Shares the budget with every other process that uses the same
    /// `slots` (the same Redis budget): a request goes out only when both this
    /// process's slots and the shared ones allow it, and a `429` pauses all of
    /// them. `timeout` is the longest an answer can take: a request whose
    /// process dies in flight frees its shared slot a window after that.
    /// Call it before the first request; a second call changes nothing.
    pub fn share(&self, slots: SharedSlots, timeout: Duration) {
        let _ = self.shared.set(Shared { slots, timeout });
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds the limit of endpoint `name` (an endpoint's `20/s`) that some
    /// requests count against; returns its index.
    pub fn add_limit(&self, name: &str, rate: Rate) -> usize {
        let mut state = self.state();
        state
            .endpoint_logs
            .push((name.to_owned(), SlotLog::new(rate)));
        state.endpoint_logs.len() - 1
    }

    /// The key's budget as currently known.
    pub fn budget(&self) -> Vec<Rate> {
        self.state().key_logs.iter().map(SlotLog::rate).collect()
    }

    /// The name of endpoint limit `index`.
    pub fn endpoint_name(&self, index: usize) -> Option<String> {
        self.state()
            .endpoint_logs
            .get(index)
            .map(|(name, _)| name.clone())
    }

    /// Takes back what a previous process on this key sent, so a restart does
    /// not spend the budget again inside the provider's window, and pauses
    /// until `paused_until` (the retry instant of its last `429`).
    pub fn restore(&self, past: &[PastRequest], paused_until: Option<Timestamp>) {
        let mut state = self.state();
        let State {
            key_logs,
            endpoint_logs,
            ..
        } = &mut *state;
        for request in past {
            for log in key_logs.iter_mut() {
                log.restore(request.sent_at, request.answered_at);
            }
            if let Some((_, log)) = endpoint_logs
                .iter_mut()
                .find(|(name, _)| Some(name) == request.endpoint.as_ref())
            {
                log.restore(request.sent_at, request.answered_at);
            }
        }
        if let Some(until) = paused_until {
            for log in key_logs
                .iter_mut()
                .chain(endpoint_logs.iter_mut().map(|(_, l)| l))
            {
                log.pause_until(until);
            }
        }
    }

    /// Waits until a request counting against `endpoints` (plus the key's
    /// budget) may go out, and takes its slots — here and, when the budget is
    /// shared, in Redis. An import: [`Priority::Import`].
    pub async fn acquire(&self, endpoints: &[usize]) -> Permit {
        self.acquire_with(endpoints, Priority::Import).await
    }

    /// [`acquire`](Self::acquire) with a priority: the slot goes to this
    /// request only when no request of a higher priority waits for one.
    pub async fn acquire_with(&self, endpoints: &[usize], priority: Priority) -> Permit {
        let permit = self.acquire_local(endpoints, priority).await;
        if let Some(shared) = self.shared.get() {
            shared.take(self, &permit).await;
        }
        permit
    }

    async fn acquire_local(&self, endpoints: &[usize], priority: Priority) -> Permit {
        let _waiting = Waiting::new(self, priority);
        loop {
            let freed = self.freed.notified();
            let wait = {
                let mut state = self.state();
                let now = self.clock.now();
                // A higher priority waits: it takes the next slot, and this
                // request looks again when it has (its `Waiting` wakes us).
                let outranked = state.waiting[..priority.rank()].iter().any(|n| *n > 0);
                let State {
                    key_logs,
                    endpoint_logs,
                    ..
                } = &mut *state;
                let ready = key_logs
                    .iter_mut()
                    .chain(
                        endpoint_logs
                            .iter_mut()
                            .enumerate()
                            .filter(|(i, _)| endpoints.contains(i))
                            .map(|(_, (_, log))| log),
                    )
                    .map(|log| log.ready_at(now))
                    .try_fold(now, |latest, at| at.map(|at| latest.max(at)));
                match ready {
                    _ if outranked => None,
                    Some(at) if at <= now => {
                        for log in key_logs.iter_mut() {
                            log.acquire(now);
                        }
                        for i in endpoints {
                            endpoint_logs[*i].1.acquire(now);
                        }
                        return Permit {
                            key_limits: key_logs.len(),
                            endpoints: endpoints.to_vec(),
                            id: rand::random(),
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
    /// the source (of every process, when the budget is shared) until its
    /// retry instant (60 s when it names none); returns that instant.
    pub async fn complete(
        &self,
        permit: Permit,
        answer: Answer,
        advice: &Advice,
    ) -> Option<Timestamp> {
        let paused = self.complete_local(&permit, answer, advice);
        if let Some(shared) = self.shared.get() {
            shared
                .done(self, &permit, paused.is_some().then(|| retry_after(advice)))
                .await;
        }
        paused
    }

    fn complete_local(
        &self,
        permit: &Permit,
        answer: Answer,
        advice: &Advice,
    ) -> Option<Timestamp> {
        let now = self.clock.now();
        let mut state = self.state();
        for log in state.key_logs.iter_mut().take(permit.key_limits) {
            log.complete(now);
        }
        for i in &permit.endpoints {
            state.endpoint_logs[*i].1.complete(now);
        }
        if state.learn && !advice.limits.is_empty() {
            let learned = &advice.limits;
            for (log, rate) in state.key_logs.iter_mut().zip(learned) {
                log.learn(*rate);
            }
            let known = state.key_logs.len();
            for rate in learned.iter().skip(known) {
                state.key_logs.push(SlotLog::new(*rate));
            }
        } else {
            // Configured limits only ever tighten: a provider that announces
            // fewer requests for a window than the configuration says is
            // right about its own budget (a plan changed, a limit lowered);
            // one that announces more is not taken at its word.
            for announced in &advice.limits {
                for log in &mut state.key_logs {
                    let configured = log.rate();
                    if announced.window() == configured.window()
                        && announced.count() < configured.count()
                    {
                        tracing::warn!(%configured, %announced, "the provider announces a tighter limit than configured; keeping to it");
                        log.learn(*announced);
                    }
                }
            }
        }
        let paused = if answer == Answer::Status(429) {
            let until = now + retry_after(advice);
            let State {
                key_logs,
                endpoint_logs,
                rejections,
                ..
            } = &mut *state;
            for log in key_logs
                .iter_mut()
                .chain(endpoint_logs.iter_mut().map(|(_, l)| l))
            {
                log.pause_until(until);
            }
            rejections.push((now, until));
            Some(until)
        } else {
            None
        };
        drop(state);
        self.freed.notify_waiters();
        paused
    }

    /// The limits a permit holds, labelled as every process labels them.
    fn labelled(&self, permit: &Permit) -> Vec<(String, Rate)> {
        let state = self.state();
        let key = state
            .key_logs
            .iter()
            .take(permit.key_limits)
            .enumerate()
            .map(|(i, log)| (format!("budget.{i}"), log.rate()));
        let endpoints = permit.endpoints.iter().map(|i| {
            let (name, log) = &state.endpoint_logs[*i];
            (format!("endpoint.{name}"), log.rate())
        });
        key.chain(endpoints).collect()
    }

    /// Every `429` so far: when it arrived, and the instant it named.
    pub fn rejections(&self) -> Vec<(Timestamp, Timestamp)> {
        self.state().rejections.clone()
    }

    /// The instant requests are paused until, if they are.
    pub fn paused_until(&self) -> Option<Timestamp> {
        let now = self.clock.now();
        let state = self.state();
        state
            .key_logs
            .iter()
            .chain(state.endpoint_logs.iter().map(|(_, l)| l))
            .filter_map(|l| l.paused(now))
            .max()
    }
}

fn retry_after(advice: &Advice) -> Duration {
    advice.retry_after.unwrap_or(DEFAULT_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tollgate_core::{ManualClock, Rate, Timestamp};

    use super::*;

    /// Lets the spawned waiters run until each waits.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// Two slots a second, one in use: an import and then an urgent
    /// submission wait for the second; the submission gets it, and the
    /// import goes only after it, at the next slot the budget allows.
    #[tokio::test(flavor = "current_thread")]
    async fn a_waiting_submission_takes_the_next_slot_before_a_waiting_import() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
        let pacer = Arc::new(Pacer::new(
            &[Rate::new(2, Duration::from_secs(1))],
            false,
            clock.clone(),
        ));
        let first = pacer.acquire(&[]).await;
        let (order, log) = (
            Arc::new(Mutex::new(Vec::new())),
            |p: &Arc<Pacer>, o: &Arc<Mutex<Vec<&'static str>>>, name, priority| {
                let (p, o) = (Arc::clone(p), Arc::clone(o));
                tokio::spawn(async move {
                    let permit = p.acquire_with(&[], priority).await;
                    o.lock().unwrap().push(name);
                    permit
                })
            },
        );
        let import = log(&pacer, &order, "import", Priority::Import);
        settle().await;
        let normal = log(&pacer, &order, "normal", Priority::Normal);
        settle().await;
        let urgent = log(&pacer, &order, "urgent", Priority::Urgent);
        settle().await;
        assert_eq!(pacer.state().waiting, [1, 1, 1]);
        assert!(
            order.lock().unwrap().is_empty(),
            "the spacing holds everyone"
        );
        // Half a second on (W/N), an answer wakes every waiter: one slot is free.
        clock.advance(Duration::from_millis(500));
        pacer
            .complete(first, Answer::Status(201), &Advice::default())
            .await;
        settle().await;
        assert_eq!(
            *order.lock().unwrap(),
            ["urgent"],
            "the slot rules hold: one slot"
        );
        // The budget is full until the first slot returns a window after its
        // answer; then the normal submission, then the import, each W/N apart.
        clock.advance(Duration::from_millis(1_000));
        let urgent = urgent.await.unwrap();
        pacer
            .complete(urgent, Answer::Status(201), &Advice::default())
            .await;
        settle().await;
        assert_eq!(*order.lock().unwrap(), ["urgent", "normal"]);
        assert_eq!(pacer.state().waiting, [0, 0, 1]);
        clock.advance(Duration::from_millis(1_000));
        pacer
            .complete(
                normal.await.unwrap(),
                Answer::Status(201),
                &Advice::default(),
            )
            .await;
        settle().await;
        assert_eq!(*order.lock().unwrap(), ["urgent", "normal", "import"]);
        drop(import.await.unwrap());
    }

    /// A waiter that gives up (its task is dropped) stops outranking anyone.
    #[tokio::test(flavor = "current_thread")]
    async fn a_submission_that_stops_waiting_lets_the_imports_go() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
        let pacer = Arc::new(Pacer::new(
            &[Rate::new(1, Duration::from_secs(1))],
            false,
            clock.clone(),
        ));
        let first = pacer.acquire(&[]).await;
        let p = Arc::clone(&pacer);
        let urgent = tokio::spawn(async move { p.acquire_with(&[], Priority::Urgent).await });
        settle().await;
        let p = Arc::clone(&pacer);
        let import = tokio::spawn(async move { p.acquire(&[]).await });
        settle().await;
        urgent.abort();
        let _ = urgent.await;
        assert_eq!(pacer.state().waiting, [0, 0, 1]);
        clock.advance(Duration::from_millis(2_000));
        pacer
            .complete(first, Answer::Status(200), &Advice::default())
            .await;
        clock.advance(Duration::from_millis(1_000));
        pacer.freed.notify_waiters();
        let permit = tokio::time::timeout(Duration::from_secs(5), import).await;
        assert!(
            permit.is_ok(),
            "the import still waits for a submission that left"
        );
    }

    /// Known limits are tightened, never loosened, by what the provider
    /// announces for the same window; other windows are left alone.
    #[tokio::test(flavor = "current_thread")]
    async fn a_known_limit_tightens_to_what_the_provider_announces_and_never_loosens() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
        let fifty = Rate::new(50, Duration::from_secs(60));
        let pacer = Pacer::new(&[fifty], false, clock.clone());
        let answer = |limits: Vec<Rate>| Advice {
            limits,
            ..Advice::default()
        };
        let permit = pacer.acquire(&[]).await;
        let looser = answer(vec![
            Rate::new(100, Duration::from_secs(60)),
            Rate::per_second(20),
        ]);
        pacer.complete(permit, Answer::Status(200), &looser).await;
        assert_eq!(pacer.budget(), [fifty]);
        clock.advance(Duration::from_secs(2));
        let permit = pacer.acquire(&[]).await;
        let tighter = Rate::new(40, Duration::from_secs(60));
        pacer
            .complete(permit, Answer::Status(200), &answer(vec![tighter]))
            .await;
        assert_eq!(pacer.budget(), [tighter]);
    }
}
