//! Target `iface`: a program of packets, socket calls and clock steps
//! into one [`Interface`], as the runtime drives it.
//!
//! The interface has a TCP listener on port 7, a UDP socket on port 7 and
//! an ICMP echo socket; the setup may complete handshakes from a template
//! (to the listener, and one connection of ours to the host's port 80),
//! and accept them. Packets are IPv4 with options, fragmented and
//! reordered when the input says, from chosen sources to chosen
//! destinations: TCP whose sequence and acknowledgment numbers are
//! offsets from what the connection last sent (so the fuzzer reaches and
//! stays in the synchronized states), UDP, ICMP (errors quoting what the
//! stack sent, replies to its echo requests), or raw bytes.
//!
//! With offloads (issue 16), TCP may send super-packets, which are cut as
//! the kernel cuts them before the checks, and packets may arrive with a
//! checksum the device vouches for, or as a host's super-packet.
//!
//! Checked: no panic; everything the interface sends is a valid packet
//! within the MTU (fragments are reassembled and checked whole); timers
//! make progress (no deadline stays in the past); no connection's buffers
//! outgrow their ceilings.

use crate::packet::{self, IpFields, TcpFields, TcpOptionFields};
use crate::stack::{HOST, Tuning, US, Wait, check_buffers, interface};
use arbitrary::{Arbitrary, Unstructured};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use tunstack::iface::Interface;
use tunstack::ip::{Reassembler, ReassemblyConfig};
use tunstack::rand::{Rng, SeededState};
use tunstack::socket::{IcmpHandle, SocketEvent, UdpHandle};
use tunstack::tcp::{ListenerHandle, Shutdown, TcpHandle};
use tunstack::time::Instant;
use tunstack::wire::icmp::{IcmpMessage, kind};
use tunstack::wire::ipv4::Ipv4Packet;
use tunstack::wire::tcp::{TcpSegment, flags};
use tunstack::wire::vnet::{self, VnetHeader};
use tunstack::{Stats, ip::protocol};

const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 9);
const FAR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PORT: u16 = 7;
/// The host's port our own connection goes to.
const ACTIVE_PORT: u16 = 80;
/// The peers' ports towards the listener: 40000 and up.
const PEERS: u16 = 4;
const MAX_STEPS: usize = 64;

#[derive(Arbitrary, Debug)]
struct Setup {
    /// Bit i: peer i (port 40000 + i) completes a handshake and is
    /// accepted; bit 4: our connection to the host's port 80 completes.
    handshakes: u8,
    /// We connect to the host's port 80 at the start.
    connect: bool,
    mtu: Mtu,
    tuning: Tuning,
    backlog: u8,
    /// TUN offloads (issue 16): TCP sends super-packets, cut here as the
    /// kernel would, and packets may come with a checksum the device vouches for.
    offloads: bool,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Mtu {
    Min,
    Small,
    Ethernet,
    Jumbo,
}

#[derive(Arbitrary, Debug)]
enum Step<'a> {
    Tcp(TcpStep<'a>),
    Udp {
        ip: Ip<'a>,
        src_port: u16,
        to_socket: bool,
        dst_port: u16,
        payload: Payload<'a>,
        checksum: bool,
    },
    Icmp {
        ip: Ip<'a>,
        kind: u8,
        code: u8,
        rest: [u8; 4],
        body: IcmpBody<'a>,
    },
    Raw(&'a [u8]),
    Wait(Wait),
    App(App),
}

#[derive(Arbitrary, Debug)]
struct TcpStep<'a> {
    conn: Conn,
    flags: u8,
    seq: Rel,
    ack: Rel,
    window: u16,
    options: Opts<'a>,
    payload: Payload<'a>,
    ip: Ip<'a>,
}

/// Which connection a segment belongs to.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Conn {
    /// Peer `n % 4` towards the listener.
    Peer(u8),
    /// The host's side of our own connection.
    Active,
    /// Any ports.
    Raw { src_port: u16, dst_port: u16 },
}

