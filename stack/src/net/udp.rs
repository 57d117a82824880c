//! `UdpSocket`, shaped like `std::net::UdpSocket`.

use super::{LazyWaiter, Options, block_on, errno, network_down, resolve_v4};
use crate::runtime::Stack;
use crate::socket::SocketEvent;
use crate::udp::{BindError, ConnectError, RecvError, RecvLimits, SendError, SocketError, UdpHandle, UdpIcmpError};
use std::io;
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::time::Duration;

/// The errno Linux reports for an ICMP-derived socket error.
fn socket_errno(e: SocketError) -> io::Error {
    errno(match e {
        SocketError::ConnectionRefused => libc::ECONNREFUSED,
        SocketError::ProtocolUnavailable => libc::ENOPROTOOPT,
        SocketError::HostUnreachable => libc::EHOSTUNREACH,
        SocketError::NetUnreachable => libc::ENETUNREACH,
        SocketError::MessageTooBig => libc::EMSGSIZE,
    })
}

fn send_errno(e: SendError) -> io::Error {
    match e {
        SendError::NotConnected => errno(libc::EDESTADDRREQ),
        SendError::InvalidAddress => errno(libc::EINVAL),
        SendError::PermissionDenied => errno(libc::EACCES),
        SendError::MessageTooBig => errno(libc::EMSGSIZE),
        SendError::NetUnreachable => errno(libc::ENETUNREACH),
        SendError::QueueFull => errno(libc::EAGAIN),
        SendError::Socket(s) => socket_errno(s),
    }
}

/// What [`UdpSocket::recv_msg`] received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// The datagram's full length (Linux's `MSG_TRUNC` return value).
    pub full_len: usize,
    /// The sender.
    pub from: SocketAddr,
}

impl RecvMeta {
    /// Whether the datagram was longer than the buffer (the excess is gone).
    pub fn truncated(&self) -> bool {
        self.full_len > self.len
    }
}

/// A UDP socket on a tunstack [`Stack`]. Methods take `&self`, so one socket
/// can be shared between a reading and a writing thread, as with std's.
#[derive(Debug)]
pub struct UdpSocket {
    pub(super) stack: Stack,
    pub(super) handle: UdpHandle,
    readable: LazyWaiter,
    /// The stack's waiter for room in the transmit queue.
    tx_space: LazyWaiter,
    options: Options,
}

impl UdpSocket {
    /// Binds a socket to `addr` on `stack` (port 0: an ephemeral port).
    pub fn bind(stack: &Stack, addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let local = resolve_v4(addr)?;
        let mut core = stack.lock();
        if core.stopped() {
            return Err(network_down(&core));
        }
        let handle = core.iface.udp(stack.now()).bind(local).map_err(|e| match e {
            BindError::AddrInUse => errno(libc::EADDRINUSE),
            BindError::AddrNotAvailable => errno(libc::EADDRNOTAVAIL),
        })?;
        let readable = LazyWaiter::new(SocketEvent::Udp(handle));
        drop(core);
        Ok(UdpSocket {
            stack: stack.clone(),
            handle,
            readable,
            tx_space: LazyWaiter::shared(SocketEvent::Udp(handle), stack.tx_space()),
            options: Options::default(),
        })
    }

