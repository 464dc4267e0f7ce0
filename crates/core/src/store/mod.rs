//! Where limit state lives: the [`Store`] interface, and [`MemoryStore`], the
//! in-process implementation.
//!
//! One call decides one request against every limit it matches, so a backend
//! that is not in this process (Redis) can do the whole decision atomically in
//! one round trip, with exactly the semantics of the in-memory store.

mod memory;
pub(crate) mod shards;
mod table;

use std::future::Future;

pub use memory::MemoryStore;

use crate::decision::{Decision, LimitId};
use crate::quota::Quota;

/// One limit a request matches: which limit, for which key, with which quota
/// (the key's own quota, after tiers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge<K> {
    /// The limit whose state is consulted.
    pub limit: LimitId,
    /// Whose budget within that limit: an API key, an endpoint, or both.
    pub key: K,
    /// What the limit allows this key.
    pub quota: Quota,
}

/// A store could not decide (a backend is unreachable, or answered nonsense).
///
/// Rejections are not errors: they are [`Decision`]s.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    message: String,
    transient: bool,
}

impl StoreError {
    /// A failure that may pass by itself (a timeout, a lost connection).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
        }
    }

    /// A failure that retrying will not fix (a script the backend refuses).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// Decides requests against limit state, wherever it lives.
///
/// Contract, for every implementation: the request is admitted only if every
/// charge admits it, and then every charge is recorded; a rejected request records
/// nothing anywhere; concurrent calls never admit more than a quota allows. The
/// charges of one call name distinct `(limit, key)` pairs.
pub trait Store<K>: Send + Sync {
    /// Decides one request now.
    fn decide(
        &self,
        charges: &[Charge<K>],
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send;
}

impl<K, S: Store<K> + ?Sized> Store<K> for std::sync::Arc<S> {
    fn decide(
        &self,
        charges: &[Charge<K>],
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        (**self).decide(charges)
    }
}
