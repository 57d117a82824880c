//! Segment-level TCP tests: one rule each, named after it. A scripted peer
//! (the host, 10.200.0.1) sends crafted segments; we check the replies.

use super::tcb::{ConnError, IDLE_RELEASE, MAX_QUICK_ACKS, State};
use super::*;
use crate::iface::Interface;
use crate::testutil::{HOST, US, config, ip_packet};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::seq::SeqNum;
use crate::wire::tcp::{TcpOptions, TcpSegment, flags};

const PEER_PORT: u16 = 40000;
const PORT: u16 = 7;
const ACK: u8 = flags::ACK;
const SYN: u8 = flags::SYN;
const RST: u8 = flags::RST;
const FIN: u8 = flags::FIN;
const PSH: u8 = flags::PSH;

/// A segment as the peer saw it.
#[derive(Clone, Debug)]
struct Seg {
    flags: u8,
    seq: SeqNum,
    ack: SeqNum,
    window: u16,
    options: TcpOptions,
    payload: Vec<u8>,
}

impl Seg {
    fn is(&self, f: u8) -> bool {
        self.flags & !PSH == f
    }
}

struct Peer {
    i: Interface,
    now: Instant,
    /// The peer's next sequence number and what it acknowledges.
    seq: SeqNum,
    ack: SeqNum,
    port: u16,
}

impl Peer {
    fn new() -> Peer {
        Peer::with(|_| {})
    }

    fn with(f: impl FnOnce(&mut crate::iface::Config)) -> Peer {
        let mut c = config();
        c.tcp.msl = Duration::from_secs(1);
        f(&mut c);
        Peer {
            i: Interface::new(c),
            now: Instant::from_secs(100),
            seq: SeqNum(1000),
            ack: SeqNum(0),
            port: PEER_PORT,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.i.handle_timeout(self.now);
    }

    /// Sends a segment from the peer.
    fn send_opts(&mut self, f: u8, seq: SeqNum, ack: SeqNum, window: u16, options: TcpOptions, payload: &[u8]) {
        let mut tcp = Vec::new();
        let seg = TcpSegment {
            src_port: self.port,
            dst_port: PORT,
            seq,
            ack,
            flags: f,
            window,
            options,
            payload,
        };
        seg.emit(&mut tcp, HOST, US);
        let pkt = ip_packet(HOST, US, crate::ip::protocol::TCP, 1, &tcp);
        self.i.handle_packet(self.now, &pkt);
    }

    fn send(&mut self, f: u8, seq: SeqNum, ack: SeqNum, payload: &[u8]) {
        self.send_opts(f, seq, ack, 65535, TcpOptions::default(), payload);
    }

    /// Sends at the peer's current seq/ack and advances seq past it.
    fn send_next(&mut self, f: u8, payload: &[u8]) {
        let (seq, ack) = (self.seq, self.ack);
        self.send(f, seq, ack, payload);
        self.seq += payload.len() as u32 + u32::from(f & (SYN | FIN) != 0);
    }

    /// Ends the quick-ACK mode of a connection's start, for tests of the
    /// steady-state ACK rules.
    fn end_quick_acks(&mut self, h: TcpHandle) {
        self.i.tcp_layer_mut().conns.get_mut(h.0).expect("live").quick_acks = 0;
    }

    /// Sends the full-sized segments a new connection acknowledges one by
    /// one (quick-ACK mode), checking each ACK.
    fn through_quick_acks(&mut self) {
        for i in 0..MAX_QUICK_ACKS {
            self.send_next(ACK, &[i; 1460]);
            assert_eq!(self.recv_one().ack, self.seq, "quick ACK {i}");
        }
    }

    /// Everything the stack sent, as TCP segments.
    fn recv(&mut self) -> Vec<Seg> {
        let mut buf = vec![0u8; 66000];
        let mut out = Vec::new();
        while let Some(n) = self.i.poll_transmit(self.now, &mut buf) {
            let p = Ipv4Packet::parse(&buf[..n]).expect("valid IP");
            if p.header.protocol != crate::ip::protocol::TCP {
                continue;
            }
            let s = TcpSegment::parse(p.payload(), p.header.src, p.header.dst).expect("valid TCP");
            out.push(Seg {
                flags: s.flags,
                seq: s.seq,
                ack: s.ack,
                window: s.window,
                options: s.options,
                payload: s.payload.to_vec(),
            });
        }
        out
    }

    fn recv_one(&mut self) -> Seg {
        let mut segs = self.recv();
        assert_eq!(segs.len(), 1, "expected one segment, got {segs:?}");
        segs.remove(0)
    }

    /// A listener on PORT.
    fn listen(&mut self, backlog: usize) -> ListenerHandle {
        self.i
            .tcp(self.now)
            .listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT), backlog)
            .unwrap()
    }

    /// Shuts down our sending side and returns our FIN, unacknowledged.
    fn our_fin(&mut self, h: TcpHandle) -> Seg {
        self.i.tcp(self.now).shutdown(h, Shutdown::Write).unwrap();
        let fin = self.recv_one();
        assert!(fin.is(FIN | ACK), "{fin:?}");
        fin
    }

    /// A listener on PORT and a connection accepted from it, handshake done.
    fn established_passive(&mut self) -> (ListenerHandle, TcpHandle) {
        let l = self.listen(8);
        let h = self.handshake_to(l);
        (l, h)
    }

    /// Runs a handshake to listener `l` from the peer's current port and accepts it.
    fn handshake_to(&mut self, l: ListenerHandle) -> TcpHandle {
        self.send_next(SYN, b"");
        let synack = self.recv_one();
        assert!(synack.is(SYN | ACK), "{synack:?}");
        assert_eq!(synack.ack, self.seq);
        self.ack = synack.seq + 1;
        self.send_next(ACK, b"");
        assert!(self.recv().is_empty());
        let (h, remote) = self.i.tcp(self.now).accept(l).expect("accept queue has it");
        assert_eq!(remote, SocketAddrV4::new(HOST, self.port));
        h
    }

    /// A connection we opened to the peer, handshake done.
    fn established_active(&mut self) -> TcpHandle {
        let port = self.port;
        self.established_active_on(port)
    }

    /// A connection we opened to the peer's `port`, handshake done.
    fn established_active_on(&mut self, port: u16) -> TcpHandle {
        self.port = port;
        let h = self
            .i
            .tcp(self.now)
            .connect(SocketAddrV4::new(HOST, self.port), PORT)
            .unwrap();
        let syn = self.recv_one();
        assert!(syn.is(SYN));
        self.ack = syn.seq + 1;
        let (seq, ack) = (self.seq, self.ack);
        self.send_opts(
            SYN | ACK,
            seq,
            ack,
            65535,
            TcpOptions {
                mss: Some(1460),
                ..TcpOptions::default()
            },
            b"",
        );
        self.seq += 1;
        let a = self.recv_one();
        assert!(a.is(ACK));
        assert_eq!(self.i.tcp_layer().state(h), State::Established);
        h
    }

    fn read_all(&mut self, h: TcpHandle) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.i.tcp(self.now).recv(h, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

#[test]
fn syn_to_closed_port_draws_rst_ack_acknowledging_the_syn() {
    let mut p = Peer::new();
    p.send(SYN, SeqNum(5000), SeqNum(0), b"");
    let r = p.recv_one();
    assert!(r.is(RST | ACK));
    assert_eq!((r.seq, r.ack), (SeqNum(0), SeqNum(5001)));
    assert_eq!(p.i.stats().tcp_no_socket, 1);
}

#[test]
fn ack_to_closed_port_draws_rst_with_seq_of_the_ack() {
    let mut p = Peer::new();
    p.send(ACK, SeqNum(5000), SeqNum(777), b"data");
    let r = p.recv_one();
    assert!(r.is(RST));
    assert_eq!(r.seq, SeqNum(777));
}

#[test]
fn rst_is_never_answered_with_rst() {
    let mut p = Peer::new();
    p.send(RST, SeqNum(5000), SeqNum(0), b"");
    p.send(RST | ACK, SeqNum(5000), SeqNum(9), b"");
    assert!(p.recv().is_empty());
    let (_l, _h) = p.established_passive();
    p.send(RST, p.seq + 100_000_000, SeqNum(0), b"");
    assert!(p.recv().is_empty(), "out-of-window RST: silently dropped");
}

#[test]
fn listen_ack_draws_rst() {
    let mut p = Peer::new();
    p.listen(8);
    p.send(ACK, SeqNum(5000), SeqNum(4242), b"");
    let r = p.recv_one();
    assert!(r.is(RST));
    assert_eq!(r.seq, SeqNum(4242));
}

#[test]
fn passive_open_three_way_handshake_with_mss_option() {
    let mut p = Peer::new();
    let l = p.listen(8);
    p.send_next(SYN, b"");
    let synack = p.recv_one();
    assert!(synack.is(SYN | ACK));
    assert_eq!(synack.options.mss, Some(1460), "MTU 1500 - 40");
    assert_eq!(
        synack.options.window_scale, None,
        "no scaling unless the SYN offered it"
    );
    assert!(
        p.i.tcp(p.now).accept(l).is_none(),
        "not accepted before the handshake completes"
    );
    p.ack = synack.seq + 1;
    p.send_next(ACK, b"");
    let (h, _) = p.i.tcp(p.now).accept(l).unwrap();
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
    let s = p.i.stats();
    assert_eq!(
        (s.tcp_passive_opens, s.tcp_active_opens),
        (1, 0),
        "Linux's PassiveOpens"
    );
}

#[test]
fn peer_without_mss_option_gets_536_byte_segments() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, &[7u8; 2000]).unwrap();
    let segs = p.recv();
    assert!(
        segs.iter().all(|s| s.payload.len() <= 536),
        "{:?}",
        segs.iter().map(|s| s.payload.len()).collect::<Vec<_>>()
    );
    assert_eq!(segs.iter().map(|s| s.payload.len()).sum::<usize>(), 2000);
}

#[test]
fn active_open_handshake_and_data() {
    let mut p = Peer::new();
    let h = p.established_active();
    p.i.tcp(p.now).send(h, b"hello").unwrap();
    let d = p.recv_one();
    assert_eq!(d.payload, b"hello");
    assert_eq!(d.ack, p.seq);
    let s = p.i.stats();
    assert_eq!((s.tcp_active_opens, s.tcp_passive_opens), (1, 0), "Linux's ActiveOpens");
}

#[test]
fn syn_sent_rst_with_acceptable_ack_is_connection_refused() {
    let mut p = Peer::new();
    let h =
        p.i.tcp(p.now)
            .connect(SocketAddrV4::new(HOST, PEER_PORT), PORT)
            .unwrap();
    let syn = p.recv_one();
    p.send(RST | ACK, SeqNum(0), syn.seq + 1, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::Closed);
    assert_eq!(p.i.tcp_layer().error(h), Some(ConnError::Refused));
}

#[test]
fn syn_sent_rst_with_bad_ack_is_ignored_and_bad_ack_draws_rst() {
    let mut p = Peer::new();
    let h =
        p.i.tcp(p.now)
            .connect(SocketAddrV4::new(HOST, PEER_PORT), PORT)
            .unwrap();
    let syn = p.recv_one();
    p.send(RST | ACK, SeqNum(0), syn.seq + 5, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::SynSent);
    p.send(SYN | ACK, SeqNum(9), syn.seq + 5, b"");
    let r = p.recv_one();
    assert!(r.is(RST));
    assert_eq!(r.seq, syn.seq + 5);
    assert_eq!(p.i.tcp_layer().state(h), State::SynSent);
}

