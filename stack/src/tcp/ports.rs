//! Ephemeral ports for active opens: RFC 6056 §3.3.4, algorithm 4
//! ("double-hash port selection"), as Linux's `__inet_hash_connect`.
//!
//! A port need only be unique per 4-tuple, so the search for one starts at
//! F(local address, remote address, remote port, secret), where it is
//! unpredictable off-path and independent between servers, plus a counter
//! from a small table indexed by a second hash of the same endpoints: the
//! counter moves past every port handed out, so successive connects to one
//! server walk forward through free ports instead of re-probing the taken
//! ones. Each probe is one lookup by 4-tuple, so a connect costs O(1)
//! expected time while the range is not nearly full, and the whole range
//! at worst.

#![forbid(unsafe_code)]

use crate::rand::{KeyedHasher, Rng};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;

/// Counters in the table (Linux has 65,536; RFC 6056 suggests a few).
/// Endpoints that share one only share its walk, not a port.
const COUNTERS: usize = 1024;

/// The secret and the counters of RFC 6056's algorithm 4.
#[derive(Debug)]
pub(crate) struct PortPicker {
    secret: KeyedHasher,
    counters: Box<[u32]>,
}

/// The ports to try for one active open, in order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probe {
    counter: usize,
    start: u32,
    first: u16,
    span: u32,
}

impl Probe {
    /// Candidates: (probe number, port), each port of the range once.
    pub(crate) fn ports(&self) -> impl Iterator<Item = (u32, u16)> + use<> {
        let Probe { start, first, span, .. } = *self;
        (0..span).map(move |i| (i, first + ((start + i) % span) as u16))
    }
}

impl PortPicker {
    /// A picker with a secret key (shared with the ISNs': the inputs differ in length).
    pub(crate) fn new(secret: KeyedHasher) -> PortPicker {
        PortPicker {
            secret,
            counters: vec![0; COUNTERS].into_boxed_slice(),
        }
    }

    /// Where the search for a port from `local` to `remote` in `range` starts.
    pub(crate) fn probe(&self, range: RangeInclusive<u16>, local: Ipv4Addr, remote: SocketAddrV4) -> Probe {
        let mut key = [0u8; 14];
        key[..4].copy_from_slice(b"port");
        key[4..8].copy_from_slice(&local.octets());
        key[8..12].copy_from_slice(&remote.ip().octets());
        key[12..].copy_from_slice(&remote.port().to_be_bytes());
        let h = self.secret.hash(&key);
        // One 64-bit hash gives both: the low bits pick the counter (G),
        // the high half is the offset (F), as Linux splits its hash.
        let counter = h as usize % COUNTERS;
        let (first, last) = (*range.start(), *range.end());
        let span = u32::from(last.saturating_sub(first)) + 1;
        let start = ((h >> 32) as u32 % span + self.counters[counter] % span) % span;
        Probe {
            counter,
            start,
            first,
            span,
        }
    }

    /// Probe `i` of `probe` found a free port: the next search from these
    /// endpoints starts past it. As Linux, the step is at least a small
    /// random one, so that while ports are plentiful the next port cannot
    /// be told from this one.
    pub(crate) fn taken(&mut self, probe: &Probe, i: u32, rng: &mut Rng) {
        let step = i.max(rng.below(8) as u32) + 1;
        let c = &mut self.counters[probe.counter];
        *c = c.wrapping_add(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_cover_the_range_once_from_a_keyed_start() {
        let p = PortPicker::new(KeyedHasher::new(1, 2));
        let remote: SocketAddrV4 = "10.0.0.1:80".parse().unwrap();
        let local = Ipv4Addr::new(10, 0, 0, 2);
        let probe = p.probe(100..=199, local, remote);
        let mut ports: Vec<u16> = probe.ports().map(|(_, port)| port).collect();
        let first = ports[0];
        ports.sort_unstable();
        assert_eq!(ports, (100..=199).collect::<Vec<_>>());
        let other = PortPicker::new(KeyedHasher::new(1, 3));
        let firsts: Vec<u16> = (0..8u16)
            .map(|i| other.probe(100..=199, local, SocketAddrV4::new(*remote.ip(), 80 + i)))
            .map(|pr| pr.ports().next().unwrap().1)
            .collect();
        assert!(firsts.iter().any(|&f| f != first), "keyed: {first} vs {firsts:?}");
    }

    #[test]
    fn a_taken_port_moves_the_next_search_past_it() {
        let mut p = PortPicker::new(KeyedHasher::new(3, 4));
        let mut rng = Rng::new(5);
        let remote: SocketAddrV4 = "10.0.0.1:80".parse().unwrap();
        let local = Ipv4Addr::new(10, 0, 0, 2);
        let before = p.probe(1000..=1999, local, remote);
        p.taken(&before, 20, &mut rng);
        let after = p.probe(1000..=1999, local, remote);
        assert_eq!(
            after.start,
            (before.start + 21) % 1000,
            "past the 20 probes and the port"
        );
    }
}
