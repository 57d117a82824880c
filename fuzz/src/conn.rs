//! Target `tcp_conn`: one TCP connection, established from a template
//! (passive or active, with the options the input picks), then driven by
//! a fuzzed program of peer segments, application calls (send, recv,
//! shutdown, close, abort) and clock steps.
//!
//! The peer is honest about its data: whatever sequence numbers a segment
//! claims, its bytes are the peer's stream at those numbers, so what the
//! application reads can be checked byte for byte; so can what the stack
//! sends, against what the application wrote. After every step:
//!
//! - SND.UNA ≤ SND.NXT ≤ SND.MAX (modulo 2^32, within half the space), and
//!   no more is acknowledged than was written (plus SYN and FIN);
//! - RCV.NXT never moves back, and never past what the peer sent;
//! - the application has read exactly the peer's stream, in order, and no
//!   more than the stack acknowledged;
//! - every segment the stack sent carries the application's bytes at
//!   their sequence numbers, and its FIN after the last of them;
//! - no connection's buffers outgrow the configured ceilings, and no
//!   deadline stays in the past after the timers ran.

use crate::packet::{self, IpFields, TcpFields, TcpOptionFields};
use crate::stack::{HOST, Tuning, US, Wait, check_buffers, interface};
use arbitrary::{Arbitrary, Unstructured};
use std::net::{Ipv4Addr, SocketAddrV4};
use tunstack::iface::Interface;
use tunstack::ip::protocol;
use tunstack::socket::SocketEvent;
use tunstack::tcp::{SeqSpace, Shutdown, State, TcpHandle};
use tunstack::time::{Duration, Instant};
use tunstack::wire::ipv4::Ipv4Packet;
use tunstack::wire::seq::SeqNum;
use tunstack::wire::tcp::{TcpSegment, flags};

const PORT: u16 = 7;
const PEER_PORT: u16 = 40000;
const MTU: usize = 1500;
const MAX_STEPS: usize = 128;

#[derive(Arbitrary, Debug)]
struct Setup {
    /// We connect (else the peer connects to our listener).
    active: bool,
    peer_isn: u32,
    /// Picks our ISN (through the interface's seed).
    seed: u8,
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
    /// The peer offers timestamps.
    timestamps: bool,
    tuning: Tuning,
    nodelay: bool,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Segment(Seg),
    /// Full-sized segments of data in order from RCV.NXT.
    Burst {
        count: u8,
        ack: AckChoice,
    },
    Send(u16),
    /// This many 4 KiB writes.
    SendMore(u8),
    Recv(u16),
    RecvAll,
    Shutdown(u8),
    Close,
    Abort,
    Wait(Wait),
    /// An ICMP error from the host quoting our latest segment.
    Icmp {
        kind: IcmpKind,
        mtu: u16,
    },
    /// The receive buffer's size, in 64-byte units.
    RecvBuffer(u16),
    /// The send buffer's size, in 64-byte units.
    SendBuffer(u16),
    /// Keepalive after this many seconds idle, or off.
    Keepalive(Option<u8>),
}

#[derive(Arbitrary, Debug)]
struct Seg {
    flags: Flags,
    seq: SeqChoice,
    ack: AckChoice,
    window: u16,
    len: u16,
    ts: Option<TsChoice>,
    /// SACK blocks, as offsets and lengths from SND.UNA.
    sack: Vec<(u16, u16)>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Flags {
    Ack,
    AckPsh,
    FinAck,
    Rst,
    RstAck,
    Syn,
    SynAck,
    Raw(u8),
}

/// The segment's sequence number, from the stack's RCV.NXT.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum SeqChoice {
    Next,
    Ahead(u16),
    Behind(u16),
    Raw(u32),
}

