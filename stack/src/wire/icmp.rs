//! ICMP messages (RFC 792): parsing, echo replies, and error messages.

#![forbid(unsafe_code)]

use super::checksum;
use etherparse::{Icmpv4Header, Icmpv4Slice, Icmpv4Type};

/// ICMP type numbers used by the stack.
pub mod kind {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated, RFC 6633; still an error type).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// Destination-unreachable codes.
pub mod unreachable {
    /// Network unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set.
    pub const FRAG_NEEDED: u8 = 4;
}

/// Time-exceeded codes.
pub mod time_exceeded {
    /// TTL exceeded in transit.
    pub const TTL: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

/// Length of the fixed ICMP header (type, code, checksum, 4 more bytes).
pub const HEADER_LEN: usize = 8;

/// The most of an offending datagram an error quotes: the whole error stays
/// within 576 bytes (RFC 1812 §4.3.2.3, as Linux does).
pub const MAX_QUOTE: usize = 576 - 20 - HEADER_LEN;

/// Whether ICMP type `t` is an error message (never answered with an error, RFC 1122 §3.2.2).
pub fn is_error(t: u8) -> bool {
    matches!(
        t,
        kind::DEST_UNREACHABLE | kind::SOURCE_QUENCH | kind::REDIRECT | kind::TIME_EXCEEDED | kind::PARAMETER_PROBLEM
    )
}

/// Why an ICMP message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// Shorter than the 8-byte header.
    Truncated,
    /// Checksum over the whole message does not verify.
    BadChecksum,
}

/// A received ICMP message whose checksum verified.
#[derive(Clone, Copy, Debug)]
pub struct IcmpMessage<'a> {
    /// The whole message, header included.
    pub bytes: &'a [u8],
    /// Type.
    pub kind: u8,
    /// Code.
    pub code: u8,
    /// Bytes 4..8: identifier and sequence for echoes, next-hop MTU for frag-needed.
    pub rest: [u8; 4],
    /// Everything after the 8-byte header.
    pub data: &'a [u8],
}

impl<'a> IcmpMessage<'a> {
    /// Parses and verifies the checksum of an ICMP message.
    pub fn parse(bytes: &'a [u8]) -> Result<IcmpMessage<'a>, IcmpError> {
        if bytes.len() < HEADER_LEN {
            return Err(IcmpError::Truncated);
        }
        if !checksum::verify(bytes) {
            return Err(IcmpError::BadChecksum);
        }
        let s = Icmpv4Slice::from_slice(bytes).map_err(|_| IcmpError::Truncated)?;
        Ok(IcmpMessage {
            bytes,
            kind: s.type_u8(),
            code: s.code_u8(),
            rest: s.bytes5to8(),
            data: &bytes[HEADER_LEN..],
        })
    }

    /// Echo identifier (bytes 4..6).
    pub fn echo_ident(&self) -> u16 {
        u16::from_be_bytes([self.rest[0], self.rest[1]])
    }

    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq(&self) -> u16 {
        u16::from_be_bytes([self.rest[2], self.rest[3]])
    }
}

/// Appends to `out` the echo reply to `request` (a verified echo request):
/// identifier, sequence and data copied; the checksum is updated
/// incrementally for the type change (RFC 1624) instead of recomputed.
pub fn write_echo_reply(out: &mut Vec<u8>, request: &[u8]) {
    debug_assert!(request.len() >= HEADER_LEN && request[0] == kind::ECHO_REQUEST);
    let start = out.len();
    out.extend_from_slice(request);
    let m = &mut out[start..];
    let old_word = u16::from_be_bytes([m[0], m[1]]);
    m[0] = kind::ECHO_REPLY;
    let new_word = u16::from_be_bytes([m[0], m[1]]);
    let old_sum = u16::from_be_bytes([m[2], m[3]]);
    m[2..4].copy_from_slice(&checksum::update(old_sum, old_word, new_word).to_be_bytes());
}

/// Appends to `out` an ICMP message of type `kind`/`code` with `rest` in bytes
/// 4..8, followed by `data`.
pub fn write_message(out: &mut Vec<u8>, kind: u8, code: u8, rest: [u8; 4], data: &[u8]) {
    let header = Icmpv4Header::with_checksum(
        Icmpv4Type::Unknown {
            type_u8: kind,
            code_u8: code,
            bytes5to8: rest,
        },
        data,
    );
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(data);
}

/// Appends an ICMP error quoting `offending` (its IP header and as much
/// payload as fits in [`MAX_QUOTE`]).
pub fn write_error(out: &mut Vec<u8>, kind: u8, code: u8, rest: [u8; 4], offending: &[u8]) {
    let quote = &offending[..offending.len().min(MAX_QUOTE)];
    write_message(out, kind, code, rest, quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_request(ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&ident.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        let mut v = Vec::new();
        write_message(&mut v, kind::ECHO_REQUEST, 0, rest, data);
        v
    }

    #[test]
    fn parses_a_verified_echo_request() {
        let req = echo_request(0xbeef, 7, b"payload!");
        let m = IcmpMessage::parse(&req).unwrap();
        assert_eq!((m.kind, m.code), (kind::ECHO_REQUEST, 0));
        assert_eq!(m.echo_ident(), 0xbeef);
        assert_eq!(m.echo_seq(), 7);
        assert_eq!(m.data, b"payload!");
    }

    #[test]
    fn rejects_bad_checksum_and_truncation() {
        let mut req = echo_request(1, 1, b"abc");
        req[9] ^= 1;
        assert_eq!(IcmpMessage::parse(&req).unwrap_err(), IcmpError::BadChecksum);
        assert_eq!(IcmpMessage::parse(&req[..7]).unwrap_err(), IcmpError::Truncated);
    }

    #[test]
    fn echo_reply_copies_everything_and_verifies() {
        for len in [0usize, 1, 56, 1471, 8000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let req = echo_request(0x1234, 0xfffe, &data);
            let mut reply = Vec::new();
            write_echo_reply(&mut reply, &req);
            let m = IcmpMessage::parse(&reply).expect("reply checksum verifies");
            assert_eq!(m.kind, kind::ECHO_REPLY);
            assert_eq!(m.echo_ident(), 0x1234);
            assert_eq!(m.echo_seq(), 0xfffe);
            assert_eq!(m.data, &data[..]);
        }
    }

    #[test]
    fn errors_quote_at_most_576_bytes_in_all() {
        let offending = vec![0x45u8; 2000];
        let mut out = Vec::new();
        write_error(
            &mut out,
            kind::DEST_UNREACHABLE,
            unreachable::PROTOCOL,
            [0; 4],
            &offending,
        );
        assert_eq!(out.len() + 20, 576);
        let m = IcmpMessage::parse(&out).unwrap();
        assert_eq!((m.kind, m.code), (3, 2));
        assert!(is_error(m.kind));
        assert!(!is_error(kind::ECHO_REQUEST));
    }
}
