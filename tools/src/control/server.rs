//! The daemon side of the control socket.

use super::bridge::{self, ClientIn, Listening, Pending, bridge_tcp, bridge_udp, serve_listener};
use super::owner::{Accounts, Limits, Peer};
use super::request::{self, Request};
use super::{escape, probe};
use crate::privilege::Identity;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tunstack::Stats;
use tunstack::device::impair::ImpairCounts;
use tunstack::net::{TcpListener, UdpSocket};
use tunstack::runtime::Stack;
use tunstack::tcp::{MemoryUsage, State, TcpInfo};

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
    let (listener, socket) = create_socket(&cfg)?;
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

/// Creates the socket file, owned by the daemon's user, with mode 0600
/// (0660 and the group's with a group). Its directory is opened once,
/// without following a link, and checked (see [`place`]); everything after
/// goes through that descriptor. The file is made under a umask that keeps
/// it private from the start, and its owner and mode are set through a
/// descriptor of the very file (O_PATH, no link followed). The group is
/// looked up first, and whether the user can remove the file at exit is
/// checked before it exists, so a refusal leaves nothing behind.
fn create_socket(cfg: &ControlConfig) -> io::Result<(UnixListener, ControlSocket)> {
    use std::os::fd::AsRawFd;
    let path = &cfg.path;
    let gid = cfg.group.as_deref().map(group_id).transpose()?;
    let failed =
        |what: &str, e: io::Error| io::Error::new(e.kind(), format!("control socket {}: {what}: {e}", path.display()));
    let name = path
        .file_name()
        .ok_or_else(|| failed("no file name", io::ErrorKind::InvalidInput.into()))?;
    let cname = std::ffi::CString::new(name.as_encoded_bytes())
        .map_err(|_| failed("bad name", io::ErrorKind::InvalidInput.into()))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let daemon = cfg.owner.as_ref().map_or(crate::privilege::euid(), |o| o.uid);
    let users = [daemon, crate::privilege::euid()];
    // A directory the daemon makes is its user's, so the socket can go at exit.
    let own_dir = cfg.own_dir || std::fs::symlink_metadata(dir).is_err();
    let dir_fd = if own_dir {
        make_own_dir(dir, name, cfg.own_dir, &users, cfg.owner.as_ref()).map_err(|e| {
            failed(
                &format!("cannot create {}", dir.display()),
                io::Error::new(e.kind(), error_text(&e)),
            )
        })?
    } else {
        let fd = place::open_dir(libc::AT_FDCWD, dir.as_os_str(), true).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR | libc::ELOOP) => io::Error::new(
                io::ErrorKind::NotADirectory,
                format!(
                    "control socket {}: {} is not a directory",
                    path.display(),
                    dir.display()
                ),
            ),
            _ => failed(&format!("{}", dir.display()), e),
        })?;
        place::trusted(&place::stat(fd.as_raw_fd())?, dir, &users, true).map_err(|e| failed("refused", e))?;
        fd
    };
    let at = dir_fd.as_raw_fd();
    if let Some(owner) = &cfg.owner {
        let may = crate::privilege::may_remove_in(dir, owner).map_err(|e| failed(&format!("{}", dir.display()), e))?;
        if !may {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "control socket {}: the daemon runs as {owner} once started, and could not remove it from {} at exit: \
                     choose a --control path in a directory that user may reach and write (or a sticky one like /tmp), or another --user",
                    path.display(),
                    dir.display()
                ),
            ));
        }
    }
    if let Some(st) = place::stat_at(at, &cname)? {
        // Only a socket nobody answers on is ours to replace; never another file.
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "control socket {}: a file that is not a socket is there",
                    path.display()
                ),
            ));
        }
        if let Some(who) = place::answering(at, name)? {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "control socket {} is in use (by {who}): is another tunstackd running?",
                    path.display()
                ),
            ));
        }
        // Left behind by a daemon that died.
        place::unlink_at(at, &cname, 0).map_err(|e| failed("cannot remove a stale one", e))?;
    }
    let through = place::through(at, name).map_err(|e| failed("cannot bind", e))?;
    let listener = with_umask(0o177, || UnixListener::bind(&through)).map_err(|e| failed("cannot bind", e))?;
    // The file just bound, pinned: a socket of ours, not whatever the name leads to now.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(&through)
        .map_err(|e| failed("vanished", e))?;
    let meta = file.metadata().map_err(|e| failed("vanished", e))?;
    let socket = {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if !meta.file_type().is_socket() || meta.uid() != crate::privilege::euid() {
            return Err(failed("replaced while binding", io::ErrorKind::AlreadyExists.into()));
        }
        ControlSocket {
            path: path.clone(),
            name: cname,
            id: (meta.dev(), meta.ino()),
            own_dir: cfg.own_dir.then(|| dir.to_path_buf()),
            dir: dir_fd,
        }
    };
    let uid = cfg.owner.as_ref().map_or(u32::MAX, |o| o.uid);
    let group = gid.or(cfg.owner.as_ref().map(|o| o.gid)).unwrap_or(u32::MAX);
    // SAFETY: fchownat on a live descriptor with an empty path (AT_EMPTY_PATH:
    // the file itself); u32::MAX (-1) leaves an id unchanged.
    if unsafe { libc::fchownat(file.as_raw_fd(), c"".as_ptr(), uid, group, libc::AT_EMPTY_PATH) } != 0 {
        return Err(failed("cannot change its owner", io::Error::last_os_error()));
    }
    if gid.is_some() {
        // No fchmod on an O_PATH descriptor: /proc's link to it reaches the same file.
        std::fs::set_permissions(
            format!("/proc/self/fd/{}", file.as_raw_fd()),
            std::fs::Permissions::from_mode(0o660),
        )
        .map_err(|e| failed("cannot set its mode", e))?;
    }
    Ok((listener, socket))
}