#[test]
fn simultaneous_open_goes_through_syn_received() {
    let mut p = Peer::new();
    let h =
        p.i.tcp(p.now)
            .connect(SocketAddrV4::new(HOST, PEER_PORT), PORT)
            .unwrap();
    let syn = p.recv_one();
    p.send_next(SYN, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::SynReceived);
    let synack = p.recv_one();
    assert!(synack.is(SYN | ACK));
    assert_eq!(synack.seq, syn.seq);
    p.ack = syn.seq + 1;
    p.send_next(ACK, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
}

#[test]
fn rfc5961_rst_at_exactly_rcv_nxt_resets() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    let seq = p.seq;
    p.send(RST, seq, SeqNum(0), b"");
    assert_eq!(p.i.tcp_layer().state(h), State::Closed);
    assert_eq!(p.i.tcp_layer().error(h), Some(ConnError::Reset));
}

#[test]
fn rfc5961_rst_in_window_draws_challenge_ack() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    let seq = p.seq + 100;
    p.send(RST, seq, SeqNum(0), b"");
    let c = p.recv_one();
    assert!(c.is(ACK));
    assert_eq!((c.seq, c.ack), (p.ack, p.seq), "challenge ACK names RCV.NXT");
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
    assert_eq!(p.i.stats().tcp_challenge_acks, 1);
}

#[test]
fn rfc5961_syn_on_established_draws_challenge_ack() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    for seq in [p.seq, p.seq + 5000, SeqNum(1)] {
        p.advance(Duration::from_secs(1));
        p.send(SYN, seq, SeqNum(0), b"");
        let c = p.recv_one();
        assert!(c.is(ACK), "{c:?}");
        assert_eq!(c.ack, p.seq);
    }
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
}

#[test]
fn rfc5961_ack_for_data_never_sent_is_answered_and_dropped() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    let (seq, bogus) = (p.seq, p.ack + 100_000);
    p.send(ACK, seq, bogus, b"data");
    let a = p.recv_one();
    assert!(a.is(ACK));
    assert_eq!(a.ack, p.seq, "the data was not taken");
    assert_eq!(p.i.tcp_layer().recv_queue(h), 0);
    assert_eq!(p.i.stats().tcp_ack_too_new, 1);
}

#[test]
fn rfc5961_challenge_acks_are_rate_limited() {
    let mut p = Peer::new();
    let (_l, _h) = p.established_passive();
    for n in 0..10 {
        let seq = p.seq + 10 + n;
        p.send(RST, seq, SeqNum(0), b"");
    }
    assert_eq!(p.recv().len(), 1, "one per 500 ms per connection");
    p.advance(Duration::from_millis(600));
    let seq = p.seq + 10;
    p.send(RST, seq, SeqNum(0), b"");
    assert_eq!(p.recv().len(), 1);
    assert_eq!(p.i.stats().tcp_challenge_acks_limited, 9);
}

#[test]
fn out_of_window_data_draws_ack_and_is_dropped() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    let (seq, ack) = (p.seq + 2_000_000, p.ack);
    p.send(ACK, seq, ack, b"far away");
    let a = p.recv_one();
    assert!(a.is(ACK));
    assert_eq!(a.ack, p.seq);
    assert_eq!(p.i.tcp_layer().recv_queue(h), 0);
}

#[test]
fn syn_received_with_bad_ack_draws_rst() {
    let mut p = Peer::new();
    let l = p.listen(8);
    p.send_next(SYN, b"");
    let synack = p.recv_one();
    p.send(ACK, p.seq, synack.seq + 1000, b"");
    let r = p.recv_one();
    assert!(r.is(RST));
    assert_eq!(r.seq, synack.seq + 1000);
    assert!(p.i.tcp(p.now).accept(l).is_none());
    // The right ACK still completes the handshake.
    p.send(ACK, p.seq, synack.seq + 1, b"");
    assert!(p.i.tcp(p.now).accept(l).is_some());
}

#[test]
fn syn_received_retransmits_syn_ack_for_a_repeated_syn() {
    let mut p = Peer::new();
    p.listen(8);
    p.send(SYN, SeqNum(1000), SeqNum(0), b"");
    let a = p.recv_one();
    p.send(SYN, SeqNum(1000), SeqNum(0), b"");
    let b = p.recv_one();
    assert!(b.is(SYN | ACK));
    assert_eq!(a.seq, b.seq);
}

#[test]
fn active_close_passes_time_wait_which_reacks_a_retransmitted_fin() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).close(h, false);
    let fin = p.recv_one();
    assert!(fin.is(FIN | ACK));
    p.ack = fin.seq + 1;
    p.send_next(ACK, b"");
    assert!(p.recv().is_empty());
    p.send_next(FIN | ACK, b"");
    let a = p.recv_one();
    assert!(a.is(ACK));
    assert_eq!(a.ack, p.seq);
    let states: Vec<State> = p.i.tcp_layer().sockets().iter().map(|s| s.state).collect();
    assert!(states.contains(&State::TimeWait), "{states:?}");
    // The peer lost our ACK and sends FIN again: it is acknowledged again.
    p.advance(Duration::from_millis(500));
    let (seq, ack) = (p.seq - 1, p.ack);
    p.send(FIN | ACK, seq, ack, b"");
    let again = p.recv_one();
    assert!(again.is(ACK));
    assert_eq!(again.ack, p.seq);
    // TIME-WAIT lasts 2×MSL (2 s here) from the last FIN.
    p.advance(Duration::from_millis(1900));
    assert_eq!(p.i.tcp_layer().connection_count(), 1);
    p.advance(Duration::from_millis(200));
    assert_eq!(p.i.tcp_layer().connection_count(), 0, "released after 2×MSL");
}

#[test]
fn passive_close_goes_close_wait_last_ack_closed() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.send_next(FIN | ACK, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::CloseWait);
    assert_eq!(p.recv_one().ack, p.seq);
    assert_eq!(p.read_all(h), b"", "end of stream");
    p.i.tcp(p.now).close(h, false);
    let fin = p.recv_one();
    assert!(fin.is(FIN | ACK));
    p.ack = fin.seq + 1;
    p.send_next(ACK, b"");
    assert_eq!(p.i.tcp_layer().connection_count(), 0);
}

#[test]
fn simultaneous_close_goes_through_closing() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    let fin = p.our_fin(h);
    // Our FIN crosses the peer's FIN.
    p.send_next(FIN | ACK, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::Closing);
    let a = p.recv_one();
    assert_eq!(a.ack, p.seq);
    p.ack = fin.seq + 1;
    p.send_next(ACK, b"");
    assert_eq!(p.i.tcp_layer().time_wait_count(), 1, "in TIME-WAIT");
    assert_eq!(p.i.tcp_layer().state(h), State::Closed, "for the application, as Linux");
}

#[test]
fn half_close_still_receives() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    let fin = p.our_fin(h);
    p.ack = fin.seq + 1;
    p.send_next(ACK, b"more data");
    assert_eq!(p.i.tcp_layer().state(h), State::FinWait2);
    assert_eq!(p.read_all(h), b"more data");
    assert_eq!(p.i.tcp(p.now).send(h, b"x"), Err(IoError::BrokenPipe));
}

#[test]
fn out_of_order_segment_draws_immediate_duplicate_ack_then_reassembles() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    let (base, ack) = (p.seq, p.ack);
    p.send(ACK, base + 10, ack, b"klmnopqrst");
    let d1 = p.recv_one();
    assert_eq!(d1.ack, base, "duplicate ACK for the hole");
    p.send(ACK, base + 30, ack, b"EFG");
    assert_eq!(p.recv_one().ack, base);
    p.send(ACK, base, ack, b"abcdefghij");
    let a = p.recv_one();
    assert_eq!(a.ack, base + 20, "hole filled: immediate ACK");
    p.send(ACK, base + 20, ack, b"uvwxyzABCD");
    assert_eq!(p.recv_one().ack, base + 33);
    assert_eq!(p.read_all(h), b"abcdefghijklmnopqrstuvwxyzABCDEFG");
    assert!(p.i.stats().tcp_rx_out_of_order >= 2);
}

#[test]
fn delayed_ack_waits_at_most_40ms_but_every_second_full_segment_is_acked() {
    let mut p = Peer::new();
    let (_l, _h) = p.established_passive();
    p.send_next(ACK, b"small");
    assert!(p.recv().is_empty(), "one small segment: ACK delayed");
    p.advance(Duration::from_millis(39));
    assert!(p.recv().is_empty());
    p.advance(Duration::from_millis(1));
    assert_eq!(p.recv_one().ack, p.seq);
    p.through_quick_acks();
    p.send_next(ACK, &[1u8; 1460]);
    assert!(p.recv().is_empty());
    p.send_next(ACK, &[2u8; 1460]);
    assert_eq!(p.recv_one().ack, p.seq, "second full-sized segment: ACK now");
}

/// Segments are built as the link's queue drains, not a whole window at
/// once: a connection stops at `BUILD_AHEAD` queued datagrams and goes on,
/// in turn with others, when `poll_transmit` empties the queue. Nothing is
/// dropped for a full queue.
#[test]
fn segments_are_built_as_the_queue_drains_with_connections_in_turn() {
    let mut p = Peer::new();
    let conns: Vec<TcpHandle> = (0..8).map(|i| p.established_active_on(9000 + i)).collect();
    let data = vec![7u8; 10 * 1460];
    for &h in &conns {
        assert_eq!(p.i.tcp(p.now).send(h, &data), Ok(data.len()));
    }
    // Each connection's initial window is 10 segments: 80 wanted, 64 built.
    let built: usize =
        p.i.tcp_layer()
            .conns
            .iter()
            .map(|(_, t)| usize::from(t.snd_max != t.snd_una))
            .sum();
    assert_eq!(built, 7, "the eighth connection waits for room");
    // Its peer sends out of order: the duplicate ACK does not wait for room
    // (RFC 5681 §4.2: at once), only the data does.
    let (seq, ack) = (p.seq, p.ack);
    p.send(ACK, seq + 100, ack, b"later");
    let segs = p.recv();
    let dup = segs.iter().position(|s| s.payload.is_empty() && s.ack == seq);
    assert_eq!(dup, Some(64), "built at once, behind the 64 queued: {segs:?}");
    let data_segs: Vec<&Seg> = segs.iter().filter(|s| !s.payload.is_empty()).collect();
    assert_eq!(
        data_segs.len(),
        80,
        "everything went out, the rest built as the queue drained"
    );
    assert!(data_segs[..64].iter().all(|s| s.payload.len() == 1460), "full segments");
    assert_eq!(p.i.stats().link_tx_queue_full, 0, "nothing dropped for a full queue");
    for &h in &conns {
        let t = p.i.tcp_layer().conns.get(h.0).unwrap();
        assert_eq!(
            t.snd_max.wrapping_distance_from(t.snd_una),
            data.len() as u32,
            "each sent its whole window"
        );
        assert!(!t.tx_pending && !t.tx_listed);
    }
}

