//! ICMP messages (RFC 792): one representation, [`IcmpMessage`], to parse
//! received messages (checksum verified), to read the echo request an ICMP
//! error quotes, and to write echoes and errors; plus the echo reply fast
//! path that turns a request into its reply in place (RFC 1624).

#![forbid(unsafe_code)]

use super::checksum::{self, Checksum};

/// IP protocol number of ICMP.
pub const PROTOCOL: u8 = 1;

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

error_messages!(IcmpError {
    Truncated => "ICMP message shorter than its header",
    BadChecksum => "bad ICMP checksum",
});

/// An ICMP message: type, code, the four type-specific bytes, and data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpMessage<'a> {
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
    /// Parses a message and verifies its checksum.
    pub fn parse(bytes: &'a [u8]) -> Result<IcmpMessage<'a>, IcmpError> {
        if bytes.len() < HEADER_LEN {
            return Err(IcmpError::Truncated);
        }
        if !checksum::verify(bytes) {
            return Err(IcmpError::BadChecksum);
        }
        Ok(IcmpMessage::read(bytes))
    }

    /// The message an ICMP error quotes: its header, unchecked (the quote
    /// holds only the start of it).
    pub fn parse_quote(bytes: &'a [u8]) -> Option<IcmpMessage<'a>> {
        (bytes.len() >= HEADER_LEN).then(|| IcmpMessage::read(bytes))
    }

    fn read(bytes: &'a [u8]) -> IcmpMessage<'a> {
        IcmpMessage {
            kind: bytes[0],
            code: bytes[1],
            rest: [bytes[4], bytes[5], bytes[6], bytes[7]],
            data: &bytes[HEADER_LEN..],
        }
    }

    /// An echo request or reply with identifier `ident` and sequence number `seq`.
    pub fn echo(kind: u8, ident: u16, seq: u16, data: &'a [u8]) -> IcmpMessage<'a> {
        let [i0, i1] = ident.to_be_bytes();
        let [s0, s1] = seq.to_be_bytes();
        IcmpMessage {
            kind,
            code: 0,
            rest: [i0, i1, s0, s1],
            data,
        }
    }

    /// Echo identifier (bytes 4..6).
    pub fn echo_ident(&self) -> u16 {
        u16::from_be_bytes([self.rest[0], self.rest[1]])
    }

    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq(&self) -> u16 {
        u16::from_be_bytes([self.rest[2], self.rest[3]])
    }

    /// Appends the message, checksum included, to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[self.kind, self.code, 0, 0]);
        out.extend_from_slice(&self.rest);
        out.extend_from_slice(self.data);
        let sum = Checksum::new().add_bytes(&out[start..]).finish();
        out[start + 2..start + 4].copy_from_slice(&sum.to_be_bytes());
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
    let mut sum = checksum::update(old_sum, old_word, new_word);
    if sum == 0 {
        // RFC 1624's equation yields +0 where the reply is all zeros (ident,
        // sequence and data), whose only valid checksum is 0xffff: the rare
        // zero is recomputed in full. (Found by the `icmp` fuzz target.)
        m[2..4].copy_from_slice(&[0, 0]);
        sum = checksum::checksum(m);
    }
    m[2..4].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_request(ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        IcmpMessage::echo(kind::ECHO_REQUEST, ident, seq, data).emit(&mut v);
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
    fn echo_reply_to_an_all_zero_request_verifies() {
        // Ident 0, sequence 0, zero data: the reply sums to zero, and only
        // 0xffff is its checksum (RFC 1624's update alone gives 0x0000).
        for len in [0usize, 1, 56] {
            let req = echo_request(0, 0, &vec![0; len]);
            let mut reply = Vec::new();
            write_echo_reply(&mut reply, &req);
            assert_eq!(&reply[2..4], &[0xff, 0xff]);
            assert!(IcmpMessage::parse(&reply).is_ok(), "reply to {len} zero bytes");
        }
    }

    #[test]
    fn round_trip_against_etherparse() {
        let quote = [0x45u8; 28];
        let msg = IcmpMessage {
            kind: kind::DEST_UNREACHABLE,
            code: unreachable::FRAG_NEEDED,
            rest: [0, 0, 5, 220], // next-hop MTU 1500 (RFC 1191)
            data: &quote,
        };
        let mut v = Vec::new();
        msg.emit(&mut v);
        let theirs = etherparse::Icmpv4Slice::from_slice(&v).unwrap();
        assert_eq!(
            (theirs.type_u8(), theirs.code_u8(), theirs.bytes5to8()),
            (3, 4, [0, 0, 5, 220])
        );
        assert_eq!(theirs.checksum(), theirs.header().icmp_type.calc_checksum(&quote));
        assert_eq!(IcmpMessage::parse(&v), Ok(msg));
        assert!(is_error(msg.kind) && !is_error(kind::ECHO_REQUEST));

        let echo = etherparse::Icmpv4Header::with_checksum(
            etherparse::Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 9, seq: 10 }),
            b"hi",
        );
        let mut bytes = echo.to_bytes().to_vec();
        bytes.extend_from_slice(b"hi");
        assert_eq!(
            IcmpMessage::parse(&bytes),
            Ok(IcmpMessage::echo(kind::ECHO_REQUEST, 9, 10, b"hi"))
        );
        assert_eq!(IcmpMessage::parse_quote(&bytes[..8]).map(|m| m.echo_seq()), Some(10));
    }
}
