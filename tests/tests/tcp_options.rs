//! TCP options negotiated and not, in every combination of SACK-permitted,
//! timestamps and window scale, segment by segment: a scripted peer offers
//! (or answers) each subset, and we check what tunstack answers (or offers)
//! and that the connection then behaves as negotiated. RFC 7323 §2.2, §3.2
//! and RFC 2018 §2: an option holds only when both SYNs carry it; without
//! window scaling on both sides, no window is scaled in either direction.
//!
//! Then the same matrix against smoltcp 0.14 over the simulated lossy link,
//! both ways, with byte-exact transfers (`every_option_combination_...`;
//! `--nocapture` prints a line per case).

use std::net::{Ipv4Addr, SocketAddrV4};
use tunstack::tcp::TcpHandle;
use tunstack::wire::ipv4::{HEADER_LEN, Ipv4Header, Ipv4Packet};
use tunstack::wire::seq::SeqNum;
use tunstack::wire::tcp::{PROTOCOL, TcpOptions, TcpSegment, flags};
use tunstack::{Config, Duration, Instant, Interface, Ipv4Cidr};

/// The stack under test.
const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The scripted peer.
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PORT: u16 = 7;
const PEER_PORT: u16 = 40000;
const ACK: u8 = flags::ACK;
const SYN: u8 = flags::SYN;
const PSH: u8 = flags::PSH;
/// The shift the peer offers in its SYN, and answers in its SYN-ACK.
const PEER_SHIFT_SYN: u8 = 7;
const PEER_SHIFT_SYN_ACK: u8 = 5;
/// Our shift: the default receive-buffer cap of 6 MiB needs 7 (65535 << 7 ≥ 6 MiB).
const OUR_SHIFT: u8 = 7;
/// The window in the peer's SYN or SYN-ACK (never scaled), and the window
/// field of every later segment of the peer, scaled or not as negotiated.
const PEER_WINDOW: u16 = 2000;

/// A subset of the three options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Opts {
    sack: bool,
    ts: bool,
    ws: bool,
}

impl Opts {
    /// All eight subsets.
    fn all() -> impl Iterator<Item = Opts> {
        (0..8u8).map(|b| Opts {
            sack: b & 1 != 0,
            ts: b & 2 != 0,
            ws: b & 4 != 0,
        })
    }

    /// The options both sides want.
    fn and(self, o: Opts) -> Opts {
        Opts {
            sack: self.sack && o.sack,
            ts: self.ts && o.ts,
            ws: self.ws && o.ws,
        }
    }
}

/// What tunstack's config allows: SACK and timestamps each on or off; it
/// always offers window scaling.
fn our_configs() -> impl Iterator<Item = Opts> {
    Opts::all().filter(|o| o.ws)
}

/// A segment tunstack sent.
#[derive(Clone, Debug)]
struct Seg {
    flags: u8,
    seq: SeqNum,
    ack: SeqNum,
    window: u16,
    options: TcpOptions,
    payload_len: usize,
}

impl Seg {
    /// The segment in an IPv4 packet.
    fn of(packet: &[u8]) -> Seg {
        let p = Ipv4Packet::parse(packet).expect("valid IP");
        assert_eq!(p.header.protocol, PROTOCOL);
        let s = TcpSegment::parse(p.payload(), p.header.src, p.header.dst).expect("valid TCP");
        Seg {
            flags: s.flags,
            seq: s.seq,
            ack: s.ack,
            window: s.window,
            options: s.options,
            payload_len: s.payload.len(),
        }
    }
}

/// `seg` in an IPv4 packet from `src` to `dst`.
fn packet(seg: &TcpSegment<'_>, src: Ipv4Addr, dst: Ipv4Addr, ident: u16) -> Vec<u8> {
    let mut tcp = Vec::new();
    seg.emit(&mut tcp, src, dst);
    let mut pkt = vec![0u8; HEADER_LEN + tcp.len()];
    Ipv4Header::new(src, dst, PROTOCOL, 64, ident, tcp.len()).emit(&mut pkt);
    pkt[HEADER_LEN..].copy_from_slice(&tcp);
    pkt
}

