//! The daemon side of the control socket.

use super::bridge::{self, Pending, bridge_tcp, bridge_udp, serve_listener};
use super::{MAX_REQUEST, escape, probe};
use crate::privilege::Identity;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
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
        if file_id(&self.path).is_some_and(|id| id == self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(dir) = &self.own_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
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
    std::thread::Builder::new().name("control".into()).spawn(move || {
        for client in listener.incoming() {
            let client = match client {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("control: accept: {e}");
                    continue;
                }
            };
            let (stack, pending, ifname) = (stack.clone(), pending.clone(), cfg.ifname.clone());
            let spawned = std::thread::Builder::new()
                .name("control-client".into())
                .spawn(move || {
                    let who = owner_of(&client);
                    if let Err(e) = serve(&stack, client, &ifname, &pending, &who) {
                        log::debug!("control: {who}: {e}");
                    }
                });
            if let Err(e) = spawned {
                log::warn!("control: no thread for a client: {e}");
            }
        }
    })?;
    Ok(socket)
}

/// Creates the socket file, owned by the daemon's user, with mode 0600
/// (0660 and the group's with a group). It is made under a umask that
/// keeps it private from the start, and its owner and mode are set through
/// a descriptor of the very file (O_PATH, no link followed), so a path
/// swapped meanwhile changes nothing else. The group is looked up first,
/// and whether the user can remove the file at exit is checked before it
/// exists, so a refusal leaves nothing behind.
fn create_socket(cfg: &ControlConfig) -> io::Result<(UnixListener, ControlSocket)> {
    use std::os::fd::AsRawFd;
    let path = &cfg.path;
    let gid = cfg.group.as_deref().map(group_id).transpose()?;
    let failed =
        |what: &str, e: io::Error| io::Error::new(e.kind(), format!("control socket {}: {what}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let existing = std::fs::symlink_metadata(dir);
    if existing.as_ref().is_ok_and(|m| !m.is_dir()) {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!(
                "control socket {}: {} is not a directory",
                path.display(),
                dir.display()
            ),
        ));
    }
    // A directory the daemon makes is its user's, so the socket can go at exit.
    let own_dir = cfg.own_dir || existing.is_err();
    if own_dir {
        make_own_dir(dir, cfg.owner.as_ref()).map_err(|e| {
            failed(
                &format!("cannot create {}", dir.display()),
                io::Error::new(e.kind(), error_text(&e)),
            )
        })?;
    }
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
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        // Only a socket nobody answers on is ours to replace; never another file.
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "control socket {}: a file that is not a socket is there",
                    path.display()
                ),
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "control socket {} is in use: is another tunstackd running?",
                    path.display()
                ),
            ));
        }
        // Left behind by a daemon that died.
        std::fs::remove_file(path).map_err(|e| failed("cannot remove a stale one", e))?;
    }
    let listener = with_umask(0o177, || UnixListener::bind(path)).map_err(|e| failed("cannot bind", e))?;
    // The file just bound, pinned: a socket of ours, not whatever the path leads to now.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| failed("vanished", e))?;
    let meta = file.metadata().map_err(|e| failed("vanished", e))?;
    let socket = {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if !meta.file_type().is_socket() || meta.uid() != crate::privilege::euid() {
            return Err(failed("replaced while binding", io::ErrorKind::AlreadyExists.into()));
        }
        ControlSocket {
            path: path.clone(),
            id: (meta.dev(), meta.ino()),
            own_dir: cfg.own_dir.then(|| dir.to_path_buf()),
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

/// Makes the daemon's own directory `dir` (its parents as root's, 0755)
/// and gives it to `owner`, mode 0755; one left by an earlier daemon is
/// taken over the same way. Changed through a descriptor opened without
/// following links.
fn make_own_dir(dir: &Path, owner: Option<&Identity>) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(up) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(up)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    if let Some(owner) = owner {
        std::os::unix::fs::fchown(&handle, Some(owner.uid), Some(owner.gid))?;
    }
    handle.set_permissions(std::fs::Permissions::from_mode(0o755))
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

/// "pid/program" of the process at the other end, from SO_PEERCRED.
fn owner_of(client: &UnixStream) -> String {
    match peer_pid(client) {
        Some(pid) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{pid}/{}", comm.trim())
        }
        None => "?".into(),
    }
}

fn peer_pid(s: &UnixStream) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are live, correctly sized out-parameters for SO_PEERCRED.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.pid)
}

