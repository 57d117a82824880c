//! RACK-TLP loss detection (RFC 8985), for connections with SACK.
//!
//! RACK decides by time, not by counting duplicate ACKs: a segment is lost
//! once a segment sent after it has been delivered and a reordering window
//! has passed. That also catches lost retransmissions, and it adapts to
//! reordering (the window grows each round a D-SACK says a retransmission
//! was needless). TLP sends a probe when an ACK is overdue at the tail of a
//! flight, so a tail loss is repaired by fast recovery instead of a timeout.
//!
//! Both need what RFC 8985 §5.2 keeps per segment, which the scoreboard
//! (`sack.rs`) holds; [`Rack`] is the per-connection state of §5.3.

#![forbid(unsafe_code)]

use super::sack::{Scoreboard, Sent};
use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;

/// RACK_sent_after (RFC 8985 §6.2): whether `a` was sent after `b`. The
/// RFC breaks ties of the clock by sequence number, which is wrong for a
/// retransmission sent in the same tick as new data above it (a burst
/// takes no time on a fast machine, or in a simulation): the retransmission
/// would count as sent first and be marked lost again at once. Each
/// transmission's place in the connection's order decides instead.
fn sent_after(a: &Sent, b: (Instant, u64)) -> bool {
    (a.xmit, a.order) > b
}

/// The reordering window starts at a quarter of the minimum RTT (RFC 8985 §6.2 step 4).
const REO_WND_PERSIST: u32 = 16;

/// How long the minimum RTT is remembered before a newer sample replaces
/// it (Linux's `tcp_min_rtt_wlen`: 300 s), so a path that got longer is
/// learnt.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(300);

/// RFC 6675's DupThresh: with no reordering seen, this many SACKed
/// segments make the reordering window zero.
const DUP_THRESH: usize = 3;

/// RACK's per-connection state (RFC 8985 §5.3).
#[derive(Clone, Debug)]
pub(crate) struct Rack {
    /// RACK.xmit_ts, and the transmission's order in place of RACK.end_seq:
    /// the most recently sent segment delivered.
    latest: Option<(Instant, u64)>,
    /// RACK.rtt: the RTT of that delivery.
    rtt: Duration,
    /// RACK.min_RTT, and when it was measured.
    min_rtt: Option<(Duration, Instant)>,
    /// RACK.fack: the highest sequence number delivered.
    fack: Option<SeqNum>,
    /// RACK.reordering_seen.
    pub(crate) reordering_seen: bool,
    /// RACK.dsack_round: SND.NXT when a D-SACK last widened the window.
    dsack_round: Option<SeqNum>,
    /// RACK.reo_wnd_mult.
    reo_wnd_mult: u32,
    /// RACK.reo_wnd_persist.
    reo_wnd_persist: u32,
}

impl Default for Rack {
    fn default() -> Rack {
        Rack {
            latest: None,
            rtt: Duration::ZERO,
            min_rtt: None,
            fack: None,
            reordering_seen: false,
            dsack_round: None,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
        }
    }
}

impl Rack {
    /// An RTT measurement, for RACK.min_RTT (step 1).
    pub(crate) fn note_rtt(&mut self, rtt: Duration, now: Instant) {
        match self.min_rtt {
            Some((min, at)) if rtt > min && now.saturating_duration_since(at) < MIN_RTT_WINDOW => {}
            _ => self.min_rtt = Some((rtt, now)),
        }
    }

