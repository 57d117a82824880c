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
}
