//! Loss recovery rules found missing in review (RFC 6298, 8985, 3522),
//! segment by segment against the scripted peer of `recovery.rs`.

use super::recovery::{data, flight, range};
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
