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
use super::server::error_text;
use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tunstack::net::{TcpListener, TcpStream, UdpSocket};
use tunstack::runtime::Stack;

/// How long a bridge waits on the stack before looking whether its client is still there.
const CLIENT_CHECK: Duration = Duration::from_millis(100);

/// Connections accepted for `LISTEN` clients, waiting for an `ATTACH`.
#[derive(Debug, Default)]
pub struct Pending {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
}

impl Pending {
    /// Hands accepted connection `id` to the client attaching it.
    pub fn take(&self, id: u64) -> Option<TcpStream> {
        self.conns.lock().expect("pending").remove(&id)
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
pub fn until_gone(client: &UnixStream) {
    let mut sink = [0u8; 64];
    let mut r = client;
    while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
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
    /// The client left bytes unread, sent a broken frame, or left while the
    /// stack could not yet take its data.
    Abandoned,
}

/// Carries a TCP connection over the client's Unix stream, as frames, and
/// closes it as `close(2)` would once the client is gone.
pub fn bridge_tcp(tcp: TcpStream, client_in: UnixStream, mut client_out: UnixStream) -> io::Result<()> {
    let (local, remote) = (tcp.local_addr()?, tcp.peer_addr()?);
    writeln!(client_out, "OK {local} {remote}")?;
    // A write waiting for room in the send buffer checks on the client now and then.
    tcp.set_write_timeout(Some(CLIENT_CHECK))?;
    let gone = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (tcp, gone) = (&tcp, &gone);
        s.spawn(move || {
            let end = client_to_stack(tcp, &client_in);
            gone.store(true, Ordering::SeqCst);
            match end {
                // Wakes the reader below without a FIN: closing decides between FIN and RST.
                ClientEnd::Left => {
                    let _ = tcp.shutdown(Shutdown::Read);
                }
                ClientEnd::Abandoned => {
                    let _ = tcp.abort();
                }
            }
        });
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match (&*tcp).read(&mut buf) {
                Ok(0) => {
                    if !gone.load(Ordering::SeqCst) {
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
                    if !gone.load(Ordering::SeqCst) {
                        let _ = frame::write(&mut client_out, frame::ERROR, error_text(&e).as_bytes());
                    }
                    // Ends the client's half too.
                    let _ = client_out.shutdown(Shutdown::Both);
                    break;
                }
            }
        }
    });
    // Dropping `tcp` closes it: FIN after the queued data, or RST if data arrived unread.
    Ok(())
}

/// Frames from the client to the connection, until the client's end.
fn client_to_stack(tcp: &TcpStream, client: &UnixStream) -> ClientEnd {
    let mut r = BufReader::new(client);
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
            // ECONNRESET (unread bytes), a truncated or unknown frame.
            Ok(Some(_)) | Err(_) => return ClientEnd::Abandoned,
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

/// Accepts connections for a `LISTEN` client and announces them for `ATTACH`.
pub fn serve_listener(
    l: TcpListener,
    client_in: UnixStream,
    mut client_out: UnixStream,
    pending: &Pending,
) -> io::Result<()> {
    writeln!(client_out, "OK {}", l.local_addr()?)?;
    let gone = AtomicBool::new(false);
    let mut mine = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Anything the client sends, or its leaving, ends the listen.
            until_gone(&client_in);
            gone.store(true, Ordering::SeqCst);
        });
        while !gone.load(Ordering::SeqCst) {
            match l.accept_timeout(CLIENT_CHECK) {
                Ok((conn, peer)) => {
                    let id = pending.next.fetch_add(1, Ordering::Relaxed) + 1;
                    pending.conns.lock().expect("pending").insert(id, conn);
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
        let _ = client_in.shutdown(Shutdown::Both);
    });
    drop(l);
    // Connections the client never attached are reset with the listener,
    // like those still in its accept queue (RFC 9293 §3.10.4, as Linux).
    let unattached: Vec<TcpStream> = {
        let mut conns = pending.conns.lock().expect("pending");
        mine.iter().filter_map(|id| conns.remove(id)).collect()
    };
    for conn in unattached {
        let _ = conn.abort();
    }
    Ok(())
}

/// Carries a UDP socket over the client's Unix stream, as datagram frames.
/// On a `connected` socket, an ICMP error about a datagram sent (port
/// unreachable: ConnectionRefused) fails the next call as on Linux, and
/// ends the bridge with an error frame.
pub fn bridge_udp(
    udp: UdpSocket,
    connected: bool,
    client_in: UnixStream,
    mut client_out: UnixStream,
) -> io::Result<()> {
    writeln!(client_out, "OK {}", udp.local_addr()?)?;
    udp.set_read_timeout(Some(CLIENT_CHECK))?;
    let gone = AtomicBool::new(false);
    // A send that failed on the connected socket, for the receiving side to report.
    let failed: Mutex<Option<io::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut r = io::BufReader::new(&client_in);
            let mut buf = Vec::new();
            while let Ok(Some(kind)) = frame::read(&mut r, &mut buf) {
                if kind != frame::DATAGRAM {
                    break;
                }
                match frame::parse_datagram(&buf) {
                    Ok((to, data)) => {
                        let sent = if connected {
                            udp.send(data)
                        } else {
                            udp.send_to(data, to)
                        };
                        match sent {
                            Ok(_) => {}
                            Err(e) if connected => {
                                *failed.lock().expect("failed") = Some(e);
                                break;
                            }
                            Err(e) => log::debug!("control udp: send to {to}: {e}"),
                        }
                    }
                    Err(_) => break,
                }
            }
            gone.store(true, Ordering::SeqCst);
        });
        let mut buf = vec![0u8; 65536];
        loop {
            if let Some(e) = failed.lock().expect("failed").take() {
                let _ = frame::write(&mut client_out, frame::ERROR, error_text(&e).as_bytes());
                break;
            }
            if gone.load(Ordering::SeqCst) {
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
        let _ = client_in.shutdown(Shutdown::Both);
    });
    Ok(())
}
