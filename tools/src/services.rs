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

/// A source of bytes, for downloads and benchmarks: it starts sending a
/// chargen-like pattern (RFC 864 lines) at once and forever, unless the
/// client sends a line with a number N, after which it stops once N bytes
/// in all have been sent, and closes.
pub fn tcp_source(stack: &Stack, port: u16) -> io::Result<JoinHandle<()>> {
    tcp_service(stack, "source", port, |s| {
        s.set_nonblocking(false)?;
        let pattern: Vec<u8> = chargen_pattern();
        let mut sent: u64 = 0;
        let mut limit: Option<u64> = None;
        let mut request = Vec::new();
        let mut reader = &s;
        let mut writer = &s;
        loop {
            if limit.is_none() {
                // Look for a request without blocking the stream of data.
                s.set_nonblocking(true)?;
                let mut b = [0u8; 64];
                match reader.read(&mut b) {
                    Ok(0) => {}
                    Ok(n) => {
                        request.extend_from_slice(&b[..n]);
                        if let Some(pos) = request.iter().position(|c| *c == b'\n') {
                            let text = String::from_utf8_lossy(&request[..pos]).trim().to_owned();
                            limit = text.parse::<u64>().ok().or(Some(u64::MAX));
                        } else if request.len() > 64 {
                            limit = Some(u64::MAX);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                s.set_nonblocking(false)?;
            }
            let remaining = limit.map_or(u64::MAX, |l| l.saturating_sub(sent));
            if remaining == 0 {
                return s.shutdown(std::net::Shutdown::Write);
            }
            let offset = (sent % pattern.len() as u64) as usize;
            let chunk = &pattern[offset..];
            let len = chunk
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX))
                .min(32 * 1024);
            let n = writer.write(&chunk[..len])?;
            sent += n as u64;
        }
    })
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
