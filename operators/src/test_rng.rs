//! A seeded xorshift generator for tests: reproducible streams without a dependency.

/// xorshift64 (Marsaglia); the seed must not be 0.
pub(crate) struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A deterministic value in [0, 1) from an index (a multiplicative hash: cheap,
/// reproducible, correlated between neighbouring indices, so use [`Rng`] where
/// independence matters).
pub(crate) fn hash_unit(i: u64) -> f64 {
    let x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (x >> 11) as f64 / (1u64 << 53) as f64
}
