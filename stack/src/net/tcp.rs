//! `TcpListener` and `TcpStream`, shaped like `std::net`'s.

use super::{LazyWaiter, Options, block_on, check_timeout, errno, network_down, resolve_v4};

/// The most an application's read or write copies under one hold of the
/// core's lock. A larger call lets the lock go between chunks, so the
/// stack thread waits behind at most one chunk's copy (a few µs), not a
/// whole buffer's. (DESIGN wants no lock across an application's copy at
/// all; with a core that neither locks nor uses `unsafe`, its buffers
/// cannot be shared with another thread, so the copy is bounded instead.)
const COPY_CHUNK: usize = 64 * 1024;

/// Copies `len` bytes with `copy(range)`, one [`COPY_CHUNK`] per call,
/// none of which waits. Stops at the first chunk not copied whole; an
/// error after a partial copy is left for the next call (the core's
/// errors are sticky), as Linux returns what it copied first.
fn in_chunks(len: usize, mut copy: impl FnMut(std::ops::Range<usize>) -> io::Result<usize>) -> io::Result<usize> {
    let mut done = 0;
    loop {
        let end = len.min(done + COPY_CHUNK);
        let n = match copy(done..end) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => return Ok(done),
        };
        let whole = n == end - done;
        done += n;
        if !whole || done >= len {
            return Ok(done);
        }
    }
}
use crate::ip::Sockets;
use crate::runtime::Stack;
use crate::socket::SocketEvent;
use crate::tcp::tcb::{ConnError, State};
use crate::tcp::{
    CongestionAlgorithm, ConnectError, IoError, ListenError, ListenerHandle, Shutdown, TcpHandle, TcpLayer,
};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The backlog `TcpListener::bind` uses, as std's (128).
pub const DEFAULT_BACKLOG: usize = 128;

fn conn_errno(e: ConnError) -> io::Error {
    errno(match e {
        ConnError::Refused => libc::ECONNREFUSED,
        ConnError::Reset => libc::ECONNRESET,
        ConnError::TimedOut => libc::ETIMEDOUT,
        ConnError::NetUnreachable => libc::ENETUNREACH,
        ConnError::HostUnreachable => libc::EHOSTUNREACH,
        ConnError::ProtocolUnavailable => libc::ENOPROTOOPT,
    })
}

fn io_errno(e: IoError) -> io::Error {
    match e {
        IoError::WouldBlock => errno(libc::EAGAIN),
        IoError::NotConnected => errno(libc::ENOTCONN),
        IoError::BrokenPipe => errno(libc::EPIPE),
        IoError::Failed(c) => conn_errno(c),
    }
}

/// A listening TCP socket on a tunstack [`Stack`].
#[derive(Debug)]
pub struct TcpListener {
    pub(super) stack: Stack,
    pub(super) handle: ListenerHandle,
    ready: LazyWaiter,
    options: Options,
}

impl TcpListener {
    /// Listens on `addr` with the default backlog of 128.
    pub fn bind(stack: &Stack, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListener::bind_with_backlog(stack, addr, DEFAULT_BACKLOG)
    }

    /// Listens on `addr`; `backlog` bounds established connections waiting
    /// for `accept` (like `listen(2)`; Linux lets `backlog + 1` wait).
    pub fn bind_with_backlog(stack: &Stack, addr: impl ToSocketAddrs, backlog: usize) -> io::Result<TcpListener> {
        let local = resolve_v4(addr)?;
        let mut core = stack.lock();
        if core.stopped() {
            return Err(network_down(&core));
        }
        let handle = core
            .iface
            .tcp(stack.now())
            .listen(local, backlog)
            .map_err(|e| match e {
                ListenError::AddrInUse => errno(libc::EADDRINUSE),
                ListenError::AddrNotAvailable => errno(libc::EADDRNOTAVAIL),
            })?;
        let ready = LazyWaiter::new(SocketEvent::Listener(handle));
        Ok(TcpListener {
            stack: stack.clone(),
            handle,
            ready,
            options: Options::default(),
        })
    }

