//! Deterministic hashing and random numbers.
//!
//! Hand-written so the engine's behaviour (distinct counts, novelty sets, the
//! forest's random splits) depends only on the configured seed, never on a
//! library's algorithm choice or on process-random hasher keys.

use std::net::IpAddr;

/// SplitMix64 finaliser: a cheap, well-mixing bijection on `u64`.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seeded FNV-1a over `bytes`, finalised with [`mix64`].
pub(crate) fn hash_bytes(seed: u64, tag: u8, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed ^ u64::from(tag);
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// Hash of an address (v4 and v6 never collide by construction of the tag).
pub(crate) fn hash_ip(seed: u64, ip: &IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(seed, 4, &v4.octets()),
        IpAddr::V6(v6) => hash_bytes(seed, 6, &v6.octets()),
    }
}

/// SplitMix64 generator: small, fast, reproducible forever.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)`; `n` must be non-zero (returns 0 otherwise).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the tiny bias is irrelevant here.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.next_f64();
            assert_eq!(x, b.next_f64());
            assert!((0.0..1.0).contains(&x));
            assert!(a.below(10) < 10);
            b.below(10);
        }
        assert_eq!(a.below(0), 0);
    }

    #[test]
    fn hashes_depend_on_seed_and_tag() {
        assert_ne!(hash_bytes(1, 0, b"a"), hash_bytes(2, 0, b"a"));
        assert_ne!(hash_bytes(1, 0, b"a"), hash_bytes(1, 1, b"a"));
        let v4: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(hash_ip(3, &v4), hash_ip(3, &v4));
    }
}