/// Makes the socket's directory `dir` and gives it to `owner`, mode 0755:
/// its parent made if missing (root's, 0755), then opened without
/// following a link and checked (root's or `users`', writable by no one
/// else; sticky will do for a `--control` directory). The daemon's own
/// directory (`fresh`) is made afresh, whatever an earlier start left
/// there removed ([`place::fresh_dir`]); any other must not exist yet.
fn make_own_dir(
    dir: &Path,
    socket: &std::ffi::OsStr,
    fresh: bool,
    users: &[u32],
    owner: Option<&Identity>,
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::DirBuilderExt;
    let up = dir
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no directory name"))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(up)?;
    let parent = place::open_dir(libc::AT_FDCWD, up.as_os_str(), true)?;
    place::trusted(&place::stat(parent.as_raw_fd())?, up, users, !fresh)?;
    let made = if fresh {
        place::fresh_dir(parent.as_raw_fd(), name, socket, dir)?
    } else {
        let cname = std::ffi::CString::new(name.as_encoded_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: mkdirat(2) with a live descriptor and a NUL-terminated name.
        if unsafe { libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o700) } != 0 {
            return Err(io::Error::last_os_error());
        }
        place::open_dir(parent.as_raw_fd(), name, false)?
    };
    let handle = std::fs::File::from(made);
    if let Some(owner) = owner {
        std::os::unix::fs::fchown(&handle, Some(owner.uid), Some(owner.gid))?;
    }
    handle.set_permissions(std::fs::Permissions::from_mode(0o755))?;
    Ok(handle.into())
}

/// Runs `f` with the process's umask set to `mask`, then restores it. The
/// umask is the process's: this runs at start-up, before any thread that
/// creates files.
fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask(2) only swaps a number in the process; it cannot fail.
    let old = unsafe { libc::umask(mask) };
    let r = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    r
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
        Request::Ifconfig => reply_lines(client, &[ifconfig(stack, ifname)], within),
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

/// One line describing the interface, for `tunstack ifconfig`.
fn ifconfig(stack: &Stack, ifname: &str) -> String {
    let (cfg, s) = stack.with_interface(|i| (i.config().clone(), i.stats().clone()));
    let a = cfg.address;
    let rx_errors = s.ip_truncated_header
        + s.ip_bad_ihl
        + s.ip_bad_checksum
        + s.ip_total_len_exceeds_packet
        + s.ip_total_len_below_header
        + s.link_rx_errors;
    // What is true of the stack's side: it runs, it is one end of a
    // point-to-point link with no ARP, and it hears its subnet's broadcast
    // if the subnet has one. It does no multicast.
    let broadcast = a.broadcast();
    let flags = if broadcast.is_some() {
        "UP,BROADCAST,POINTOPOINT,RUNNING,NOARP"
    } else {
        "UP,POINTOPOINT,RUNNING,NOARP"
    };
    let dash = |v: Option<Ipv4Addr>| v.map_or("-".into(), |b| b.to_string());
    format!(
        "name={ifname} flags={flags} addr={} netmask={} broadcast={} destination={} mtu={} rx_packets={} rx_bytes={} rx_errors={} rx_dropped={} tx_packets={} tx_bytes={} tx_errors={} tx_dropped={}",
        a.addr(),
        a.netmask(),
        dash(broadcast),
        dash(cfg.gateway),
        cfg.mtu,
        s.link_rx_packets,
        s.link_rx_bytes,
        rx_errors,
        s.drops().saturating_sub(rx_errors - s.link_rx_errors),
        s.link_tx_packets,
        s.link_tx_bytes,
        s.link_tx_errors,
        s.link_tx_queue_full + s.ip_tx_no_route,
    )
}

