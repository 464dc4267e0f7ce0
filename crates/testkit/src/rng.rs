//! A tiny deterministic generator: the same seed gives the same data, the same
//! faults and the same test schedule on every machine and every version of
//! every dependency (a seeded generator from a crate may change its stream
//! between versions, and a failing seed must replay).

/// SplitMix64: one `u64` of state, good enough spread for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// One of `items` (non-empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        fraction(self.next_u64())
    }
}

/// The SplitMix64 finaliser: scrambles every bit of `z` into every bit.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in `[0, 1)` from the value of `parts`, in order.
pub(crate) fn unit(parts: &[u64]) -> f64 {
    let hash = parts
        .iter()
        .fold(0x2545_F491_4F6C_DD1D_u64, |acc, part| mix(acc ^ mix(*part)));
    fraction(hash)
}

/// The top 53 bits of `bits` as a number in `[0, 1)`.
fn fraction(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn unit_draws_spread_over_zero_to_one() {
        let draws: Vec<f64> = (0..10_000).map(|n| unit(&[1, n])).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let below_tenth = draws.iter().filter(|u| **u < 0.1).count();
        assert!((800..1200).contains(&below_tenth), "{below_tenth}");
    }
}
