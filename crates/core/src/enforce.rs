//! One request, start to end: escalation first, then every matching limit.

use crate::abuse::{AbuseTracker, Escalated, Escalation, EscalationCell, EscalationPolicy, Gate};
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::policy::{PolicySet, Subject};
use crate::store::{Store, StoreError};
use std::future::Future;
use std::sync::Arc;

/// What happens to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every limit admitted it and was charged: forward it (and show `decision`
    /// in the RateLimit headers).
    Admitted(Decision),
    /// A limit rejected it; nothing was charged: answer `429`.
    Limited {
        /// Which limits rejected it and when to retry.
        decision: Decision,
        /// True when the request came before the key's retry instant (a strike).
        struck: bool,
    },
    /// The key is blocked for hammering: answer `403` without asking any limit.
    Blocked {
        /// When the block ends.
        until: Timestamp,
        /// True when this request caused the block.
        now_blocked: bool,
    },
}

/// Policies, a store and abuse escalation, put together the way a gateway needs
/// them: a blocked key is refused before any limit is asked; a rejection tells
/// the escalation state when the key may come back.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::abuse::EscalationPolicy;
/// use tollgate_core::enforce::{Enforcer, Outcome};
/// use tollgate_core::*;
///
/// let clock = ManualClock::new(Timestamp::from_secs(0));
/// let policies = PolicySet::new(vec![Policy {
///     name: "per-key".into(), scope: Scope::PerKey,
///     quota: Quota::rolling(Rate::per_minute(1)), endpoints: Endpoints::All, tier_step: None,
/// }]);
/// let enforcer = Enforcer::new(policies, MemoryStore::new(clock.clone()), EscalationPolicy::default());
/// let key = Subject { key: 1, endpoint: None, increments: 0 };
/// let now = clock.now();
/// assert!(matches!(enforcer.check_now(&key, now), Ok(Outcome::Admitted(_))));
/// assert!(matches!(enforcer.check_now(&key, now), Ok(Outcome::Limited { struck: false, .. })));
/// ```
pub struct Enforcer<S> {
    policies: PolicySet,
    store: S,
    /// Shared with the enforcers of later configurations, so a reload neither
    /// forgets a block nor pardons strikes.
    abuse: Arc<AbuseTracker<u32>>,
}

impl<S: Store<u64>> Enforcer<S> {
    /// An enforcer of `policies` over `store`, escalating by `escalation`.
    pub fn new(policies: PolicySet, store: S, escalation: EscalationPolicy) -> Self {
        Self {
            policies,
            store,
            abuse: Arc::new(AbuseTracker::new(escalation)),
        }
    }

    /// An enforcer of new `policies` over the same store and escalation state:
    /// a policy whose name is unchanged keeps its slots (see [`PolicySet::reload`]).
    pub fn reload(&self, policies: Vec<crate::Policy>) -> Self
    where
        S: Clone,
    {
        Self {
            policies: self.policies.reload(policies),
            store: self.store.clone(),
            abuse: Arc::clone(&self.abuse),
        }
    }

    /// The policies enforced.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The escalation state of every key.
    pub fn abuse(&self) -> &AbuseTracker<u32> {
        &self.abuse
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Decides one request that arrived at `now`, with the key's escalation
    /// state in the enforcer's own tracker.
    pub async fn check(&self, subject: &Subject, now: Timestamp) -> Result<Outcome, StoreError> {
        let tracked = Tracked {
            tracker: &self.abuse,
            key: subject.key,
        };
        self.check_via(subject, now, tracked).await
    }

    /// Decides one request that arrived at `now`, with the key's escalation
    /// state in `cell`, which the caller keeps beside its other per-key data:
    /// a caller that already holds the key's record saves the tracker's lookup.
    /// The tracker is neither read nor written for this key, so a caller keeps
    /// every key's state in cells or every key's in the tracker, not both.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use tollgate_core::abuse::{Escalation, EscalationCell, EscalationPolicy};
    /// use tollgate_core::enforce::{Enforcer, Outcome};
    /// use tollgate_core::*;
    ///
    /// struct Record(Mutex<Escalation>);
    /// impl EscalationCell for Record {
    ///     fn update<R>(&self, f: impl FnOnce(&mut Escalation) -> R) -> R {
    ///         f(&mut self.0.lock().unwrap())
    ///     }
    /// }
    ///
    /// let clock = ManualClock::new(Timestamp::from_secs(0));
    /// let policies = PolicySet::new(vec![Policy {
    ///     name: "per-key".into(), scope: Scope::PerKey,
    ///     quota: Quota::rolling(Rate::per_minute(1)), endpoints: Endpoints::All, tier_step: None,
    /// }]);
    /// let escalation = EscalationPolicy { strikes: 1, ..EscalationPolicy::default() };
    /// let enforcer = Enforcer::new(policies, MemoryStore::new(clock.clone()), escalation);
    /// let (key, record) = (Subject { key: 1, endpoint: None, increments: 0 }, Record(Mutex::default()));
    /// let now = clock.now();
    /// let check = || enforcer.check_in_now(&key, now, &record);
    /// assert!(matches!(check(), Ok(Outcome::Admitted(_))));
    /// assert!(matches!(check(), Ok(Outcome::Limited { struck: false, .. })));
    /// assert!(matches!(check(), Ok(Outcome::Blocked { now_blocked: true, .. })));
    /// assert!(record.0.lock().unwrap().blocked_until(now).is_some());
    /// ```
    pub async fn check_in(
        &self,
        subject: &Subject,
        now: Timestamp,
        cell: &impl EscalationCell,
    ) -> Result<Outcome, StoreError> {
        let kept = Kept {
            cell,
            policy: self.abuse.policy(),
        };
        self.check_via(subject, now, kept).await
    }

    async fn check_via(
        &self,
        subject: &Subject,
        now: Timestamp,
        escalation: impl Escalations,
    ) -> Result<Outcome, StoreError> {
        let (gate, tracked) = escalation.on_request(now);
        if let Gate::Blocked { until } = gate {
            return Ok(Outcome::Blocked {
                until,
                now_blocked: false,
            });
        }
        let charges = self.policies.charges(subject);
        let decision = self.store.decide(&charges).await?;
        let Some(wait) = decision.retry_after() else {
            if tracked {
                escalation.on_admission();
            }
            return Ok(Outcome::Admitted(decision));
        };
        Ok(match escalation.on_rejection(now, wait) {
            Escalated::Limited { struck } => Outcome::Limited { decision, struck },
            Escalated::Blocked { until } => Outcome::Blocked {
                until,
                now_blocked: true,
            },
        })
    }

    /// [`check`](Self::check) for a store whose answer is immediate (the memory
    /// store): no executor needed.
    ///
    /// # Panics
    /// If the store's future is not ready when first polled.
    pub fn check_now(&self, subject: &Subject, now: Timestamp) -> Result<Outcome, StoreError> {
        ready(self.check(subject, now))
    }

    /// [`check_in`](Self::check_in) for a store whose answer is immediate.
    ///
    /// # Panics
    /// If the store's future is not ready when first polled.
    pub fn check_in_now(
        &self,
        subject: &Subject,
        now: Timestamp,
        cell: &impl EscalationCell,
    ) -> Result<Outcome, StoreError> {
        ready(self.check_in(subject, now, cell))
    }
}

/// The output of a future that must not wait.
fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("an immediate check needs a store that answers at once"),
    }
}

