//! Orphans and TIME-WAIT under a peer that will not let go (issue 14):
//! a connection its application closed has a capped number and a bounded
//! life in every state; TIME-WAIT is a compact, capped entry; buffers go
//! as soon as nothing can use them.

use super::*;

/// The peer's window, closed: it ACKs everything but reads nothing.
const CLOSED: u16 = 0;

impl Peer {
    /// An accepted connection with `data` queued behind a window the peer
    /// closed, then closed by the application: an orphan in FIN-WAIT-1.
    fn orphan_against_a_closed_window(&mut self, data: &[u8]) -> TcpHandle {
        let (_l, h) = self.established_passive();
        let (seq, ack) = (self.seq, self.ack);
        self.send_opts(ACK, seq, ack, CLOSED, TcpOptions::default(), b"");
        assert_eq!(self.i.tcp(self.now).send(h, data).unwrap(), data.len());
        self.i.tcp(self.now).close(h, false);
        assert_eq!(self.i.tcp_layer().state(h), State::FinWait1);
        assert!(self.recv().is_empty(), "nothing may go into a zero window");
        h
    }

    /// Answers every zero-window probe (an ACK below SND.UNA) for `secs`
    /// seconds with `answer`, returning the probes seen.
    fn answer_probes(&mut self, secs: u64, mut answer: impl FnMut(&mut Peer, &Seg)) -> usize {
        let mut probes = 0;
        for _ in 0..secs * 10 {
            self.advance(Duration::from_millis(100));
            for s in self.recv() {
                if s.flags & RST != 0 || s.seq != self.ack - 1 {
                    continue;
                }
                probes += 1;
                answer(self, &s);
            }
        }
        probes
    }

    /// A duplicate ACK at the peer's current numbers, window closed.
    fn ack_closed(&mut self) {
        let (seq, ack) = (self.seq, self.ack);
        self.send_opts(ACK, seq, ack, CLOSED, TcpOptions::default(), b"");
    }

    /// The connection `h` as the core holds it.
    fn tcb_of(&self, h: TcpHandle) -> &tcb::Tcb {
        self.i.tcp_layer().conns.get(h.0).expect("live")
    }

    /// A peer whose connection we closed first: it waits in TIME-WAIT.
    fn in_time_wait() -> Peer {
        let mut p = Peer::new();
        let (_l, h) = p.established_passive();
        p.close_into_time_wait(h);
        p
    }

    /// Our active close answered by the peer's FIN: the connection goes to TIME-WAIT.
    fn close_into_time_wait(&mut self, h: TcpHandle) {
        self.i.tcp(self.now).close(h, false);
        let fin = self.recv_one();
        assert!(fin.is(FIN | ACK));
        self.ack = fin.seq + 1;
        self.send_next(FIN | ACK, b"");
        assert_eq!(self.recv_one().ack, self.seq, "the peer's FIN acknowledged");
    }
}

#[test]
fn an_orphan_against_a_zero_window_dies_after_orphan_retries_though_the_peer_keeps_acking() {
    let mut p = Peer::with(|c| c.tcp.orphan_retries = 4);
    let h = p.orphan_against_a_closed_window(&[7u8; 5000]);
    assert_eq!(p.i.tcp_layer().orphan_count(), 1);
    // Every probe is answered at once, with the window still closed.
    let probes = p.answer_probes(600, |p, _| p.ack_closed());
    assert!(!p.i.tcp_layer().exists(h), "the orphan is gone");
    assert_eq!(probes, 4, "orphan_retries probes, then the end");
    assert_eq!(p.i.stats().tcp_orphan_timeouts, 1);
    assert_eq!(p.i.tcp_layer().orphan_count(), 0);
    assert_eq!(p.i.tcp_layer().connection_count(), 0);
}

