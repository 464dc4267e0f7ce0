//! [`ResilientStore`]: decisions that stay fast, and a configured answer, while
//! the shared store (Redis) is down.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tollgate_core::{
    Algorithm, Charge, Clock, Decision, LimitId, MemoryStore, Store, StoreError, Timestamp,
};

use crate::RedisStore;

/// What a decision does when the shared store cannot make it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailMode {
    /// Decide locally, in memory, with each limit divided by the number of
    /// instances sharing it: traffic keeps flowing, limits hold approximately.
    #[default]
    Open,
    /// Refuse: the decision is a transient [`StoreError`], which the gateway
    /// answers with 503.
    Closed,
}

/// How a [`ResilientStore`] guards its decisions.
#[derive(Clone, Debug)]
pub struct ResilientConfig {
    /// What a decision does while the shared store is unavailable, unless
    /// `per_limit` says otherwise for a limit it charges.
    pub mode: FailMode,
    /// Fail-mode overrides by limit. A decision that charges any fail-closed
    /// limit is refused; otherwise every charge is decided locally.
    pub per_limit: HashMap<LimitId, FailMode>,
    /// How many instances share the limits: a local decision allows each limit's
    /// count (and a GCRA burst) divided by this, at least 1.
    pub instances: u32,
    /// How long a decision waits for the shared store before answering without
    /// it.
    pub timeout: Duration,
    /// Consecutive failures (errors or timeouts) that open the circuit: then no
    /// decision waits for the shared store until the cool-down has passed.
    pub failures_to_open: u32,
    /// How long the circuit stays open before one decision probes the store
    /// again; a probe that succeeds closes it, one that fails opens it again.
    pub cool_down: Duration,
}

impl Default for ResilientConfig {
    /// Fail-open, one instance, 50 ms per decision, open after 3 consecutive
    /// failures, probe every 500 ms.
    fn default() -> Self {
        Self {
            mode: FailMode::Open,
            per_limit: HashMap::new(),
            instances: 1,
            timeout: Duration::from_millis(50),
            failures_to_open: 3,
            cool_down: Duration::from_millis(500),
        }
    }
}

/// Counters of a [`ResilientStore`], since it was made (shared by its clones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResilienceStats {
    /// The circuit is not closed: decisions do not (all) reach the shared store.
    pub degraded: bool,
    /// Decisions made locally, fail-open.
    pub fallback_decisions: u64,
    /// Decisions refused, fail-closed.
    pub refused_decisions: u64,
    /// Decisions the shared store failed (an error or a timeout).
    pub store_failures: u64,
    /// Times the circuit opened after being closed: outages seen (a failed
    /// probe re-opens it without counting).
    pub circuit_opens: u64,
}

/// A store (Redis by default) guarded for outages: each decision waits at most
/// [`timeout`](ResilientConfig::timeout) for it, a circuit breaker stops asking it
/// after [`failures_to_open`](ResilientConfig::failures_to_open) consecutive
/// failures, and meanwhile decisions follow the [`FailMode`]: decided locally in a
/// [`MemoryStore`] (fail-open) or refused (fail-closed).
///
/// While the circuit is open a decision does not touch the network, so it costs
/// what a `MemoryStore` decision costs (fail-open) or nothing (fail-closed).
/// After the cool-down one decision probes the store (with the same timeout),
/// the others still decide without it; a probe that succeeds closes the circuit
/// and the store is used again: recovery needs no restart. The breaker's time
/// comes from the [`Clock`] given, so tests can drive it with a `ManualClock`.
///
/// What fail-open costs in exactness: the local limiter knows nothing of what
/// the shared store counted before the outage, and each of the `instances`
/// processes allows its share, so a key may get up to one extra window's worth
/// at the start of an outage; and a decision that timed out may have been
/// charged in Redis too (counted twice: under-admission). An error that retrying
/// cannot cure (a key of another type) is returned as is: it is not an outage.
///
/// Cloning shares everything: the breaker, the local limiter and the counters.
///
/// ```no_run
/// use tollgate_core::{Charge, LimitId, Quota, Store, SystemClock};
/// use tollgate_redis::{FailMode, RedisStore, ResilientConfig, ResilientStore};
///
/// # async fn example() -> Result<(), tollgate_core::StoreError> {
/// let redis = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let config = ResilientConfig { mode: FailMode::Open, instances: 4, ..Default::default() };
/// let store = ResilientStore::new(redis, SystemClock::new(), config);
/// let charge = Charge { limit: LimitId(0), key: 12345u64, quota: Quota::rolling("50/60s".parse().unwrap()) };
/// let decision = store.decide(&[charge]).await?;
/// assert!(!store.is_degraded() || store.stats().fallback_decisions > 0);
/// # Ok(())
/// # }
/// ```
pub struct ResilientStore<K, S = RedisStore> {
    inner: Arc<Inner<K, S>>,
}

