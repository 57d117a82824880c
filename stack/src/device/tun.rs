//! A Linux TUN interface (layer 3: raw IPv4 packets, no link header).

#![forbid(unsafe_code)]

use super::{Device, sys};
use crate::ip::Ipv4Cidr;
use crate::time::Instant;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// A TUN device opened through `/dev/net/tun`, without packet info headers.
pub struct TunDevice {
    iface: tun_tap::Iface,
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice").field("name", &self.name()).finish()
    }
}

impl TunDevice {
    /// Creates (or attaches to) the TUN interface `name`, non-blocking. Needs CAP_NET_ADMIN.
    pub fn create(name: &str) -> io::Result<TunDevice> {
        let iface = tun_tap::Iface::without_packet_info(name, tun_tap::Mode::Tun).map_err(|e| {
            // EBUSY: the interface exists and something holds it open.
            let hint = if e.raw_os_error() == Some(libc::EBUSY) {
                " (another tunstackd on it?)"
            } else {
                ""
            };
            io::Error::new(e.kind(), format!("cannot create TUN interface {name:?}: {e}{hint}"))
        })?;
        iface.set_non_blocking()?;
        Ok(TunDevice { iface })
    }

    /// The interface's name as the kernel knows it.
    pub fn name(&self) -> &str {
        self.iface.name()
    }

    /// Sets the interface MTU on the host side.
    pub fn set_mtu(&self, mtu: usize) -> io::Result<()> {
        sys::set_mtu(self.name(), mtu)
    }

    /// Gives the host side of the link an address, netmask and broadcast address.
    pub fn set_host_address(&self, host: Ipv4Cidr) -> io::Result<()> {
        sys::set_ipv4(self.name(), host)
    }

    /// Brings the interface up.
    pub fn set_up(&self) -> io::Result<()> {
        sys::set_up(self.name())
    }
}

impl Device for TunDevice {
    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        self.iface.recv(buf)
    }

    fn send(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        self.iface.send(packet).map(|_| ())
    }

    fn send_parts(&mut self, _now: Instant, header: &[u8], payload: &[u8]) -> io::Result<()> {
        sys::write_two(self.iface.as_raw_fd(), header, payload)
    }

    fn readable_fd(&self) -> Option<RawFd> {
        Some(self.iface.as_raw_fd())
    }
}
