//! The daemon side of the control socket.

use super::bridge::{self, ClientIn, Listening, Pending, bridge_tcp, bridge_udp, serve_listener};
use super::owner::{Accounts, Limits, Peer};
use super::probe;
use super::request::{self, Request};
use crate::privilege::Identity;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tunstack::net::{TcpListener, UdpSocket};
use tunstack::runtime::Stack;

/// How long a client that is not bridging may take to send each request
/// line, and to take each whole reply, before it is disconnected: an idle
/// connection holds a thread and a slot of [`owner::MAX_CLIENTS`](super::owner::MAX_CLIENTS).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Stack space of a client's thread: it holds buffers on the heap, and
/// thousands of clients should not each reserve the default 2 MiB.
pub(crate) const CLIENT_STACK: usize = 256 * 1024;

/// Where and for whom the control socket is made.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// The socket's path.
    pub path: PathBuf,
    /// A group whose members may use the socket too (mode 0660 instead of 0600).
    pub group: Option<String>,
    /// The interface name, for `IFCONFIG` and `ROUTES`.
    pub ifname: String,
    /// Whether the TUN has offloads (issue 16), for `IFCONFIG`.
    pub offloads: bool,
    /// Who the daemon runs as once start-up is done: the socket file is
    /// theirs, so they can use it and remove it at exit. `None`: whoever binds it.
    pub owner: Option<Identity>,
    /// Whether the socket's directory is the daemon's own (the default
    /// layout, `/run/tunstack/<name>/`): made if missing and given to the owner.
    pub own_dir: bool,
}

/// The bound control socket's file, removed when this is dropped: at the
/// daemon's exit, and on any start-up error after it was made.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    /// Its directory, opened once at start: the file is removed through it.
    dir: std::os::fd::OwnedFd,
    /// Its name there.
    name: std::ffi::CString,
    /// Device and inode of the file we made: only that file is removed,
    /// never one another daemon put in its place since.
    id: (u64, u64),
    /// The daemon's own directory, removed too if it can be (when the
    /// daemon still runs as root; a user may not remove it from /run/tunstack).
    own_dir: Option<PathBuf>,
}

impl ControlSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        let at = self.dir.as_raw_fd();
        let ours = place::stat_at(at, &self.name).ok().flatten();
        if ours.is_some_and(|st| (st.st_dev, st.st_ino) == self.id) {
            let _ = place::unlink_at(at, &self.name, 0);
        }
        if let Some(dir) = &self.own_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A control socket bound but not yet served: made while the daemon is
/// still privileged, served by [`start`] once the stack runs.
#[derive(Debug)]
pub struct Bound {
    listener: UnixListener,
    socket: ControlSocket,
    cfg: ControlConfig,
}

impl Bound {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        self.socket.path()
    }
}

/// Creates the socket file as `cfg` says (see [`Bound`]). Its file lasts
/// as long as the returned value, then as long as [`start`]'s guard.
pub fn bind(cfg: ControlConfig) -> io::Result<Bound> {
    let (listener, socket) = place::create_socket(&cfg)?;
    Ok(Bound { listener, socket, cfg })
}

/// Serves the bound control socket on a thread until the process ends.
/// The socket file lasts as long as the returned guard.
pub fn start(stack: &Stack, bound: Bound) -> io::Result<ControlSocket> {
    let Bound { listener, socket, cfg } = bound;
    let stack = stack.clone();
    let pending = Arc::new(Pending::default());
    let accounts = Accounts::new(Limits::for_descriptors(descriptor_limit()));
    std::thread::Builder::new().name("control".into()).spawn(move || {
        let mut incoming = listener.incoming();
        accept_loop(
            || incoming.next(),
            |client| {
                // Refused before a thread is spent on it. The refusal fits in an
                // empty socket buffer, so this write never blocks the acceptor.
                let admitted = Peer::of(&client)
                    .ok_or_else(|| "cannot tell who you are (SO_PEERCRED)".to_owned())
                    .and_then(|peer| Ok((accounts.admit(peer.uid)?, peer)));
                let (slot, peer) = match admitted {
                    Ok(a) => a,
                    Err(why) => {
                        log::info!("control: client refused: {why}");
                        let _ = client.set_nonblocking(true);
                        let _ = (&client).write_all(format!("ERR {why}\n").as_bytes());
                        return;
                    }
                };
                let served = Served {
                    stack: stack.clone(),
                    ifname: cfg.ifname.clone(),
                    offloads: cfg.offloads,
                    pending: pending.clone(),
                    accounts: accounts.clone(),
                    idle: IDLE_TIMEOUT,
                };
                let spawned = std::thread::Builder::new()
                    .name("control-client".into())
                    .stack_size(CLIENT_STACK)
                    .spawn(move || {
                        let _slot = slot;
                        if let Err(e) = serve(&served, &client, &peer) {
                            log::debug!("control: {}: {e}", peer.who);
                        }
                    });
                if let Err(e) = spawned {
                    log::warn!("control: no thread for a client: {e}");
                }
            },
        );
    })?;
    Ok(socket)
}

