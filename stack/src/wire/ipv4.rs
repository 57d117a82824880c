//! The IPv4 header (RFC 791): one representation, [`Ipv4Header`], to parse
//! received packets (validated as RFC 1122 §3.2.1 and Linux ask), to read
//! the header an ICMP error quotes, and to write the headers we send.

#![forbid(unsafe_code)]

use super::checksum;
use std::net::Ipv4Addr;

/// Length of the header without options: the only length we send.
pub const HEADER_LEN: usize = 20;

/// Why a received buffer is not a usable IPv4 packet.
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

error_messages!(Ipv4Error {
    NotIpv4 => "not an IPv4 packet",
    TruncatedHeader => "truncated IPv4 header",
    BadIhl => "IPv4 header length below 20 bytes",
    BadChecksum => "bad IPv4 header checksum",
    TotalLenExceedsPacket => "IPv4 total length beyond the packet",
    TotalLenBelowHeader => "IPv4 total length below the header length",
});

/// The fields of an IPv4 header that tunstack reads and writes. TOS is
/// neither read nor set (0); options are skipped on input, never sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol number of the payload.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Identification (shared by the fragments of one datagram).
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_fragment: bool,
    /// More-fragments flag.
    pub more_fragments: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: usize,
    /// Header length in bytes, options included (IHL × 4).
    pub header_len: usize,
    /// Payload bytes: total length minus header length.
    pub payload_len: usize,
}

