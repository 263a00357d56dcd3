//! FNV-1a (64 bit): the one hash cara uses where a value must be the same in every
//! process, on every machine and in every version (alert ids, template ids, the
//! backtests' partitioner), unlike the standard library's hasher, whose algorithm
//! may change between Rust releases. Not for hash maps fed by users (no seed).

/// An FNV-1a hash being fed.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Feeds `bytes`.
    pub fn feed(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    /// The hash of everything fed.
    pub fn finish(&self) -> u64 {
        self.0
    }

    /// The hash of `bytes` alone.
    pub fn of(bytes: &[u8]) -> u64 {
        Fnv1a::default().feed(bytes).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_test_vectors() {
        // From the FNV reference test suite (Fowler, Noll, Vo).
        assert_eq!(Fnv1a::of(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv1a::of(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv1a::of(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn feeding_in_pieces_equals_feeding_at_once() {
        let mut pieces = Fnv1a::default();
        pieces.feed(b"foo").feed(b"bar");
        assert_eq!(pieces.finish(), Fnv1a::of(b"foobar"));
    }
}