/// How long the acceptor rests when accepting fails for want of a
/// resource (descriptors, memory): it fails at once until one is freed,
/// and trying again meanwhile would only spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// At most one log line about failing accepts per this long.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accepts clients from `next` (`None`: no more) and hands each to
/// `serve`. A failure is logged at most once per [`ACCEPT_LOG_EVERY`],
/// with how many there were; one for want of a resource (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM) also makes it rest [`ACCEPT_PAUSE`].
fn accept_loop(mut next: impl FnMut() -> Option<io::Result<UnixStream>>, mut serve: impl FnMut(UnixStream)) {
    let mut failures = Throttle::new(ACCEPT_LOG_EVERY);
    while let Some(accepted) = next() {
        match accepted {
            Ok(client) => serve(client),
            Err(e) => {
                if let Some(n) = failures.note(std::time::Instant::now()) {
                    log::warn!("control: accept: {e} ({n} failures since the last report)");
                }
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) {
                    std::thread::sleep(ACCEPT_PAUSE);
                }
            }
        }
    }
}

/// Counts events and says when one may be reported: the first at once,
/// then at most one per period, with how many happened since.
#[derive(Debug)]
struct Throttle {
    every: Duration,
    last: Option<std::time::Instant>,
    count: u64,
}

impl Throttle {
    fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            count: 0,
        }
    }

    /// Counts one at `now`; `Some(count)` when it is time to report.
    fn note(&mut self, now: std::time::Instant) -> Option<u64> {
        self.count += 1;
        if self.last.is_some_and(|l| now.saturating_duration_since(l) < self.every) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// The soft `RLIMIT_NOFILE`: how many descriptors the daemon may hold.
fn descriptor_limit() -> u64 {
    // SAFETY: rlimit is plain data that getrlimit fills.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one, as a server expecting
/// many clients does (each control client holds a descriptor); run at
/// start-up. Returns the limit now in force.
pub fn raise_descriptor_limit() -> u64 {
    // SAFETY: as in `descriptor_limit`.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: live in- and out-parameters.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let from = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                log::debug!("descriptor limit raised from {from} to {}", lim.rlim_max);
            }
        }
    }
    descriptor_limit()
}

/// The id of group `name` from the system's group database (getgrnam_r,
/// so NSS sources count too); a number is taken as an id, as chown(1) does.
pub fn group_id(name: &str) -> io::Result<u32> {
    let no_such = || io::Error::new(io::ErrorKind::NotFound, format!("no group named {name:?}"));
    let cname = std::ffi::CString::new(name).map_err(|_| no_such())?;
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: group is plain data that getgrnam_r fills; all-zero is a valid value.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is to a live value of the right type, and
        // buf.len() is the true size of the buffer the strings go into.
        let rc = unsafe { libc::getgrnam_r(cname.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut found) };
        match rc {
            0 if !found.is_null() => return Ok(grp.gr_gid),
            // getgrnam_r(3): any of these means "no such group" on some system.
            0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return name.parse().map_err(|_| no_such()),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Sends `OK <n>` and `lines`, all within `within`.
fn reply_lines(w: &UnixStream, lines: &[String], within: Duration) -> io::Result<()> {
    let mut out = format!("OK {}\n", lines.len());
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    send_within(w, out.as_bytes(), within)
}

/// Writes all of `bytes` to `client` within `within`, however the client
/// takes them: a timeout on each write (SO_SNDTIMEO) alone would let a
/// client taking a few bytes a minute hold its thread, and the reply,
/// for ever. Past the deadline it fails (TimedOut), and the caller drops
/// the client: nothing more is written into a stalled socket.
fn send_within(client: &UnixStream, mut bytes: &[u8], within: Duration) -> io::Result<()> {
    let at = std::time::Instant::now() + within;
    while !bytes.is_empty() {
        let left = at.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("reply not taken within {} s", within.as_secs_f64()),
            ));
        }
        client.set_write_timeout(Some(left))?;
        match (&*client).write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What every client's thread shares.
#[derive(Clone)]
struct Served {
    stack: Stack,
    ifname: String,
    offloads: bool,
    pending: Arc<Pending>,
    accounts: Arc<Accounts>,
    /// [`IDLE_TIMEOUT`], but in tests.
    idle: Duration,
}

/// Serves one client: requests until it leaves, falls idle for
/// [`IDLE_TIMEOUT`] (`sv.idle`), or its connection turns into a bridge.
fn serve(sv: &Served, client: &UnixStream, peer: &Peer) -> io::Result<()> {
    let mut reader = BufReader::new(client);
    loop {
        let line = match request::read_line(&mut Deadline::new(&mut reader, sv.idle)) {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(()),
            Err(e) => {
                let e = match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        io::Error::new(io::ErrorKind::TimedOut, format!("idle for {} s", sv.idle.as_secs_f64()))
                    }
                    _ => e,
                };
                // Garbage gets a clear answer; the daemon carries on. Only
                // what the socket takes at once: the client may not be reading.
                let _ = client.set_nonblocking(true);
                let _ = (&*client).write(format!("ERR {e}\n").as_bytes());
                return Err(e);
            }
        };
        log::debug!("control: {}: {line}", peer.who);
        let r = match request::parse(&line) {
            Err(e) => Err(e),
            Ok(req) if req.is_lasting() => {
                // A bridge or a stream of results lasts as long as the client wants.
                client.set_read_timeout(None)?;
                client.set_write_timeout(None)?;
                match lasting(sv, req, reader, client, peer) {
                    Ok(()) => return Ok(()),
                    Err(Refused::Io(e)) => return Err(e),
                    Err(Refused::Req(msg, back)) => {
                        reader = back;
                        Err(msg)
                    }
                }
            }
            // A reply the client did not take in time ends it.
            Ok(req) => {
                info(sv, req, client, peer)?;
                Ok(())
            }
        };
        if let Err(msg) = r {
            send_within(client, format!("ERR {}\n", msg.replace('\n', " ")).as_bytes(), sv.idle)?;
        }
    }
}