#[test]
fn a_connection_still_held_is_probed_as_long_as_the_peer_answers() {
    // RFC 9293 §3.8.6.1: only an orphan loses its patience.
    let mut p = Peer::with(|c| c.tcp.orphan_retries = 4);
    let (_l, h) = p.established_passive();
    p.ack_closed();
    p.i.tcp(p.now).send(h, &[7u8; 5000]).unwrap();
    let probes = p.answer_probes(600, |p, _| p.ack_closed());
    assert!(probes > 4, "{probes} probes");
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
}

#[test]
fn unacceptable_segments_do_not_restart_an_orphans_probe_count() {
    let mut p = Peer::with(|c| c.tcp.orphan_retries = 4);
    let h = p.orphan_against_a_closed_window(&[7u8; 5000]);
    // The peer answers each probe with junk: an ACK for data never sent,
    // an old duplicate, and a segment far outside the window.
    let probes = p.answer_probes(600, |p, _| {
        let (seq, ack) = (p.seq, p.ack);
        p.send_opts(ACK, seq, ack + 100_000, CLOSED, TcpOptions::default(), b"");
        p.send_opts(ACK, seq - 50_000, ack, CLOSED, TcpOptions::default(), b"x");
        p.ack_closed();
    });
    assert!(!p.i.tcp_layer().exists(h));
    assert_eq!(probes, 4);
    assert_eq!(p.i.stats().tcp_orphan_timeouts, 1);
}

#[test]
fn an_orphans_probe_count_restarts_when_the_window_opens() {
    let mut p = Peer::with(|c| c.tcp.orphan_retries = 4);
    let h = p.orphan_against_a_closed_window(&[7u8; 5000]);
    p.answer_probes(5, |p, _| p.ack_closed());
    assert!(p.tcb_of(h).probes_unanswered > 0);
    // Progress: the window opens, a segment goes and is acknowledged; then it closes again.
    let (seq, ack) = (p.seq, p.ack);
    p.send_opts(ACK, seq, ack, 1000, TcpOptions::default(), b"");
    let data = p.recv_one();
    assert!(!data.payload.is_empty());
    p.ack += data.payload.len() as u32;
    p.ack_closed();
    assert_eq!(p.tcb_of(h).probes_unanswered, 0, "progress restarts the count");
}

#[test]
fn an_orphan_whose_probes_backed_off_before_its_close_dies_at_the_next_probe_timer() {
    // As Linux's tcp_probe_timer: the backoff, which only progress resets,
    // counts too; else a connection stalled for long before its
    // application gave up would get `orphan_retries` maximal RTOs more.
    let mut p = Peer::with(|c| c.tcp.orphan_retries = 4);
    let (_l, h) = p.established_passive();
    p.ack_closed();
    p.i.tcp(p.now).send(h, &[7u8; 5000]).unwrap();
    for _ in 0..60 {
        if p.tcb_of(h).backoff >= 5 {
            break;
        }
        p.answer_probes(1, |p, _| p.ack_closed());
    }
    assert!(p.tcb_of(h).backoff >= 5, "held, it is probed on and on");
    p.i.tcp(p.now).close(h, false);
    let probes = p.answer_probes(600, |p, _| p.ack_closed());
    assert_eq!(probes, 0, "the backoff is past orphan_retries already");
    assert!(!p.i.tcp_layer().exists(h));
    assert_eq!(p.i.stats().tcp_orphan_timeouts, 1);
}

#[test]
fn a_reset_goes_where_the_peers_window_takes_it() {
    // Linux's tcp_acceptable_seq: past a zero window, only SND.UNA is
    // acceptable (RFC 9293 §3.10.7.4); a RST at SND.MAX would be ignored
    // and the peer never hear that the connection is gone.
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).send(h, &[1u8; 2000]).unwrap();
    let sent = p.recv();
    assert!(sent.len() >= 2, "{sent:?}");
    // The peer takes the first segment only, and closes its window.
    p.ack = sent[0].seq + sent[0].payload.len() as u32;
    p.ack_closed();
    p.i.tcp(p.now).abort(h);
    let rst = p.recv().into_iter().find(|s| s.flags & RST != 0).expect("a RST");
    assert_eq!(rst.seq, p.ack);
}

