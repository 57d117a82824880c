//! RACK-TLP (RFC 8985) and the undoing of spurious reductions (RFC 2883,
//! 3522), segment by segment against a scripted peer on a 1 ms path.

use super::*;

/// cwnd and the recovery counters of the one connection.
pub(super) fn info(p: &Peer) -> TcpInfo {
    p.i.tcp_layer()
        .sockets()
        .into_iter()
        .find(|s| s.state != State::Listen)
        .expect("a connection")
}

/// A connection with SACK and timestamps that sent `n` full segments at
/// once; returns its handle and the segments, a round trip ago.
pub(super) fn flight(p: &mut Peer, n: usize) -> (TcpHandle, Vec<Seg>) {
    let (h, _) = p.established_with_options(5000);
    p.i.tcp(p.now).set_nodelay(h, true);
    p.i.tcp(p.now).send(h, &vec![7u8; n * 1448]).unwrap();
    let sent = p.recv();
    assert_eq!(sent.len(), n.min(10), "the initial window");
    p.advance(PATH_RTT);
    (h, sent)
}

pub(super) fn range(s: &Seg) -> (SeqNum, SeqNum) {
    (s.seq, s.seq + s.payload.len() as u32)
}

/// Data segments among `segs`, by sequence number.
pub(super) fn data(segs: &[Seg]) -> Vec<SeqNum> {
    segs.iter().filter(|s| !s.payload.is_empty()).map(|s| s.seq).collect()
}

/// RFC 8985 §6.2: one segment lost in ten; once three segments after it
/// are SACKed (no reordering seen: DupThresh), it is lost and goes again,
/// once, with no timeout.
#[test]
fn a_single_loss_is_repaired_by_fast_recovery_without_a_timeout() {
    let mut p = Peer::new();
    let (_, sent) = flight(&mut p, 10);
    let mut resent = Vec::new();
    p.ack_with_sack(sent[3].seq, &[]);
    for k in 4..10 {
        p.ack_with_sack(sent[3].seq, &[(sent[4].seq, range(&sent[k]).1)]);
        resent.extend(data(&p.recv()).into_iter().filter(|s| s.lt(range(&sent[9]).1)));
    }
    assert_eq!(resent, [sent[3].seq], "the lost segment, once");
    p.ack_with_sack(range(&sent[9]).1, &[]);
    let i = info(&p);
    assert_eq!((i.recovery.fast_recoveries, i.recovery.timeouts), (1, 0));
    assert_eq!(p.i.stats().tcp_rto_retransmits, 0);
}

/// RFC 8985 §7: the last two segments of a flight are lost, so no ACK
/// reports them. Two SRTTs later, not an RTO later, the last one goes again
/// as a probe; its SACK shows the other lost, and fast recovery repairs it.
#[test]
fn a_tail_loss_is_repaired_by_a_loss_probe_without_a_timeout() {
    let mut p = Peer::new();
    let (h, sent) = flight(&mut p, 10);
    p.ack_with_sack(sent[8].seq, &[]);
    assert!(data(&p.recv()).is_empty());
    // PTO: 2 × SRTT (1 ms) + 2 ms, far below the 200 ms minimum RTO.
    p.advance(Duration::from_millis(5));
    let probe = p.recv();
    assert_eq!(data(&probe), [sent[9].seq], "the last segment goes again as the probe");
    assert_eq!(p.i.stats().tcp_loss_probes, 1);
    // The probe arrives: the peer SACKs it; RACK finds segment 8 lost.
    p.advance(PATH_RTT);
    p.ack_with_sack(sent[8].seq, &[range(&sent[9])]);
    p.advance(PATH_RTT / 2);
    assert_eq!(data(&p.recv()), [sent[8].seq], "the hole before the probe");
    p.ack_with_sack(range(&sent[9]).1, &[]);
    let i = info(&p);
    assert_eq!(i.recovery.loss_probes, 1);
    assert_eq!(i.recovery.timeouts, 0);
    assert_eq!(p.i.stats().tcp_rto_retransmits, 0, "no timeout");
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
    assert!(i.recovery.fast_recoveries >= 1);
}

/// RFC 8985 §7.4.2: a probe that was the only repair still counts as a
/// loss for congestion control (no D-SACK came to say the original arrived).
#[test]
fn a_loss_the_probe_alone_repaired_reduces_the_window() {
    let mut p = Peer::new();
    let (h, sent) = flight(&mut p, 10);
    p.ack_with_sack(sent[9].seq, &[]);
    let before = info(&p).cwnd;
    p.advance(Duration::from_millis(300));
    assert_eq!(data(&p.recv()), [sent[9].seq]);
    // The probe was the only copy to arrive: a plain ACK for it, then new data is acknowledged.
    p.ack_with_sack(range(&sent[9]).1, &[]);
    p.i.tcp(p.now).send(h, &[1u8; 100]).unwrap();
    let more = p.recv();
    p.ack_with_sack(range(&more[0]).1, &[]);
    assert_eq!(p.i.stats().tcp_loss_probe_recoveries, 1);
    assert!(info(&p).cwnd < before, "cwnd {} not below {before}", info(&p).cwnd);
}

