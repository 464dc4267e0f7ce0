//! Faults a real provider has: errors, slowness, garbage, dropped connections
//! and outages; deterministic by seed, per endpoint, switchable at runtime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::endpoint::Endpoint;
use crate::rng::unit;

/// What went wrong with one request, by design.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The outage switch was on: `503` before anything else was looked at.
    Outage,
    /// `500` instead of the answer.
    InternalError,
    /// `503` instead of the answer.
    Unavailable,
    /// The answer, after [`Faults::slow_delay`].
    Slow,
    /// `200` with a body that is not JSON.
    Garbage,
    /// The connection was closed without an answer.
    Reset,
}

/// How often each fault happens: fractions of the requests to an endpoint.
///
/// One uniform draw per request (from the seed, the endpoint and the request's
/// number on that endpoint) picks at most one fault, in the order of the fields;
/// so the same seed and the same sequence of requests give the same faults.
/// Fractions adding up past 1 crowd out the later ones.
///
/// `500`/`503` come before the handler runs: a write is then *not* made. A slow
/// answer, garbage and a dropped connection come after it: a write *is* made and
/// its answer is lost, as when a provider commits and the network fails; only an
/// `Idempotency-Key` makes the retry safe.
///
/// ```
/// use std::time::Duration;
/// use tollgate_testkit::Faults;
///
/// let faults = Faults::none().internal_errors(0.1).slow(0.05, Duration::from_secs(5));
/// assert_eq!(faults.internal_errors, 0.1);
/// assert!(Faults::none().is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Fraction answered `500`.
    pub internal_errors: f64,
    /// Fraction answered `503`.
    pub unavailable: f64,
    /// Fraction answered after [`slow_delay`](Self::slow_delay).
    pub slow: f64,
    /// How long a slow answer takes (set it beyond the client's timeout).
    pub slow_delay: Duration,
    /// Fraction answered `200` with a body that is not JSON.
    pub garbage: f64,
    /// Fraction whose connection is closed without an answer.
    pub resets: f64,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// True when no fault can happen.
    pub fn is_none(&self) -> bool {
        self.internal_errors + self.unavailable + self.slow + self.garbage + self.resets <= 0.0
    }

    /// Answers `fraction` of the requests with `500`.
    pub fn internal_errors(mut self, fraction: f64) -> Self {
        self.internal_errors = fraction;
        self
    }

    /// Answers `fraction` of the requests with `503`.
    pub fn unavailable(mut self, fraction: f64) -> Self {
        self.unavailable = fraction;
        self
    }

    /// Answers `fraction` of the requests only after `delay`.
    pub fn slow(mut self, fraction: f64, delay: Duration) -> Self {
        self.slow = fraction;
        self.slow_delay = delay;
        self
    }

    /// Answers `fraction` of the requests with `200` and a body that is not JSON.
    pub fn garbage(mut self, fraction: f64) -> Self {
        self.garbage = fraction;
        self
    }

    /// Closes the connection of `fraction` of the requests without an answer.
    pub fn resets(mut self, fraction: f64) -> Self {
        self.resets = fraction;
        self
    }

    fn pick(&self, draw: f64) -> Option<Fault> {
        let bands = [
            (self.internal_errors, Fault::InternalError),
            (self.unavailable, Fault::Unavailable),
            (self.slow, Fault::Slow),
            (self.garbage, Fault::Garbage),
            (self.resets, Fault::Reset),
        ];
        let mut upper = 0.0;
        for (fraction, fault) in bands {
            upper += fraction.max(0.0);
            if draw < upper {
                return Some(fault);
            }
        }
        None
    }
}

/// The faults in force, changed at runtime through the handle.
#[derive(Debug)]
pub(crate) struct FaultState {
    seed: u64,
    outage: AtomicBool,
    plan: Mutex<Plan>,
    /// Requests so far per endpoint (the last slot: requests that matched none),
    /// so each endpoint's draws do not depend on traffic to the others.
    counters: Vec<AtomicU64>,
}

#[derive(Clone, Debug, Default)]
struct Plan {
    all: Faults,
    endpoints: HashMap<Endpoint, Faults>,
}

impl FaultState {
    pub(crate) fn new(seed: u64, all: Faults, endpoints: HashMap<Endpoint, Faults>) -> Self {
        Self {
            seed,
            outage: AtomicBool::new(false),
            plan: Mutex::new(Plan { all, endpoints }),
            counters: (0..=Endpoint::ALL.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    pub(crate) fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::SeqCst);
    }

    pub(crate) fn outage(&self) -> bool {
        self.outage.load(Ordering::SeqCst)
    }

    pub(crate) fn set_all(&self, faults: Faults) {
        self.plan.lock().all = faults;
    }

    pub(crate) fn set_endpoint(&self, endpoint: Endpoint, faults: Faults) {
        self.plan.lock().endpoints.insert(endpoint, faults);
    }

    pub(crate) fn clear(&self) {
        *self.plan.lock() = Plan::default();
    }

    /// The fault for the next request to `endpoint`, if any, with the delay of
    /// a slow answer.
    pub(crate) fn draw(&self, endpoint: Option<Endpoint>) -> Option<(Fault, Duration)> {
        let slot = endpoint.map_or(Endpoint::ALL.len(), |e| e.id() as usize);
        let n = self.counters[slot].fetch_add(1, Ordering::SeqCst);
        let faults = {
            let plan = self.plan.lock();
            endpoint
                .and_then(|e| plan.endpoints.get(&e).copied())
                .unwrap_or(plan.all)
        };
        let draw = unit(&[self.seed, slot as u64, n]);
        faults.pick(draw).map(|fault| (fault, faults.slow_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_faults_at_about_the_fraction() {
        let faults = Faults::none().internal_errors(0.2).resets(0.1);
        let run = |seed| {
            let state = FaultState::new(seed, faults, HashMap::new());
            (0..1000)
                .map(|_| state.draw(Some(Endpoint::Properties)).map(|f| f.0))
                .collect::<Vec<_>>()
        };
        let (a, b) = (run(5), run(5));
        assert_eq!(a, b);
        assert_ne!(a, run(6));
        let errors = a
            .iter()
            .filter(|f| **f == Some(Fault::InternalError))
            .count();
        let resets = a.iter().filter(|f| **f == Some(Fault::Reset)).count();
        assert!((150..250).contains(&errors), "{errors}");
        assert!((60..140).contains(&resets), "{resets}");
    }

    #[test]
    fn an_endpoint_setting_overrides_the_default() {
        let state = FaultState::new(1, Faults::none().internal_errors(1.0), HashMap::new());
        state.set_endpoint(Endpoint::Tenancies, Faults::none());
        assert_eq!(state.draw(Some(Endpoint::Tenancies)), None);
        assert_eq!(
            state.draw(Some(Endpoint::Properties)).map(|f| f.0),
            Some(Fault::InternalError)
        );
    }
}
