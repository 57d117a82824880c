//! Built-in services the daemon runs on its own stack: TCP and UDP echo
//! (RFC 862), discard (RFC 863), character generator (RFC 864: sends on
//! connect, discards what it reads) and a sized source (RFC 864's lines,
//! as many bytes as the client asks, then FIN: for downloads and benchmarks).
//!
//! They all run in one event loop over one [`Poll`], on the stack thread
//! itself (`Services::start_on_stack_thread`, what tunstackd does) or on a
//! thread of their own (`Services::start`): a listener
//! per TCP service, the UDP socket, and every connection, non-blocking, in a
//! slab keyed by token. A connection holds no buffer of its own: reads go
//! through one shared scratch buffer, echo reads no more than its send
//! buffer has room for (a client that never reads is not read either), and
//! the sources write only what the send buffer takes, so what a connection
//! holds is bounded by its socket's buffers and the stack's memory budget.
//!
//! With [`Services::limit`] (what tunstackd does), they share the file
//! services' limits: connections per client address (the next is reset),
//! and an idle timeout closing connections that moved no byte either way.

use crate::files::{ClientLimits, Slot};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tunstack::net::{Events, Interest, Poll, TcpListener, TcpStream, Token, UdpSocket};
use tunstack::runtime::Stack;

/// Source ports of services that answer anything (echo, daytime, qotd,
/// chargen, time): echoing to them could bounce datagrams forever between
/// two such services, so their datagrams are not answered.
const REFLECTING_PORTS: [u16; 5] = [7, 13, 17, 19, 37];

/// The shared read buffer: large enough for any UDP datagram over IPv4.
const SCRATCH: usize = 65536;
/// Echo reads at most this much at once: what its peer's send space cannot
/// take stays with the connection, so this bounds what a connection holds.
const ECHO_CHUNK: usize = 16 * 1024;
/// Reads, writes, accepts or datagrams one socket gets per turn before the
/// others get theirs; it then runs again at once, after them.
const BUDGET: usize = 16;
/// The sized source's request line is read up to this many bytes.
const REQUEST_MAX: usize = 32;
/// How soon a UDP reply refused by a full transmit queue is tried again.
const UDP_RETRY: Duration = Duration::from_millis(1);

/// The TCP services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Echo,
    Discard,
    /// RFC 864's character generator.
    Source,
    /// Chargen lines, as many bytes as the client's line asks.
    Sized,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Echo => "echo",
            Kind::Discard => "discard",
            Kind::Source => "chargen",
            Kind::Sized => "sized-source",
        }
    }
}

/// A service's socket.
#[derive(Debug)]
enum Listening {
    Tcp(TcpListener, Kind),
    /// UDP echo, with a reply the full transmit queue refused (its bytes, its destination).
    UdpEcho(UdpSocket, Option<(Vec<u8>, SocketAddr)>),
}

/// Limits on the TCP services' connections, shared with the file services.
#[derive(Clone, Debug)]
pub struct ServiceLimits {
    /// Connections per client address, counted across every service sharing it.
    pub clients: Arc<ClientLimits>,
    /// Connections one client address may hold at once.
    pub per_client: usize,
    /// A connection that moves no byte either way for this long is closed.
    pub idle: Duration,
}

/// The services to run, bound as they are added, started together on one thread.
#[derive(Debug)]
pub struct Services {
    stack: Stack,
    sockets: Vec<Listening>,
    limits: Option<ServiceLimits>,
}

impl Services {
    /// No services yet, on `stack`.
    pub fn new(stack: &Stack) -> Services {
        Services {
            stack: stack.clone(),
            sockets: Vec::new(),
            limits: None,
        }
    }

    /// Limits the TCP services' connections per client address, and closes
    /// idle ones (without this, neither is limited).
    pub fn limit(&mut self, limits: ServiceLimits) {
        self.limits = Some(limits);
    }

    /// UDP echo (RFC 862) on `port`: every datagram goes back to its sender.
    pub fn udp_echo(&mut self, port: u16) -> io::Result<()> {
        let sock = UdpSocket::bind(&self.stack, (Ipv4Addr::UNSPECIFIED, port))?;
        sock.set_owner("echo");
        sock.set_nonblocking(true)?;
        log::info!("udp echo listening on {}", sock.local_addr()?);
        self.sockets.push(Listening::UdpEcho(sock, None));
        Ok(())
    }

