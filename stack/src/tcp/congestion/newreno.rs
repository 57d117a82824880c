//! NewReno: RFC 5681's slow start and congestion avoidance, RFC 6582's fast recovery.

#![forbid(unsafe_code)]

use super::{Ack, CongestionAlgorithm, CongestionControl, Window};

/// NewReno (RFC 5681 with RFC 6582's recovery).
#[derive(Clone, Debug)]
pub(crate) struct NewReno {
    w: Window,
    /// Bytes acknowledged toward the next congestion-avoidance increase.
    acked_in_ca: usize,
    /// The windows before the last reduction, while it may still be undone.
    prior: Option<Window>,
}

impl NewReno {
    /// NewReno from these windows.
    pub(crate) fn new(w: Window) -> NewReno {
        NewReno {
            w,
            acked_in_ca: 0,
            prior: None,
        }
    }

    /// A congestion event: remember the windows for an undo, then halve (RFC 5681 eq. 4).
    fn reduce(&mut self, flight: usize, mss: usize) -> usize {
        self.prior = Some(self.w);
        self.acked_in_ca = 0;
        (flight / 2).max(2 * mss)
    }
}

impl CongestionControl for NewReno {
    fn algorithm(&self) -> CongestionAlgorithm {
        CongestionAlgorithm::NewReno
    }

    fn window(&self) -> Window {
        self.w
    }

    fn window_mut(&mut self) -> &mut Window {
        &mut self.w
    }

    fn on_ack(&mut self, ack: &Ack) {
        let (acked, mss) = (ack.acked, ack.mss);
        if self.w.cwnd < self.w.ssthresh {
            // Slow start (RFC 5681 eq. 2, with appropriate byte counting, L = 2).
            self.w.cwnd += acked.min(2 * mss);
        } else {
            // Congestion avoidance: one MSS per window of data acknowledged.
            self.acked_in_ca += acked;
            if self.acked_in_ca >= self.w.cwnd {
                self.acked_in_ca -= self.w.cwnd;
                self.w.cwnd += mss;
            }
        }
    }

    fn on_fast_retransmit(&mut self, flight: usize, mss: usize) {
        // RFC 5681 eq. 4 and §3.2 step 3.
        let ssthresh = self.reduce(flight, mss);
        self.w.enter_fast_recovery(ssthresh, mss);
    }

    fn on_recovery_exit(&mut self, flight: usize, mss: usize) {
        self.w.exit_recovery(flight, mss);
        self.acked_in_ca = 0;
    }

    fn on_rto(&mut self, flight: usize, mss: usize) {
        self.w.ssthresh = self.reduce(flight, mss);
        self.w.cwnd = mss;
    }

    fn on_rto_again(&mut self, mss: usize) {
        self.w.cwnd = mss;
        self.acked_in_ca = 0;
    }

    fn on_spurious_congestion(&mut self) {
        // As RFC 9438 §4.9 for CUBIC (and Linux for Reno): only if the
        // window has not grown back already.
        if let Some(prior) = self.prior.take().filter(|p| self.w.cwnd < p.cwnd) {
            self.w = prior;
            self.acked_in_ca = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Instant;

    fn ack(c: &mut NewReno, acked: usize) {
        let cwnd = c.cwnd();
        c.on_ack(&Ack::of(Instant::ZERO, acked, 1000, cwnd));
    }

    #[test]
    fn slow_start_then_avoidance() {
        let mut c = NewReno::new(Window::initial(1000));
        assert_eq!(c.cwnd(), 10_000);
        ack(&mut c, 1000);
        assert_eq!(c.cwnd(), 11_000);
        c.on_rto(20_000, 1000);
        assert_eq!((c.cwnd(), c.ssthresh()), (1000, 10_000));
        for _ in 0..9 {
            ack(&mut c, 1000);
        }
        assert_eq!(c.cwnd(), 10_000, "slow start up to ssthresh");
        for _ in 0..10 {
            ack(&mut c, 1000);
        }
        assert_eq!(c.cwnd(), 11_000, "one MSS per window in avoidance");
    }

    #[test]
    fn fast_recovery_inflates_and_deflates() {
        let mut c = NewReno::new(Window::initial(1000));
        c.on_fast_retransmit(10_000, 1000);
        assert_eq!((c.ssthresh(), c.cwnd()), (5000, 8000));
        c.on_recovery_dupack(1000);
        assert_eq!(c.cwnd(), 9000);
        c.on_recovery_exit(4000, 1000);
        assert_eq!(c.cwnd(), 5000);
    }

    #[test]
    fn partial_ack_deflates_by_what_it_acknowledged() {
        let mut c = NewReno::new(Window::initial(1000));
        c.on_fast_retransmit(10_000, 1000);
        c.on_partial_ack(3000, 1000);
        assert_eq!(c.cwnd(), 8000 - 3000 + 1000);
    }

    #[test]
    fn a_spurious_reduction_is_undone_once() {
        let mut c = NewReno::new(Window::initial(1000));
        c.on_fast_retransmit(10_000, 1000);
        c.on_recovery_exit(10_000, 1000);
        c.on_spurious_congestion();
        assert_eq!(c.window(), Window::initial(1000));
        c.on_spurious_congestion();
        assert_eq!(c.window(), Window::initial(1000), "nothing left to undo");

        // Once the window has grown back past its old size, the undo is moot.
        c.on_rto(10_000, 1000);
        for _ in 0..60 {
            ack(&mut c, 1000);
        }
        let grown = c.window();
        assert!(grown.cwnd > 10_000);
        c.on_spurious_congestion();
        assert_eq!(c.window(), grown);
    }
}