impl<K, S> Clone for ResilientStore<K, S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, S> std::fmt::Debug for ResilientStore<K, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientStore")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Inner<K, S> {
    primary: S,
    fallback: MemoryStore<K>,
    clock: Arc<dyn Clock>,
    config: ResilientConfig,
    breaker: Breaker,
    fallback_decisions: AtomicU64,
    refused_decisions: AtomicU64,
    store_failures: AtomicU64,
}

impl<K: Hash + Eq + Clone, S> ResilientStore<K, S> {
    /// Guards `primary` as `config` says, with the breaker's time (and the local
    /// limiter's) from `clock`.
    pub fn new(primary: S, clock: impl Clock + 'static, config: ResilientConfig) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        Self {
            inner: Arc::new(Inner {
                primary,
                fallback: MemoryStore::new(Arc::clone(&clock)),
                breaker: Breaker::new(config.failures_to_open, config.cool_down),
                clock,
                config,
                fallback_decisions: AtomicU64::new(0),
                refused_decisions: AtomicU64::new(0),
                store_failures: AtomicU64::new(0),
            }),
        }
    }
}

impl<K, S> ResilientStore<K, S> {
    /// The store it guards.
    pub fn primary(&self) -> &S {
        &self.inner.primary
    }

    /// The configuration.
    pub fn config(&self) -> &ResilientConfig {
        &self.inner.config
    }

    /// True while the circuit is not closed: the shared store failed
    /// [`failures_to_open`](ResilientConfig::failures_to_open) times in a row and
    /// no probe has succeeded since. A gauge for the gateway's metrics.
    pub fn is_degraded(&self) -> bool {
        self.inner.breaker.degraded.load(Ordering::Relaxed)
    }

    /// Decisions made locally (fail-open) since the store was made.
    pub fn fallback_decisions(&self) -> u64 {
        self.inner.fallback_decisions.load(Ordering::Relaxed)
    }

    /// Every counter, and the degraded flag.
    pub fn stats(&self) -> ResilienceStats {
        let inner = &self.inner;
        ResilienceStats {
            degraded: self.is_degraded(),
            fallback_decisions: inner.fallback_decisions.load(Ordering::Relaxed),
            refused_decisions: inner.refused_decisions.load(Ordering::Relaxed),
            store_failures: inner.store_failures.load(Ordering::Relaxed),
            circuit_opens: inner.breaker.opens.load(Ordering::Relaxed),
        }
    }
}

impl<K, S> Inner<K, S>
where
    K: Hash + Eq + Clone,
{
    /// The answer without the shared store, which failed with `cause`.
    fn without_store(&self, charges: &[Charge<K>], cause: &str) -> Result<Decision, StoreError> {
        let mode_of = |c: &Charge<K>| {
            self.config
                .per_limit
                .get(&c.limit)
                .copied()
                .unwrap_or(self.config.mode)
        };
        if charges.iter().any(|c| mode_of(c) == FailMode::Closed) {
            self.refused_decisions.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::transient(format!(
                "the limit store is unavailable ({cause}); failing closed"
            )));
        }
        self.fallback_decisions.fetch_add(1, Ordering::Relaxed);
        let instances = self.config.instances.max(1);
        let local: Vec<Charge<K>> = charges
            .iter()
            .map(|c| Charge {
                limit: c.limit,
                key: c.key.clone(),
                quota: local_share(c.quota, instances),
            })
            .collect();
        Ok(self.fallback.decide_at(&local, self.clock.now()))
    }
}

