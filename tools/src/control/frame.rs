//! Frames on a bridged connection: `[type: u8][length: u32, big-endian][payload]`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Stream data, either way.
pub const DATA: u8 = b'D';
/// End of data from the sender (a half-close), either way.
pub const FIN: u8 = b'F';
/// The connection failed (reset, timeout); payload: the error. Daemon to client, last frame.
pub const ERROR: u8 = b'E';
/// A UDP datagram: 4-byte IPv4 address, 2-byte port (destination from the
/// client, source to the client), then the data.
pub const DATAGRAM: u8 = b'U';

/// Largest payload a frame may carry.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Writes one frame.
pub fn write(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut h = [0u8; 5];
    h[0] = kind;
    h[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    w.write_all(&h)?;
    w.write_all(payload)
}

/// Reads one frame into `buf`; `Ok(None)` at a clean end of stream.
pub fn read(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<u8>> {
    let mut h = [0u8; 5];
    match r.read_exact(&mut h[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut h[1..])?;
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is too long"),
        ));
    }
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(Some(h[0]))
}

/// The payload of a datagram frame for `addr` carrying `data`.
pub fn datagram(addr: SocketAddrV4, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(6 + data.len());
    p.extend_from_slice(&addr.ip().octets());
    p.extend_from_slice(&addr.port().to_be_bytes());
    p.extend_from_slice(data);
    p
}

/// Splits a datagram frame's payload into address and data.
pub fn parse_datagram(p: &[u8]) -> io::Result<(SocketAddrV4, &[u8])> {
    if p.len() < 6 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram frame shorter than its address",
        ));
    }
    let ip = Ipv4Addr::new(p[0], p[1], p[2], p[3]);
    let port = u16::from_be_bytes([p[4], p[5]]);
    Ok((SocketAddrV4::new(ip, port), &p[6..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut wire = Vec::new();
        write(&mut wire, DATA, b"hello").unwrap();
        write(&mut wire, FIN, b"").unwrap();
        let mut r = &wire[..];
        let mut buf = Vec::new();
        assert_eq!(read(&mut r, &mut buf).unwrap(), Some(DATA));
        assert_eq!(buf, b"hello");
        assert_eq!(read(&mut r, &mut buf).unwrap(), Some(FIN));
        assert!(buf.is_empty());
        assert_eq!(read(&mut r, &mut buf).unwrap(), None);
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        // A 4 GiB length is refused from its prefix, before any allocation.
        let mut r: &[u8] = &[b'D', 0xff, 0xff, 0xff, 0xff];
        let mut buf = Vec::new();
        let e = read(&mut r, &mut buf).unwrap_err();
        assert_eq!(e.to_string(), "frame of 4294967295 bytes is too long");
        assert_eq!(buf.capacity(), 0);
        let mut r: &[u8] = &[b'D', 0, 0, 0, 9, 1, 2];
        assert!(read(&mut r, &mut Vec::new()).is_err());
    }

    #[test]
    fn datagram_payloads_carry_the_address() {
        let a: SocketAddrV4 = "10.200.0.1:5353".parse().unwrap();
        let p = datagram(a, b"q");
        assert_eq!(parse_datagram(&p).unwrap(), (a, &b"q"[..]));
        assert!(parse_datagram(&p[..5]).is_err());
    }
}
