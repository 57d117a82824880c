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
    let (_h, _) = p.established_with_options(5000);
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
