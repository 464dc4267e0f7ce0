//! One limit's states within one shard, typed by algorithm.

use std::hash::Hash;

use hashbrown::HashTable;

use crate::algorithm::{FixedWindow, Gcra, LimitState, Peek, RollingLog, SlidingCounter};
use crate::clock::nanos_of;
use crate::quota::{Algorithm, Quota};

/// The states of one limit's keys.
pub(super) struct Entries<K, S> {
    /// The limit's window, for deciding when a key is idle.
    window: u64,
    map: HashTable<(K, S)>,
}

impl<K: Hash + Eq + Clone, S: LimitState> Entries<K, S> {
    fn new(window: u64) -> Self {
        Self {
            window,
            map: HashTable::new(),
        }
    }

    fn peek(&mut self, hash: u64, key: &K, quota: &Quota, now: u64) -> Peek {
        match self.map.find_mut(hash, |(k, _)| k == key) {
            Some((_, state)) => state.peek(quota, now),
            None => S::fresh(quota).peek(quota, now),
        }
    }

    fn charge(&mut self, hash: u64, key: &K, quota: &Quota, now: u64, rehash: impl Fn(&K) -> u64) {
        let entry = self
            .map
            .entry(hash, |(k, _)| k == key, |(k, _)| rehash(k))
            .or_insert_with(|| (key.clone(), S::fresh(quota)));
        entry.into_mut().1.charge(quota, now);
    }

    /// Peeks and, when admitted and `commit`, charges, with one lookup: the
    /// path of a request that matches a single limit.
    fn decide(
        &mut self,
        hash: u64,
        key: &K,
        quota: &Quota,
        now: u64,
        commit: bool,
        rehash: impl Fn(&K) -> u64,
    ) -> Peek {
        if let Some((_, state)) = self.map.find_mut(hash, |(k, _)| k == key) {
            let peek = state.peek(quota, now);
            if peek.admitted && commit {
                state.charge(quota, now);
            }
            return peek;
        }
        let mut state = S::fresh(quota);
        let peek = state.peek(quota, now);
        if peek.admitted && commit {
            state.charge(quota, now);
            self.map
                .insert_unique(hash, (key.clone(), state), |(k, _)| rehash(k));
        }
        peek
    }

    fn sweep(&mut self, now: u64, rehash: impl Fn(&K) -> u64) {
        let window = self.window;
        self.map.retain(|(_, state)| !state.is_idle(window, now));
        // Give memory back once most of the table is empty, not on every sweep.
        if self.map.len() * 4 < self.map.capacity() {
            self.map.shrink_to(self.map.len() * 2, |(k, _)| rehash(k));
        }
    }
}

/// One limit's table, or nothing yet.
pub(super) enum Table<K> {
    Unused,
    Rolling(Entries<K, RollingLog>),
    Fixed(Entries<K, FixedWindow>),
    Gcra(Entries<K, Gcra>),
    SlidingCounter(Entries<K, SlidingCounter>),
}

macro_rules! dispatch {
    ($table:expr, $entries:ident => $body:expr, $unused:expr) => {
        match $table {
            Table::Unused => $unused,
            Table::Rolling($entries) => $body,
            Table::Fixed($entries) => $body,
            Table::Gcra($entries) => $body,
            Table::SlidingCounter($entries) => $body,
        }
    };
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn for_quota(quota: &Quota) -> Self {
        let window = nanos_of(quota.rate.window());
        match quota.algorithm {
            Algorithm::Rolling => Table::Rolling(Entries::new(window)),
            Algorithm::Fixed => Table::Fixed(Entries::new(window)),
            Algorithm::Gcra { .. } => Table::Gcra(Entries::new(window)),
            Algorithm::SlidingCounter => Table::SlidingCounter(Entries::new(window)),
        }
    }

    /// Whether this table keeps state the way `quota` needs. A limit whose
    /// algorithm or window changed starts afresh; a changed count (a tier) keeps
    /// its state.
    fn fits(&self, quota: &Quota) -> bool {
        let window = nanos_of(quota.rate.window());
        match (self, quota.algorithm) {
            (Table::Rolling(e), Algorithm::Rolling) => e.window == window,
            (Table::Fixed(e), Algorithm::Fixed) => e.window == window,
            (Table::Gcra(e), Algorithm::Gcra { .. }) => e.window == window,
            (Table::SlidingCounter(e), Algorithm::SlidingCounter) => e.window == window,
            _ => false,
        }
    }

    /// The table for `quota`, replacing one that no longer fits.
    pub(super) fn prepare(&mut self, quota: &Quota) -> &mut Self {
        if !self.fits(quota) {
            *self = Self::for_quota(quota);
        }
        self
    }

    pub(super) fn peek(&mut self, hash: u64, key: &K, quota: &Quota, now: u64) -> Peek {
        dispatch!(self, e => e.peek(hash, key, quota, now), unreachable!("prepared before use"))
    }

    pub(super) fn charge(
        &mut self,
        hash: u64,
        key: &K,
        quota: &Quota,
        now: u64,
        rehash: impl Fn(&K) -> u64,
    ) {
        dispatch!(self, e => e.charge(hash, key, quota, now, rehash), unreachable!("prepared before use"))
    }

    pub(super) fn decide(
        &mut self,
        hash: u64,
        key: &K,
        quota: &Quota,
        now: u64,
        commit: bool,
        rehash: impl Fn(&K) -> u64,
    ) -> Peek {
        dispatch!(self, e => e.decide(hash, key, quota, now, commit, rehash), unreachable!("prepared before use"))
    }

    pub(super) fn sweep(&mut self, now: u64, rehash: impl Fn(&K) -> u64) {
        dispatch!(self, e => e.sweep(now, rehash), ())
    }

    pub(super) fn len(&self) -> usize {
        dispatch!(self, e => e.map.len(), 0)
    }
}
