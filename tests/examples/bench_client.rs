//! Native host-side clients for `scripts/bench`'s short-connection and
//! latency figures, run inside the bench's host namespace.
//!
//! ```text
//! bench_client connrate HOST PORT COUNT DEADLINE [CLIENTS]
//! bench_client rr HOST PORT COUNT DEADLINE
//! ```
//!
//! The same protocol and output as `scripts/bench-client.py`'s modes of the
//! same names: `connrate` makes COUNT connect + 1-byte echo + close in all,
//! shared by CLIENTS threads that start together, and prints "COUNT
//! SECONDS"; `rr` times COUNT 1-byte ping-pongs on one TCP_NODELAY
//! connection after 100 unmeasured ones and prints "COUNT SECONDS P50_US
//! P99_US" (nearest rank). In Python, a connection cost the client more CPU
//! than it cost any server under test, so with 8 clients on 2 cores the
//! figure measured the client; here the client's cost is the kernel's.
//!
//! On any error, or when DEADLINE seconds have passed, it says why on
//! stderr and exits 1. Every socket operation has a 5 s timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::exit;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const OP_TIMEOUT: Duration = Duration::from_secs(5);

fn fail(msg: &str) -> ! {
    eprintln!("bench_client: {msg}");
    exit(1)
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, OP_TIMEOUT)?;
    s.set_read_timeout(Some(OP_TIMEOUT))?;
    s.set_write_timeout(Some(OP_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn ping_pong(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(b"x")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    if b != *b"x" {
        return Err(std::io::Error::other(
            "echo answered something other than the byte sent",
        ));
    }
    Ok(())
}

/// `count` connect + echo + close, or an error once `end` has passed.
fn connrate_loop(addr: SocketAddr, count: usize, end: Instant) -> Result<(), String> {
    for i in 0..count {
        if Instant::now() > end {
            return Err(format!("connrate: deadline passed after {i} connections"));
        }
        let mut s = connect(addr).map_err(|e| format!("connrate: connection {i}: connect: {e}"))?;
        ping_pong(&mut s).map_err(|e| format!("connrate: connection {i}: {e}"))?;
        // Dropping closes: the host closes first, so TIME-WAIT stays here.
    }
    Ok(())
}

fn connrate(addr: SocketAddr, count: usize, deadline: Duration, clients: usize) -> f64 {
    let go = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|k| {
            let share = count / clients + usize::from(k < count % clients);
            let go = Arc::clone(&go);
            std::thread::spawn(move || {
                go.wait();
                connrate_loop(addr, share, Instant::now() + deadline)
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    let errors: Vec<String> = threads
        .into_iter()
        .filter_map(|t| {
            t.join()
                .unwrap_or_else(|_| Err("a client thread panicked".into()))
                .err()
        })
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(first) = errors.first() {
        fail(&format!(
            "{} of {clients} clients failed; the first: {first}",
            errors.len()
        ));
    }
    elapsed
}

/// Nearest-rank percentile `p` (0..=100] of sorted values.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn rr(addr: SocketAddr, count: usize, deadline: Duration) -> (f64, Vec<u64>) {
    let mut s = connect(addr).unwrap_or_else(|e| fail(&format!("rr: connect: {e}")));
    let mut times = Vec::with_capacity(count);
    let run = |s: &mut TcpStream, times: &mut Vec<u64>| -> std::io::Result<f64> {
        for _ in 0..100 {
            ping_pong(s)?;
        }
        let start = Instant::now();
        for i in 0..count {
            let t0 = Instant::now();
            ping_pong(s)?;
            times.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
            if i % 256 == 0 && start.elapsed() > deadline {
                fail(&format!(
                    "rr: deadline of {} s passed after {i} round trips",
                    deadline.as_secs_f64()
                ));
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        // A clean close: half-close, then wait for the echo service's FIN.
        s.shutdown(std::net::Shutdown::Write)?;
        let mut sink = [0u8; 4096];
        while s.read(&mut sink)? > 0 {}
        Ok(elapsed)
    };
    let elapsed = run(&mut s, &mut times).unwrap_or_else(|e| fail(&format!("rr: {e}")));
    times.sort_unstable();
    (elapsed, times)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let usage = "usage: bench_client connrate HOST PORT COUNT DEADLINE [CLIENTS] | rr HOST PORT COUNT DEADLINE";
    let mode = argv.get(1).map(String::as_str);
    if !matches!((mode, argv.len()), (Some("connrate"), 6 | 7) | (Some("rr"), 6)) {
        fail(usage);
    }
    let addr: SocketAddr = format!("{}:{}", argv[2], argv[3])
        .parse()
        .unwrap_or_else(|_| fail(usage));
    let count: usize = argv[4].parse().ok().filter(|&n| n > 0).unwrap_or_else(|| fail(usage));
    let deadline = argv[5]
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or_else(|| fail(usage));
    if mode == Some("connrate") {
        let clients: usize = argv
            .get(6)
            .map_or(Some(1), |c| c.parse().ok())
            .unwrap_or_else(|| fail(usage));
        if clients == 0 || clients > count {
            fail(&format!("connrate: CLIENTS wants 1..=COUNT, not {clients}"));
        }
        println!("{count} {:.6}", connrate(addr, count, deadline, clients));
        return;
    }
    let (elapsed, times) = rr(addr, count, deadline);
    let us = |p| percentile(&times, p) as f64 / 1000.0;
    println!("{count} {elapsed:.6} {:.1} {:.1}", us(50), us(99));
}
