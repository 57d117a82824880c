//! Sockets shaped like `std::net`, over a running [`Stack`](crate::runtime::Stack).
//!
//! Errors are `std::io::Error`s built from the errno Linux would return in
//! the same situation, so kinds and messages match what the same code gets
//! from the kernel (`AddrInUse`, `ConnectionRefused`, `PermissionDenied`,
//! `WouldBlock`, ...). As with `std::net` on Linux, a receive that times out
//! returns `WouldBlock` (EAGAIN), not `TimedOut`.
//!
//! [`Poll`] waits for many sockets at once, as mio's `Poll` does: one
//! thread serves every connection, each registered with a [`Token`].

mod icmp;
mod poll;
mod tcp;
mod udp;

pub use icmp::IcmpSocket;
pub use poll::{Event, Events, Interest, Poll, PollWaker, Source, Token};
pub use tcp::{DEFAULT_BACKLOG, Incoming, TcpListener, TcpStream};
pub use udp::{RecvMeta, UdpSocket};

use crate::runtime::Waiter;
use crate::runtime::{Core, Stack};
use crate::socket::SocketEvent;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::sync::{Arc, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// An error with Linux's errno `code`.
pub(crate) fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The error every call returns once the stack has stopped: `ENETDOWN`
/// after a shutdown; if its thread died, `NetworkDown` with the cause (a
/// panic's message), so a dead stack is never mistaken for a quiet one.
pub(crate) fn network_down(core: &Core) -> io::Error {
    match core.death() {
        Some(cause) => io::Error::new(io::ErrorKind::NetworkDown, cause.to_owned()),
        None => errno(libc::ENETDOWN),
    }
}

/// The first IPv4 address `addr` resolves to.
pub(crate) fn resolve_v4(addr: impl ToSocketAddrs) -> io::Result<SocketAddrV4> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match a {
            SocketAddr::V4(v4) => return Ok(v4),
            SocketAddr::V6(v6) => last = Some(v6),
        }
    }
    Err(match last {
        Some(v6) => io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("tunstack speaks IPv4 only, not {v6}"),
        ),
        None => io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing"),
    })
}

/// Blocking behaviour of one socket.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Blocking {
    pub nonblocking: bool,
    pub read_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
}

/// Rejects a zero timeout, as `std::net` does.
pub(crate) fn check_timeout(t: Option<Duration>) -> io::Result<()> {
    if t == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    Ok(())
}

/// A socket's blocking options, settable through `&self`.
#[derive(Debug, Default)]
pub(crate) struct Options(std::sync::Mutex<Blocking>);

impl Options {
    pub fn get(&self) -> Blocking {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Blocking)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        self.update(|b| b.read_timeout = t);
        Ok(())
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        self.update(|b| b.write_timeout = t);
        Ok(())
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.update(|b| b.nonblocking = on);
        Ok(())
    }
}

/// A socket's waiter, made the first time a call on it blocks: a socket
/// used only without blocking (an event loop's) costs no allocation and no
/// entry in the stack's table of waiters.
#[derive(Debug)]
pub(crate) struct LazyWaiter {
    key: SocketEvent,
    cell: OnceLock<Arc<Waiter>>,
}

impl LazyWaiter {
    /// The waiter of socket `key`, not made yet.
    pub(crate) fn new(key: SocketEvent) -> LazyWaiter {
        LazyWaiter {
            key,
            cell: OnceLock::new(),
        }
    }

    /// A waiter that exists already (the stack's transmit-space waiter).
    pub(crate) fn shared(key: SocketEvent, waiter: Arc<Waiter>) -> LazyWaiter {
        LazyWaiter {
            key,
            cell: OnceLock::from(waiter),
        }
    }

    /// The waiter, made (and filed with the stack) on first use.
    fn get(&self, core: &mut Core) -> Arc<Waiter> {
        self.cell.get_or_init(|| core.waiter(self.key)).clone()
    }

    /// Wakes whoever waits, if anyone ever did.
    pub(crate) fn notify(&self) {
        if let Some(w) = self.cell.get() {
            w.notify();
        }
    }
}

/// Runs `attempt` under the lock until it returns `Some`, sleeping on `cv`
/// between tries; `WouldBlock` when non-blocking or once `timeout` passes.
pub(crate) fn block_on<T>(
    stack: &Stack,
    cv: &LazyWaiter,
    nonblocking: bool,
    timeout: Option<Duration>,
    mut attempt: impl FnMut(&mut Core) -> Option<io::Result<T>>,
) -> io::Result<T> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut core: MutexGuard<'_, Core> = stack.lock();
    loop {
        if core.stopped() {
            return Err(network_down(&core));
        }
        if let Some(r) = attempt(&mut core) {
            stack.kick(core);
            return r;
        }
        // The attempt may have set a timer (a reader's idle timer): the
        // stack thread's timerfd must know, whether we wait or not. (If
        // that sent output, the lock was let go meanwhile: look again
        // before waiting, so no event falls in between.)
        let (guard, released) = stack.kick_held(core);
        core = guard;
        if released {
            if core.stopped() {
                return Err(network_down(&core));
            }
            if let Some(r) = attempt(&mut core) {
                stack.kick(core);
                return r;
            }
        }
        if nonblocking {
            return Err(errno(libc::EAGAIN));
        }
        let waiter = cv.get(&mut core);
        let (g, in_time) = stack.wait(&waiter, core, deadline);
        core = g;
        if !in_time {
            // One last try: the condition may have come true right at the deadline.
            if let Some(r) = attempt(&mut core) {
                stack.kick(core);
                return r;
            }
            return Err(errno(libc::EAGAIN));
        }
    }
}

#[cfg(test)]
mod tests;
