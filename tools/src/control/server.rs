//! The daemon side of the control socket.

use super::{MAX_REQUEST, escape, frame, probe};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tunstack::Stats;
use tunstack::device::impair::ImpairCounts;
use tunstack::net::{TcpListener, TcpStream, UdpSocket};
use tunstack::runtime::Stack;
use tunstack::tcp::{State, TcpInfo};

/// Where and for whom the control socket is made.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// The socket's path.
    pub path: PathBuf,
    /// A group whose members may use the socket too (mode 0660 instead of 0600).
    pub group: Option<String>,
    /// The interface name, for `IFCONFIG` and `ROUTES`.
    pub ifname: String,
}

/// Connections accepted for `LISTEN` clients, waiting for an `ATTACH`.
#[derive(Default)]
struct Pending {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
}

/// Binds the control socket and serves it on a thread until the process ends.
pub fn start(stack: &Stack, cfg: ControlConfig) -> io::Result<JoinHandle<()>> {
    let listener = bind(&cfg)?;
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
    })
}

/// Creates the socket file with the right mode (and group).
fn bind(cfg: &ControlConfig) -> io::Result<UnixListener> {
    let path = &cfg.path;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use: is another tunstackd running?", path.display()),
            ));
        }
        std::fs::remove_file(path)?; // left behind by a daemon that died
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    let mode = if let Some(group) = &cfg.group {
        set_group(path, group)?;
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Gives `path` to group `name`.
fn set_group(path: &Path, name: &str) -> io::Result<()> {
    let groups = std::fs::read_to_string("/etc/group")?;
    let gid = groups
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(':');
            let n = parts.next()?;
            let gid = parts.nth(1)?.parse::<u32>().ok()?;
            (n == name).then_some(gid)
        })
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no group named {name:?}")))?;
    std::os::unix::fs::chown(path, None, Some(gid))
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
                Ok(remote) => match TcpStream::connect(stack, remote) {
                    Err(e) => Err(format!("connect {remote}: {e}")),
                    Ok(tcp) => {
                        tcp.set_owner(who);
                        return bridge_tcp(tcp, reader.into_inner(), out);
                    }
                },
            },
            "ATTACH" => {
                let id = words.next().and_then(|w| w.parse::<u64>().ok());
                match id.and_then(|id| pending.conns.lock().expect("pending").remove(&id)) {
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
                            Err(e) => Err(format!("listen on {port}: {e}")),
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
                        Err(e) => Err(format!("bind {local}: {e}")),
                        Ok(udp) => match peer.map(|p| udp.connect(p).map_err(|e| format!("connect {p}: {e}"))) {
                            Some(Err(e)) => Err(e),
                            Some(Ok(())) | None => {
                                udp.set_owner(who);
                                return bridge_udp(udp, peer.is_some(), reader.into_inner(), out);
                            }
                        },
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
    let mut lines: Vec<String> = tcp
        .iter()
        .map(|t| {
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
                return format!("{common} sendq=0 owner={} backlog={}", owner(&t.owner), t.send_queue);
            }
            format!(
                "{common} sendq={} owner={} rtt_us={} rto_us={} cwnd={} ssthresh={} mss={} retrans={} bytes_in={} bytes_out={}",
                t.send_queue,
                owner(&t.owner),
                t.srtt.map_or("-".into(), |d| d.as_micros().to_string()),
                t.rto.as_micros(),
                t.cwnd,
                ssthresh(t),
                t.mss,
                t.retransmits,
                t.bytes_in,
                t.bytes_out
            )
        })
        .collect();
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
    let (stats, tcp, udp) = stack.with_interface(|i| {
        let udp = i.udp_layer().sockets().count();
        (i.stats().clone(), i.tcp_layer().sockets(), udp)
    });
    counters_from(&stats, &stack.impairment().unwrap_or_default(), &tcp, udp)
}

