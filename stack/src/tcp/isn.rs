//! Initial sequence numbers (RFC 6528): ISN = M + F(4-tuple, secret), where M
//! is a clock ticking every 4 microseconds and F a keyed hash (SipHash), so
//! ISNs are unpredictable off-path yet increase for reuses of one 4-tuple.

#![forbid(unsafe_code)]

use crate::rand::KeyedHasher;
use crate::time::Instant;
use crate::wire::seq::SeqNum;
use std::net::SocketAddrV4;

/// Chooses ISNs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IsnGenerator {
    secret: KeyedHasher,
}

impl IsnGenerator {
    /// A generator with a secret key.
    pub(crate) fn new(secret: KeyedHasher) -> IsnGenerator {
        IsnGenerator { secret }
    }

    /// The ISN for a connection from `local` to `remote` at `now`.
    pub(crate) fn isn(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> SeqNum {
        let mut key = [0u8; 12];
        key[..4].copy_from_slice(&local.ip().octets());
        key[4..6].copy_from_slice(&local.port().to_be_bytes());
        key[6..10].copy_from_slice(&remote.ip().octets());
        key[10..12].copy_from_slice(&remote.port().to_be_bytes());
        let f = self.secret.hash(&key) as u32;
        let m = (now.total_micros() / 4) as u32;
        SeqNum(m.wrapping_add(f))
    }

    /// The offset added to our millisecond clock for TSvals to `remote`
    /// (RFC 7323 §5.4, as Linux's secure_tcp_ts_off): keyed by the two
    /// addresses only, so every connection between two hosts counts on one
    /// clock, and a new connection's SYN passes PAWS at a peer still holding
    /// the last one in TIME-WAIT; unpredictable, so TSvals tell nothing of
    /// our uptime.
    pub(crate) fn ts_offset(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        let mut key = [0u8; 10];
        key[..2].copy_from_slice(b"ts");
        key[2..6].copy_from_slice(&local.ip().octets());
        key[6..10].copy_from_slice(&remote.ip().octets());
        (self.secret.hash(&key) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn keyed_per_tuple_and_advancing_with_the_clock() {
        let g = IsnGenerator::new(KeyedHasher::new(1, 2));
        let (l, r) = (a("10.0.0.2:80"), a("10.0.0.1:5000"));
        let t = Instant::from_secs(10);
        let x = g.isn(t, l, r);
        assert_ne!(x, g.isn(t, l, a("10.0.0.1:5001")), "depends on the tuple");
        assert_ne!(
            x,
            IsnGenerator::new(KeyedHasher::new(1, 3)).isn(t, l, r),
            "depends on the key"
        );
        let later = g.isn(t + Duration::from_millis(1), l, r);
        assert_eq!(later.wrapping_distance_from(x), 250, "4 µs ticks");
    }

    #[test]
    fn timestamp_offsets_are_per_pair_of_hosts() {
        let g = IsnGenerator::new(KeyedHasher::new(7, 9));
        let one = g.ts_offset(a("10.200.0.2:40000"), a("10.200.0.1:80"));
        assert_eq!(
            one,
            g.ts_offset(a("10.200.0.2:40001"), a("10.200.0.1:8080")),
            "ports do not matter"
        );
        assert_ne!(
            one,
            g.ts_offset(a("10.200.0.2:40000"), a("10.200.0.3:80")),
            "another host, another clock"
        );
        let other = IsnGenerator::new(KeyedHasher::new(8, 9));
        assert_ne!(one, other.ts_offset(a("10.200.0.2:40000"), a("10.200.0.1:80")), "keyed");
    }
}
