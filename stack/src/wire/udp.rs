//! UDP datagrams (RFC 768): validation with the pseudo-header checksum, and writing.

#![forbid(unsafe_code)]

use super::checksum::Checksum;
use crate::ip::protocol;
use etherparse::{UdpHeader, UdpHeaderSlice};
use std::net::Ipv4Addr;

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

/// A validated UDP datagram.
#[derive(Clone, Copy, Debug)]
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
        let h = UdpHeaderSlice::from_slice(bytes).map_err(|_| UdpError::Truncated)?;
        let len = usize::from(h.length());
        if len < HEADER_LEN || len > bytes.len() {
            return Err(UdpError::BadLength);
        }
        if h.checksum() != 0 {
            let mut c = Checksum::new();
            c.add_pseudo_header(src, dst, protocol::UDP, len as u16)
                .add_bytes(&bytes[..len]);
            if c.sum() != 0xffff {
                return Err(UdpError::BadChecksum);
            }
        }
        Ok(UdpDatagram {
            src_port: h.source_port(),
            dst_port: h.destination_port(),
            payload: &bytes[HEADER_LEN..len],
        })
    }
}

/// Appends a UDP datagram carrying `payload` to `out`, checksum included.
/// `payload` must be at most [`MAX_PAYLOAD`] bytes.
pub fn write(out: &mut Vec<u8>, src: Ipv4Addr, src_port: u16, dst: Ipv4Addr, dst_port: u16, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let len = (HEADER_LEN + payload.len()) as u16;
    let mut h = UdpHeader {
        source_port: src_port,
        destination_port: dst_port,
        length: len,
        checksum: 0,
    };
    let mut c = Checksum::new();
    c.add_pseudo_header(src, dst, protocol::UDP, len)
        .add_bytes(&h.to_bytes())
        .add_bytes(payload);
    // RFC 768: a computed zero is sent as all ones; zero means "no checksum".
    h.checksum = match c.finish() {
        0 => 0xffff,
        x => x,
    };
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

    #[test]
    fn round_trip_with_checksum() {
        let mut v = Vec::new();
        write(&mut v, A, 5000, B, 7, b"echo me");
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
        write(&mut v, A, 1, B, 2, b"x");
        v[6] = 0;
        v[7] = 0;
        v[8] = b'y';
        assert_eq!(UdpDatagram::parse(&v, A, B).unwrap().payload, b"y");
    }

    #[test]
    fn corrupted_payload_fails_the_checksum() {
        let mut v = Vec::new();
        write(&mut v, A, 1, B, 2, b"payload");
        v[10] ^= 0x20;
        assert_eq!(UdpDatagram::parse(&v, A, B).unwrap_err(), UdpError::BadChecksum);
    }

    #[test]
    fn lengths_are_checked_and_padding_trimmed() {
        let mut v = Vec::new();
        write(&mut v, A, 1, B, 2, b"abc");
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
            write(&mut v, A, 1, B, 2, &x.to_be_bytes());
            if u16::from_be_bytes([v[6], v[7]]) == 0xffff {
                assert!(UdpDatagram::parse(&v, A, B).is_ok());
                return;
            }
        }
        panic!("no payload with a zero checksum found");
    }
}
