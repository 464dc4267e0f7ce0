//! The in-memory snapshot of the active keys that the request hot path reads.

use std::collections::HashMap;
use std::sync::Arc;

use subtle::ConstantTimeEq as _;

use super::KeyInfo;

/// The active (not revoked) keys, by the SHA-256 hash of their secret.
///
/// Immutable once built: a write builds a new ring and swaps it in whole, so a
/// reader never sees a half-applied change.
#[derive(Debug, Default)]
pub(crate) struct KeyRing {
    by_hash: HashMap<[u8; 32], Arc<KeyInfo>>,
}

impl KeyRing {
    /// A ring of the given keys; revoked ones are left out.
    pub(crate) fn new(keys: impl IntoIterator<Item = ([u8; 32], KeyInfo)>) -> Self {
        let by_hash = keys
            .into_iter()
            .filter(|(_, info)| !info.revoked)
            .map(|(hash, info)| (hash, Arc::new(info)))
            .collect();
        Self { by_hash }
    }

    /// The key whose secret hashes to `hash`, if it is active.
    ///
    /// The map finds the candidate; the stored hash is then compared in
    /// constant time as well, so the answer never rests on a short-circuiting `==`.
    pub(crate) fn find(&self, hash: &[u8; 32]) -> Option<Arc<KeyInfo>> {
        let (stored, info) = self.by_hash.get_key_value(hash)?;
        bool::from(stored[..].ct_eq(&hash[..])).then(|| Arc::clone(info))
    }

    /// How many active keys the ring holds.
    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }
}
