//! Socket options std does not offer, for host-side sockets in live tests.

use std::io;
use std::os::fd::AsRawFd;

/// Binds a socket to one interface (`SO_BINDTODEVICE`), so that, e.g.,
/// datagrams to 255.255.255.255 leave through the TUN.
pub fn bind_to_device(sock: &impl AsRawFd, ifname: &str) -> io::Result<()> {
    let name = ifname.as_bytes();
    // SAFETY: name points to name.len() readable bytes for the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
