//! TCP segments (RFC 9293 §3.1): one representation, [`TcpSegment`], to
//! validate received segments (pseudo-header checksum, options), and to
//! write ours, with the payload copied straight from a send buffer.

#![forbid(unsafe_code)]

use super::checksum::Checksum;
use super::seq::SeqNum;
use std::net::Ipv4Addr;

/// IP protocol number of TCP.
pub const PROTOCOL: u8 = 6;

/// Length of the TCP header without options.
pub const HEADER_LEN: usize = 20;

/// Flag bits.
pub mod flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer is significant.
    pub const URG: u8 = 0x20;
}

/// The options tunstack understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only).
    pub mss: Option<u16>,
    /// Window scale shift (SYN only, RFC 7323).
    pub window_scale: Option<u8>,
    /// SACK permitted (SYN only, RFC 2018).
    pub sack_permitted: bool,
    /// Timestamps: value and echo reply (RFC 7323).
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks (RFC 2018): the first reports the newest data (or a
    /// duplicate, D-SACK, RFC 2883).
    pub sack: SackBlocks,
}

/// Up to four SACK blocks, each `[left, right)` in sequence space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SackBlocks {
    blocks: [(SeqNum, SeqNum); 4],
    len: u8,
}

impl SackBlocks {
    /// Most blocks one option carries (40 option bytes: 2 + 4 × 8).
    pub const MAX: usize = 4;

    /// Adds a block; false (and nothing added) when full.
    pub fn push(&mut self, left: SeqNum, right: SeqNum) -> bool {
        if usize::from(self.len) == Self::MAX {
            return false;
        }
        self.blocks[usize::from(self.len)] = (left, right);
        self.len += 1;
        true
    }

