//! A readiness API shaped like mio's: register sockets with a [`Poll`] and
//! wait, on one thread, for any of them to become ready.

use super::{TcpListener, TcpStream, UdpSocket, network_down};
use crate::runtime::readiness_bits::{ERROR, READ_CLOSED, READABLE, WRITABLE, WRITE_CLOSED};
use crate::runtime::{PollId, Stack, Waiter};
use crate::socket::SocketEvent;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Names a registered socket (or a [`PollWaker`]) in the events a [`Poll`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub usize);

impl From<Token> for usize {
    fn from(t: Token) -> usize {
        t.0
    }
}

/// What a registration waits for: readable, writable, or both (`|`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Readable: data, end of stream, an error, a connection to accept, a datagram.
    pub const READABLE: Interest = Interest(READABLE);
    /// Writable: room in the send buffer, or a connect that finished.
    pub const WRITABLE: Interest = Interest(WRITABLE);

    /// Both interests.
    #[must_use]
    pub const fn add(self, other: Interest) -> Interest {
        Interest(self.0 | other.0)
    }

    /// `self` without `other`; `None` if nothing is left.
    #[must_use]
    pub fn remove(self, other: Interest) -> Option<Interest> {
        let left = self.0 & !other.0;
        (left != 0).then_some(Interest(left))
    }

    /// Whether it includes readable.
    pub const fn is_readable(self) -> bool {
        self.0 & READABLE != 0
    }

    /// Whether it includes writable.
    pub const fn is_writable(self) -> bool {
        self.0 & WRITABLE != 0
    }
}

impl std::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, other: Interest) -> Interest {
        self.add(other)
    }
}

impl std::ops::BitOrAssign for Interest {
    fn bitor_assign(&mut self, other: Interest) {
        *self = self.add(other);
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_readable(), self.is_writable()) {
            (true, true) => f.write_str("READABLE | WRITABLE"),
            (true, false) => f.write_str("READABLE"),
            _ => f.write_str("WRITABLE"),
        }
    }
}

/// One readiness event: which registration, and what it is ready for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Event {
    token: Token,
    bits: u8,
}

impl Event {
    /// The token the socket (or waker) was registered with.
    pub fn token(&self) -> Token {
        self.token
    }

    /// A read (or accept, or receive) would not block; a woken [`PollWaker`] is readable too.
    pub fn is_readable(&self) -> bool {
        self.bits & READABLE != 0
    }

    /// A write would not block.
    pub fn is_writable(&self) -> bool {
        self.bits & WRITABLE != 0
    }

    /// The socket has an error (a reset, a timeout, a refused connect).
    pub fn is_error(&self) -> bool {
        self.bits & ERROR != 0
    }

    /// Nothing more will be read: the peer's FIN came, or the connection ended.
    pub fn is_read_closed(&self) -> bool {
        self.bits & READ_CLOSED != 0
    }

    /// Nothing more can be written: the connection ended, or both sides shut down.
    pub fn is_write_closed(&self) -> bool {
        self.bits & WRITE_CLOSED != 0
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("token", &self.token)
            .field("readable", &self.is_readable())
            .field("writable", &self.is_writable())
            .field("error", &self.is_error())
            .field("read_closed", &self.is_read_closed())
            .field("write_closed", &self.is_write_closed())
            .finish()
    }
}

/// Where [`Poll::poll`] puts events; it holds at most its capacity.
#[derive(Debug)]
pub struct Events {
    inner: Vec<Event>,
    capacity: usize,
}