/// An event loop reads a request and writes the reply before the stack
/// sends anything: the reply carries the ACK (no pure ACK first), and our
/// FIN carries the ACK of theirs (the ACK of a FIN into CLOSE-WAIT waits for
/// the end of the batch, as Linux delays it).
#[test]
fn a_reply_and_a_close_written_in_the_same_turn_carry_the_acks() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.send_next(ACK | PSH, b"ping");
    let mut buf = [0u8; 16];
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Ok(4));
    p.i.tcp(p.now).send(h, b"pong").unwrap();
    let reply = p.recv_one();
    assert_eq!((reply.payload.as_slice(), reply.ack), (&b"pong"[..], p.seq));
    p.ack += 4;
    p.send_next(FIN | ACK, b"");
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Ok(0), "EOF");
    p.i.tcp(p.now).shutdown(h, Shutdown::Write).unwrap();
    let fin = p.recv_one();
    assert!(fin.is(FIN | ACK), "{fin:?}");
    assert_eq!(fin.ack, p.seq, "our FIN acknowledges theirs");
    // Without a close in the batch, the ACK of their FIN still goes at its end.
    let mut q = Peer::new();
    let (_l, _h) = q.established_passive();
    q.send_next(FIN | ACK, b"");
    let ack = q.recv_one();
    assert!(ack.is(ACK) && ack.ack == q.seq, "{ack:?}");
}

#[test]
fn a_reader_idle_for_a_second_lets_the_empty_rings_go() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.send_next(ACK | PSH, b"request");
    let mut buf = [0u8; 64];
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Ok(7));
    p.i.tcp(p.now).send(h, b"reply").unwrap();
    let sent = p.recv();
    assert_eq!(sent.last().map(|s| &s.payload[..]), Some(&b"reply"[..]));
    let held = |p: &Peer| {
        let t = p.i.tcp_layer().conns.get(h.0).unwrap();
        (t.recv.allocated(), t.send.allocated())
    };
    assert!(held(&p).0 > 0 && held(&p).1 > 0, "both rings in use: {:?}", held(&p));
    p.ack += 5;
    p.send_next(ACK, b"");
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Err(IoError::WouldBlock));
    let pages = held(&p);
    assert!(pages.0 > 0, "kept while the reader has just begun to wait");
    // Traffic before the timer: the pages stay (a bulk reader waits
    // between bursts), and the reader's next wait starts the count again.
    p.advance(IDLE_RELEASE / 2);
    p.send_next(ACK | PSH, b"more");
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Ok(4));
    p.advance(IDLE_RELEASE / 2);
    assert_eq!(held(&p), pages, "traffic since: kept");
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Err(IoError::WouldBlock));
    p.advance(IDLE_RELEASE);
    assert_eq!(held(&p), (0, 0), "idle a second: no buffer memory");
    // The next message works as before.
    p.send_next(ACK | PSH, b"again");
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"again");
    // An event loop's order: read until it would block, then reply, and
    // read again only when more comes. The rings still go once it is idle.
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Err(IoError::WouldBlock));
    p.i.tcp(p.now).send(h, b"answer").unwrap();
    let _ = p.recv();
    p.ack += 6;
    p.send_next(ACK, b"");
    assert!(held(&p).1 > 0);
    p.advance(IDLE_RELEASE);
    p.advance(IDLE_RELEASE);
    assert_eq!(held(&p), (0, 0), "drained, replied, idle: no buffer memory");
}

#[test]
fn a_batch_of_in_order_segments_gets_one_stretch_ack_capped_at_a_quarter_buffer() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.through_quick_acks();
    let _ = p.read_all(h);
    // Six segments in one batch (no poll_transmit between): one ACK for all.
    for i in 0..6u8 {
        p.send_next(ACK, &[i; 1460]);
    }
    let acks = p.recv();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].ack, p.seq, "the stretch ACK covers the whole batch");
    // A long batch: an ACK goes whenever a quarter of the buffer is unacknowledged.
    let quarter = p.i.tcp_layer().conns.get(h.0).unwrap().recv.limit() / 4;
    let per_ack = quarter.div_ceil(1460);
    for i in 0..(3 * per_ack) as u8 {
        p.send_next(ACK, &[i; 1460]);
        let _ = p.read_all(h);
    }
    let acks = p.recv();
    assert_eq!(acks.len(), 3, "one per quarter buffer: {acks:?}");
    assert_eq!(acks[2].ack, p.seq);
}

#[test]
fn a_duplicate_segment_restarts_quick_acks_a_filled_hole_does_not() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.through_quick_acks();
    let base = p.seq;
    p.send(ACK, base + 1460, p.ack, &[7; 1460]);
    assert_eq!(p.recv_one().ack, base, "out of order: duplicate ACK at once");
    p.send(ACK, base, p.ack, &[6; 1460]);
    assert_eq!(p.recv_one().ack, base + 2920, "hole filled: at once");
    p.seq = base + 2920;
    p.send_next(ACK, &[8; 1460]);
    assert!(p.recv().is_empty(), "no quick ACKs after a filled hole (Linux)");
    p.send_next(ACK, &[9; 1460]);
    assert_eq!(p.recv_one().ack, p.seq, "every second segment");
    // A segment we had already: the peer retransmits, our ACKs may be lost.
    p.send(ACK, base, p.ack, &[6; 1460]);
    assert_eq!(p.recv_one().ack, p.seq, "a duplicate: ACK at once");
    p.send_next(ACK, &[10; 1460]);
    assert_eq!(p.recv_one().ack, p.seq, "then quick ACKs");
    let _ = p.read_all(h);
}

#[test]
fn nagle_holds_small_writes_while_data_is_unacknowledged() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).send(h, b"a").unwrap();
    assert_eq!(p.recv_one().payload, b"a");
    p.i.tcp(p.now).send(h, b"b").unwrap();
    p.i.tcp(p.now).send(h, b"c").unwrap();
    assert!(p.recv().is_empty(), "Nagle: wait for the ACK");
    p.ack += 1;
    p.send_next(ACK, b"");
    assert_eq!(p.recv_one().payload, b"bc", "coalesced");
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, b"d").unwrap();
    p.i.tcp(p.now).send(h, b"e").unwrap();
    assert_eq!(p.recv().len(), 2, "nodelay: sent at once");
}

#[test]
fn retransmission_timeout_backs_off_and_gives_up() {
    let mut p = Peer::with(|c| c.tcp.retries = 3);
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).send(h, b"lost").unwrap();
    let first = p.recv_one();
    let mut gaps = Vec::new();
    let mut last = p.now;
    for _ in 0..3 {
        // Step until the retransmission appears.
        let mut segs = Vec::new();
        for _ in 0..20_000 {
            p.advance(Duration::from_millis(10));
            segs = p.recv();
            if !segs.is_empty() {
                break;
            }
        }
        assert_eq!(segs.len(), 1);
        assert_eq!((segs[0].seq, segs[0].payload.as_slice()), (first.seq, &b"lost"[..]));
        gaps.push(p.now - last);
        last = p.now;
    }
    assert!(
        gaps[1] >= gaps[0] * 2 - Duration::from_millis(20),
        "exponential backoff: {gaps:?}"
    );
    assert!(
        gaps[2] >= gaps[1] * 2 - Duration::from_millis(20),
        "exponential backoff: {gaps:?}"
    );
    p.advance(Duration::from_secs(60));
    assert_eq!(p.i.tcp_layer().state(h), State::Closed);
    assert_eq!(p.i.tcp_layer().error(h), Some(ConnError::TimedOut));
}

#[test]
fn three_duplicate_acks_trigger_fast_retransmit() {
    let mut p = Peer::new();
    let h = p.established_active();
    p.i.tcp(p.now).set_nodelay(h, true);
    let data = vec![9u8; 5 * 1460];
    p.i.tcp(p.now).send(h, &data).unwrap();
    let segs = p.recv();
    assert_eq!(segs.len(), 5);
    // The first segment was lost: three duplicate ACKs for it.
    let lost = segs[0].seq;
    for _ in 0..3 {
        p.send(ACK, p.seq, lost, b"");
    }
    let r = p.recv_one();
    assert_eq!((r.seq, r.payload.len()), (lost, 1460));
    assert_eq!(p.i.stats().tcp_fast_retransmits, 1);
}

#[test]
fn zero_window_is_probed_with_backoff_and_reopens() {
    let mut p = Peer::new();
    let h = p.established_active();
    p.i.tcp(p.now).set_nodelay(h, true);
    // The peer closes its window.
    let (seq, ack) = (p.seq, p.ack);
    p.send_opts(ACK, seq, ack, 0, TcpOptions::default(), b"");
    p.i.tcp(p.now).send(h, b"blocked").unwrap();
    assert!(p.recv().is_empty(), "nothing may be sent into a zero window");
    let mut probes = Vec::new();
    for _ in 0..2000 {
        p.advance(Duration::from_millis(10));
        for s in p.recv() {
            assert!(s.payload.is_empty());
            assert_eq!(s.seq, p.ack - 1, "probe below SND.UNA forces an ACK");
            probes.push(p.now);
        }
        if probes.len() == 3 {
            break;
        }
    }
    assert_eq!(probes.len(), 3, "probes keep coming");
    assert!(probes[2] - probes[1] > probes[1] - probes[0], "with backoff");
    assert_eq!(p.i.stats().tcp_window_probes, 3);
    // The window opens: the data goes.
    let (seq, ack) = (p.seq, p.ack);
    p.send_opts(ACK, seq, ack, 65535, TcpOptions::default(), b"");
    assert_eq!(p.recv_one().payload, b"blocked");
}

#[test]
fn window_never_shrinks_as_data_arrives_unread() {
    let mut p = Peer::with(|c| c.tcp.recv_buffer = 8192);
    let (_l, h) = p.established_passive();
    let mut right_edge = SeqNum(0);
    for n in 0..12 {
        p.send_next(ACK | PSH, &[n as u8; 1000]);
        p.advance(Duration::from_millis(50));
        for s in p.recv() {
            let edge = s.ack + u32::from(s.window);
            assert!(edge.ge(right_edge), "window shrank: {edge:?} < {right_edge:?}");
            right_edge = edge;
        }
    }
    assert_eq!(p.i.tcp_layer().recv_queue(h), 8192, "filled exactly to the buffer");
    // Reading opens the window again, with an update.
    let mut buf = vec![0u8; 8192];
    p.i.tcp(p.now).recv(h, &mut buf).unwrap();
    let upd = p.recv_one();
    assert!(upd.window as usize >= 4096, "{upd:?}");
}

#[test]
fn sequence_numbers_wrap_across_2_pow_32_during_a_transfer() {
    let mut p = Peer::new();
    p.seq = SeqNum(u32::MAX - 3000);
    let (_l, h) = p.established_passive();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    for chunk in data.chunks(1000) {
        p.send_next(ACK, chunk);
    }
    p.advance(Duration::from_millis(50));
    let acks = p.recv();
    assert_eq!(acks.last().unwrap().ack, p.seq);
    assert!(p.seq.0 < 10_000, "the peer's sequence numbers wrapped");
    assert_eq!(p.read_all(h), data);
}

#[test]
fn backlog_full_drops_further_syns() {
    let mut p = Peer::new();
    let l = p.listen(1);
    // Linux lets backlog + 1 connections wait.
    for port in [50001, 50002] {
        p.port = port;
        p.seq = SeqNum(1000);
        p.send_next(SYN, b"");
        let sa = p.recv_one();
        p.ack = sa.seq + 1;
        p.send_next(ACK, b"");
    }
    p.port = 50003;
    p.seq = SeqNum(1000);
    p.send_next(SYN, b"");
    assert!(p.recv().is_empty(), "accept queue full: SYN dropped");
    assert_eq!(p.i.stats().tcp_listen_drops, 1);
    assert!(p.i.tcp(p.now).accept(l).is_some());
    p.advance(Duration::from_secs(1));
    p.send(SYN, SeqNum(1000), SeqNum(0), b"");
    assert!(p.recv_one().is(SYN | ACK), "room again after accept");
}