    /// The blocks, in order.
    pub fn as_slice(&self) -> &[(SeqNum, SeqNum)] {
        &self.blocks[..usize::from(self.len)]
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl TcpOptions {
    /// Bytes these options take in a header, NOP alignment included.
    pub fn len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        n += match (self.sack_permitted, self.timestamps.is_some()) {
            (_, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            n += 4;
        }
        if !self.sack.is_empty() {
            n += 4 + 8 * self.sack.len();
        }
        n
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a segment was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpError {
    /// Shorter than 20 bytes.
    Truncated,
    /// Data offset below 5 words or beyond the segment.
    BadOffset,
    /// Checksum wrong.
    BadChecksum,
}

error_messages!(TcpError {
    Truncated => "TCP segment shorter than its header",
    BadOffset => "TCP data offset outside the segment",
    BadChecksum => "bad TCP checksum",
});

/// A TCP segment: header fields, options, and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: SeqNum,
    /// Acknowledgment number.
    pub ack: SeqNum,
    /// Flag bits (see [`flags`]).
    pub flags: u8,
    /// Window as on the wire (unscaled).
    pub window: u16,
    /// Options.
    pub options: TcpOptions,
    /// Data.
    pub payload: &'a [u8],
}

impl<'a> TcpSegment<'a> {
    /// Validates `bytes` (the IP payload) from `src` to `dst`.
    pub fn parse(bytes: &'a [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<TcpSegment<'a>, TcpError> {
        Self::parse_checked(bytes, Some((src, dst)))
    }

    /// As [`parse`](Self::parse), but the checksum is not verified: for a
    /// segment whose checksum the device vouches for (a TUN's `NEEDS_CSUM`
    /// or `DATA_VALID`, issue 16), whose checksum field may hold only the
    /// pseudo-header sum.
    pub fn parse_trusted(bytes: &'a [u8]) -> Result<TcpSegment<'a>, TcpError> {
        Self::parse_checked(bytes, None)
    }

    /// Parses, verifying the checksum against the pseudo-header of `addrs` if given.
    fn parse_checked(bytes: &'a [u8], addrs: Option<(Ipv4Addr, Ipv4Addr)>) -> Result<TcpSegment<'a>, TcpError> {
        if bytes.len() < HEADER_LEN {
            return Err(TcpError::Truncated);
        }
        let offset = usize::from(bytes[12] >> 4) * 4;
        if offset < HEADER_LEN || offset > bytes.len() {
            return Err(TcpError::BadOffset);
        }
        let len = u16::try_from(bytes.len()).map_err(|_| TcpError::Truncated)?;
        if let Some((src, dst)) = addrs {
            let mut c = Checksum::new();
            c.add_pseudo_header(src, dst, PROTOCOL, len).add_bytes(bytes);
            if c.sum() != 0xffff {
                return Err(TcpError::BadChecksum);
            }
        }
        let be16 = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Ok(TcpSegment {
            src_port: be16(0),
            dst_port: be16(2),
            seq: SeqNum(be32(4)),
            ack: SeqNum(be32(8)),
            flags: bytes[13] & 0x3f,
            window: be16(14),
            options: parse_options(&bytes[HEADER_LEN..offset]),
            payload: &bytes[offset..],
        })
    }

    /// The segment an ICMP error quotes: RFC 792 promises its first 8 bytes
    /// (ports and sequence number); the other header fields are read when
    /// the quote holds them, else zero. Options and payload are not read.
    pub fn parse_quote(bytes: &'a [u8]) -> Option<TcpSegment<'a>> {
        if bytes.len() < 8 {
            return None;
        }
        let be16 = |i: usize| bytes.get(i..i + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let be32 = |i: usize| {
            bytes
                .get(i..i + 4)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        Some(TcpSegment {
            src_port: be16(0),
            dst_port: be16(2),
            seq: SeqNum(be32(4)),
            ack: SeqNum(be32(8)),
            flags: bytes.get(13).map_or(0, |f| f & 0x3f),
            window: be16(14),
            options: TcpOptions::default(),
            payload: &[],
        })
    }

    /// Whether flag bit(s) `f` are all set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f == f
    }

    /// Sequence space the segment occupies: data, plus one each for SYN and FIN.
    pub fn seg_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.has(flags::SYN)) + u32::from(self.has(flags::FIN))
    }
}

/// Parses options; a malformed option ends parsing, keeping what came before (as Linux).
fn parse_options(mut b: &[u8]) -> TcpOptions {
    let mut o = TcpOptions::default();
    while let Some(&kind) = b.first() {
        match kind {
            kind::END => break,
            kind::NOP => {
                b = &b[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = b.get(1) else { break };
        let len = usize::from(len);
        if len < 2 || len > b.len() {
            break;
        }
        let body = &b[2..len];
        match (kind, body.len()) {
            (kind::MSS, 2) => o.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            // RFC 7323 §2.3: shifts above 14 are treated as 14.
            (kind::WINDOW_SCALE, 1) => o.window_scale = Some(body[0].min(14)),
            (kind::SACK_PERMITTED, 0) => o.sack_permitted = true,
            (kind::SACK, n) if n % 8 == 0 && n > 0 => {
                for block in body.chunks_exact(8) {
                    let word = |i: usize| u32::from_be_bytes([block[i], block[i + 1], block[i + 2], block[i + 3]]);
                    o.sack.push(SeqNum(word(0)), SeqNum(word(4)));
                }
            }
            (kind::TIMESTAMPS, 8) => {
                let v = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let e = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                o.timestamps = Some((v, e));
            }
            _ => {}
        }
        b = &b[len..];
    }
    o
}

impl TcpSegment<'_> {
    /// Appends the segment, checksum included, to `out`.
    pub fn emit(&self, out: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr) {
        let payload = self.payload;
        self.emit_with(out, src, dst, payload.len(), |p| p.extend_from_slice(payload));
    }

    /// Appends the segment's header followed by `payload_len` bytes of
    /// payload that `fill` writes in place (straight from a send buffer, no
    /// copy in between); `self.payload` is not used.
    pub fn emit_with(
        &self,
        out: &mut Vec<u8>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload_len: usize,
        fill: impl FnOnce(&mut Vec<u8>),
    ) {
        let start = self.emit_header_and(out, payload_len, fill);
        let len = (out.len() - start) as u16;
        let mut c = Checksum::new();
        c.add_pseudo_header(src, dst, PROTOCOL, len).add_bytes(&out[start..]);
        let sum = c.finish();
        out[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
    }

    /// As [`emit_with`](Self::emit_with), but the checksum field gets only
    /// the pseudo-header sum, not complemented: the rest is left to a
    /// device with checksum offload (`NEEDS_CSUM`, issue 16), which adds
    /// the sum of the header and payload. Returns the header's length.
    pub fn emit_partial_with(
        &self,
        out: &mut Vec<u8>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload_len: usize,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> usize {
        let start = self.emit_header_and(out, payload_len, fill);
        let len = (out.len() - start) as u16;
        let partial = Checksum::new().add_pseudo_header(src, dst, PROTOCOL, len).sum();
        out[start + 16..start + 18].copy_from_slice(&partial.to_be_bytes());
        usize::from(out[start + 12] >> 4) * 4
    }

    /// Appends the header (checksum zero) and the payload `fill` writes;
    /// returns where the segment starts in `out`.
    fn emit_header_and(&self, out: &mut Vec<u8>, payload_len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> usize {
        let start = out.len();
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.seq.0.to_be_bytes());
        let ack = if self.flags & flags::ACK != 0 { self.ack.0 } else { 0 };
        out.extend_from_slice(&ack.to_be_bytes());
        out.extend_from_slice(&[0, self.flags]); // data offset patched below
        out.extend_from_slice(&self.window.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        emit_options(out, &self.options);
        let header_len = out.len() - start;
        out[start + 12] = ((header_len / 4) as u8) << 4;
        // The payload is appended by `fill` (no zeroing first).
        let data_at = out.len();
        fill(out);
        assert_eq!(out.len() - data_at, payload_len, "fill appends exactly the payload");
        start
    }
}

/// Option kinds (IANA "TCP Option Kind Numbers").
mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// Appends `o` in Linux's layout, every option aligned by NOPs so the
/// header stays a multiple of 4 bytes: MSS, SACK-permitted and timestamps
/// (or NOPs in place of either), window scale, then SACK blocks.
fn emit_options(out: &mut Vec<u8>, o: &TcpOptions) {
    if let Some(mss) = o.mss {
        out.extend_from_slice(&[kind::MSS, 4]);
        out.extend_from_slice(&mss.to_be_bytes());
    }
    match (o.sack_permitted, o.timestamps) {
        (true, Some(_)) => out.extend_from_slice(&[kind::SACK_PERMITTED, 2]),
        (false, Some(_)) => out.extend_from_slice(&[kind::NOP, kind::NOP]),
        (true, None) => out.extend_from_slice(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]),
        (false, None) => {}
    }
    if let Some((value, echo)) = o.timestamps {
        out.extend_from_slice(&[kind::TIMESTAMPS, 10]);
        out.extend_from_slice(&value.to_be_bytes());
        out.extend_from_slice(&echo.to_be_bytes());
    }
    if let Some(shift) = o.window_scale {
        out.extend_from_slice(&[kind::NOP, kind::WINDOW_SCALE, 3, shift]);
    }
    if !o.sack.is_empty() {
        out.extend_from_slice(&[kind::NOP, kind::NOP, kind::SACK, (2 + 8 * o.sack.len()) as u8]);
        for (left, right) in o.sack.as_slice() {
            out.extend_from_slice(&left.0.to_be_bytes());
            out.extend_from_slice(&right.0.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

    fn segment() -> TcpSegment<'static> {
        TcpSegment {
            src_port: 40000,
            dst_port: 7,
            seq: SeqNum(0xdead_beef),
            ack: SeqNum(42),
            flags: flags::SYN | flags::ACK,
            window: 65535,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((1, 2)),
                sack: SackBlocks::default(),
            },
            payload: b"data",
        }
    }

    #[test]
    fn round_trip_with_options_and_payload() {
        let mut v = Vec::new();
        segment().emit(&mut v, A, B);
        let s = TcpSegment::parse(&v, A, B).unwrap();
        assert_eq!((s.src_port, s.dst_port), (40000, 7));
        assert_eq!((s.seq, s.ack), (SeqNum(0xdead_beef), SeqNum(42)));
        assert!(s.has(flags::SYN | flags::ACK) && !s.has(flags::FIN));
        assert_eq!(s.window, 65535);
        assert_eq!(s.options, segment().options);
        assert_eq!(s, segment());
        assert_eq!(s.payload, b"data");
        assert_eq!(s.seg_len(), 5);
    }

    #[test]
    fn checksum_and_offsets_are_checked() {
        let mut v = Vec::new();
        segment().emit(&mut v, A, B);
        let mut bad = v.clone();
        bad[v.len() - 1] ^= 1;
        assert_eq!(TcpSegment::parse(&bad, A, B).unwrap_err(), TcpError::BadChecksum);
        assert_eq!(
            TcpSegment::parse(&v, A, Ipv4Addr::new(1, 1, 1, 1)).unwrap_err(),
            TcpError::BadChecksum
        );
        assert_eq!(TcpSegment::parse(&v[..19], A, B).unwrap_err(), TcpError::Truncated);
        let mut off = v.clone();
        off[12] = 0x40;
        assert_eq!(TcpSegment::parse(&off, A, B).unwrap_err(), TcpError::BadOffset);
        off[12] = 0xf0;
        assert_eq!(TcpSegment::parse(&off[..40], A, B).unwrap_err(), TcpError::BadOffset);
    }

    #[test]
    fn malformed_options_stop_parsing_without_panic() {
        assert_eq!(parse_options(&[2, 4, 5, 0xb4, 3, 0]).mss, Some(1460));
        assert_eq!(parse_options(&[2, 4, 5, 0xb4, 3, 0]).window_scale, None);
        assert_eq!(parse_options(&[1, 1, 2]), TcpOptions::default());
        assert_eq!(parse_options(&[2, 9, 5, 0xb4]), TcpOptions::default());
        assert_eq!(parse_options(&[3, 3, 20]).window_scale, Some(14));
        assert_eq!(parse_options(&[0, 2, 4, 5, 0xb4]).mss, None);
    }

    #[test]
    fn every_option_combination_round_trips_aligned() {
        for bits in 0..16u8 {
            let mut seg = segment();
            seg.options = TcpOptions {
                mss: (bits & 1 != 0).then_some(1400),
                window_scale: (bits & 2 != 0).then_some(3),
                sack_permitted: bits & 4 != 0,
                timestamps: (bits & 8 != 0).then_some((7, 8)),
                sack: SackBlocks::default(),
            };
            let mut v = Vec::new();
            seg.emit(&mut v, A, B);
            let header_len = usize::from(v[12] >> 4) * 4;
            assert_eq!(header_len % 4, 0);
            assert_eq!(v.len(), header_len + 4);
            assert_eq!(TcpSegment::parse(&v, A, B).unwrap(), seg, "options {bits:04b}");
        }
    }

    #[test]
    fn round_trip_against_etherparse() {
        let mut v = Vec::new();
        segment().emit(&mut v, A, B);
        let theirs = etherparse::TcpHeaderSlice::from_slice(&v).unwrap();
        assert_eq!((theirs.source_port(), theirs.destination_port()), (40000, 7));
        assert_eq!(
            (theirs.sequence_number(), theirs.acknowledgment_number()),
            (0xdead_beef, 42)
        );
        assert!(theirs.syn() && theirs.ack() && !theirs.fin() && !theirs.rst());
        let expect = theirs
            .to_header()
            .calc_checksum_ipv4_raw(A.octets(), B.octets(), b"data")
            .unwrap();
        assert_eq!(theirs.checksum(), expect);
        let options: Vec<_> = theirs.options_iterator().map(|o| o.unwrap()).collect();
        use etherparse::TcpOptionElement as E;
        assert_eq!(
            options,
            [
                E::MaximumSegmentSize(1460),
                E::SelectiveAcknowledgementPermitted,
                E::Timestamp(1, 2),
                E::Noop,
                E::WindowScale(7)
            ]
        );

        let mut e = etherparse::TcpHeader::new(1, 2, 3, 4);
        e.ack = true;
        e.acknowledgment_number = 5;
        e.set_options(&[E::MaximumSegmentSize(536), E::WindowScale(2)]).unwrap();
        e.checksum = e.calc_checksum_ipv4_raw(A.octets(), B.octets(), b"xy").unwrap();
        let mut bytes = e.to_bytes().to_vec();
        bytes.extend_from_slice(b"xy");
        let ours = TcpSegment::parse(&bytes, A, B).unwrap();
        assert_eq!(
            (ours.src_port, ours.dst_port, ours.seq, ours.ack, ours.window),
            (1, 2, SeqNum(3), SeqNum(5), 4)
        );
        assert_eq!(
            (ours.options.mss, ours.options.window_scale, ours.payload),
            (Some(536), Some(2), &b"xy"[..])
        );
    }

    /// Linux's layout, every option on its natural alignment: MSS, then NOP
    /// and window scale (RFC 7323 appendix B's recommendation).
    #[test]
    fn syn_options_go_out_nop_aligned() {
        let mut seg = segment();
        seg.options = TcpOptions {
            mss: Some(1460),
            window_scale: Some(5),
            ..TcpOptions::default()
        };
        seg.payload = b"";
        let mut v = Vec::new();
        seg.emit(&mut v, A, B);
        assert_eq!(v[12] >> 4, 7, "28-byte header");
        assert_eq!(v[20..28], [2, 4, 0x05, 0xb4, 1, 3, 3, 5]);
    }

    /// SACK blocks beside timestamps: three fit the 40 option bytes; read
    /// back by us and by etherparse.
    #[test]
    fn sack_blocks_round_trip_beside_timestamps() {
        let mut seg = segment();
        seg.flags = flags::ACK;
        seg.options = TcpOptions {
            timestamps: Some((77, 66)),
            ..TcpOptions::default()
        };
        for (l, r) in [(100u32, 200u32), (300, 400), (u32::MAX - 10, 5)] {
            assert!(seg.options.sack.push(SeqNum(l), SeqNum(r)));
        }
        assert_eq!(seg.options.len(), 40);
        let mut v = Vec::new();
        seg.emit(&mut v, A, B);
        assert_eq!(usize::from(v[12] >> 4) * 4, 60, "a full 60-byte header");
        assert_eq!(TcpSegment::parse(&v, A, B).unwrap().options, seg.options);
        use etherparse::TcpOptionElement as E;
        let theirs: Vec<_> = etherparse::TcpHeaderSlice::from_slice(&v)
            .unwrap()
            .options_iterator()
            .map(|o| o.unwrap())
            .filter(|o| !matches!(o, E::Noop))
            .collect();
        assert_eq!(
            theirs,
            [
                E::Timestamp(77, 66),
                E::SelectiveAcknowledgement((100, 200), [Some((300, 400)), Some((u32::MAX - 10, 5)), None])
            ]
        );
    }
}
