//! Ping and traceroute run by the daemon on the stack, streaming results
//! line by line to a control client (which formats them like iputils).

use super::bridge::ClientIn;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tunstack::net::{IcmpSocket, UdpSocket};
use tunstack::ping::IcmpEvent;
use tunstack::runtime::Stack;

/// What a ping run asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PingSpec {
    /// Destination.
    pub dst: Ipv4Addr,
    /// Echo requests to send; 0: until the client goes away.
    pub count: u32,
    /// Gap between requests.
    pub interval: Duration,
    /// Bytes of data in each request (56 as iputils).
    pub size: usize,
    /// IP TTL of the requests.
    pub ttl: u8,
}

/// Runs `spec`, writing `REPLY`/`ERROR` lines and a final `DONE` line.
/// Stops early when the client goes away.
pub fn ping(stack: &Stack, client_in: ClientIn<'_>, client: &UnixStream, spec: PingSpec) -> io::Result<()> {
    let sock = IcmpSocket::bind(stack)?;
    let mut out = client;
    writeln!(out, "OK {}", sock.ident())?;
    let gone = AtomicBool::new(false);
    std::thread::scope(|s| {
        let spawned = super::bridge::helper(s, || {
            // The client sends nothing more: its end of stream means it left.
            super::bridge::until_gone(client_in);
            gone.store(true, Ordering::SeqCst);
        });
        let r = match spawned {
            Ok(()) => ping_loop(&sock, &mut out, spec, &gone),
            Err(why) => writeln!(out, "ERR {why}"),
        };
        let _ = client.shutdown(std::net::Shutdown::Both);
        r
    })
}

fn ping_loop(sock: &IcmpSocket, out: &mut &UnixStream, spec: PingSpec, gone: &AtomicBool) -> io::Result<()> {
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut next_send = Instant::now();
    // Send times by sequence number: a reply matches the latest request with its number, once.
    let mut sent_at: Vec<Option<tunstack::Instant>> = vec![None; 1 << 16];
    let mut answered: u64 = 0;
    let mut max_rtt = Duration::ZERO;
    let data: Vec<u8> = (0..spec.size).map(|i| (i % 256) as u8).collect();
    loop {
        if gone.load(Ordering::SeqCst) {
            return Ok(());
        }
        let now = Instant::now();
        let all_sent = spec.count != 0 && sent >= u64::from(spec.count);
        if !all_sent && now >= next_send {
            let seq = ((sent + 1) % (1 << 16)) as u16; // iputils counts from 1
            sent_at[usize::from(seq)] = Some(sock.now());
            if let Err(e) = sock.send_echo(spec.dst, seq, &data, spec.ttl) {
                writeln!(out, "SENDERR seq={seq} error={}", super::escape(&e.to_string()))?;
            }
            sent += 1;
            next_send = now + spec.interval;
            continue;
        }
        // After the last request, wait for stragglers: twice the slowest reply, at least a second.
        let linger = (max_rtt * 2).max(Duration::from_secs(1));
        let deadline = if all_sent {
            next_send - spec.interval + linger
        } else {
            next_send
        };
        if all_sent && (answered >= sent || now >= deadline) {
            break;
        }
        // Wake at least every 200 ms to notice a client that left.
        let wait = deadline
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), Duration::from_millis(200));
        match sock.recv(Some(wait)) {
            Ok(IcmpEvent::Reply {
                from,
                seq,
                ttl,
                data,
                at,
            }) => {
                let Some(t0) = sent_at[usize::from(seq)].take() else {
                    continue;
                }; // unknown or duplicate
                let rtt = at.saturating_duration_since(t0);
                max_rtt = max_rtt.max(rtt);
                answered += 1;
                writeln!(
                    out,
                    "REPLY seq={seq} from={from} ttl={ttl} bytes={} time_us={}",
                    data.len() + 8,
                    rtt.as_micros()
                )?;
            }
            Ok(IcmpEvent::Error {
                from, kind, code, seq, ..
            }) => {
                writeln!(out, "ERROR seq={seq} from={from} type={kind} code={code}")?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    writeln!(
        out,
        "DONE transmitted={sent} elapsed_ms={}",
        start.elapsed().as_millis()
    )
}

/// What a traceroute run asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceSpec {
    /// Destination.
    pub dst: Ipv4Addr,
    /// Largest TTL tried.
    pub max_hops: u8,
    /// Probes per hop.
    pub probes: u8,
    /// First destination port (each probe uses the next one).
    pub port: u16,
    /// How long to wait for each probe's answer.
    pub wait: Duration,
}

/// Sends UDP probes with rising TTL and reports who answers each:
/// `HOP ttl= probe= from= time_us= type= code=` or `HOP ttl= probe= timeout`,
/// then `DONE`.
pub fn traceroute(stack: &Stack, client: &UnixStream, spec: TraceSpec) -> io::Result<()> {
    let mut out = client;
    let sock = UdpSocket::bind(stack, "0.0.0.0:0")?;
    sock.set_recv_errors(true)?;
    let SocketAddr::V4(local) = sock.local_addr()? else {
        unreachable!("IPv4 only")
    };
    writeln!(out, "OK {local}")?;
    let payload = [0u8; 32]; // 60-byte probes, as traceroute's default
    let mut port = spec.port;
    for ttl in 1..=spec.max_hops {
        let mut reached = false;
        for probe in 0..spec.probes {
            let dst = SocketAddrV4::new(spec.dst, port);
            port = port.wrapping_add(1);
            let sent = Instant::now();
            let t0 = stack.now();
            sock.send_to_with_ttl(&payload, dst, ttl)?;
            let deadline = sent + spec.wait;
            let answer = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break None;
                }
                match sock.recv_error(Some(left)) {
                    Ok(e) if e.dst == dst => break Some(e),
                    Ok(_) => {} // an answer to an earlier probe, too late
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                    Err(e) => return Err(e),
                }
            };
            match answer {
                Some(e) => {
                    reached |= e.kind == 3;
                    writeln!(
                        out,
                        "HOP ttl={ttl} probe={probe} from={} time_us={} type={} code={}",
                        e.from,
                        e.at.saturating_duration_since(t0).as_micros(),
                        e.kind,
                        e.code
                    )?;
                }
                None => writeln!(out, "HOP ttl={ttl} probe={probe} timeout")?,
            }
        }
        if reached {
            break;
        }
    }
    writeln!(out, "DONE")
}