#[test]
fn listener_close_resets_connections_never_accepted() {
    let mut p = Peer::new();
    let l = p.listen(8);
    p.send_next(SYN, b"");
    let sa = p.recv_one();
    p.ack = sa.seq + 1;
    p.send_next(ACK, b"");
    p.i.tcp(p.now).close_listener(l);
    let r = p.recv_one();
    assert!(r.is(RST | ACK));
    assert_eq!(r.seq, p.ack);
    assert_eq!(p.i.tcp_layer().connection_count(), 0);
    // And the port is closed now.
    p.port = 50009;
    p.send(SYN, SeqNum(1), SeqNum(0), b"");
    assert!(p.recv_one().is(RST | ACK));
}

/// netstat's owner column: a connection waiting to be accepted is the
/// listener's; once the application closes it, what lingers is nobody's.
#[test]
fn a_connection_is_its_owners_until_the_application_closes_it() {
    let mut p = Peer::new();
    let l = p.listen(8);
    p.i.tcp(p.now).set_listener_owner(l, Some("echo".into()));
    p.send_next(SYN, b"");
    let sa = p.recv_one();
    p.ack = sa.seq + 1;
    p.send_next(ACK, b"");
    let owner = |p: &Peer| {
        let conns =
            p.i.tcp_layer()
                .sockets()
                .into_iter()
                .filter(|s| s.state != State::Listen);
        conns.map(|s| s.owner).collect::<Vec<_>>()
    };
    assert_eq!(owner(&p), [Some("echo".into())], "in the accept queue: the listener's");
    let (h, _) = p.i.tcp(p.now).accept(l).unwrap();
    p.i.tcp(p.now).close(h, false);
    assert!(p.recv_one().is(FIN | ACK));
    assert_eq!(owner(&p), [None], "closed, lingering in FIN_WAIT1: nobody's");
}

#[test]
fn close_with_unread_data_sends_rst() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.send_next(ACK | PSH, b"never read");
    p.recv();
    p.i.tcp(p.now).close(h, false);
    let r = p.recv_one();
    assert!(r.is(RST | ACK));
    assert_eq!(p.i.tcp_layer().connection_count(), 0);
}

#[test]
fn linger_zero_close_sends_rst() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).close(h, true);
    assert!(p.recv_one().is(RST | ACK));
}

#[test]
fn rst_in_every_synchronized_state_closes_the_connection() {
    type Setup = fn(&mut Peer, TcpHandle);
    let cases: [(State, Setup); 5] = [
        (State::Established, |_, _| {}),
        (State::CloseWait, |p, _| p.send_next(FIN | ACK, b"")),
        (State::FinWait1, |p, h| {
            p.i.tcp(p.now).shutdown(h, Shutdown::Write).unwrap()
        }),
        (State::FinWait2, |p, h| {
            let fin = p.our_fin(h);
            p.ack = fin.seq + 1;
            p.send_next(ACK, b"");
        }),
        (State::LastAck, |p, h| {
            p.send_next(FIN | ACK, b"");
            p.i.tcp(p.now).shutdown(h, Shutdown::Write).unwrap();
        }),
    ];
    for (state, setup) in cases {
        let mut p = Peer::new();
        let (_l, h) = p.established_passive();
        setup(&mut p, h);
        assert_eq!(p.i.tcp_layer().state(h), state);
        p.recv();
        let seq = p.seq;
        p.send(RST, seq, SeqNum(0), b"");
        assert_eq!(p.i.tcp_layer().state(h), State::Closed, "RST in {state}");
        assert!(p.recv().is_empty(), "no answer to an accepted RST in {state}");
    }
}

#[test]
fn rst_in_syn_received_drops_the_half_open_connection() {
    let mut p = Peer::new();
    let l = p.listen(8);
    p.send_next(SYN, b"");
    p.recv_one();
    let seq = p.seq;
    p.send(RST, seq, SeqNum(0), b"");
    assert_eq!(p.i.tcp_layer().connection_count(), 0);
    assert!(p.i.tcp(p.now).accept(l).is_none());
}

#[test]
fn syn_retransmits_then_connect_times_out() {
    let mut p = Peer::with(|c| c.tcp.syn_retries = 2);
    let h =
        p.i.tcp(p.now)
            .connect(SocketAddrV4::new(HOST, PEER_PORT), PORT)
            .unwrap();
    let mut syns = p.recv().len();
    for _ in 0..1000 {
        p.advance(Duration::from_millis(100));
        syns += p.recv().iter().filter(|s| s.is(SYN)).count();
    }
    assert_eq!(syns, 3, "SYN and two retransmissions");
    assert_eq!(p.i.tcp_layer().error(h), Some(ConnError::TimedOut));
}

#[test]
fn keepalive_probes_an_idle_peer_and_gives_up() {
    let mut p = Peer::with(|c| {
        c.tcp.keepalive_interval = Duration::from_secs(1);
        c.tcp.keepalive_probes = 3;
    });
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).set_keepalive(h, Some(Duration::from_secs(10)));
    p.advance(Duration::from_secs(10));
    let probe = p.recv_one();
    assert_eq!(probe.seq, p.ack - 1);
    // An answer resets the count.
    p.send_next(ACK, b"");
    for _ in 0..20 {
        p.advance(Duration::from_secs(1));
        p.recv();
    }
    assert_eq!(p.i.tcp_layer().state(h), State::Closed);
    assert_eq!(p.i.tcp_layer().error(h), Some(ConnError::TimedOut));
}

/// RFC 1122 §4.2.2.13(a): a new SYN past the old sequence space reopens a
/// TIME-WAIT 4-tuple, and our new ISS starts past every sequence number
/// the old connection used, even when the ISN clock has not moved that
/// far (here it is pinned: every clock ISN would be the old ISS).
#[test]
fn new_syn_may_reopen_a_time_wait_tuple_with_an_iss_past_the_old_one() {
    let mut p = Peer::new();
    p.i.tcp_layer_mut().pin_isn(SeqNum(7_000_000));
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, &[5u8; 4000]).unwrap();
    for s in p.recv() {
        p.ack = p.ack.max(s.seq + s.payload.len() as u32);
    }
    p.send_next(ACK, b"");
    p.i.tcp(p.now).close(h, false);
    let fin = p.recv_one();
    assert!(fin.is(FIN | ACK));
    p.ack = fin.seq + 1;
    p.send_next(FIN | ACK, b"");
    p.recv();
    p.seq += 100_000;
    p.send_next(SYN, b"");
    let synack = p.recv_one();
    assert!(synack.is(SYN | ACK));
    assert_eq!(synack.seq, fin.seq + 1 + 65537, "old SND.NXT + 65537, as Linux");
}

#[test]
fn our_sequence_numbers_wrap_across_2_pow_32_while_sending() {
    let mut p = Peer::new();
    p.i.tcp_layer_mut().pin_isn(SeqNum(u32::MAX - 2000));
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).set_nodelay(h, true);
    let data: Vec<u8> = (0..8000u32).map(|i| (i % 241) as u8).collect();
    assert_eq!(p.i.tcp(p.now).send(h, &data).unwrap(), data.len());
    let mut got = Vec::new();
    for _ in 0..20 {
        for s in p.recv() {
            if s.payload.is_empty() {
                continue;
            }
            assert_eq!(s.seq, p.ack, "in order");
            p.ack += s.payload.len() as u32;
            got.extend_from_slice(&s.payload);
        }
        p.send_next(ACK, b"");
    }
    assert_eq!(got, data);
    assert!(p.ack.0 < 8000, "our sequence numbers wrapped");
    assert_eq!(
        p.i.tcp_layer().send_queue(h),
        0,
        "everything acknowledged across the wrap"
    );
}

#[test]
fn syn_with_fin_to_a_listener_is_discarded() {
    let mut p = Peer::new();
    p.listen(8);
    p.send_next(SYN | FIN, b"");
    assert!(p.recv().is_empty());
    assert_eq!(p.i.tcp_layer().connection_count(), 0);
}

#[test]
fn simultaneous_open_completes_on_the_peers_syn_ack() {
    let mut p = Peer::new();
    let h =
        p.i.tcp(p.now)
            .connect(SocketAddrV4::new(HOST, PEER_PORT), PORT)
            .unwrap();
    let syn = p.recv_one();
    p.send_next(SYN, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::SynReceived);
    p.recv();
    // The peer's SYN-ACK (its SYN again, with the ACK of ours) completes it at once.
    p.send(SYN | ACK, p.seq - 1, syn.seq + 1, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
}

/// RFC 7323 §2.2: the window in a SYN is never scaled, not even in the
/// SYN-ACK that completes a simultaneous open after scaling was agreed.
#[test]
fn simultaneous_open_syn_ack_window_is_not_scaled() {
    let mut p = Peer::new();
    let h =
        p.i.tcp(p.now)
            .connect(SocketAddrV4::new(HOST, PEER_PORT), PORT)
            .unwrap();
    let syn = p.recv_one();
    let scaling = TcpOptions {
        window_scale: Some(7),
        ..TcpOptions::default()
    };
    p.send_opts(SYN, p.seq, SeqNum(0), 65535, scaling, b"");
    p.seq += 1;
    assert_eq!(p.i.tcp_layer().state(h), State::SynReceived);
    p.recv();
    p.send_opts(SYN | ACK, p.seq - 1, syn.seq + 1, 100, TcpOptions::default(), b"");
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
    p.recv();
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, &[7u8; 1000]).unwrap();
    let sent: usize = p.recv().iter().map(|s| s.payload.len()).sum();
    assert_eq!(sent, 100, "a window of 100 bytes, not 100 << 7");
}

#[test]
fn close_in_syn_received_waits_for_established_then_sends_fin() {
    let mut p = Peer::new();
    let h =
        p.i.tcp(p.now)
            .connect(SocketAddrV4::new(HOST, PEER_PORT), PORT)
            .unwrap();
    let syn = p.recv_one();
    p.send_next(SYN, b"");
    p.recv();
    p.i.tcp(p.now).close(h, false);
    assert!(p.recv().iter().all(|s| !s.is(FIN | ACK)), "no FIN before ESTABLISHED");
    // Retransmissions still carry the SYN (no panic on the offsets).
    p.advance(Duration::from_secs(3));
    assert!(p.recv().iter().any(|s| s.is(SYN | ACK)));
    p.ack = syn.seq + 1;
    p.send_next(ACK, b"");
    let fin = p.recv_one();
    assert!(fin.is(FIN | ACK));
    assert_eq!(fin.seq, syn.seq + 1);
}

#[test]
fn data_beyond_an_out_of_order_fin_is_ignored_and_eof_arrives() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    let (base, ack) = (p.seq, p.ack);
    p.send(FIN | ACK, base + 100, ack, b"");
    p.recv();
    p.send(ACK, base, ack, &[5u8; 200]);
    let a = p.recv_one();
    assert_eq!(a.ack, base + 101, "100 bytes and the FIN");
    assert_eq!(p.read_all(h), vec![5u8; 100]);
    assert_eq!(p.i.tcp_layer().state(h), State::CloseWait);
}