    /// TCP echo (RFC 862): everything read is written back; the peer's FIN
    /// is answered with ours once all of it went back.
    pub fn tcp_echo(&mut self, port: u16) -> io::Result<()> {
        self.listen(Kind::Echo, port)
    }

    /// TCP discard (RFC 863): everything read is thrown away.
    pub fn tcp_discard(&mut self, port: u16) -> io::Result<()> {
        self.listen(Kind::Discard, port)
    }

    /// TCP character generator (RFC 864): chargen lines from the moment
    /// the connection is open, until the client goes away; what it sends is
    /// thrown away (its FIN too: a half-closed client still reads).
    pub fn tcp_source(&mut self, port: u16) -> io::Result<()> {
        self.listen(Kind::Source, port)
    }

    /// A sized source, for downloads and benchmarks. The client sends one
    /// line: a number N gets N bytes of chargen lines (RFC 864's) and then
    /// the server closes; an empty line, or closing its side without a
    /// line, gets an endless stream (until the client goes away).
    pub fn tcp_sized_source(&mut self, port: u16) -> io::Result<()> {
        self.listen(Kind::Sized, port)
    }

    fn listen(&mut self, kind: Kind, port: u16) -> io::Result<()> {
        let listener = TcpListener::bind(&self.stack, (Ipv4Addr::UNSPECIFIED, port))?;
        listener.set_owner(kind.name());
        listener.set_nonblocking(true)?;
        log::info!("tcp {} listening on {}", kind.name(), listener.local_addr()?);
        self.sockets.push(Listening::Tcp(listener, kind));
        Ok(())
    }

    /// Starts the thread serving them all (none without services); it runs
    /// until the stack stops.
    pub fn start(self) -> io::Result<Option<JoinHandle<()>>> {
        let Some((server, poll)) = self.server()? else {
            return Ok(None);
        };
        std::thread::Builder::new()
            .name("services".into())
            .spawn(move || server.run(poll))
            .map(Some)
    }

    /// Serves them all from the stack thread itself
    /// ([`Poll::run_on_stack_thread`]): no thread of their own, and no
    /// wake-up between the stack and a service. What tunstackd does: a
    /// one-byte echo then costs one TUN read and one write.
    pub fn start_on_stack_thread(self) -> io::Result<()> {
        let Some((mut server, poll)) = self.server()? else {
            return Ok(());
        };
        poll.run_on_stack_thread(move |poll, events| {
            if !server.turn(poll, events) {
                return None;
            }
            server.timeout()
        })
    }

    /// The server and its Poll, with every socket registered; `None` without services.
    fn server(self) -> io::Result<Option<(Server, Poll)>> {
        if self.sockets.is_empty() {
            return Ok(None);
        }
        let poll = Poll::new(&self.stack)?;
        for (i, s) in self.sockets.iter().enumerate() {
            match s {
                Listening::Tcp(l, _) => poll.register(l, Token(i), Interest::READABLE)?,
                Listening::UdpEcho(u, _) => poll.register(u, Token(i), Interest::READABLE)?,
            }
        }
        let server = Server {
            sockets: self.sockets,
            conns: Vec::new(),
            free: Vec::new(),
            scratch: vec![0u8; SCRATCH],
            pattern: chargen_pattern(),
            again: Vec::new(),
            retry: false,
            limits: self.limits,
            next_sweep: None,
        };
        Ok(Some((server, poll)))
    }
}

/// What a socket wants after its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Wait for this readiness.
    Wait(Interest),
    /// Its budget ran out with work left: run it again after the others.
    Again,
    /// A UDP reply waits for room in the transmit queue: try again shortly.
    Retry,
    /// Done: drop the connection (closing it; any FIN went out already).
    Close,
}

/// Where a sized source connection is.
#[derive(Debug)]
enum SizedState {
    /// Reading the request line: what came so far.
    Request { line: [u8; REQUEST_MAX], len: u8 },
    /// Sending `limit` bytes (`u64::MAX`: endless).
    Sending { sent: u64, limit: u64 },
    /// The line was no byte count: sending [`SIZED_REFUSAL`], then closing.
    Refusing { sent: usize },
}