/// The route table, one route a line.
fn routes(stack: &Stack, ifname: &str) -> Vec<String> {
    stack.with_interface(|i| {
        i.routes()
            .iter()
            .map(|r| {
                format!(
                    "dest={} gateway={} genmask={} flags={} iface={ifname}",
                    r.destination.network(),
                    r.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    r.destination.netmask(),
                    r.flags()
                )
            })
            .collect()
    })
}

/// Every socket, one a line, for `tunstack netstat`. `shown` says, from
/// the uid in a socket's owner label (see [`owner::label`](super::owner::label);
/// `None`: the daemon's), whether its owner may be named (the others' show as `-`).
fn sockets(stack: &Stack, shown: impl Fn(Option<u32>) -> bool) -> Vec<String> {
    let (mut tcp, mut udp) =
        stack.with_interface(|i| (i.tcp_layer().sockets(), i.udp_layer().sockets().collect::<Vec<_>>()));
    let hide = |o: &mut Option<Arc<str>>| {
        *o = o.as_deref().and_then(|label| {
            let (uid, what) = super::owner::split_label(label);
            shown(uid).then(|| what.into())
        });
    };
    tcp.iter_mut().for_each(|t| hide(&mut t.owner));
    udp.iter_mut().for_each(|u| hide(&mut u.owner));
    let owner = |o: &Option<Arc<str>>| escape(o.as_deref().unwrap_or("-"));
    let mut lines: Vec<String> = tcp.iter().map(tcp_row).collect();
    lines.extend(udp.iter().map(|u| {
        format!(
            "proto=udp state={} local={} remote={} recvq={} sendq=0 owner={} rx={} tx={} drops={}",
            if u.remote.is_some() { "ESTABLISHED" } else { "-" },
            u.local,
            u.remote.map_or("0.0.0.0:0".into(), |r| r.to_string()),
            u.recv_queue,
            owner(&u.owner),
            u.rx_datagrams,
            u.tx_datagrams,
            u.rx_dropped
        )
    }));
    lines
}

/// A TCP socket's `SOCKETS` line: a listener's queues, or a connection's
/// internals and what loss recovery did.
pub(crate) fn tcp_row(t: &TcpInfo) -> String {
    let owner = escape(t.owner.as_deref().unwrap_or("-"));
    let common = format!(
        "proto=tcp state={} local={} remote={} recvq={}",
        t.state.name(),
        t.local,
        t.remote,
        t.recv_queue
    );
    if t.state == State::Listen {
        // As netstat -anp shows a listener (from /proc/net/tcp): the
        // accept queue as Recv-Q, Send-Q 0; the backlog on its own.
        return format!("{common} sendq=0 owner={owner} backlog={}", t.send_queue);
    }
    let r = &t.recovery;
    format!(
        "{common} sendq={} owner={owner} rtt_us={} rto_us={} cwnd={} ssthresh={} mss={} retrans={} bytes_in={} bytes_out={} rcv_rtt_us={} rcvbuf={} rcvbuf_alloc={} sndbuf={} sndbuf_alloc={} recoveries={} rack_marked={} tlps={} undone={} rtos={}",
        t.send_queue,
        t.srtt.map_or("-".into(), |d| d.as_micros().to_string()),
        t.rto.as_micros(),
        t.cwnd,
        ssthresh(t),
        t.mss,
        t.retransmits,
        t.bytes_in,
        t.bytes_out,
        t.rcv_rtt.map_or("-".into(), |d| d.as_micros().to_string()),
        t.recv_buffer,
        t.recv_allocated,
        t.send_buffer,
        t.send_allocated,
        r.fast_recoveries,
        r.rack_marked,
        r.loss_probes,
        r.undone,
        r.timeouts
    )
}

/// A connection's slow-start threshold, `-` until the first loss sets it.
/// Congestion controls start it "infinite" (NewReno at `usize::MAX`); like
/// `ss`, anything from Linux's TCP_INFINITE_SSTHRESH (2^31 - 1) up counts as unset.
fn ssthresh(t: &TcpInfo) -> String {
    if t.ssthresh >= 0x7fff_ffff {
        "-".into()
    } else {
        t.ssthresh.to_string()
    }
}

/// The TCP states the socket census counts, each as `sockets_tcp_<state>`.
const CENSUS_STATES: [State; 10] = [
    State::Listen,
    State::SynSent,
    State::SynReceived,
    State::Established,
    State::FinWait1,
    State::FinWait2,
    State::CloseWait,
    State::Closing,
    State::LastAck,
    State::TimeWait,
];