impl Events {
    /// Room for `capacity` events per poll (at least one); the rest wait for the next poll.
    pub fn with_capacity(capacity: usize) -> Events {
        let capacity = capacity.max(1);
        Events {
            inner: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// The most events one poll returns.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The events of the last poll.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.inner.iter()
    }

    /// Whether the last poll returned no event (its timeout passed).
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Forgets the events.
    pub fn clear(&mut self) {
        self.inner.clear();
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

mod sealed {
    use crate::runtime::Stack;
    use crate::socket::SocketEvent;

    /// What a [`Poll`](super::Poll) needs of a socket: its stack and its event key.
    pub trait Key {
        fn key(&self) -> (&Stack, SocketEvent);
    }
}

/// A socket a [`Poll`] can watch: [`TcpListener`], [`TcpStream`], [`UdpSocket`].
pub trait Source: sealed::Key {}

impl sealed::Key for TcpListener {
    fn key(&self) -> (&Stack, SocketEvent) {
        (&self.stack, SocketEvent::Listener(self.handle))
    }
}

impl sealed::Key for TcpStream {
    fn key(&self) -> (&Stack, SocketEvent) {
        (&self.stack, SocketEvent::Tcp(self.handle))
    }
}

impl sealed::Key for UdpSocket {
    fn key(&self) -> (&Stack, SocketEvent) {
        (&self.stack, SocketEvent::Udp(self.handle))
    }
}

impl Source for TcpListener {}
impl Source for TcpStream {}
impl Source for UdpSocket {}

/// Waits for readiness events on many sockets of one [`Stack`], from one thread.
///
/// Shaped like `mio::Poll`: [`register`](Poll::register) a socket with a
/// [`Token`] and an [`Interest`], then [`poll`](Poll::poll) for [`Events`].
///
/// Events are **edge-triggered**, as mio's: a socket is reported when
/// something about it changed (data or a FIN arrived, send space opened, a
/// connect finished, a connection waits in the accept queue) and it is then
/// ready for what was asked. After an event, read (or accept, or write) until
/// the call returns `WouldBlock`: a socket left with unread data is not
/// reported again until more arrives. Registering or re-registering a socket
/// that is ready already reports it at the next poll, so nothing that
/// happened before the registration is missed. What a socket is ready for is
/// read when the event is reported, so an event is rarely stale, but a
/// spurious one is possible (another thread read the data first): treat
/// `WouldBlock` as "wait for the next event". Sockets registered with a Poll
/// should be non-blocking (`set_nonblocking(true)`). Errors and hang-ups
/// (reset, both directions closed) are reported whatever the interest.
///
/// A socket is registered with at most one Poll at a time; dropping the
/// socket deregisters it. A registered socket still works as usual,
/// blocking calls included. [`PollWaker`] wakes a poll from another thread.
///
/// An echo server on one thread:
///
/// ```no_run
/// use std::collections::HashMap;
/// use std::io::{self, Read, Write};
/// use tunstack::net::{Events, Interest, Poll, TcpListener, TcpStream, Token};
/// use tunstack::runtime::{Stack, TunConfig};
///
/// fn main() -> io::Result<()> {
///     let (stack, _ifname) = Stack::on_tun(&TunConfig::default())?;
///     let listener = TcpListener::bind(&stack, "0.0.0.0:7")?;
///     listener.set_nonblocking(true)?;
///     const LISTENER: Token = Token(usize::MAX);
///     let mut poll = Poll::new(&stack)?;
///     poll.register(&listener, LISTENER, Interest::READABLE)?;
///     let mut conns: HashMap<usize, TcpStream> = HashMap::new();
///     let (mut next, mut events, mut buf) = (0, Events::with_capacity(256), [0u8; 4096]);
///     loop {
///         poll.poll(&mut events, None)?;
///         for event in &events {
///             if event.token() == LISTENER {
///                 // Edge-triggered: accept until WouldBlock.
///                 loop {
///                     match listener.accept() {
///                         Ok((conn, _peer)) => {
///                             conn.set_nonblocking(true)?;
///                             poll.register(&conn, Token(next), Interest::READABLE)?;
///                             conns.insert(next, conn);
///                             next += 1;
///                         }
///                         Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
///                         Err(e) => return Err(e),
///                     }
///                 }
///                 continue;
///             }
///             let token = event.token().0;
///             let Some(conn) = conns.get_mut(&token) else { continue };
///             // Read until WouldBlock. (A real server keeps what the send
///             // buffer did not take and registers WRITABLE interest to send
///             // it later; this one just gives up on such a client.)
///             let done = loop {
///                 match conn.read(&mut buf) {
///                     Ok(0) => break true,
///                     Ok(n) => {
///                         if conn.write(&buf[..n]).ok() != Some(n) {
///                             break true;
///                         }
///                     }
///                     Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
///                     Err(_) => break true,
///                 }
///             };
///             if done {
///                 conns.remove(&token); // dropping it closes and deregisters it
///             }
///         }
///     }
/// }
/// ```
pub struct Poll {
    stack: Stack,
    id: PollId,
    cv: Arc<Waiter>,
}

impl fmt::Debug for Poll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poll").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Poll {
    /// A new Poll on `stack`, watching nothing yet.
    pub fn new(stack: &Stack) -> io::Result<Poll> {
        let mut core = stack.lock();
        if core.stopped() {
            return Err(network_down(&core));
        }
        let (id, cv) = core.new_poll();
        Ok(Poll {
            stack: stack.clone(),
            id,
            cv,
        })
    }

    /// The stack of `source`, checked to be this Poll's, and its key.
    fn key_of<S: Source + ?Sized>(&self, source: &S) -> io::Result<SocketEvent> {
        let (stack, key) = sealed::Key::key(source);
        if !stack.same_as(&self.stack) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the socket belongs to another stack than the Poll",
            ));
        }
        Ok(key)
    }

    /// Watches `source` for `interest`; its events carry `token`. A socket
    /// that is ready already is reported at the next poll. `AlreadyExists` if
    /// it is registered (with this Poll or another).
    pub fn register<S: Source + ?Sized>(&self, source: &S, token: Token, interest: Interest) -> io::Result<()> {
        let key = self.key_of(source)?;
        self.stack.lock().register(self.id, key, token.0, interest.0)
    }

    /// Changes the token and interest of a registered socket; as with
    /// `register`, it is reported at the next poll if it is ready. `NotFound`
    /// if it is not registered with this Poll.
    pub fn reregister<S: Source + ?Sized>(&self, source: &S, token: Token, interest: Interest) -> io::Result<()> {
        let key = self.key_of(source)?;
        self.stack.lock().reregister(self.id, key, token.0, interest.0)
    }

    /// Stops watching `source`. `NotFound` if it is not registered with this Poll.
    pub fn deregister<S: Source + ?Sized>(&self, source: &S) -> io::Result<()> {
        let key = self.key_of(source)?;
        self.stack.lock().deregister(self.id, key)
    }

    /// Waits until at least one event is ready or `timeout` passes (`None`:
    /// for ever), and puts the events in `events` (emptied first, at most its
    /// capacity). Empty `events` means the time ran out. `NetworkDown` once
    /// the stack has shut down.
    pub fn poll(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        let mut core = self.stack.lock();
        loop {
            if core.stopped() {
                return Err(network_down(&core));
            }
            let room = events.capacity - events.inner.len();
            core.take_ready(self.id, room, |token, bits| {
                events.inner.push(Event {
                    token: Token(token),
                    bits,
                });
            });
            if !events.inner.is_empty() {
                return Ok(());
            }
            // (A timeout too far away to represent waits for ever.)
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(());
            }
            core.set_poll_waiting(self.id, true);
            let (guard, _) = self.stack.wait(&self.cv, core, deadline);
            core = guard;
            core.set_poll_waiting(self.id, false);
        }
    }
}