    /// Waits for and returns the next connection.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let b = self.options.get();
        let (h, remote) = block_on(&self.stack, &self.ready, b.nonblocking, None, |core| {
            core.iface.tcp(self.stack.now()).accept(self.handle).map(Ok)
        })?;
        let stream = TcpStream::from_handle(&self.stack, h);
        Ok((stream, SocketAddr::V4(remote)))
    }

    /// Like `accept`, but gives up with `WouldBlock` after `timeout`.
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<(TcpStream, SocketAddr)> {
        check_timeout(Some(timeout))?;
        let (h, remote) = block_on(&self.stack, &self.ready, false, Some(timeout), |core| {
            core.iface.tcp(self.stack.now()).accept(self.handle).map(Ok)
        })?;
        Ok((TcpStream::from_handle(&self.stack, h), SocketAddr::V4(remote)))
    }

    /// An endless iterator over accepted connections.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(
            self.stack.lock().iface.tcp_layer().listener_addr(self.handle),
        ))
    }

    /// Names the listener's user for netstat (connections it accepts inherit it).
    pub fn set_owner(&self, owner: &str) {
        self.stack
            .lock()
            .iface
            .tcp(self.stack.now())
            .set_listener_owner(self.handle, Some(owner.into()));
    }

    /// In non-blocking mode `accept` returns `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.options.set_nonblocking(on)
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut core = self.stack.lock();
        let now = self.stack.now();
        core.iface.tcp(now).close_listener(self.handle);
        core.forget(SocketEvent::Listener(self.handle));
        self.stack.kick(core);
    }
}

/// Iterator returned by [`TcpListener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A TCP connection on a tunstack [`Stack`]. `Read` and `Write` work on
/// `&TcpStream` too, so one thread can read while another writes.
#[derive(Debug)]
pub struct TcpStream {
    pub(super) stack: Stack,
    pub(super) handle: TcpHandle,
    ready: LazyWaiter,
    options: Options,
    abort_on_drop: AtomicBool,
    /// Held across a read's chunks, and a write's (`copy_in_chunks`).
    read_io: std::sync::Mutex<()>,
    write_io: std::sync::Mutex<()>,
}