/// The acknowledgment number, from the stack's send sequence space.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum AckChoice {
    /// Everything sent.
    Max,
    /// Nothing new (a duplicate ACK).
    Una,
    /// Part of what is in flight.
    Partial(u16),
    /// Beyond what was sent.
    Beyond(u16),
    /// Before SND.UNA.
    Behind(u16),
    Raw(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum TsChoice {
    /// The peer's clock advances this much; TSecr echoes our latest TSval.
    Advance(u16),
    /// An old TSval (PAWS should drop the segment).
    Stale(u16),
    Raw(u32, u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum IcmpKind {
    FragNeeded,
    PortUnreachable,
    HostUnreachable,
    TimeExceeded,
}

/// The peer's stream: its byte at offset `k` (from IRS + 1).
fn peer_byte(k: u32) -> u8 {
    k.wrapping_mul(2_654_435_761).to_be_bytes()[0]
}

/// The application's stream: its byte at offset `k` (from ISS + 1).
fn app_byte(k: u32) -> u8 {
    k.wrapping_mul(0x9e37_79b1).rotate_left(7).to_be_bytes()[1]
}

struct Conn {
    i: Interface,
    now: Instant,
    /// The connection, once the handshake made it.
    handle: Option<TcpHandle>,
    /// The application closed its handle: no more calls on it.
    closed: bool,
    peer_isn: SeqNum,
    /// The end of the highest segment the peer sent.
    peer_high: SeqNum,
    peer_ts: u32,
    /// Our latest TSval.
    our_ts: u32,
    iss: SeqNum,
    /// Bytes the application wrote and read.
    written: u64,
    read: u64,
    /// RCV.NXT at the last check.
    rcv_nxt: Option<SeqNum>,
    /// Where our FIN went, once sent.
    fin_at: Option<SeqNum>,
    buf: Vec<u8>,
    events: Vec<SocketEvent>,
    /// Our latest segment to the peer, as an IP packet (for ICMP quotes).
    last_sent: Vec<u8>,
}

/// Runs the target on one input.
pub fn tcp_conn(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else { return };
    trace!("{setup:?}");
    let Some(mut c) = Conn::establish(&setup) else {
        trace!("no connection");
        return;
    };
    c.check();
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        let Ok(step) = Step::arbitrary(&mut u) else { break };
        trace!("{step:?}");
        c.step(step);
        c.drain();
        c.check();
    }
}

impl Conn {
    /// The connection, established from the setup's template.
    fn establish(s: &Setup) -> Option<Conn> {
        let i = interface(&s.tuning, MTU, u64::from(s.seed), 256);
        let now = Instant::from_secs(100);
        let peer = SocketAddrV4::new(HOST, PEER_PORT);
        let peer_isn = SeqNum(s.peer_isn);
        let mut c = Conn {
            handle: None,
            i,
            now,
            closed: false,
            peer_isn,
            peer_high: peer_isn + 1,
            peer_ts: 1,
            our_ts: 0,
            iss: SeqNum(0),
            written: 0,
            read: 0,
            rcv_nxt: None,
            fin_at: None,
            buf: vec![0; 65536],
            events: Vec::new(),
            last_sent: Vec::new(),
        };
        let syn_options = |ts: Option<(u32, u32)>| {
            packet::tcp_options(&TcpOptionFields {
                mss: s.mss,
                window_scale: s.window_scale,
                sack_permitted: s.sack_permitted,
                timestamps: ts,
                sack: &[],
            })
        };
        let ts = |c: &Conn| s.timestamps.then_some((c.peer_ts, c.our_ts));
        if s.active {
            c.handle = c.i.tcp(now).connect(peer, 0).ok();
            c.iss = c.take_syn()?;
            let opts = syn_options(ts(&c));
            c.peer_send(flags::SYN | flags::ACK, peer_isn, c.iss + 1, 65535, &opts, 0);
        } else {
            let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT);
            let l = c.i.tcp(now).listen(any, 4).ok()?;
            let opts = syn_options(ts(&c));
            c.peer_send(flags::SYN, peer_isn, SeqNum(0), 65535, &opts, 0);
            c.iss = c.take_syn()?;
            let opts = packet::tcp_options(&TcpOptionFields {
                timestamps: ts(&c),
                ..TcpOptionFields::default()
            });
            c.peer_send(flags::ACK, peer_isn + 1, c.iss + 1, 65535, &opts, 0);
            c.handle = Some(c.i.tcp(now).accept(l)?.0);
        }
        c.drain();
        let h = c.handle?;
        if c.i.tcp_layer().state(h) != State::Established {
            return None;
        }
        c.i.tcp(now).set_nodelay(h, s.nodelay);
        c.rcv_nxt = Some(peer_isn + 1);
        Some(c)
    }

    /// Our SYN or SYN-ACK of the handshake: its sequence number, our ISN.
    fn take_syn(&mut self) -> Option<SeqNum> {
        let n = self.i.poll_transmit(self.now, &mut self.buf)?;
        let pkt = self.buf[..n].to_vec();
        let p = packet::check_sent(&pkt, US, MTU);
        let s = TcpSegment::parse(p.payload(), p.header.src, p.header.dst).ok()?;
        if !s.has(flags::SYN) {
            return None;
        }
        if let Some((val, _)) = s.options.timestamps {
            self.our_ts = val;
        }
        let iss = s.seq;
        self.last_sent = pkt;
        Some(iss)
    }

    /// The connection's handle (established, so present).
    fn h(&self) -> TcpHandle {
        self.handle.expect("established")
    }

    fn space(&self) -> Option<SeqSpace> {
        self.i.tcp_layer().seq_space(self.h())
    }

    fn step(&mut self, step: Step) {
        let (now, h) = (self.now, self.h());
        let live = !self.closed;
        match step {
            Step::Segment(seg) => self.segment(&seg),
            Step::Burst { count, ack } => {
                let Some(ss) = self.space() else { return };
                let ack = self.ack(&ss, ack);
                let mut seq = ss.rcv_nxt;
                for _ in 0..count.min(64) {
                    let opts = self.ts_option(TsChoice::Advance(1));
                    self.peer_send(flags::ACK, seq, ack, 65535, &opts, 1000);
                    seq += 1000;
                }
            }
            Step::Send(len) if live => self.write(usize::from(len)),
            Step::SendMore(n) if live => {
                for _ in 0..n.min(64) {
                    self.write(4096);
                }
            }
            Step::Recv(len) if live => {
                self.read(usize::from(len));
            }
            Step::RecvAll if live => while self.read(65536) > 0 {},
            Step::Shutdown(how) if live => {
                let how = [Shutdown::Read, Shutdown::Write, Shutdown::Both][usize::from(how % 3)];
                let _ = self.i.tcp(now).shutdown(h, how);
            }
            Step::Close if live => {
                self.closed = true;
                self.i.tcp(now).close(h, false);
            }
            Step::Abort if live => self.i.tcp(now).abort(h),
            Step::RecvBuffer(units) if live => {
                self.i.tcp(now).set_recv_buffer_size(h, usize::from(units) * 64);
            }
            Step::SendBuffer(units) if live => {
                self.i.tcp(now).set_send_buffer_size(h, usize::from(units) * 64);
            }
            Step::Keepalive(secs) if live => {
                let idle = secs.map(|s| Duration::from_secs(u64::from(s)));
                self.i.tcp(now).set_keepalive(h, idle);
            }
            Step::Wait(w) => w.run(&mut self.i, &mut self.now),
            Step::Icmp { kind, mtu } => self.icmp_error(kind, mtu),
            _ => {}
        }
    }

    fn segment(&mut self, seg: &Seg) {
        let Some(ss) = self.space() else { return };
        let flags = match seg.flags {
            Flags::Ack => flags::ACK,
            Flags::AckPsh => flags::ACK | flags::PSH,
            Flags::FinAck => flags::FIN | flags::ACK,
            Flags::Rst => flags::RST,
            Flags::RstAck => flags::RST | flags::ACK,
            Flags::Syn => flags::SYN,
            Flags::SynAck => flags::SYN | flags::ACK,
            Flags::Raw(f) => f & 0x3f,
        };
        let seq = match seg.seq {
            SeqChoice::Next => ss.rcv_nxt,
            SeqChoice::Ahead(n) => ss.rcv_nxt + u32::from(n),
            SeqChoice::Behind(n) => ss.rcv_nxt - u32::from(n),
            SeqChoice::Raw(v) => SeqNum(v),
        };
        let ack = self.ack(&ss, seg.ack);
        let mut opts = seg.ts.map(|t| self.ts_option(t)).unwrap_or_default();
        if !seg.sack.is_empty() {
            let blocks: Vec<(u32, u32)> = seg
                .sack
                .iter()
                .take(4)
                .map(|&(off, len)| {
                    let left = ss.snd_una + u32::from(off);
                    (left.0, (left + u32::from(len)).0)
                })
                .collect();
            let ts = seg.ts.map(|_| {
                let v = &opts[opts.len() - 8..];
                let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                (word(&v[..4]), word(&v[4..]))
            });
            opts = packet::tcp_options(&TcpOptionFields {
                timestamps: ts,
                sack: &blocks,
                ..TcpOptionFields::default()
            });
        }
        self.peer_send(flags, seq, ack, seg.window, &opts, usize::from(seg.len).min(4000));
    }

    fn ack(&self, ss: &SeqSpace, choice: AckChoice) -> SeqNum {
        match choice {
            AckChoice::Max => ss.snd_max,
            AckChoice::Una => ss.snd_una,
            AckChoice::Partial(n) => ss.snd_una + u32::from(n).min(ss.snd_max.wrapping_distance_from(ss.snd_una)),
            AckChoice::Beyond(n) => ss.snd_max + u32::from(n),
            AckChoice::Behind(n) => ss.snd_una - u32::from(n),
            AckChoice::Raw(v) => SeqNum(v),
        }
    }

    /// A timestamps option as the peer would send it.
    fn ts_option(&mut self, t: TsChoice) -> Vec<u8> {
        let ts = match t {
            TsChoice::Advance(d) => {
                self.peer_ts = self.peer_ts.wrapping_add(u32::from(d));
                (self.peer_ts, self.our_ts)
            }
            TsChoice::Stale(d) => (self.peer_ts.wrapping_sub(u32::from(d) + 1), self.our_ts),
            TsChoice::Raw(v, e) => (v, e),
        };
        packet::tcp_options(&TcpOptionFields {
            timestamps: Some(ts),
            ..TcpOptionFields::default()
        })
    }

    /// Sends a segment from the peer with `len` bytes of its stream.
    fn peer_send(&mut self, f: u8, seq: SeqNum, ack: SeqNum, window: u16, options: &[u8], len: usize) {
        let data_at = seq + u32::from(f & flags::SYN != 0);
        let base = data_at.wrapping_distance_from(self.peer_isn + 1);
        let payload: Vec<u8> = (0..len as u32).map(|k| peer_byte(base.wrapping_add(k))).collect();
        let fields = TcpFields {
            src_port: PEER_PORT,
            dst_port: PORT,
            seq: seq.0,
            ack: ack.0,
            flags: f,
            window,
            options,
        };
        // The highest the peer sent, among what a window can reach (below
        // 2^30 past RCV.NXT, RFC 7323 §2.3); a raw number half the space
        // away would otherwise move it anywhere.
        let end = data_at + len as u32 + u32::from(f & flags::FIN != 0);
        let rcv_nxt = self
            .handle
            .and_then(|_| self.space())
            .map_or(self.peer_isn + 1, |ss| ss.rcv_nxt);
        if f & flags::RST == 0 && end.gt(self.peer_high) && end.wrapping_distance_from(rcv_nxt) < 1 << 30 {
            self.peer_high = end;
        }
        trace!("  peer: {fields:?} len {len}");
        let tcp = packet::tcp(HOST, US, &fields, &payload);
        self.ip_send(protocol::TCP, &tcp);
    }

    fn ip_send(&mut self, protocol: u8, payload: &[u8]) {
        let f = IpFields {
            src: HOST,
            dst: US,
            protocol,
            ttl: 64,
            ident: 1,
            dont_fragment: true,
        };
        let pkt = packet::ipv4(&f, &[], payload, 0, false);
        self.i.handle_packet(self.now, &pkt);
    }

    fn icmp_error(&mut self, kind: IcmpKind, mtu: u16) {
        if self.last_sent.is_empty() {
            return;
        }
        let (t, code, rest) = match kind {
            IcmpKind::FragNeeded => (3, 4, [0, 0, (mtu >> 8) as u8, mtu as u8]),
            IcmpKind::PortUnreachable => (3, 3, [0; 4]),
            IcmpKind::HostUnreachable => (3, 1, [0; 4]),
            IcmpKind::TimeExceeded => (11, 0, [0; 4]),
        };
        let quote = self.last_sent[..self.last_sent.len().min(548)].to_vec();
        let msg = packet::icmp(t, code, rest, &quote);
        self.ip_send(protocol::ICMP, &msg);
    }

    fn write(&mut self, len: usize) {
        let at = self.written as u32;
        let data: Vec<u8> = (0..len as u32).map(|k| app_byte(at.wrapping_add(k))).collect();
        let h = self.h();
        if let Ok(n) = self.i.tcp(self.now).send(h, &data) {
            self.written += n as u64;
        }
    }

    /// Reads up to `len` bytes and checks them against the peer's stream.
    fn read(&mut self, len: usize) -> usize {
        let mut buf = vec![0; len];
        let h = self.h();
        let Ok(n) = self.i.tcp(self.now).recv(h, &mut buf) else {
            return 0;
        };
        let at = self.read as u32;
        for (k, b) in buf[..n].iter().enumerate() {
            let want = peer_byte(at.wrapping_add(k as u32));
            assert_eq!(
                *b,
                want,
                "read byte {} of the peer's stream wrong",
                self.read + k as u64
            );
        }
        self.read += n as u64;
        n
    }

    /// Takes everything the stack sends and checks our segments.
    fn drain(&mut self) {
        while let Some(n) = self.i.poll_transmit(self.now, &mut self.buf) {
            let pkt = self.buf[..n].to_vec();
            let p = packet::check_sent(&pkt, US, MTU);
            if p.header.protocol == protocol::TCP && !p.header.is_fragment() {
                self.check_segment(&p);
                self.last_sent = pkt;
            }
        }
        self.events.clear();
        self.i.take_events(&mut self.events);
    }

    /// A segment we sent carries the application's bytes where they belong.
    fn check_segment(&mut self, p: &Ipv4Packet<'_>) {
        let s = TcpSegment::parse(p.payload(), p.header.src, p.header.dst).expect("checked");
        // Once our connection is closed, what goes to the peer's port is
        // another connection's (a new SYN to the listener).
        let h = self.h();
        let ours = self.i.tcp_layer().exists(h) && self.i.tcp_layer().state(h) != State::Closed;
        if s.dst_port != PEER_PORT || s.has(flags::RST) || !ours {
            return;
        }
        trace!(
            "  us: flags {:#04x} seq {} ack {} window {} len {}",
            s.flags,
            s.seq.0,
            s.ack.0,
            s.window,
            s.payload.len()
        );
        if let Some((val, _)) = s.options.timestamps {
            self.our_ts = val;
        }
        let data_at = s.seq + u32::from(s.has(flags::SYN));
        let offset = data_at.wrapping_distance_from(self.iss + 1);
        let end = u64::from(offset) + s.payload.len() as u64;
        assert!(
            s.payload.is_empty() || end <= self.written,
            "sent bytes {offset}..{end} of a stream of {}",
            self.written
        );
        for (k, b) in s.payload.iter().enumerate() {
            assert_eq!(
                *b,
                app_byte(offset.wrapping_add(k as u32)),
                "sent byte {} wrong",
                u64::from(offset) + k as u64
            );
        }
        if s.has(flags::FIN) {
            let fin = data_at + s.payload.len() as u32;
            assert_eq!(
                fin,
                self.iss + 1 + self.written as u32,
                "FIN not after the last byte written"
            );
            assert!(self.fin_at.is_none_or(|f| f == fin), "FIN moved");
            self.fin_at = Some(fin);
        }
        if s.has(flags::ACK) {
            assert!(
                s.ack.le(self.peer_high),
                "acknowledged {:?}, beyond what the peer sent",
                s.ack
            );
        }
    }

    /// The invariants, after every step.
    fn check(&mut self) {
        let Some(ss) = self.space() else { return };
        trace!("  {ss:?} {:?}", self.i.tcp_layer().state(self.h()));
        assert!(
            ss.snd_una.le(ss.snd_nxt),
            "SND.UNA {:?} beyond SND.NXT {:?}",
            ss.snd_una,
            ss.snd_nxt
        );
        assert!(
            ss.snd_nxt.le(ss.snd_max),
            "SND.NXT {:?} beyond SND.MAX {:?}",
            ss.snd_nxt,
            ss.snd_max
        );
        assert_eq!(ss.iss, self.iss);
        let acked = u64::from(ss.snd_una.wrapping_distance_from(ss.iss));
        let sent = u64::from(ss.snd_max.wrapping_distance_from(ss.iss));
        assert!(sent <= self.written + 2, "{sent} sent of {} written", self.written);
        assert!(acked <= sent);
        assert_eq!(ss.irs, self.peer_isn, "IRS changed");
        if let Some(prev) = self.rcv_nxt {
            assert!(
                prev.le(ss.rcv_nxt),
                "RCV.NXT went back from {prev:?} to {:?}",
                ss.rcv_nxt
            );
        }
        assert!(
            ss.rcv_nxt.le(self.peer_high),
            "RCV.NXT {:?} beyond what the peer sent",
            ss.rcv_nxt
        );
        let received = u64::from(ss.rcv_nxt.wrapping_distance_from(self.peer_isn + 1));
        assert!(self.read <= received, "read {} of {received} acknowledged", self.read);
        self.rcv_nxt = Some(ss.rcv_nxt);
        check_buffers(&self.i);
    }
}
