//! A small deterministic random source for choosing what a power cut leaves.

use crate::model::Outcome;

/// A small deterministic random source (xorshift64*), so a failing cut can be replayed from
/// its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An outcome for one file or directory: half the time the strict one ([`Outcome::Lost`]),
    /// otherwise one of the others.
    pub fn outcome(&mut self) -> Outcome {
        match self.below(10) {
            0..=4 => Outcome::Lost,
            5 => Outcome::Zeroed,
            6 => Outcome::Torn,
            7 | 8 => Outcome::Scattered,
            _ => Outcome::Kept,
        }
    }
}
