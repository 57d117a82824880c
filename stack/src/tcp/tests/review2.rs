//! Rules found missing in the second review of the loss-recovery work
//! (RFC 6298, RFC 5681, RFC 7323), segment by segment against the scripted
//! peer of `recovery.rs`.

use super::recovery::{data, flight, info, range};
use super::*;

/// RFC 6298 §3 (Karn), as Linux's tcp_clean_rtx_queue: an ACK that covers a
/// retransmission times nothing by the segments sent once that it also
/// covers (they waited at the receiver for the hole to fill, for a whole
/// timeout here); only the echoed TSval measures the path (RFC 7323 §4.1).
#[test]
fn an_ack_covering_a_retransmission_times_nothing_by_the_segments_sent_once() {
    let mut p = Peer::new();
    let (_, sent) = flight(&mut p, 10);
    let before = info(&p).srtt.expect("the handshake was timed");
    // Segment 0 is lost and every ACK for 1..9 too: the probe, then the timeout.
    p.advance(Duration::from_millis(5));
    assert_eq!(data(&p.recv()), [sent[9].seq], "the probe");
    p.advance(Duration::from_millis(400));
    let rto = p.recv();
    assert_eq!(data(&rto), [sent[0].seq], "the timeout resends the first segment");
    let resend_tsval = rto[0].options.timestamps.expect("timestamps").0;
    // The resend fills the hole: one ACK for everything, echoing it.
    p.advance(PATH_RTT);
    p.ack_echoing(range(&sent[9]).1, resend_tsval, &[]);
    let after = info(&p).srtt.expect("an RTT");
    assert!(
        after <= before + Duration::from_millis(2),
        "SRTT {after:?} from {before:?}: timed by segment 1, sent 400 ms ago"
    );
}

/// RFC 5681 §4.2, as Linux's tcp_measure_rcv_mss: what counts as a
/// full-sized segment follows the peer down when its segments shrink (its
/// path MTU fell): two in a row of the same smaller size (at least 536
/// bytes) are the new full size, and every second one draws an ACK again,
/// not every third.
#[test]
fn full_sized_follows_the_peer_down_after_its_segments_shrink() {
    let mut p = Peer::new();
    let (h, _) = p.established_with_options(5000);
    p.end_quick_acks(h);
    p.send_ts(ACK, 6001, 0, &[1u8; 1448]);
    p.send_ts(ACK, 6002, 0, &[2u8; 1448]);
    assert_eq!(p.recv().len(), 1, "two full segments: an ACK");
    // The peer's path MTU falls to 1280: 1228 bytes with timestamps.
    p.send_ts(ACK, 6003, 0, &[3u8; 1228]);
    p.send_ts(ACK, 6004, 0, &[4u8; 1228]);
    p.recv();
    p.send_ts(ACK, 6005, 0, &[5u8; 1228]);
    assert!(p.recv().is_empty(), "one segment: the ACK is delayed");
    p.send_ts(ACK, 6006, 0, &[6u8; 1228]);
    let acks = p.recv();
    assert_eq!(
        acks.len(),
        1,
        "the second segment of the new size is acknowledged at once"
    );
    assert_eq!(acks[0].ack, p.seq);
}

/// RFC 7323 §5 as Linux applies it (tcp_paws_check): a TS.Recent of zero
/// is no timestamp at all (some stacks send TSval 0 in the SYN, then their
/// real clock), so PAWS does not drop what follows it, and the next TSval
/// replaces it, whatever half of the number space it lies in.
#[test]
fn paws_ignores_a_zero_ts_recent_from_the_syn() {
    let mut p = Peer::new();
    let l = p.listen(8);
    let (seq, ack) = (p.seq, p.ack);
    p.send_opts(SYN, seq, ack, 65535, linux_syn_options(0), b"");
    p.seq += 1;
    let synack = p.recv_one();
    p.ack = synack.seq + 1;
    let echo = synack.options.timestamps.map_or(0, |(v, _)| v);
    p.advance(PATH_RTT);
    p.send_ts(ACK, 0x9000_0000, echo, b"");
    let (h, _) = p.i.tcp(p.now).accept(l).expect("the handshake completed");
    assert_eq!(p.i.tcp_layer().state(h), State::Established);
    p.send_ts(ACK | PSH, 0x9000_0001, echo, b"data");
    p.advance(Duration::from_millis(50));
    let ack = p.recv_one();
    assert_eq!(ack.ack, p.seq, "the data was taken");
    assert_eq!(
        ack.options.timestamps.map(|(_, e)| e),
        Some(0x9000_0001),
        "TS.Recent replaced"
    );
    assert_eq!(p.i.stats().tcp_paws_dropped, 0);
}

/// RFC 6675 §4 (a segment is SACKed when a block covers it whole), as
/// Linux's tcp_match_skb_to_sack: a block whose left edge falls inside a
/// segment does not mark that segment, whose first bytes the receiver may
/// never have had; marked, it would never be resent before a timeout.
#[test]
fn a_block_beginning_inside_a_segment_leaves_that_segment_unsacked() {
    use crate::tcp::sack::tests::{s, ten};
    let mut log = ten();
    assert_eq!(log.sack(s(450), s(600), |_| {}), 100, "only 500..600 lies inside");
    assert_eq!(log.next_sacked(s(0)), Some(s(500)));
    assert_eq!((log.sacked_segs(), log.pipe()), (1, 900));
    log.assert_sound(s(0), s(1000));
}

/// `SO_ERROR` on Linux returns a pending hard error first (`sk_err`, set
/// by an RST: ECONNRESET), once, and only then the soft one. `recv` here
/// goes on reporting the reset (a documented difference).
#[test]
fn take_error_returns_a_pending_reset_as_so_error_does() {
    let mut p = Peer::new();
    let (_, h) = p.established_passive();
    let (seq, ack) = (p.seq, p.ack);
    p.send(RST, seq, ack, b"");
    assert_eq!(p.i.tcp(p.now).take_error(h), Some(ConnError::Reset));
    assert_eq!(p.i.tcp(p.now).take_error(h), None, "once");
}
