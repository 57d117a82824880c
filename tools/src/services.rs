//! Built-in services the daemon runs on its own stack.

use std::io;
use std::net::Ipv4Addr;
use std::thread::JoinHandle;
use tunstack::net::UdpSocket;
use tunstack::runtime::Stack;

/// Source ports of services that answer anything (echo, daytime, qotd,
/// chargen, time): echoing to them could bounce datagrams forever between
/// two such services, so their datagrams are not answered.
const REFLECTING_PORTS: [u16; 5] = [7, 13, 17, 19, 37];

/// UDP echo (RFC 862) on `port`: every datagram goes back to its sender.
/// Returns once the socket is bound; the service runs until the stack stops.
pub fn udp_echo(stack: &Stack, port: u16) -> io::Result<JoinHandle<()>> {
    let sock = UdpSocket::bind(stack, (Ipv4Addr::UNSPECIFIED, port))?;
    sock.set_owner("echo");
    log::info!("udp echo listening on {}", sock.local_addr()?);
    std::thread::Builder::new()
        .name(format!("udp-echo-{port}"))
        .spawn(move || {
            // Large enough for any UDP datagram over IPv4.
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv_msg(&mut buf) {
                    Ok(m) => {
                        if REFLECTING_PORTS.contains(&m.from.port()) {
                            log::debug!("udp echo: not answering {} (a reflecting service port)", m.from);
                            continue;
                        }
                        if let Err(e) = sock.send_to(&buf[..m.len], m.from) {
                            log::debug!("udp echo: reply to {} failed: {e}", m.from);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NetworkDown => break,
                    Err(e) => log::debug!("udp echo: {e}"),
                }
            }
        })
}

use std::io::{Read, Write};
use tunstack::net::{TcpListener, TcpStream};

/// Stack size of per-connection service threads: they hold a 64 KiB buffer at most.
const CONN_STACK: usize = 256 * 1024;

/// Accepts connections on `port` and runs `serve` on each in its own thread.
fn tcp_service(
    stack: &Stack,
    name: &'static str,
    port: u16,
    serve: fn(TcpStream) -> io::Result<()>,
) -> io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(stack, (Ipv4Addr::UNSPECIFIED, port))?;
    listener.set_owner(name);
    log::info!("tcp {name} listening on {}", listener.local_addr()?);
    std::thread::Builder::new()
        .name(format!("tcp-{name}-{port}"))
        .spawn(move || {
            loop {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        let spawned = std::thread::Builder::new()
                            .name(format!("{name} {peer}"))
                            .stack_size(CONN_STACK)
                            .spawn(move || {
                                if let Err(e) = serve(stream) {
                                    log::debug!("tcp {name}: {peer}: {e}");
                                }
                            });
                        if let Err(e) = spawned {
                            log::warn!("tcp {name}: no thread for {peer}: {e}");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NetworkDown => break,
                    Err(e) => log::debug!("tcp {name}: accept: {e}"),
                }
            }
        })
}

/// TCP echo (RFC 862): everything read is written back; the peer's FIN is
/// answered with ours once all of it went back.
pub fn tcp_echo(stack: &Stack, port: u16) -> io::Result<JoinHandle<()>> {
    tcp_service(stack, "echo", port, |mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return s.shutdown(std::net::Shutdown::Write);
            }
            s.write_all(&buf[..n])?;
        }
    })
}

/// TCP discard (RFC 863): everything read is thrown away.
pub fn tcp_discard(stack: &Stack, port: u16) -> io::Result<JoinHandle<()>> {
    tcp_service(stack, "discard", port, |mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        while s.read(&mut buf)? > 0 {}
        s.shutdown(std::net::Shutdown::Write)
    })
}

/// A source of bytes, for downloads and benchmarks. The client sends one
/// line: a number N gets N bytes of a chargen-like pattern (RFC 864 lines)
/// and then the server closes; an empty line, or closing its side without
/// a line, gets an endless stream (until the client goes away).
pub fn tcp_source(stack: &Stack, port: u16) -> io::Result<JoinHandle<()>> {
    tcp_service(stack, "source", port, |s| {
        let limit = read_request(&s)?;
        let pattern = chargen_pattern();
        let mut sent: u64 = 0;
        let mut writer = &s;
        while sent < limit {
            let offset = (sent % pattern.len() as u64) as usize;
            let chunk = &pattern[offset..];
            let len = chunk.len().min(usize::try_from(limit - sent).unwrap_or(usize::MAX));
            sent += writer.write(&chunk[..len])? as u64;
        }
        s.shutdown(std::net::Shutdown::Write)
    })
}

/// Reads the source service's request line: the byte count, or "endless".
fn read_request(s: &TcpStream) -> io::Result<u64> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let mut reader = s;
    while line.len() < 32 {
        if reader.read(&mut b)? == 0 || b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    let text = String::from_utf8_lossy(&line);
    Ok(text.trim().parse::<u64>().unwrap_or(u64::MAX))
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
