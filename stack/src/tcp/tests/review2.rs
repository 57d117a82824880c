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
