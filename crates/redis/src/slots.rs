//! [`SharedSlots`]: one client budget shared by several processes that call the
//! same provider with the same key (several `tollgate sync` processes).
//!
//! The gateway side asks "may this request in?" at one instant; a client must
//! ask "may I send now, so that however late the provider counts this request,
//! no window of its holds more than its limit?". The in-memory pacer of one
//! process answers it by holding each slot from the send until one window after
//! the answer; `slots.lua` keeps exactly those slots in Redis, so every process
//! on the key sees every other's, together with the pause after a `429` and the
//! even spacing of the sends.

use std::time::Duration;

use redis::{Script, ScriptInvocation};
use tollgate_core::{Rate, StoreError, Timestamp};

use crate::keys::escape;
use crate::store::RedisStore;

const SOURCE: &str = include_str!("slots.lua");

/// Extends a claim only if `owner` still holds it.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Gives a claim up only if `owner` holds it.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                       return redis.call('DEL', KEYS[1]) else return 0 end";

/// One limit of a shared budget, as a request counts against it.
#[derive(Clone, Copy, Debug)]
pub struct SharedLimit<'a> {
    /// Names the limit within the budget (`"budget.0"`, `"endpoint.users"`):
    /// every process must use the same label for the same limit.
    pub label: &'a str,
    /// The limit.
    pub rate: Rate,
}

/// The slots of one budget (one provider, one key) in Redis. Cheap to clone.
///
/// ```no_run
/// use std::time::Duration;
/// use tollgate_redis::{RedisStore, SharedLimit};
///
/// # async fn example() -> Result<(), tollgate_core::StoreError> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let budget = store.shared_slots("crm-7f3a9c");
/// let limits = [SharedLimit { label: "budget.0", rate: "50/60s".parse().unwrap() }];
/// let timeout = Duration::from_secs(30);
/// match budget.take("request-1", &limits, timeout).await? {
///     None => { /* send it, then: */ budget.done("request-1", &limits).await?; }
///     Some(wait) => { /* ask again after `wait` */ }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SharedSlots {
    store: RedisStore,
    script: Script,
    renew: Script,
    release: Script,
    /// `<prefix>:{<budget>}:`, escaped: one hash slot for the whole budget.
    base: String,
}

impl std::fmt::Debug for SharedSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSlots")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A duration in whole microseconds, rounded up (a slot is never shorter).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000)).unwrap_or(u64::MAX)
}

impl RedisStore {
    /// The shared slots of `budget`, a name every process using the same key
    /// with the same provider agrees on (and no other does), on this store's
    /// connection and under its prefix. All of a budget's keys share one hash
    /// slot, so it works on a Redis Cluster too.
    pub fn shared_slots(&self, budget: &str) -> SharedSlots {
        let mut base = String::with_capacity(self.prefix().len() + budget.len() + 16);
        base.push_str(self.prefix());
        base.push_str(":{");
        escape(budget, &mut base);
        base.push_str("}:slots:");
        SharedSlots {
            store: self.clone(),
            script: Script::new(SOURCE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            base,
        }
    }
}

impl SharedSlots {
    fn call(&self, now: Option<Timestamp>, op: &str) -> ScriptInvocation<'_> {
        let mut call = self.script.prepare_invoke();
        call.key(format!("{}pace", self.base));
        match now {
            Some(now) => call.arg(now.as_nanos().div_ceil(1_000)),
            None => call.arg(""),
        };
        call.arg(op);
        call
    }

    fn limit_key(&self, label: &str) -> String {
        let mut key = self.base.clone();
        escape(label, &mut key);
        key
    }

