//! The in-memory snapshot of the active keys that the request hot path reads.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use subtle::ConstantTimeEq as _;

use super::KeyInfo;
use crate::ledger::{KeyActivity, Ledger};

/// A SHA-256 digest as a map key, held as four machine words. Its first word
/// is already uniformly distributed, so it is the hash: no SipHash over 32
/// bytes per request. Its equality, which the map's lookup ends with, takes
/// the same time wherever two digests differ, and four steps, not thirty-two.
#[derive(Debug)]
struct Digest([u64; 4]);

impl Digest {
    fn of(bytes: &[u8; 32]) -> Self {
        Self(std::array::from_fn(|i| {
            let mut word = [0; 8];
            word.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(word)
        }))
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0[..].ct_eq(&other.0[..]))
    }
}

impl Eq for Digest {}

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0[0]);
    }
}

/// Passes [`Digest`]'s `u64` through.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Digest`; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// One active key: what the hot path needs inline, the rest behind the `Arc`.
#[derive(Debug)]
struct Entry {
    id: u32,
    increments: u32,
    info: Arc<KeyInfo>,
    /// The key's record in the ring's ledger, from its first request on.
    activity: OnceLock<Arc<KeyActivity>>,
}

/// The active (not revoked) keys, by the SHA-256 hash of their secret.
///
/// Immutable once built: a write builds a new ring and swaps it in whole, so a
/// reader never sees a half-applied change.
#[derive(Debug, Default)]
pub(crate) struct KeyRing {
    by_hash: HashMap<Digest, Entry, BuildHasherDefault<DigestHasher>>,
    /// The ledger whose records the entries keep: the first one asked for.
    /// A later ring starts empty and fills itself again, one lookup per key.
    ledger: OnceLock<Arc<Ledger>>,
}

impl KeyRing {
    /// A ring of the given keys; revoked ones are left out.
    pub(crate) fn new(keys: impl IntoIterator<Item = ([u8; 32], KeyInfo)>) -> Self {
        let by_hash = keys
            .into_iter()
            .filter(|(_, info)| !info.revoked)
            .map(|(hash, info)| {
                let entry = Entry {
                    id: info.id,
                    increments: info.increments,
                    info: Arc::new(info),
                    activity: OnceLock::new(),
                };
                (Digest::of(&hash), entry)
            })
            .collect();
        Self {
            by_hash,
            ledger: OnceLock::new(),
        }
    }

    /// The entry of the key whose secret hashes to `hash`, if it is active.
    ///
    /// The map compares the stored hashes it finds with [`Digest`]'s
    /// constant-time equality, so the answer never rests on a
    /// short-circuiting `==`.
    fn entry(&self, hash: &[u8; 32]) -> Option<&Entry> {
        self.by_hash.get(&Digest::of(hash))
    }

    /// The key whose secret hashes to `hash`, if it is active.
    pub(crate) fn find(&self, hash: &[u8; 32]) -> Option<Arc<KeyInfo>> {
        self.entry(hash).map(|entry| Arc::clone(&entry.info))
    }

    /// The id and increments of the key whose secret hashes to `hash`, if it
    /// is active.
    pub(crate) fn find_id(&self, hash: &[u8; 32]) -> Option<(u32, u32)> {
        self.entry(hash).map(|entry| (entry.id, entry.increments))
    }

    /// [`find_id`](Self::find_id) with the key's record in `ledger`: kept in
    /// the entry after the first time, when `ledger` is the ring's ledger.
    pub(crate) fn find_in(
        &self,
        hash: &[u8; 32],
        ledger: &Arc<Ledger>,
    ) -> Option<(u32, u32, Arc<KeyActivity>)> {
        let entry = self.entry(hash)?;
        let activity = if Arc::ptr_eq(self.ledger.get_or_init(|| Arc::clone(ledger)), ledger) {
            Arc::clone(entry.activity.get_or_init(|| ledger.activity(entry.id)))
        } else {
            ledger.activity(entry.id)
        };
        Some((entry.id, entry.increments, activity))
    }

    /// How many active keys the ring holds.
    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_equal_only_when_every_byte_is() {
        let digest: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(Digest::of(&digest), Digest::of(&digest));
        for at in 0..32 {
            let mut other = digest;
            other[at] ^= 0x80;
            assert_ne!(Digest::of(&digest), Digest::of(&other), "byte {at} differs");
        }
    }
}