/// A peer that sends crafted segments to one tunstack interface and reads its replies.
struct Peer {
    i: Interface,
    now: Instant,
    /// The peer's next sequence number and what it acknowledges.
    seq: SeqNum,
    ack: SeqNum,
    /// What the connection negotiated, once known.
    agreed: Opts,
    /// The peer's latest TSval, and every TSval it sent.
    tsval: u32,
    tsvals: Vec<u32>,
    /// Our latest TSval the peer saw.
    echo: u32,
    /// What tunstack sent, for the checks every segment must pass.
    sent: Vec<Seg>,
}

impl Peer {
    /// A stack whose config allows `ours` (SACK, timestamps).
    fn new(ours: Opts) -> Peer {
        let mut c = Config::new(Ipv4Cidr::new(US, 24).expect("valid /24"));
        c.seed = 7;
        c.tcp.sack = ours.sack;
        c.tcp.timestamps = ours.ts;
        Peer {
            i: Interface::new(c),
            now: Instant::from_secs(100),
            seq: SeqNum(1_000_000),
            ack: SeqNum(0),
            agreed: Opts {
                sack: false,
                ts: false,
                ws: false,
            },
            tsval: 50_000,
            tsvals: Vec::new(),
            echo: 0,
            sent: Vec::new(),
        }
    }

    /// Sends one segment from the peer at `seq`, acknowledging `self.ack`.
    fn send_at(&mut self, f: u8, seq: SeqNum, window: u16, mut options: TcpOptions, payload: &[u8]) {
        if options.timestamps.is_some() || (self.agreed.ts && f & SYN == 0) {
            self.tsval += 1;
            self.tsvals.push(self.tsval);
            options.timestamps = Some((self.tsval, if f & ACK != 0 { self.echo } else { 0 }));
        }
        let seg = TcpSegment {
            src_port: PEER_PORT,
            dst_port: PORT,
            seq,
            ack: self.ack,
            flags: f,
            window,
            options,
            payload,
        };
        let pkt = packet(&seg, PEER, US, 1);
        self.i.handle_packet(self.now, &pkt);
    }

    /// Sends in-order data (or a pure ACK) with the window of every later segment.
    fn send_next(&mut self, f: u8, payload: &[u8]) {
        let seq = self.seq;
        self.send_at(f, seq, PEER_WINDOW, TcpOptions::default(), payload);
        self.seq += payload.len() as u32;
    }

    /// Everything tunstack sent since the last call.
    fn recv(&mut self) -> Vec<Seg> {
        let mut buf = vec![0u8; 66_000];
        let mut out = Vec::new();
        while let Some(n) = self.i.poll_transmit(self.now, &mut buf) {
            let s = Seg::of(&buf[..n]);
            if let Some((value, _)) = s.options.timestamps {
                self.echo = value;
            }
            out.push(s);
        }
        self.sent.extend(out.iter().cloned());
        out
    }

    fn recv_one(&mut self) -> Seg {
        let mut segs = self.recv();
        assert_eq!(segs.len(), 1, "expected one segment, got {segs:?}");
        segs.remove(0)
    }

    /// The peer's SYN or SYN-ACK options for the subset `o`.
    fn syn_options(&mut self, o: Opts, shift: u8) -> TcpOptions {
        TcpOptions {
            mss: Some(1460),
            window_scale: o.ws.then_some(shift),
            sack_permitted: o.sack,
            // `send_at` fills in the values.
            timestamps: o.ts.then_some((0, 0)),
            ..TcpOptions::default()
        }
    }