impl Ipv4Header {
    /// A header of ours: no options, not a fragment (yet), for `payload_len` bytes.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, ttl: u8, ident: u16, payload_len: usize) -> Ipv4Header {
        Ipv4Header {
            src,
            dst,
            protocol,
            ttl,
            ident,
            dont_fragment: false,
            more_fragments: false,
            frag_offset: 0,
            header_len: HEADER_LEN,
            payload_len,
        }
    }

    /// Reads the fields of a header whose length and presence were checked.
    fn read(buf: &[u8], header_len: usize, total_len: usize) -> Ipv4Header {
        let flags_offset = u16::from_be_bytes([buf[6], buf[7]]);
        Ipv4Header {
            src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
            dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
            protocol: buf[9],
            ttl: buf[8],
            ident: u16::from_be_bytes([buf[4], buf[5]]),
            dont_fragment: flags_offset & 0x4000 != 0,
            more_fragments: flags_offset & 0x2000 != 0,
            frag_offset: usize::from(flags_offset & 0x1fff) * 8,
            header_len,
            payload_len: total_len.saturating_sub(header_len),
        }
    }

    /// The header quoted by an ICMP error: version, IHL and the header's
    /// bytes are checked, the checksum and total length are not (the quote
    /// is cut short, and routers may have changed the header). Returns the
    /// header and what follows it in the quote.
    pub fn parse_quote(buf: &[u8]) -> Option<(Ipv4Header, &[u8])> {
        let first = *buf.first()?;
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < HEADER_LEN || buf.len() < header_len {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        Some((Ipv4Header::read(buf, header_len, total), &buf[header_len..]))
    }

    /// Whether the packet is one fragment of a larger datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.frag_offset != 0
    }

    /// Writes this header (20 bytes, checksum included) into the start of
    /// `out`. `header_len` must be 20: we never send options.
    pub fn emit(&self, out: &mut [u8]) {
        debug_assert!(self.header_len == HEADER_LEN && self.frag_offset % 8 == 0);
        debug_assert!(self.payload_len + HEADER_LEN <= 65535 && self.frag_offset < 65536);
        let h = &mut out[..HEADER_LEN];
        h[0] = 0x45;
        h[1] = 0;
        h[2..4].copy_from_slice(&((HEADER_LEN + self.payload_len) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let flags_offset = (u16::from(self.dont_fragment) << 14)
            | (u16::from(self.more_fragments) << 13)
            | (self.frag_offset / 8) as u16;
        h[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let sum = checksum::checksum(h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}

/// A validated IPv4 packet: its header, and its bytes trimmed to the total length.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<'a> {
    /// The header's fields.
    pub header: Ipv4Header,
    header_bytes: &'a [u8],
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
        Ok(Ipv4Packet {
            header: Ipv4Header::read(buf, ihl, total),
            header_bytes: &buf[..ihl],
            payload: &buf[ihl..total],
        })
    }

    /// The header bytes as received, options included.
    pub fn header_bytes(&self) -> &'a [u8] {
        self.header_bytes
    }

    /// The payload, trimmed to the total length.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_packet(payload: &[u8]) -> Vec<u8> {
        let mut h = Ipv4Header::new(
            Ipv4Addr::new(10, 200, 0, 1),
            Ipv4Addr::new(10, 200, 0, 2),
            1,
            64,
            0x1234,
            payload.len(),
        );
        h.dont_fragment = true;
        let mut v = vec![0u8; HEADER_LEN + payload.len()];
        h.emit(&mut v);
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
        let h = pkt.header;
        assert_eq!(h.src, Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(h.dst, Ipv4Addr::new(10, 200, 0, 2));
        assert_eq!(h.protocol, 1);
        assert_eq!(h.ttl, 64);
        assert_eq!(h.ident, 0x1234);
        assert!(h.dont_fragment && !h.is_fragment());
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
        let mut h = Ipv4Header::new(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8), 17, 3, 77, 8);
        h.frag_offset = 1480;
        h.more_fragments = true;
        let mut v = vec![0u8; 28];
        h.emit(&mut v);
        let pkt = Ipv4Packet::parse(&v).unwrap();
        assert_eq!(pkt.header, h);
        assert!(pkt.header.is_fragment());
        assert_eq!(pkt.payload().len(), 8);
    }

    /// etherparse, an independent implementation, reads what we write, and we
    /// read what it writes.
    #[test]
    fn round_trip_against_etherparse() {
        let mut h = Ipv4Header::new(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            200,
            0xbeef,
            100,
        );
        h.dont_fragment = true;
        h.frag_offset = 8 * 1234;
        let mut v = vec![0u8; HEADER_LEN + 100];
        h.emit(&mut v);
        let theirs = etherparse::Ipv4HeaderSlice::from_slice(&v).unwrap();
        assert_eq!(theirs.source_addr(), h.src);
        assert_eq!(theirs.destination_addr(), h.dst);
        assert_eq!(
            (theirs.protocol().0, theirs.ttl(), theirs.identification()),
            (6, 200, 0xbeef)
        );
        assert!(theirs.dont_fragment() && !theirs.more_fragments());
        assert_eq!(usize::from(theirs.fragments_offset().value()) * 8, h.frag_offset);
        assert_eq!(theirs.header_checksum(), theirs.to_header().calc_header_checksum());

        let mut e = etherparse::Ipv4Header::new(40, 9, etherparse::IpNumber(17), [1, 2, 3, 4], [5, 6, 7, 8]).unwrap();
        e.identification = 4321;
        e.more_fragments = true;
        e.fragment_offset = etherparse::IpFragOffset::try_new(185).unwrap();
        e.header_checksum = e.calc_header_checksum();
        let mut bytes = e.to_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 40]);
        let ours = Ipv4Packet::parse(&bytes).unwrap().header;
        assert_eq!(
            (ours.src, ours.dst),
            (Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8))
        );
        assert_eq!((ours.protocol, ours.ttl, ours.ident), (17, 9, 4321));
        assert_eq!(
            (ours.more_fragments, ours.frag_offset, ours.payload_len),
            (true, 1480, 40)
        );
    }

    #[test]
    fn quoted_header_is_read_without_checksum_or_length_checks() {
        let mut p = good_packet(b"12345678");
        p[10] ^= 0xff; // a router may have changed the header; its checksum is not ours to check
        let (h, rest) = Ipv4Header::parse_quote(&p[..24]).unwrap();
        assert_eq!((h.src, h.protocol, h.payload_len), (Ipv4Addr::new(10, 200, 0, 1), 1, 8));
        assert_eq!(rest, b"1234");
        assert!(Ipv4Header::parse_quote(&p[..19]).is_none());
        p[0] = 0x44;
        assert!(Ipv4Header::parse_quote(&p).is_none());
    }
}