/// A sequence or acknowledgment number, relative to the connection.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Rel {
    /// For `seq`: what the stack acknowledged last, plus this; for `ack`:
    /// the end of what it sent, plus this.
    Expected(i16),
    /// The same, farther.
    Far(i32),
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
enum Opts<'a> {
    None,
    Template {
        mss: Option<u16>,
        window_scale: Option<u8>,
        sack_permitted: bool,
        /// TSval advances by this; TSecr echoes the stack's latest, or is raw.
        timestamps: Option<(u16, Option<u32>)>,
        /// SACK blocks: offsets from the end of what the stack sent.
        sack: Vec<(i16, u16)>,
    },
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum Payload<'a> {
    Bytes(&'a [u8]),
    Fill { len: u16, byte: u8 },
}

impl Payload<'_> {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Payload::Bytes(b) => b.to_vec(),
            Payload::Fill { len, byte } => vec![*byte; usize::from(*len).min(65000)],
        }
    }
}

/// How a packet travels: IPv4 header fields, options, fragments.
#[derive(Arbitrary, Debug)]
struct Ip<'a> {
    src: Src,
    dst: Dst,
    ttl: u8,
    ident: u16,
    dont_fragment: bool,
    options: &'a [u8],
    /// Fragment boundaries, in 8-byte units.
    cuts: Vec<u16>,
    /// Fragments go out sorted by these keys (then in order).
    order: Vec<u8>,
    /// This fragment goes twice.
    duplicate: Option<u8>,
    /// This fragment never goes.
    lose: Option<u8>,
    /// XOR one byte of the packet (most often breaking a checksum).
    corrupt: Option<(u16, u8)>,
    /// With offloads, the device vouches for the transport checksum
    /// (`DATA_VALID`), or calls the packet a TCP super-packet of this MSS.
    vouched: Option<Option<u16>>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Src {
    Host,
    Neighbour,
    Far,
    Ours,
    Raw([u8; 4]),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Dst {
    Us,
    Broadcast,
    Limited,
    Raw([u8; 4]),
}

#[derive(Arbitrary, Debug)]
enum IcmpBody<'a> {
    Bytes(&'a [u8]),
    /// The start of a packet the stack sent (most recent first), as an
    /// error quotes it, with one byte changed if asked.
    Quote {
        sent: u8,
        len: u16,
        tweak: Option<(u16, u8)>,
    },
    /// The reply to an echo request the stack sent (type and code from the step).
    ReplyTo(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum App {
    Accept,
    Send { conn: u8, len: u16 },
    Recv { conn: u8, len: u16 },
    Shutdown { conn: u8, how: u8 },
    Close { conn: u8, abort: bool },
    Abort(u8),
    Connect,
    Listen { backlog: u8 },
    CloseListener,
    UdpRecv,
    UdpSend { len: u16, to: Src },
    Ping { len: u16, dst: Src },
    PingRecv,
}

/// What the stack last sent on one connection, as the peer saw it.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// The end of the highest segment it sent (SYN and FIN count).
    snd_end: u32,
    /// Its latest acknowledgment number.
    ack: u32,
    /// Its latest TSval.
    tsval: u32,
    /// The peer's TSval clock.
    peer_ts: u32,
}

struct Driver {
    i: Interface,
    now: Instant,
    mtu: usize,
    listener: Option<ListenerHandle>,
    conns: Vec<TcpHandle>,
    udp: Option<UdpHandle>,
    ping: IcmpHandle,
    /// Keyed by (peer's port, our port).
    seen: HashMap<(u16, u16), Seen>,
    /// Packets the stack sent, most recent first.
    sent: VecDeque<Vec<u8>>,
    /// The host's reassembly of the stack's fragments.
    host: Reassembler,
    host_stats: Stats,
    events: Vec<SocketEvent>,
    offloads: bool,
}

/// The initial sequence number of peer `n` (peer 3 wraps soon).
fn peer_isn(port: u16) -> u32 {
    match port.wrapping_sub(40000) {
        3 => 0xffff_ff00,
        n => u32::from(n).wrapping_mul(0x4000_0000).wrapping_add(1000),
    }
}

/// Runs the target on one input.
pub fn iface(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else { return };
    trace!("{setup:?}");
    let mut d = Driver::new(&setup);
    d.handshakes(&setup);
    trace!("connections: {:?}", d.states());
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        let Ok(step) = Step::arbitrary(&mut u) else { break };
        trace!("{step:?}");
        d.step(step);
        d.drain();
        check_buffers(&d.i);
    }
    trace!("connections: {:?}", d.states());
    // What netstat reads must be readable in any state.
    let _ = d.i.tcp_layer().sockets();
    let _ = d.i.udp_layer().sockets().count();
}

impl Driver {
    fn new(s: &Setup) -> Driver {
        let mtu = match s.mtu {
            Mtu::Min => 576,
            Mtu::Small => 1280,
            Mtu::Ethernet => 1500,
            Mtu::Jumbo => 9000,
        };
        let mut i = interface(&s.tuning, mtu, 1, usize::from(s.backlog % 8) + 1);
        i.set_offloads(s.offloads);
        let now = Instant::from_secs(100);
        let any = |port| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        let listener = i.tcp(now).listen(any(PORT), usize::from(s.backlog % 8)).ok();
        let udp = i.udp(now).bind(any(PORT)).ok();
        let ping = i.ping(now).bind();
        let mut conns = Vec::new();
        if s.connect {
            conns.extend(i.tcp(now).connect(SocketAddrV4::new(HOST, ACTIVE_PORT), 0).ok());
        }
        Driver {
            i,
            now,
            mtu,
            listener,
            conns,
            udp,
            ping,
            seen: HashMap::new(),
            sent: VecDeque::new(),
            host: Reassembler::new(ReassemblyConfig::default(), SeededState::from_rng(&mut Rng::new(2))),
            host_stats: Stats::default(),
            events: Vec::new(),
            offloads: s.offloads,
        }
    }

    /// The states of the application's connections.
    fn states(&self) -> Vec<tunstack::tcp::State> {
        self.conns.iter().map(|h| self.i.tcp_layer().state(*h)).collect()
    }

    /// Completes the handshakes the setup asks for, from a template.
    fn handshakes(&mut self, s: &Setup) {
        self.drain();
        let template = |flags| TcpStep {
            conn: Conn::Active,
            flags,
            seq: Rel::Expected(0),
            ack: Rel::Expected(0),
            window: 65535,
            options: Opts::Template {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((1, None)),
                sack: Vec::new(),
            },
            payload: Payload::Bytes(&[]),
            ip: Ip::plain(),
        };
        for n in 0..PEERS as u8 {
            if s.handshakes & (1 << n) != 0 {
                self.step(Step::Tcp(TcpStep {
                    conn: Conn::Peer(n),
                    ..template(flags::SYN)
                }));
                self.drain();
                self.step(Step::Tcp(TcpStep {
                    conn: Conn::Peer(n),
                    options: Opts::None,
                    ..template(flags::ACK)
                }));
                self.step(Step::App(App::Accept));
                self.drain();
            }
        }
        if s.handshakes & 0x10 != 0 {
            self.step(Step::Tcp(template(flags::SYN | flags::ACK)));
            self.drain();
        }
    }

    fn step(&mut self, step: Step<'_>) {
        match step {
            Step::Tcp(t) => self.tcp_segment(&t),
            Step::Udp {
                ip,
                src_port,
                to_socket,
                dst_port,
                payload,
                checksum,
            } => {
                let (src, dst) = (ip.src.addr(), ip.dst.addr());
                let dst_port = if to_socket { PORT } else { dst_port };
                let udp = packet::udp(src, dst, (src_port, dst_port), &payload.bytes(), checksum);
                self.send(&ip, protocol::UDP, &udp);
            }
            Step::Icmp {
                ip,
                kind,
                code,
                rest,
                body,
            } => {
                let data = match body {
                    IcmpBody::Bytes(b) => b.to_vec(),
                    IcmpBody::Quote { sent, len, tweak } => {
                        let mut q = self.sent_packet(sent, |_| true).unwrap_or_default();
                        q.truncate(usize::from(len));
                        if let Some((at, x)) = tweak {
                            if let Some(b) = q.get_mut(usize::from(at)) {
                                *b ^= x;
                            }
                        }
                        q
                    }
                    IcmpBody::ReplyTo(n) => {
                        let is_echo =
                            |p: &[u8]| p.get(9) == Some(&protocol::ICMP) && p.get(20) == Some(&kind::ECHO_REQUEST);
                        let request = self.sent_packet(n, is_echo).unwrap_or_default();
                        let Some(m) = request.get(20..).and_then(|r| IcmpMessage::parse(r).ok()) else {
                            return;
                        };
                        let reply = packet::icmp(kind, code, m.rest, m.data);
                        self.send(&ip, protocol::ICMP, &reply);
                        return;
                    }
                };
                let msg = packet::icmp(kind, code, rest, &data);
                self.send(&ip, protocol::ICMP, &msg);
            }
            Step::Raw(bytes) => self.i.handle_packet(self.now, bytes),
            Step::Wait(w) => w.run(&mut self.i, &mut self.now),
            Step::App(a) => self.app(a),
        }
    }

    /// The `n`th most recent packet the stack sent that `pick` accepts.
    fn sent_packet(&self, n: u8, pick: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let candidates: Vec<&Vec<u8>> = self.sent.iter().filter(|p| pick(p)).collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[usize::from(n) % candidates.len()].clone())
    }

    fn tcp_segment(&mut self, t: &TcpStep<'_>) {
        let (peer_port, our_port) = match t.conn {
            Conn::Peer(n) => (40000 + u16::from(n) % PEERS, PORT),
            Conn::Active => {
                let Some(local) = self
                    .conns
                    .iter()
                    .map(|h| self.i.tcp_layer().addrs(*h))
                    .find(|(_, remote)| remote.port() == ACTIVE_PORT)
                    .map(|(local, _)| local.port())
                else {
                    return;
                };
                (ACTIVE_PORT, local)
            }
            Conn::Raw { src_port, dst_port } => (src_port, dst_port),
        };
        let seen = self.seen.entry((peer_port, our_port)).or_insert(Seen {
            ack: peer_isn(peer_port),
            ..Seen::default()
        });
        let rel = |base: u32, r: Rel| match r {
            Rel::Expected(d) => base.wrapping_add_signed(i32::from(d)),
            Rel::Far(d) => base.wrapping_add_signed(d),
            Rel::Raw(v) => v,
        };
        let seq = rel(seen.ack, t.seq);
        let ack = rel(seen.snd_end, t.ack);
        let options = match &t.options {
            Opts::None => Vec::new(),
            Opts::Raw(b) => b.to_vec(),
            Opts::Template {
                mss,
                window_scale,
                sack_permitted,
                timestamps,
                sack,
            } => {
                let ts = timestamps.map(|(step, echo)| {
                    seen.peer_ts = seen.peer_ts.wrapping_add(u32::from(step));
                    (seen.peer_ts, echo.unwrap_or(seen.tsval))
                });
                let blocks: Vec<(u32, u32)> = sack
                    .iter()
                    .take(4)
                    .map(|&(off, len)| {
                        let left = seen.snd_end.wrapping_add_signed(i32::from(off));
                        (left, left.wrapping_add(u32::from(len)))
                    })
                    .collect();
                packet::tcp_options(&TcpOptionFields {
                    mss: *mss,
                    window_scale: *window_scale,
                    sack_permitted: *sack_permitted,
                    timestamps: ts,
                    sack: &blocks,
                })
            }
        };
        let fields = TcpFields {
            src_port: peer_port,
            dst_port: our_port,
            seq,
            ack,
            flags: t.flags,
            window: t.window,
            options: &options,
        };
        let segment = packet::tcp(t.ip.src.addr(), t.ip.dst.addr(), &fields, &t.payload.bytes());
        self.send(&t.ip, protocol::TCP, &segment);
    }

    /// Sends `payload` of `protocol` as `ip` says: fragmented, reordered,
    /// duplicated, lost, corrupted.
    fn send(&mut self, ip: &Ip<'_>, protocol: u8, payload: &[u8]) {
        let f = IpFields {
            src: ip.src.addr(),
            dst: ip.dst.addr(),
            protocol,
            ttl: ip.ttl,
            ident: ip.ident,
            dont_fragment: ip.dont_fragment,
        };
        let mut frags = packet::fragments(&f, ip.options, payload, &ip.cuts[..ip.cuts.len().min(16)]);
        let mut order: Vec<usize> = (0..frags.len()).collect();
        order.sort_by_key(|&i| (ip.order.get(i).copied().unwrap_or(0), i));
        if let Some((at, x)) = ip.corrupt {
            let p = &mut frags[0];
            let at = usize::from(at) % p.len();
            p[at] ^= x;
        }
        let pick = |n: Option<u8>| n.map(|n| usize::from(n) % frags.len());
        let meta = ip.meta(self.offloads);
        for &i in &order {
            if pick(ip.lose) == Some(i) {
                continue;
            }
            self.i.handle_packet_meta(self.now, &frags[i], &meta);
            if pick(ip.duplicate) == Some(i) {
                self.i.handle_packet_meta(self.now, &frags[i], &meta);
            }
        }
    }

    fn conn(&self, n: u8) -> Option<TcpHandle> {
        (!self.conns.is_empty()).then(|| self.conns[usize::from(n) % self.conns.len()])
    }

    fn app(&mut self, a: App) {
        let now = self.now;
        match a {
            App::Accept => {
                if let Some(l) = self.listener {
                    while let Some((h, _)) = self.i.tcp(now).accept(l) {
                        self.conns.push(h);
                    }
                }
            }
            App::Send { conn, len } => {
                if let Some(h) = self.conn(conn) {
                    let data = vec![0x5a; usize::from(len)];
                    let _ = self.i.tcp(now).send(h, &data);
                }
            }
            App::Recv { conn, len } => {
                if let Some(h) = self.conn(conn) {
                    let mut buf = vec![0; usize::from(len)];
                    let _ = self.i.tcp(now).recv(h, &mut buf);
                }
            }
            App::Shutdown { conn, how } => {
                if let Some(h) = self.conn(conn) {
                    let how = [Shutdown::Read, Shutdown::Write, Shutdown::Both][usize::from(how % 3)];
                    let _ = self.i.tcp(now).shutdown(h, how);
                }
            }
            App::Close { conn, abort } => {
                if let Some(h) = self.conn(conn) {
                    self.conns.retain(|c| *c != h);
                    self.i.tcp(now).close(h, abort);
                }
            }
            App::Abort(conn) => {
                if let Some(h) = self.conn(conn) {
                    self.i.tcp(now).abort(h);
                }
            }
            App::Connect => {
                let remote = SocketAddrV4::new(HOST, ACTIVE_PORT);
                self.conns.extend(self.i.tcp(now).connect(remote, 0).ok());
            }
            App::Listen { backlog } => {
                if self.listener.is_none() {
                    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT);
                    self.listener = self.i.tcp(now).listen(any, usize::from(backlog)).ok();
                }
            }
            App::CloseListener => {
                if let Some(l) = self.listener.take() {
                    self.i.tcp(now).close_listener(l);
                }
            }
            App::UdpRecv => {
                if let Some(h) = self.udp {
                    let mut buf = [0; 2048];
                    while self.i.udp(now).recv_from(h, &mut buf, false).is_ok() {}
                }
            }
            App::UdpSend { len, to } => {
                if let Some(h) = self.udp {
                    let data = vec![0xa5; usize::from(len)];
                    let _ = self.i.udp(now).send_to(h, SocketAddrV4::new(to.addr(), 9), &data, None);
                }
            }
            App::Ping { len, dst } => {
                let data = vec![0x42; usize::from(len)];
                let _ = self.i.ping(now).send_echo(self.ping, dst.addr(), len, &data, 64);
            }
            App::PingRecv => while self.i.ping(now).recv(self.ping).is_some() {},
        }
    }

    /// Takes everything the interface sends, checks it, and notes what the
    /// peers would learn from it.
    fn drain(&mut self) {
        let mut header = [0u8; tunstack::wire::ipv4::HEADER_LEN];
        let mut payload = Vec::new();
        while let Some((_, meta)) = self.i.poll_transmit_parts(self.now, &mut header, &mut payload) {
            // What the kernel makes of it: MSS-sized segments, checksums complete.
            let mut cut = Vec::new();
            vnet::for_each_segment(&meta, &header, &payload, |h, p| cut.push([h, p].concat()))
                .expect("the stack's offload metadata is valid");
            assert!(meta.is_plain() || self.offloads, "offload metadata with offloads off");
            for pkt in cut {
                self.check_sent(pkt);
            }
        }
        self.i.note_tx_space(self.now);
        self.events.clear();
        self.i.take_events(&mut self.events);
    }

    /// Checks one packet the stack sent (after cutting), and notes what the peers would learn from it.
    fn check_sent(&mut self, pkt: Vec<u8>) {
        let p = packet::check_sent(&pkt, US, self.mtu);
        if p.header.is_fragment() {
            if let Some(whole) = self.host.insert(self.now, &p, &mut self.host_stats) {
                let mut datagram = whole.header.clone();
                datagram.extend_from_slice(&whole.payload);
                let total = (datagram.len() as u16).to_be_bytes();
                datagram[2..4].copy_from_slice(&total);
                datagram[6..8].copy_from_slice(&[0, 0]);
                packet::fix_ipv4_checksum(&mut datagram);
                packet::check_sent(&datagram, US, usize::from(u16::MAX));
            }
        } else if p.header.protocol == protocol::TCP {
            self.note_segment(&p);
        }
        self.sent.push_front(pkt);
        self.sent.truncate(16);
    }

    /// What a segment the stack sent tells its peer.
    fn note_segment(&mut self, p: &Ipv4Packet<'_>) {
        let s = TcpSegment::parse(p.payload(), p.header.src, p.header.dst).expect("checked");
        let seen = self.seen.entry((s.dst_port, s.src_port)).or_insert(Seen {
            ack: peer_isn(s.dst_port),
            ..Seen::default()
        });
        let end = s.seq.0.wrapping_add(s.seg_len());
        if s.has(flags::SYN) || (end.wrapping_sub(seen.snd_end) as i32) > 0 {
            seen.snd_end = end;
        }
        if s.has(flags::ACK) {
            seen.ack = s.ack.0;
        }
        if let Some((val, _)) = s.options.timestamps {
            seen.tsval = val;
        }
    }
}