impl Poll {
    /// Hands this Poll to the stack thread, which from then on calls
    /// `turn` with its events (polled without waiting) whenever it has
    /// some, and when the duration `turn` last returned has passed. The
    /// event loop then has no thread of its own: no wake-up passes between
    /// the stack and the application, as in a single-threaded stack
    /// (tunstackd's echo, discard, source and UDP echo run so). `turn`
    /// must never block: sockets non-blocking, no waiting on other
    /// threads; the stack stands still while it runs. One such Poll per
    /// stack: a second replaces the first. Fails (`NetworkDown`) if the
    /// stack has stopped.
    pub fn run_on_stack_thread<F>(self, mut turn: F) -> io::Result<()>
    where
        F: FnMut(&mut Poll, &Events) -> Option<Duration> + Send + 'static,
    {
        let stack = self.stack.clone();
        let id = self.id;
        let mut poll = self;
        let mut events = Events::with_capacity(256);
        let running = stack.run_on_stack_thread(id, move || {
            // Fails only once the stack stopped.
            poll.poll(&mut events, Some(Duration::ZERO)).ok()?;
            turn(&mut poll, &events)
        });
        if running {
            Ok(())
        } else {
            Err(network_down(&stack.lock()))
        }
    }
}

impl Drop for Poll {
    fn drop(&mut self) {
        self.stack.lock().drop_poll(self.id);
    }
}

/// Makes a [`Poll`] return an event with its token, from any thread (like
/// `mio::Waker`). Wakes that come before the Poll looks make one event.
#[derive(Clone)]
pub struct PollWaker {
    stack: Stack,
    poll: PollId,
    token: Token,
}