#[test]
fn time_wait_ignores_a_fin_at_a_wrong_sequence_number() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    let fin = p.our_fin(h);
    p.ack = fin.seq + 1;
    p.send_next(FIN | ACK, b"");
    p.recv();
    p.advance(Duration::from_millis(1500));
    let (seq, ack) = (p.seq + 5000, p.ack);
    p.send(FIN | ACK, seq, ack, b"");
    assert_eq!(p.i.tcp_layer().time_wait_count(), 1);
    p.advance(Duration::from_millis(600));
    assert_eq!(
        p.i.tcp_layer().time_wait_count(),
        0,
        "a stray FIN did not restart 2×MSL"
    );
}

#[test]
fn unanswered_zero_window_probes_end_the_connection() {
    let mut p = Peer::with(|c| c.tcp.retries = 3);
    let h = p.established_active();
    let (seq, ack) = (p.seq, p.ack);
    p.send_opts(ACK, seq, ack, 0, TcpOptions::default(), b"");
    p.i.tcp(p.now).send(h, b"stuck").unwrap();
    for _ in 0..400 {
        p.advance(Duration::from_secs(1));
        p.recv();
    }
    assert_eq!(p.i.tcp_layer().error(h), Some(ConnError::TimedOut));
}

#[test]
fn connecting_to_our_own_address_goes_over_loopback() {
    let mut p = Peer::new();
    let l = p.listen(8);
    let c = p.i.tcp(p.now).connect(SocketAddrV4::new(US, PORT), 0).unwrap();
    let spin = |p: &mut Peer| {
        for _ in 0..20 {
            p.i.handle_timeout(p.now);
        }
    };
    spin(&mut p);
    assert_eq!(p.i.tcp_layer().state(c), State::Established);
    let (s, from) = p.i.tcp(p.now).accept(l).expect("accepted over loopback");
    assert_eq!(*from.ip(), US);
    p.i.tcp(p.now).send(c, b"to myself").unwrap();
    spin(&mut p);
    assert_eq!(p.read_all(s), b"to myself");
    assert!(p.recv().is_empty(), "nothing touched the link");
    assert!(p.i.stats().ip_loopback >= 4);
}

#[test]
fn pure_acks_after_an_rto_carry_the_highest_sequence_sent() {
    let mut p = Peer::new();
    let h = p.established_active();
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, &[1u8; 3000]).unwrap();
    let sent = p.recv();
    let highest = sent.last().map(|s| s.seq + s.payload.len() as u32).unwrap();
    // Nothing is acknowledged: the RTO rewinds and resends from SND.UNA.
    p.advance(Duration::from_millis(1100));
    assert!(!p.recv().is_empty(), "retransmission");
    // Data from the peer now draws a pure ACK: its sequence number must not fall
    // below what the peer has already received.
    p.send_next(ACK, b"x");
    p.advance(Duration::from_millis(50));
    let acks: Vec<Seg> = p.recv().into_iter().filter(|s| s.payload.is_empty()).collect();
    assert!(!acks.is_empty());
    assert!(acks.iter().all(|a| a.seq == highest), "{acks:?} vs {highest:?}");
}

#[test]
fn a_timeout_with_a_zero_window_resends_the_first_segment_as_a_probe() {
    let mut p = Peer::with(|c| c.tcp.retries = 2);
    let h = p.established_active();
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, b"in flight").unwrap();
    let first = p.recv_one();
    // The peer's (stale) ACK says window 0 and acknowledges nothing.
    let (seq, ack) = (p.seq, p.ack);
    p.send_opts(ACK, seq, ack, 0, TcpOptions::default(), b"");
    let mut resent = 0;
    for _ in 0..100 {
        p.advance(Duration::from_millis(500));
        for s in p.recv() {
            assert_eq!(s.seq, first.seq);
            resent += 1;
        }
        // The peer keeps answering with window 0, so the connection stays.
        let (seq, ack) = (p.seq, p.ack);
        p.send_opts(ACK, seq, ack, 0, TcpOptions::default(), b"");
    }
    assert!(resent >= 3, "timeouts turned into probes ({resent})");
    assert_ne!(
        p.i.tcp_layer().state(h),
        State::Closed,
        "patience while the peer answers"
    );
}

/// Random segments against listeners and open connections in every state:
/// the stack never panics, never answers an RST with an RST, and the table
/// stays consistent (every connection it reports is reachable by handle).
#[test]
fn random_segments_never_panic() {
    let mut rng = crate::rand::Rng::new(77);
    for round in 0..200 {
        let mut p = Peer::with(|c| c.tcp.recv_buffer = [1000usize, 4096, 65536, 1 << 20][round % 4]);
        let (_l, h) = p.established_passive();
        p.i.tcp(p.now).set_nodelay(h, true);
        let _ = p.i.tcp(p.now).send(h, &vec![3u8; rng.below(5000) as usize]);
        for step in 0..300 {
            let flags = (rng.next_u32() as u8) & 0x3f;
            let near = |rng: &mut crate::rand::Rng, base: SeqNum| match rng.below(4) {
                0 => base,
                1 => base + rng.below(70_000) as u32,
                2 => base - rng.below(70_000) as u32,
                _ => SeqNum(rng.next_u32()),
            };
            let seq = near(&mut rng, p.seq);
            let ack = near(&mut rng, p.ack);
            let len = [0usize, 1, 100, 1460, 3000][rng.below(5) as usize];
            let payload = vec![rng.next_u32() as u8; len];
            let options = TcpOptions {
                mss: rng.chance(0.2).then(|| rng.next_u32() as u16),
                window_scale: rng.chance(0.2).then(|| rng.next_u32() as u8),
                ..TcpOptions::default()
            };
            let resets_before = p.i.stats().tcp_tx_resets;
            p.send_opts(flags, seq, ack, rng.next_u32() as u16, options, &payload);
            if flags & RST != 0 {
                assert_eq!(
                    p.i.stats().tcp_tx_resets,
                    resets_before,
                    "an RST was answered with an RST"
                );
            }
            if step % 7 == 0 {
                p.advance(Duration::from_millis(rng.below(3000)));
            }
            if step % 11 == 0 && p.i.tcp_layer().exists(h) {
                let mut buf = [0u8; 2048];
                let _ = p.i.tcp(p.now).recv(h, &mut buf);
            }
            if step == 150 && p.i.tcp_layer().exists(h) {
                let _ = p.i.tcp(p.now).shutdown(h, Shutdown::Write);
            }
            p.recv();
        }
        p.i.tcp_layer().assert_tables_consistent();
    }
}

impl Peer {
    /// An ICMP error from `from` quoting a segment we sent (its IP header and
    /// the first 8 bytes of TCP: ports and `seq`), as a router returns it.
    fn icmp_error_about(&mut self, from: Ipv4Addr, kind: u8, code: u8, seq: SeqNum) {
        let mut tcp = Vec::new();
        let ours = TcpSegment {
            src_port: PORT,
            dst_port: self.port,
            seq,
            ack: SeqNum(0),
            flags: SYN,
            window: 0,
            options: TcpOptions::default(),
            payload: b"",
        };
        ours.emit(&mut tcp, US, HOST);
        let quoted = ip_packet(US, HOST, crate::ip::protocol::TCP, 1, &tcp[..8]);
        let msg = crate::testutil::icmp_error(kind, code, &quoted);
        let pkt = ip_packet(from, US, crate::ip::protocol::ICMP, 2, &msg);
        self.i.handle_packet(self.now, &pkt);
    }
}

const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

/// RFC 1122 §4.2.3.9, as Linux (tcp_v4_err): while connecting, an ICMP
/// unreachable ends the attempt at once and `connect` reports its cause.
#[test]
fn icmp_unreachable_ends_a_connect_at_once_with_its_cause() {
    use crate::wire::icmp::{kind, unreachable};
    let mut p = Peer::new();
    let h =
        p.i.tcp(p.now)
            .connect(SocketAddrV4::new(HOST, PEER_PORT), PORT)
            .unwrap();
    let syn = p.recv_one();
    p.icmp_error_about(ROUTER, kind::DEST_UNREACHABLE, unreachable::HOST, syn.seq);
    assert_eq!(p.i.tcp_layer().state(h), State::Closed);
    assert_eq!(p.i.tcp_layer().error(h), Some(ConnError::HostUnreachable));
    assert_eq!(p.i.stats().tcp_icmp_errors, 1);
    p.advance(Duration::from_secs(5));
    assert!(p.recv().is_empty(), "no more SYNs");
}

/// RFC 5927 §4.1: an ICMP error must quote a sequence number we sent and
/// that is not yet acknowledged; a blind one changes nothing.
#[test]
fn icmp_error_quoting_a_sequence_number_we_never_sent_is_ignored() {
    use crate::wire::icmp::{kind, unreachable};
    let mut p = Peer::new();
    let h =
        p.i.tcp(p.now)
            .connect(SocketAddrV4::new(HOST, PEER_PORT), PORT)
            .unwrap();
    let syn = p.recv_one();
    p.icmp_error_about(ROUTER, kind::DEST_UNREACHABLE, unreachable::PORT, syn.seq + 1000);
    assert_eq!(p.i.tcp_layer().state(h), State::SynSent);
    assert_eq!(p.i.stats().tcp_icmp_out_of_window, 1);
    let h2 = p.established_active_on(PEER_PORT + 1);
    p.icmp_error_about(ROUTER, kind::DEST_UNREACHABLE, unreachable::PORT, SeqNum(0));
    assert_eq!(p.i.tcp_layer().state(h2), State::Established);
}

/// RFC 1122 §4.2.3.9: on an established connection an unreachable is soft:
/// the connection goes on, and only if it times out is the error its cause
/// (Linux's sk_err_soft), not a bare ETIMEDOUT.
#[test]
fn soft_icmp_error_is_reported_when_the_connection_times_out() {
    use crate::wire::icmp::{kind, unreachable};
    let mut p = Peer::new();
    let h = p.established_active();
    p.i.tcp(p.now).send(h, b"lost").unwrap();
    let data = p.recv_one();
    p.icmp_error_about(ROUTER, kind::DEST_UNREACHABLE, unreachable::NET, data.seq);
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
    for _ in 0..20 {
        p.advance(Duration::from_secs(120));
        p.recv();
    }
    assert_eq!(p.i.tcp_layer().state(h), State::Closed);
    assert_eq!(p.i.tcp_layer().error(h), Some(ConnError::NetUnreachable));
}

/// Linux's SO_ERROR (std's `take_error`): a soft ICMP error is pending on
/// the open connection until taken, once; the connection goes on.
#[test]
fn a_soft_icmp_error_is_taken_once_with_take_error() {
    use crate::wire::icmp::{kind, unreachable};
    let mut p = Peer::new();
    let h = p.established_active();
    p.i.tcp(p.now).send(h, b"lost").unwrap();
    let data = p.recv_one();
    assert_eq!(p.i.tcp(p.now).take_error(h), None);
    p.icmp_error_about(ROUTER, kind::DEST_UNREACHABLE, unreachable::HOST, data.seq);
    assert_eq!(p.i.tcp(p.now).take_error(h), Some(ConnError::HostUnreachable));
    assert_eq!(p.i.tcp(p.now).take_error(h), None, "taken once");
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
}