#[test]
fn an_orphan_in_last_ack_gives_up_after_orphan_retries() {
    let mut p = Peer::with(|c| c.tcp.orphan_retries = 3);
    let (_l, h) = p.established_passive();
    p.send_next(FIN | ACK, b"");
    p.recv();
    p.i.tcp(p.now).close(h, false);
    assert_eq!(p.i.tcp_layer().state(h), State::LastAck);
    // The peer never acknowledges our FIN.
    let mut fins = 0;
    for _ in 0..6000 {
        p.advance(Duration::from_millis(100));
        fins += p.recv().iter().filter(|s| s.flags & FIN != 0).count();
    }
    assert_eq!(fins, 4, "the FIN and 3 retransmissions");
    assert!(!p.i.tcp_layer().exists(h));
    assert_eq!(p.i.stats().tcp_orphan_timeouts, 1);
}

#[test]
fn an_orphan_in_fin_wait_2_is_reset_after_fin_timeout() {
    let mut p = Peer::with(|c| c.tcp.fin_timeout = Duration::from_secs(5));
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).close(h, false);
    let fin = p.recv_one();
    p.ack = fin.seq + 1;
    p.send_next(ACK, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::FinWait2);
    p.advance(Duration::from_millis(4900));
    assert!(p.i.tcp_layer().exists(h));
    p.advance(Duration::from_millis(200));
    assert!(p.recv_one().is(RST | ACK), "the peer hears of it");
    assert!(!p.i.tcp_layer().exists(h));
    assert_eq!(p.i.stats().tcp_orphan_timeouts, 1);
}

#[test]
fn closing_past_max_orphans_resets_at_once() {
    let mut p = Peer::with(|c| c.tcp.max_orphans = 1);
    let l = p.listen(8);
    let a = p.handshake_to(l);
    p.port += 1;
    let b = p.handshake_to(l);
    p.i.tcp(p.now).close(a, false);
    assert!(p.recv_one().is(FIN | ACK), "the first orphan closes normally");
    p.i.tcp(p.now).close(b, false);
    let segs = p.recv();
    assert!(segs.iter().any(|s| s.flags & RST != 0), "{segs:?}");
    assert!(!p.i.tcp_layer().exists(b));
    assert!(p.i.tcp_layer().exists(a));
    assert_eq!(p.i.stats().tcp_orphan_overflows, 1);
    assert_eq!(p.i.tcp_layer().orphan_count(), 1);
}

#[test]
fn time_wait_is_a_compact_entry_without_a_connection_block() {
    let p = Peer::in_time_wait();
    assert_eq!(p.i.tcp_layer().conns.len(), 0, "no connection block is kept");
    assert_eq!(p.i.tcp_layer().time_wait_count(), 1);
    assert_eq!(p.i.tcp_layer().orphan_count(), 0, "TIME-WAIT is no orphan");
    let rows = p.i.tcp_layer().sockets();
    let tw = rows
        .iter()
        .find(|r| r.state == State::TimeWait)
        .expect("netstat lists it");
    assert_eq!(tw.remote, SocketAddrV4::new(HOST, PEER_PORT));
    assert_eq!(tw.recv_allocated + tw.send_allocated, 0);
}

#[test]
fn time_wait_past_max_tw_buckets_frees_the_connection() {
    let mut p = Peer::with(|c| c.tcp.max_tw_buckets = 1);
    let l = p.listen(8);
    let a = p.handshake_to(l);
    p.close_into_time_wait(a);
    p.port += 1;
    p.seq += 10_000;
    let b = p.handshake_to(l);
    p.close_into_time_wait(b);
    assert_eq!(p.i.tcp_layer().time_wait_count(), 1);
    assert_eq!(p.i.stats().tcp_time_wait_overflows, 1);
    assert_eq!(p.i.tcp_layer().connection_count(), 1);
}

