//! Randomness you can seed: the source jitter, hedging and chaos draw from.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of random numbers for jitter, shared by every call of a layer.
///
/// It is called only when a retry is scheduled, through `&self`, so an
/// implementation must be thread safe. Closures `Fn() -> u64` implement it.
pub trait RandomSource: Send + Sync + 'static {
    /// A uniformly distributed 64-bit number.
    fn next_u64(&self) -> u64;
}

impl<F> RandomSource for F
where
    F: Fn() -> u64 + Send + Sync + 'static,
{
    fn next_u64(&self) -> u64 {
        self()
    }
}

/// A seedable, lock-free generator (SplitMix64 over an atomic counter).
///
/// With the same seed and the same order of draws it gives the same
/// numbers, so tests with jitter are deterministic.
#[derive(Debug)]
pub struct SeededRandom {
    state: AtomicU64,
}

impl SeededRandom {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the process's hash randomness.
    pub fn from_entropy() -> Self {
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u64(0x5EED);
        Self::new(hasher.finish())
    }
}

impl RandomSource for SeededRandom {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The generator used when none is given: one per process, seeded from the
/// process's hash randomness, shared without a lock.
pub(crate) fn default_random() -> &'static SeededRandom {
    static DEFAULT: std::sync::LazyLock<SeededRandom> =
        std::sync::LazyLock::new(SeededRandom::from_entropy);
    &DEFAULT
}

/// A uniform number in `[0, 1)` from 64 random bits.
pub(crate) fn unit_interval(bits: u64) -> f64 {
    // 53 bits fill the mantissa of an f64 exactly.
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_random_is_deterministic_and_uniform_enough() {
        let a = SeededRandom::new(7);
        let b = SeededRandom::new(7);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
        assert_eq!(unit_interval(0), 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
    }
}