/// One instance's share of `quota`: the count (and a GCRA burst) divided by
/// `instances`, at least 1. At least 1 so that a limit smaller than the number of
/// instances still lets some traffic through: fail-open prefers availability.
fn local_share(quota: tollgate_core::Quota, instances: u32) -> tollgate_core::Quota {
    let share = |n: u32| (n / instances).max(1);
    let mut local = quota.with_count(share(quota.rate.count()));
    if let Algorithm::Gcra { burst } = quota.algorithm {
        local.algorithm = Algorithm::Gcra {
            burst: share(burst),
        };
    }
    local
}

impl<K, S> Store<K> for ResilientStore<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: Store<K>,
{
    fn decide(
        &self,
        charges: &[Charge<K>],
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        let inner = &*self.inner;
        async move {
            let cause = match inner.breaker.route(inner.clock.now()) {
                Route::Local => "circuit open".to_owned(),
                Route::Store { probe } => {
                    let answer =
                        tokio::time::timeout(inner.config.timeout, inner.primary.decide(charges))
                            .await;
                    let error = match answer {
                        Ok(Ok(decision)) => {
                            inner.breaker.on_success();
                            return Ok(decision);
                        }
                        // The store answered, so it is up; the error is not an
                        // outage, and no fail mode applies.
                        Ok(Err(e)) if !e.is_transient() => {
                            inner.breaker.on_success();
                            return Err(e);
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {:?}", inner.config.timeout),
                    };
                    inner.store_failures.fetch_add(1, Ordering::Relaxed);
                    inner.breaker.on_failure(inner.clock.now(), probe);
                    error
                }
            };
            inner.without_store(charges, &cause)
        }
    }
}

/// Where one decision goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// To the store; `probe` when it is the one decision trying a store that
    /// the circuit had given up on.
    Store { probe: bool },
    /// Decided without the store: the circuit is open.
    Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The store is used; this many decisions in a row have failed.
    Closed { failures: u32 },
    /// The store is not asked until `until`.
    Open { until: Timestamp },
    /// One decision is probing the store; if it has not reported by `until`
    /// (its caller gave up on it), another may probe.
    Probing { until: Timestamp },
}

/// The circuit breaker: closed, open for a cool-down, then one probe.
struct Breaker {
    state: Mutex<State>,
    /// Mirrors "not closed", for a lock-free gauge.
    degraded: AtomicBool,
    opens: AtomicU64,
    failures_to_open: u32,
    cool_down: Duration,
}

