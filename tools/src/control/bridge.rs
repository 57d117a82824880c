//! Stack sockets lent to control-socket clients, bridged over their Unix
//! streams as frames, and closed as soon as their client goes away.
//!
//! A client goes away by exiting, being killed or closing its control
//! connection; the daemon sees end of stream, or ECONNRESET when the client
//! left bytes unread in its own socket buffer. Its sockets then close at
//! once, as the kernel closes those of a process that dies:
//!
//! - a connection still being made is dropped without a word (no RST, as
//!   `close(2)` in SYN_SENT);
//! - an established connection closes as `close(2)` would: FIN after the
//!   data already queued, or RST if data from the peer was left unread (in
//!   the stack, on its way to the client, or in the client's buffer) or
//!   data from the client could not be handed to the stack;
//! - a listener stops, and the connections it accepted that no client
//!   attached are reset, as a closing listener resets its accept queue;
//! - a UDP socket is unbound.
//!
//! A bridge thread blocked on the stack rather than on its client looks at
//! the client every [`CLIENT_CHECK`].

use super::frame;
use super::owner::{Accounts, Peer, SocketSlot, random_id};
use super::server::error_text;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tunstack::net::{TcpListener, TcpStream, UdpSocket};
use tunstack::runtime::Stack;

/// How long a bridge waits on the stack before looking whether its client is still there.
const CLIENT_CHECK: Duration = Duration::from_millis(100);

/// The client's side of a control connection once it bridges: what it sends
/// (with anything already read past its request line), and the connection
/// itself, for replies.
pub type ClientIn<'a> = BufReader<&'a UnixStream>;

/// Connections accepted for `LISTEN` clients, waiting for an `ATTACH`, by
/// random id. Each belongs to its listener's uid, counted against it.
#[derive(Debug, Default)]
pub struct Pending {
    conns: Mutex<HashMap<u64, (TcpStream, SocketSlot)>>,
}

impl Pending {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (TcpStream, SocketSlot)>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands accepted connection `id` to `peer`, if it is the owner's (or
    /// root); another uid's connection stays where it is, refused with EPERM.
    pub fn take(&self, id: u64, peer: &Peer) -> io::Result<(TcpStream, SocketSlot)> {
        let mut conns = self.conns();
        match conns.get(&id) {
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such pending connection")),
            Some((_, slot)) if !peer.may_use(slot.owner()) => Err(io::Error::from_raw_os_error(libc::EPERM)),
            Some(_) => Ok(conns.remove(&id).expect("just seen")),
        }
    }

    /// Files `conn` under a fresh random id, never one in use.
    fn insert(&self, conn: TcpStream, slot: SocketSlot) -> io::Result<u64> {
        let mut conns = self.conns();
        let id = loop {
            let id = random_id()?;
            if !conns.contains_key(&id) {
                break id;
            }
        };
        conns.insert(id, (conn, slot));
        Ok(id)
    }

    /// Which of `ids` are still waiting.
    fn waiting(&self, ids: &mut Vec<u64>) {
        let conns = self.conns();
        ids.retain(|id| conns.contains_key(id));
    }

    /// Takes out every one of `ids` still waiting.
    fn remove_all(&self, ids: &[u64]) -> Vec<TcpStream> {
        let mut conns = self.conns();
        ids.iter().filter_map(|id| conns.remove(id)).map(|(c, _)| c).collect()
    }
}