/// What the sized source answers a line that is neither a byte count nor
/// empty (a typo such as `100M` must not start an endless stream).
pub const SIZED_REFUSAL: &[u8] = b"tunstack sized source: expected a byte count (digits only) or an empty line\r\n";

/// What a connection is doing.
#[derive(Debug)]
enum Job {
    /// Bytes read but not yet taken by the send buffer (no capacity when none).
    Echo(Vec<u8>),
    Discard,
    /// Chargen: bytes sent so far; whether the client's FIN came.
    Source {
        sent: u64,
        ended: bool,
    },
    Sized(SizedState),
}

/// One accepted connection.
#[derive(Debug)]
struct Conn {
    /// Its count against its address's limit; first, so the count drops
    /// before the close is sent.
    _slot: Option<Slot>,
    stream: TcpStream,
    kind: Kind,
    job: Job,
    interest: Interest,
    /// When it last moved a byte either way.
    active: Instant,
}

/// The services' event loop: the sockets, and what they share (the Poll is passed in).
struct Server {
    /// Token `i` for `i < sockets.len()`.
    sockets: Vec<Listening>,
    /// Token `sockets.len() + i`; `None` for a free slot.
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    scratch: Vec<u8>,
    pattern: Vec<u8>,
    /// Tokens to run again at once (their budget ran out) after this turn.
    again: Vec<usize>,
    /// Some of them wait for a full transmit queue: poll briefly, not at once.
    retry: bool,
    /// Per-client limit and idle timeout, if any.
    limits: Option<ServiceLimits>,
    /// When connections are next checked for idleness (while there are some).
    next_sweep: Option<Instant>,
}

impl Server {
    /// The services' own thread: poll, serve, until the stack stops.
    fn run(mut self, mut poll: Poll) {
        let mut events = Events::with_capacity(256);
        loop {
            if let Err(e) = poll.poll(&mut events, self.timeout()) {
                if e.kind() != io::ErrorKind::NetworkDown {
                    log::warn!("services: poll failed: {e}");
                }
                return;
            }
            if !self.turn(&poll, &events) {
                return;
            }
        }
    }