impl Breaker {
    fn new(failures_to_open: u32, cool_down: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            degraded: AtomicBool::new(false),
            opens: AtomicU64::new(0),
            failures_to_open: failures_to_open.max(1),
            cool_down,
        }
    }

    fn set(&self, state: &mut State, to: State) {
        *state = to;
        self.degraded
            .store(!matches!(to, State::Closed { .. }), Ordering::Relaxed);
    }

    fn route(&self, now: Timestamp) -> Route {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match *state {
            State::Closed { .. } => Route::Store { probe: false },
            State::Open { until } | State::Probing { until } if now >= until => {
                self.set(
                    &mut state,
                    State::Probing {
                        until: now + self.cool_down,
                    },
                );
                Route::Store { probe: true }
            }
            State::Open { .. } | State::Probing { .. } => Route::Local,
        }
    }

    fn on_success(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state != (State::Closed { failures: 0 }) {
            self.set(&mut state, State::Closed { failures: 0 });
        }
    }

    fn on_failure(&self, now: Timestamp, probe: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let open = State::Open {
            until: now + self.cool_down,
        };
        match *state {
            State::Closed { failures } if failures + 1 >= self.failures_to_open => {
                self.opens.fetch_add(1, Ordering::Relaxed);
                self.set(&mut state, open);
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
            }
            State::Probing { .. } if probe => self.set(&mut state, open),
            // A decision that began before the circuit opened: already open.
            State::Open { .. } | State::Probing { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use tollgate_core::{ManualClock, Quota, Rate};

    /// A store that answers from memory while `up`, and fails (or hangs) while
    /// down; counts the calls that reach it.
    struct Flaky {
        memory: MemoryStore<u64>,
        up: AtomicBool,
        hang: AtomicBool,
        calls: AtomicU32,
    }

    impl Flaky {
        fn new(clock: &ManualClock) -> Arc<Self> {
            Arc::new(Self {
                memory: MemoryStore::new(clock.clone()),
                up: AtomicBool::new(true),
                hang: AtomicBool::new(false),
                calls: AtomicU32::new(0),
            })
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Store<u64> for Flaky {
        fn decide(
            &self,
            charges: &[Charge<u64>],
        ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = if self.up.load(Ordering::SeqCst) {
                Ok(self.memory.decide_now(charges))
            } else {
                Err(StoreError::transient("connection refused"))
            };
            let hang = self.hang.load(Ordering::SeqCst);
            async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                answer
            }
        }
    }

    fn charge(limit: u32, key: u64, count: u32) -> Charge<u64> {
        Charge {
            limit: LimitId(limit),
            key,
            quota: Quota::fixed(Rate::per_minute(count)),
        }
    }

    fn guarded(
        clock: &ManualClock,
        config: ResilientConfig,
    ) -> (ResilientStore<u64, Arc<Flaky>>, Arc<Flaky>) {
        let flaky = Flaky::new(clock);
        (
            ResilientStore::new(flaky.clone(), clock.clone(), config),
            flaky,
        )
    }

    #[tokio::test]
    async fn the_circuit_opens_after_consecutive_failures_probes_and_closes() {
        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        let config = ResilientConfig {
            failures_to_open: 3,
            cool_down: Duration::from_secs(2),
            ..Default::default()
        };
        let (store, flaky) = guarded(&clock, config);
        let c = [charge(0, 1, 1_000)];
        assert!(store.decide(&c).await.unwrap().is_admitted());
        flaky.up.store(false, Ordering::SeqCst);
        for failures in 1..=3 {
            assert!(!store.is_degraded());
            assert!(store.decide(&c).await.unwrap().is_admitted(), "fail-open");
            assert_eq!(flaky.calls(), 1 + failures);
        }
        // Open: nothing reaches the store for the cool-down.
        assert!(store.is_degraded());
        for _ in 0..100 {
            assert!(store.decide(&c).await.unwrap().is_admitted());
        }
        clock.advance(Duration::from_millis(1_999));
        store.decide(&c).await.unwrap();
        assert_eq!(flaky.calls(), 4);
        // One probe, which fails: open for another cool-down.
        clock.advance(Duration::from_millis(1));
        store.decide(&c).await.unwrap();
        assert_eq!(flaky.calls(), 5);
        store.decide(&c).await.unwrap();
        assert_eq!(flaky.calls(), 5);
        assert!(store.is_degraded());
        // The store is back: the next probe closes the circuit.
        flaky.up.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(2));
        store.decide(&c).await.unwrap();
        assert!(!store.is_degraded());
        store.decide(&c).await.unwrap();
        assert_eq!(flaky.calls(), 7);
        let stats = store.stats();
        assert_eq!(stats.circuit_opens, 1);
        assert_eq!(stats.store_failures, 4);
        assert_eq!(stats.fallback_decisions, 3 + 100 + 1 + 1 + 1);
        assert_eq!(store.fallback_decisions(), stats.fallback_decisions);
    }

    #[tokio::test]
    async fn a_success_resets_the_count_of_failures() {
        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        let (store, flaky) = guarded(&clock, ResilientConfig::default());
        let c = [charge(0, 1, 1_000)];
        for _ in 0..5 {
            flaky.up.store(false, Ordering::SeqCst);
            store.decide(&c).await.unwrap();
            store.decide(&c).await.unwrap();
            flaky.up.store(true, Ordering::SeqCst);
            store.decide(&c).await.unwrap();
        }
        assert!(!store.is_degraded());
        assert_eq!(flaky.calls(), 15);
    }

    #[tokio::test]
    async fn fail_open_divides_each_limit_by_the_instances() {
        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        let config = ResilientConfig {
            instances: 4,
            ..Default::default()
        };
        let (store, flaky) = guarded(&clock, config);
        flaky.up.store(false, Ordering::SeqCst);
        let c = [charge(0, 1, 10)];
        let mut admitted = 0;
        for _ in 0..20 {
            admitted += usize::from(store.decide(&c).await.unwrap().is_admitted());
        }
        assert_eq!(admitted, 10 / 4);
        // Smaller than the number of instances: still 1 each.
        let tiny = [charge(1, 1, 3)];
        assert!(store.decide(&tiny).await.unwrap().is_admitted());
        assert!(!store.decide(&tiny).await.unwrap().is_admitted());
        let gcra = local_share(Quota::gcra(Rate::per_second(100), 20), 4);
        assert_eq!(gcra, Quota::gcra(Rate::per_second(25), 5));
    }

    #[tokio::test]
    async fn fail_closed_refuses_per_store_or_per_limit() {
        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        let config = ResilientConfig {
            per_limit: HashMap::from([(LimitId(7), FailMode::Closed)]),
            ..Default::default()
        };
        let (store, flaky) = guarded(&clock, config);
        flaky.up.store(false, Ordering::SeqCst);
        assert!(store.decide(&[charge(0, 1, 10)]).await.is_ok());
        let error = store
            .decide(&[charge(0, 1, 10), charge(7, 1, 10)])
            .await
            .unwrap_err();
        assert!(error.is_transient());
        assert!(error.to_string().contains("failing closed"), "{error}");

        let config = ResilientConfig {
            mode: FailMode::Closed,
            ..Default::default()
        };
        let (store, flaky) = guarded(&clock, config);
        flaky.up.store(false, Ordering::SeqCst);
        for _ in 0..10 {
            assert!(store.decide(&[charge(0, 1, 10)]).await.is_err());
        }
        let stats = store.stats();
        assert_eq!((stats.refused_decisions, stats.fallback_decisions), (10, 0));
        assert!(stats.degraded);
    }

    #[tokio::test]
    async fn a_store_that_hangs_costs_one_timeout_per_decision_until_the_circuit_opens() {
        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        let config = ResilientConfig {
            timeout: Duration::from_millis(20),
            ..Default::default()
        };
        let (store, flaky) = guarded(&clock, config);
        flaky.hang.store(true, Ordering::SeqCst);
        let c = [charge(0, 1, 10)];
        let started = std::time::Instant::now();
        for _ in 0..3 {
            assert!(store.decide(&c).await.unwrap().is_admitted());
        }
        let opening = started.elapsed();
        assert!(opening >= Duration::from_millis(60), "{opening:?}");
        assert!(store.is_degraded());
        let started = std::time::Instant::now();
        for _ in 0..1_000 {
            store.decide(&c).await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(flaky.calls(), 3);
    }

    #[test]
    fn only_one_probe_at_a_time_and_a_lost_probe_is_replaced() {
        let breaker = Breaker::new(1, Duration::from_secs(1));
        let t = Timestamp::from_secs(10);
        breaker.on_failure(t, false);
        assert_eq!(breaker.route(t), Route::Local);
        let later = t + Duration::from_secs(1);
        assert_eq!(breaker.route(later), Route::Store { probe: true });
        assert_eq!(breaker.route(later), Route::Local);
        // A late failure of a decision begun before the circuit opened changes
        // nothing.
        breaker.on_failure(later, false);
        assert_eq!(breaker.route(later), Route::Local);
        // The probe's caller gave up on it: a cool-down later, another probes.
        let much_later = later + Duration::from_secs(1);
        assert_eq!(breaker.route(much_later), Route::Store { probe: true });
        breaker.on_success();
        assert_eq!(breaker.route(much_later), Route::Store { probe: false });
        assert!(!breaker.degraded.load(Ordering::Relaxed));
    }
}
