//! Key secrets: generation, hashing, validation and the redacted form used in logs.

use std::fmt;

use rand::Rng as _;
use rand::distr::Alphanumeric;
use sha2::{Digest as _, Sha256};

use super::KeyError;

/// What every generated secret starts with, so a leaked one is recognisable.
pub const SECRET_PREFIX: &str = "tg_";

/// Random alphanumeric characters after the prefix: 32 × log2(62) ≈ 190 bits.
const RANDOM_CHARS: usize = 32;

/// The fewest characters [`Keys::create_with_secret`](super::Keys::create_with_secret) accepts.
pub const MIN_SECRET_CHARS: usize = 16;

/// A key's secret, as handed out once on creation.
///
/// `Debug` and `Display` show only its last five characters (`…Xy7Qz`), so it
/// can be logged by accident without leaking; [`Secret::expose`] gives the value.
pub struct Secret(String);

impl Secret {
    /// A fresh secret: [`SECRET_PREFIX`] and 32 random alphanumeric characters
    /// from the thread-local CSPRNG (ChaCha, seeded from the OS).
    pub(crate) fn generate() -> Self {
        let random = rand::rng()
            .sample_iter(Alphanumeric)
            .take(RANDOM_CHARS)
            .map(char::from);
        Self(SECRET_PREFIX.chars().chain(random).collect())
    }

    /// The secret itself, to hand to the key's owner. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(…{})", last5(&self.0))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "…{}", last5(&self.0))
    }
}

/// The last five characters (not bytes) of `secret`: the only part of a key
/// that is ever logged or shown. A string shorter than five is returned whole.
pub fn last5(secret: &str) -> &str {
    secret
        .char_indices()
        .rev()
        .nth(4)
        .map_or(secret, |(start, _)| &secret[start..])
}

/// SHA-256 of the secret: what the database stores and the snapshot is keyed by.
pub(crate) fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Rejects a chosen secret that is too short or could not travel in an HTTP header.
pub(crate) fn validate(secret: &str) -> Result<(), KeyError> {
    let chars = secret.chars().count();
    if chars < MIN_SECRET_CHARS {
        return Err(KeyError::WeakSecret {
            chars,
            min: MIN_SECRET_CHARS,
        });
    }
    if !secret.chars().all(|c| c.is_ascii_graphic()) {
        return Err(KeyError::SecretNotHeaderSafe);
    }
    Ok(())
}
