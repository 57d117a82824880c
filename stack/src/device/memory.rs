//! An in-memory point-to-point link: a connected pair of Unix datagram
//! sockets, so each end keeps packet boundaries and has a pollable fd.

#![forbid(unsafe_code)]

use super::Device;
use crate::time::Instant;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;

/// One end of an in-memory link; what one end sends the other receives.
/// A send that finds the other end's queue full fails with `WouldBlock`
/// (the packet is dropped, as on a congested link).
#[derive(Debug)]
pub struct MemoryLink {
    sock: UnixDatagram,
}

impl MemoryLink {
    /// Two connected endpoints.
    pub fn pair() -> io::Result<(MemoryLink, MemoryLink)> {
        let (a, b) = UnixDatagram::pair()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok((MemoryLink { sock: a }, MemoryLink { sock: b }))
    }
}

impl Device for MemoryLink {
    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf)
    }

    fn send(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        self.sock.send(packet).map(|_| ())
    }

    fn readable_fd(&self) -> Option<RawFd> {
        Some(self.sock.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_end_sends_the_other_receives_in_order() {
        let (mut a, mut b) = MemoryLink::pair().unwrap();
        a.send(Instant::ZERO, b"one").unwrap();
        a.send(Instant::ZERO, b"two").unwrap();
        b.send(Instant::ZERO, b"back").unwrap();
        let mut buf = [0u8; 16];
        let n = b.recv(Instant::ZERO, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = b.recv(Instant::ZERO, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
        assert_eq!(
            b.recv(Instant::ZERO, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let n = a.recv(Instant::ZERO, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"back");
    }

    #[test]
    fn largest_ip_packet_fits() {
        let (mut a, mut b) = MemoryLink::pair().unwrap();
        a.send(Instant::ZERO, &[7u8; 65535]).unwrap();
        let mut buf = vec![0u8; 65536];
        assert_eq!(b.recv(Instant::ZERO, &mut buf).unwrap(), 65535);
    }
}
