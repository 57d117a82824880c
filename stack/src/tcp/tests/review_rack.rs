//! Loss recovery rules found missing in review (RFC 6298, 8985, 3522),
//! segment by segment against the scripted peer of `recovery.rs`.

use super::recovery::{data, flight, info, range};
use super::*;
use crate::tcp::tcb::Timer;

/// When the connection's retransmission timer fires next.
fn rto_deadline(p: &Peer, h: TcpHandle) -> Instant {
    let t = p.i.tcp_layer().conns.get(h.0).expect("the connection");
    t.timer(Timer::Retransmit).expect("the retransmission timer is armed")
}

/// RFC 6298 §5.4 and RFC 8985 §6.3: when the timer expires, the earliest
/// unacknowledged segment goes again, whatever else is in flight. Here a
/// small write went out just before the timeout; it is not overdue, so it
/// stays in `pipe`, which a one-segment window must not let block the
/// resend (Linux retransmits the head from the timer itself).
#[test]
fn a_timeout_resends_the_first_segment_even_with_a_fresh_one_in_flight() {
    let mut p = Peer::new();
    let (h, sent) = flight(&mut p, 5);
    // The first segment is acknowledged (RACK learns a 1 ms RTT), then silence.
    p.ack_with_sack(range(&sent[0]).1, &[]);
    p.advance(Duration::from_millis(10));
    assert_eq!(data(&p.recv()), [sent[4].seq], "the loss probe");
    let deadline = rto_deadline(&p, h);
    p.advance(deadline - Duration::from_micros(500) - p.now);
    p.i.tcp(p.now).send(h, &[9u8; 100]).unwrap();
    assert_eq!(p.recv().len(), 1, "the small write goes at once");
    p.advance(Duration::from_millis(1));
    assert_eq!(p.i.stats().tcp_rto_retransmits, 1, "the timer fired");
    assert_eq!(
        data(&p.recv()),
        [sent[1].seq],
        "the first unacknowledged segment goes again"
    );
}

/// RFC 3522 §2 and Linux's partial undo (`tcp_try_undo_partial` gives up
/// while retransmissions are still out): an ACK whose echo predates the
/// first retransmission shows only that the segment at the hole arrived
/// late. A second hole, really lost and resent, is still outstanding: the
/// reduction stands.
#[test]
fn eifel_does_not_undo_while_another_retransmission_is_outstanding() {
    let mut p = Peer::new();
    let (_, sent) = flight(&mut p, 10);
    let original_tsval = sent[0].options.timestamps.expect("timestamps").0;
    // Segment 0 is delayed, segment 4 lost: the peer SACKs 1-3, then 5-9.
    let mut resent = Vec::new();
    for k in 1..10 {
        if k == 4 {
            continue;
        }
        let mut blocks = vec![(sent[1].seq, range(&sent[k.min(3)]).1)];
        if k > 4 {
            blocks.insert(0, (sent[5].seq, range(&sent[k]).1));
        }
        p.ack_with_sack(sent[0].seq, &blocks);
        resent.extend(data(&p.recv()));
    }
    assert!(
        resent.contains(&sent[0].seq) && resent.contains(&sent[4].seq),
        "{resent:?}"
    );
    let reduced = info(&p).cwnd;
    // The original segment 0 arrives: the ACK echoes its TSval; 4 is still a hole.
    p.advance(PATH_RTT);
    p.ack_echoing(sent[4].seq, original_tsval, &[(sent[5].seq, range(&sent[9]).1)]);
    assert_eq!(p.i.stats().tcp_spurious_undone, 0, "segment 4 was really lost");
    assert!(
        info(&p).cwnd <= reduced + 2 * info(&p).mss,
        "cwnd {} back up from {reduced}",
        info(&p).cwnd
    );
}

