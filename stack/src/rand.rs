//! Seeded randomness and keyed hashing for the core.
//!
//! The core never touches a global RNG: every random choice (IP IDs, ISNs,
//! ephemeral ports, impairment) comes from an [`Rng`] seeded by the caller or
//! a [`KeyedHasher`] whose key is derived from that seed. Same seed, same run.

#![forbid(unsafe_code)]

use core::hash::Hasher;
use siphasher::sip::SipHasher13;

/// A small, fast, seedable pseudo-random generator (xoshiro256**).
///
/// Not for secrets on its own: secret-dependent values (ISNs) go through a
/// [`KeyedHasher`], whose key the caller should take from the OS's RNG.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

/// SplitMix64: expands one 64-bit seed into well-mixed state words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut st = seed;
        Rng {
            s: [
                splitmix64(&mut st),
                splitmix64(&mut st),
                splitmix64(&mut st),
                splitmix64(&mut st),
            ],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniform value in `0..bound` (`bound` > 0), without modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "Rng::below needs a positive bound");
        // Lemire's multiply-shift with rejection.
        loop {
            let x = self.next_u64();
            let m = (x as u128) * (bound as u128);
            let low = m as u64;
            if low >= bound.wrapping_neg() % bound {
                return (m >> 64) as u64;
            }
        }
    }

    /// True with probability `p` (clamped to 0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits as a uniform float in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

/// A keyed hash (SipHash-1-3) for values an attacker must not predict or collide.
#[derive(Clone, Copy, Debug)]
pub struct KeyedHasher {
    k0: u64,
    k1: u64,
}

impl KeyedHasher {
    /// A hasher with a 128-bit key.
    pub fn new(k0: u64, k1: u64) -> KeyedHasher {
        KeyedHasher { k0, k1 }
    }

    /// A hasher whose key is drawn from `rng`.
    pub fn from_rng(rng: &mut Rng) -> KeyedHasher {
        KeyedHasher::new(rng.next_u64(), rng.next_u64())
    }

    /// Hashes a byte string.
    pub fn hash(&self, bytes: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(bytes);
        h.finish()
    }
}

/// A `BuildHasher` for the core's hash maps: keyed from the stack's seed, so
/// table order is deterministic per seed and collisions cannot be forced by
/// a remote peer who does not know the key (unlike a fixed hash), without
/// `RandomState`'s hidden read of the OS's randomness.
#[derive(Clone, Copy, Debug)]
pub struct SeededState {
    k0: u64,
    k1: u64,
}

impl SeededState {
    /// A state whose key is drawn from `rng`.
    pub fn from_rng(rng: &mut Rng) -> SeededState {
        SeededState {
            k0: rng.next_u64(),
            k1: rng.next_u64(),
        }
    }
}

impl core::hash::BuildHasher for SeededState {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Rng::new(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = r.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn chance_matches_probability_roughly() {
        let mut r = Rng::new(3);
        let hits = (0..100_000).filter(|_| r.chance(0.1)).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| r.chance(0.0)));
        assert!((0..1000).all(|_| r.chance(1.0)));
    }

    #[test]
    fn keyed_hash_depends_on_key() {
        let a = KeyedHasher::new(1, 2);
        let b = KeyedHasher::new(1, 3);
        assert_eq!(a.hash(b"tuple"), a.hash(b"tuple"));
        assert_ne!(a.hash(b"tuple"), b.hash(b"tuple"));
    }
}
