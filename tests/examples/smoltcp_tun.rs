//! smoltcp on a TUN interface, serving what tunstackd's built-in services
//! serve, so that `scripts/bench` can measure both stacks the same way from
//! the host: TCP echo (7), discard (9) and sized source (1919: the client sends a
//! line with a byte count, gets that many bytes of chargen lines, then FIN;
//! no count, or EOF first, means an endless stream), and ICMP echo.
//!
//! smoltcp is set up at its best for bulk and short connections: MiB-sized
//! socket buffers (so a large window scale), CUBIC, timestamps and SACK as
//! Linux offers them, a pool of listening sockets per port (smoltcp has no
//! backlog: one socket takes one connection), one preallocated buffer per
//! direction in the device, and a `ppoll` on the TUN fd for exactly as long
//! as smoltcp's `poll_delay` says.
//!
//! ```text
//! smoltcp_tun [--interface tun0] [--address 10.200.0.2/24]
//!             [--host-address 10.200.0.1/24] [--mtu 1500]
//!             [--buffer BYTES] [--backlog N]
//! ```
//!
//! It runs until killed. Once the interface is up it prints
//! `smoltcp_tun: owns IFNAME ...` on stderr. A benchmark comparator only:
//! smoltcp stays a dev-dependency of this crate.

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use std::io;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tunstack::device::sys;
use tunstack_tests::tunflags::{self, TunFlags};

/// The services, by port, in the order of [`Service`].
const PORTS: [u16; 3] = [7, 9, 1919];

/// Command-line settings.
#[derive(Debug)]
struct Args {
    tun: TunFlags,
    buffer: usize,
    backlog: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut tun = TunFlags::default();
    let (mut buffer, mut backlog) = (4usize << 20, 16usize);
    tunflags::parse(std::env::args().skip(1), &mut tun, |flag, value| {
        let number = || value.parse().map_err(|e| tunflags::bad_value(flag, value, e));
        match flag {
            "--buffer" => buffer = number()?,
            "--backlog" => backlog = number()?,
            _ => return Err(format!("unknown argument {flag}")),
        }
        Ok(())
    })?;
    let args = Args { tun, buffer, backlog };
    if args.backlog == 0 || !(1024..=1 << 30).contains(&args.buffer) {
        return Err("--backlog wants >= 1, --buffer 1024..=2^30".into());
    }
    Ok(args)
}

/// The TUN fd with one preallocated packet buffer per direction: one
/// `read` or `write` per packet, no allocation per packet.
struct TunPhy {
    iface: tun_tap::Iface,
    mtu: usize,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

/// A packet read into [`TunPhy`]'s receive buffer.
struct RxToken<'a>(&'a [u8]);

/// Room in [`TunPhy`]'s send buffer; consuming it writes the packet.
struct TxToken<'a> {
    iface: &'a tun_tap::Iface,
    buf: &'a mut [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let packet = &mut self.buf[..len];
        let r = f(packet);
        // A full TUN queue (EAGAIN) drops the packet, as a full NIC queue
        // would; TCP repairs it.
        let _ = self.iface.send(packet);
        r
    }
}

impl phy::Device for TunPhy {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: SmolInstant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        match self.iface.recv(&mut self.rx) {
            Ok(n) => Some((
                RxToken(&self.rx[..n]),
                TxToken {
                    iface: &self.iface,
                    buf: &mut self.tx,
                },
            )),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("reading the TUN: {e}"),
        }
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<TxToken<'_>> {
        Some(TxToken {
            iface: &self.iface,
            buf: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// What a connection serves, by the port it was accepted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Echo,
    Discard,
    Source,
}

/// One socket of the pool: listening, or serving one connection.
struct Conn {
    handle: SocketHandle,
    service: Service,
    /// Source: the request line read so far, until it is complete.
    request: Vec<u8>,
    /// Source: bytes still to send, once the request is complete.
    remaining: Option<u64>,
    /// Bytes sent so far (source: the offset into the chargen pattern).
    sent: u64,
    closing: bool,
}

/// Milliseconds since start-up, for TCP timestamps (smoltcp takes a plain fn).
fn tsval() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u32
}

fn listener(args: &Args, service: Service) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; args.buffer]),
        tcp::SocketBuffer::new(vec![0; args.buffer]),
    );
    s.set_tsval_generator(Some(tsval));
    // Echo answers each request at once. Bulk needs it off too: at MTU
    // 65535 one segment fills the host's early window, and with Nagle on
    // smoltcp then waits out the host's delayed ACK (about 3 MB/s).
    s.set_nagle_enabled(false);
    relisten(&mut s, service);
    s
}

