//! CUBIC (RFC 9438): after a loss the window falls to 0.7 of the flight
//! and grows back along a cubic curve in time, flat around the window where
//! the loss happened (W_max), steep far from it; never slower than Reno
//! would (the Reno-friendly region). Slow start is HyStart++ (RFC 9406).
//!
//! Windows are bytes and times seconds; the curve is in segments, as in the
//! RFC, scaled by the MSS. Fractions of a byte of growth carry over from
//! ACK to ACK.

#![forbid(unsafe_code)]

use super::hystart::{CSS_GROWTH_DIVISOR, Growth, HyStart, SLOW_START_LIMIT};
use super::{Ack, CongestionAlgorithm, CongestionControl, Window};
use crate::time::{Duration, Instant};

/// β_cubic: the window keeps this fraction of the flight on a loss (§4.6).
const BETA: f64 = 0.7;
/// C: the curve's aggressiveness, in segments per second cubed (§5.1).
const C: f64 = 0.4;
/// α_cubic: the Reno-friendly estimate's additive increase, in segments per
/// RTT, that matches Reno's average window given β_cubic (§4.3).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// One congestion-avoidance stage: the curve it follows.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Epoch {
    /// epoch_start, moved later by periods the window was not in use (§5.8).
    start: Instant,
    /// K: seconds from `start` until the curve is back at `w_max` (eq. 2).
    k: f64,
    /// The curve's plateau: W_max, or the window the stage started with if
    /// that is larger (no loss yet, or after a timeout, §4.8, §4.10).
    w_max: f64,
    /// W_est: the window Reno would have by now (§4.3), bytes.
    w_est: f64,
}

impl Epoch {
    /// A stage starting now with window `cwnd`, toward `w_max` (eq. 2). As
    /// Linux does, a window already above W_max starts the convex part at once (K = 0).
    fn begin(now: Instant, cwnd: f64, w_max: Option<f64>, mss: f64) -> Epoch {
        let w_max = w_max.unwrap_or(cwnd).max(cwnd);
        Epoch {
            start: now,
            k: ((w_max - cwnd) / mss / C).cbrt(),
            w_max,
            w_est: cwnd,
        }
    }

    /// W_cubic(t) in bytes (eq. 1), `t` seconds into the stage.
    fn w_cubic(&self, t: f64, mss: f64) -> f64 {
        C * (t - self.k).powi(3) * mss + self.w_max
    }
}

/// What a congestion event changed, to restore if it proves spurious (§4.9).
#[derive(Clone, Copy, Debug)]
struct Prior {
    w: Window,
    cwnd_prior: usize,
    w_max: Option<f64>,
    epoch: Option<Epoch>,
}

/// CUBIC with HyStart++.
#[derive(Clone, Debug)]
pub(crate) struct Cubic {
    w: Window,
    /// Bytes of growth below one, not yet in `w.cwnd`.
    carry: f64,
    /// cwnd_prior: cwnd when ssthresh was last set. W_est grows at Reno's
    /// rate once back there (§4.3).
    cwnd_prior: usize,
    /// W_max in bytes: cwnd just before the last reduction, less with fast
    /// convergence; none before any loss and after a timeout.
    w_max: Option<f64>,
    /// The current congestion-avoidance stage, from its first ACK.
    epoch: Option<Epoch>,
    hystart: HyStart,
    /// Release bandwidth faster to new flows (§4.7; on, as Linux).
    fast_convergence: bool,
    /// The state before the last congestion event, while it may be undone.
    prior: Option<Prior>,
    /// When the previous ACK came, and whether it emptied the pipe.
    last_ack: Option<(Instant, bool)>,
}

impl Cubic {
    /// CUBIC from these windows.
    pub(crate) fn new(w: Window) -> Cubic {
        Cubic {
            w,
            carry: 0.0,
            cwnd_prior: w.cwnd,
            w_max: None,
            epoch: None,
            hystart: HyStart::new(),
            fast_convergence: true,
            prior: None,
            last_ack: None,
        }
    }

    /// The window with its fraction of a byte.
    fn cwnd_exact(&self) -> f64 {
        self.w.cwnd as f64 + self.carry
    }

    fn set_cwnd(&mut self, bytes: f64) {
        self.w.cwnd = bytes as usize;
        self.carry = bytes - self.w.cwnd as f64;
    }