impl fmt::Debug for PollWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollWaker")
            .field("poll", &self.poll)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl PollWaker {
    /// A waker whose [`wake`](PollWaker::wake) makes `poll` report a readable event with `token`.
    pub fn new(poll: &Poll, token: Token) -> io::Result<PollWaker> {
        Ok(PollWaker {
            stack: poll.stack.clone(),
            poll: poll.id,
            token,
        })
    }

    /// Wakes the Poll (or makes its next poll return at once). Does
    /// nothing once the Poll is dropped.
    pub fn wake(&self) -> io::Result<()> {
        let mut core = self.stack.lock();
        core.wake_poll(self.poll, self.token.0);
        // A Poll the stack thread runs is served once that thread wakes.
        self.stack.kick(core);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::memory::MemoryLink;
    use crate::iface::Interface;
    use crate::testutil::{self, US};
    use std::collections::BTreeSet;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// How long a test waits for an event that must come.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A stack on an in-memory link; its sockets talk to each other over
    /// its loopback path. Keep the link's other end alive with it.
    fn stack() -> (Stack, MemoryLink) {
        let (link, peer) = MemoryLink::pair().unwrap();
        (Stack::start(Interface::new(testutil::config()), link).unwrap(), peer)
    }

    /// A connected pair over loopback: (client, server).
    fn connected(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.stack(), listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept_timeout(PATIENCE).unwrap();
        (client, server)
    }

    impl TcpListener {
        fn stack(&self) -> &Stack {
            &self.stack
        }
    }

    /// Polls until an event for `token` satisfies `want`, and returns it.
    fn wait_for(poll: &mut Poll, token: Token, want: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + PATIENCE;
        let mut events = Events::with_capacity(16);
        while Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
            if let Some(e) = events.iter().find(|e| e.token() == token && want(e)) {
                return *e;
            }
        }
        panic!("no matching event for {token:?} within {PATIENCE:?}");
    }

    /// Polls once for `wait`: the events for `token` it reports.
    fn events_for(poll: &mut Poll, token: Token, wait: Duration) -> Vec<Event> {
        let mut events = Events::with_capacity(64);
        poll.poll(&mut events, Some(wait)).unwrap();
        events.iter().filter(|e| e.token() == token).copied().collect()
    }

    /// Reads until `WouldBlock` or the end; returns the bytes and whether it ended.
    fn drain(s: &TcpStream) -> (Vec<u8>, bool) {
        let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
        loop {
            match (&*s).read(&mut buf) {
                Ok(0) => return (out, true),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (out, false),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    #[test]
    fn a_stream_is_readable_on_data_then_on_eof() {
        let (stack, _peer) = stack();
        let listener = TcpListener::bind(&stack, (US, 7)).unwrap();
        let (mut client, server) = connected(&listener);
        server.set_nonblocking(true).unwrap();
        let mut poll = Poll::new(&stack).unwrap();
        poll.register(&server, Token(3), Interest::READABLE).unwrap();

        client.write_all(b"hello").unwrap();
        let e = wait_for(&mut poll, Token(3), Event::is_readable);
        assert!(!e.is_read_closed() && !e.is_error() && !e.is_writable(), "{e:?}");
        let mut got = Vec::new();
        while got.len() < 5 {
            got.extend(drain(&server).0); // the bytes may come in more than one segment
        }
        assert_eq!(got, b"hello");

        client.shutdown(std::net::Shutdown::Write).unwrap();
        let e = wait_for(&mut poll, Token(3), Event::is_read_closed);
        assert!(e.is_readable() && !e.is_error() && !e.is_write_closed(), "{e:?}");
        assert_eq!(drain(&server), (Vec::new(), true));
        stack.shutdown().unwrap();
    }

    #[test]
    fn a_reset_is_reported_as_an_error_and_a_hang_up() {
        let (stack, _peer) = stack();
        let listener = TcpListener::bind(&stack, (US, 7)).unwrap();
        let (client, server) = connected(&listener);
        server.set_nonblocking(true).unwrap();
        let mut poll = Poll::new(&stack).unwrap();
        // A writer hears of the reset too: errors come whatever the interest.
        poll.register(&server, Token(1), Interest::WRITABLE).unwrap();
        assert!(
            wait_for(&mut poll, Token(1), |_| true).is_writable(),
            "writable once registered"
        );
        client.abort().unwrap();
        let e = wait_for(&mut poll, Token(1), Event::is_error);
        assert!(e.is_read_closed() && e.is_write_closed(), "{e:?}");
        let err = (&server).read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        stack.shutdown().unwrap();
    }

    #[test]
    fn a_connect_is_writable_when_done_and_again_when_the_send_buffer_drains() {
        let (stack, _peer) = stack();
        let listener = TcpListener::bind(&stack, (US, 7)).unwrap();
        let mut poll = Poll::new(&stack).unwrap();
        let client = TcpStream::connect_nonblocking(&stack, listener.local_addr().unwrap()).unwrap();
        client.set_nonblocking(true).unwrap();
        client.set_send_buffer_size(8192).unwrap();
        poll.register(&client, Token(9), Interest::WRITABLE).unwrap();
        wait_for(&mut poll, Token(9), Event::is_writable);
        assert_eq!(client.state(), crate::tcp::State::Established);
        let (server, _) = listener.accept_timeout(PATIENCE).unwrap();
        server.set_recv_buffer_size(8192).unwrap();
        server.set_nonblocking(true).unwrap();

        // Fill the peer's window and our send buffer: the server reads nothing.
        let chunk = [7u8; 1024];
        let mut sent = 0;
        let deadline = Instant::now() + PATIENCE;
        loop {
            match (&client).write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Full for good once the server's buffer is full too
                    // (its window closed): no ACK will free space then.
                    let stuck = stack.with_interface(|i| {
                        let tcp = i.tcp_layer();
                        tcp.send_queue(client.handle) >= 8192
                            && tcp.recv_queue(server.handle) >= tcp.recv_buffer_size(server.handle)
                    });
                    if stuck {
                        break;
                    }
                    poll.poll(&mut Events::with_capacity(8), Some(Duration::from_millis(10)))
                        .unwrap();
                }
                Err(e) => panic!("write: {e}"),
            }
            assert!(Instant::now() < deadline, "the send buffer never filled");
        }
        // The server set its buffer small after it had advertised a larger
        // window, which it honours: wait until that window is used up too,
        // so no ACK frees space any more (nothing moves for 100 ms).
        let queues = || {
            stack.with_interface(|i| {
                let tcp = i.tcp_layer();
                (tcp.send_queue(client.handle), tcp.recv_queue(server.handle))
            })
        };
        let mut last = queues();
        loop {
            let _ = events_for(&mut poll, Token(9), Duration::from_millis(100));
            let now = queues();
            if now == last {
                break;
            }
            last = now;
            assert!(Instant::now() < deadline, "the window never closed");
        }
        assert!(
            !events_for(&mut poll, Token(9), Duration::from_millis(50))
                .iter()
                .any(Event::is_writable),
            "writable with a full send buffer"
        );
        let mut received = 0;
        let deadline = Instant::now() + PATIENCE;
        while received < sent {
            received += drain(&server).0.len();
            assert!(Instant::now() < deadline, "got {received} of {sent} bytes");
            std::thread::yield_now();
        }
        wait_for(&mut poll, Token(9), Event::is_writable);
        assert!((&client).write(&chunk).unwrap() > 0);
        stack.shutdown().unwrap();
    }

    #[test]
    fn a_listener_is_readable_with_a_connection_to_accept() {
        let (stack, _peer) = stack();
        let listener = TcpListener::bind(&stack, (US, 7)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut poll = Poll::new(&stack).unwrap();
        poll.register(&listener, Token(0), Interest::READABLE).unwrap();
        let _client = TcpStream::connect(&stack, (US, 7)).unwrap();
        wait_for(&mut poll, Token(0), Event::is_readable);
        listener.accept().unwrap();
        let e = listener.accept().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        stack.shutdown().unwrap();
    }

    #[test]
    fn a_udp_socket_is_readable_with_a_datagram_and_deregistering_stops_events() {
        let (stack, _peer) = stack();
        let a = UdpSocket::bind(&stack, (US, 5000)).unwrap();
        let b = UdpSocket::bind(&stack, (US, 0)).unwrap();
        a.set_nonblocking(true).unwrap();
        let mut poll = Poll::new(&stack).unwrap();
        poll.register(&a, Token(5), Interest::READABLE).unwrap();
        b.send_to(b"one", (US, 5000)).unwrap();
        wait_for(&mut poll, Token(5), Event::is_readable);
        let mut buf = [0u8; 16];
        assert_eq!(a.recv_from(&mut buf).unwrap().0, 3);

        poll.deregister(&a).unwrap();
        assert_eq!(poll.deregister(&a).unwrap_err().kind(), io::ErrorKind::NotFound);
        b.send_to(b"two", (US, 5000)).unwrap();
        // The datagram arrives (a blocking peek waits for it), unreported.
        a.set_nonblocking(false).unwrap();
        a.set_read_timeout(Some(PATIENCE)).unwrap();
        assert_eq!(a.peek_from(&mut buf).unwrap().0, 3);
        assert!(events_for(&mut poll, Token(5), Duration::from_millis(50)).is_empty());

        // Registering a socket that is ready already reports it.
        poll.register(&a, Token(6), Interest::READABLE).unwrap();
        wait_for(&mut poll, Token(6), Event::is_readable);
        stack.shutdown().unwrap();
    }

    #[test]
    fn a_socket_has_one_registration_and_dropping_it_ends_that() {
        let (stack, _peer) = stack();
        let a = UdpSocket::bind(&stack, (US, 5000)).unwrap();
        let poll = Poll::new(&stack).unwrap();
        let other = Poll::new(&stack).unwrap();
        poll.register(&a, Token(1), Interest::READABLE).unwrap();
        for p in [&poll, &other] {
            let e = p.register(&a, Token(2), Interest::READABLE).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        }
        let e = other.reregister(&a, Token(2), Interest::READABLE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "registered with the other Poll");
        poll.reregister(&a, Token(2), Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        assert_eq!(stack.lock().registrations(), 1);
        drop(a);
        assert_eq!(stack.lock().registrations(), 0);
        let b = UdpSocket::bind(&stack, (US, 5001)).unwrap();
        other.register(&b, Token(1), Interest::READABLE).unwrap();
        drop(other);
        assert_eq!(
            stack.lock().registrations(),
            0,
            "dropping a Poll drops its registrations"
        );

        let (elsewhere, _peer2) = self::stack();
        let c = UdpSocket::bind(&elsewhere, (US, 5000)).unwrap();
        let e = poll.register(&c, Token(1), Interest::READABLE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "a socket of another stack");
        elsewhere.shutdown().unwrap();
        stack.shutdown().unwrap();
    }

    #[test]
    fn a_poll_with_nothing_to_report_returns_empty_after_its_timeout() {
        let (stack, _peer) = stack();
        let a = UdpSocket::bind(&stack, (US, 5000)).unwrap();
        let mut poll = Poll::new(&stack).unwrap();
        poll.register(&a, Token(1), Interest::READABLE).unwrap();
        let mut events = Events::with_capacity(8);
        let start = Instant::now();
        poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
        let took = start.elapsed();
        assert!(events.is_empty(), "{events:?}");
        assert!(took >= Duration::from_millis(100), "returned after {took:?}");
        assert!(took < Duration::from_secs(5), "returned after {took:?}");
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty());
        stack.shutdown().unwrap();
    }

    /// An event loop's sockets never block, so they never get a waiter:
    /// accepting and serving a connection that way allocates none.
    #[test]
    fn sockets_used_without_blocking_get_no_waiter() {
        let (stack, _peer) = stack();
        let listener = TcpListener::bind(&stack, (US, 7000)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let client = TcpStream::connect(&stack, (US, 7000)).unwrap();
        let mut poll = Poll::new(&stack).unwrap();
        poll.register(&listener, Token(0), Interest::READABLE).unwrap();
        wait_for(&mut poll, Token(0), Event::is_readable);
        let (served, _) = listener.accept().unwrap();
        served.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!((&served).read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let key = |s: &TcpStream| SocketEvent::Tcp(s.handle);
        assert!(!stack.lock().has_waiter(key(&served)), "never blocked: no waiter");
        assert!(!stack.lock().has_waiter(SocketEvent::Listener(listener.handle)));
        // A read that blocks (until its timeout: nothing comes) makes one.
        served.set_nonblocking(false).unwrap();
        served.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        assert_eq!((&served).read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(stack.lock().has_waiter(key(&served)), "blocked once: a waiter");
        drop(client);
        stack.shutdown().unwrap();
    }

    /// A link whose sends take 200 ms: the stack thread writes with the
    /// core's lock released for that long.
    struct SlowSend(MemoryLink);

    impl crate::device::Device for SlowSend {
        fn recv(&mut self, now: crate::time::Instant, buf: &mut [u8]) -> io::Result<usize> {
            self.0.recv(now, buf)
        }
        fn send(&mut self, now: crate::time::Instant, packet: &[u8]) -> io::Result<()> {
            std::thread::sleep(Duration::from_millis(200));
            self.0.send(now, packet)
        }
        fn readable_fd(&self) -> Option<std::os::fd::RawFd> {
            self.0.readable_fd()
        }
    }

    /// A wake for the stack thread's Poll that comes while the stack thread
    /// writes (awake, so nobody signals it) is served before it sleeps.
    #[test]
    fn a_stack_thread_poll_woken_while_the_stack_thread_writes_is_served() {
        use crate::device::Device;
        let (link, mut peer) = MemoryLink::pair().unwrap();
        let runtime = crate::runtime::RuntimeConfig {
            busy_poll: Duration::ZERO,
        };
        let stack = Stack::start_with(Interface::new(testutil::config()), SlowSend(link), runtime).unwrap();
        let poll = Poll::new(&stack).unwrap();
        let waker = PollWaker::new(&poll, Token(2)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        poll.run_on_stack_thread(move |_, events| {
            for e in events.iter() {
                tx.send(e.token()).unwrap();
            }
            None
        })
        .unwrap();
        // Its first turn (it runs once at once) is over before the ping comes.
        std::thread::sleep(Duration::from_millis(100));
        // A ping makes the stack thread write its reply: 200 ms with the lock let go.
        peer.send(crate::time::Instant::ZERO, &testutil::ping_packet(US, 1, b"x"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(80));
        waker.wake().unwrap();
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(Token(2)));
        stack.shutdown().unwrap();
    }

    /// A Poll run by the stack thread: its turn runs for events, for a
    /// PollWaker, and when the duration it returned has passed; its
    /// replies go out with no thread of its own.
    #[test]
    fn a_poll_on_the_stack_thread_serves_events_wakers_and_its_own_deadline() {
        let (stack, _peer) = stack();
        let server = UdpSocket::bind(&stack, (US, 5000)).unwrap();
        server.set_nonblocking(true).unwrap();
        let poll = Poll::new(&stack).unwrap();
        poll.register(&server, Token(1), Interest::READABLE).unwrap();
        let waker = PollWaker::new(&poll, Token(2)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut deadline_turns = 0;
        poll.run_on_stack_thread(move |_poll, events| {
            let mut buf = [0u8; 64];
            for e in events.iter() {
                match e.token() {
                    Token(1) => {
                        while let Ok((n, from)) = server.recv_from(&mut buf) {
                            server.send_to(&buf[..n], from).unwrap();
                        }
                    }
                    t => tx.send(t).unwrap(),
                }
            }
            if events.is_empty() {
                deadline_turns += 1;
                tx.send(Token(deadline_turns)).unwrap();
            }
            // Three turns of its own, 10 ms apart, then only on events.
            (deadline_turns < 3).then_some(Duration::from_millis(10))
        })
        .unwrap();
        let client = UdpSocket::bind(&stack, (US, 0)).unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        client.send_to(b"ping", (US, 5000)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(client.recv_from(&mut buf).unwrap().0, 4, "echoed from the stack thread");
        assert_eq!(&buf[..4], b"ping");
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(rx.recv_timeout(PATIENCE).expect("the deadline turns came").0);
        }
        assert_eq!(seen, [1, 2, 3], "it ran when the duration it asked for passed");
        waker.wake().unwrap();
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(Token(2)), "a waker reaches it");
        stack.shutdown().unwrap();
    }

    #[test]
    fn a_waker_wakes_a_poll_blocked_for_ever_from_another_thread() {
        let (stack, _peer) = stack();
        let mut poll = Poll::new(&stack).unwrap();
        let waker = PollWaker::new(&poll, Token(42)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let poller = std::thread::spawn(move || {
            let mut events = Events::with_capacity(8);
            let r = poll
                .poll(&mut events, None)
                .map(|()| events.iter().copied().collect::<Vec<_>>());
            tx.send(r).unwrap();
            poll
        });
        // Give the poller time to block first (either way the wake must get through).
        std::thread::sleep(Duration::from_millis(50));
        waker.wake().unwrap();
        let events = rx.recv_timeout(PATIENCE).expect("the poll stayed blocked").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].token(), Token(42));
        assert!(events[0].is_readable());
        let poll = poller.join().unwrap();
        drop(poll);
        waker.wake().unwrap(); // a waker outliving its Poll is harmless
        stack.shutdown().unwrap();
    }

    #[test]
    fn a_poll_under_a_timeout_wakes_for_an_event_or_a_waker_before_it() {
        let (stack, _peer) = stack();
        let a = UdpSocket::bind(&stack, (US, 5000)).unwrap();
        let b = UdpSocket::bind(&stack, (US, 0)).unwrap();
        let mut poll = Poll::new(&stack).unwrap();
        poll.register(&a, Token(1), Interest::READABLE).unwrap();
        let waker = PollWaker::new(&poll, Token(2)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut events = Events::with_capacity(8);
            // Each poll waits far longer than the test may take: only an
            // event or the waker can end it in time.
            while got.len() < 2 {
                poll.poll(&mut events, Some(Duration::from_secs(3600))).unwrap();
                got.extend(events.iter().map(|e| e.token()));
            }
            tx.send(got).unwrap();
        });
        std::thread::sleep(Duration::from_millis(20));
        b.send_to(b"wake", (US, 5000)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        waker.wake().unwrap();
        let mut got = rx.recv_timeout(PATIENCE).expect("the poll was not woken");
        got.sort();
        assert_eq!(got, [Token(1), Token(2)]);
        stack.shutdown().unwrap();
    }

    #[test]
    fn a_poll_blocked_for_ever_returns_network_down_on_shutdown() {
        let (stack, _peer) = stack();
        let mut poll = Poll::new(&stack).unwrap();
        let poller = std::thread::spawn(move || poll.poll(&mut Events::with_capacity(1), None));
        std::thread::sleep(Duration::from_millis(20));
        stack.shutdown().unwrap();
        let e = poller.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NetworkDown);
    }

    #[test]
    fn ten_thousand_registered_connections_report_only_those_with_data() {
        const N: usize = 10_000;
        let (stack, _peer) = stack();
        let listener = TcpListener::bind_with_backlog(&stack, (US, 7), 256).unwrap();
        let mut poll = Poll::new(&stack).unwrap();
        let (mut clients, mut servers) = (Vec::with_capacity(N), Vec::with_capacity(N));
        while clients.len() < N {
            let batch = (N - clients.len()).min(200);
            for _ in 0..batch {
                clients.push(TcpStream::connect_nonblocking(&stack, (US, 7)).unwrap());
            }
            for _ in 0..batch {
                let (s, _) = listener.accept_timeout(PATIENCE).unwrap();
                s.set_nonblocking(true).unwrap();
                poll.register(&s, Token(servers.len()), Interest::READABLE).unwrap();
                servers.push(s);
            }
        }
        // Accepted in the order the handshakes finished: find each client's server.
        let index: std::collections::HashMap<_, _> = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.peer_addr().unwrap(), i))
            .collect();
        let chosen = [17usize, 4242, 9999];
        for &c in &chosen {
            (&clients[c]).write_all(b"x").unwrap();
        }
        let want: BTreeSet<usize> = chosen
            .iter()
            .map(|&c| index[&clients[c].local_addr().unwrap()])
            .collect();
        let mut seen = BTreeSet::new();
        let mut events = Events::with_capacity(1024);
        let deadline = Instant::now() + PATIENCE;
        while seen != want {
            assert!(Instant::now() < deadline, "saw {seen:?}, want {want:?}");
            poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
            for e in &events {
                assert!(want.contains(&e.token().0), "unexpected {e:?}");
                assert!(e.is_readable());
                seen.insert(e.token().0);
                assert_eq!(drain(&servers[e.token().0]).0, b"x");
            }
        }
        assert!(events_for(&mut poll, Token(usize::MAX), Duration::from_millis(50)).is_empty());
        poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
        assert!(events.is_empty(), "{events:?}");
        stack.shutdown().unwrap();
    }
}