    /// The minimum RTT seen, if any.
    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(|(m, _)| m)
    }

    /// A segment newly delivered (cumulatively or by SACK) at `now` by an ACK
    /// whose timestamp echo says whether it answers this transmission
    /// (`echoes_older`: the echo predates the segment's last send). Steps 2
    /// and 3: RACK.segment and RACK.rtt, then reordering.
    pub(crate) fn delivered(&mut self, s: &Sent, now: Instant, echoes_older: bool) {
        // Step 3: a segment never resent, delivered below the highest
        // delivered, arrived out of order.
        match self.fack {
            Some(fack) if s.end.le(fack) => {
                if s.end.lt(fack) && !s.retransmitted {
                    self.reordering_seen = true;
                }
            }
            _ => self.fack = Some(s.end),
        }
        // Step 2: a retransmitted segment whose ACK may answer the original
        // gives no RTT to trust.
        let rtt = now.saturating_duration_since(s.xmit);
        if s.retransmitted && (echoes_older || self.min_rtt().is_some_and(|m| rtt < m)) {
            return;
        }
        self.rtt = rtt;
        self.note_rtt(rtt, now);
        if self.latest.is_none_or(|latest| sent_after(s, latest)) {
            self.latest = Some((s.xmit, s.order));
        }
    }

    /// Step 4: the reordering window for this ACK. `dsack` says whether the
    /// ACK carried a D-SACK; `in_recovery` whether a fast or timeout
    /// recovery is under way.
    pub(crate) fn reo_wnd(
        &mut self,
        dsack: bool,
        in_recovery: bool,
        sacked_segs: usize,
        snd_una: SeqNum,
        snd_nxt: SeqNum,
        srtt: Option<Duration>,
    ) -> Duration {
        if self.dsack_round.is_some_and(|r| snd_una.ge(r)) {
            self.dsack_round = None;
        }
        if self.dsack_round.is_none() && dsack {
            self.dsack_round = Some(snd_nxt);
            self.reo_wnd_mult += 1;
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
        if !self.reordering_seen && (in_recovery || sacked_segs >= DUP_THRESH) {
            return Duration::ZERO;
        }
        let base = self.min_rtt().unwrap_or(Duration::ZERO) / 4 * self.reo_wnd_mult;
        srtt.map_or(base, |srtt| base.min(srtt))
    }

    /// A recovery ended: an inflated reordering window lasts 16 of them.
    pub(crate) fn recovery_ended(&mut self) {
        if self.reo_wnd_persist > 0 {
            self.reo_wnd_persist -= 1;
            if self.reo_wnd_persist == 0 {
                self.reo_wnd_mult = 1;
            }
        }
    }

    /// Step 5: marks lost every segment sent before RACK.segment and not
    /// delivered within RACK.rtt + `reo_wnd` of its sending. Returns the
    /// segments marked, and when the next one would be (the reordering
    /// timer), if any waits.
    pub(crate) fn detect_loss(
        &self,
        log: &mut Scoreboard,
        now: Instant,
        reo_wnd: Duration,
    ) -> (usize, Option<Instant>) {
        let Some(latest) = self.latest else {
            return (0, None);
        };
        let mut timer: Option<Instant> = None;
        let marked = log.mark_lost(|_, s| {
            if sent_after(s, latest) || (s.xmit, s.order) == latest {
                return false;
            }
            let due = s.xmit + self.rtt + reo_wnd;
            if due > now {
                timer = Some(timer.map_or(due, |t| t.max(due)));
            }
            due <= now
        });
        (marked, timer)
    }

    /// RFC 8985 §6.3: at a timeout, the first segment is lost, and so is each
    /// one not delivered within RACK.rtt + the reordering window.
    pub(crate) fn mark_lost_on_timeout(&self, log: &mut Scoreboard, now: Instant, reo_wnd: Duration) {
        let rtt = self.rtt;
        log.mark_lost(|i, s| i == 0 || s.xmit + rtt + reo_wnd <= now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::sack::tests::{ms, s, ten};

    /// RFC 8985 §6.2 step 5: with RACK.segment the fifth, the segments sent
    /// before it are lost once RACK.rtt + reo_wnd passed since their sending.
    #[test]
    fn segments_sent_before_a_delivered_one_are_lost_after_rtt_plus_the_window() {
        let mut log = ten();
        let mut rack = Rack::default();
        let now = ms(14);
        let mut delivered = Vec::new();
        log.sack(s(400), s(500), |d| delivered.push(*d));
        for d in &delivered {
            rack.delivered(d, now, false);
        }
        // RACK.rtt = 14 - 4 = 10 ms; segment i is due at i + 10 + reo_wnd.
        let (marked, timer) = rack.detect_loss(&mut log, now, Duration::from_millis(2));
        assert_eq!(marked, 3, "0, 1 and 2 are overdue");
        assert_eq!(timer, Some(ms(15)), "3 is due at 3 + 10 + 2");
        assert_eq!(log.lost_bytes(), 300);
        let (marked, timer) = rack.detect_loss(&mut log, ms(15), Duration::from_millis(2));
        assert_eq!(
            (marked, timer),
            (1, None),
            "segments after RACK.segment are never marked"
        );
    }

    /// A retransmission sent in the same tick as new data above it, but
    /// after it, is not lost when that new data is SACKed (the RFC's tie
    /// break by sequence number would mark it lost again at once).
    #[test]
    fn a_retransmission_in_the_same_tick_as_new_data_is_not_marked_again() {
        let mut log = Scoreboard::default();
        log.sent(s(0), s(100), ms(0));
        log.sent(s(100), s(200), ms(0));
        log.mark_all_lost();
        log.sent(s(200), s(300), ms(5));
        log.sent(s(0), s(100), ms(5));
        let mut rack = Rack::default();
        let mut delivered = Vec::new();
        log.sack(s(200), s(300), |d| delivered.push(*d));
        rack.delivered(&delivered[0], ms(6), false);
        let (marked, _) = rack.detect_loss(&mut log, ms(6), Duration::ZERO);
        assert_eq!(marked, 0, "100..200 is already marked; 0..100 went after 200..300");
        assert_eq!(log.first_lost().map(|x| x.start), Some(s(100)));
    }

    #[test]
    fn late_original_segments_reveal_reordering_and_retransmissions_do_not() {
        let log = ten();
        let mut rack = Rack::default();
        let segs: Vec<Sent> = log.iter().copied().collect();
        rack.delivered(&segs[5], ms(15), false);
        rack.delivered(&segs[6], ms(16), false);
        let mut resent = segs[2];
        resent.retransmitted = true;
        rack.delivered(&resent, ms(20), false);
        assert!(
            !rack.reordering_seen,
            "a retransmission filling a hole is no reordering"
        );
        rack.delivered(&segs[3], ms(21), false);
        assert!(rack.reordering_seen);
    }

    /// RFC 8985 §6.2 step 4: zero in recovery or past DupThresh with no
    /// reordering seen; min_RTT / 4 otherwise; one more quarter per round
    /// with a D-SACK, at most SRTT, back to one quarter after 16 recoveries.
    #[test]
    fn the_reordering_window_adapts_to_dsacks() {
        let mut rack = Rack::default();
        rack.note_rtt(Duration::from_millis(40), ms(0));
        let srtt = Some(Duration::from_millis(60));
        let w = |r: &mut Rack, dsack, una: u32, nxt: u32| r.reo_wnd(dsack, false, 0, s(una), s(nxt), srtt);
        assert_eq!(w(&mut rack, false, 0, 1000), Duration::from_millis(10));
        assert_eq!(rack.reo_wnd(false, true, 0, s(0), s(1000), srtt), Duration::ZERO);
        assert_eq!(rack.reo_wnd(false, false, 3, s(0), s(1000), srtt), Duration::ZERO);
        assert_eq!(w(&mut rack, true, 0, 1000), Duration::from_millis(20));
        assert_eq!(
            w(&mut rack, true, 500, 1500),
            Duration::from_millis(20),
            "one step per round"
        );
        assert_eq!(w(&mut rack, true, 1000, 2000), Duration::from_millis(30));
        for _ in 0..5 {
            w(&mut rack, true, 5000, 9000);
            w(&mut rack, false, 9000, 9000);
        }
        assert_eq!(
            w(&mut rack, false, 9000, 9000),
            Duration::from_millis(60),
            "at most SRTT"
        );
        for _ in 0..16 {
            rack.recovery_ended();
        }
        assert_eq!(w(&mut rack, false, 9000, 9000), Duration::from_millis(10));
    }

    #[test]
    fn a_timeout_marks_the_first_and_the_overdue() {
        let mut log = ten();
        let mut rack = Rack::default();
        let fifth = *log.iter().nth(5).unwrap();
        rack.delivered(&fifth, ms(6), false);
        log.sack(s(500), s(600), |_| {});
        rack.mark_lost_on_timeout(&mut log, ms(8), Duration::ZERO);
        let lost: Vec<u32> = log.iter().filter(|x| x.lost).map(|x| x.start.0).collect();
        assert_eq!(lost, [0, 100, 200, 300, 400, 600, 700], "sent by 7 ms, RACK.rtt 1 ms");
    }
}