    /// A passive open: the peer's SYN offers `offer`; returns our SYN-ACK and the accepted connection.
    fn passive(&mut self, offer: Opts) -> (Seg, TcpHandle) {
        let l = self
            .i
            .tcp(self.now)
            .listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT), 8)
            .expect("listen");
        let options = self.syn_options(offer, PEER_SHIFT_SYN);
        let seq = self.seq;
        self.send_at(SYN, seq, PEER_WINDOW, options, b"");
        self.seq += 1;
        let synack = self.recv_one();
        assert_eq!(synack.flags, SYN | ACK, "{synack:?}");
        self.ack = synack.seq + 1;
        self.agreed = Opts {
            sack: synack.options.sack_permitted,
            ts: synack.options.timestamps.is_some(),
            ws: synack.options.window_scale.is_some(),
        };
        self.now += Duration::from_millis(10);
        self.send_next(ACK, b"");
        let (h, remote) = self.i.tcp(self.now).accept(l).expect("accepted");
        assert_eq!(remote, SocketAddrV4::new(PEER, PEER_PORT));
        (synack, h)
    }

    /// An active open: returns our SYN; the peer's SYN-ACK answers `answer`.
    fn active(&mut self, answer: Opts) -> (Seg, TcpHandle) {
        let h = self
            .i
            .tcp(self.now)
            .connect(SocketAddrV4::new(PEER, PEER_PORT), PORT)
            .expect("connect");
        let syn = self.recv_one();
        assert_eq!(syn.flags, SYN, "{syn:?}");
        self.ack = syn.seq + 1;
        self.now += Duration::from_millis(10);
        let options = self.syn_options(answer, PEER_SHIFT_SYN_ACK);
        let seq = self.seq;
        self.send_at(SYN | ACK, seq, PEER_WINDOW, options, b"");
        self.seq += 1;
        let ours = Opts {
            sack: syn.options.sack_permitted,
            ts: syn.options.timestamps.is_some(),
            ws: syn.options.window_scale.is_some(),
        };
        self.agreed = ours.and(answer);
        let ack = self.recv_one();
        assert_eq!(ack.flags, ACK, "the handshake's ACK: {ack:?}");
        assert!(self.i.tcp_layer().connect_done(h));
        (syn, h)
    }

    /// After the handshake, the connection behaves as `agreed` says
    /// (`peer_shift`: the shift the peer announced, if it did).
    fn check_behaviour(&mut self, h: TcpHandle, peer_shift: u8, case: &str) {
        let agreed = self.agreed;
        // Out-of-order data: an immediate duplicate ACK, with a SACK block
        // for it exactly when SACK was agreed (RFC 2018 §4, RFC 5681 §4.2).
        let base = self.seq;
        self.now += Duration::from_millis(10);
        self.send_at(ACK | PSH, base + 1000, PEER_WINDOW, TcpOptions::default(), &[1u8; 100]);
        let dup = self.recv_one();
        assert_eq!(dup.ack, base, "{case}: {dup:?}");
        let want: &[(SeqNum, SeqNum)] = if agreed.sack {
            &[(base + 1000, base + 1100)]
        } else {
            &[]
        };
        assert_eq!(dup.options.sack.as_slice(), want, "{case}: SACK blocks of {dup:?}");
        self.check_window(&dup, 0, case);
        // The hole fills: the ACK covers both, no SACK block is left.
        self.send_next(ACK | PSH, &[0u8; 1000]);
        self.seq += 100;
        let filled = self.recv_one();
        assert_eq!(filled.ack, base + 1100, "{case}: {filled:?}");
        assert!(filled.options.sack.is_empty(), "{case}: {filled:?}");
        self.check_window(&filled, 1100, case);
        let mut buf = [0u8; 2000];
        assert_eq!(self.i.tcp(self.now).recv(h, &mut buf), Ok(1100), "{case}");

        // The peer's window of PEER_WINDOW in its last segments is scaled
        // by its shift only if scaling was agreed (RFC 7323 §2.2, §2.3).
        let peer_window = usize::from(PEER_WINDOW) << if agreed.ws { peer_shift } else { 0 };
        self.i.tcp(self.now).set_nodelay(h, true);
        let queued = self.i.tcp(self.now).send(h, &[9u8; 20_000]).expect("send");
        assert!(
            queued > 2 * usize::from(PEER_WINDOW),
            "{case}: only {queued} bytes queued"
        );
        let flight: usize = self.recv().iter().map(|s| s.payload_len).sum();
        assert!(
            flight <= peer_window,
            "{case}: {flight} bytes sent into a window of {peer_window}"
        );
        if agreed.ws {
            assert!(
                flight > usize::from(PEER_WINDOW),
                "{case}: {flight} bytes sent: the window {PEER_WINDOW} << {peer_shift} was not scaled"
            );
        }

        // Timestamps on every segment after the SYN, echoing the peer's TSval, exactly when agreed (RFC 7323 §3.2).
        for s in self.sent.iter().filter(|s| s.flags & SYN == 0) {
            match s.options.timestamps {
                Some((_, echo)) => {
                    assert!(agreed.ts, "{case}: timestamps though not agreed: {s:?}");
                    assert!(self.tsvals.contains(&echo), "{case}: TSecr {echo} never sent: {s:?}");
                }
                None => assert!(!agreed.ts, "{case}: a segment without timestamps: {s:?}"),
            }
            assert!(
                s.options.mss.is_none() && s.options.window_scale.is_none() && !s.options.sack_permitted,
                "{case}: SYN-only options after the SYN: {s:?}"
            );
        }
    }

    /// Our window field, scaled by our shift only if scaling was agreed:
    /// the first window we announced (64 KiB of free buffer; 65535 bytes
    /// unscaled) less the `held` bytes that arrived since, in whole units of
    /// the scale (the right edge stays where it was, RFC 7323 §2.4).
    fn check_window(&self, s: &Seg, held: usize, case: &str) {
        let shift = if self.agreed.ws { OUR_SHIFT } else { 0 };
        let first = if self.agreed.ws { 64 << 10 } else { 65535 };
        let expect = (first - held).div_ceil(1 << shift) << shift;
        let window = usize::from(s.window) << shift;
        assert_eq!(window, expect, "{case}: window field {} of {s:?}", s.window);
    }
}