/// Every counter the daemon reports (the `STATS` reply and SIGUSR1's line).
pub fn counters(stack: &Stack) -> Vec<(String, u64)> {
    let (stats, tcp, udp, memory) = stack.with_interface(|i| {
        let udp = i.udp_layer().sockets().count();
        let tcp = i.tcp_layer();
        let memory = TcpMemory {
            usage: tcp.memory(),
            connections: tcp.connection_count(),
        };
        (i.stats().clone(), tcp.sockets(), udp, memory)
    });
    counters_from(&stats, &stack.impairment().unwrap_or_default(), &tcp, udp, memory)
}

/// TCP's memory budget and connection count, for the counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpMemory {
    /// The budget's state.
    pub usage: MemoryUsage,
    /// Connections held, any state but LISTEN (what `--max-connections` caps).
    pub connections: usize,
}

/// The counters, in order: the stack's (`Stats`), TCP's memory budget and
/// connections (`tcp_memory_pressures`, `tcp_mem_allocated`,
/// `tcp_mem_pressure`, `tcp_connections`), the impairment's each way
/// (`impair_in_*`, `impair_out_*`; zeros without impairment), and a census
/// of the sockets (`sockets_tcp`, `sockets_udp`, `sockets_tcp_<state>`).
pub fn counters_from(
    stats: &Stats,
    impairment: &ImpairCounts,
    tcp: &[TcpInfo],
    udp: usize,
    memory: TcpMemory,
) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = stats.iter().map(|(k, v)| (k.to_owned(), v)).collect();
    out.extend([
        ("tcp_memory_pressures".to_owned(), memory.usage.pressures),
        ("tcp_mem_allocated".to_owned(), memory.usage.allocated as u64),
        ("tcp_mem_pressure".to_owned(), u64::from(memory.usage.pressure)),
        ("tcp_connections".to_owned(), memory.connections as u64),
    ]);
    for (way, s) in [("in", &impairment.inbound), ("out", &impairment.outbound)] {
        out.extend(s.iter().map(|(k, v)| (format!("impair_{way}_{k}"), v)));
    }
    out.push(("sockets_tcp".into(), tcp.len() as u64));
    out.push(("sockets_udp".into(), udp as u64));
    for state in CENSUS_STATES {
        let n = tcp.iter().filter(|t| t.state == state).count() as u64;
        out.push((format!("sockets_tcp_{}", state.name().to_lowercase()), n));
    }
    out
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

/// An established connection that has been through loss recovery, for tests
/// of the `SOCKETS` line and of what netstat makes of it.
#[cfg(test)]
pub(crate) fn recovered_connection() -> TcpInfo {
    TcpInfo {
        owner: Some("4242/my prog".into()),
        state: State::Established,
        local: "10.200.0.2:7".parse().unwrap(),
        remote: "10.200.0.1:40000".parse().unwrap(),
        recv_queue: 0,
        send_queue: 2920,
        srtt: Some(Duration::from_micros(1500)),
        rcv_rtt: None,
        rto: Duration::from_millis(201),
        cwnd: 14600,
        ssthresh: 7300,
        mss: 1460,
        retransmits: 17,
        bytes_in: 3_000_000,
        bytes_out: 2_997_080,
        recovery: tunstack::tcp::RecoveryCounts {
            fast_recoveries: 3,
            rack_marked: 12,
            loss_probes: 2,
            undone: 1,
            timeouts: 4,
        },
        recv_buffer: 65536,
        recv_allocated: 4096,
        send_buffer: 29200,
        send_allocated: 8192,
    }
}

mod place;

#[cfg(test)]
mod serving;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_row_carries_its_internals_and_recovery_counts() {
        let mut t = recovered_connection();
        let row = crate::control::fields(&tcp_row(&t));
        let value = |k: &str| row.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(value("owner"), Some("4242/my prog"), "escaped, then read back");
        for (key, want) in [
            ("state", "ESTABLISHED"),
            ("sendq", "2920"),
            ("rtt_us", "1500"),
            ("ssthresh", "7300"),
            ("retrans", "17"),
            ("rcv_rtt_us", "-"),
            ("recoveries", "3"),
            ("rack_marked", "12"),
            ("tlps", "2"),
            ("undone", "1"),
            ("rtos", "4"),
        ] {
            assert_eq!(value(key), Some(want), "{key}");
        }
        // A listener has none of a connection's figures.
        t.state = State::Listen;
        t.send_queue = 128;
        let listener = tcp_row(&t);
        assert!(
            listener.ends_with(" sendq=0 owner=4242/my%20prog backlog=128"),
            "{listener}"
        );
        assert!(!listener.contains("recoveries="), "{listener}");
    }

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