    /// How long the next poll may wait: for ever, unless some sockets have
    /// work left (at once) or wait for room to send (shortly), or
    /// connections are due a check for idleness.
    fn timeout(&self) -> Option<Duration> {
        let work = match (self.again.is_empty(), self.retry) {
            (true, _) => None,
            (false, false) => Some(Duration::ZERO),
            (false, true) => Some(UDP_RETRY),
        };
        let sweep = self.next_sweep.map(|at| at.saturating_duration_since(Instant::now()));
        match (work, sweep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Serves the sockets with events, and those with work left, then
    /// closes idle connections when due; false once the stack is down.
    fn turn(&mut self, poll: &Poll, events: &Events) -> bool {
        let again = std::mem::take(&mut self.again);
        self.retry = false;
        let tokens = events.iter().map(|e| e.token().0).chain(again);
        for token in tokens {
            if !self.dispatch(poll, token) {
                return false;
            }
        }
        self.sweep(Instant::now());
        true
    }

    /// Closes the connections that moved nothing for the idle timeout: one
    /// pass over them every eighth of it (at most a second apart), so the
    /// work is bounded and the timeout kept within that slack.
    fn sweep(&mut self, now: Instant) {
        let Some(idle) = self.limits.as_ref().map(|l| l.idle) else {
            return;
        };
        if self.next_sweep.is_some_and(|at| at > now) {
            return;
        }
        for i in 0..self.conns.len() {
            let Some(conn) = &self.conns[i] else { continue };
            if now.duration_since(conn.active) < idle {
                continue;
            }
            let peer = conn.stream.peer_addr().map_or_else(|_| "?".into(), |p| p.to_string());
            log::info!("tcp {}: {peer}: idle for {idle:?}, closed", conn.kind.name());
            // One that waits to send has a peer that does not read: a FIN
            // would only queue behind the data, so it is reset. Others close.
            if conn.interest.is_writable() {
                let _ = conn.stream.abort();
            } else {
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
            self.conns[i] = None;
            self.free.push(i);
        }
        let live = self.conns.iter().any(Option::is_some);
        let every = (idle / 8).clamp(Duration::from_millis(10), Duration::from_secs(1));
        self.next_sweep = live.then(|| now + every);
    }

    /// Runs `token` again after this turn, once, however many times it asks
    /// (it may also have had an event this turn).
    fn run_again(&mut self, token: usize) {
        if !self.again.contains(&token) {
            self.again.push(token);
        }
    }

    /// Gives `token` its turn; false once the stack is down.
    fn dispatch(&mut self, poll: &Poll, token: usize) -> bool {
        let Some(i) = token.checked_sub(self.sockets.len()) else {
            return self.serve_socket(poll, token);
        };
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return true; // closed since
        };
        let mut io = Io {
            s: &conn.stream,
            moved: false,
        };
        let next = run(&mut conn.job, &mut io, &mut self.scratch, &self.pattern).unwrap_or_else(|e| {
            let peer = conn.stream.peer_addr().map_or_else(|_| "?".into(), |p| p.to_string());
            log::debug!("tcp {}: {peer}: {e}", conn.kind.name());
            Next::Close
        });
        if io.moved {
            conn.active = Instant::now();
        }
        match next {
            Next::Close => {
                self.conns[i] = None; // dropping it closes it and deregisters it
                self.free.push(i);
            }
            Next::Wait(interest) if interest != conn.interest => {
                conn.interest = interest;
                if let Err(e) = poll.reregister(&conn.stream, Token(token), interest) {
                    log::warn!("tcp {}: cannot wait for the connection: {e}", conn.kind.name());
                    self.conns[i] = None;
                    self.free.push(i);
                }
            }
            Next::Wait(_) => {}
            Next::Again | Next::Retry => self.run_again(token),
        }
        true
    }

    /// A listener's or the UDP socket's turn; false once the stack is down.
    fn serve_socket(&mut self, poll: &Poll, token: usize) -> bool {
        let next = match &mut self.sockets[token] {
            Listening::UdpEcho(sock, pending) => udp_echo(sock, pending, &mut self.scratch),
            Listening::Tcp(listener, kind) => {
                let kind = *kind;
                let mut accepted = Vec::new();
                let mut next = Ok(Next::Again);
                for _ in 0..BUDGET {
                    match listener.accept() {
                        Ok((stream, peer)) => accepted.push((stream, peer)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            next = Ok(Next::Wait(Interest::READABLE));
                            break;
                        }
                        Err(e) => {
                            next = Err(e);
                            break;
                        }
                    }
                }
                for (stream, peer) in accepted {
                    self.add(poll, stream, peer, kind);
                }
                next
            }
        };
        match next {
            Ok(Next::Wait(_) | Next::Close) => {}
            Ok(Next::Again) => self.run_again(token),
            Ok(Next::Retry) => {
                self.retry = true;
                self.run_again(token);
            }
            Err(e) if e.kind() == io::ErrorKind::NetworkDown => return false,
            Err(e) => log::debug!("services: socket {token}: {e}"),
        }
        true
    }

    /// Takes on an accepted connection, if its client address is within
    /// its limit (else it is reset); it is served once it is readable (or,
    /// chargen, writable).
    fn add(&mut self, poll: &Poll, stream: TcpStream, peer: SocketAddr, kind: Kind) {
        let slot = match &self.limits {
            None => None,
            Some(l) => match l.clients.take(peer, l.per_client) {
                Some(slot) => Some(slot),
                None => {
                    log::info!(
                        "tcp {}: {peer} holds {} connections already: refused",
                        kind.name(),
                        l.per_client
                    );
                    let _ = stream.abort();
                    return;
                }
            },
        };
        let job = match kind {
            Kind::Echo => Job::Echo(Vec::new()),
            Kind::Discard => Job::Discard,
            Kind::Source => Job::Source { sent: 0, ended: false },
            Kind::Sized => Job::Sized(SizedState::Request {
                line: [0; REQUEST_MAX],
                len: 0,
            }),
        };
        // Chargen speaks first: a new connection's send buffer has room.
        let interest = if kind == Kind::Source {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let registered = stream
            .set_nonblocking(true)
            .and_then(|()| poll.register(&stream, Token(self.sockets.len() + i), interest));
        if let Err(e) = registered {
            log::warn!("tcp {}: cannot serve a connection: {e}", kind.name());
            self.free.push(i);
            return;
        }
        let now = Instant::now();
        self.conns[i] = Some(Conn {
            _slot: slot,
            stream,
            kind,
            job,
            interest,
            active: now,
        });
        if self.limits.is_some() && self.next_sweep.is_none() {
            self.sweep(now);
        }
    }
}

/// A connection's socket during its turn, noting whether a byte moved.
struct Io<'a> {
    s: &'a TcpStream,
    moved: bool,
}

impl Io<'_> {
    /// Reads into `buf`: `Ok(None)` when nothing is there yet.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let r = self.s.read(buf);
        self.took(r)
    }