/// RFC 7323 §2.2, §3.2; RFC 2018 §2: our SYN-ACK carries window scale,
/// timestamps (echoing the SYN's TSval) and SACK-permitted exactly when
/// the peer's SYN offered them and our config allows them, and the
/// connection then uses exactly those. Every subset the peer may offer,
/// under every config.
#[test]
fn syn_ack_answers_exactly_what_the_syn_offered_and_the_config_allows() {
    for ours in our_configs() {
        for offer in Opts::all() {
            let case = format!("config {ours:?}, peer offers {offer:?}");
            let mut p = Peer::new(ours);
            let first_tsval = p.tsval + 1;
            let (synack, h) = p.passive(offer);
            let want = ours.and(offer);
            assert_eq!(p.agreed, want, "{case}: SYN-ACK {synack:?}");
            assert_eq!(synack.options.window_scale, want.ws.then_some(OUR_SHIFT), "{case}");
            if want.ts {
                let (value, echo) = synack.options.timestamps.expect("checked");
                assert_eq!(echo, first_tsval, "{case}: TSecr echoes the SYN's TSval");
                assert_ne!(value, 0, "{case}");
            }
            assert_eq!(synack.options.mss, Some(1460), "{case}");
            assert_eq!(synack.window, 65535, "{case}: the SYN-ACK's window is never scaled");
            p.check_behaviour(h, PEER_SHIFT_SYN, &case);
        }
    }
}

/// RFC 7323 §2.2, §3.2; RFC 2018 §2: our SYN offers window scaling always,
/// SACK-permitted and timestamps as the config says; what the SYN-ACK
/// answers decides. An answer to an option we did not offer (a broken
/// peer) is ignored: the option is not used.
#[test]
fn syn_offers_what_the_config_allows_and_the_syn_ack_decides() {
    for ours in our_configs() {
        for answer in Opts::all() {
            let case = format!("config {ours:?}, peer answers {answer:?}");
            let mut p = Peer::new(ours);
            let (syn, h) = p.active(answer);
            assert_eq!(syn.options.window_scale, Some(OUR_SHIFT), "{case}: {syn:?}");
            assert_eq!(syn.options.sack_permitted, ours.sack, "{case}: {syn:?}");
            assert_eq!(
                syn.options.timestamps.map(|(_, echo)| echo),
                ours.ts.then_some(0),
                "{case}: {syn:?}"
            );
            assert_eq!(syn.options.mss, Some(1460), "{case}");
            assert!(syn.options.sack.is_empty(), "{case}");
            assert_eq!(syn.window, 65535, "{case}: the SYN's window is never scaled");
            assert_eq!(p.agreed, ours.and(answer), "{case}");
            p.check_behaviour(h, PEER_SHIFT_SYN_ACK, &case);
        }
    }
}