/// A half-open connection from a listener goes when its SYN-ACK cannot
/// reach the peer (net or host unreachable, time exceeded) and the error
/// quotes exactly our SYN-ACK, as Linux's tcp_req_err; a port or protocol
/// unreachable leaves it (the peer's own stack answered).
#[test]
fn half_open_connection_goes_when_the_path_to_the_peer_is_gone() {
    use crate::wire::icmp::{kind, unreachable};
    let mut p = Peer::new();
    p.listen(8);
    p.send_next(SYN, b"");
    let synack = p.recv_one();
    p.icmp_error_about(ROUTER, kind::DEST_UNREACHABLE, unreachable::PORT, synack.seq);
    assert_eq!(p.i.tcp_layer().connection_count(), 1, "port unreachable: kept");
    p.icmp_error_about(ROUTER, kind::DEST_UNREACHABLE, unreachable::HOST, synack.seq + 1);
    assert_eq!(
        p.i.tcp_layer().connection_count(),
        1,
        "not our SYN-ACK's sequence number: kept"
    );
    p.icmp_error_about(ROUTER, kind::DEST_UNREACHABLE, unreachable::HOST, synack.seq);
    assert_eq!(p.i.tcp_layer().connection_count(), 0, "host unreachable: dropped");
}

/// The round trip of the path in tests that need one.
const PATH_RTT: Duration = Duration::from_millis(1);

/// Between the ACKs of one flight: back-to-back segments arrive a little
/// apart, far less than RACK's reordering window of a quarter RTT.
const ACK_SPACING: Duration = Duration::from_micros(20);

/// The options a Linux peer offers in its SYN: MSS 1460, SACK-permitted,
/// timestamps with `tsval`, window scale 7.
fn linux_syn_options(tsval: u32) -> TcpOptions {
    TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some((tsval, 0)),
        ..TcpOptions::default()
    }
}

impl Peer {
    /// A passive open from a peer offering SACK and timestamps (TSval `tsval`);
    /// returns the accepted connection and our SYN-ACK.
    fn established_with_options(&mut self, tsval: u32) -> (TcpHandle, Seg) {
        let l = self.listen(8);
        let (seq, ack) = (self.seq, self.ack);
        self.send_opts(SYN, seq, ack, 65535, linux_syn_options(tsval), b"");
        self.seq += 1;
        let synack = self.recv_one();
        self.ack = synack.seq + 1;
        let echo = synack.options.timestamps.map_or(0, |(v, _)| v);
        // A round trip of the simulated path (RACK's reordering window is a fraction of it).
        self.advance(PATH_RTT);
        self.send_ts(ACK, tsval + 1, echo, b"");
        let (h, _) = self.i.tcp(self.now).accept(l).unwrap();
        (h, synack)
    }

    /// Sends at the peer's seq/ack with timestamps (`tsval`, `echo`) and advances seq.
    fn send_ts(&mut self, f: u8, tsval: u32, echo: u32, payload: &[u8]) {
        let options = TcpOptions {
            timestamps: Some((tsval, echo)),
            ..TcpOptions::default()
        };
        let (seq, ack) = (self.seq, self.ack);
        self.send_opts(f, seq, ack, 65535 >> 7, options, payload);
        self.seq += payload.len() as u32;
    }
}

/// RFC 7323 §3.2, RFC 2018 §2: the SYN-ACK carries timestamps (echoing the
/// SYN's TSval) and SACK-permitted exactly when the SYN offered them.
#[test]
fn syn_ack_answers_sack_and_timestamps_only_when_offered() {
    let mut p = Peer::new();
    let (_, synack) = p.established_with_options(5000);
    assert!(synack.options.sack_permitted);
    let (_, echo) = synack.options.timestamps.expect("timestamps answered");
    assert_eq!(echo, 5000, "TSecr echoes the SYN's TSval");
    let mut p = Peer::new();
    p.listen(8);
    p.send_next(SYN, b"");
    let plain = p.recv_one();
    assert!(!plain.options.sack_permitted && plain.options.timestamps.is_none());
    // Our own SYN offers both.
    let mut p = Peer::new();
    p.i.tcp(p.now)
        .connect(SocketAddrV4::new(HOST, PEER_PORT), PORT)
        .unwrap();
    let syn = p.recv_one();
    assert!(syn.options.sack_permitted && syn.options.timestamps.is_some_and(|(v, e)| v != 0 && e == 0));
}

/// RFC 7323 §3.2: once negotiated, every segment but an RST carries
/// timestamps, echoing TS.Recent; and a full segment still fits the MTU
/// (its payload gives way to the 12 option bytes).
#[test]
fn every_segment_carries_timestamps_and_full_segments_fit_the_mtu() {
    let mut p = Peer::new();
    let (h, _) = p.established_with_options(5000);
    p.send_ts(ACK | PSH, 5002, 0, b"ping");
    p.advance(Duration::from_millis(50)); // the delayed ACK
    let ack = p.recv_one();
    assert_eq!(ack.options.timestamps.map(|(_, e)| e), Some(5002));
    p.i.tcp(p.now).send(h, &vec![1u8; 10_000]).unwrap();
    let segs = p.recv();
    assert!(segs.iter().all(|s| s.options.timestamps.is_some()));
    assert_eq!(segs[0].payload.len(), 1460 - 12, "MSS less the timestamp option");
}

/// RFC 7323 §5 (PAWS): a segment whose TSval is older than TS.Recent is an
/// old duplicate: acknowledged, dropped, its data not taken.
#[test]
fn paws_drops_an_old_duplicate() {
    let mut p = Peer::new();
    let (h, _) = p.established_with_options(5000);
    p.send_ts(ACK | PSH, 6000, 0, b"new");
    p.recv();
    let stale = p.seq;
    p.send_ts(ACK | PSH, 100, 0, b"old");
    let ack = p.recv_one();
    assert_eq!(ack.ack, stale, "the old duplicate is not acknowledged as data");
    assert_eq!(p.i.stats().tcp_paws_dropped, 1);
    assert_eq!(p.read_all(h), b"new");
}

/// RFC 2018 §4: out-of-order data is reported in SACK blocks, the island
/// that changed most recently first.
#[test]
fn out_of_order_data_is_reported_in_sack_blocks_newest_first() {
    let mut p = Peer::new();
    let (_, _) = p.established_with_options(5000);
    let base = p.seq;
    p.seq = base + 1000;
    p.send_ts(ACK, 5001, 0, &[1u8; 100]);
    let first = p.recv_one();
    assert_eq!(first.ack, base);
    assert_eq!(first.options.sack.as_slice(), [(base + 1000, base + 1100)]);
    p.seq = base + 3000;
    p.send_ts(ACK, 5002, 0, &[2u8; 100]);
    let second = p.recv_one();
    assert_eq!(
        second.options.sack.as_slice(),
        [(base + 3000, base + 3100), (base + 1000, base + 1100)],
        "newest first"
    );
    // The first hole fills: one island is left.
    p.seq = base;
    p.send_ts(ACK, 5003, 0, &[0u8; 1000]);
    let third = p.recv_one();
    assert_eq!(third.ack, base + 1100);
    assert_eq!(third.options.sack.as_slice(), [(base + 3000, base + 3100)]);
}

/// RFC 2883 §4: data received twice is reported as a D-SACK block, first.
#[test]
fn duplicate_data_is_reported_as_dsack() {
    let mut p = Peer::new();
    let (_, _) = p.established_with_options(5000);
    let base = p.seq;
    p.send_ts(ACK | PSH, 5001, 0, b"once");
    p.recv();
    p.seq = base;
    p.send_ts(ACK | PSH, 5002, 0, b"once");
    let ack = p.recv_one();
    assert_eq!(ack.ack, base + 4);
    assert_eq!(
        ack.options.sack.as_slice(),
        [(base, base + 4)],
        "D-SACK of the duplicate"
    );
    // Reported once.
    p.send_ts(ACK | PSH, 5003, 0, b"more");
    assert!(p.recv().iter().all(|s| s.options.sack.is_empty()));
}

/// Without SACK-permitted from the peer, no SACK blocks, ever.
#[test]
fn no_sack_blocks_unless_the_peer_permitted_them() {
    let mut p = Peer::new();
    let (_l, _h) = p.established_passive();
    let base = p.seq;
    p.seq = base + 1000;
    p.send_next(ACK, &[1u8; 100]);
    let dup = p.recv_one();
    assert_eq!(dup.ack, base);
    assert!(dup.options.sack.is_empty() && dup.options.timestamps.is_none());
}

impl Peer {
    /// An ACK for `ack` carrying SACK `blocks` (and timestamps, as
    /// negotiated), [`ACK_SPACING`] after the previous one (the first ACK
    /// of a flight comes a [`PATH_RTT`] after it: the test advances).
    fn ack_with_sack(&mut self, ack: SeqNum, blocks: &[(SeqNum, SeqNum)]) {
        self.ack_echoing(ack, 0, blocks);
    }

    /// The same, echoing `echo` as TSecr.
    fn ack_echoing(&mut self, ack: SeqNum, echo: u32, blocks: &[(SeqNum, SeqNum)]) {
        self.advance(ACK_SPACING);
        let mut options = TcpOptions {
            timestamps: Some((6000, echo)),
            ..TcpOptions::default()
        };
        for &(l, r) in blocks {
            options.sack.push(l, r);
        }
        let seq = self.seq;
        self.send_opts(ACK, seq, ack, 65535 >> 7, options, b"");
    }
}

/// RFC 6675: three segments lost in one window are all repaired by fast
/// retransmission steered by SACK blocks: no timeout, and nothing the peer
/// SACKed is sent again.
#[test]
fn three_losses_in_one_window_are_repaired_by_sack_without_a_timeout() {
    let mut p = Peer::new();
    let (h, _) = p.established_with_options(5000);
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, &vec![7u8; 20 * 1448]).unwrap();
    let sent = p.recv();
    p.advance(PATH_RTT);
    assert_eq!(sent.len(), 10, "an initial window of ten segments");
    let seg = |i: usize| (sent[i].seq, sent[i].seq + sent[i].payload.len() as u32);
    // Segments 1, 4 and 7 are lost; the peer acknowledges 0 and SACKs the rest as they come.
    p.ack_with_sack(seg(1).0, &[]);
    let mut got = vec![0];
    let mut retransmitted = Vec::new();
    for i in [2, 3, 5, 6, 8, 9] {
        got.push(i);
        let mut blocks: Vec<(SeqNum, SeqNum)> = Vec::new();
        for &j in got.iter().filter(|&&j| j > 1) {
            match blocks.last_mut() {
                Some(b) if b.1 == seg(j).0 => b.1 = seg(j).1,
                _ => blocks.push(seg(j)),
            }
        }
        blocks.reverse(); // the newest first, as a receiver sends them
        p.ack_with_sack(seg(1).0, &blocks[..blocks.len().min(3)]);
        for s in p.recv() {
            if s.seq.lt(sent[9].seq + 1448) && !s.payload.is_empty() && s.seq.lt(seg(9).1) {
                retransmitted.push(s.seq);
            }
        }
    }
    // RACK: each hole is lost once a segment sent after it is delivered
    // (in recovery the reordering window is zero), so all three go again
    // within the round trip that reports them.
    assert_eq!(
        retransmitted,
        [seg(1).0, seg(4).0, seg(7).0],
        "the holes SACK shows lost, once each, lowest first"
    );
    p.ack_with_sack(seg(9).1, &[]);
    let after: Vec<SeqNum> = p.recv().iter().filter(|s| s.seq.lt(seg(9).1)).map(|s| s.seq).collect();
    assert!(after.is_empty(), "nothing resent twice: {after:?}");
    assert_eq!(p.i.stats().tcp_rto_retransmits, 0, "repaired without a timeout");
    assert_eq!(p.i.stats().tcp_sack_recoveries, 1);
}

