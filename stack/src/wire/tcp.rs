//! TCP segments (RFC 9293 §3.1): validation with the pseudo-header checksum,
//! option parsing, and writing.

#![forbid(unsafe_code)]

use super::checksum::Checksum;
use crate::ip::protocol;
use crate::tcp::seq::SeqNum;
use etherparse::{TcpHeader, TcpOptionElement};
use std::net::Ipv4Addr;

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

/// A validated TCP segment.
#[derive(Clone, Copy, Debug)]
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
    /// Window, unscaled as on the wire.
    pub window: u16,
    /// Options.
    pub options: TcpOptions,
    /// Data.
    pub payload: &'a [u8],
}

impl<'a> TcpSegment<'a> {
    /// Validates `bytes` (the IP payload) from `src` to `dst`.
    pub fn parse(bytes: &'a [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<TcpSegment<'a>, TcpError> {
        if bytes.len() < HEADER_LEN {
            return Err(TcpError::Truncated);
        }
        let offset = usize::from(bytes[12] >> 4) * 4;
        if offset < HEADER_LEN || offset > bytes.len() {
            return Err(TcpError::BadOffset);
        }
        let len = u16::try_from(bytes.len()).map_err(|_| TcpError::Truncated)?;
        let mut c = Checksum::new();
        c.add_pseudo_header(src, dst, protocol::TCP, len).add_bytes(bytes);
        if c.sum() != 0xffff {
            return Err(TcpError::BadChecksum);
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
            0 => break,
            1 => {
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
            (2, 2) => o.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            // RFC 7323 §2.3: shifts above 14 are treated as 14.
            (3, 1) => o.window_scale = Some(body[0].min(14)),
            (4, 0) => o.sack_permitted = true,
            (8, 8) => {
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

/// The fields of a segment to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFields {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: SeqNum,
    /// Acknowledgment number (sent only with ACK).
    pub ack: SeqNum,
    /// Flag bits.
    pub flags: u8,
    /// Window as written on the wire (already scaled down).
    pub window: u16,
    /// Options to include.
    pub options: TcpOptions,
}

/// Appends a TCP segment to `out`, checksum included.
pub fn write(out: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr, f: &SegmentFields, payload: &[u8]) {
    write_with(out, src, dst, f, payload.len(), |p| p.copy_from_slice(payload));
}

/// Appends a TCP segment with `payload_len` bytes of payload that `fill`
/// writes in place (straight from a send buffer, no copy in between).
pub fn write_with(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    f: &SegmentFields,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) {
    let mut h = TcpHeader::new(f.src_port, f.dst_port, f.seq.0, f.window);
    h.acknowledgment_number = if f.flags & flags::ACK != 0 { f.ack.0 } else { 0 };
    h.fin = f.flags & flags::FIN != 0;
    h.syn = f.flags & flags::SYN != 0;
    h.rst = f.flags & flags::RST != 0;
    h.psh = f.flags & flags::PSH != 0;
    h.ack = f.flags & flags::ACK != 0;
    let mut opts: [TcpOptionElement; 4] = [const { TcpOptionElement::Noop }; 4];
    let mut n = 0;
    if let Some(mss) = f.options.mss {
        opts[n] = TcpOptionElement::MaximumSegmentSize(mss);
        n += 1;
    }
    if f.options.sack_permitted {
        opts[n] = TcpOptionElement::SelectiveAcknowledgementPermitted;
        n += 1;
    }
    if let Some((v, e)) = f.options.timestamps {
        opts[n] = TcpOptionElement::Timestamp(v, e);
        n += 1;
    }
    if let Some(ws) = f.options.window_scale {
        opts[n] = TcpOptionElement::WindowScale(ws);
        n += 1;
    }
    if n > 0 {
        h.set_options(&opts[..n]).expect("four options fit in 40 bytes");
    }
    let start = out.len();
    out.extend_from_slice(&h.to_bytes());
    let data_at = out.len();
    out.resize(data_at + payload_len, 0);
    fill(&mut out[data_at..]);
    let len = (out.len() - start) as u16;
    let mut c = Checksum::new();
    c.add_pseudo_header(src, dst, protocol::TCP, len)
        .add_bytes(&out[start..]);
    let sum = c.finish();
    out[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

    fn fields() -> SegmentFields {
        SegmentFields {
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
            },
        }
    }

    #[test]
    fn round_trip_with_options_and_payload() {
        let mut v = Vec::new();
        write(&mut v, A, B, &fields(), b"data");
        let s = TcpSegment::parse(&v, A, B).unwrap();
        assert_eq!((s.src_port, s.dst_port), (40000, 7));
        assert_eq!((s.seq, s.ack), (SeqNum(0xdead_beef), SeqNum(42)));
        assert!(s.has(flags::SYN | flags::ACK) && !s.has(flags::FIN));
        assert_eq!(s.window, 65535);
        assert_eq!(s.options, fields().options);
        assert_eq!(s.payload, b"data");
        assert_eq!(s.seg_len(), 5);
    }

    #[test]
    fn checksum_and_offsets_are_checked() {
        let mut v = Vec::new();
        write(&mut v, A, B, &fields(), b"data");
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
}