/// Makes a closed (or new) socket listen again, with a fresh CUBIC state:
/// a pool socket is reused rather than its MiB buffers freed and allocated
/// again for every connection.
fn relisten(s: &mut tcp::Socket, service: Service) {
    s.set_congestion_control(tcp::CongestionControl::Cubic);
    s.listen(PORTS[service as usize]).expect("a closed socket listens");
}

impl Conn {
    fn new(handle: SocketHandle, service: Service) -> Conn {
        Conn {
            handle,
            service,
            request: Vec::new(),
            remaining: None,
            sent: 0,
            closing: false,
        }
    }
}

/// 95 lines of chargen (RFC 864), twice, so that any offset into the first
/// copy has a whole period after it (the same bytes tunstackd's source sends).
fn chargen_pattern() -> Vec<u8> {
    let line = |first: usize| (0..72).map(move |i| b' ' + ((first + i) % 95) as u8).chain(*b"\r\n");
    let period: Vec<u8> = (0..95).flat_map(line).collect();
    period.repeat(2)
}

/// Moves what one connection can move now; returns false once it is done.
fn serve(c: &mut Conn, s: &mut tcp::Socket, scratch: &mut [u8], pattern: &[u8]) -> bool {
    match s.state() {
        tcp::State::Closed | tcp::State::TimeWait => return false,
        tcp::State::Listen | tcp::State::SynReceived => return true,
        _ => {}
    }
    let mut done_sending = false;
    match c.service {
        Service::Echo => {
            while s.can_recv() {
                let room = s.send_capacity() - s.send_queue();
                if room == 0 {
                    break;
                }
                let want = room.min(scratch.len());
                let n = s.recv_slice(&mut scratch[..want]).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let _ = s.send_slice(&scratch[..n]);
            }
            done_sending = !s.may_recv() && s.recv_queue() == 0;
        }
        Service::Discard => {
            while s.can_recv() {
                let _ = s.recv(|b| (b.len(), ()));
            }
            done_sending = !s.may_recv();
        }
        Service::Source => {
            if c.remaining.is_none() {
                while c.request.len() < 32 && s.can_recv() {
                    let mut b = [0u8; 1];
                    if s.recv_slice(&mut b) != Ok(1) {
                        break;
                    }
                    if b[0] == b'\n' {
                        c.request.push(b'\n');
                        break;
                    }
                    c.request.push(b[0]);
                }
                if c.request.last() == Some(&b'\n') || c.request.len() >= 32 || !s.may_recv() {
                    let text = String::from_utf8_lossy(&c.request);
                    c.remaining = Some(text.trim().parse().unwrap_or(u64::MAX));
                }
            } else {
                // Whatever else the client sends is read and dropped.
                while s.can_recv() {
                    let _ = s.recv(|b| (b.len(), ()));
                }
            }
            if let Some(remaining) = c.remaining.as_mut() {
                let period = pattern.len() / 2;
                while *remaining > 0 && s.can_send() {
                    let sent = &mut c.sent;
                    let n = s
                        .send(|buf| {
                            let len = buf.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                            let mut at = 0;
                            while at < len {
                                let off = (*sent as usize + at) % period;
                                let k = (len - at).min(pattern.len() - off);
                                buf[at..at + k].copy_from_slice(&pattern[off..off + k]);
                                at += k;
                            }
                            (len, len)
                        })
                        .unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    *remaining -= n as u64;
                    c.sent += n as u64;
                }
                done_sending = *remaining == 0;
            }
        }
    }
    // FIN goes out once everything sent is acknowledged, not as soon as it
    // is queued: in LAST-ACK, smoltcp 0.14 takes the host's window update
    // after a zero window for a duplicate ACK (it answers with a challenge
    // ACK and keeps the zero window), and the transfer then waits for its
    // 1 s zero-window probe. Closing early put the last 4 MiB of every
    // download (all of one that fits) in LAST-ACK: at MTU 65535, where the
    // host's window closes often, nc got 13 MB/s of 200 MB. Waiting costs
    // one round trip at the end.
    if done_sending && !c.closing && s.send_queue() == 0 {
        s.close();
        c.closing = true;
    }
    true
}

