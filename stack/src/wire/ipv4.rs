//! IPv4 header validation on input (RFC 791, RFC 1122 §3.2.1) and writing on output.

#![forbid(unsafe_code)]

use super::checksum;
use crate::stats::Stats;
use etherparse::{IpNumber, Ipv4Header, Ipv4HeaderSlice};
use std::net::Ipv4Addr;

/// Minimum IPv4 header length.
pub const HEADER_LEN: usize = 20;

/// Why a received buffer is not a usable IPv4 packet; each maps to one counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Version field is not 4 (or the buffer is empty).
    NotIpv4,
    /// Fewer bytes than the header needs.
    TruncatedHeader,
    /// IHL below 5.
    BadIhl,
    /// Header checksum does not verify.
    BadChecksum,
    /// Total length larger than the bytes received.
    TotalLenExceedsPacket,
    /// Total length smaller than the header.
    TotalLenBelowHeader,
}

impl Ipv4Error {
    /// Bumps the counter for this reason.
    pub fn count(self, stats: &mut Stats) {
        let c = match self {
            Ipv4Error::NotIpv4 => &mut stats.ip_not_ipv4,
            Ipv4Error::TruncatedHeader => &mut stats.ip_truncated_header,
            Ipv4Error::BadIhl => &mut stats.ip_bad_ihl,
            Ipv4Error::BadChecksum => &mut stats.ip_bad_checksum,
            Ipv4Error::TotalLenExceedsPacket => &mut stats.ip_total_len_exceeds_packet,
            Ipv4Error::TotalLenBelowHeader => &mut stats.ip_total_len_below_header,
        };
        *c += 1;
    }
}

/// A validated IPv4 packet: header checked, trimmed to its total length.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<'a> {
    header: Ipv4HeaderSlice<'a>,
    payload: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    /// Validates `buf` in the order Linux's `ip_rcv_core` does: version, IHL,
    /// header present, checksum, then total length. Bytes past the total
    /// length (link padding) are ignored. Options are skipped, never parsed
    /// past their length.
    pub fn parse(buf: &'a [u8]) -> Result<Ipv4Packet<'a>, Ipv4Error> {
        let first = *buf.first().ok_or(Ipv4Error::NotIpv4)?;
        if first >> 4 != 4 {
            return Err(Ipv4Error::NotIpv4);
        }
        if buf.len() < HEADER_LEN {
            return Err(Ipv4Error::TruncatedHeader);
        }
        let ihl = usize::from(first & 0x0f) * 4;
        if ihl < HEADER_LEN {
            return Err(Ipv4Error::BadIhl);
        }
        if buf.len() < ihl {
            return Err(Ipv4Error::TruncatedHeader);
        }
        if !checksum::verify(&buf[..ihl]) {
            return Err(Ipv4Error::BadChecksum);
        }
        let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if total > buf.len() {
            return Err(Ipv4Error::TotalLenExceedsPacket);
        }
        if total < ihl {
            return Err(Ipv4Error::TotalLenBelowHeader);
        }
        // Every check etherparse makes has passed above.
        let header = Ipv4HeaderSlice::from_slice(&buf[..ihl]).map_err(|_| Ipv4Error::TruncatedHeader)?;
        Ok(Ipv4Packet {
            header,
            payload: &buf[ihl..total],
        })
    }

    /// The header bytes, options included.
    pub fn header_bytes(&self) -> &'a [u8] {
        self.header.slice()
    }

    /// The header's fields.
    pub fn header(&self) -> &Ipv4HeaderSlice<'a> {
        &self.header
    }

    /// The payload, trimmed to the total length.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        self.header.source_addr()
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        self.header.destination_addr()
    }

    /// Protocol number.
    pub fn protocol(&self) -> u8 {
        self.header.protocol().0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.header.ttl()
    }

    /// Identification field.
    pub fn ident(&self) -> u16 {
        self.header.identification()
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.header.fragments_offset().value()) * 8
    }

    /// More-fragments flag.
    pub fn more_fragments(&self) -> bool {
        self.header.more_fragments()
    }

    /// Whether this packet is one fragment of a larger datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.frag_offset() != 0
    }
}

/// Fields of a header we write; everything else is zero (no options, DSCP 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderFields {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol number.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_fragment: bool,
}

