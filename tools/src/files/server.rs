//! The file services' event loop: a service's thread waits on one [`Poll`]
//! for its listener and every connection, non-blocking, in a slab keyed by
//! token; each connection is the service's small state machine, run when
//! its socket is ready, when a timer it asked for is due, or when it has
//! been idle too long. Idle deadlines live in a heap, and the poll sleeps
//! until the earliest one; no socket timeout is used.
//!
//! A connection holds no buffer while idle: reads go through one shared
//! scratch buffer, and a file is streamed through a chunk buffer that
//! exists only while it is sent, filled from disk only as fast as the
//! socket's send buffer takes it. Disk reads block the thread (regular
//! files on a local disk, as nginx without aio); the network never does.

use super::{ClientLimits, Slot};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tunstack::net::{Events, Interest, Poll, TcpListener, TcpStream, Token};

/// Reads, writes or accepts one socket gets per turn before the others get
/// theirs; it then runs again at once, after them.
const BUDGET: usize = 16;
/// The largest chunk of a file read from disk at once.
const CHUNK: usize = 64 * 1024;
/// The shared read buffer (request heads are bounded well below twice this).
pub(crate) const SCRATCH: usize = 16 * 1024;
/// The listener's token; a connection in slot `i` has token `i + 1`.
const LISTENER: Token = Token(0);

/// What a connection wants after its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait for this readiness (or a timer it set).
    Wait(Interest),
    /// Its budget ran out with work left: run it again after the others.
    Again,
    /// Done: drop it (closing it; any FIN or RST went out already).
    Close,
}

/// A file service as the event loop drives it.
pub(crate) trait Service: Send + 'static {
    /// Name for logs and netstat.
    const NAME: &'static str;
    /// A connection's state.
    type Conn: Send;
    /// Tells a client over its limit no: resets it (`None`), or returns the
    /// state that answers it without blocking the loop.
    fn refuse(&self, stream: &TcpStream) -> Option<Self::Conn>;
    /// A new connection within the limit, before it sent anything.
    fn accept(&self) -> Self::Conn;
    /// Moves the connection on until it must wait.
    fn run(&self, conn: &mut Self::Conn, io: &mut Io<'_>, scratch: &mut [u8]) -> io::Result<Next>;
    /// Nothing was read or written for the idle timeout: by default, close.
    fn idle(&self, _conn: &mut Self::Conn, _io: &mut Io<'_>) -> io::Result<Next> {
        Ok(Next::Close)
    }
}

/// A connection's socket for one turn: non-blocking reads and writes that
/// count toward its budget and its idle time, and its timer.
#[derive(Debug)]
pub(crate) struct Io<'a> {
    stream: &'a TcpStream,
    /// Who is at the other end.
    pub peer: SocketAddr,
    /// The time of this turn.
    pub now: Instant,
    timer: &'a mut Option<Instant>,
    ops: usize,
    progressed: bool,
}

