//! A fixed array of independently locked shards, chosen by hash.
//!
//! Keys spread over many small locks instead of one big one, so concurrent
//! decisions for different keys almost never wait for each other.

use std::hash::{BuildHasher, Hash};

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, MutexGuard};

/// Shards by default: enough that 2–16 cores rarely meet on one lock.
pub(crate) const DEFAULT_SHARDS: usize = 64;

pub(crate) struct Shards<T> {
    /// Cache-padded so that two cores working on neighbouring shards do not
    /// fight over one cache line.
    shards: Box<[CachePadded<Mutex<T>>]>,
    hasher: foldhash::fast::RandomState,
}

impl<T> Shards<T> {
    pub(crate) fn new(count: usize, mut make: impl FnMut() -> T) -> Self {
        let count = count.max(1).next_power_of_two();
        Self {
            shards: (0..count)
                .map(|_| CachePadded::new(Mutex::new(make())))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub(crate) fn hash(&self, value: &impl Hash) -> u64 {
        self.hasher.hash_one(value)
    }

    /// The shard for a hash. Uses bits 40 and up: the tables inside a shard index
    /// by the low bits and tag by the top seven, and must not see the same bits
    /// in every entry.
    pub(crate) fn index(&self, hash: u64) -> usize {
        (hash >> 40) as usize & (self.shards.len() - 1)
    }

    pub(crate) fn lock(&self, index: usize) -> MutexGuard<'_, T> {
        self.shards[index].lock()
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.len()
    }
}