#[test]
fn time_wait_acknowledges_an_old_duplicate_at_a_limited_rate() {
    let mut p = Peer::in_time_wait();
    let (seq, ack) = (p.seq - 100, p.ack);
    p.send(ACK, seq, ack, b"old");
    let a = p.recv_one();
    assert!(a.is(ACK));
    assert_eq!(a.ack, p.seq);
    p.send(ACK, seq, ack, b"old");
    assert!(p.recv().is_empty(), "one ACK per 500 ms");
    assert_eq!(p.i.tcp_layer().time_wait_count(), 1);
}

#[test]
fn time_wait_absorbs_a_bare_ack_at_rcv_nxt() {
    let mut p = Peer::in_time_wait();
    p.send_next(ACK, b"");
    assert!(p.recv().is_empty());
    assert_eq!(p.i.tcp_layer().time_wait_count(), 1);
}

#[test]
fn a_rst_at_rcv_nxt_ends_time_wait_and_one_elsewhere_is_ignored() {
    let mut p = Peer::in_time_wait();
    let (seq, ack) = (p.seq + 10, p.ack);
    p.send(RST, seq, ack, b"");
    assert_eq!(p.i.tcp_layer().time_wait_count(), 1, "not at RCV.NXT: ignored");
    p.send(RST, p.seq, ack, b"");
    assert_eq!(p.i.tcp_layer().time_wait_count(), 0, "as Linux (RFC 1337 accepted)");
    assert!(p.recv().is_empty());
}

#[test]
fn an_old_syn_does_not_reopen_time_wait() {
    let mut p = Peer::in_time_wait();
    let (seq, ack) = (p.seq - 10, SeqNum(0));
    p.send(SYN, seq, ack, b"");
    let a = p.recv_one();
    assert!(a.is(ACK), "an ACK of the old connection: {a:?}");
    assert_eq!(p.i.tcp_layer().time_wait_count(), 1);
}

#[test]
fn a_syn_with_a_newer_timestamp_reopens_time_wait_whatever_its_sequence_number() {
    let mut p = Peer::new();
    let (h, _syn_ack) = p.established_with_options(1000);
    p.i.tcp(p.now).close(h, false);
    let fin = p.recv_one();
    p.ack = fin.seq + 1;
    p.send_ts(FIN | ACK, 1001, 0, b"");
    p.seq += 1;
    p.recv();
    assert_eq!(p.i.tcp_layer().time_wait_count(), 1);
    let opts = TcpOptions {
        timestamps: Some((5000, 0)),
        ..TcpOptions::default()
    };
    let seq = p.seq - 1000;
    p.send_opts(SYN, seq, SeqNum(0), 65535, opts, b"");
    assert!(p.recv_one().is(SYN | ACK));
    assert_eq!(p.i.tcp_layer().time_wait_count(), 0);
}

#[test]
fn the_send_buffer_is_freed_once_all_is_acknowledged_after_fin() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.i.tcp(p.now).send(h, &[1u8; 3000]).unwrap();
    let data = p.recv();
    p.ack = data.last().map(|s| s.seq + s.payload.len() as u32).unwrap();
    let fin = p.our_fin(h);
    assert!(p.tcb_of(h).send.allocated() > 0);
    p.ack = fin.seq + fin.payload.len() as u32 + 1;
    p.send_next(ACK, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::FinWait2);
    assert_eq!(p.tcb_of(h).send.allocated(), 0);
}

#[test]
fn the_receive_buffer_is_freed_once_nothing_more_can_be_read() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.send_next(ACK | PSH, b"hello");
    p.recv();
    assert!(p.tcb_of(h).recv.allocated() > 0);
    p.send_next(FIN | ACK, b"");
    p.recv();
    assert!(p.tcb_of(h).recv.allocated() > 0, "unread data stays");
    assert_eq!(p.read_all(h), b"hello");
    assert_eq!(p.tcb_of(h).recv.allocated(), 0, "read to the end");
}