impl<'a> Io<'a> {
    /// The connection's socket.
    pub fn stream(&self) -> &'a TcpStream {
        self.stream
    }

    /// Whether this turn's budget is spent.
    pub fn spent(&self) -> bool {
        self.ops >= BUDGET
    }

    /// Reads into `buf`: `Ok(None)` when nothing is there yet, `Ok(Some(0))` at the end.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.ops += 1;
        match (&*self.stream).read(buf) {
            Ok(n) => {
                self.progressed = true;
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes what the send buffer takes of `data` (0 when it is full).
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.ops += 1;
        match (&*self.stream).write(data) {
            Ok(n) => {
                self.progressed |= n > 0;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Runs the connection again at `at` whatever its socket does (one timer; the last set wins).
    pub fn wake_at(&mut self, at: Instant) {
        *self.timer = Some(at);
    }
}

/// How far a send got this turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pump {
    /// Everything went into the send buffer.
    Done,
    /// The send buffer is full: wait until it is writable.
    Blocked,
    /// The budget ran out.
    Again,
}

impl Pump {
    /// The connection's next step while the send is unfinished.
    pub fn waiting(self) -> Next {
        match self {
            Pump::Again => Next::Again,
            _ => Next::Wait(Interest::WRITABLE),
        }
    }
}

/// What a connection sends: a few bytes (a head, a short body), then part
/// of a file, read from disk in chunks as the send buffer takes them.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    bytes: Vec<u8>,
    at: usize,
    file: Option<FileBody>,
    sent: u64,
}

/// A file being sent, and the chunk of it read but not yet sent.
#[derive(Debug)]
struct FileBody {
    file: File,
    /// Bytes still to read from the file; `None`: up to its end.
    left: Option<u64>,
    chunk: Vec<u8>,
    at: usize,
    len: usize,
}

impl Outgoing {
    /// Sends `bytes`.
    pub fn bytes(bytes: Vec<u8>) -> Outgoing {
        Outgoing {
            bytes,
            ..Outgoing::default()
        }
    }

    /// Sends `bytes`, then `file` from where it stands: `len` bytes of it, or up to its end.
    pub fn with_file(bytes: Vec<u8>, file: File, len: Option<u64>) -> Outgoing {
        Outgoing {
            bytes,
            file: Some(FileBody {
                file,
                left: len,
                chunk: Vec::new(),
                at: 0,
                len: 0,
            }),
            ..Outgoing::default()
        }
    }

    /// Bytes of the file sent so far.
    pub fn file_bytes_sent(&self) -> u64 {
        self.sent
    }

    /// Sends as much as the send buffer takes. A file shorter than promised is an error.
    pub fn pump(&mut self, io: &mut Io<'_>) -> io::Result<Pump> {
        while self.at < self.bytes.len() {
            if io.spent() {
                return Ok(Pump::Again);
            }
            match io.write(&self.bytes[self.at..])? {
                0 => return Ok(Pump::Blocked),
                n => self.at += n,
            }
        }
        self.bytes = Vec::new();
        self.at = 0;
        let Some(body) = &mut self.file else {
            return Ok(Pump::Done);
        };
        loop {
            if body.at == body.len {
                let want = body
                    .left
                    .map_or(CHUNK, |l| usize::try_from(l).unwrap_or(CHUNK).min(CHUNK));
                if want == 0 {
                    self.file = None; // the chunk buffer goes with it
                    return Ok(Pump::Done);
                }
                if body.chunk.len() < want {
                    body.chunk = vec![0; want];
                }
                let n = read_file(&mut body.file, &mut body.chunk[..want])?;
                if n == 0 {
                    if body.left.is_some() {
                        // The promised length cannot be kept.
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file shrank while sent",
                        ));
                    }
                    self.file = None;
                    return Ok(Pump::Done);
                }
                (body.at, body.len) = (0, n);
                if let Some(l) = &mut body.left {
                    *l -= n as u64;
                }
            }
            if io.spent() {
                return Ok(Pump::Again);
            }
            match io.write(&body.chunk[body.at..body.len])? {
                0 => return Ok(Pump::Blocked),
                n => {
                    body.at += n;
                    self.sent += n as u64;
                }
            }
        }
    }
}

/// Reads from a file, again if a signal interrupted it.
fn read_file(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// How a service's thread serves.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Connections per client address, shared with the other service.
    pub clients: Arc<ClientLimits>,
    /// Connections one client address may hold at once.
    pub per_client: usize,
    /// A connection with nothing read or written for this long is closed.
    pub idle: Duration,
}

/// One accepted connection.
#[derive(Debug)]
struct Conn<C> {
    /// Its count against its address's limit (none for a refused one); first,
    /// so the count drops before the close is sent: a client that saw it
    /// may connect again at once.
    _slot: Option<Slot>,
    stream: TcpStream,
    peer: SocketAddr,
    state: C,
    interest: Interest,
    /// When it last read or wrote something.
    active: Instant,
    /// When it asked to run whatever its socket does.
    timer: Option<Instant>,
}

impl<C> Conn<C> {
    /// When the loop must look at it next, ready or not.
    fn due(&self, idle: Duration) -> Instant {
        let idle_at = self.active + idle;
        self.timer.map_or(idle_at, |t| t.min(idle_at))
    }
}

/// A slab entry: the connection, and the earliest deadline queued for the slot.
#[derive(Debug)]
struct Entry<C> {
    conn: Option<Conn<C>>,
    /// At most one deadline per slot is live: this one. Others in the heap
    /// for this slot are stale and skipped, so the heap stays bounded by the
    /// slots, and a slot reused by a new connection needs no generation.
    armed: Option<Instant>,
}

/// A service's thread: its Poll, its listener, its connections and their deadlines.
struct Server<S: Service> {
    service: S,
    poll: Poll,
    listener: TcpListener,
    limits: Limits,
    entries: Vec<Entry<S::Conn>>,
    free: Vec<usize>,
    scratch: Vec<u8>,
    deadlines: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Slots to run again at once (their budget ran out) after this turn.
    again: Vec<usize>,
    /// Slots whose deadline passed, to run after this turn's events.
    due: Vec<usize>,
    /// The listener's budget ran out with connections left to accept.
    accept_again: bool,
}