    /// As `read_some`, but the bytes are thrown away uncopied (`MSG_TRUNC`).
    fn discard_some(&mut self, max: usize) -> io::Result<Option<usize>> {
        let r = self.s.discard(max);
        self.took(r)
    }

    /// What a read took: `Ok(None)` when nothing was there yet.
    fn took(&mut self, r: io::Result<usize>) -> io::Result<Option<usize>> {
        match r {
            Ok(n) => {
                self.moved |= n > 0;
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes what the send buffer takes of `data` (0 when it is full).
    fn write_some(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.s.write(data) {
            Ok(n) => {
                self.moved |= n > 0;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Sends our FIN (after everything queued) and closes.
    fn finish(&self) -> io::Result<Next> {
        self.s.shutdown(Shutdown::Write)?;
        Ok(Next::Close)
    }
}

/// A connection's turn at its job.
fn run(job: &mut Job, io: &mut Io<'_>, scratch: &mut [u8], pattern: &[u8]) -> io::Result<Next> {
    match job {
        Job::Echo(pending) => echo(io, pending, &mut scratch[..ECHO_CHUNK]),
        Job::Discard => {
            // Thrown away uncopied, as smoltcp's discard and Linux's MSG_TRUNC.
            for _ in 0..BUDGET {
                match io.discard_some(scratch.len())? {
                    Some(0) => return io.finish(),
                    Some(_) => {}
                    None => return Ok(Next::Wait(Interest::READABLE)),
                }
            }
            Ok(Next::Again)
        }
        Job::Source { sent, ended } => chargen(io, sent, ended, scratch, pattern),
        Job::Sized(state) => sized(io, state, pattern),
    }
}

/// Echo's turn: first what the send buffer refused before, then read and
/// write back until the peer has nothing more, reading no more than the
/// send buffer has room for (when it is full, the peer is not read until
/// it has room: a client that does not read its echoes stalls itself).
fn echo(io: &mut Io<'_>, pending: &mut Vec<u8>, buf: &mut [u8]) -> io::Result<Next> {
    if !pending.is_empty() {
        let n = io.write_some(pending)?;
        pending.drain(..n);
        if !pending.is_empty() {
            return Ok(Next::Wait(Interest::WRITABLE));
        }
        *pending = Vec::new(); // an idle connection holds no memory
    }
    for _ in 0..BUDGET {
        let space = io.s.send_space()?.min(buf.len());
        if space == 0 {
            return Ok(Next::Wait(Interest::WRITABLE));
        }
        let n = match io.read_some(&mut buf[..space])? {
            Some(0) => return io.finish(),
            Some(n) => n,
            None => return Ok(Next::Wait(Interest::READABLE)),
        };
        let written = io.write_some(&buf[..n])?;
        if written < n {
            pending.extend_from_slice(&buf[written..n]);
            return Ok(Next::Wait(Interest::WRITABLE));
        }
    }
    Ok(Next::Again)
}

/// Chargen's turn (RFC 864): throw away what came, then send what the
/// send buffer takes. It waits for room to send and, until the client's
/// FIN, for more to throw away.
fn chargen(io: &mut Io<'_>, sent: &mut u64, ended: &mut bool, scratch: &mut [u8], pattern: &[u8]) -> io::Result<Next> {
    let mut reads = 0;
    while !*ended {
        match io.read_some(scratch)? {
            None => break,
            Some(0) => *ended = true,
            Some(_) => {}
        }
        reads += 1;
        if reads == BUDGET {
            return Ok(Next::Again);
        }
    }
    for _ in 0..BUDGET {
        match send_pattern(io, sent, u64::MAX, pattern)? {
            0 if *ended => return Ok(Next::Wait(Interest::WRITABLE)),
            0 => return Ok(Next::Wait(Interest::READABLE | Interest::WRITABLE)),
            _ => {}
        }
    }
    Ok(Next::Again)
}

/// Writes what the send buffer takes of the pattern from offset `sent`,
/// up to `limit` bytes in all, and counts it.
fn send_pattern(io: &mut Io<'_>, sent: &mut u64, limit: u64, pattern: &[u8]) -> io::Result<usize> {
    let offset = (*sent % pattern.len() as u64) as usize;
    let chunk = &pattern[offset..];
    let len = chunk.len().min(usize::try_from(limit - *sent).unwrap_or(usize::MAX));
    let n = io.write_some(&chunk[..len])?;
    *sent += n as u64;
    Ok(n)
}

/// The sized source's turn: read the request line, then send.
fn sized(io: &mut Io<'_>, state: &mut SizedState, pattern: &[u8]) -> io::Result<Next> {
    if let SizedState::Request { line, len } = state {
        // Byte by byte, as the line is short: what follows it stays unread.
        let mut b = [0u8; 1];
        while usize::from(*len) < REQUEST_MAX {
            match io.read_some(&mut b)? {
                None => return Ok(Next::Wait(Interest::READABLE)),
                Some(0) => break,
                Some(_) if b[0] == b'\n' => break,
                Some(_) => {
                    line[usize::from(*len)] = b[0];
                    *len += 1;
                }
            }
        }
        let text = String::from_utf8_lossy(&line[..usize::from(*len)]);
        let text = text.trim();
        *state = if text.is_empty() {
            SizedState::Sending {
                sent: 0,
                limit: u64::MAX,
            }
        } else if let Ok(limit) = text.parse::<u64>() {
            SizedState::Sending { sent: 0, limit }
        } else {
            SizedState::Refusing { sent: 0 }
        };
    }
    if let SizedState::Refusing { sent } = state {
        while *sent < SIZED_REFUSAL.len() {
            match io.write_some(&SIZED_REFUSAL[*sent..])? {
                0 => return Ok(Next::Wait(Interest::WRITABLE)),
                n => *sent += n,
            }
        }
        return io.finish();
    }
    let SizedState::Sending { sent, limit } = state else {
        unreachable!("the request was just read")
    };
    for _ in 0..BUDGET {
        if *sent >= *limit {
            return io.finish();
        }
        if send_pattern(io, sent, *limit, pattern)? == 0 {
            return Ok(Next::Wait(Interest::WRITABLE));
        }
    }
    Ok(Next::Again)
}

/// UDP echo's turn: answer every datagram waiting (but those from reflecting ports).
fn udp_echo(sock: &UdpSocket, pending: &mut Option<(Vec<u8>, SocketAddr)>, buf: &mut [u8]) -> io::Result<Next> {
    if let Some((data, to)) = pending.take() {
        match sock.send_to(&data, to) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *pending = Some((data, to));
                return Ok(Next::Retry);
            }
            Err(e) => log::debug!("udp echo: reply to {to} failed: {e}"),
        }
    }
    for _ in 0..BUDGET {
        let m = match sock.recv_msg(buf) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Wait(Interest::READABLE)),
            Err(e) if e.kind() == io::ErrorKind::NetworkDown => return Err(e),
            Err(e) => {
                log::debug!("udp echo: {e}");
                continue;
            }
        };
        if REFLECTING_PORTS.contains(&m.from.port()) {
            log::debug!("udp echo: not answering {} (a reflecting service port)", m.from);
            continue;
        }
        match sock.send_to(&buf[..m.len], m.from) {
            Ok(_) => {}
            // The transmit queue is full: it drains by itself, shortly.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *pending = Some((buf[..m.len].to_vec(), m.from));
                return Ok(Next::Retry);
            }
            Err(e) => log::debug!("udp echo: reply to {} failed: {e}", m.from),
        }
    }
    Ok(Next::Again)
}

/// 95 lines of chargen (RFC 864): each 72 printable characters and CRLF, rotating.
fn chargen_pattern() -> Vec<u8> {
    let printable: Vec<u8> = (b' '..=b'~').collect();
    let mut out = Vec::with_capacity(95 * 74 * 2);
    for _ in 0..2 {
        for start in 0..printable.len() {
            out.extend((0..72).map(|i| printable[(start + i) % printable.len()]));
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests;