/// A client's input with a deadline for the whole of what is read through
/// it (a request line): a client trickling a byte now and then cannot keep
/// its thread for longer than one idle timeout.
struct Deadline<'r, 'c> {
    inner: &'r mut ClientIn<'c>,
    at: std::time::Instant,
}

impl<'r, 'c> Deadline<'r, 'c> {
    fn new(inner: &'r mut ClientIn<'c>, within: Duration) -> Self {
        Deadline {
            inner,
            at: std::time::Instant::now() + within,
        }
    }
}

impl io::Read for Deadline<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Deadline<'_, '_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.inner.buffer().is_empty() {
            let left = self.at.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.inner.get_ref().set_read_timeout(Some(left))?;
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
    }
}

/// Answers an info request.
fn info(sv: &Served, req: Request, client: &UnixStream, peer: &Peer) -> io::Result<()> {
    let (stack, ifname, within) = (&sv.stack, sv.ifname.as_str(), sv.idle);
    // The big replies (an 11 MB SOCKETS with a million connections) are
    // bounded in number while they are built and sent (see [`Accounts::big_reply`]).
    let big = || {
        sv.accounts
            .big_reply(peer.uid, std::time::Instant::now() + within)
            .ok_or_else(|| io::Error::new(io::ErrorKind::WouldBlock, "busy"))
    };
    let busy = |_| {
        send_within(
            client,
            b"ERR busy: too many big replies being sent; try again\n",
            within,
        )
    };
    match req {
        Request::Version => send_within(
            client,
            format!("OK tunstackd {}\n", env!("CARGO_PKG_VERSION")).as_bytes(),
            within,
        ),
        Request::Ifconfig => reply_lines(client, &[ifconfig(stack, ifname, sv.offloads)], within),
        Request::Routes => reply_lines(client, &routes(stack, ifname), within),
        // Every socket, as ss shows every one; but, as on Linux, only root
        // and the owner see which process holds it. A label no client has
        // is a built-in service's: the daemon's own, so its uid's.
        Request::Sockets => {
            let _slot = match big() {
                Ok(s) => s,
                Err(e) => return busy(e),
            };
            // SAFETY: geteuid(2) takes no arguments and cannot fail.
            let daemon = unsafe { libc::geteuid() };
            let shown = |uid: Option<u32>| peer.uid == 0 || uid.unwrap_or(daemon) == peer.uid;
            reply_lines(client, &sockets(stack, shown), within)
        }
        Request::Stats => {
            let _slot = match big() {
                Ok(s) => s,
                Err(e) => return busy(e),
            };
            let lines: Vec<String> = counters(stack).iter().map(|(k, v)| format!("{k}={v}")).collect();
            reply_lines(client, &lines, within)
        }
        _ => unreachable!("lasting requests are served by lasting()"),
    }
}

/// Why a lasting request did not take the connection over.
enum Refused<'a> {
    /// The request failed: its `ERR` message, and the client's input back
    /// for the next request.
    Req(String, ClientIn<'a>),
    /// The client's connection failed.
    Io(io::Error),
}