/// Writes a 20-byte header for a packet carrying `payload_len` bytes at
/// fragment offset `offset` (bytes, a multiple of 8) into `out`.
pub fn write_header(out: &mut [u8], f: &HeaderFields, payload_len: usize, offset: usize, more_fragments: bool) {
    debug_assert!(offset % 8 == 0 && payload_len + HEADER_LEN <= 65535);
    let mut h = Ipv4Header::new(
        payload_len as u16,
        f.ttl,
        IpNumber(f.protocol),
        f.src.octets(),
        f.dst.octets(),
    )
    .expect("payload length checked by the caller");
    h.identification = f.ident;
    h.dont_fragment = f.dont_fragment;
    h.more_fragments = more_fragments;
    h.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).expect("offset below 65536");
    h.header_checksum = h.calc_header_checksum();
    out[..HEADER_LEN].copy_from_slice(&h.to_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_packet(payload: &[u8]) -> Vec<u8> {
        let f = HeaderFields {
            src: Ipv4Addr::new(10, 200, 0, 1),
            dst: Ipv4Addr::new(10, 200, 0, 2),
            protocol: 1,
            ttl: 64,
            ident: 0x1234,
            dont_fragment: true,
        };
        let mut v = vec![0u8; HEADER_LEN + payload.len()];
        write_header(&mut v, &f, payload.len(), 0, false);
        v[HEADER_LEN..].copy_from_slice(payload);
        v
    }

    fn refresh_checksum(p: &mut [u8]) {
        let ihl = usize::from(p[0] & 0xf) * 4;
        p[10] = 0;
        p[11] = 0;
        let c = checksum::checksum(&p[..ihl]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn accepts_a_good_packet_and_reads_its_fields() {
        let p = good_packet(b"abcd");
        let pkt = Ipv4Packet::parse(&p).unwrap();
        assert_eq!(pkt.src(), Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(pkt.dst(), Ipv4Addr::new(10, 200, 0, 2));
        assert_eq!(pkt.protocol(), 1);
        assert_eq!(pkt.ttl(), 64);
        assert_eq!(pkt.ident(), 0x1234);
        assert!(!pkt.is_fragment());
        assert_eq!(pkt.payload(), b"abcd");
    }

    #[test]
    fn trailing_padding_is_trimmed() {
        let mut p = good_packet(b"abcd");
        p.extend_from_slice(&[0; 6]);
        assert_eq!(Ipv4Packet::parse(&p).unwrap().payload(), b"abcd");
    }

    #[test]
    fn rejects_empty_and_other_versions() {
        assert_eq!(Ipv4Packet::parse(&[]).unwrap_err(), Ipv4Error::NotIpv4);
        let mut p = good_packet(b"x");
        p[0] = 0x65;
        assert_eq!(Ipv4Packet::parse(&p).unwrap_err(), Ipv4Error::NotIpv4);
    }

    #[test]
    fn rejects_truncated_header() {
        let p = good_packet(b"");
        assert_eq!(Ipv4Packet::parse(&p[..12]).unwrap_err(), Ipv4Error::TruncatedHeader);
        // IHL says 24 bytes of header, only 20 present.
        let mut p = good_packet(b"");
        p[0] = 0x46;
        assert_eq!(Ipv4Packet::parse(&p).unwrap_err(), Ipv4Error::TruncatedHeader);
    }

    #[test]
    fn rejects_ihl_below_five() {
        for ihl in 0..5u8 {
            let mut p = good_packet(b"abcdefgh");
            p[0] = 0x40 | ihl;
            assert_eq!(Ipv4Packet::parse(&p).unwrap_err(), Ipv4Error::BadIhl, "ihl {ihl}");
        }
    }

    #[test]
    fn rejects_bad_checksum() {
        let mut p = good_packet(b"abcd");
        p[10] ^= 0x55;
        assert_eq!(Ipv4Packet::parse(&p).unwrap_err(), Ipv4Error::BadChecksum);
        // A payload error is not the header checksum's business.
        let mut p = good_packet(b"abcd");
        p[21] ^= 0xff;
        assert!(Ipv4Packet::parse(&p).is_ok());
    }

    #[test]
    fn rejects_total_length_beyond_buffer_or_below_header() {
        let mut p = good_packet(b"abcd");
        p[2..4].copy_from_slice(&100u16.to_be_bytes());
        refresh_checksum(&mut p);
        assert_eq!(Ipv4Packet::parse(&p).unwrap_err(), Ipv4Error::TotalLenExceedsPacket);
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        refresh_checksum(&mut p);
        assert_eq!(Ipv4Packet::parse(&p).unwrap_err(), Ipv4Error::TotalLenBelowHeader);
    }

    #[test]
    fn options_are_skipped_not_parsed() {
        // IHL 6 with a 4-byte option of garbage: payload starts after it.
        let mut p = good_packet(b"");
        p[0] = 0x46;
        p.splice(20..20, [0x94, 0x04, 0xff, 0xff]);
        p.extend_from_slice(b"data");
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        refresh_checksum(&mut p);
        let pkt = Ipv4Packet::parse(&p).unwrap();
        assert_eq!(pkt.header_bytes().len(), 24);
        assert_eq!(pkt.payload(), b"data");
    }

    #[test]
    fn written_fragment_headers_round_trip() {
        let f = HeaderFields {
            src: Ipv4Addr::new(1, 2, 3, 4),
            dst: Ipv4Addr::new(5, 6, 7, 8),
            protocol: 17,
            ttl: 3,
            ident: 77,
            dont_fragment: false,
        };
        let mut v = vec![0u8; 28];
        write_header(&mut v, &f, 8, 1480, true);
        let pkt = Ipv4Packet::parse(&v).unwrap();
        assert_eq!(pkt.frag_offset(), 1480);
        assert!(pkt.more_fragments());
        assert!(pkt.is_fragment());
        assert_eq!(pkt.ttl(), 3);
        assert_eq!(pkt.ident(), 77);
    }
}