/// Whether the client at the other end of `client` has gone (closed or shut
/// down its end), without reading what it may still have sent.
fn hung_up(client: &UnixStream) -> bool {
    let mut pfd = libc::pollfd {
        fd: client.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid, live pollfd and a zero timeout: poll(2) only writes its revents.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Returns when the client at the other end of `client` leaves (or shuts
/// the connection down), discarding anything it sends meanwhile.
pub fn until_gone(mut client: impl BufRead) {
    loop {
        match client.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(b) => {
                let n = b.len();
                client.consume(n);
            }
        }
    }
}

/// Connects to `remote` for `client`, labelled `who` from the first SYN on;
/// `Ok(None)` when the client leaves first (the attempt is then dropped).
pub fn connect(stack: &Stack, remote: SocketAddrV4, client: &UnixStream, who: &str) -> io::Result<Option<TcpStream>> {
    let tcp = TcpStream::connect_nonblocking(stack, remote)?;
    tcp.set_owner(who);
    loop {
        match tcp.wait_connected(Some(CLIENT_CHECK)) {
            Ok(()) => return Ok(Some(tcp)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if hung_up(client) {
                    log::debug!("control: {who} left while connecting to {remote}");
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// How the client's half of a TCP bridge ended.
enum ClientEnd {
    /// End of stream: the client left having read all it was sent and sent
    /// all it meant to.
    Left,
    /// The client left bytes unread, or left while the stack could not yet
    /// take its data.
    Abandoned,
    /// The client broke the framing (a frame too long, of an unknown type):
    /// it is told why, then disconnected.
    Broken(String),
}

/// Starts `f` on a thread of scope `s`, with a client thread's small
/// stack. When no thread can be had (too many, no memory) it does not
/// panic: it says why, for the caller to tell the client and end.
pub(crate) fn helper<'s>(s: &'s std::thread::Scope<'s, '_>, f: impl FnOnce() + Send + 's) -> Result<(), String> {
    std::thread::Builder::new()
        .name("control-helper".into())
        .stack_size(super::server::CLIENT_STACK)
        .spawn_scoped(s, f)
        .map(drop)
        .map_err(|e| {
            log::warn!("control: no thread for a client's request: {e}");
            format!("no thread to serve this: {}", error_text(&e))
        })
}

/// Carries a TCP connection over the client's Unix stream, as frames, and
/// closes it as `close(2)` would once the client is gone. Writes to the
/// client block only this bridge: a client that stops reading stalls its
/// own connection (the stack's window closes), nothing else.
pub fn bridge_tcp(tcp: TcpStream, client_in: ClientIn<'_>, client: &UnixStream) -> io::Result<()> {
    let (local, remote) = (tcp.local_addr()?, tcp.peer_addr()?);
    let mut client_out = client;
    writeln!(client_out, "OK {local} {remote}")?;
    // A write waiting for room in the send buffer checks on the client now and then.
    tcp.set_write_timeout(Some(CLIENT_CHECK))?;
    let gone = AtomicBool::new(false);
    let broken: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        let (tcp, gone, broken) = (&tcp, &gone, &broken);
        let spawned = helper(s, move || match client_to_stack(tcp, client_in) {
            // Wakes the reader below without a FIN: closing decides between FIN and RST.
            ClientEnd::Left => {
                gone.store(true, Ordering::SeqCst);
                let _ = tcp.shutdown(Shutdown::Read);
            }
            ClientEnd::Abandoned => {
                gone.store(true, Ordering::SeqCst);
                let _ = tcp.abort();
            }
            ClientEnd::Broken(why) => {
                *broken.lock().expect("broken") = Some(why);
                let _ = tcp.abort();
            }
        });
        if let Err(why) = spawned {
            let _ = frame::write(&mut client_out, frame::ERROR, why.as_bytes());
            let _ = client.shutdown(Shutdown::Both);
            let _ = tcp.abort();
            return;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match (&*tcp).read(&mut buf) {
                Ok(0) => {
                    if let Some(why) = broken.lock().expect("broken").take() {
                        let _ = frame::write(&mut client_out, frame::ERROR, why.as_bytes());
                        let _ = client.shutdown(Shutdown::Both);
                    } else if !gone.load(Ordering::SeqCst) {
                        let _ = frame::write(&mut client_out, frame::FIN, b"");
                    }
                    break;
                }
                Ok(n) => {
                    if gone.load(Ordering::SeqCst) || frame::write(&mut client_out, frame::DATA, &buf[..n]).is_err() {
                        // The client will never read these bytes: reset, as close(2) with unread data.
                        let _ = tcp.abort();
                        break;
                    }
                }
                Err(e) => {
                    let why = broken.lock().expect("broken").take();
                    if !gone.load(Ordering::SeqCst) {
                        let why = why.unwrap_or_else(|| error_text(&e));
                        let _ = frame::write(&mut client_out, frame::ERROR, why.as_bytes());
                    }
                    // Ends the client's half too.
                    let _ = client.shutdown(Shutdown::Both);
                    break;
                }
            }
        }
    });
    // Dropping `tcp` closes it: FIN after the queued data, or RST if data arrived unread.
    Ok(())
}

/// Frames from the client to the connection, until the client's end.
fn client_to_stack(tcp: &TcpStream, mut r: ClientIn<'_>) -> ClientEnd {
    let client = *r.get_ref();
    let mut buf = Vec::new();
    // Once the connection fails, the other half reports it and ends the bridge.
    let mut failed = false;
    loop {
        match frame::read(&mut r, &mut buf) {
            Ok(Some(frame::DATA)) if !failed => match send_all(tcp, &buf, client) {
                Ok(()) => {}
                Err(None) => failed = true,
                Err(Some(end)) => return end,
            },
            Ok(Some(frame::DATA)) => {}
            Ok(Some(frame::FIN)) => {
                let _ = tcp.shutdown(Shutdown::Write);
            }
            Ok(None) => return ClientEnd::Left,
            Ok(Some(kind)) => return ClientEnd::Broken(format!("unexpected frame type {kind}")),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return ClientEnd::Broken(e.to_string()),
            // ECONNRESET (unread bytes), a truncated frame.
            Err(_) => return ClientEnd::Abandoned,
        }
    }
}

/// Hands `data` to the connection, waiting for room while the client stays;
/// `Err(None)` if the connection failed, `Err(Some(_))` if the client left.
fn send_all(tcp: &TcpStream, mut data: &[u8], client: &UnixStream) -> Result<(), Option<ClientEnd>> {
    while !data.is_empty() {
        match (&*tcp).write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if hung_up(client) {
                    return Err(Some(ClientEnd::Abandoned));
                }
            }
            Err(_) => return Err(None),
        }
    }
    Ok(())
}

/// A `LISTEN` client's listener, and what it may hold.
#[derive(Debug)]
pub struct Listening<'a> {
    /// The stack's listener.
    pub listener: TcpListener,
    /// Connections announced and not yet attached, at most (the backlog).
    pub backlog: usize,
    /// Where accepted connections wait for `ATTACH`.
    pub pending: &'a Pending,
    /// The books each accepted connection is counted in, against `owner`.
    pub accounts: &'a Arc<Accounts>,
    /// The listening client's uid: it owns what is accepted.
    pub owner: u32,
}

/// Accepts connections for a `LISTEN` client and announces them for
/// `ATTACH`. At most `backlog` announced ones wait unattached, and only
/// while their owner is under its socket limit: beyond, connections stay
/// in the listener's own queue (itself bounded by the backlog), as they
/// stay in the kernel's accept queue while a process does not accept.
pub fn serve_listener(l: Listening<'_>, client_in: ClientIn<'_>, client: &UnixStream) -> io::Result<()> {
    let mut client_out = client;
    writeln!(client_out, "OK {}", l.listener.local_addr()?)?;
    let gone = AtomicBool::new(false);
    let mut mine = Vec::new();
    std::thread::scope(|s| {
        let spawned = helper(s, || {
            // Anything the client sends, or its leaving, ends the listen.
            until_gone(client_in);
            gone.store(true, Ordering::SeqCst);
        });
        if let Err(why) = spawned {
            let _ = writeln!(client_out, "ERR {why}");
            gone.store(true, Ordering::SeqCst);
        }
        while !gone.load(Ordering::SeqCst) {
            l.pending.waiting(&mut mine);
            let slot = match l.accounts.socket(l.owner) {
                Ok(slot) if mine.len() < l.backlog => slot,
                _ => {
                    std::thread::sleep(CLIENT_CHECK);
                    continue;
                }
            };
            match l.listener.accept_timeout(CLIENT_CHECK) {
                Ok((conn, peer)) => {
                    let id = match l.pending.insert(conn, slot) {
                        Ok(id) => id,
                        Err(e) => {
                            let _ = writeln!(client_out, "ERR accept: {}", error_text(&e));
                            break;
                        }
                    };
                    mine.push(id);
                    if writeln!(client_out, "ACCEPT {id} {peer}").is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    let _ = writeln!(client_out, "ERR accept: {e}");
                    break;
                }
            }
        }
        let _ = client.shutdown(Shutdown::Both);
    });
    drop(l.listener);
    // Connections the client never attached are reset with the listener,
    // like those still in its accept queue (RFC 9293 §3.10.4, as Linux).
    for conn in l.pending.remove_all(&mine) {
        let _ = conn.abort();
    }
    Ok(())
}

/// Carries a UDP socket over the client's Unix stream, as datagram frames.
/// On a `connected` socket, an ICMP error about a datagram sent (port
/// unreachable: ConnectionRefused) fails the next call as on Linux, and
/// ends the bridge with an error frame; so does a broken frame from the client.
pub fn bridge_udp(udp: UdpSocket, connected: bool, mut client_in: ClientIn<'_>, client: &UnixStream) -> io::Result<()> {
    let mut client_out = client;
    writeln!(client_out, "OK {}", udp.local_addr()?)?;
    udp.set_read_timeout(Some(CLIENT_CHECK))?;
    let gone = AtomicBool::new(false);
    // Why the bridge must end: a send that failed on the connected socket,
    // or a broken frame; for the receiving side to report.
    let failed: Mutex<Option<io::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        let spawned = helper(s, || {
            let mut buf = Vec::new();
            let fail = |e| *failed.lock().expect("failed") = Some(e);
            loop {
                let kind = match frame::read(&mut client_in, &mut buf) {
                    Ok(Some(kind)) => kind,
                    Ok(None) => break,
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => break fail(e),
                    Err(_) => break,
                };
                if kind != frame::DATAGRAM {
                    break fail(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected frame type {kind}"),
                    ));
                }
                let (to, data) = match frame::parse_datagram(&buf) {
                    Ok(d) => d,
                    Err(e) => break fail(e),
                };
                let sent = if connected {
                    udp.send(data)
                } else {
                    udp.send_to(data, to)
                };
                match sent {
                    Ok(_) => {}
                    Err(e) if connected => break fail(e),
                    Err(e) => log::debug!("control udp: send to {to}: {e}"),
                }
            }
            gone.store(true, Ordering::SeqCst);
        });
        if let Err(why) = spawned {
            *failed.lock().expect("failed") = Some(io::Error::other(why));
        }
        let mut buf = vec![0u8; 65536];
        loop {
            // Read before `failed`: a failure is recorded before the end it causes.
            let ended = gone.load(Ordering::SeqCst);
            if let Some(e) = failed.lock().expect("failed").take() {
                let _ = frame::write(&mut client_out, frame::ERROR, error_text(&e).as_bytes());
                break;
            }
            if ended {
                break;
            }
            match udp.recv_from(&mut buf) {
                Ok((n, SocketAddr::V4(from))) => {
                    if frame::write(&mut client_out, frame::DATAGRAM, &frame::datagram(from, &buf[..n])).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    let _ = frame::write(&mut client_out, frame::ERROR, error_text(&e).as_bytes());
                    break;
                }
            }
        }
        let _ = client.shutdown(Shutdown::Both);
    });
    Ok(())
}