/// A key's escalation state, wherever it is kept: the three moments of a
/// request that read or change it.
trait Escalations {
    /// Whether the request may go on to the limits, and whether the key has
    /// state (so its admission must be recorded).
    fn on_request(&self, now: Timestamp) -> (Gate, bool);
    fn on_admission(&self);
    fn on_rejection(&self, now: Timestamp, wait: std::time::Duration) -> Escalated;
}

/// The key's state in the enforcer's tracker.
struct Tracked<'a> {
    tracker: &'a AbuseTracker<u32>,
    key: u32,
}

impl Escalations for Tracked<'_> {
    fn on_request(&self, now: Timestamp) -> (Gate, bool) {
        self.tracker.on_request(&self.key, now)
    }
    fn on_admission(&self) {
        self.tracker.on_admission(&self.key);
    }
    fn on_rejection(&self, now: Timestamp, wait: std::time::Duration) -> Escalated {
        self.tracker.on_rejection(&self.key, now, wait)
    }
}

/// The key's state in a cell its caller keeps.
struct Kept<'a, C> {
    cell: &'a C,
    policy: &'a EscalationPolicy,
}

impl<C: EscalationCell> Escalations for Kept<'_, C> {
    fn on_request(&self, now: Timestamp) -> (Gate, bool) {
        self.cell.update(|state| {
            let fresh = *state == Escalation::default();
            (state.on_request(now), !fresh)
        })
    }
    fn on_admission(&self) {
        self.cell.update(Escalation::on_admission);
    }
    fn on_rejection(&self, now: Timestamp, wait: std::time::Duration) -> Escalated {
        self.cell
            .update(|state| state.on_rejection(self.policy, now, wait))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::{Endpoints, ManualClock, MemoryStore, Policy, Quota, Rate, Scope};

    struct Cell(Mutex<Escalation>);

    impl EscalationCell for Cell {
        fn update<R>(&self, f: impl FnOnce(&mut Escalation) -> R) -> R {
            f(&mut self.0.lock().unwrap())
        }
    }

    fn enforcer(clock: &ManualClock) -> Enforcer<MemoryStore<u64>> {
        let policies = PolicySet::new(vec![Policy {
            name: "per-key".into(),
            scope: Scope::PerKey,
            quota: Quota::rolling(Rate::new(3, Duration::from_secs(2))),
            endpoints: Endpoints::All,
            // Raised limits admit a key before its retry instant.
            tier_step: Some(2),
        }]);
        let escalation = EscalationPolicy {
            strikes: 3,
            strike_window: Duration::from_secs(5),
            first_block: Duration::from_secs(4),
            max_block: Duration::from_secs(16),
            forget_offences_after: Duration::from_secs(60),
        };
        Enforcer::new(policies, MemoryStore::new(clock.clone()), escalation)
    }

    /// Cells kept by the caller escalate exactly as the tracker does: the same
    /// requests get the same outcomes, strikes, blocks and admissions (which
    /// clear the retry instant when a raised limit admits early) included.
    #[test]
    fn kept_cells_escalate_as_the_tracker_does() {
        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        let (tracked, kept) = (enforcer(&clock), enforcer(&clock));
        let cells: Vec<Cell> = (0..4).map(|_| Cell(Mutex::default())).collect();
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let mut seen = [0usize; 3];
        for _ in 0..20_000 {
            clock.advance(Duration::from_millis(next(400)));
            let key = next(4) as u32;
            let subject = Subject {
                key,
                endpoint: None,
                increments: u32::from(next(8) == 0),
            };
            let now = clock.now();
            let expected = tracked.check_now(&subject, now).unwrap();
            let got = kept
                .check_in_now(&subject, now, &cells[key as usize])
                .unwrap();
            assert_eq!(got, expected, "key {key} at {now:?}");
            seen[match got {
                Outcome::Admitted(_) => 0,
                Outcome::Limited { .. } => 1,
                Outcome::Blocked { .. } => 2,
            }] += 1;
        }
        assert!(
            seen.iter().all(|&n| n > 100),
            "every outcome occurs: {seen:?}"
        );
    }
}