    /// Sets the default peer; only its datagrams are received afterwards.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let remote = resolve_v4(addr)?;
        let mut core = self.stack.lock();
        if core.stopped() {
            return Err(network_down(&core));
        }
        core.iface
            .udp(self.stack.now())
            .connect(self.handle, remote)
            .map_err(|e| match e {
                ConnectError::InvalidAddress => errno(libc::EINVAL),
                ConnectError::PermissionDenied => errno(libc::EACCES),
                ConnectError::NetUnreachable => errno(libc::ENETUNREACH),
            })
    }

    /// Sends `buf` to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.send_inner(buf, None, None)
    }

    /// Sends `buf` to `addr`.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let dst = resolve_v4(addr)?;
        self.send_inner(buf, Some(dst), None)
    }

    /// Sends `buf` to `addr` with IP TTL `ttl` for this datagram only (traceroute's probes).
    pub fn send_to_with_ttl(&self, buf: &[u8], addr: impl ToSocketAddrs, ttl: u8) -> io::Result<usize> {
        let dst = resolve_v4(addr)?;
        self.send_inner(buf, Some(dst), Some(ttl))
    }

    fn send_inner(&self, buf: &[u8], dst: Option<SocketAddrV4>, ttl: Option<u8>) -> io::Result<usize> {
        let b = self.options.get();
        block_on(&self.stack, &self.tx_space, b.nonblocking, b.write_timeout, |core| {
            let now = self.stack.now();
            let r = match dst {
                Some(d) => core.iface.udp(now).send_to(self.handle, d, buf, ttl),
                None => core.iface.udp(now).send(self.handle, buf),
            };
            match r {
                Ok(()) => Some(Ok(buf.len())),
                // A full transmit queue drains by itself: wait for space.
                Err(SendError::QueueFull) => None,
                Err(e) => Some(Err(send_errno(e))),
            }
        })
    }

    fn recv_inner(&self, buf: &mut [u8], peek: bool) -> io::Result<RecvMeta> {
        let b = self.options.get();
        block_on(
            &self.stack,
            &self.readable,
            b.nonblocking,
            b.read_timeout,
            |core| match core.iface.udp(self.stack.now()).recv_from(self.handle, buf, peek) {
                Ok(r) => Some(Ok(RecvMeta {
                    len: r.len,
                    full_len: r.full_len,
                    from: SocketAddr::V4(r.from),
                })),
                Err(RecvError::WouldBlock) => None,
                Err(RecvError::Socket(e)) => Some(Err(socket_errno(e))),
            },
        )
    }

    /// Receives one datagram; bytes beyond `buf` are dropped, as on Linux.
    /// [`recv_msg`](Self::recv_msg) also tells the full length.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let m = self.recv_inner(buf, false)?;
        Ok((m.len, m.from))
    }

    /// Receives one datagram and reports its full length (like `MSG_TRUNC`).
    pub fn recv_msg(&self, buf: &mut [u8]) -> io::Result<RecvMeta> {
        self.recv_inner(buf, false)
    }

    /// Receives one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.recv_inner(buf, false)?.len)
    }

    /// Like `recv_from`, but leaves the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let m = self.recv_inner(buf, true)?;
        Ok((m.len, m.from))
    }

    /// Like `recv`, but leaves the datagram queued.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.recv_inner(buf, true)?.len)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(
            self.stack.lock().iface.udp_layer().local_addr(self.handle),
        ))
    }

    /// The connected peer; `NotConnected` if there is none.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stack
            .lock()
            .iface
            .udp_layer()
            .peer_addr(self.handle)
            .map(SocketAddr::V4)
            .ok_or_else(|| errno(libc::ENOTCONN))
    }

    /// Bounds how long receives block (`None`: forever). Zero is refused.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.options.set_read_timeout(t)
    }

    /// Bounds how long sends block on a full transmit queue. Zero is refused.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.options.set_write_timeout(t)
    }

    /// The receive timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.options.get().read_timeout)
    }

    /// The send timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.options.get().write_timeout)
    }

    /// In non-blocking mode calls return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.options.set_nonblocking(on)
    }

    /// Allows sending to broadcast addresses (`SO_BROADCAST`).
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.stack
            .lock()
            .iface
            .udp(self.stack.now())
            .set_broadcast(self.handle, on);
        Ok(())
    }

    /// Whether sending to broadcast addresses is allowed.
    pub fn broadcast(&self) -> io::Result<bool> {
        Ok(self.stack.lock().iface.udp_layer().broadcast(self.handle))
    }

    /// Sets the IP TTL of datagrams sent (`IP_TTL`), 1 to 255.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = u8::try_from(ttl)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| errno(libc::EINVAL))?;
        self.stack.lock().iface.udp(self.stack.now()).set_ttl(self.handle, ttl);
        Ok(())
    }

    /// The IP TTL of datagrams sent.
    pub fn ttl(&self) -> io::Result<u32> {
        Ok(u32::from(self.stack.lock().iface.udp_layer().ttl(self.handle)))
    }

    /// Bounds the receive queue: payload bytes and datagrams (like `SO_RCVBUF`).
    pub fn set_recv_limits(&self, bytes: usize, datagrams: usize) -> io::Result<()> {
        let limits = RecvLimits { bytes, datagrams };
        self.stack
            .lock()
            .iface
            .udp(self.stack.now())
            .set_recv_limits(self.handle, limits);
        Ok(())
    }

    /// Takes the pending error (`SO_ERROR`), e.g. a port unreachable on a connected socket.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(self
            .stack
            .lock()
            .iface
            .udp(self.stack.now())
            .take_error(self.handle)
            .map(socket_errno))
    }

    /// Queues every ICMP error about this socket's datagrams (`IP_RECVERR`),
    /// for [`recv_error`](Self::recv_error): what traceroute reads.
    pub fn set_recv_errors(&self, on: bool) -> io::Result<()> {
        self.stack
            .lock()
            .iface
            .udp(self.stack.now())
            .set_recv_errors(self.handle, on);
        Ok(())
    }

    /// The next queued ICMP error, waiting up to `timeout` (`None`: forever);
    /// `WouldBlock` when the time is up.
    pub fn recv_error(&self, timeout: Option<Duration>) -> io::Result<UdpIcmpError> {
        super::check_timeout(timeout)?;
        block_on(&self.stack, &self.readable, false, timeout, |core| {
            core.iface.udp(self.stack.now()).recv_error(self.handle).map(Ok)
        })
    }

    /// Names the socket's user for netstat.
    pub fn set_owner(&self, owner: &str) {
        self.stack
            .lock()
            .iface
            .udp(self.stack.now())
            .set_owner(self.handle, Some(owner.into()));
    }

    /// The stack this socket lives on.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let mut core = self.stack.lock();
        core.iface.udp(self.stack.now()).close(self.handle);
        core.forget(SocketEvent::Udp(self.handle));
    }
}
