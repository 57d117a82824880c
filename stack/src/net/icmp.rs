//! `IcmpSocket`: an ICMP echo socket, like Linux's ping sockets.

use super::{LazyWaiter, block_on, check_timeout, errno, network_down};
use crate::ping::{IcmpEvent, IcmpHandle, PingError};
use crate::runtime::Stack;
use crate::socket::SocketEvent;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

/// An ICMP echo socket on a tunstack [`Stack`].
#[derive(Debug)]
pub struct IcmpSocket {
    stack: Stack,
    handle: IcmpHandle,
    ready: LazyWaiter,
}

impl IcmpSocket {
    /// Opens an echo socket with its own identifier.
    pub fn bind(stack: &Stack) -> io::Result<IcmpSocket> {
        let mut core = stack.lock();
        if core.stopped() {
            return Err(network_down(&core));
        }
        let handle = core.iface.ping(stack.now()).bind();
        let ready = LazyWaiter::new(SocketEvent::Icmp(handle));
        Ok(IcmpSocket {
            stack: stack.clone(),
            handle,
            ready,
        })
    }

    /// The echo identifier replies must carry.
    pub fn ident(&self) -> u16 {
        self.stack.lock().iface.ping_layer().ident(self.handle)
    }

    /// Sends an echo request.
    pub fn send_echo(&self, dst: Ipv4Addr, seq: u16, data: &[u8], ttl: u8) -> io::Result<()> {
        let mut core = self.stack.lock();
        if core.stopped() {
            return Err(network_down(&core));
        }
        let r = core
            .iface
            .ping(self.stack.now())
            .send_echo(self.handle, dst, seq, data, ttl)
            .map_err(|e| match e {
                PingError::PermissionDenied => errno(libc::EACCES),
                PingError::NetUnreachable => errno(libc::ENETUNREACH),
                PingError::QueueFull => errno(libc::ENOBUFS),
                PingError::TooBig => errno(libc::EMSGSIZE),
            });
        self.stack.kick(core);
        r
    }

    /// The next reply or error, waiting up to `timeout` (`None`: forever);
    /// `WouldBlock` when the time is up.
    pub fn recv(&self, timeout: Option<Duration>) -> io::Result<IcmpEvent> {
        check_timeout(timeout)?;
        block_on(&self.stack, &self.ready, false, timeout, |core| {
            core.iface.ping(self.stack.now()).recv(self.handle).map(Ok)
        })
    }

    /// The stack's clock, to compare with the `at` of what arrives.
    pub fn now(&self) -> crate::time::Instant {
        self.stack.now()
    }
}

impl Drop for IcmpSocket {
    fn drop(&mut self) {
        let mut core = self.stack.lock();
        core.iface.ping(self.stack.now()).close(self.handle);
        core.forget(SocketEvent::Icmp(self.handle));
    }
}