/// RFC 3042: the first two duplicate ACKs each release one new segment,
/// so a small window still gets its third duplicate ACK.
#[test]
fn limited_transmit_sends_new_data_on_the_first_two_duplicate_acks() {
    let mut p = Peer::new();
    let (h, _) = p.established_with_options(5000);
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, &vec![7u8; 14 * 1448]).unwrap();
    let sent = p.recv();
    p.advance(PATH_RTT);
    assert_eq!(sent.len(), 10);
    let end = |i: usize| sent[i].seq + sent[i].payload.len() as u32;
    p.ack_with_sack(sent[0].seq, &[(sent[1].seq, end(1))]);
    let first = p.recv();
    assert_eq!(first.len(), 1, "one new segment on the first duplicate");
    assert_eq!(first[0].seq, end(9));
    p.ack_with_sack(sent[0].seq, &[(sent[1].seq, end(2))]);
    let second = p.recv();
    assert_eq!(second.len(), 1, "and one on the second");
    assert_eq!(second[0].seq, end(9) + 1448);
}

impl Peer {
    /// A router's fragmentation-needed for our segment at `seq`, with next-hop MTU `mtu`.
    fn frag_needed_about(&mut self, seq: SeqNum, mtu: u16) {
        let mut tcp = Vec::new();
        let ours = TcpSegment {
            src_port: PORT,
            dst_port: self.port,
            seq,
            ack: SeqNum(0),
            flags: ACK,
            window: 0,
            options: TcpOptions::default(),
            payload: b"",
        };
        ours.emit(&mut tcp, US, HOST);
        let quoted = ip_packet(US, HOST, crate::ip::protocol::TCP, 1, &tcp[..8]);
        let [m0, m1] = mtu.to_be_bytes();
        let mut msg = Vec::new();
        crate::wire::icmp::IcmpMessage {
            kind: crate::wire::icmp::kind::DEST_UNREACHABLE,
            code: crate::wire::icmp::unreachable::FRAG_NEEDED,
            rest: [0, 0, m0, m1],
            data: &quoted,
        }
        .emit(&mut msg);
        let pkt = ip_packet(ROUTER, US, crate::ip::protocol::ICMP, 3, &msg);
        self.i.handle_packet(self.now, &pkt);
    }
}

/// RFC 1191: a fragmentation-needed error lowers the MSS to fit the
/// next-hop MTU, and what was in flight goes again at the new size.
#[test]
fn fragmentation_needed_lowers_the_mss_and_resends_at_the_new_size() {
    let mut p = Peer::new();
    let h = p.established_active();
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, &vec![3u8; 4000]).unwrap();
    let sent = p.recv();
    assert_eq!(sent[0].payload.len(), 1460);
    p.frag_needed_about(sent[0].seq, 1280);
    let again = p.recv();
    assert_eq!(again[0].seq, sent[0].seq, "resent from SND.UNA");
    assert!(again.iter().all(|s| s.payload.len() <= 1240), "{again:?}");
    assert_eq!(again.iter().map(|s| s.payload.len()).sum::<usize>(), 4000);
    assert_eq!(p.i.stats().tcp_pmtu_reductions, 1);
    // A larger MTU later changes nothing; an absurdly small one is clamped (RFC 5927 §7.2).
    p.frag_needed_about(sent[0].seq, 1400);
    assert!(p.recv().is_empty());
    p.frag_needed_about(sent[0].seq, 100);
    assert!(p.recv().iter().all(|s| s.payload.len() == 512 || s.payload.len() < 512));
    assert_eq!(p.i.stats().tcp_pmtu_reductions, 2);
}

/// cwnd and ssthresh of connection `h`, as netstat sees them.
fn windows(p: &Peer, h: TcpHandle) -> (usize, usize) {
    let (local, remote) = p.i.tcp_layer().addrs(h);
    let info = p.i.tcp_layer().sockets().into_iter();
    let info = info
        .filter(|s| (s.local, s.remote) == (local, remote))
        .last()
        .expect("listed");
    (info.cwnd, info.ssthresh)
}

/// The stack's choice of congestion control applies to connections either
/// way; each connection may change it, keeping its windows (TCP_CONGESTION).
#[test]
fn congestion_control_per_stack_and_per_connection() {
    let mut p = Peer::with(|c| c.tcp.congestion = CongestionAlgorithm::NewReno);
    let (_l, passive) = p.established_passive();
    assert_eq!(p.i.tcp_layer().congestion(passive), CongestionAlgorithm::NewReno);
    p.port += 1;
    let active = p.established_active();
    assert_eq!(p.i.tcp_layer().congestion(active), CongestionAlgorithm::NewReno);

    let mut p = Peer::new();
    let h = p.established_active();
    assert_eq!(p.i.tcp_layer().congestion(h), CongestionAlgorithm::Cubic, "the default");
    p.i.tcp(p.now).set_nodelay(h, true);
    // Grow the window first: a full window acknowledged at once in slow
    // start (HyStart++ lets a window grow by at most 8 segments per ACK).
    p.i.tcp(p.now).send(h, &[7u8; 10 * 1460]).unwrap();
    let sent = p.recv();
    assert_eq!(sent.len(), 10);
    p.send(ACK, p.seq, sent[0].seq + 10 * 1460, b"");
    let grown = windows(&p, h);
    assert_eq!(grown, (18 * 1460, usize::MAX));
    p.i.tcp(p.now).set_congestion(h, CongestionAlgorithm::NewReno);
    assert_eq!(p.i.tcp_layer().congestion(h), CongestionAlgorithm::NewReno);
    assert_eq!(windows(&p, h), grown, "the windows carry over");
}