/// A reset ends what could be sent: the send ring goes at once, though
/// the application still holds the connection; received data it has not
/// read stays readable.
#[test]
fn a_reset_frees_the_send_buffer_and_keeps_unread_data() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.send_next(ACK | PSH, b"hello");
    p.i.tcp(p.now).send(h, &[9u8; 30_000]).unwrap();
    p.recv();
    assert!(p.tcb_of(h).send.allocated() > 0);
    p.send_next(RST, b"");
    assert_eq!(p.i.tcp_layer().state(h), State::Closed);
    assert_eq!(p.tcb_of(h).send.allocated(), 0, "nothing more can be sent");
    assert!(p.tcb_of(h).recv.allocated() > 0, "unread data stays");
    assert_eq!(p.read_all(h), b"hello");
    assert_eq!(p.tcb_of(h).recv.allocated(), 0, "read to the end");
    assert_eq!(p.i.tcp_layer().memory().allocated, 0);
}

#[test]
fn the_receive_buffer_is_freed_when_reading_is_shut_down() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.send_next(ACK | PSH, b"hello");
    p.recv();
    assert_eq!(p.read_all(h), b"hello");
    assert!(p.tcb_of(h).recv.allocated() > 0);
    p.i.tcp(p.now).shutdown(h, Shutdown::Read).unwrap();
    assert_eq!(p.tcb_of(h).recv.allocated(), 0);
}

#[test]
fn an_application_holding_a_connection_gone_to_time_wait_sees_it_closed() {
    // As Linux: the socket is CLOSE once its connection is a TIME-WAIT entry.
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    p.send_next(ACK | PSH, b"unread");
    p.recv();
    let fin = p.our_fin(h);
    p.ack = fin.seq + 1;
    p.send_next(FIN | ACK, b"");
    p.recv();
    assert_eq!(p.i.tcp_layer().time_wait_count(), 1);
    assert_eq!(p.i.tcp_layer().state(h), State::Closed);
    assert_eq!(p.read_all(h), b"unread", "what arrived stays readable");
    assert_eq!(
        p.i.tcp(p.now).recv(h, &mut [0u8; 8]),
        Ok(0),
        "then the end of the stream"
    );
    assert_eq!(p.i.tcp(p.now).send(h, b"x"), Err(IoError::BrokenPipe));
    assert_eq!(p.i.tcp_layer().error(h), None, "closed in good order");
    p.i.tcp(p.now).close(h, false);
    assert!(!p.i.tcp_layer().exists(h));
    assert_eq!(p.i.tcp_layer().orphan_count(), 0);
    assert!(p.recv().is_empty(), "nothing more to say");
}

/// A peer that answers every retransmission of an orphan with a D-SACK for
/// it, yet never acknowledges it, proves no progress: the orphan still
/// runs out of `orphan_retries` (the undo of a "spurious" timeout must not
/// reset the count).
#[test]
fn d_sacks_that_acknowledge_nothing_cannot_keep_an_orphan_alive() {
    let mut p = Peer::with(|c| c.tcp.orphan_retries = 4);
    let (h, _) = p.established_with_options(5000);
    p.i.tcp(p.now).send(h, &[7u8; 3000]).unwrap();
    p.i.tcp(p.now).close(h, false);
    let first_flight = p.recv();
    let mut answered = 0;
    for _ in 0..36_000 {
        p.advance(Duration::from_millis(100));
        for s in p.recv() {
            // Only retransmissions: a D-SACK of an original is implausible.
            if s.payload.is_empty() || !first_flight.iter().any(|f| f.seq == s.seq) {
                continue;
            }
            let block = (s.seq, s.seq + s.payload.len() as u32);
            let una = p.ack; // the handshake, and nothing since
            p.ack_with_sack(una, &[block, block]);
            answered += 1;
        }
        if !p.i.tcp_layer().exists(h) {
            break;
        }
    }
    assert!(
        !p.i.tcp_layer().exists(h),
        "the orphan outlived an hour of D-SACKs ({answered} answered)"
    );
    assert_eq!(p.i.stats().tcp_orphan_timeouts, 1);
}