impl Ip<'_> {
    /// From the host to us, whole, no options.
    fn plain() -> Ip<'static> {
        Ip {
            src: Src::Host,
            dst: Dst::Us,
            ttl: 64,
            ident: 1,
            dont_fragment: true,
            options: &[],
            cuts: Vec::new(),
            order: Vec::new(),
            duplicate: None,
            lose: None,
            corrupt: None,
            vouched: None,
        }
    }

    /// The offload metadata the device hands over with each fragment.
    fn meta(&self, offloads: bool) -> VnetHeader {
        match self.vouched.filter(|_| offloads) {
            None => VnetHeader::default(),
            Some(None) => VnetHeader {
                flags: vnet::F_DATA_VALID,
                ..VnetHeader::default()
            },
            Some(Some(mss)) => VnetHeader {
                flags: vnet::F_NEEDS_CSUM,
                gso_type: vnet::GSO_TCPV4,
                gso_size: mss.max(1),
                csum_start: 20,
                csum_offset: 16,
                ..VnetHeader::default()
            },
        }
    }
}

impl Src {
    fn addr(self) -> Ipv4Addr {
        match self {
            Src::Host => HOST,
            Src::Neighbour => NEIGHBOUR,
            Src::Far => FAR,
            Src::Ours => US,
            Src::Raw(a) => Ipv4Addr::from(a),
        }
    }
}

impl Dst {
    fn addr(self) -> Ipv4Addr {
        match self {
            Dst::Us => US,
            Dst::Broadcast => Ipv4Addr::new(10, 200, 0, 255),
            Dst::Limited => Ipv4Addr::BROADCAST,
            Dst::Raw(a) => Ipv4Addr::from(a),
        }
    }
}