    /// A loss: saves the state for an undo (§4.9), sets W_max with fast
    /// convergence (§4.7) and cwnd_prior, ends the stage; returns the new
    /// ssthresh, β_cubic times the flight (§4.6, figure 5).
    fn congestion_event(&mut self, flight: usize, mss: usize) -> usize {
        self.prior = Some(Prior {
            w: self.w,
            cwnd_prior: self.cwnd_prior,
            w_max: self.w_max,
            epoch: self.epoch,
        });
        let cwnd = self.w.cwnd as f64;
        self.w_max = Some(match self.w_max {
            Some(w_max) if self.fast_convergence && cwnd < w_max => cwnd * (1.0 + BETA) / 2.0,
            _ => cwnd,
        });
        self.cwnd_prior = self.w.cwnd;
        self.epoch = None;
        self.carry = 0.0;
        ((flight as f64 * BETA).round() as usize).max(2 * mss)
    }

    /// Time since the previous ACK that the curve must not count (§5.8):
    /// all of it while the window was not in use, and if the previous ACK
    /// emptied the pipe, the idle time until this ACK's data left (about
    /// an RTT ago).
    fn unused_time(&mut self, ack: &Ack, window_used: bool) -> Duration {
        let unused = match self.last_ack {
            Some((at, _)) if !window_used => ack.now.saturating_duration_since(at),
            Some((at, true)) => {
                let gap = ack.now.saturating_duration_since(at);
                gap.saturating_sub(ack.srtt.unwrap_or_default())
            }
            _ => Duration::ZERO,
        };
        self.last_ack = Some((ack.now, ack.in_flight <= ack.acked));
        unused
    }

    /// Slow start, HyStart++'s way (RFC 9406 §4.2).
    fn slow_start(&mut self, ack: &Ack) {
        let mut divisor = 1;
        if self.w.ssthresh == usize::MAX {
            match self.hystart.on_ack(ack.snd_una, ack.snd_max, ack.rtt) {
                Growth::SlowStart => {}
                Growth::Conservative => divisor = CSS_GROWTH_DIVISOR,
                Growth::Over => {
                    // Slow start ended without a loss: no W_max; the curve
                    // starts flat at this window (§4.10).
                    self.w.ssthresh = self.w.cwnd;
                    self.cwnd_prior = self.w.cwnd;
                    return;
                }
            }
        }
        // As Linux: slow start only while at least half the window is in use.
        if 2 * ack.in_flight <= self.w.cwnd {
            return;
        }
        let grown = self.w.cwnd + ack.acked.min(SLOW_START_LIMIT * ack.mss) / divisor;
        self.w.cwnd = grown.min(self.w.ssthresh);
    }

    /// Congestion avoidance: the curve, or Reno's pace if faster (§4.2–4.5).
    fn congestion_avoidance(&mut self, ack: &Ack) {
        let mss = ack.mss as f64;
        let cwnd = self.cwnd_exact();
        let epoch = self
            .epoch
            .get_or_insert_with(|| Epoch::begin(ack.now, cwnd, self.w_max, mss));
        let t = ack.now.saturating_duration_since(epoch.start).as_secs_f64();
        let rtt = ack.srtt.unwrap_or_default().as_secs_f64();
        // Where the curve will be an RTT from now, kept between no growth
        // and half of slow start's (§4.2).
        let target = epoch.w_cubic(t + rtt, mss).clamp(cwnd, 1.5 * cwnd);
        let acked = ack.acked as f64;
        let alpha = if epoch.w_est >= self.cwnd_prior as f64 {
            1.0
        } else {
            ALPHA
        };
        epoch.w_est += alpha * acked * mss / cwnd;
        let next = if epoch.w_cubic(t, mss) < epoch.w_est {
            epoch.w_est.max(cwnd) // Reno-friendly region (§4.3)
        } else {
            cwnd + (target - cwnd) * acked / cwnd // concave and convex regions (§4.4, §4.5)
        };
        self.set_cwnd(next);
    }
}

impl CongestionControl for Cubic {
    fn algorithm(&self) -> CongestionAlgorithm {
        CongestionAlgorithm::Cubic
    }

    fn window(&self) -> Window {
        self.w
    }

    fn window_mut(&mut self) -> &mut Window {
        &mut self.w
    }

