//! Paid limit increases: a key's limit is `base + increments × step`.

/// How a tiered limit grows with a key's paid increments.
///
/// The seeds' provider bills "per additional 50 requests per minute": base 50,
/// step 50.
///
/// ```
/// use tollgate_core::Tier;
/// let tier = Tier::default();
/// assert_eq!(tier.limit(0), 50);
/// assert_eq!(tier.limit(2), 150);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tier {
    /// The limit with no increment.
    pub base: u32,
    /// What each increment adds.
    pub step: u32,
}

impl Tier {
    /// The limit for a key with `increments` paid increments (saturating).
    pub fn limit(&self, increments: u32) -> u32 {
        self.base
            .saturating_add(increments.saturating_mul(self.step))
    }
}

impl Default for Tier {
    fn default() -> Self {
        Self { base: 50, step: 50 }
    }
}
