//! UDP datagrams (RFC 768): one representation, [`UdpDatagram`], to
//! validate received datagrams (pseudo-header checksum), to read the ports
//! an ICMP error quotes, and to write what we send.

#![forbid(unsafe_code)]

use super::checksum::Checksum;
use std::net::Ipv4Addr;

/// IP protocol number of UDP.
pub const PROTOCOL: u8 = 17;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// Largest UDP payload in one IPv4 datagram: 65535 − 20 − 8.
pub const MAX_PAYLOAD: usize = 65507;

/// Why a UDP datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpError {
    /// Shorter than the header.
    Truncated,
    /// Length field below 8 or beyond the IP payload.
    BadLength,
    /// Checksum present and wrong.
    BadChecksum,
}

error_messages!(UdpError {
    Truncated => "UDP datagram shorter than its header",
    BadLength => "UDP length field disagrees with the IP payload",
    BadChecksum => "bad UDP checksum",
});

/// A UDP datagram: ports and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload, trimmed to the UDP length field.
    pub payload: &'a [u8],
}

impl<'a> UdpDatagram<'a> {
    /// Validates `bytes` (the IP payload) sent from `src` to `dst`. A zero
    /// checksum means the sender computed none (RFC 768) and is accepted.
    pub fn parse(bytes: &'a [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<UdpDatagram<'a>, UdpError> {
        Self::parse_checked(bytes, Some((src, dst)))
    }

    /// As [`parse`](Self::parse), but the checksum is not verified: for a
    /// datagram whose checksum the device vouches for (a TUN's
    /// `NEEDS_CSUM` or `DATA_VALID`, issue 16).
    pub fn parse_trusted(bytes: &'a [u8]) -> Result<UdpDatagram<'a>, UdpError> {
        Self::parse_checked(bytes, None)
    }

    /// Parses, verifying the checksum against the pseudo-header of `addrs` if given.
    fn parse_checked(bytes: &'a [u8], addrs: Option<(Ipv4Addr, Ipv4Addr)>) -> Result<UdpDatagram<'a>, UdpError> {
        if bytes.len() < HEADER_LEN {
            return Err(UdpError::Truncated);
        }
        let len = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
        if len < HEADER_LEN || len > bytes.len() {
            return Err(UdpError::BadLength);
        }
        if let Some((src, dst)) = addrs.filter(|_| bytes[6..8] != [0, 0]) {
            let mut c = Checksum::new();
            c.add_pseudo_header(src, dst, PROTOCOL, len as u16)
                .add_bytes(&bytes[..len]);
            if c.sum() != 0xffff {
                return Err(UdpError::BadChecksum);
            }
        }
        Ok(UdpDatagram {
            src_port: u16::from_be_bytes([bytes[0], bytes[1]]),
            dst_port: u16::from_be_bytes([bytes[2], bytes[3]]),
            payload: &bytes[HEADER_LEN..len],
        })
    }

    /// The datagram an ICMP error quotes (at least its 8-byte header; the
    /// payload is whatever of it the quote holds, unchecked).
    pub fn parse_quote(bytes: &'a [u8]) -> Option<UdpDatagram<'a>> {
        (bytes.len() >= HEADER_LEN).then(|| UdpDatagram {
            src_port: u16::from_be_bytes([bytes[0], bytes[1]]),
            dst_port: u16::from_be_bytes([bytes[2], bytes[3]]),
            payload: &bytes[HEADER_LEN..],
        })
    }

    /// Appends the datagram, checksum included, to `out`. The payload must
    /// be at most [`MAX_PAYLOAD`] bytes.
    pub fn emit(&self, out: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr) {
        debug_assert!(self.payload.len() <= MAX_PAYLOAD);
        let len = (HEADER_LEN + self.payload.len()) as u16;
        let start = out.len();
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(self.payload);
        let mut c = Checksum::new();
        c.add_pseudo_header(src, dst, PROTOCOL, len).add_bytes(&out[start..]);
        // RFC 768: a computed zero is sent as all ones; zero means "no checksum".
        let sum = match c.finish() {
            0 => 0xffff,
            x => x,
        };
        out[start + 6..start + 8].copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

    #[test]
    fn round_trip_with_checksum() {
        let mut v = Vec::new();
        UdpDatagram {
            src_port: 5000,
            dst_port: 7,
            payload: b"echo me",
        }
        .emit(&mut v, A, B);
        assert_eq!(v.len(), 15);
        let d = UdpDatagram::parse(&v, A, B).unwrap();
        assert_eq!((d.src_port, d.dst_port, d.payload), (5000, 7, &b"echo me"[..]));
        // The checksum covers the pseudo-header: other addresses fail it.
        assert_eq!(
            UdpDatagram::parse(&v, A, Ipv4Addr::new(10, 200, 0, 3)).unwrap_err(),
            UdpError::BadChecksum
        );
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut v = Vec::new();
        UdpDatagram {
            src_port: 1,
            dst_port: 2,
            payload: b"x",
        }
        .emit(&mut v, A, B);
        v[6] = 0;
        v[7] = 0;
        v[8] = b'y';
        assert_eq!(UdpDatagram::parse(&v, A, B).unwrap().payload, b"y");
    }

    #[test]
    fn corrupted_payload_fails_the_checksum() {
        let mut v = Vec::new();
        UdpDatagram {
            src_port: 1,
            dst_port: 2,
            payload: b"payload",
        }
        .emit(&mut v, A, B);
        v[10] ^= 0x20;
        assert_eq!(UdpDatagram::parse(&v, A, B).unwrap_err(), UdpError::BadChecksum);
    }

    #[test]
    fn lengths_are_checked_and_padding_trimmed() {
        let mut v = Vec::new();
        UdpDatagram {
            src_port: 1,
            dst_port: 2,
            payload: b"abc",
        }
        .emit(&mut v, A, B);
        assert_eq!(UdpDatagram::parse(&v[..7], A, B).unwrap_err(), UdpError::Truncated);
        let mut long = v.clone();
        long[4..6].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(UdpDatagram::parse(&long, A, B).unwrap_err(), UdpError::BadLength);
        let mut short = v.clone();
        short[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpDatagram::parse(&short, A, B).unwrap_err(), UdpError::BadLength);
        // Bytes after the UDP length (padding) are not payload.
        let mut padded = v.clone();
        padded.extend_from_slice(&[0, 0]);
        assert_eq!(UdpDatagram::parse(&padded, A, B).unwrap().payload, b"abc");
    }

    #[test]
    fn computed_zero_checksum_is_sent_as_all_ones() {
        // Search a payload whose checksum computes to zero; it must go out as ffff and verify.
        for x in 0..=u16::MAX {
            let mut v = Vec::new();
            UdpDatagram {
                src_port: 1,
                dst_port: 2,
                payload: &x.to_be_bytes(),
            }
            .emit(&mut v, A, B);
            if u16::from_be_bytes([v[6], v[7]]) == 0xffff {
                assert!(UdpDatagram::parse(&v, A, B).is_ok());
                return;
            }
        }
        panic!("no payload with a zero checksum found");
    }

    #[test]
    fn round_trip_against_etherparse() {
        let mut v = Vec::new();
        let d = UdpDatagram {
            src_port: 5353,
            dst_port: 53,
            payload: b"query",
        };
        d.emit(&mut v, A, B);
        let theirs = etherparse::UdpHeaderSlice::from_slice(&v).unwrap();
        assert_eq!(
            (theirs.source_port(), theirs.destination_port(), theirs.length()),
            (5353, 53, 13)
        );
        let expect = theirs
            .to_header()
            .calc_checksum_ipv4_raw(A.octets(), B.octets(), b"query")
            .unwrap();
        assert_eq!(theirs.checksum(), expect);

        let e = etherparse::UdpHeader::with_ipv4_checksum(
            1,
            2,
            &etherparse::Ipv4Header::new(3, 64, etherparse::IpNumber(17), A.octets(), B.octets()).unwrap(),
            b"abc",
        )
        .unwrap();
        let mut bytes = e.to_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let ours = UdpDatagram::parse(&bytes, A, B).unwrap();
        assert_eq!(
            ours,
            UdpDatagram {
                src_port: 1,
                dst_port: 2,
                payload: b"abc"
            }
        );
        assert_eq!(
            UdpDatagram::parse_quote(&bytes[..8]).map(|q| (q.src_port, q.dst_port)),
            Some((1, 2))
        );
    }
}