    fn on_ack(&mut self, ack: &Ack) {
        // The window was in use if less than a segment of it was left.
        let window_used = ack.in_flight + ack.mss > self.w.cwnd;
        let unused = self.unused_time(ack, window_used);
        if self.w.cwnd < self.w.ssthresh {
            self.slow_start(ack);
        } else {
            if let Some(epoch) = &mut self.epoch {
                epoch.start += unused;
            }
            // No growth for a window not in use (§5.8).
            if window_used {
                self.congestion_avoidance(ack);
            }
        }
    }

    fn on_fast_retransmit(&mut self, flight: usize, mss: usize) {
        let ssthresh = self.congestion_event(flight, mss);
        self.w.enter_fast_recovery(ssthresh, mss);
    }

    fn on_recovery_exit(&mut self, flight: usize, mss: usize) {
        self.w.exit_recovery(flight, mss);
        self.carry = 0.0;
    }

    fn on_rto(&mut self, flight: usize, mss: usize) {
        // §4.8: Reno's window of one segment, CUBIC's threshold; the next
        // stage's curve starts flat where it begins (K = 0).
        self.w.ssthresh = self.congestion_event(flight, mss);
        self.w.cwnd = mss;
        self.w_max = None;
    }

    fn on_rto_again(&mut self, mss: usize) {
        self.w.cwnd = mss;
        self.carry = 0.0;
        self.epoch = None;
    }