/// Simultaneous open (RFC 9293 §3.5, RFC 7323 §2.2, §3.2): the SYNs cross,
/// each side's SYN is its offer, and an option holds when both SYNs carry
/// it; our SYN-ACK answers only what the peer's SYN offered, and the
/// peer's SYN-ACK repeats its SYN's options, as Linux's does.
#[test]
fn simultaneous_open_agrees_on_what_both_syns_carry() {
    for offer in Opts::all() {
        let case = format!("simultaneous open, peer offers {offer:?}");
        let all = Opts {
            sack: true,
            ts: true,
            ws: true,
        };
        let mut p = Peer::new(all);
        let h =
            p.i.tcp(p.now)
                .connect(SocketAddrV4::new(PEER, PEER_PORT), PORT)
                .expect("connect");
        let syn = p.recv_one();
        assert_eq!(syn.flags, SYN, "{case}: {syn:?}");
        p.echo = syn.options.timestamps.map_or(0, |(v, _)| v);
        p.now += Duration::from_millis(10);
        let options = p.syn_options(offer, PEER_SHIFT_SYN);
        let seq = p.seq;
        p.send_at(SYN, seq, PEER_WINDOW, options, b"");
        let synack = p.recv_one();
        assert_eq!(synack.flags, SYN | ACK, "{case}: {synack:?}");
        assert_eq!(synack.seq, syn.seq, "{case}: {synack:?}");
        let answered = Opts {
            sack: synack.options.sack_permitted,
            ts: synack.options.timestamps.is_some(),
            ws: synack.options.window_scale.is_some(),
        };
        assert_eq!(answered, offer, "{case}: our SYN-ACK {synack:?}");
        p.ack = syn.seq + 1;
        p.agreed = offer;
        p.now += Duration::from_millis(10);
        let options = p.syn_options(offer, PEER_SHIFT_SYN);
        p.send_at(SYN | ACK, seq, PEER_WINDOW, options, b"");
        p.seq += 1;
        p.recv();
        assert!(p.i.tcp_layer().connect_done(h), "{case}");
        p.check_behaviour(h, PEER_SHIFT_SYN, &case);
    }
}

// ---------------------------------------------------------------------------
// Interop with smoltcp over the simulated link, for each combination.

#[path = "common/smol_sim.rs"]
mod smol_sim;

use smol_sim::SmolEndpoint;
use tunstack_tests::sim::{ADDR_A, ADDR_B, Endpoint, Recv, TcpEndpoint, TransferSpec, TunstackEndpoint, run_transfer};

/// One side of the link, its packets recorded; the SYN it sends loses the
/// window-scale option when `strip_ws` (a middlebox that strips it: neither
/// tunstack nor smoltcp 0.14 can be told not to offer window scaling).
struct Tap<E> {
    inner: E,
    strip_ws: bool,
    sent: Vec<Seg>,
}

impl<E> Tap<E> {
    fn new(inner: E, strip_ws: bool) -> Tap<E> {
        Tap {
            inner,
            strip_ws,
            sent: Vec::new(),
        }
    }

    /// Records `pkt` (an IPv4 TCP segment), rewritten if it is a SYN to strip.
    fn pass(&mut self, pkt: Vec<u8>) -> Vec<u8> {
        let seg = Seg::of(&pkt);
        let strip = self.strip_ws && seg.flags & (SYN | ACK) == SYN;
        if !strip {
            self.sent.push(seg);
            return pkt;
        }
        let p = Ipv4Packet::parse(&pkt).expect("valid IP");
        let s = TcpSegment::parse(p.payload(), p.header.src, p.header.dst).expect("valid TCP");
        let stripped = TcpSegment {
            options: TcpOptions {
                window_scale: None,
                ..s.options
            },
            ..s
        };
        let out = packet(&stripped, p.header.src, p.header.dst, p.header.ident);
        self.sent.push(Seg::of(&out));
        out
    }
}

/// The SYNs (or SYN-ACKs, by `f`) among `sent`; at least one.
fn syns(sent: &[Seg], f: u8) -> Vec<&Seg> {
    let syns: Vec<&Seg> = sent.iter().filter(|s| s.flags & (SYN | ACK) == f).collect();
    assert!(
        !syns.is_empty(),
        "no segment with flags {f:#x} among {:?}",
        sent.first()
    );
    syns
}

/// Segments after the handshake (no SYN, no RST) among `sent`.
fn later(sent: &[Seg]) -> impl Iterator<Item = &Seg> {
    sent.iter().filter(|s| s.flags & (SYN | flags::RST) == 0)
}

impl<E: Endpoint> Endpoint for Tap<E> {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.inner.handle_packet(now, packet);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
    }
    fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.inner.poll_timeout(now)
    }
    fn poll_transmit(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        let mut mine = Vec::new();
        self.inner.poll_transmit(now, &mut mine);
        out.extend(mine.into_iter().map(|p| self.pass(p)));
    }
}

