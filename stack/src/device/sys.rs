//! The crate's only `unsafe` code: interface ioctls, the list of the
//! host's addresses, `ppoll(2)`, the stack thread's eventfd and timerfd,
//! and handing freed heap back to the OS.
//!
//! Each unsafe block passes a pointer to a live, correctly sized value that
//! the kernel reads or writes for the duration of the call only.

use crate::ip::Ipv4Cidr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Gives the heap's free pages back to the OS (glibc's `malloc_trim`):
/// after thousands of buffers were freed, glibc would otherwise keep them
/// as resident memory.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim(3) takes no pointer; it only walks the allocator's own lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// An `ifreq` naming `ifname`, the rest zeroed.
fn ifreq(ifname: &str) -> io::Result<libc::ifreq> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data (a name array and a union of PODs);
    // all-zero is a valid value of every field.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// A `sockaddr` holding an AF_INET address, port 0 (the layout of `sockaddr_in`).
fn sockaddr_v4(ip: Ipv4Addr) -> libc::sockaddr {
    let mut data = [0 as libc::c_char; 14];
    for (dst, src) in data[2..6].iter_mut().zip(ip.octets()) {
        *dst = src as libc::c_char;
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data: data,
    }
}

/// An AF_INET datagram socket, the handle interface ioctls go through.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative result is a new fd we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs one interface ioctl on `req`.
fn ioctl(request: libc::c_ulong, req: &mut libc::ifreq, what: &str) -> io::Result<()> {
    let sock = control_socket()?;
    // SAFETY: `req` is a valid, exclusively borrowed ifreq for the whole call;
    // every SIOC[GS]IF* request used here reads or writes only an ifreq.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut libc::ifreq) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Sets the MTU of `ifname` (SIOCSIFMTU).
pub fn set_mtu(ifname: &str, mtu: usize) -> io::Result<()> {
    let mut req = ifreq(ifname)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    ioctl(libc::SIOCSIFMTU, &mut req, "set MTU")
}

/// Sets the address, netmask and broadcast address of `ifname`.
pub fn set_ipv4(ifname: &str, cidr: Ipv4Cidr) -> io::Result<()> {
    let mut req = ifreq(ifname)?;
    req.ifr_ifru.ifru_addr = sockaddr_v4(cidr.addr());
    ioctl(libc::SIOCSIFADDR, &mut req, "set address")?;
    let mut req = ifreq(ifname)?;
    req.ifr_ifru.ifru_netmask = sockaddr_v4(cidr.netmask());
    ioctl(libc::SIOCSIFNETMASK, &mut req, "set netmask")?;
    if let Some(brd) = cidr.broadcast() {
        let mut req = ifreq(ifname)?;
        req.ifr_ifru.ifru_broadaddr = sockaddr_v4(brd);
        ioctl(libc::SIOCSIFBRDADDR, &mut req, "set broadcast")?;
    }
    Ok(())
}

/// Brings `ifname` up (IFF_UP | IFF_RUNNING), keeping its other flags.
pub fn set_up(ifname: &str) -> io::Result<()> {
    let mut req = ifreq(ifname)?;
    ioctl(libc::SIOCGIFFLAGS, &mut req, "get flags")?;
    // SAFETY: SIOCGIFFLAGS just filled the union's flags member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl(libc::SIOCSIFFLAGS, &mut req, "bring up")
}

/// Every IPv4 address of every interface in this thread's network namespace,
/// with its interface's name (getifaddrs(3), which asks the kernel by netlink).
pub fn ipv4_addresses() -> io::Result<Vec<(String, Ipv4Cidr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list it allocated into `head`, ours until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut node = head;
    while !node.is_null() {
        // SAFETY: `node` is an element of the list, alive until freeifaddrs below.
        let ifa = unsafe { &*node };
        node = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr whose family says
        // what it really is; for AF_INET the address and netmask are both
        // sockaddr_in, and the name is a NUL-terminated string.
        let (addr, mask, name) = unsafe {
            if i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            (
                (*ifa.ifa_addr.cast::<libc::sockaddr_in>()).sin_addr.s_addr,
                (*ifa.ifa_netmask.cast::<libc::sockaddr_in>()).sin_addr.s_addr,
                std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned(),
            )
        };
        let prefix = u32::from_be(mask).leading_ones() as u8;
        if let Some(cidr) = Ipv4Cidr::new(Ipv4Addr::from(u32::from_be(addr)), prefix) {
            found.push((name, cidr));
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once; no reference into it survives.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

/// Most fds [`wait_readable`] watches at once (kept on the stack: no allocation per wait).
pub const MAX_POLL_FDS: usize = 8;

/// Waits until one of `fds` is readable or `timeout` passes (`None`: forever).
/// Returns the indexes of readable fds in `ready`; an interrupted wait
/// (a signal) returns with none.
pub fn wait_readable(fds: &[RawFd], timeout: Option<Duration>, ready: &mut Vec<usize>) -> io::Result<()> {
    ready.clear();
    let empty = libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    };
    let mut pollfds = [empty; MAX_POLL_FDS];
    assert!(
        fds.len() <= MAX_POLL_FDS,
        "wait_readable takes at most {MAX_POLL_FDS} fds"
    );
    for (p, &fd) in pollfds.iter_mut().zip(fds) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    let pollfds = &mut pollfds[..fds.len()];
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: pollfds is a live array of pollfds.len() entries; ts_ptr is null
    // or points to a timespec that outlives the call; no signal mask is passed.
    let rc = unsafe {
        libc::ppoll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(())
        } else {
            Err(e)
        };
    }
    for (i, p) in pollfds.iter().enumerate() {
        if p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0 {
            ready.push(i);
        }
    }
    Ok(())
}

/// An `eventfd(2)` counter: writes from any thread make it readable until
/// drained. The stack thread's wake-up line: one 8-byte write, no buffer to
/// fill, however many wakes pile up.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the descriptor readable (adds one to the counter).
    pub fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array. A full counter
        // (EAGAIN) is readable already, so the result does not matter.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Resets the counter, so the descriptor is no longer readable.
    pub fn drain(&self) {
        read_counter(&self.0);
    }

    /// The descriptor, for `wait_readable`.
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Most buffers [`readv`] and [`writev`] gather at once (kept on the
/// stack: no allocation per packet).
pub const MAX_IOV: usize = 4;

/// `iovec`s for `parts`, on the stack.
fn iovecs(parts: impl ExactSizeIterator<Item = (*mut u8, usize)>) -> ([libc::iovec; MAX_IOV], usize) {
    let n = parts.len();
    assert!(n <= MAX_IOV, "at most {MAX_IOV} buffers at once");
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOV];
    for (v, (base, len)) in iov.iter_mut().zip(parts) {
        v.iov_base = base.cast();
        v.iov_len = len;
    }
    (iov, n)
}

/// Writes `parts` as one packet with one `writev(2)` (a TUN takes each
/// write as one packet, however many buffers it gathers): a virtio-net
/// header, an IP header and a payload leave without being joined first.
pub fn writev(fd: RawFd, parts: &[&[u8]]) -> io::Result<()> {
    let (iov, n) = iovecs(parts.iter().map(|p| (p.as_ptr().cast_mut(), p.len())));
    // SAFETY: the first n iovecs point into live slices of the lengths
    // given; the kernel only reads them (writev), for the duration of the call.
    let rc = unsafe { libc::writev(fd, iov.as_ptr(), n as libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one packet into `parts` in order with one `readv(2)`; returns
/// its length. From a TUN that is the packet's whole length even when the
/// buffers held less of it (the rest is cut off).
pub fn readv(fd: RawFd, parts: &mut [&mut [u8]]) -> io::Result<usize> {
    let (iov, n) = iovecs(parts.iter_mut().map(|p| (p.as_mut_ptr(), p.len())));
    // SAFETY: the first n iovecs point into live, exclusively borrowed
    // slices of the lengths given, which the kernel fills during the call only.
    let rc = unsafe { libc::readv(fd, iov.as_ptr(), n as libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Opens `/dev/net/tun` and creates (or attaches to) the TUN interface
/// `name`, without packet info, non-blocking, with the virtio-net header
/// before every packet if `vnet_hdr` (`IFF_VNET_HDR`, which only
/// `TUNSETIFF` can set: a second `TUNSETIFF` on an attached fd fails).
/// Returns the descriptor and the name the kernel gave (a `%d` in `name`
/// is filled in).
pub fn open_tun(name: &str, vnet_hdr: bool) -> io::Result<(OwnedFd, String)> {
    let mut req = ifreq(name)?;
    // SAFETY: open(2) with a NUL-terminated path and no other pointer; a
    // non-negative result is a new fd we own.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let flags = libc::IFF_TUN | libc::IFF_NO_PI | if vnet_hdr { libc::IFF_VNET_HDR } else { 0 };
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: `req` is a valid, exclusively borrowed ifreq; TUNSETIFF reads
    // its name and flags and writes the interface's name back into it.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = req.ifr_name.iter().position(|&c| c == 0).unwrap_or(req.ifr_name.len());
    let bytes: Vec<u8> = req.ifr_name[..len].iter().map(|&c| c as u8).collect();
    Ok((fd, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Asks a TUN opened with the virtio-net header for `size`-byte headers
/// (`TUNSETVNETHDRSZ`) and reads back what it will use (`TUNGETVNETHDRSZ`).
pub fn set_vnet_header_size(fd: RawFd, size: usize) -> io::Result<usize> {
    let mut value = libc::c_int::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both requests read or write one c_int through a pointer to a
    // live local, for the duration of the call.
    unsafe {
        if libc::ioctl(fd, libc::TUNSETVNETHDRSZ as _, &value as *const libc::c_int) < 0 {
            return Err(io::Error::last_os_error());
        }
        value = 0;
        if libc::ioctl(fd, libc::TUNGETVNETHDRSZ as _, &mut value as *mut libc::c_int) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(value as usize)
}

/// Tells a TUN which offloads the reader handles (`TUNSETOFFLOAD` with
/// `TUN_F_*` bits): the kernel then hands it, and takes from it, packets
/// with partial checksums and super-packets of those kinds.
pub fn set_tun_offload(fd: RawFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value; no pointer is passed.
    if unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD as _, libc::c_ulong::from(flags)) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the 8-byte counter of an eventfd or timerfd, which resets it.
fn read_counter(fd: &OwnedFd) {
    let mut value = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a live array; EAGAIN means it was 0.
    let _ = unsafe { libc::read(fd.as_raw_fd(), value.as_mut_ptr().cast(), value.len()) };
}

/// A `timerfd_create(2)` one-shot timer on the monotonic clock: readable
/// once it expires. Any thread can move it without waking the stack
/// thread, which is what lets an application thread arm a retransmission
/// timer without a wake-up.
#[derive(Debug)]
pub struct TimerFd(OwnedFd);

impl TimerFd {
    /// A disarmed, non-blocking, close-on-exec timer.
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: timerfd_create takes no pointers.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Expires after `after` (at least a nanosecond), or never (`None`).
    pub fn set(&self, after: Option<Duration>) {
        let value = match after {
            // An all-zero value would disarm it: due now means in 1 ns.
            Some(d) => libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos().max(u32::from(d.is_zero())) as libc::c_long,
            },
            None => libc::timespec { tv_sec: 0, tv_nsec: 0 },
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: value,
        };
        // SAFETY: spec is a live itimerspec; the old value is not asked for.
        // The descriptor and arguments are valid, so it cannot fail.
        let _ = unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// Clears an expiry, so the descriptor is no longer readable.
    pub fn drain(&self) {
        read_counter(&self.0);
    }

    /// The descriptor, for `wait_readable`.
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn interface_names_are_checked_before_any_ioctl() {
        assert!(ifreq("").is_err());
        assert!(ifreq("a-name-far-too-long-for-linux").is_err());
        assert!(ifreq("nul\0inside").is_err());
        let r = ifreq("tun0").unwrap();
        assert_eq!(
            r.ifr_name[..5],
            [b't' as libc::c_char, b'u' as _, b'n' as _, b'0' as _, 0]
        );
    }

    #[test]
    fn sockaddr_carries_family_and_address() {
        let s = sockaddr_v4(Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(s.sa_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(s.sa_data[2..6], [10, 200u8 as libc::c_char, 0, 1]);
    }

    #[test]
    fn the_loopback_address_is_listed() {
        // Every network namespace has lo; it has 127.0.0.1/8 once lo is up,
        // which it is where tests run (the machine's own namespace or a sandbox).
        let addrs = ipv4_addresses().unwrap();
        assert!(
            addrs.iter().any(|(n, c)| n == "lo" && c.to_string() == "127.0.0.1/8"),
            "{addrs:?}"
        );
    }

    #[test]
    fn writev_gathers_one_datagram_and_readv_scatters_it() {
        // A datagram socket keeps packet boundaries, as a TUN does.
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        writev(a.as_raw_fd(), &[b"head", b"er+", b"payload"]).unwrap();
        let (mut first, mut second, mut spare) = ([0u8; 4], [0u8; 8], [0u8; 1]);
        // 14 bytes into 13: cut, as a TUN cuts, and the spare byte shows it.
        let n = readv(b.as_raw_fd(), &mut [&mut first, &mut second, &mut spare]).unwrap();
        assert_eq!(n, 13);
        assert_eq!((&first, &second[..], spare), (b"head", &b"er+paylo"[..], [b'a']));
        writev(a.as_raw_fd(), &[b"tiny"]).unwrap();
        let n = readv(b.as_raw_fd(), &mut [&mut second, &mut spare]).unwrap();
        assert_eq!((n, &second[..n]), (4, &b"tiny"[..]));
    }

    #[test]
    fn wait_readable_times_out_then_sees_data() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut ready = Vec::new();
        wait_readable(&[b.as_raw_fd()], Some(Duration::from_millis(5)), &mut ready).unwrap();
        assert!(ready.is_empty());
        a.write_all(b"x").unwrap();
        wait_readable(
            &[a.as_raw_fd(), b.as_raw_fd()],
            Some(Duration::from_secs(5)),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready, [1]);
    }

    #[test]
    fn eventfd_is_readable_from_signal_to_drain() {
        let e = EventFd::new().unwrap();
        let mut ready = Vec::new();
        wait_readable(&[e.raw()], Some(Duration::from_millis(1)), &mut ready).unwrap();
        assert!(ready.is_empty());
        e.signal();
        e.signal();
        wait_readable(&[e.raw()], Some(Duration::from_secs(5)), &mut ready).unwrap();
        assert_eq!(ready, [0]);
        e.drain();
        wait_readable(&[e.raw()], Some(Duration::from_millis(1)), &mut ready).unwrap();
        assert!(ready.is_empty(), "one drain clears every signal");
    }

    #[test]
    fn timerfd_expires_once_and_can_be_moved_or_disarmed() {
        let t = TimerFd::new().unwrap();
        let mut ready = Vec::new();
        t.set(Some(Duration::from_secs(60)));
        t.set(Some(Duration::ZERO));
        wait_readable(&[t.raw()], Some(Duration::from_secs(5)), &mut ready).unwrap();
        assert_eq!(ready, [0], "moved earlier: due at once");
        t.drain();
        t.set(Some(Duration::from_millis(1)));
        t.set(None);
        wait_readable(&[t.raw()], Some(Duration::from_millis(20)), &mut ready).unwrap();
        assert!(ready.is_empty(), "disarmed");
    }
}
