//! Where the gateway keeps limit state: in this process, or in Redis when
//! several gateways share one budget.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;
use tollgate_core::{Charge, Decision, MemoryStore, Store, StoreError, Timestamp};
use tollgate_redis::ResilientStore;

/// The gateway's limit store.
#[derive(Clone)]
pub enum LimitStore {
    /// In this process: exact, and the fastest; one gateway per budget.
    Memory(Arc<MemoryStore<u64>>),
    /// In Redis, behind a circuit breaker that fails open or closed as
    /// configured: one exact budget across every gateway sharing it.
    Redis(ResilientStore<u64>),
}

impl LimitStore {
    /// What a request would get now, without charging it (a key's usage).
    pub async fn peek(
        &self,
        charges: &[Charge<u64>],
        now: Timestamp,
    ) -> Result<Decision, StoreError> {
        match self {
            LimitStore::Memory(store) => Ok(store.peek_at(charges, now)),
            LimitStore::Redis(store) => store.primary().peek(charges).await,
        }
    }

    /// Whether a decision is ready as soon as it is asked for: the store in
    /// memory never waits.
    pub fn answers_at_once(&self) -> bool {
        matches!(self, LimitStore::Memory(_))
    }

    /// The shared store's circuit breaker and its counters; `None` in memory.
    pub fn resilience(&self) -> Option<tollgate_redis::ResilienceStats> {
        match self {
            LimitStore::Memory(_) => None,
            LimitStore::Redis(store) => Some(store.stats()),
        }
    }

    /// True while the shared store is unreachable and decisions are made by
    /// the fallback (or refused).
    pub fn is_degraded(&self) -> bool {
        match self {
            LimitStore::Memory(_) => false,
            LimitStore::Redis(store) => store.is_degraded(),
        }
    }
}

impl Store<u64> for LimitStore {
    fn decide(
        &self,
        charges: &[Charge<u64>],
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        match self {
            LimitStore::Memory(store) => Either::Left(store.decide(charges)),
            LimitStore::Redis(store) => Either::Right(Box::pin(store.decide(charges))),
        }
    }
}