impl<E: TcpEndpoint> TcpEndpoint for Tap<E> {
    fn listen(&mut self, now: Instant, port: u16) -> Result<(), String> {
        self.inner.listen(now, port)
    }
    fn connect(&mut self, now: Instant, remote: SocketAddrV4, local_port: u16) -> Result<(), String> {
        self.inner.connect(now, remote, local_port)
    }
    fn ready(&mut self, now: Instant) -> Result<bool, String> {
        self.inner.ready(now)
    }
    fn send(&mut self, now: Instant, data: &[u8]) -> Result<usize, String> {
        self.inner.send(now, data)
    }
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Recv, String> {
        self.inner.recv(now, buf)
    }
    fn shutdown_write(&mut self, now: Instant) -> Result<(), String> {
        self.inner.shutdown_write(now)
    }
    fn close(&mut self, now: Instant) -> Result<(), String> {
        self.inner.close(now)
    }
    fn states(&self) -> Vec<tunstack::tcp::State> {
        self.inner.states()
    }
    fn connections(&self) -> usize {
        self.inner.connections()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Who turns timestamps off when a case wants them off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decliner {
    /// tunstack's config (`TcpConfig::timestamps = false`).
    Tunstack,
    /// smoltcp (no TSval generator).
    Smoltcp,
}

/// One interop case: who connects, what is to be negotiated, and how.
#[derive(Clone, Copy, Debug)]
struct InteropCase {
    tunstack_client: bool,
    want: Opts,
    /// Timestamps off by whom (both sides want them when `want.ts`).
    ts_off_by: Decliner,
}

/// smoltcp's receive buffer: over 64 KiB, so it scales its window when
/// scaling is agreed (smoltcp 0.14: the shift makes the buffer's bit length 16).
const SMOL_RX: usize = 128 << 10;
const SMOL_SHIFT: u8 = 2;

/// Every combination both ways. SACK off is tunstack's config: smoltcp 0.14
/// always offers SACK-permitted and answers it whenever offered. Window
/// scaling off is the client's SYN losing the option on the way. Timestamps
/// off alternate between the two sides' settings.
fn interop_cases() -> Vec<InteropCase> {
    let mut cases = Vec::new();
    for tunstack_client in [true, false] {
        for want in Opts::all() {
            let ts_off_by = if want.sack == want.ws {
                Decliner::Tunstack
            } else {
                Decliner::Smoltcp
            };
            cases.push(InteropCase {
                tunstack_client,
                want,
                ts_off_by,
            });
        }
    }
    cases
}

/// Runs `case` over a link with 2% loss and 1% reordering each way, both
/// sides sending at once; the transfer must be byte-exact and close
/// cleanly, and the handshake and every segment after it show exactly the
/// options the case wants.
fn run_interop(case: InteropCase, seed: u64) -> Result<(), String> {
    let mut spec = TransferSpec::new(seed);
    spec.link.loss = 0.02;
    spec.link.reorder = 0.01;
    spec.link.latency = Duration::from_millis(5);
    spec.a_to_b = 150_000;
    spec.b_to_a = 120_000;
    let want = case.want;
    let (ours, theirs) = if case.tunstack_client {
        (ADDR_A, ADDR_B)
    } else {
        (ADDR_B, ADDR_A)
    };
    let mut c = TunstackEndpoint::config(ours, seed * 2, &spec);
    c.tcp.sack = want.sack;
    let our_ts = want.ts || case.ts_off_by == Decliner::Smoltcp;
    let smol_ts = want.ts || case.ts_off_by == Decliner::Tunstack;
    c.tcp.timestamps = our_ts;
    let mut us = Tap::new(
        TunstackEndpoint::new(Interface::new(c)),
        case.tunstack_client && !want.ws,
    );
    let smol_spec = TransferSpec {
        recv_buffer: Some(SMOL_RX),
        ..spec.clone()
    };
    let mut smol = SmolEndpoint::new(theirs, seed * 2 + 1, &smol_spec);
    if smol_ts {
        smol.enable_timestamps();
    }
    let mut them = Tap::new(smol, !case.tunstack_client && !want.ws);
    let report = if case.tunstack_client {
        run_transfer(&spec, &mut us, &mut them)
    } else {
        run_transfer(&spec, &mut them, &mut us)
    }?;
    if report.link.lost == 0 {
        return Err(format!("the link lost nothing: {:?}", report.link));
    }
    // Data that reached tunstack out of order is what SACK blocks report.
    let reordered_at_us = us.describe().contains("tcp_rx_out_of_order=");
    let (us, them) = (&us.sent[..], &them.sent[..]);
    let (client, server) = if case.tunstack_client { (us, them) } else { (them, us) };
    // The client's SYN offers what the case lets it; the SYN-ACK answers what was agreed.
    for syn in syns(client, SYN) {
        let offered_ts = if case.tunstack_client { our_ts } else { smol_ts };
        let o = &syn.options;
        if o.window_scale.is_some() != want.ws
            || o.timestamps.is_some() != offered_ts
            || (case.tunstack_client && o.sack_permitted != want.sack)
        {
            return Err(format!("the client's SYN offers {o:?}"));
        }
    }
    for synack in syns(server, SYN | ACK) {
        let o = &synack.options;
        let agreed = Opts {
            sack: o.sack_permitted,
            ts: o.timestamps.is_some(),
            ws: o.window_scale.is_some(),
        };
        if agreed != want {
            return Err(format!("the SYN-ACK answers {agreed:?}: {o:?}"));
        }
    }
    // Window scales: smoltcp's follows its buffer, ours the 6 MiB cap.
    let (smol_syn, our_syn) = if case.tunstack_client {
        (syns(them, SYN | ACK)[0], syns(us, SYN)[0])
    } else {
        (syns(them, SYN)[0], syns(us, SYN | ACK)[0])
    };
    if want.ws && (smol_syn.options.window_scale, our_syn.options.window_scale) != (Some(SMOL_SHIFT), Some(OUR_SHIFT)) {
        return Err(format!("window scales: smoltcp {smol_syn:?}, tunstack {our_syn:?}"));
    }
    // Every later segment of either side carries timestamps exactly when
    // agreed, and SACK blocks only when agreed; tunstack reports the losses
    // of a lossy link in SACK blocks when it may.
    for (name, side) in [("tunstack", us), ("smoltcp", them)] {
        if let Some(s) = later(side).find(|s| s.options.timestamps.is_some() != want.ts) {
            return Err(format!("{name} sent, with timestamps agreed {}: {s:?}", want.ts));
        }
        if let Some(s) = later(side).find(|s| !want.sack && !s.options.sack.is_empty()) {
            return Err(format!("{name} sent SACK blocks without SACK agreed: {s:?}"));
        }
    }
    if want.sack && reordered_at_us && !later(us).any(|s| !s.options.sack.is_empty()) {
        return Err("tunstack received data out of order with SACK agreed and sent no SACK block".into());
    }
    // Our first window after the handshake, read with the agreed shift, is
    // the initial 64 KiB buffer, less what arrived: scaled exactly when agreed.
    let first = later(us).next().expect("tunstack sent segments");
    let shift = if want.ws { OUR_SHIFT } else { 0 };
    let window = usize::from(first.window) << shift;
    println!(
        "{case:?}: ok in {} simulated, {} lost, {} reordered; SACK blocks from tunstack {}, from smoltcp {}",
        report.sim_time,
        report.link.lost,
        report.link.reordered,
        later(us).filter(|s| !s.options.sack.is_empty()).count(),
        later(them).filter(|s| !s.options.sack.is_empty()).count()
    );
    if !(32 << 10..=64 << 10).contains(&window) {
        return Err(format!(
            "tunstack's first window {window} (field {}, shift {shift}): {first:?}",
            first.window
        ));
    }
    Ok(())
}

/// Interop with smoltcp 0.14 for each combination of SACK, timestamps and
/// window scaling, both ways, over a lossy reordering link: negotiated as
/// the settings say, used as negotiated, and the transfer byte-exact.
#[test]
fn every_option_combination_interoperates_with_smoltcp() {
    let mut failures = Vec::new();
    for (i, case) in interop_cases().into_iter().enumerate() {
        let seed = 500 + i as u64;
        if let Err(e) = run_interop(case, seed) {
            failures.push(format!("{case:?} (seed {seed}): {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