    fn on_spurious_congestion(&mut self) {
        // §4.9: restore unless the window has grown back on its own.
        if let Some(p) = self.prior.take().filter(|p| self.w.cwnd < p.w.cwnd) {
            self.w = p.w;
            self.carry = 0.0;
            self.cwnd_prior = p.cwnd_prior;
            self.w_max = p.w_max;
            self.epoch = p.epoch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::seq::SeqNum;

    const MSS: usize = 1000;
    const RTT: Duration = Duration::from_millis(100);

    /// A sender that keeps its window full, and the ACKs that come back:
    /// one per segment, spread evenly over each round trip.
    struct Flow {
        c: Cubic,
        now: Instant,
        una: u32,
        rtt: Duration,
    }

    impl Flow {
        fn new(w: Window) -> Flow {
            Flow {
                c: Cubic::new(w),
                now: Instant::from_secs(1),
                una: 0,
                rtt: RTT,
            }
        }

        /// A flow in congestion avoidance at `segments`, that then lost a
        /// segment and recovered (flight = window): cwnd = 0.7 of it, and
        /// the next ACK starts the curve.
        fn after_loss(segments: usize) -> Flow {
            let mut f = Flow::new(Window {
                cwnd: segments * MSS,
                ssthresh: segments * MSS / 2,
            });
            f.c.on_fast_retransmit(segments * MSS, MSS);
            f.c.on_recovery_exit(segments * MSS, MSS);
            f
        }

        /// The next ACK, of one segment, `after` the previous one.
        fn ack(&mut self, after: Duration, rtt_sample: Option<Duration>) {
            self.now += after;
            let cwnd = self.c.cwnd();
            self.una += MSS as u32;
            self.c.on_ack(&Ack {
                now: self.now,
                acked: MSS,
                mss: MSS,
                in_flight: cwnd,
                rtt: rtt_sample,
                srtt: Some(self.rtt),
                snd_una: SeqNum(self.una),
                snd_max: SeqNum(self.una + cwnd as u32),
            });
        }

        /// One round trip: the whole window acknowledged.
        fn round(&mut self, rtt_sample: Option<Duration>) {
            let n = (self.c.cwnd() / MSS).max(1);
            for _ in 0..n {
                self.ack(self.rtt / n as u32, rtt_sample);
            }
        }

        /// Round trips until `t` seconds after the curve's start.
        fn run_until(&mut self, t: f64) {
            let start = self.c.epoch.expect("in congestion avoidance").start;
            while self.now.saturating_duration_since(start).as_secs_f64() < t {
                self.round(None);
            }
        }

        fn segments(&self) -> f64 {
            self.c.cwnd_exact() / MSS as f64
        }

        fn t(&self) -> f64 {
            let start = self.c.epoch.expect("in congestion avoidance").start;
            self.now.saturating_duration_since(start).as_secs_f64()
        }
    }

    /// RFC 9438 eq. 1 in segments.
    fn w_cubic(t: f64, k: f64, w_max: f64) -> f64 {
        0.4 * (t - k).powi(3) + w_max
    }

    #[test]
    fn a_loss_keeps_seven_tenths_and_remembers_w_max() {
        let mut f = Flow::new(Window {
            cwnd: 100 * MSS,
            ssthresh: 50 * MSS,
        });
        f.c.on_fast_retransmit(100 * MSS, MSS);
        assert_eq!(f.c.ssthresh(), 70 * MSS, "β_cubic = 0.7 of the flight");
        assert_eq!(f.c.cwnd(), 73 * MSS, "inflated by three segments in fast recovery");
        f.c.on_recovery_dupack(MSS);
        assert_eq!(f.c.cwnd(), 74 * MSS);
        f.c.on_recovery_exit(100 * MSS, MSS);
        assert_eq!(f.c.cwnd(), 70 * MSS);
        assert_eq!(f.c.w_max, Some(100.0 * MSS as f64));
        assert_eq!(f.c.cwnd_prior, 100 * MSS);

        f.ack(RTT, None);
        let e = f.c.epoch.expect("the first ACK after recovery starts the curve");
        // eq. 2: K = ∛((W_max − cwnd_epoch) / C) = ∛(30 / 0.4) ≈ 4.217 s.
        assert!((e.k - 75f64.cbrt()).abs() < 1e-9, "K = {}", e.k);
        assert!((e.k - 4.217).abs() < 1e-3);
        assert_eq!(e.w_max, 100.0 * MSS as f64);
        // W_est starts at cwnd_epoch and took this ACK: α × MSS × MSS / cwnd.
        let w_est = 70.0 * MSS as f64 + ALPHA * (MSS * MSS) as f64 / (70 * MSS) as f64;
        assert!((e.w_est - w_est).abs() < 1e-6);
    }

    #[test]
    fn the_window_follows_the_cubic_curve() {
        let mut f = Flow::after_loss(100);
        f.round(None);
        let k = 75f64.cbrt();
        for t in [0.5, 1.0, 2.0, 3.0, k, 5.0] {
            f.run_until(t);
            let expected = w_cubic(f.t(), k, 100.0);
            let got = f.segments();
            assert!(
                (got - expected).abs() < 0.5,
                "t = {:.3} s: cwnd {got:.2} segments, W_cubic {expected:.2}",
                f.t()
            );
            let w_est = f.c.epoch.unwrap().w_est / MSS as f64;
            assert!(w_est < expected, "t = {t}: not the Reno-friendly region ({w_est:.2})");
        }
        // Concave below W_max, flat at K, convex beyond.
        f.run_until(7.5);
        assert!(f.segments() > 105.0);
    }

    #[test]
    fn reno_friendly_region_takes_over_on_short_rtts() {
        // At 1 ms, Reno's α_cubic = 0.53 segments per RTT outgrows the curve.
        let mut f = Flow::after_loss(100);
        f.rtt = Duration::from_millis(1);
        f.round(None);
        let start = f.segments();
        for _ in 0..20 {
            f.round(None);
        }
        let k = 75f64.cbrt();
        let curve = w_cubic(f.t(), k, 100.0);
        let per_rtt = (f.segments() - start) / 20.0;
        assert!(f.segments() > curve + 5.0, "{} vs curve {curve}", f.segments());
        assert!(
            (per_rtt - ALPHA).abs() < 0.02,
            "{per_rtt} segments per RTT, α = {ALPHA}"
        );
        assert!((ALPHA - 0.529).abs() < 1e-3);
        assert!(
            (f.c.cwnd_exact() - f.c.epoch.unwrap().w_est).abs() < 1e-6,
            "cwnd = W_est"
        );

        // Once W_est is back at cwnd_prior (100), it grows like Reno: 1 per RTT.
        while f.segments() < 101.0 {
            f.round(None);
        }
        let before = f.segments();
        for _ in 0..10 {
            f.round(None);
        }
        let per_rtt = (f.segments() - before) / 10.0;
        assert!((per_rtt - 1.0).abs() < 0.02, "{per_rtt} segments per RTT");
    }

    #[test]
    fn growth_is_capped_at_half_the_window_per_rtt() {
        // W_max = 1000 segments but only 20 in flight: K ≈ 13.5 s, and the
        // curve an RTT ahead is far above 1.5 × cwnd.
        let mut f = Flow::new(Window {
            cwnd: 1000 * MSS,
            ssthresh: 500 * MSS,
        });
        f.c.on_fast_retransmit(20 * MSS, MSS);
        f.c.on_recovery_exit(20 * MSS, MSS);
        assert_eq!(f.c.cwnd(), 14 * MSS);
        f.ack(RTT, None);
        let before = f.c.cwnd_exact();
        f.ack(RTT, None);
        let e = f.c.epoch.unwrap();
        let uncapped = w_cubic(f.t() + 0.1, e.k, 1000.0) * MSS as f64;
        assert!(uncapped > 1.5 * before + 20.0 * MSS as f64);
        // (target − cwnd) / cwnd per segment, with target = 1.5 × cwnd: half a segment.
        let growth = f.c.cwnd_exact() - before;
        assert!((growth - 0.5 * MSS as f64).abs() < 1e-6, "grew {growth} bytes");
    }

    #[test]
    fn fast_convergence_lowers_w_max_when_the_window_shrank() {
        let mut f = Flow::after_loss(100);
        f.c.set_cwnd((90 * MSS) as f64);
        f.c.on_fast_retransmit(90 * MSS, MSS);
        assert_eq!(f.c.w_max, Some(90.0 * 0.85 * MSS as f64), "cwnd × (1 + β) / 2");
        assert_eq!(f.c.ssthresh(), 63 * MSS);
        f.c.on_recovery_exit(90 * MSS, MSS);
        f.ack(RTT, None);
        let k = f.c.epoch.unwrap().k;
        assert!((k - ((76.5 - 63.0) / 0.4f64).cbrt()).abs() < 1e-9);

        // Without it, or with a window above W_max, W_max is the window.
        let mut f = Flow::after_loss(100);
        f.c.fast_convergence = false;
        f.c.set_cwnd((90 * MSS) as f64);
        f.c.on_fast_retransmit(90 * MSS, MSS);
        assert_eq!(f.c.w_max, Some(90.0 * MSS as f64));
        let mut f = Flow::after_loss(100);
        f.c.set_cwnd((110 * MSS) as f64);
        f.c.on_fast_retransmit(110 * MSS, MSS);
        assert_eq!(f.c.w_max, Some(110.0 * MSS as f64));
    }

    #[test]
    fn a_timeout_restarts_from_one_segment_and_a_flat_curve() {
        let mut f = Flow::new(Window {
            cwnd: 100 * MSS,
            ssthresh: 50 * MSS,
        });
        f.round(None);
        f.c.on_rto(100 * MSS, MSS);
        assert_eq!(
            (f.c.cwnd(), f.c.ssthresh()),
            (MSS, 70 * MSS),
            "§4.8: cwnd 1 MSS, ssthresh β × flight"
        );
        f.c.on_rto_again(MSS);
        assert_eq!(
            (f.c.cwnd(), f.c.ssthresh()),
            (MSS, 70 * MSS),
            "the threshold is set once"
        );
        assert_eq!(f.c.epoch, None);
        while f.c.cwnd() < f.c.ssthresh() {
            f.ack(RTT / 64, None);
        }
        assert_eq!(f.c.cwnd(), 70 * MSS, "slow start stops at ssthresh");
        assert_eq!(f.c.epoch, None);
        f.ack(RTT / 70, None);
        let e = f.c.epoch.unwrap();
        assert_eq!(
            (e.k, e.w_max),
            (0.0, 70.0 * MSS as f64),
            "K = 0, W_max = cwnd at the stage's start"
        );
        // The curve 0.4 t³ + 70 is convex from the start; Reno's pace leads
        // for the first seconds, the curve after.
        for t in [5.0, 6.0] {
            f.run_until(t);
            let expected = w_cubic(f.t(), 0.0, 70.0);
            assert!(
                (f.segments() - expected).abs() < 0.5,
                "t = {t}: {} vs {expected}",
                f.segments()
            );
        }
    }

    #[test]
    fn a_spurious_loss_is_undone() {
        let mut f = Flow::new(Window {
            cwnd: 100 * MSS,
            ssthresh: 50 * MSS,
        });
        f.round(None);
        let (w, epoch) = (f.c.window(), f.c.epoch);
        f.c.on_fast_retransmit(f.c.cwnd(), MSS);
        f.c.on_recovery_exit(f.c.cwnd(), MSS);
        f.round(None);
        assert!(f.c.cwnd() < w.cwnd);
        f.c.on_spurious_congestion();
        assert_eq!((f.c.window(), f.c.epoch, f.c.w_max), (w, epoch, None));
        assert_eq!(f.c.cwnd_prior, 100 * MSS);

        // Undone too late, when the window has grown past where it was: kept.
        f.c.on_rto(f.c.cwnd(), MSS);
        while f.c.cwnd() <= w.cwnd {
            f.round(None);
        }
        let grown = f.c.window();
        f.c.on_spurious_congestion();
        assert_eq!(f.c.window(), grown);
    }

    #[test]
    fn no_growth_for_a_window_not_in_use() {
        let mut f = Flow::after_loss(100);
        f.round(None);
        let cwnd = f.c.cwnd_exact();
        let mut ack = Ack::of(f.now + RTT, MSS, MSS, 60 * MSS);
        ack.srtt = Some(RTT);
        f.c.on_ack(&ack);
        assert_eq!(f.c.cwnd_exact(), cwnd, "congestion avoidance");

        let mut c = Cubic::new(Window::initial(MSS));
        c.on_ack(&Ack::of(f.now, MSS, MSS, 4 * MSS));
        assert_eq!(c.cwnd(), 10 * MSS, "slow start with under half the window in flight");
        c.on_ack(&Ack::of(f.now, MSS, MSS, 6 * MSS));
        assert_eq!(c.cwnd(), 11 * MSS);
    }

    #[test]
    fn idle_time_does_not_count_on_the_curve() {
        let mut busy = Flow::after_loss(100);
        busy.round(None);
        let mut idle = Flow::after_loss(100);
        idle.round(None);
        // The last ACK before a pause empties the pipe; the next comes 10 s later.
        let mut last = Ack::of(idle.now + RTT / 80, MSS, MSS, MSS);
        last.srtt = Some(RTT);
        idle.c.on_ack(&last);
        idle.now = last.now + Duration::from_secs(10);
        let before = idle.c.cwnd_exact();
        idle.round(None);
        busy.round(None);
        let grew = idle.c.cwnd_exact() - before;
        // Counting the pause, the curve would be far ahead: 1.5 × cwnd.
        assert!(grew < 5.0 * MSS as f64, "grew {grew} bytes in one RTT after the pause");
        assert!((idle.segments() - busy.segments()).abs() < 3.0);
    }

    #[test]
    fn hystart_leaves_slow_start_when_the_rtt_rises() {
        let mut f = Flow::new(Window::initial(MSS));
        let base = Duration::from_millis(10);
        f.round(Some(base));
        f.round(Some(base));
        assert_eq!(f.c.cwnd(), 40 * MSS, "slow start doubles per round");
        // 4 ms more (the threshold at 10 ms): from the 8th sample on, CSS
        // grows a quarter as fast.
        f.round(Some(base + Duration::from_millis(4)));
        assert_eq!(f.c.cwnd(), 47 * MSS + 33 * MSS / 4);
        assert_eq!(f.c.ssthresh(), usize::MAX, "still in (conservative) slow start");
        for _ in 0..4 {
            f.round(Some(base + Duration::from_millis(4)));
        }
        assert_eq!(f.c.ssthresh(), usize::MAX, "five rounds of CSS, this one included");
        let mut acks = 0;
        while f.c.ssthresh() == usize::MAX {
            f.ack(RTT / 100, Some(base + Duration::from_millis(4)));
            acks += 1;
            assert!(acks <= f.c.cwnd() / MSS, "the sixth round ends CSS as it starts");
        }
        let cwnd = f.c.cwnd();
        assert_eq!(f.c.ssthresh(), cwnd, "after five CSS rounds: ssthresh = cwnd");
        assert_eq!(f.c.cwnd_prior, cwnd);
        f.ack(RTT / 100, None);
        let e = f.c.epoch.expect("congestion avoidance");
        assert_eq!((e.k, e.w_max), (0.0, cwnd as f64), "§4.10: K = 0, W_max = cwnd");
    }
}
