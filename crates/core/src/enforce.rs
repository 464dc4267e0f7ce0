//! One request, start to end: escalation first, then every matching limit.

use crate::abuse::{AbuseTracker, Escalated, EscalationPolicy, Gate};
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

    /// Decides one request that arrived at `now`.
    pub async fn check(&self, subject: &Subject, now: Timestamp) -> Result<Outcome, StoreError> {
        let (gate, tracked) = self.abuse.on_request(&subject.key, now);
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
                self.abuse.on_admission(&subject.key);
            }
            return Ok(Outcome::Admitted(decision));
        };
        Ok(match self.abuse.on_rejection(&subject.key, now, wait) {
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
        let mut future = std::pin::pin!(self.check(subject, now));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(outcome) => outcome,
            std::task::Poll::Pending => panic!("check_now needs a store that answers at once"),
        }
    }
}