/// An algorithm chosen before the handshake completes survives it (the
/// SYN-ACK's MSS sizes a new initial window).
#[test]
fn congestion_control_chosen_during_the_handshake_stays() {
    let mut p = Peer::new();
    let h = p.i.tcp(p.now).connect(SocketAddrV4::new(HOST, p.port), PORT).unwrap();
    p.i.tcp(p.now).set_congestion(h, CongestionAlgorithm::NewReno);
    let syn = p.recv_one();
    p.ack = syn.seq + 1;
    let (seq, ack) = (p.seq, p.ack);
    let mss = TcpOptions {
        mss: Some(1000),
        ..TcpOptions::default()
    };
    p.send_opts(SYN | ACK, seq, ack, 65535, mss, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
    assert_eq!(p.i.tcp_layer().congestion(h), CongestionAlgorithm::NewReno);
    assert_eq!(windows(&p, h), (10 * 1000, usize::MAX));
}

// Rules found by review: RFC 6675, 2883, 7323, 1191 corner cases.
mod review_recovery {
    use super::*;

    fn info(p: &Peer) -> TcpInfo {
        p.i.tcp_layer()
            .sockets()
            .into_iter()
            .find(|s| s.state != State::Listen)
            .unwrap()
    }

    /// RFC 6675 §5 (4.2): ssthresh = cwnd = FlightSize/2 on entering SACK recovery.
    #[test]
    fn sack_recovery_sets_cwnd_to_ssthresh_without_inflation() {
        let mut p = Peer::new();
        let (h, _) = p.established_with_options(5000);
        p.i.tcp(p.now).set_nodelay(h, true);
        p.i.tcp(p.now).send(h, &vec![7u8; 10 * 1448]).unwrap();
        let sent = p.recv();
        p.advance(PATH_RTT);
        assert_eq!(sent.len(), 10);
        let end = |i: usize| sent[i].seq + sent[i].payload.len() as u32;
        for k in 1..=3 {
            p.ack_with_sack(sent[0].seq, &[(sent[1].seq, end(k))]);
        }
        let i = info(&p);
        eprintln!(
            "cwnd {} ssthresh {} recov {}",
            i.cwnd,
            i.ssthresh,
            p.i.stats().tcp_sack_recoveries
        );
        assert_eq!(i.cwnd, i.ssthresh, "RFC 6675 (4.2): cwnd = ssthresh");
    }

    /// RFC 7323 §5.5 / appendix: after 24 days idle, the segment is accepted and TS.Recent takes its TSval.
    #[test]
    fn ts_recent_idle_past_24_days_is_replaced() {
        let mut p = Peer::new();
        let (_h, _) = p.established_with_options(5000);
        p.send_ts(ACK | PSH, 6000, 0, b"a");
        p.advance(Duration::from_millis(50));
        p.recv();
        p.advance(Duration::from_secs(25 * 24 * 3600));
        p.recv();
        let newer = 6000u32.wrapping_add(1 << 31).wrapping_add(5); // peer clock wrapped its sign bit
        p.send_ts(ACK | PSH, newer, 0, b"b");
        p.advance(Duration::from_millis(50));
        let a = p.recv();
        eprintln!("{a:?}");
        assert_eq!(
            a.last().unwrap().options.timestamps.map(|(_, e)| e),
            Some(newer),
            "TSecr echoes the new TSval"
        );
    }

    /// RFC 6675 §2 / Linux: ACKs carrying only D-SACK (network duplicates) do not start recovery.
    #[test]
    fn acks_carrying_only_a_dsack_are_no_duplicate_acks() {
        let mut p = Peer::new();
        let (h, _) = p.established_with_options(5000);
        p.i.tcp(p.now).set_nodelay(h, true);
        p.i.tcp(p.now).send(h, &vec![7u8; 20 * 1448]).unwrap();
        let sent = p.recv();
        p.advance(PATH_RTT);
        let end = |i: usize| sent[i].seq + sent[i].payload.len() as u32;
        p.ack_with_sack(end(4), &[]);
        let after = p.recv();
        eprintln!("after cum ack: {} segs", after.len());
        for (k, s) in sent.iter().enumerate().take(5).skip(2) {
            p.ack_with_sack(end(4), &[(s.seq, end(k))]); // D-SACK: duplicates below SND.UNA
        }
        let out = p.recv();
        eprintln!(
            "fast retransmits {} ; segs sent {}: {:?}",
            p.i.stats().tcp_fast_retransmits,
            out.len(),
            out.iter().map(|s| (s.seq, s.payload.len())).collect::<Vec<_>>()
        );
        assert_eq!(p.i.stats().tcp_fast_retransmits, 0);
    }

    /// RFC 6675 §5.1: after a timeout, the SACK information that arrives
    /// decides what goes again: nothing the peer holds is sent twice.
    #[test]
    fn after_a_timeout_sacked_data_is_not_resent() {
        let mut p = Peer::new();
        let (h, _) = p.established_with_options(5000);
        p.i.tcp(p.now).set_nodelay(h, true);
        p.i.tcp(p.now).send(h, &vec![7u8; 10 * 1448]).unwrap();
        let sent = p.recv();
        let end = |i: usize| sent[i].seq + sent[i].payload.len() as u32;
        p.advance(Duration::from_secs(2));
        let rto = p.recv();
        eprintln!(
            "rto sent {:?}",
            rto.iter().map(|s| (s.seq, s.payload.len())).collect::<Vec<_>>()
        );
        // Segments 0 and 2 were lost; the retransmitted 0 arrives: ACK to 2, SACK 3..9.
        p.ack_with_sack(sent[2].seq, &[(sent[3].seq, end(9))]);
        let out = p.recv();
        eprintln!(
            "fast retransmits {}; sent {:?}",
            p.i.stats().tcp_fast_retransmits,
            out.iter().map(|s| (s.seq, s.payload.len())).collect::<Vec<_>>()
        );
        let twice = out.iter().filter(|s| s.seq == sent[2].seq).count();
        assert!(twice <= 1, "segment 2 sent {twice} times");
        let sacked: Vec<_> = out
            .iter()
            .filter(|s| s.seq.ge(sent[3].seq) && s.seq.lt(end(9)))
            .collect();
        assert!(sacked.is_empty(), "SACKed data resent: {sacked:?}");
    }

    /// RFC 1191 / Linux: below min_pmtu the MTU is clamped *and DF is cleared*.
    #[test]
    fn a_path_mtu_below_552_clears_df() {
        let mut p = Peer::new();
        let h = p.established_active();
        p.i.tcp(p.now).set_nodelay(h, true);
        p.i.tcp(p.now).send(h, &vec![3u8; 4000]).unwrap();
        let sent = p.recv();
        p.frag_needed_about(sent[0].seq, 296);
        let mut buf = vec![0u8; 66000];
        let mut dfs = Vec::new();
        while let Some(n) = p.i.poll_transmit(p.now, &mut buf) {
            let pk = Ipv4Packet::parse(&buf[..n]).unwrap();
            dfs.push((n, pk.header.dont_fragment));
        }
        eprintln!("{dfs:?}");
        assert!(
            dfs.iter().all(|&(n, df)| n <= 296 || !df),
            "552-byte datagrams with DF on a 296-byte path"
        );
    }

    /// Data segments next to 3 SACK blocks + timestamps still fit the MTU.
    #[test]
    fn segments_with_timestamps_and_three_sack_blocks_fit_the_mtu() {
        let mut p = Peer::new();
        let (h, _) = p.established_with_options(5000);
        let base = p.seq;
        for k in 0..3u32 {
            p.seq = base + 1000 + k * 200;
            p.send_ts(ACK, 5001 + k, 0, &[1u8; 100]);
        }
        p.recv();
        p.seq = base + 50; // a D-SACK too? no: out of order again, fourth island
        p.i.tcp(p.now).send(h, &vec![1u8; 5000]).unwrap();
        let mut buf = vec![0u8; 66000];
        while let Some(n) = p.i.poll_transmit(p.now, &mut buf) {
            let pk = Ipv4Packet::parse(&buf[..n]).unwrap();
            eprintln!("len {n} df {}", pk.header.dont_fragment);
            assert!(n <= 1500);
        }
    }
}

mod review_fuzz {
    use super::*;

    #[test]
    fn random_sack_blocks_and_timestamps_never_panic_and_keep_the_scoreboard_sound() {
        let mut rng = crate::rand::Rng::new(4242);
        for round in 0..400 {
            let mut p = Peer::with(|c| c.tcp.recv_buffer = [1000usize, 4096, 65536, 1 << 20][round % 4]);
            let (h, synack) = p.established_with_options(5000);
            let iss = synack.seq;
            p.i.tcp(p.now).set_nodelay(h, true);
            let _ = p.i.tcp(p.now).send(h, &vec![3u8; rng.below(200_000) as usize]);
            let mut sent_hi = iss + 1;
            for step in 0..400 {
                for s in p.recv() {
                    let e = s.seq + s.payload.len() as u32;
                    if e.gt(sent_hi) {
                        sent_hi = e;
                    }
                }
                let una_guess = p.ack;
                let near = |rng: &mut crate::rand::Rng, lo: SeqNum, hi: SeqNum| {
                    let span = hi.wrapping_distance_from(lo).max(1);
                    match rng.below(6) {
                        0 => lo + rng.below(span as u64 + 1) as u32,
                        1 => lo - rng.below(5000) as u32,
                        2 => hi + rng.below(5000) as u32,
                        3 => SeqNum(rng.next_u32()),
                        _ => lo + rng.below(span as u64 + 1) as u32,
                    }
                };
                let mut options = TcpOptions::default();
                if rng.chance(0.9) {
                    let v = if rng.chance(0.9) {
                        6000 + step as u32
                    } else {
                        rng.next_u32()
                    };
                    options.timestamps = Some((v, rng.next_u32()));
                }
                for _ in 0..rng.below(5) {
                    let a = near(&mut rng, una_guess, sent_hi);
                    let b = if rng.chance(0.5) {
                        near(&mut rng, una_guess, sent_hi)
                    } else {
                        a + rng.below(10_000) as u32
                    };
                    options.sack.push(a, b);
                }
                let ack = if rng.chance(0.3) {
                    near(&mut rng, una_guess, sent_hi)
                } else {
                    una_guess
                };
                if ack.gt(p.ack) && ack.le(sent_hi) && rng.chance(0.5) {
                    p.ack = ack;
                }
                let len = [0usize, 0, 0, 1, 100, 1448][rng.below(6) as usize];
                let seq = if rng.chance(0.8) {
                    p.seq
                } else {
                    near(&mut rng, p.seq, p.seq + 100_000)
                };
                let payload = vec![1u8; len];
                let f = if rng.chance(0.02) { ACK | FIN } else { ACK };
                p.send_opts(f, seq, ack, rng.next_u32() as u16, options, &payload);
                if seq == p.seq {
                    p.seq += len as u32;
                }
                if step % 9 == 0 {
                    p.advance(Duration::from_millis(rng.below(2000)));
                }
                if step % 13 == 0 && p.i.tcp_layer().exists(h) {
                    let mut buf = [0u8; 4096];
                    let _ = p.i.tcp(p.now).recv(h, &mut buf);
                }
                if let Some(t) = p.i.tcp_layer().conns.get(h.0) {
                    if t.state.synchronized() {
                        t.scoreboard.assert_sound(t.snd_una, t.snd_max);
                        let _ = t.in_flight();
                    }
                }
                if rng.chance(0.01) {
                    p.frag_needed_about(
                        p.ack + rng.below(3000) as u32,
                        [296u16, 576, 1000, 1280, 0][rng.below(5) as usize],
                    );
                }
            }
            p.i.tcp_layer().assert_tables_consistent();
        }
    }
}
mod review_dsack {
    use super::*;
    /// RFC 2883 §4 (4): a duplicate above the cumulative ACK: D-SACK first, then its island.
    #[test]
    fn a_dsack_inside_an_island_is_followed_by_its_island() {
        let mut p = Peer::new();
        let (_, _) = p.established_with_options(5000);
        let base = p.seq;
        p.seq = base + 1000;
        p.send_ts(ACK, 5001, 0, &[1u8; 100]);
        p.seq = base + 3000;
        p.send_ts(ACK, 5002, 0, &[1u8; 100]);
        p.recv();
        p.seq = base + 1000;
        p.send_ts(ACK, 5003, 0, &[1u8; 100]);
        let a = p.recv_one();
        eprintln!("{:?}", a.options.sack.as_slice());
        assert_eq!(
            a.options.sack.as_slice()[..2],
            [(base + 1000, base + 1100), (base + 1000, base + 1100)]
        );
    }
}
mod review_fin {
    use super::*;
    #[test]
    fn data_wholly_beyond_a_fin_is_not_sacked() {
        let mut p = Peer::new();
        let (_, _) = p.established_with_options(5000);
        let base = p.seq;
        p.seq = base + 100;
        p.send_ts(ACK | FIN, 5001, 0, b"");
        p.recv();
        p.seq = base + 200;
        p.send_ts(ACK, 5002, 0, &[9u8; 100]);
        let a = p.recv();
        eprintln!(
            "{:?}",
            a.iter().map(|s| s.options.sack.as_slice().to_vec()).collect::<Vec<_>>()
        );
        assert!(a.iter().all(|s| s.options.sack.is_empty()));
    }
}
mod review_ts_poison {
    use super::*;
    /// A segment dropped for its ACK (RFC 5961 §5.2) must not move TS.Recent (Linux: FLAG_UPDATE_TS_RECENT in tcp_ack).
    #[test]
    fn a_segment_dropped_for_its_ack_does_not_move_ts_recent() {
        let mut p = Peer::new();
        let (h, _) = p.established_with_options(5000);
        p.send_ts(ACK | PSH, 6000, 0, b"a");
        p.advance(Duration::from_millis(50));
        p.recv();
        // Blind injection: in window (straddles RCV.NXT), a bogus ACK, a TSval far ahead.
        let (seq, ack) = (p.seq - 10, p.ack + 100_000);
        let o = TcpOptions {
            timestamps: Some((6000 + (1 << 30), 0)),
            ..TcpOptions::default()
        };
        p.send_opts(ACK, seq, ack, 65535 >> 7, o, &[0u8; 20]);
        p.recv();
        // The real peer goes on.
        p.send_ts(ACK | PSH, 6001, 0, b"b");
        p.advance(Duration::from_millis(50));
        p.recv();
        assert_eq!(p.read_all(h), b"ab", "paws_dropped={}", p.i.stats().tcp_paws_dropped);
    }
}

/// RFC 6937 (PRR): during a SACK recovery the sender sends about ssthresh /
/// RecoverFS (CUBIC: 0.7) of what each ACK reports delivered, never a burst:
/// the window comes down smoothly instead of stopping dead.
#[test]
fn proportional_rate_reduction_paces_a_sack_recovery() {
    let mut p = Peer::new();
    let (h, _) = p.established_with_options(5000);
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, &vec![7u8; 40 * 1448]).unwrap();
    let sent = p.recv();
    p.advance(PATH_RTT);
    assert_eq!(sent.len(), 10);
    let end = |i: usize| sent[i].seq + sent[i].payload.len() as u32;
    // Segment 0 is lost; the peer SACKs 1..=9 one ACK at a time.
    let mut per_ack = Vec::new();
    for k in 1..=9 {
        p.ack_with_sack(sent[0].seq, &[(sent[1].seq, end(k))]);
        per_ack.push(p.recv().iter().filter(|s| !s.payload.is_empty()).count());
    }
    assert!(per_ack.iter().all(|&n| n <= 1), "no bursts: {per_ack:?}");
    assert_eq!(per_ack[..2], [1, 1], "limited transmit on the first two");
    // From the third on, recovery: 1 retransmission + about 0.7 × 7 segments delivered.
    let total: usize = per_ack[2..].iter().sum();
    assert!(
        (4..=6).contains(&total),
        "{total} segments sent over the recovery: {per_ack:?}"
    );
}

mod ephemeral;
mod memory;
mod orphans;
mod recovery;
mod review2;
mod review_rack;
mod seqspace;
mod syncookies;

/// `recv_discard` (Linux's MSG_TRUNC) takes bytes as `recv` would, without
/// copying them: what follows is read in order, the window reopens, and
/// the end of the stream reads as 0.
#[test]
fn recv_discard_takes_bytes_as_recv_would_without_copying() {
    let mut p = Peer::new();
    let h = p.established_active();
    let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    p.send_next(ACK | PSH, &data[..1448]);
    p.send_next(ACK | PSH, &data[1448..2896]);
    p.send_next(ACK | PSH | FIN, &data[2896..]);
    assert_eq!(p.i.tcp(p.now).recv_discard(h, 1000), Ok(1000));
    let mut buf = [0u8; 500];
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Ok(500));
    assert_eq!(buf[..], data[1000..1500], "the bytes after the discarded ones");
    assert_eq!(p.i.tcp(p.now).recv_discard(h, usize::MAX), Ok(1500));
    assert_eq!(p.i.tcp(p.now).recv_discard(h, usize::MAX), Ok(0), "end of stream");
    assert_eq!(p.i.tcp_layer().recv_queue(h), 0, "all taken");
}
