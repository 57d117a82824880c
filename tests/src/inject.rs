//! Writing raw IPv4 packets onto an interface with an AF_PACKET socket.
//!
//! On a TUN interface the host kernel hands such a packet straight to the
//! TUN's reader (the stack), exactly as written: no checksum fix-ups, no
//! length checks. That is how tests deliver malformed packets.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETH_P_IP: u16 = 0x0800;

/// An AF_PACKET datagram socket bound to nothing, sending on one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    /// Opens a socket sending on `ifname` in the calling thread's network namespace.
    pub fn open(ifname: &str) -> io::Result<PacketSocket> {
        let cname = std::ffi::CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: cname is a valid NUL-terminated string for the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socket(2) takes no pointers; a non-negative result is ours.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_IP.to_be()),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket {
            // SAFETY: fd is a fresh descriptor owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            ifindex: ifindex as i32,
        })
    }

    /// Sends `packet` (a raw IPv4 packet, any bytes at all) out of the interface.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; zero is valid for every field.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_IP.to_be();
        addr.sll_ifindex = self.ifindex;
        // SAFETY: packet and addr are live for the call, with the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
