//! The TUN ceiling, for `scripts/bench`: how fast one process can only
//! read, or only write, packets of one size through a Linux TUN interface,
//! with no stack behind it. A stack on a TUN cannot beat these figures with
//! one read or write syscall per packet.
//!
//! ```text
//! tun_ceiling read|write [--interface tun0] [--address 10.200.0.2/24]
//!                        [--host-address 10.200.0.1/24] [--mtu 1500] [--secs 2]
//! ```
//!
//! It creates the interface with tunstack's `TunDevice`, or attaches to it
//! if it exists (the bench creates it first, with `ip tuntap`, so that it
//! can hang an nft rule on it), sets its MTU and host address, brings it
//! up and prints `tun_ceiling: owns IFNAME ...` on stderr. Then, in the
//! same loop shape as a stack's (non-blocking fd, one preallocated buffer,
//! one syscall per packet, `ppoll` only when a read finds nothing):
//!
//! - `write` writes `--mtu`-byte IPv4/UDP packets from `--address` to the
//!   host address, port 9, as fast as it can. Nothing on the host should
//!   answer them: the bench drops them at the interface's ingress (nft), so
//!   that the figure is the TUN's and not the host's UDP input and ICMP.
//! - `read` reads whatever comes, into a 64 KiB buffer; the host has to send
//!   it (the bench floods `--address` with UDP from the host side).
//!
//! Counting starts 0.2 s after the first packet (warm-up) and lasts `--secs`
//! seconds; then it prints `PACKETS BYTES SECONDS` on stdout, the packets
//! moved in all (warm-up included) on stderr, and exits.
//! `read` gives up after 30 s without a first packet.

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tunstack::device::Device;
use tunstack::device::sys;
use tunstack::device::tun::{Offload, TunDevice};
use tunstack_tests::tunflags::{self, TunFlags};

/// Time between the first packet and the start of counting.
const WARM_UP: Duration = Duration::from_millis(200);
/// How long `read` waits for the first packet.
const FIRST_PACKET_WAIT: Duration = Duration::from_secs(30);
/// Packets moved between two looks at the clock.
const CLOCK_EVERY: u64 = 32;

/// Command-line settings.
#[derive(Debug)]
struct Args {
    write: bool,
    tun: TunFlags,
    secs: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let write = match it.next().as_deref() {
        Some("read") => false,
        Some("write") => true,
        _ => return Err("usage: tun_ceiling read|write [--interface NAME] [--address CIDR] [--host-address CIDR] [--mtu N] [--secs S]".into()),
    };
    let mut tun = TunFlags::default();
    let mut secs = 2.0;
    tunflags::parse(it, &mut tun, |flag, value| match flag {
        "--secs" => {
            secs = value.parse().map_err(|e| tunflags::bad_value(flag, value, e))?;
            Ok(())
        }
        _ => Err(format!("unknown argument {flag}")),
    })?;
    let args = Args { write, tun, secs };
    if !(args.secs > 0.0 && args.secs <= 3600.0) {
        return Err("--secs wants a number of seconds in (0, 3600]".into());
    }
    Ok(args)
}

/// One IPv4/UDP packet of `len` bytes from `src` to `dst` port 9 (discard):
/// a valid header checksum, no UDP checksum (zero: allowed over IPv4).
fn udp_packet(len: usize, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; len];
    let total = u16::try_from(len).expect("an MTU fits 16 bits");
    p[0] = 0x45;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[6] = 0x40; // DF: a probe of the link, not to be fragmented
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let mut sum: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&9u16.to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p[24..26].copy_from_slice(&(total - 20).to_be_bytes());
    p
}

/// Packets and bytes moved inside the counting window, and its length.
struct Count {
    packets: u64,
    bytes: u64,
    window: Duration,
    /// Packets moved in all, warm-up and the last look at the clock included.
    total: u64,
}

/// Counts what `step` moves (`Some(bytes)` per packet, `None` when it found
/// nothing and waited) from `WARM_UP` after the first packet, for `secs`.
fn measure(secs: f64, mut step: impl FnMut(Duration) -> io::Result<Option<usize>>) -> io::Result<Count> {
    let length = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let (mut packets, mut bytes) = (0u64, 0u64);
    // (packets, bytes, when) at the start of the window, once it started.
    let mut start: Option<(u64, u64, Instant)> = None;
    let mut first: Option<Instant> = None;
    loop {
        let now_due = packets % CLOCK_EVERY == 0;
        let wait = match (first, start) {
            (None, _) => FIRST_PACKET_WAIT.saturating_sub(started.elapsed()),
            (Some(_), Some((_, _, t))) => length.saturating_sub(t.elapsed()),
            (Some(f), None) => WARM_UP.saturating_sub(f.elapsed()),
        };
        let moved = step(wait)?;
        if let Some(n) = moved {
            packets += 1;
            bytes += n as u64;
            first.get_or_insert_with(Instant::now);
        }
        if moved.is_some() && !now_due {
            continue;
        }
        let now = Instant::now();
        match (first, start) {
            (None, _) if now - started >= FIRST_PACKET_WAIT => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no packet came"));
            }
            (Some(f), None) if now - f >= WARM_UP => start = Some((packets, bytes, now)),
            (Some(_), Some((p0, b0, t0))) if now - t0 >= length => {
                return Ok(Count {
                    packets: packets - p0,
                    bytes: bytes - b0,
                    window: now - t0,
                    total: packets,
                });
            }
            _ => {}
        }
    }
}

fn run(args: &Args) -> io::Result<Count> {
    // tunstackd's own device: non-blocking, one syscall per packet, no
    // offloads (plain packets of at most the MTU, as the bench sends).
    let mut dev = TunDevice::create(&args.tun.interface, Offload::Off)?;
    dev.set_mtu(args.tun.mtu)?;
    dev.set_host_address(args.tun.host_address)?;
    dev.set_up()?;
    let name = dev.name().to_owned();
    let fd = dev.readable_fd().expect("a TUN has an fd");
    // The device takes the stack's clock, which it does not read.
    let now = tunstack::time::Instant::ZERO;
    eprintln!(
        "tun_ceiling: owns {name} (host {}), MTU {}, {} for {} s",
        args.tun.host_address,
        args.tun.mtu,
        if args.write { "writing" } else { "reading" },
        args.secs
    );
    let mut ready = Vec::new();
    if args.write {
        let packet = udp_packet(
            args.tun.mtu,
            args.tun.address.addr().octets(),
            args.tun.host_address.addr().octets(),
        );
        measure(args.secs, |_| match dev.send(now, &packet) {
            Ok(()) => Ok(Some(packet.len())),
            // A TUN write does not block; should one ever, try again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        })
    } else {
        let mut buf = vec![0u8; 65536];
        measure(args.secs, |wait| match dev.recv(now, &mut buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sys::wait_readable(&[fd], Some(wait), &mut ready)?;
                Ok(None)
            }
            Err(e) => Err(e),
        })
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tun_ceiling: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(c) => {
            println!("{} {} {:.6}", c.packets, c.bytes, c.window.as_secs_f64());
            eprintln!("tun_ceiling: {} packets in all", c.total);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tun_ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}
