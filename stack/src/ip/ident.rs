//! IPv4 Identification values for the datagrams we send.
//!
//! RFC 6864 §4: the ID must be unique per (source, destination, protocol)
//! among datagrams that may be fragmented and are alive at once. Like Linux,
//! we keep a table of counters indexed by a keyed hash of that triple, each
//! starting at a random value: IDs stay unique per destination, and an
//! off-path observer cannot read our packet rate to another host from them.

#![forbid(unsafe_code)]

use crate::rand::{KeyedHasher, Rng};
use std::net::Ipv4Addr;

const BUCKETS: usize = 1024;

/// Hands out IPv4 Identification values.
#[derive(Clone, Debug)]
pub struct IdGenerator {
    counters: Box<[u16; BUCKETS]>,
    hasher: KeyedHasher,
}

impl IdGenerator {
    /// A generator whose counters and hash key come from `rng`.
    pub fn new(rng: &mut Rng) -> IdGenerator {
        let mut counters = Box::new([0u16; BUCKETS]);
        for c in counters.iter_mut() {
            *c = rng.next_u32() as u16;
        }
        IdGenerator {
            counters,
            hasher: KeyedHasher::from_rng(rng),
        }
    }

    /// The ID for a datagram from `src` to `dst` carrying `protocol`, and
    /// the `count - 1` after it: a super-packet's segments get ID, ID + 1,
    /// ... from the device that cuts it (issue 16; Linux's
    /// `ip_select_ident_segs`). `count` is 1 for any other datagram.
    pub fn reserve(&mut self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, count: u16) -> u16 {
        let mut key = [0u8; 9];
        key[..4].copy_from_slice(&src.octets());
        key[4..8].copy_from_slice(&dst.octets());
        key[8] = protocol;
        let bucket = (self.hasher.hash(&key) % BUCKETS as u64) as usize;
        let c = &mut self.counters[bucket];
        let first = c.wrapping_add(1);
        *c = c.wrapping_add(count.max(1));
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_to_one_destination_do_not_repeat_within_a_wrap() {
        let mut g = IdGenerator::new(&mut Rng::new(5));
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..65536 {
            assert!(seen.insert(g.reserve(a, b, 1, 1)));
        }
    }

    #[test]
    fn different_seeds_start_differently() {
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
        let x = IdGenerator::new(&mut Rng::new(1)).reserve(a, b, 1, 1);
        let y = IdGenerator::new(&mut Rng::new(2)).reserve(a, b, 1, 1);
        assert_ne!(x, y);
    }

    /// A super-packet's segments take consecutive IDs; the next datagram follows them.
    #[test]
    fn a_reservation_takes_its_ids_and_the_next_follows() {
        let mut g = IdGenerator::new(&mut Rng::new(7));
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
        let first = g.reserve(a, b, 6, 45);
        assert_eq!(g.reserve(a, b, 6, 1), first.wrapping_add(45));
    }
}