    /// Takes a slot of every one of `limits` for request `id` (unique among the
    /// requests in flight, across processes), if each has one, the even
    /// spacing allows a send now and the budget is not paused; `timeout` is the
    /// longest its answer can take. Returns `None` when taken (send it, then
    /// call [`done`](Self::done)), or how long to wait before asking again.
    pub async fn take(
        &self,
        id: &str,
        limits: &[SharedLimit<'_>],
        timeout: Duration,
    ) -> Result<Option<Duration>, StoreError> {
        self.take_inner(id, limits, timeout, None).await
    }

    /// [`take`](Self::take) at `now` instead of Redis's `TIME`, for tests.
    pub async fn take_at(
        &self,
        id: &str,
        limits: &[SharedLimit<'_>],
        timeout: Duration,
        now: Timestamp,
    ) -> Result<Option<Duration>, StoreError> {
        self.take_inner(id, limits, timeout, Some(now)).await
    }

    async fn take_inner(
        &self,
        id: &str,
        limits: &[SharedLimit<'_>],
        timeout: Duration,
        now: Option<Timestamp>,
    ) -> Result<Option<Duration>, StoreError> {
        let mut call = self.call(now, "take");
        call.arg(id);
        for limit in limits {
            call.key(self.limit_key(limit.label));
            let window = limit.rate.window();
            call.arg(limit.label)
                .arg(limit.rate.count())
                .arg(micros(window))
                .arg(micros(window + timeout))
                .arg(micros(window / limit.rate.count()));
        }
        let (taken, wait): (i64, i64) = self.store.eval(&call, "taking a shared slot").await?;
        Ok((taken != 1).then(|| Duration::from_micros(wait.max(1).unsigned_abs())))
    }

    /// The answer to request `id` arrived now (or it failed now): each of its
    /// slots returns one window from now.
    pub async fn done(&self, id: &str, limits: &[SharedLimit<'_>]) -> Result<(), StoreError> {
        self.done_inner(id, limits, None).await
    }

    /// [`done`](Self::done) at `now`, for tests.
    pub async fn done_at(
        &self,
        id: &str,
        limits: &[SharedLimit<'_>],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.done_inner(id, limits, Some(now)).await
    }

    async fn done_inner(
        &self,
        id: &str,
        limits: &[SharedLimit<'_>],
        now: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let mut call = self.call(now, "done");
        call.arg(id);
        for limit in limits {
            call.key(self.limit_key(limit.label));
            call.arg(micros(limit.rate.window()));
        }
        let _: (i64, i64) = self.store.eval(&call, "returning a shared slot").await?;
        Ok(())
    }

    /// A `429` said to wait `wait`: no process takes a slot of this budget
    /// before then. Returns the retry instant (Redis's time).
    pub async fn pause(&self, wait: Duration) -> Result<Timestamp, StoreError> {
        self.pause_inner(wait, None).await
    }

    /// [`pause`](Self::pause) from `now`, for tests.
    pub async fn pause_at(&self, wait: Duration, now: Timestamp) -> Result<Timestamp, StoreError> {
        self.pause_inner(wait, Some(now)).await
    }

    async fn pause_inner(
        &self,
        wait: Duration,
        now: Option<Timestamp>,
    ) -> Result<Timestamp, StoreError> {
        let mut call = self.call(now, "pause");
        call.arg(micros(wait));
        let (_, until): (i64, i64) = self.store.eval(&call, "pausing a shared budget").await?;
        Ok(Timestamp::from_nanos(
            until.unsigned_abs().saturating_mul(1_000),
        ))
    }

    fn claim_key(&self, work: &str) -> String {
        let mut key = self.base.clone();
        key.push_str("claim:");
        escape(work, &mut key);
        key
    }

    /// Claims `work` (a page run of one resource and scope) for `owner` for
    /// `ttl`, unless another owner holds it: processes that share a budget and
    /// a storage layer divide the work this way instead of fetching the same
    /// pages twice. Returns whether `owner` holds it now (a claim it already
    /// held is extended).
    pub async fn claim(&self, work: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.claim_key(work);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.store.clone();
        let set: Option<String> = conn
            .query(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms),
                "claiming work",
            )
            .await?;
        if set.is_some() {
            return Ok(true);
        }
        self.renew(work, owner, ttl).await
    }

    /// Extends `owner`'s claim on `work` by `ttl` from now; `false` when it
    /// no longer holds it (it expired and another took it).
    pub async fn renew(&self, work: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut call = self.renew.prepare_invoke();
        call.key(self.claim_key(work))
            .arg(owner)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        let renewed: i64 = self.store.eval(&call, "renewing a claim").await?;
        Ok(renewed == 1)
    }

    /// Gives up `owner`'s claim on `work`, if it still holds it.
    pub async fn release(&self, work: &str, owner: &str) -> Result<(), StoreError> {
        let mut call = self.release.prepare_invoke();
        call.key(self.claim_key(work)).arg(owner);
        let _: i64 = self.store.eval(&call, "releasing a claim").await?;
        Ok(())
    }
}
