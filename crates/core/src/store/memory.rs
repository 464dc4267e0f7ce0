//! The in-process store: sharded, exact, and self-cleaning.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::MutexGuard;
use smallvec::SmallVec;

use super::shards::{DEFAULT_SHARDS, Shards};
use super::table::Table;
use super::{Charge, Store, StoreError};
use crate::clock::{Clock, Timestamp, nanos_of};
use crate::decision::{Decision, LimitId, Verdict};

/// The state of the limits whose keys hash to one shard.
struct Shard<K> {
    /// Indexed by [`LimitId`]; created on first use.
    tables: Vec<Table<K>>,
    /// When this shard next drops its idle keys (nanoseconds).
    next_sweep: u64,
}

impl<K: Hash + Eq + Clone> Shard<K> {
    fn table(&mut self, limit: LimitId, charge_quota: &crate::Quota) -> &mut Table<K> {
        let index = limit.0 as usize;
        if self.tables.len() <= index {
            self.tables.resize_with(index + 1, || Table::Unused);
        }
        self.tables[index].prepare(charge_quota)
    }
}

/// Limit state in this process's memory.
///
/// Keys are spread over 64 locks by hash; a decision locks only the shards its
/// charges live in (in a fixed order, so two multi-limit decisions cannot
/// deadlock), checks every limit, and charges them all or none. Keys whose windows
/// have passed are dropped as the store is used (each shard sweeps itself at most
/// every few seconds), so memory follows the active keys, not every key ever seen.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{Charge, LimitId, ManualClock, MemoryStore, Quota, Rate, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_secs(1_000));
/// let store = MemoryStore::new(clock.clone());
/// let per_key = Charge { limit: LimitId(0), key: 7u64, quota: Quota::rolling(Rate::per_minute(2)) };
///
/// assert!(store.decide_now(&[per_key.clone()]).is_admitted());
/// clock.advance(Duration::from_secs(30));
/// assert!(store.decide_now(&[per_key.clone()]).is_admitted());
/// let third = store.decide_now(&[per_key.clone()]);
/// assert_eq!(third.retry_after(), Some(Duration::from_secs(30)));
/// clock.advance(Duration::from_secs(30)); // the first slot returns
/// assert!(store.decide_now(&[per_key]).is_admitted());
/// ```
pub struct MemoryStore<K> {
    shards: Shards<Shard<K>>,
    clock: Arc<dyn Clock>,
    sweep_every: u64,
}

impl<K: Hash + Eq + Clone> MemoryStore<K> {
    /// A store that reads time from `clock`, with 64 shards and a sweep of idle
    /// keys every 5 s.
    pub fn new(clock: impl Clock + 'static) -> Self {
        Self::with_shards(clock, DEFAULT_SHARDS)
    }

    /// A store with `shards` locks (rounded up to a power of two).
    pub fn with_shards(clock: impl Clock + 'static, shards: usize) -> Self {
        Self {
            shards: Shards::new(shards, || Shard {
                tables: Vec::new(),
                next_sweep: 0,
            }),
            clock: Arc::new(clock),
            sweep_every: 5_000_000_000,
        }
    }

