//! One limit's states within one shard, typed by algorithm.

use std::hash::Hash;

use hashbrown::HashTable;

use crate::algorithm::{FixedWindow, Gcra, LimitState, Peek, RollingLog, SlidingCounter};
use crate::clock::nanos_of;
use crate::quota::{Algorithm, Quota};

/// A key and its state, as one element of a table.
pub(super) trait Slot<K, S> {
    fn new(key: K, state: S) -> Self;
    fn key(&self) -> &K;
    fn state(&self) -> &S;
    fn state_mut(&mut self) -> &mut S;
}

/// A key and its state, packed at their natural alignment: for small states.
impl<K, S> Slot<K, S> for (K, S) {
    fn new(key: K, state: S) -> Self {
        (key, state)
    }
    fn key(&self) -> &K {
        &self.0
    }
    fn state(&self) -> &S {
        &self.1
    }
    fn state_mut(&mut self) -> &mut S {
        &mut self.1
    }
}

/// A key and its state starting on a cache line, so that a state sized to fill
/// the rest of the line is read with one memory access, not two.
#[repr(C, align(64))]
pub(super) struct Line<K, S> {
    key: K,
    state: S,
}

impl<K, S> Slot<K, S> for Line<K, S> {
    fn new(key: K, state: S) -> Self {
        Self { key, state }
    }
    fn key(&self) -> &K {
        &self.key
    }
    fn state(&self) -> &S {
        &self.state
    }
    fn state_mut(&mut self) -> &mut S {
        &mut self.state
    }
}

/// The states of one limit's keys.
pub(super) struct Entries<K, S, E = (K, S)> {
    /// The limit's window, for deciding when a key is idle.
    window: u64,
    map: HashTable<E>,
    _state: std::marker::PhantomData<fn(K) -> S>,
}

impl<K: Hash + Eq + Clone, S: LimitState, E: Slot<K, S>> Entries<K, S, E> {
    fn new(window: u64) -> Self {
        Self {
            window,
            map: HashTable::new(),
            _state: std::marker::PhantomData,
        }
    }

    fn peek(&mut self, hash: u64, key: &K, quota: &Quota, now: u64) -> Peek {
        match self.map.find_mut(hash, |e| e.key() == key) {
            Some(entry) => entry.state_mut().peek(quota, now),
            None => S::fresh(quota).peek(quota, now),
        }
    }

    fn charge(&mut self, hash: u64, key: &K, quota: &Quota, now: u64, rehash: impl Fn(&K) -> u64) {
        let entry = self
            .map
            .entry(hash, |e| e.key() == key, |e| rehash(e.key()))
            .or_insert_with(|| E::new(key.clone(), S::fresh(quota)));
        entry.into_mut().state_mut().charge(quota, now);
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
        if let Some(entry) = self.map.find_mut(hash, |e| e.key() == key) {
            let state = entry.state_mut();
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
                .insert_unique(hash, E::new(key.clone(), state), |e| rehash(e.key()));
        }
        peek
    }

    fn sweep(&mut self, now: u64, rehash: impl Fn(&K) -> u64) {
        let window = self.window;
        self.map.retain(|e| !e.state().is_idle(window, now));
        // Give memory back once most of the table is empty, not on every sweep.
        if self.map.len() * 4 < self.map.capacity() {
            self.map.shrink_to(self.map.len() * 2, |e| rehash(e.key()));
        }
    }
}

/// One limit's table, or nothing yet.
pub(super) enum Table<K> {
    Unused,
    /// A `u64` key and its log fill one cache line: see [`RollingLog`].
    Rolling(Entries<K, RollingLog, Line<K, RollingLog>>),
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