/// RFC 8985 §3.3.2: segment 2 arrives after 3, 4 and 5. The first time,
/// DupThresh calls it lost and it goes again; the D-SACK for that copy
/// shows reordering, the window comes back, and RACK's reordering window
/// opens. The same reordering in the next flight costs no retransmission.
#[test]
fn reordering_of_three_segments_costs_nothing_once_the_window_adapted() {
    let mut p = Peer::new();
    let (h, sent) = flight(&mut p, 10);
    let late = |p: &mut Peer, s: &[Seg]| {
        let mut resent = Vec::new();
        p.ack_with_sack(s[2].seq, &[]);
        for k in 3..6 {
            p.ack_with_sack(s[2].seq, &[(s[3].seq, range(&s[k]).1)]);
            resent.extend(
                data(&p.recv())
                    .into_iter()
                    .filter(|x| x.lt(range(&s[9]).1) && x.ge(s[0].seq)),
            );
        }
        // Segment 2 arrives late: the cumulative ACK jumps.
        p.ack_with_sack(range(&s[5]).1, &[]);
        resent.extend(
            data(&p.recv())
                .into_iter()
                .filter(|x| x.lt(range(&s[9]).1) && x.ge(s[0].seq)),
        );
        resent
    };
    assert_eq!(
        late(&mut p, &sent),
        [sent[2].seq],
        "the first time, DupThresh calls it lost"
    );
    // The retransmitted copy arrives too: D-SACK.
    p.ack_with_sack(range(&sent[5]).1, &[range(&sent[2])]);
    assert_eq!(p.i.stats().tcp_spurious_undone, 1, "every retransmission was needless");
    p.ack_with_sack(range(&sent[9]).1, &[]);
    p.recv();
    let marked = p.i.stats().tcp_rack_marked;
    // The next flight, reordered the same way.
    p.i.tcp(p.now).send(h, &vec![8u8; 10 * 1448]).unwrap();
    let next = p.recv();
    assert!(next.len() >= 10, "a full flight: {}", next.len());
    p.advance(PATH_RTT);
    assert_eq!(late(&mut p, &next), [], "no retransmission");
    assert_eq!(p.i.stats().tcp_rack_marked, marked, "nothing marked lost");
}

/// RFC 3522 (Eifel) with RFC 4015's response: the ACKs were only delayed
/// past the RTO. The first ACK after the timeout echoes the original
/// transmission's TSval, so the timeout was spurious: the window comes
/// back and nothing more is resent.
#[test]
fn a_spurious_timeout_is_undone() {
    let mut p = Peer::new();
    let (_, sent) = flight(&mut p, 10);
    let before = info(&p).cwnd;
    let original_tsval = sent[0].options.timestamps.expect("timestamps").0;
    // Nothing comes back: first the probe, then the timeout.
    p.advance(Duration::from_millis(5));
    assert_eq!(data(&p.recv()), [sent[9].seq], "the probe");
    p.advance(Duration::from_millis(400));
    assert_eq!(data(&p.recv()), [sent[0].seq], "the timeout resends the first segment");
    assert_eq!(info(&p).cwnd, info(&p).mss, "one segment after a timeout");
    // The delayed ACK for the originals arrives, echoing their TSval.
    p.ack_echoing(range(&sent[4]).1, original_tsval, &[]);
    let out = p.recv();
    let resent: Vec<_> = data(&out).into_iter().filter(|s| s.lt(range(&sent[9]).1)).collect();
    assert_eq!(resent, [], "nothing more goes again");
    assert_eq!(p.i.stats().tcp_spurious_undone, 1);
    let i = info(&p);
    assert_eq!(i.recovery.undone, 1);
    assert!(i.cwnd >= before, "cwnd {} restored to at least {before}", i.cwnd);
}

/// Without the echo (the ACK answers the retransmission) the timeout stands.
#[test]
fn a_real_timeout_is_not_undone() {
    let mut p = Peer::new();
    let (_, sent) = flight(&mut p, 10);
    p.advance(Duration::from_millis(5));
    p.recv();
    p.advance(Duration::from_millis(400));
    let rto = p.recv();
    let resend_tsval = rto[0].options.timestamps.expect("timestamps").0;
    p.ack_echoing(range(&sent[0]).1, resend_tsval, &[]);
    assert_eq!(p.i.stats().tcp_spurious_undone, 0);
    let i = info(&p);
    assert!(i.cwnd <= 2 * i.mss, "still slow-starting: {}", i.cwnd);
}