    /// How often each shard drops its idle keys.
    pub fn sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = nanos_of(every).max(1);
        self
    }

    /// Decides at the store clock's current instant.
    pub fn decide_now(&self, charges: &[Charge<K>]) -> Decision {
        self.decide_at(charges, self.clock.now())
    }

    /// Decides one request at `now`: admitted only if every charge admits it, and
    /// then all are charged; otherwise none is.
    #[inline]
    pub fn decide_at(&self, charges: &[Charge<K>], now: Timestamp) -> Decision {
        self.decide_inner(charges, now, true)
    }

    /// What [`decide_at`](Self::decide_at) would answer, without charging
    /// anything: a key's current usage, for an admin.
    pub fn peek_at(&self, charges: &[Charge<K>], now: Timestamp) -> Decision {
        self.decide_inner(charges, now, false)
    }

    #[inline]
    fn decide_inner(&self, charges: &[Charge<K>], now: Timestamp, commit: bool) -> Decision {
        let now = now.as_nanos();
        match charges {
            [] => Decision::default(),
            [one] => self.decide_one(one, now, commit),
            many => self.decide_many(many, now, commit),
        }
    }

    fn hash(&self, limit: LimitId, key: &K) -> u64 {
        self.shards.hash(&(limit.0, key))
    }

    fn lock(&self, index: usize, now: u64) -> MutexGuard<'_, Shard<K>> {
        let mut shard = self.shards.lock(index);
        if now >= shard.next_sweep {
            self.sweep_shard(&mut shard, now);
        }
        shard
    }

    fn sweep_shard(&self, shard: &mut Shard<K>, now: u64) {
        for (limit, table) in shard.tables.iter_mut().enumerate() {
            let limit = LimitId(limit as u32);
            table.sweep(now, |k| self.hash(limit, k));
        }
        shard.next_sweep = now.saturating_add(self.sweep_every);
    }

    fn decide_one(&self, charge: &Charge<K>, now: u64, commit: bool) -> Decision {
        let hash = self.hash(charge.limit, &charge.key);
        let mut shard = self.lock(self.shards.index(hash), now);
        let peek = shard.table(charge.limit, &charge.quota).decide(
            hash,
            &charge.key,
            &charge.quota,
            now,
            commit,
            |k| self.hash(charge.limit, k),
        );
        let charged = peek.admitted && commit;
        Decision::single(verdict(charge, peek, charged))
    }

    fn decide_many(&self, charges: &[Charge<K>], now: u64, commit: bool) -> Decision {
        // Each charge's hash and shard, found once.
        let mut located: SmallVec<[(u64, usize); 4]> = SmallVec::with_capacity(charges.len());
        for charge in charges {
            let hash = self.hash(charge.limit, &charge.key);
            located.push((hash, self.shards.index(hash)));
        }
        // Lock each shard once, in ascending order: no deadlock between two
        // decisions that need the same shards.
        let mut order: SmallVec<[usize; 4]> = located.iter().map(|&(_, shard)| shard).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: SmallVec<[MutexGuard<'_, Shard<K>>; 4]> =
            SmallVec::with_capacity(order.len());
        for &index in &order {
            guards.push(self.lock(index, now));
        }
        // From here on each charge names its guard, not its shard.
        for (_, shard) in &mut located {
            *shard = order.binary_search(shard).unwrap_or(0);
        }

        // The verdicts are written in place as if the request will be charged,
        // and corrected below if it is not: no second collection, no copies.
        let mut verdicts: SmallVec<[Verdict; 4]> = SmallVec::with_capacity(charges.len());
        let mut all_admit = true;
        for (charge, &(hash, guard)) in charges.iter().zip(&located) {
            let peek = guards[guard].table(charge.limit, &charge.quota).peek(
                hash,
                &charge.key,
                &charge.quota,
                now,
            );
            all_admit &= peek.admitted;
            verdicts.push(verdict(charge, peek, true));
        }
        if commit && all_admit {
            for (charge, &(hash, guard)) in charges.iter().zip(&located) {
                guards[guard].table(charge.limit, &charge.quota).charge(
                    hash,
                    &charge.key,
                    &charge.quota,
                    now,
                    |k| self.hash(charge.limit, k),
                );
            }
        } else {
            for verdict in &mut verdicts {
                verdict.remaining += u32::from(verdict.admitted);
            }
        }
        Decision::from_verdicts(verdicts)
    }

    /// Drops every idle key now (the store also does this by itself as it is used;
    /// call this from a timer to free memory while no request arrives).
    pub fn sweep(&self) {
        let now = self.clock.now().as_nanos();
        for index in 0..self.shards.len() {
            let mut shard = self.shards.lock(index);
            self.sweep_shard(&mut shard, now);
        }
    }

    /// How many `(limit, key)` states the store holds.
    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| {
                self.shards
                    .lock(i)
                    .tables
                    .iter()
                    .map(Table::len)
                    .sum::<usize>()
            })
            .sum()
    }

    /// True when the store holds no state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The verdict for one charge. When the decision as a whole was rejected, a limit
/// that would have admitted was not charged, so its remaining count is one more
/// than its peek said.
#[inline]
fn verdict<K>(charge: &Charge<K>, peek: crate::algorithm::Peek, charged: bool) -> Verdict {
    let remaining = if peek.admitted && !charged {
        peek.remaining + 1
    } else {
        peek.remaining
    };
    Verdict {
        limit: charge.limit,
        admitted: peek.admitted,
        quota: charge.quota.rate.count(),
        remaining,
        retry_after: peek.retry_after,
        reset_after: peek.reset_after,
    }
}

impl<K: Hash + Eq + Clone + Send + Sync> Store<K> for MemoryStore<K> {
    fn decide(
        &self,
        charges: &[Charge<K>],
    ) -> impl std::future::Future<Output = Result<Decision, StoreError>> + Send {
        std::future::ready(Ok(self.decide_now(charges)))
    }
}