fn run(args: &Args) -> io::Result<()> {
    let iface = tun_tap::Iface::without_packet_info(&args.tun.interface, tun_tap::Mode::Tun)?;
    iface.set_non_blocking()?;
    let name = iface.name().to_owned();
    sys::set_mtu(&name, args.tun.mtu)?;
    sys::set_ipv4(&name, args.tun.host_address)?;
    sys::set_up(&name)?;
    let fd = iface.as_raw_fd();
    let mut dev = TunPhy {
        iface,
        mtu: args.tun.mtu,
        rx: vec![0; args.tun.mtu],
        tx: vec![0; args.tun.mtu],
    };

    let epoch = Instant::now();
    let now = || SmolInstant::from_micros(epoch.elapsed().as_micros() as i64);
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = u64::from(std::process::id()) ^ epoch.elapsed().as_nanos() as u64;
    let mut smol = Interface::new(config, &mut dev, now());
    let addr = args.tun.address.addr();
    smol.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::Ipv4(addr), args.tun.address.prefix_len()))
            .expect("room for one address");
    });
    let gw: Ipv4Address = args.tun.host_address.addr();
    smol.routes_mut()
        .add_default_ipv4_route(gw)
        .expect("room for one route");

    let mut sockets = SocketSet::new(vec![]);
    let mut conns: Vec<Conn> = Vec::new();
    let services = [Service::Echo, Service::Discard, Service::Source];
    let mut scratch = vec![0u8; 64 * 1024];
    let pattern = chargen_pattern();
    let mut ready = Vec::new();
    eprintln!(
        "smoltcp_tun: owns {name} as {} (host {}), MTU {}, buffers {} B, backlog {} on ports {PORTS:?}",
        args.tun.address, args.tun.host_address, args.tun.mtu, args.buffer, args.backlog
    );

    loop {
        let t = now();
        smol.poll(t, &mut dev, &mut sockets);
        let mut listening = [0usize; 3];
        conns.retain_mut(|c| {
            let s = sockets.get_mut::<tcp::Socket>(c.handle);
            let pool = &mut listening[c.service as usize];
            if s.state() == tcp::State::Listen {
                *pool += 1;
            } else if !serve(c, s, &mut scratch, &pattern) {
                // Done: back to the pool, unless the pool is full.
                if *pool >= args.backlog {
                    sockets.remove(c.handle);
                    return false;
                }
                relisten(s, c.service);
                *c = Conn::new(c.handle, c.service);
                *pool += 1;
            }
            true
        });
        // Refill each port's pool, so that new SYNs always find a listener.
        for service in services {
            for _ in listening[service as usize]..args.backlog {
                conns.push(Conn::new(sockets.add(listener(args, service)), service));
            }
        }
        // Sending what serve() queued, or a window update, is due at once.
        match smol.poll_delay(now(), &sockets) {
            Some(d) if d.total_micros() == 0 => continue,
            d => sys::wait_readable(&[fd], d.map(|d| Duration::from_micros(d.total_micros())), &mut ready)?,
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("smoltcp_tun: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smoltcp_tun: {e}");
            ExitCode::FAILURE
        }
    }
}
