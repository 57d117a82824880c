//! An in-memory point-to-point link: a connected pair of Unix datagram
//! sockets, so each end keeps packet boundaries and has a pollable fd.
//!
//! [`MemoryLink::pair_offloading`] makes a link whose ends offload as a
//! TUN with the virtio-net header does (issue 16): each datagram carries
//! the 10-byte [`VnetHeader`] in front of the packet, so two stacks
//! exchange TCP super-packets and partial checksums in memory, as they
//! would through two offloading TUNs.

#![forbid(unsafe_code)]

use super::Device;
use super::vnet::{self, HEADER_LEN, VnetHeader};
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
    /// Whether each datagram starts with a virtio-net header.
    offloads: bool,
    /// An offloading end's outgoing datagram, built here and reused.
    out: Vec<u8>,
}

impl MemoryLink {
    /// Two connected endpoints.
    pub fn pair() -> io::Result<(MemoryLink, MemoryLink)> {
        MemoryLink::pair_with(false)
    }

    /// Two connected endpoints that offload ([`Device::offloads`]): what
    /// one end sends with [`send_meta`](Device::send_meta) the other
    /// receives with [`recv_meta`](Device::recv_meta), super-packet and
    /// metadata as they were. Nothing is segmented or checksummed on the
    /// way, as between two offloading TUNs of one host. A plain
    /// [`recv`](Device::recv) completes a partial checksum but returns a
    /// super-packet whole.
    pub fn pair_offloading() -> io::Result<(MemoryLink, MemoryLink)> {
        MemoryLink::pair_with(true)
    }

    fn pair_with(offloads: bool) -> io::Result<(MemoryLink, MemoryLink)> {
        let (a, b) = UnixDatagram::pair()?;
        let end = |sock: UnixDatagram| -> io::Result<MemoryLink> {
            sock.set_nonblocking(true)?;
            Ok(MemoryLink {
                sock,
                offloads,
                out: Vec::new(),
            })
        };
        Ok((end(a)?, end(b)?))
    }

    /// Sends `meta` and the packet in parts as one datagram (offloading ends).
    fn send_framed(&mut self, meta: &VnetHeader, parts: &[&[u8]]) -> io::Result<()> {
        let mut raw = [0u8; HEADER_LEN];
        meta.emit(&mut raw);
        self.out.clear();
        self.out.extend_from_slice(&raw);
        for part in parts {
            self.out.extend_from_slice(part);
        }
        self.sock.send(&self.out).map(|_| ())
    }
}

impl Device for MemoryLink {
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        if !self.offloads {
            return self.sock.recv(buf);
        }
        let (n, meta) = self.recv_meta(now, buf)?;
        vnet::complete_checksum(&mut buf[..n], &meta)?;
        Ok(n)
    }

    fn send(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        if !self.offloads {
            return self.sock.send(packet).map(|_| ());
        }
        self.send_framed(&VnetHeader::default(), &[packet])
    }

    fn send_parts(&mut self, now: Instant, header: &[u8], payload: &[u8]) -> io::Result<()> {
        if !self.offloads {
            return self.send(now, &[header, payload].concat());
        }
        self.send_framed(&VnetHeader::default(), &[header, payload])
    }

    fn offloads(&self) -> bool {
        self.offloads
    }

    /// On an offloading end the header is read off the datagram and the
    /// packet moved to the front of `buf` (one copy: std has no scattered
    /// receive for Unix sockets, and this link is for tests).
    fn recv_meta(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<(usize, VnetHeader)> {
        let n = self.sock.recv(buf)?;
        if !self.offloads {
            return Ok((n, VnetHeader::default()));
        }
        let (meta, packet) = VnetHeader::parse(&buf[..n])?;
        let len = packet.len();
        buf.copy_within(HEADER_LEN..n, 0);
        Ok((len, meta))
    }

    fn send_meta(&mut self, now: Instant, meta: &VnetHeader, header: &[u8], payload: &[u8]) -> io::Result<()> {
        if !self.offloads {
            return super::send_in_software(self, now, meta, header, payload);
        }
        self.send_framed(meta, &[header, payload])
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

    #[test]
    fn an_offloading_end_carries_super_packets_and_their_metadata() {
        use crate::wire::ipv4::Ipv4Packet;
        use crate::wire::tcp::TcpSegment;
        use crate::wire::vnet::tests::{DST, SRC, super_packet};
        let (mut a, mut b) = MemoryLink::pair_offloading().unwrap();
        assert!(a.offloads() && b.offloads());
        assert!(!MemoryLink::pair().unwrap().0.offloads());
        // 45 segments of 1000 bytes and a 52-byte header: 45,052 bytes in one datagram.
        let (packet, meta) = super_packet(45_000, 0, 1, 1);
        a.send_meta(Instant::ZERO, &meta, &packet[..20], &packet[20..]).unwrap();
        a.send_meta(Instant::ZERO, &meta, &packet[..20], &packet[20..]).unwrap();
        a.send(Instant::ZERO, b"plain").unwrap();
        let mut buf = vec![0u8; 65536 + 64];
        assert_eq!(b.recv_meta(Instant::ZERO, &mut buf).unwrap(), (packet.len(), meta));
        assert_eq!(buf[..packet.len()], packet[..], "as sent: checksum still partial");

        // A plain receive completes the checksum and keeps the super-packet whole.
        let n = b.recv(Instant::ZERO, &mut buf).unwrap();
        assert_eq!(n, packet.len());
        let ip = Ipv4Packet::parse(&buf[..n]).unwrap();
        let tcp = TcpSegment::parse(ip.payload(), SRC, DST).unwrap();
        assert_eq!(tcp.payload, &packet[52..]);

        assert_eq!(
            b.recv_meta(Instant::ZERO, &mut buf).unwrap(),
            (5, VnetHeader::default())
        );
        assert_eq!(&buf[..5], b"plain");
        assert_eq!(
            b.recv(Instant::ZERO, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // A datagram without a valid header is refused, not taken for a packet.
        b.sock.send(&[0xff; 4]).unwrap();
        assert_eq!(
            a.recv(Instant::ZERO, &mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn a_plain_end_segments_and_checksums_in_software() {
        use crate::wire::ipv4::Ipv4Packet;
        use crate::wire::tcp::TcpSegment;
        use crate::wire::vnet::tests::{DST, SRC, super_packet};
        let (mut a, mut b) = MemoryLink::pair().unwrap();
        let (packet, meta) = super_packet(2500, 0, 1, 1);
        a.send_meta(Instant::ZERO, &meta, &packet[..20], &packet[20..]).unwrap();
        let mut buf = vec![0u8; 2048];
        let mut data = Vec::new();
        for want in [1000, 1000, 500] {
            let (n, got) = b.recv_meta(Instant::ZERO, &mut buf).unwrap();
            assert_eq!(got, VnetHeader::default());
            let ip = Ipv4Packet::parse(&buf[..n]).unwrap();
            let tcp = TcpSegment::parse(ip.payload(), SRC, DST).unwrap();
            assert_eq!(tcp.payload.len(), want);
            data.extend_from_slice(tcp.payload);
        }
        assert_eq!(data, packet[52..]);
    }
}