/// RFC 8985 §3.3.2 and §6.2 step 4: the reordering window widens for
/// D-SACKs that show one of our retransmissions was needless. A D-SACK for
/// data never resent is the network duplicating a segment (`--duplicate`):
/// it says nothing of reordering, and Linux ignores it (`tcp_dsack_seen`:
/// no more D-SACKed segments than were ever retransmitted). Here four
/// rounds each carry such a D-SACK; a real loss afterwards must still be
/// found a quarter min_RTT after RACK.rtt, not a whole SRTT.
#[test]
fn dsacks_for_data_never_resent_leave_the_reordering_window_alone() {
    let mut p = Peer::new();
    let (h, sent) = flight(&mut p, 10);
    // Segment 1 arrives after 2: reordering seen (§6.2 step 3), nothing resent.
    p.ack_with_sack(sent[1].seq, &[range(&sent[2])]);
    p.ack_with_sack(range(&sent[9]).1, &[]);
    assert_eq!(data(&p.recv()), [], "nothing resent");
    for _ in 0..4 {
        p.i.tcp(p.now).send(h, &vec![1u8; 10 * 1448]).unwrap();
        let round = p.recv();
        p.advance(PATH_RTT);
        // The network duplicated segment 0, long acknowledged.
        p.ack_with_sack(range(&round[4]).1, &[range(&sent[0])]);
        p.ack_with_sack(range(round.last().expect("a round")).1, &[]);
        assert_eq!(p.recv().len(), 0, "no loss, nothing resent");
    }
    p.i.tcp(p.now).send(h, &vec![2u8; 10 * 1448]).unwrap();
    let last = p.recv();
    assert_eq!(last.len(), 10);
    let sent_at = p.now;
    p.advance(PATH_RTT);
    // Segment 0 is lost; 1-9 are SACKed.
    for k in 1..10 {
        p.ack_with_sack(last[0].seq, &[(last[1].seq, range(&last[k]).1)]);
    }
    assert_eq!(data(&p.recv()), [], "within the reordering window");
    // RACK.rtt is 1.18 ms, min_RTT / 4 is 0.25 ms.
    p.advance(sent_at + Duration::from_micros(1600) - p.now);
    assert_eq!(data(&p.recv()), [last[0].seq], "lost once RACK.rtt + min_RTT/4 passed");
}

/// RFC 6675 §5 (4.3) and RFC 6937 §3: entering recovery, the first lost
/// segment goes at once (Linux's PRR sends at least one segment while
/// `prr_out` is zero). With a flight of 14, `pipe` (10 segments) stays
/// above ssthresh (0.7 × 14), and PRR's proportional share of the one
/// segment this ACK delivered is less than a segment: it must not hold the
/// fast retransmit back until the next ACK.
#[test]
fn entering_recovery_the_fast_retransmit_goes_on_the_same_ack() {
    let mut p = Peer::new();
    let (h, sent) = flight(&mut p, 10);
    for s in &sent {
        p.ack_with_sack(range(s).1, &[]);
    }
    let mss = 1448;
    assert!(
        info(&p).cwnd >= 14 * mss,
        "slow start grew the window: {}",
        info(&p).cwnd
    );
    p.i.tcp(p.now).send(h, &vec![3u8; 14 * mss]).unwrap();
    let next = p.recv();
    assert_eq!(next.len(), 14);
    p.advance(PATH_RTT);
    // Segment 0 is lost; once 1-3 are SACKed (DupThresh) RACK marks it.
    for k in 1..3 {
        p.ack_with_sack(next[0].seq, &[(next[1].seq, range(&next[k]).1)]);
        assert_eq!(data(&p.recv()), [], "not yet lost");
    }
    p.ack_with_sack(next[0].seq, &[(next[1].seq, range(&next[3]).1)]);
    assert_eq!(info(&p).recovery.fast_recoveries, 1);
    assert_eq!(data(&p.recv()), [next[0].seq], "the fast retransmit");
}

/// `sack.rs` promises that nothing grows beyond the segments in flight,
/// whatever blocks the receiver sends (DESIGN: bad peer input costs
/// nothing). When a SACK block edge inside a segment split it, a peer
/// SACKing single bytes added up to six entries per ACK (1209 after 200
/// ACKs for a 10-segment flight; a 4 MiB flight allows millions), each
/// split an O(n) insertion. Now only whole segments are SACKed, as Linux
/// (`tcp_match_skb_to_sack` rounds a block to MSS multiples).
#[test]
fn single_byte_sack_blocks_do_not_multiply_the_scoreboard() {
    let mut p = Peer::new();
    let (h, sent) = flight(&mut p, 10);
    let base = sent[1].seq;
    for round in 0..200u32 {
        let blocks: Vec<_> = (0..3u32)
            .map(|b| {
                let at = base + (round * 6 + b * 2) % (9 * 1448);
                (at, at + 1)
            })
            .collect();
        p.ack_with_sack(sent[0].seq, &blocks);
    }
    let t = p.i.tcp_layer().conns.get(h.0).expect("the connection");
    let entries = t.scoreboard.iter().count();
    assert!(
        entries <= 2 * sent.len(),
        "{entries} scoreboard entries for 10 segments"
    );
}