/// Which way a copy goes.
#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl TcpStream {
    fn from_handle(stack: &Stack, handle: TcpHandle) -> TcpStream {
        let ready = LazyWaiter::new(SocketEvent::Tcp(handle));
        TcpStream {
            stack: stack.clone(),
            handle,
            ready,
            options: Options::default(),
            abort_on_drop: AtomicBool::new(false),
            read_io: std::sync::Mutex::new(()),
            write_io: std::sync::Mutex::new(()),
        }
    }

    /// Connects to `addr`, waiting as long as SYN retransmissions last (about two minutes).
    pub fn connect(stack: &Stack, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        TcpStream::connect_inner(stack, addr, None)
    }

    /// Connects to `addr`, failing with `TimedOut` after `timeout`.
    pub fn connect_timeout(stack: &Stack, addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        check_timeout(Some(timeout))?;
        TcpStream::connect_inner(stack, addr, Some(timeout))
    }

    fn connect_inner(stack: &Stack, addr: impl ToSocketAddrs, timeout: Option<Duration>) -> io::Result<TcpStream> {
        // Dropping the stream on failure releases the connection.
        let stream = TcpStream::connect_nonblocking(stack, addr)?;
        match stream.wait_connected(timeout) {
            Ok(()) => Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(errno(libc::ETIMEDOUT)),
            Err(e) => Err(e),
        }
    }

    /// Starts connecting to `addr` (the SYN goes out) and returns at once
    /// with the stream in SYN_SENT, as a non-blocking `connect(2)` does;
    /// [`TcpStream::wait_connected`] waits for the outcome. Dropping the
    /// stream first abandons the attempt, silently, as `close(2)` in SYN_SENT.
    pub fn connect_nonblocking(stack: &Stack, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let remote = resolve_v4(addr)?;
        let handle = {
            let mut core = stack.lock();
            if core.stopped() {
                return Err(network_down(&core));
            }
            let now = stack.now();
            let h = core.iface.tcp(now).connect(remote, 0).map_err(|e| match e {
                ConnectError::InvalidAddress => errno(libc::EINVAL),
                ConnectError::NetUnreachable => errno(libc::ENETUNREACH),
                ConnectError::AddrInUse => errno(libc::EADDRNOTAVAIL),
                ConnectError::AddrNotAvailable => errno(libc::EADDRNOTAVAIL),
                ConnectError::TooManyConnections => errno(libc::ENOBUFS),
            })?;
            stack.kick(core);
            h
        };
        Ok(TcpStream::from_handle(stack, handle))
    }

    /// Waits up to `timeout` (`None`: as long as the handshake lasts) for
    /// the connect begun by [`TcpStream::connect_nonblocking`]: `Ok` once the
    /// handshake is complete, `WouldBlock` while it is still under way, or the reason it
    /// failed (`ConnectionRefused`, `TimedOut`, ...). Waiting in short
    /// slices lets the caller give up for reasons of its own in between.
    pub fn wait_connected(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        let handle = self.handle;
        block_on(&self.stack, &self.ready, false, timeout, |core| {
            let tcp = core.iface.tcp_layer();
            if !tcp.connect_done(handle) {
                return None;
            }
            Some(match tcp.error(handle) {
                Some(e) => Err(conn_errno(e)),
                None if tcp.state(handle) == State::Closed => Err(errno(libc::ECONNREFUSED)),
                None => Ok(()),
            })
        })
    }

    /// Waits until the peer has acknowledged everything written so far (or
    /// the connection has failed), at most `timeout`; `WouldBlock` if time
    /// ran out first. Like polling Linux's `SIOCOUTQ` down to zero.
    pub fn wait_acknowledged(&self, timeout: Duration) -> io::Result<()> {
        check_timeout(Some(timeout))?;
        let handle = self.handle;
        block_on(&self.stack, &self.ready, false, Some(timeout), |core| {
            let tcp = core.iface.tcp_layer();
            if let Some(e) = tcp.error(handle) {
                return Some(Err(conn_errno(e)));
            }
            (tcp.send_queue(handle) == 0).then_some(Ok(()))
        })
    }

    fn read_inner(&self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = self.options.get().read_timeout;
        self.copy_in_chunks(Direction::Read, buf.len(), timeout, |tcp, h, range| {
            tcp.recv(h, &mut buf[range])
        })
    }

    /// Reads and throws away up to `max` bytes without copying them, as
    /// `read` would take them (Linux's `recv` with `MSG_TRUNC` on a TCP
    /// socket): `Ok(0)` is end of stream. Blocking, timeouts and errors as
    /// for `read`.
    pub fn discard(&self, max: usize) -> io::Result<usize> {
        let timeout = self.options.get().read_timeout;
        self.copy_in_chunks(Direction::Read, max, timeout, |tcp, h, range| {
            tcp.recv_discard(h, range.len())
        })
    }

    fn write_inner(&self, buf: &[u8]) -> io::Result<usize> {
        let timeout = self.options.get().write_timeout;
        self.copy_in_chunks(Direction::Write, buf.len(), timeout, |tcp, h, range| {
            tcp.send(h, &buf[range])
        })
    }

    /// A read or a write of `len` bytes by `op`, a [`COPY_CHUNK`] per hold
    /// of the core's lock. The direction's own lock is held across the
    /// chunks, so that two threads' calls do not interleave (Linux holds
    /// the socket's lock the same way), but not while the call waits (up
    /// to `timeout`) for the socket to become ready.
    fn copy_in_chunks(
        &self,
        direction: Direction,
        len: usize,
        timeout: Option<Duration>,
        mut op: impl FnMut(&mut Sockets<'_, TcpLayer>, TcpHandle, std::ops::Range<usize>) -> Result<usize, IoError>,
    ) -> io::Result<usize> {
        let nonblocking = self.options.get().nonblocking;
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let io = match direction {
            Direction::Read => &self.read_io,
            Direction::Write => &self.write_io,
        };
        loop {
            {
                let _turn = io.lock().unwrap_or_else(|p| p.into_inner());
                let copied = in_chunks(len, |range| {
                    block_on(&self.stack, &self.ready, true, None, |core| {
                        let now = self.stack.now();
                        match op(&mut core.iface.tcp(now), self.handle, range.clone()) {
                            Ok(n) => Some(Ok(n)),
                            Err(IoError::WouldBlock) => None,
                            Err(e) => Some(Err(io_errno(e))),
                        }
                    })
                });
                match copied {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && !nonblocking => {}
                    done => return done,
                }
            }
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(errno(libc::EAGAIN));
            }
            block_on(&self.stack, &self.ready, false, left, |core| {
                let r = core.iface.tcp_layer().readiness(self.handle);
                let ready = match direction {
                    Direction::Read => r.readable,
                    Direction::Write => r.writable || r.error || r.write_closed,
                };
                ready.then_some(Ok(()))
            })?;
        }
    }

    /// Shuts down reading, writing (FIN after queued data), or both.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        let how = match how {
            std::net::Shutdown::Read => Shutdown::Read,
            std::net::Shutdown::Write => Shutdown::Write,
            std::net::Shutdown::Both => Shutdown::Both,
        };
        let mut core = self.stack.lock();
        if core.stopped() {
            return Err(network_down(&core));
        }
        let now = self.stack.now();
        let r = core.iface.tcp(now).shutdown(self.handle, how).map_err(io_errno);
        self.stack.kick(core);
        self.ready.notify();
        r
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.stack.lock().iface.tcp_layer().addrs(self.handle).1))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.stack.lock().iface.tcp_layer().addrs(self.handle).0))
    }

    /// Turns Nagle's algorithm off (true) or on (`TCP_NODELAY`).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.stack
            .lock()
            .iface
            .tcp(self.stack.now())
            .set_nodelay(self.handle, on);
        Ok(())
    }

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.stack.lock().iface.tcp_layer().nodelay(self.handle))
    }

    /// Switches this connection's congestion control, as Linux's
    /// `TCP_CONGESTION`: the new algorithm starts from the current window.
    pub fn set_congestion(&self, algorithm: CongestionAlgorithm) -> io::Result<()> {
        self.stack
            .lock()
            .iface
            .tcp(self.stack.now())
            .set_congestion(self.handle, algorithm);
        Ok(())
    }

    /// The connection's congestion control.
    pub fn congestion(&self) -> io::Result<CongestionAlgorithm> {
        Ok(self.stack.lock().iface.tcp_layer().congestion(self.handle))
    }

    /// Fixes the receive buffer at `bytes` (`SO_RCVBUF`; socket2's name):
    /// auto-tuning stops for this connection, as on Linux. Unlike Linux the
    /// size is not doubled: tunstack's buffers count payload bytes only.
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        self.option_call(|tcp, h| tcp.set_recv_buffer_size(h, bytes))
    }

    /// The receive buffer's size now: auto-tuned unless set.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        Ok(self.stack.lock().iface.tcp_layer().recv_buffer_size(self.handle))
    }

    /// Fixes the send buffer at `bytes` (`SO_SNDBUF`): auto-tuning stops for this connection.
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        self.option_call(|tcp, h| tcp.set_send_buffer_size(h, bytes))
    }

    /// The send buffer's size now: auto-tuned unless set.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        Ok(self.stack.lock().iface.tcp_layer().send_buffer_size(self.handle))
    }

    /// Bytes a write would take now: the send buffer's free room, less
    /// while the stack's memory budget is spent. (An echo reads no more
    /// than this, so it never holds what it could not send.) A connection
    /// that failed says so, as a write would.
    pub fn send_space(&self) -> io::Result<usize> {
        let guard = self.stack.lock();
        let tcp = guard.iface.tcp_layer();
        match tcp.error(self.handle) {
            Some(e) => Err(io_errno(IoError::Failed(e))),
            None => Ok(tcp.send_space(self.handle)),
        }
    }

    /// Takes the connection's pending error, as `std`'s `take_error`
    /// (`SO_ERROR`): the error that ended it, once, else a soft one (an ICMP
    /// unreachable about its segments that did not end it). `Ok(None)` if
    /// there is none.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let mut st = self.stack.lock();
        let error = st.iface.tcp(self.stack.now()).take_error(self.handle);
        Ok(error.map(conn_errno))
    }

    /// Probes the peer after `idle` without traffic (`SO_KEEPALIVE` + `TCP_KEEPIDLE`); `None` turns it off.
    pub fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        self.option_call(|tcp, h| tcp.set_keepalive(h, idle))
    }

    /// Runs a socket-option call on the core, then wakes the stack thread:
    /// the call may have armed a timer or queued a segment.
    fn option_call(
        &self,
        f: impl FnOnce(&mut crate::ip::Sockets<'_, crate::tcp::TcpLayer>, TcpHandle),
    ) -> io::Result<()> {
        let mut core = self.stack.lock();
        let now = self.stack.now();
        f(&mut core.iface.tcp(now), self.handle);
        self.stack.kick(core);
        Ok(())
    }

    /// Bounds how long reads block. Zero is refused.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.options.set_read_timeout(t)
    }

    /// Bounds how long writes block. Zero is refused.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.options.set_write_timeout(t)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.options.get().read_timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.options.get().write_timeout)
    }

    /// In non-blocking mode reads and writes return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.options.set_nonblocking(on)
    }

    /// Like `SO_LINGER`: `Some(Duration::ZERO)` makes dropping the stream
    /// reset the connection instead of closing it gracefully.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.abort_on_drop
            .store(linger == Some(Duration::ZERO), Ordering::Relaxed);
        Ok(())
    }

    /// Resets the connection now (RST); later calls fail.
    pub fn abort(&self) -> io::Result<()> {
        self.abort_on_drop.store(true, Ordering::Relaxed);
        let mut core = self.stack.lock();
        let now = self.stack.now();
        if core.iface.tcp_layer().state(self.handle) != State::Closed {
            core.iface.tcp(now).abort(self.handle);
        }
        self.stack.kick(core);
        Ok(())
    }

    /// Names the connection's user for netstat.
    pub fn set_owner(&self, owner: &str) {
        self.stack
            .lock()
            .iface
            .tcp(self.stack.now())
            .set_owner(self.handle, Some(owner.into()));
    }

    /// The connection's state, as `netstat` would show it.
    pub fn state(&self) -> State {
        self.stack.lock().iface.tcp_layer().state(self.handle)
    }

    /// The stack this stream lives on.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut core = self.stack.lock();
        let now = self.stack.now();
        let abort = self.abort_on_drop.load(Ordering::Relaxed);
        core.iface.tcp(now).close(self.handle, abort);
        core.forget(SocketEvent::Tcp(self.handle));
        self.stack.kick(core);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::memory::MemoryLink;
    use crate::iface::{Config, Interface};
    use crate::testutil::{self, HOST};

    /// Two stacks on one in-memory link: ours (10.200.0.2) and the host's (10.200.0.1).
    fn two_stacks() -> (Stack, Stack) {
        let (a, b) = MemoryLink::pair().unwrap();
        let ours = Stack::start(Interface::new(testutil::config()), a).unwrap();
        let mut host = Config::new("10.200.0.1/24".parse().unwrap());
        host.seed = 2;
        let host = Stack::start(Interface::new(host), b).unwrap();
        (ours, host)
    }

    fn tcp_sockets(stack: &Stack) -> usize {
        stack.with_interface(|i| i.tcp_layer().sockets().len())
    }

    #[test]
    fn a_long_copy_goes_a_chunk_at_a_time_until_one_is_partial() {
        let mut calls = Vec::new();
        // Room for 2.5 chunks: the third chunk is partial and ends the call.
        let room = 2 * COPY_CHUNK + COPY_CHUNK / 2;
        let n = in_chunks(4 * COPY_CHUNK, |r| {
            calls.push(r.clone());
            Ok(r.len().min(room - r.start))
        })
        .unwrap();
        assert_eq!(n, room);
        assert_eq!(
            calls,
            [
                0..COPY_CHUNK,
                COPY_CHUNK..2 * COPY_CHUNK,
                2 * COPY_CHUNK..3 * COPY_CHUNK
            ]
        );
        // An error after a partial copy returns the copy; at first, the error.
        let mut k = 0;
        let n = in_chunks(3 * COPY_CHUNK, |r| {
            k += 1;
            if k == 2 {
                Err(io::ErrorKind::ConnectionReset.into())
            } else {
                Ok(r.len())
            }
        });
        assert_eq!(n.unwrap(), COPY_CHUNK);
        let e = in_chunks(10, |_| Err(io::ErrorKind::ConnectionReset.into())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(in_chunks(0, |r| Ok(r.len())).unwrap(), 0);
    }

    #[test]
    fn one_write_and_one_read_move_more_than_a_chunk() {
        let (ours, host) = two_stacks();
        let listener = TcpListener::bind(&host, (HOST, 80)).unwrap();
        let mut s = TcpStream::connect(&ours, (HOST, 80)).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        s.set_send_buffer_size(8 * COPY_CHUNK).unwrap();
        peer.set_recv_buffer_size(8 * COPY_CHUNK).unwrap();
        let data: Vec<u8> = (0..4 * COPY_CHUNK).map(|i| (i * 7 % 251) as u8).collect();
        let n = s.write(&data).unwrap();
        assert!(n > COPY_CHUNK, "the write stopped after one chunk: {n}");
        let mut got = vec![0; data.len()];
        let mut have = 0;
        let mut biggest = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while have < n {
            assert!(std::time::Instant::now() < deadline, "only {have} of {n} bytes arrived");
            if have == 0 {
                // Let all of it arrive first, so that one read can take more than a chunk.
                while peer.stack.with_interface(|i| i.tcp_layer().recv_queue(peer.handle)) < n {
                    assert!(std::time::Instant::now() < deadline, "the bytes never all arrived");
                    std::thread::yield_now();
                }
            }
            let k = peer.read(&mut got[have..n]).unwrap();
            biggest = biggest.max(k);
            have += k;
        }
        assert_eq!(got[..n], data[..n]);
        assert!(biggest > COPY_CHUNK, "no read took more than one chunk: {biggest}");
        ours.shutdown().unwrap();
        host.shutdown().unwrap();
    }

    #[test]
    fn two_threads_writes_each_of_several_chunks_do_not_interleave() {
        let (ours, host) = two_stacks();
        let listener = TcpListener::bind(&host, (HOST, 80)).unwrap();
        let s = TcpStream::connect(&ours, (HOST, 80)).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        s.set_send_buffer_size(16 * COPY_CHUNK).unwrap();
        peer.set_recv_buffer_size(16 * COPY_CHUNK).unwrap();
        let rounds = 8;
        let each = 3 * COPY_CHUNK;
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; 2 * each * rounds];
            peer.read_exact(&mut got).unwrap();
            got
        });
        for _ in 0..rounds {
            std::thread::scope(|scope| {
                for byte in [b'a', b'b'] {
                    let s = &s;
                    scope.spawn(move || {
                        let n = (&*s).write(&vec![byte; each]).unwrap();
                        assert_eq!(n, each, "one write takes it all: the buffer has room");
                    });
                }
            });
            // Both are in the send buffer; let it drain before the next round.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while ours.with_interface(|i| i.tcp_layer().send_queue(s.handle)) > 0 {
                assert!(std::time::Instant::now() < deadline, "the send queue never drained");
                std::thread::yield_now();
            }
        }
        let got = reader.join().unwrap();
        for (k, round) in got.chunks(2 * each).enumerate() {
            let runs = 1 + round.windows(2).filter(|w| w[0] != w[1]).count();
            assert_eq!(runs, 2, "round {k}: the two writes interleaved ({runs} runs)");
        }
        ours.shutdown().unwrap();
        host.shutdown().unwrap();
    }

    #[test]
    fn a_nonblocking_connect_reports_success_and_refusal() {
        let (ours, host) = two_stacks();
        let listener = TcpListener::bind(&host, (HOST, 80)).unwrap();
        let s = TcpStream::connect_nonblocking(&ours, (HOST, 80)).unwrap();
        s.wait_connected(None).unwrap();
        assert_eq!(s.state(), State::Established);
        s.wait_connected(Some(Duration::from_millis(1))).unwrap(); // done stays done
        drop(listener);

        let e = TcpStream::connect_nonblocking(&ours, (HOST, 81))
            .unwrap()
            .wait_connected(None)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        ours.shutdown().unwrap();
        host.shutdown().unwrap();
    }

    #[test]
    fn an_unanswered_connect_can_be_abandoned_between_waits() {
        // The other end of the link is never read: nobody answers the SYN.
        let (link, _silent) = MemoryLink::pair().unwrap();
        let stack = Stack::start(Interface::new(testutil::config()), link).unwrap();
        let s = TcpStream::connect_nonblocking(&stack, (HOST, 80)).unwrap();
        let e = s.wait_connected(Some(Duration::from_millis(20))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(s.state(), State::SynSent, "still trying");
        assert_eq!(tcp_sockets(&stack), 1);
        drop(s);
        assert_eq!(tcp_sockets(&stack), 0, "closing in SYN_SENT drops the attempt");
        stack.shutdown().unwrap();
    }
}
