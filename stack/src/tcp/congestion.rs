//! Congestion control (RFC 5681), behind a trait so algorithms can be swapped.

#![forbid(unsafe_code)]

use core::fmt::Debug;

/// A congestion controller: decides how many bytes may be in flight.
pub(crate) trait CongestionControl: Debug + Send {
    /// The congestion window in bytes.
    fn cwnd(&self) -> usize;
    /// The slow-start threshold in bytes.
    fn ssthresh(&self) -> usize;
    /// New data was acknowledged outside loss recovery.
    fn on_ack(&mut self, acked: usize, mss: usize);
    /// Three duplicate ACKs: entering fast recovery with `flight` bytes outstanding.
    fn on_fast_retransmit(&mut self, flight: usize, mss: usize);
    /// A further duplicate ACK during fast recovery (inflates the window).
    fn on_recovery_dupack(&mut self, mss: usize);
    /// A partial ACK during recovery acknowledged `acked` bytes (RFC 6582 §3.2 step 4).
    fn on_partial_ack(&mut self, acked: usize, mss: usize);
    /// Recovery ended: deflate the window.
    fn on_recovery_exit(&mut self, flight: usize, mss: usize);
    /// The retransmission timer fired with `flight` bytes outstanding.
    fn on_rto(&mut self, flight: usize, mss: usize);
    /// It fired again for the same segment: the window restarts, but the
    /// threshold stays (RFC 5681 §3.1, equation 4 applies once).
    fn on_rto_again(&mut self, mss: usize);
}

/// NewReno (RFC 5681 with RFC 6582's recovery).
#[derive(Clone, Debug)]
pub(crate) struct NewReno {
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged toward the next congestion-avoidance increase.
    acked_in_ca: usize,
}

impl NewReno {
    /// Initial window of 10 segments (RFC 6928, as Linux), no threshold yet.
    pub(crate) fn new(mss: usize) -> NewReno {
        NewReno {
            cwnd: 10 * mss,
            ssthresh: usize::MAX,
            acked_in_ca: 0,
        }
    }
}

impl CongestionControl for NewReno {
    fn cwnd(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(&mut self, acked: usize, mss: usize) {
        if self.cwnd < self.ssthresh {
            // Slow start (RFC 5681 eq. 2, with appropriate byte counting, L = 2).
            self.cwnd += acked.min(2 * mss);
        } else {
            // Congestion avoidance: one MSS per window of data acknowledged.
            self.acked_in_ca += acked;
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd += mss;
            }
        }
    }

    fn on_fast_retransmit(&mut self, flight: usize, mss: usize) {
        // RFC 5681 eq. 4 and §3.2 step 3.
        self.ssthresh = (flight / 2).max(2 * mss);
        self.cwnd = self.ssthresh + 3 * mss;
    }

    fn on_recovery_dupack(&mut self, mss: usize) {
        self.cwnd += mss;
    }

    fn on_partial_ack(&mut self, acked: usize, mss: usize) {
        self.cwnd = self.cwnd.saturating_sub(acked).max(mss) + mss;
    }

    fn on_recovery_exit(&mut self, flight: usize, mss: usize) {
        // RFC 6582 §3.2 step 3, option 1.
        self.cwnd = self.ssthresh.min(flight.max(mss) + mss);
        self.acked_in_ca = 0;
    }

    fn on_rto(&mut self, flight: usize, mss: usize) {
        self.ssthresh = (flight / 2).max(2 * mss);
        self.cwnd = mss;
        self.acked_in_ca = 0;
    }

    fn on_rto_again(&mut self, mss: usize) {
        self.cwnd = mss;
        self.acked_in_ca = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_avoidance() {
        let mut c = NewReno::new(1000);
        assert_eq!(c.cwnd(), 10_000);
        c.on_ack(1000, 1000);
        assert_eq!(c.cwnd(), 11_000);
        c.on_rto(20_000, 1000);
        assert_eq!((c.cwnd(), c.ssthresh()), (1000, 10_000));
        for _ in 0..9 {
            c.on_ack(1000, 1000);
        }
        assert_eq!(c.cwnd(), 10_000, "slow start up to ssthresh");
        for _ in 0..10 {
            c.on_ack(1000, 1000);
        }
        assert_eq!(c.cwnd(), 11_000, "one MSS per window in avoidance");
    }

    #[test]
    fn fast_recovery_inflates_and_deflates() {
        let mut c = NewReno::new(1000);
        c.on_fast_retransmit(10_000, 1000);
        assert_eq!((c.ssthresh(), c.cwnd()), (5000, 8000));
        c.on_recovery_dupack(1000);
        assert_eq!(c.cwnd(), 9000);
        c.on_recovery_exit(4000, 1000);
        assert_eq!(c.cwnd(), 5000);
    }
}