/// Reads one request line; `Ok(None)` when the client is gone.
fn read_request(r: &mut BufReader<UnixStream>) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.by_ref().take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request line too long or unterminated",
        ));
    }
    line.pop();
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request is not text"))
}

fn reply_lines(w: &mut UnixStream, lines: &[String]) -> io::Result<()> {
    let mut out = format!("OK {}\n", lines.len());
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    w.write_all(out.as_bytes())
}

fn parse_addr(ip: Option<&str>, port: Option<&str>) -> Result<SocketAddrV4, String> {
    let ip: Ipv4Addr = ip
        .ok_or("missing address")?
        .parse()
        .map_err(|e| format!("bad address: {e}"))?;
    let port: u16 = port
        .ok_or("missing port")?
        .parse()
        .map_err(|e| format!("bad port: {e}"))?;
    Ok(SocketAddrV4::new(ip, port))
}

/// Serves one client: requests until it leaves or its connection turns into a bridge.
fn serve(stack: &Stack, client: UnixStream, ifname: &str, pending: &Pending, who: &str) -> io::Result<()> {
    let mut out = client.try_clone()?;
    let mut reader = BufReader::new(client.try_clone()?);
    loop {
        let line = match read_request(&mut reader) {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(()),
            Err(e) => {
                // Garbage gets a clear answer; the daemon carries on.
                let _ = writeln!(out, "ERR {e}");
                return Err(e);
            }
        };
        let mut words = line.split(' ');
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        log::debug!("control: {who}: {line}");
        let r: Result<(), String> = match verb.as_str() {
            "VERSION" => writeln!(out, "OK tunstackd {}", env!("CARGO_PKG_VERSION")).map_err(|e| e.to_string()),
            "IFCONFIG" => reply_lines(&mut out, &[ifconfig(stack, ifname)]).map_err(|e| e.to_string()),
            "ROUTES" => reply_lines(&mut out, &routes(stack, ifname)).map_err(|e| e.to_string()),
            "SOCKETS" => reply_lines(&mut out, &sockets(stack)).map_err(|e| e.to_string()),
            "STATS" => {
                let lines: Vec<String> = counters(stack).iter().map(|(k, v)| format!("{k}={v}")).collect();
                reply_lines(&mut out, &lines).map_err(|e| e.to_string())
            }
            "CONNECT" => match parse_addr(words.next(), words.next()) {
                Err(e) => Err(e),
                Ok(remote) => match bridge::connect(stack, remote, reader.get_ref(), who) {
                    Err(e) => Err(format!("connect {remote}: {}", error_text(&e))),
                    Ok(None) => return Ok(()), // the client left while connecting
                    Ok(Some(tcp)) => return bridge_tcp(tcp, reader.into_inner(), out),
                },
            },
            "ATTACH" => {
                let id = words.next().and_then(|w| w.parse::<u64>().ok());
                match id.and_then(|id| pending.take(id)) {
                    None => Err("no such pending connection".into()),
                    Some(tcp) => {
                        tcp.set_owner(who);
                        return bridge_tcp(tcp, reader.into_inner(), out);
                    }
                }
            }
            "LISTEN" => {
                let port = words.next().map(str::parse::<u16>);
                let backlog = words.next().map_or(Ok(16), str::parse::<usize>);
                match (port, backlog) {
                    (Some(Ok(port)), Ok(backlog)) => {
                        match TcpListener::bind_with_backlog(stack, (Ipv4Addr::UNSPECIFIED, port), backlog) {
                            Err(e) => Err(format!("listen on {port}: {}", error_text(&e))),
                            Ok(l) => {
                                l.set_owner(who);
                                return serve_listener(l, reader.into_inner(), out, pending);
                            }
                        }
                    }
                    _ => Err("usage: LISTEN PORT [BACKLOG]".into()),
                }
            }
            "UDP" => {
                let local = parse_addr(words.next(), words.next());
                // An optional peer connects the socket, as `nc -u HOST PORT` does.
                let peer = match words.next() {
                    None => Ok(None),
                    ip => parse_addr(ip, words.next()).map(Some),
                };
                match (local, peer) {
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    (Ok(local), Ok(peer)) => match UdpSocket::bind(stack, local) {
                        Err(e) => Err(format!("bind {local}: {}", error_text(&e))),
                        Ok(udp) => {
                            match peer.map(|p| udp.connect(p).map_err(|e| format!("connect {p}: {}", error_text(&e)))) {
                                Some(Err(e)) => Err(e),
                                Some(Ok(())) | None => {
                                    udp.set_owner(who);
                                    return bridge_udp(udp, peer.is_some(), reader.into_inner(), out);
                                }
                            }
                        }
                    },
                }
            }
            "PING" => {
                // PING <ip> <count> <interval_ms> <size> <ttl>
                let w: Vec<&str> = words.collect();
                let parsed = (|| -> Option<probe::PingSpec> {
                    Some(probe::PingSpec {
                        dst: w.first()?.parse().ok()?,
                        count: w.get(1)?.parse().ok()?,
                        interval: Duration::from_millis(w.get(2)?.parse::<u64>().ok()?.clamp(1, 3_600_000)),
                        size: w.get(3)?.parse::<usize>().ok().filter(|s| *s <= 65507)?,
                        ttl: w.get(4)?.parse::<u8>().ok().filter(|t| *t > 0)?,
                    })
                })();
                match parsed {
                    None => Err("usage: PING IP COUNT INTERVAL_MS SIZE TTL".into()),
                    Some(spec) => return probe::ping(stack, &mut out, spec),
                }
            }
            "TRACE" => {
                // TRACE <ip> <max_hops> <probes> <port> <wait_ms>
                let w: Vec<&str> = words.collect();
                let parsed = (|| -> Option<probe::TraceSpec> {
                    Some(probe::TraceSpec {
                        dst: w.first()?.parse().ok()?,
                        max_hops: w.get(1)?.parse::<u8>().ok().filter(|h| *h > 0)?,
                        probes: w.get(2)?.parse::<u8>().ok().filter(|p| (1..=10).contains(p))?,
                        port: w.get(3)?.parse().ok()?,
                        wait: Duration::from_millis(w.get(4)?.parse::<u64>().ok()?.clamp(1, 60_000)),
                    })
                })();
                match parsed {
                    None => Err("usage: TRACE IP MAX_HOPS PROBES PORT WAIT_MS".into()),
                    Some(spec) => return probe::traceroute(stack, &mut out, spec),
                }
            }
            "" => Err("empty request".into()),
            other => Err(format!("unknown request {other:?}")),
        };
        if let Err(msg) = r {
            writeln!(out, "ERR {}", msg.replace('\n', " "))?;
        }
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

/// Every socket, one a line, for `tunstack netstat`.
fn sockets(stack: &Stack) -> Vec<String> {
    let (tcp, udp) = stack.with_interface(|i| (i.tcp_layer().sockets(), i.udp_layer().sockets().collect::<Vec<_>>()));
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
    fn groups_are_found_by_name_or_number_and_a_missing_one_is_named() {
        assert_eq!(group_id("root").unwrap(), 0);
        assert_eq!(group_id("4242").unwrap(), 4242);
        let e = group_id("nosuchgroup").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(e.to_string(), "no group named \"nosuchgroup\"");
        assert!(group_id("bad\0name").is_err());
    }
}