/// Serves a request that turns the connection into a bridge or a stream of
/// results, for as long as it lasts.
fn lasting<'a>(
    sv: &Served,
    req: Request,
    reader: ClientIn<'a>,
    client: &'a UnixStream,
    peer: &Peer,
) -> Result<(), Refused<'a>> {
    let stack = &sv.stack;
    // What the sockets made here carry as their owner: the uid, for `SOCKETS`.
    let label = super::owner::label(peer.uid, &peer.who);
    let who = label.as_str();
    let io = Refused::Io;
    // Each stack socket is counted against the client's uid while it lives.
    let slot = |what: &str| {
        sv.accounts
            .socket(peer.uid)
            .map_err(|e| format!("{what}: {}", error_text(&e)))
    };
    let refuse = |msg: String, reader| Err(Refused::Req(msg, reader));
    match req {
        Request::Connect(remote) => {
            let _slot = match slot(&format!("connect {remote}")) {
                Ok(s) => s,
                Err(m) => return refuse(m, reader),
            };
            match bridge::connect(stack, remote, client, who) {
                Err(e) => refuse(format!("connect {remote}: {}", error_text(&e)), reader),
                Ok(None) => Ok(()), // the client left while connecting
                Ok(Some(tcp)) => bridge_tcp(tcp, reader, client).map_err(io),
            }
        }
        Request::Attach(id) => match sv.pending.take(id, peer) {
            Err(e) => refuse(format!("attach {id}: {}", error_text(&e)), reader),
            Ok((tcp, _slot)) => {
                tcp.set_owner(who);
                bridge_tcp(tcp, reader, client).map_err(io)
            }
        },
        Request::Listen { port, backlog } => {
            let what = format!("listen on {port}");
            let made = slot(&what).and_then(|s| {
                peer.may_bind(port)
                    .and_then(|()| TcpListener::bind_with_backlog(stack, (Ipv4Addr::UNSPECIFIED, port), backlog))
                    .map(|l| (s, l))
                    .map_err(|e| format!("{what}: {}", error_text(&e)))
            });
            match made {
                Err(m) => refuse(m, reader),
                Ok((_slot, listener)) => {
                    listener.set_owner(who);
                    let l = Listening {
                        listener,
                        backlog,
                        pending: &sv.pending,
                        accounts: &sv.accounts,
                        owner: peer.uid,
                    };
                    serve_listener(l, reader, client).map_err(io)
                }
            }
        }
        Request::Udp { local, peer: to } => {
            let what = format!("bind {local}");
            let made = slot(&what).and_then(|s| {
                peer.may_bind(local.port())
                    .and_then(|()| UdpSocket::bind(stack, local))
                    .map(|u| (s, u))
                    .map_err(|e| format!("{what}: {}", error_text(&e)))
            });
            let (_slot, udp) = match made {
                Ok(m) => m,
                Err(m) => return refuse(m, reader),
            };
            // A peer connects the socket, as `nc -u HOST PORT` does.
            if let Some(Err(e)) = to.map(|p| udp.connect(p).map_err(|e| format!("connect {p}: {}", error_text(&e)))) {
                return refuse(e, reader);
            }
            udp.set_owner(who);
            bridge_udp(udp, to.is_some(), reader, client).map_err(io)
        }
        Request::Ping(spec) => probe::ping(stack, reader, client, spec).map_err(io),
        Request::Trace(spec) => probe::traceroute(stack, client, spec).map_err(io),
        _ => unreachable!("info requests are served by info()"),
    }
}

/// An error as the classic tools print it: the message without Rust's " (os error N)".
pub(crate) fn error_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .unwrap_or(&text)
            .to_owned(),
        None => text,
    }
}

mod place;
mod tables;

pub use tables::{TcpMemory, counters, counters_from};
use tables::{ifconfig, routes, sockets};
#[cfg(test)]
pub(crate) use tables::{recovered_connection, tcp_row};

#[cfg(test)]
mod serving;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_accepts_rest_and_are_reported_once_in_a_while() {
        let started = std::time::Instant::now();
        let mut calls = 0;
        accept_loop(
            || {
                calls += 1;
                (started.elapsed() < Duration::from_millis(500))
                    .then(|| Err(io::Error::from_raw_os_error(libc::EMFILE)))
            },
            |_| panic!("nothing is accepted"),
        );
        // Every 100 ms, not as fast as accept fails.
        assert!((4..=8).contains(&calls), "{calls} accepts in 0.5 s");

        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = std::time::Instant::now();
        assert_eq!(t.note(t0), Some(1));
        assert_eq!(t.note(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.note(t0 + Duration::from_secs(9)), None);
        assert_eq!(t.note(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(t.note(t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn groups_are_found_by_name_or_number_and_a_missing_one_is_named() {
        assert_eq!(group_id("root").unwrap(), 0);
        assert_eq!(group_id("4242").unwrap(), 4242);
        let e = group_id("nosuchgroup").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(e.to_string(), "no group named \"nosuchgroup\"");
        assert!(group_id("bad\0name").is_err());
    }
}