/// The counters, in order: the stack's (`Stats`), the impairment's each way
/// (`impair_in_*`, `impair_out_*`; zeros without impairment), and a census
/// of the sockets (`sockets_tcp`, `sockets_udp`, `sockets_tcp_<state>`).
pub fn counters_from(stats: &Stats, impairment: &ImpairCounts, tcp: &[TcpInfo], udp: usize) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = stats.iter().map(|(k, v)| (k.to_owned(), v)).collect();
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
fn error_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .unwrap_or(&text)
            .to_owned(),
        None => text,
    }
}

/// Carries a TCP connection over the client's Unix stream, as frames.
fn bridge_tcp(tcp: TcpStream, client_in: UnixStream, mut client_out: UnixStream) -> io::Result<()> {
    let (local, remote) = (tcp.local_addr()?, tcp.peer_addr()?);
    writeln!(client_out, "OK {local} {remote}")?;
    std::thread::scope(|s| {
        let tcp = &tcp;
        // Client to stack.
        s.spawn(move || {
            let mut r = io::BufReader::new(client_in);
            let mut buf = Vec::new();
            loop {
                match frame::read(&mut r, &mut buf) {
                    Ok(Some(frame::DATA)) => {
                        if (&*tcp).write_all(&buf).is_err() {
                            break;
                        }
                    }
                    Ok(Some(frame::FIN)) => {
                        let _ = tcp.shutdown(Shutdown::Write);
                    }
                    Ok(Some(_)) | Ok(None) | Err(_) => break,
                }
            }
            // The client is gone (or broke the protocol): its socket goes too.
            let _ = tcp.shutdown(Shutdown::Both);
        });
        // Stack to client.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match (&*tcp).read(&mut buf) {
                Ok(0) => {
                    let _ = frame::write(&mut client_out, frame::FIN, b"");
                    break;
                }
                Ok(n) => {
                    if frame::write(&mut client_out, frame::DATA, &buf[..n]).is_err() {
                        let _ = tcp.shutdown(Shutdown::Both);
                        break;
                    }
                }
                Err(e) => {
                    let _ = frame::write(&mut client_out, frame::ERROR, error_text(&e).as_bytes());
                    let _ = client_out.shutdown(Shutdown::Both);
                    break;
                }
            }
        }
    });
    Ok(())
}

/// Accepts connections for a `LISTEN` client and announces them for `ATTACH`.
fn serve_listener(
    l: TcpListener,
    client_in: UnixStream,
    mut client_out: UnixStream,
    pending: &Pending,
) -> io::Result<()> {
    writeln!(client_out, "OK {}", l.local_addr()?)?;
    let gone = AtomicBool::new(false);
    let mine: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            // Anything the client sends, or its leaving, ends the listen.
            let mut sink = [0u8; 64];
            let mut r = &client_in;
            while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
            gone.store(true, Ordering::SeqCst);
        });
        while !gone.load(Ordering::SeqCst) {
            match l.accept_timeout(Duration::from_millis(200)) {
                Ok((conn, peer)) => {
                    let id = pending.next.fetch_add(1, Ordering::Relaxed) + 1;
                    pending.conns.lock().expect("pending").insert(id, conn);
                    mine.lock().expect("mine").push(id);
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
    // Connections the client never attached close with the listener.
    let mut conns = pending.conns.lock().expect("pending");
    for id in mine.into_inner().expect("mine") {
        conns.remove(&id);
    }
    Ok(())
}

/// Carries a UDP socket over the client's Unix stream, as datagram frames.
/// On a `connected` socket, an ICMP error about a datagram sent (port
/// unreachable: ConnectionRefused) fails the next call as on Linux, and
/// ends the bridge with an error frame.
fn bridge_udp(udp: UdpSocket, connected: bool, client_in: UnixStream, mut client_out: UnixStream) -> io::Result<()> {
    writeln!(client_out, "OK {}", udp.local_addr()?)?;
    udp.set_read_timeout(Some(Duration::from_millis(200)))?;
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