/// Serves `listener` with `service` on a thread of its own until the stack stops.
pub(crate) fn spawn<S: Service>(
    stack: &tunstack::runtime::Stack,
    listener: TcpListener,
    service: S,
    limits: Limits,
) -> io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let poll = Poll::new(stack)?;
    poll.register(&listener, LISTENER, Interest::READABLE)?;
    let server = Server {
        service,
        poll,
        listener,
        limits,
        entries: Vec::new(),
        free: Vec::new(),
        scratch: vec![0; SCRATCH],
        deadlines: BinaryHeap::new(),
        again: Vec::new(),
        due: Vec::new(),
        accept_again: false,
    };
    std::thread::Builder::new()
        .name(S::NAME.into())
        .spawn(move || server.run())
}

impl<S: Service> Server<S> {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = if self.again.is_empty() && !self.accept_again {
                self.deadlines
                    .peek()
                    .map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::NetworkDown {
                    log::warn!("{}: poll failed: {e}", S::NAME);
                }
                return;
            }
            let now = Instant::now();
            let again = std::mem::take(&mut self.again);
            let accept = std::mem::take(&mut self.accept_again);
            for token in events.iter().map(|e| e.token()) {
                if token != LISTENER {
                    self.turn(token.0 - 1, now, false);
                }
            }
            for i in again {
                self.turn(i, now, false);
            }
            self.expire(now);
            if (accept || events.iter().any(|e| e.token() == LISTENER)) && !self.accept(now) {
                return;
            }
        }
    }

    /// Runs the connections whose deadline passed by `now`: their timer, or their idle timeout.
    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, i))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self.entries[i].armed == Some(at) {
                self.entries[i].armed = None;
                self.due.push(i);
            }
        }
        for i in std::mem::take(&mut self.due) {
            let Some(conn) = &mut self.entries[i].conn else {
                continue;
            };
            if conn.timer.is_some_and(|t| t <= now) {
                conn.timer = None;
                self.turn(i, now, false);
            } else if conn.active + self.limits.idle <= now {
                log::debug!("{}: {}: idle too long", S::NAME, conn.peer);
                self.turn(i, now, true);
            } else {
                self.arm(i);
            }
        }
    }

    /// Accepts what waits (up to the budget); false once the stack is down.
    fn accept(&mut self, now: Instant) -> bool {
        for _ in 0..BUDGET {
            let (stream, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::NetworkDown => return false,
                Err(e) => {
                    log::debug!("{}: accept: {e}", S::NAME);
                    continue;
                }
            };
            let per_client = self.limits.per_client;
            match self.limits.clients.take(peer, per_client) {
                Some(slot) => {
                    let state = self.service.accept();
                    self.add(stream, peer, Some(slot), state, Interest::READABLE, now);
                }
                None => {
                    log::info!("{}: {peer} holds {per_client} connections already: refused", S::NAME);
                    if let Some(state) = self.service.refuse(&stream) {
                        // A new connection's send buffer has room: it is writable at once.
                        self.add(stream, peer, None, state, Interest::WRITABLE, now);
                    }
                }
            }
        }
        self.accept_again = true; // more may wait
        true
    }

    /// Takes on an accepted connection; it runs once it is ready for `interest`.
    fn add(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: Option<Slot>,
        state: S::Conn,
        interest: Interest,
        now: Instant,
    ) {
        let i = self.free.pop().unwrap_or_else(|| {
            self.entries.push(Entry {
                conn: None,
                armed: None,
            });
            self.entries.len() - 1
        });
        let registered = stream
            .set_nonblocking(true)
            .and_then(|()| self.poll.register(&stream, Token(i + 1), interest));
        if let Err(e) = registered {
            log::warn!("{}: cannot serve {peer}: {e}", S::NAME);
            self.free.push(i);
            return;
        }
        self.entries[i].conn = Some(Conn {
            _slot: slot,
            stream,
            peer,
            state,
            interest,
            active: now,
            timer: None,
        });
        self.arm(i);
    }

    /// Gives slot `i` its turn (as idle for too long if `idle`), and acts on what it wants next.
    fn turn(&mut self, i: usize, now: Instant, idle: bool) {
        let Some(conn) = self.entries.get_mut(i).and_then(|e| e.conn.as_mut()) else {
            return; // closed since
        };
        let mut io = Io {
            stream: &conn.stream,
            peer: conn.peer,
            now,
            timer: &mut conn.timer,
            ops: 0,
            progressed: idle, // an idle connection gets a fresh period for what it does about it
        };
        let next = if idle {
            self.service.idle(&mut conn.state, &mut io)
        } else {
            self.service.run(&mut conn.state, &mut io, &mut self.scratch)
        };
        if io.progressed {
            conn.active = now;
        }
        let next = next.unwrap_or_else(|e| {
            log::debug!("{}: {}: {e}", S::NAME, conn.peer);
            Next::Close
        });
        match next {
            Next::Close => {
                self.entries[i].conn = None; // dropping it closes it and deregisters it
                self.free.push(i);
                return;
            }
            Next::Wait(interest) if interest != conn.interest => {
                conn.interest = interest;
                if let Err(e) = self.poll.reregister(&conn.stream, Token(i + 1), interest) {
                    log::warn!("{}: cannot wait for {}: {e}", S::NAME, conn.peer);
                    self.entries[i].conn = None;
                    self.free.push(i);
                    return;
                }
            }
            Next::Wait(_) => {}
            // Once, however many times it asks (it may have had an event too).
            Next::Again if !self.again.contains(&i) => self.again.push(i),
            Next::Again => {}
        }
        self.arm(i);
    }

    /// Makes sure slot `i`'s connection is looked at by its due time.
    fn arm(&mut self, i: usize) {
        let entry = &mut self.entries[i];
        let Some(conn) = &entry.conn else { return };
        let due = conn.due(self.limits.idle);
        if entry.armed.is_none_or(|a| a > due) {
            entry.armed = Some(due);
            self.deadlines.push(Reverse((due, i)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::downloader::REFUSAL_PREFIX;
    use super::super::testing::{DOWNLOADER, HTTP, PATIENCE, Site, read_response, send};
    use std::io::{self, Read, Write};
    use std::time::{Duration, Instant};

    #[test]
    fn over_the_limit_http_gets_503_the_downloader_a_reset_and_a_freed_slot_serves_again() {
        let site = Site::new("limits", 1000, 2, PATIENCE * 10);
        let mut held: Vec<_> = (0..2).map(|_| site.connect(HTTP)).collect();
        let s = site.connect(HTTP);
        send(&s, "GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = read_response(&s, false);
        assert_eq!((r.status, r.header("retry-after")), (503, Some("1")), "{}", r.head);
        let mut rest = Vec::new();
        assert_eq!((&s).read_to_end(&mut rest).unwrap(), 0, "then closed");
        // The downloader shares the limit, and refuses with a reset.
        // The reset may come before `connect` returns, or before the write.
        let e = match site.try_connect(DOWNLOADER) {
            Ok(d) => {
                let _ = (&d).write_all(b"small.txt\n");
                let mut got = Vec::new();
                let e = (&d).read_to_end(&mut got).unwrap_err();
                assert!(got.is_empty());
                e
            }
            Err(e) => e,
        };
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        // A held connection goes: its slot serves the next one.
        drop(held.pop());
        let deadline = Instant::now() + PATIENCE;
        loop {
            let s = site.connect(HTTP);
            send(&s, "GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            match read_response(&s, false).status {
                200 => break,
                503 => assert!(Instant::now() < deadline, "the slot was never freed"),
                other => panic!("status {other}"),
            }
        }
    }

    #[test]
    fn idle_connections_are_closed_and_an_idle_downloader_client_hears_why() {
        let site = Site::new("idle", 1000, 16, Duration::from_millis(200));
        let silent = site.connect(HTTP);
        let partial = site.connect(HTTP);
        send(&partial, "GET /small.txt HT");
        let kept = site.connect(HTTP);
        send(&kept, "GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(read_response(&kept, false).status, 200);
        for s in [&silent, &partial, &kept] {
            let mut rest = Vec::new();
            assert_eq!(
                s.set_read_timeout(Some(PATIENCE))
                    .map(|()| (&*s).read_to_end(&mut rest).unwrap())
                    .unwrap(),
                0
            );
        }
        let d = site.connect(DOWNLOADER);
        let mut got = Vec::new();
        let e = (&d).read_to_end(&mut got).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        let line = String::from_utf8(got).unwrap();
        assert_eq!(line, format!("{REFUSAL_PREFIX}no file name (idle too long)\n"));
    }
}