/// RFC 6937 §3, as Linux's tcp_end_cwnd_reduction: a SACK recovery ends
/// with the window at ssthresh, where PRR brought it, even when the
/// recovery drained the flight (NewReno's deflation to the flight would
/// leave a segment or two).
#[test]
fn a_sack_recovery_ends_at_ssthresh() {
    let mut p = Peer::new();
    let (_, sent) = flight(&mut p, 10);
    p.ack_with_sack(sent[1].seq, &[]);
    for k in 2..10 {
        p.ack_with_sack(sent[1].seq, &[(sent[2].seq, range(&sent[k]).1)]);
    }
    assert!(data(&p.recv()).contains(&sent[1].seq), "the loss went again");
    p.ack_with_sack(range(&sent[9]).1, &[]);
    let i = info(&p);
    assert_eq!(i.cwnd, i.ssthresh, "the recovery ends at ssthresh");
    assert!(i.cwnd > 2 * i.mss, "not deflated to the empty flight: {}", i.cwnd);
}

/// RFC 5681 §4.2: every second full-sized segment is acknowledged at once.
/// With timestamps a full segment from a Linux peer carries 1448 bytes, 12
/// less than the MSS; two of them still draw the ACK (waiting for a third,
/// or 40 ms, slows the peer's ACK clock and its loss recovery).
#[test]
fn two_full_segments_with_timestamps_draw_an_ack_at_once() {
    let mut p = Peer::new();
    let (h, _) = p.established_with_options(5000);
    p.end_quick_acks(h);
    p.send_ts(ACK, 6001, 0, &[1u8; 1448]);
    assert!(p.recv().is_empty(), "one segment: the ACK is delayed");
    p.send_ts(ACK, 6002, 0, &[2u8; 1448]);
    let acks = p.recv();
    assert_eq!(acks.len(), 1, "the second full segment is acknowledged at once");
    assert_eq!(acks[0].ack, p.seq);
}

/// PAWS on a path that reorders, as Linux (tcp_paws_discard): a TSval one
/// tick behind TS.Recent is let through; a late pure duplicate ACK is only
/// reordered and is let through (its SACK blocks count); and old data that
/// PAWS drops is reported as a D-SACK, so its sender can undo a needless
/// retransmission (RFC 2883 §4.1).
#[test]
fn paws_forgives_a_tick_and_late_acks_and_dsacks_what_it_drops() {
    let mut p = Peer::new();
    let (_h, _) = p.established_with_options(5000);
    p.send_ts(ACK | PSH, 6000, 0, b"abc");
    p.advance(Duration::from_millis(50));
    p.recv();
    p.send_ts(ACK | PSH, 5999, 0, b"def");
    assert_eq!(p.i.stats().tcp_paws_dropped, 0, "one tick behind is forgiven");
    p.advance(Duration::from_millis(50));
    p.recv();
    // The peer's pure ACKs; then one that left before the last of them.
    p.send_ts(ACK, 6001, 0, b"");
    let (seq, ack) = (p.seq, p.ack);
    let late = TcpOptions {
        timestamps: Some((5990, 0)),
        ..TcpOptions::default()
    };
    p.send_opts(ACK, seq, ack, 65535 >> 7, late, b"");
    assert_eq!(p.i.stats().tcp_paws_dropped, 0, "a reordered duplicate ACK passes");
    // Old data again, with an old TSval: dropped, and reported as a duplicate.
    let old = TcpOptions {
        timestamps: Some((5000, 0)),
        ..TcpOptions::default()
    };
    p.send_opts(ACK | PSH, seq - 3, ack, 65535 >> 7, old, b"def");
    assert_eq!(p.i.stats().tcp_paws_dropped, 1);
    let dup = p.recv_one();
    assert_eq!(
        dup.options.sack.as_slice().first(),
        Some(&(seq - 3, seq)),
        "a D-SACK for it"
    );
}

/// Linux's tcp_cleanup_rbuf: once the application has read all of a pushed
/// burst, the delayed ACK goes at once (a sender's tail would otherwise wait
/// 40 ms and fire its loss probe), unless the connection is interactive
/// (pingpong: our replies carry the ACKs), where a read sends nothing and
/// the reply carries the ACK.
#[test]
fn reading_a_pushed_burst_acks_it_unless_replies_carry_the_acks() {
    let mut p = Peer::new();
    let h = p.established_active();
    let mut buf = [0u8; 256];
    p.send_next(ACK | PSH, &[1u8; 100]);
    assert!(p.recv().is_empty(), "the ACK is delayed");
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Ok(100));
    let ack = p.recv_one();
    assert_eq!((ack.ack, ack.payload.len()), (p.seq, 0), "read: acknowledged at once");
    // A request answered: the reply carries the ACK, and the connection is interactive.
    p.send_next(ACK | PSH, &[2u8; 100]);
    p.i.tcp(p.now).send(h, b"reply").unwrap();
    let reply = p.recv_one();
    assert_eq!((reply.ack, reply.payload.len()), (p.seq, 5));
    p.send_next(ACK | PSH, &[3u8; 100]);
    assert_eq!(p.i.tcp(p.now).recv(h, &mut buf), Ok(200));
    assert!(p.recv().is_empty(), "interactive: the read sends no ACK of its own");
    p.advance(Duration::from_millis(50));
    assert_eq!(p.recv_one().ack, p.seq, "the delayed ACK still comes");
}
