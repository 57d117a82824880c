//! The Internet checksum (RFC 1071), pseudo-headers, and incremental update (RFC 1624).
//!
//! Written by hand rather than taken from etherparse because it sits on the hot
//! path of every packet: this version adds 32-bit words into a 64-bit
//! accumulator (RFC 1071 §2 "deferred carries") and folds once at the end.

#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

/// A running ones'-complement sum over any number of byte slices.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checksum {
    acc: u64,
    /// Whether an odd number of bytes has been added so far.
    odd: bool,
}

/// Folds a 64-bit accumulator into 16 bits with end-around carries.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The ones'-complement sum of `data`, as if it started at an even offset.
fn raw_sum(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

impl Checksum {
    /// An empty sum.
    pub fn new() -> Checksum {
        Checksum::default()
    }

    /// Adds bytes; slices may have any length, in any split.
    pub fn add_bytes(&mut self, data: &[u8]) -> &mut Self {
        let s = fold(raw_sum(data));
        // A slice that starts at an odd offset contributes byte-swapped (RFC 1071 §2(B)).
        let s = if self.odd { s.rotate_left(8) } else { s };
        self.acc += u64::from(s);
        if data.len() % 2 == 1 {
            self.odd = !self.odd;
        }
        self
    }

    /// Adds one 16-bit word (at an even offset).
    pub fn add_u16(&mut self, v: u16) -> &mut Self {
        debug_assert!(!self.odd, "add_u16 at an odd offset");
        self.acc += u64::from(v);
        self
    }

    /// Adds an IPv4 address.
    pub fn add_addr(&mut self, a: Ipv4Addr) -> &mut Self {
        debug_assert!(!self.odd, "add_addr at an odd offset");
        self.acc += u64::from(u32::from(a));
        self
    }

    /// Adds the IPv4 pseudo-header used by UDP and TCP (RFC 768, RFC 9293 §3.1).
    pub fn add_pseudo_header(&mut self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> &mut Self {
        self.add_addr(src)
            .add_addr(dst)
            .add_u16(u16::from(protocol))
            .add_u16(len)
    }

    /// The folded sum, not complemented. A correct packet sums to 0xffff.
    pub fn sum(&self) -> u16 {
        fold(self.acc)
    }

    /// The checksum to put in a header: the complement of the sum.
    pub fn finish(&self) -> u16 {
        !self.sum()
    }
}

/// The checksum field value for `data` (with its checksum field zeroed).
pub fn checksum(data: &[u8]) -> u16 {
    Checksum::new().add_bytes(data).finish()
}

/// Whether `data`, checksum field included, sums to all ones.
pub fn verify(data: &[u8]) -> bool {
    Checksum::new().add_bytes(data).sum() == 0xffff
}

/// Recomputes checksum `hc` after one 16-bit word changed from `old` to `new` (RFC 1624 eqn. 3).
pub fn update(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!hc) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte-at-a-time reference: the definition, with no tricks.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(w);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn rfc1071_example_vector() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Checksum::new().add_bytes(&data).sum(), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header_vector() {
        // A well-known header (Wikipedia's IPv4 checksum example): checksum b861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(verify(&hdr));
        hdr[0] ^= 1;
        assert!(!verify(&hdr));
    }

    #[test]
    fn odd_lengths_and_any_split_match_the_reference() {
        let data: Vec<u8> = (0..1001u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 2, 3, 5, 8, 63, 64, 65, 1000, 1001] {
            let d = &data[..len];
            assert_eq!(checksum(d), reference(d), "len {len}");
            for split in [0, 1, 2, 3, len / 2, len.saturating_sub(1)] {
                let split = split.min(len);
                let mut c = Checksum::new();
                c.add_bytes(&d[..split]).add_bytes(&d[split..]);
                assert_eq!(c.finish(), reference(d), "len {len} split {split}");
            }
        }
    }

    #[test]
    fn all_ones_data_folds_correctly() {
        let data = vec![0xffu8; 70_000];
        assert_eq!(checksum(&data), reference(&data));
    }

    #[test]
    fn pseudo_header_matches_explicit_bytes() {
        let src = Ipv4Addr::new(10, 200, 0, 1);
        let dst = Ipv4Addr::new(10, 200, 0, 2);
        let payload = b"hello udp";
        let mut explicit = Vec::new();
        explicit.extend_from_slice(&src.octets());
        explicit.extend_from_slice(&dst.octets());
        explicit.extend_from_slice(&[0, 17, 0, payload.len() as u8]);
        explicit.extend_from_slice(payload);
        let mut c = Checksum::new();
        c.add_pseudo_header(src, dst, 17, payload.len() as u16)
            .add_bytes(payload);
        assert_eq!(c.finish(), checksum(&explicit));
    }

    #[test]
    fn rfc1624_incremental_update_matches_recompute() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        let hc = checksum(&hdr);
        // Decrement the TTL (the word holding TTL and protocol changes).
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] -= 1;
        let new = u16::from_be_bytes([hdr[8], hdr[9]]);
        assert_eq!(update(hc, old, new), checksum(&hdr));
        // Many random words: the updated header must still verify.
        let mut x: u32 = 12345;
        for _ in 0..1000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let hc = checksum(&hdr);
            let old = u16::from_be_bytes([hdr[4], hdr[5]]);
            let new = (x >> 8) as u16;
            hdr[4..6].copy_from_slice(&new.to_be_bytes());
            hdr[10..12].copy_from_slice(&update(hc, old, new).to_be_bytes());
            assert!(verify(&hdr));
            hdr[10..12].copy_from_slice(&[0, 0]);
        }
    }
}
