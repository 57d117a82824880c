//! Congestion control (RFC 5681), behind a trait so algorithms can be
//! swapped: CUBIC (RFC 9438, `cubic.rs`) with HyStart++ (RFC 9406,
//! `hystart.rs`) by default, as Linux; NewReno (RFC 6582, `newreno.rs`) on
//! request. The choice is per stack ([`TcpConfig::congestion`]) and per
//! connection (`set_congestion`, Linux's `TCP_CONGESTION`).
//!
//! A controller decides only the windows; the connection decides what to
//! send and when to resend. It is sans-IO like the rest of the core: it
//! reads no clock, and each acknowledgment brings its time, RTT sample and
//! sequence numbers in an [`Ack`]. Fast recovery (RFC 5681 §3.2 with RFC
//! 6582) inflates and deflates the window the same way under both
//! algorithms; they differ in how far the window falls on a congestion
//! event and how it grows afterwards.
//!
//! [`TcpConfig::congestion`]: super::TcpConfig::congestion

#![forbid(unsafe_code)]

mod cubic;
mod hystart;
mod newreno;

pub(crate) use cubic::Cubic;
pub(crate) use newreno::NewReno;

use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;
use core::fmt::{self, Debug};
use core::str::FromStr;

/// A congestion control algorithm (what Linux's `TCP_CONGESTION` names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CongestionAlgorithm {
    /// CUBIC (RFC 9438) with HyStart++ (RFC 9406): Linux's default.
    #[default]
    Cubic,
    /// NewReno (RFC 5681 with RFC 6582's fast recovery).
    NewReno,
}

impl CongestionAlgorithm {
    /// Its name: `cubic` or `newreno`.
    pub fn name(self) -> &'static str {
        match self {
            CongestionAlgorithm::Cubic => "cubic",
            CongestionAlgorithm::NewReno => "newreno",
        }
    }
}

impl fmt::Display for CongestionAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name is not one of an algorithm we have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownAlgorithm(pub String);

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown congestion control '{}' (cubic or newreno)", self.0)
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl FromStr for CongestionAlgorithm {
    type Err = UnknownAlgorithm;

    /// `cubic`, or `newreno` (also `reno`, Linux's name for its NewReno).
    fn from_str(s: &str) -> Result<CongestionAlgorithm, UnknownAlgorithm> {
        match s.to_ascii_lowercase().as_str() {
            "cubic" => Ok(CongestionAlgorithm::Cubic),
            "newreno" | "reno" => Ok(CongestionAlgorithm::NewReno),
            _ => Err(UnknownAlgorithm(s.to_owned())),
        }
    }
}

/// What one acknowledgment of new data, outside loss recovery, tells a controller.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ack {
    /// When it arrived.
    pub(crate) now: Instant,
    /// Bytes of data it newly acknowledged.
    pub(crate) acked: usize,
    /// The sender's maximum segment size.
    pub(crate) mss: usize,
    /// Bytes in flight when it arrived, `acked` included: a sender that
    /// left a full segment of the window unused was limited by the
    /// application or the peer's window, not by congestion control, and
    /// does not grow the window (RFC 9438 §5.8, RFC 7661).
    pub(crate) in_flight: usize,
    /// An RTT it measured, if any: a timestamp echo (RFC 7323 §4.1) or the
    /// timed segment. HyStart++ watches the smallest per round.
    pub(crate) rtt: Option<Duration>,
    /// The smoothed RTT (RFC 6298), once there is one.
    pub(crate) srtt: Option<Duration>,
    /// SND.UNA after it.
    pub(crate) snd_una: SeqNum,
    /// The highest sequence number sent: a HyStart++ round ends when it is
    /// acknowledged (RFC 9406 §4.2's windowEnd).
    pub(crate) snd_max: SeqNum,
}

/// The congestion window and slow-start threshold, in bytes, with the
/// fast-recovery arithmetic both algorithms share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// cwnd.
    pub(crate) cwnd: usize,
    /// ssthresh; `usize::MAX` until the first congestion event.
    pub(crate) ssthresh: usize,
}

impl Window {
    /// Initial window of 10 segments (RFC 6928, as Linux), no threshold yet.
    pub(crate) fn initial(mss: usize) -> Window {
        Window {
            cwnd: 10 * mss,
            ssthresh: usize::MAX,
        }
    }

    /// Three duplicate ACKs: the threshold falls to `ssthresh` and the
    /// window is inflated by the three segments that left (RFC 5681 §3.2 step 3).
    pub(crate) fn enter_fast_recovery(&mut self, ssthresh: usize, mss: usize) {
        self.ssthresh = ssthresh;
        self.cwnd = ssthresh + 3 * mss;
    }

    /// A partial ACK during recovery: deflate by what it acknowledged, add back one
    /// segment for the retransmission (RFC 6582 §3.2 step 4).
    pub(crate) fn deflate(&mut self, acked: usize, mss: usize) {
        self.cwnd = self.cwnd.saturating_sub(acked).max(mss) + mss;
    }

    /// Recovery ended: the window becomes the threshold, or less if little
    /// is in flight (RFC 6582 §3.2 step 3, option 1).
    pub(crate) fn exit_recovery(&mut self, flight: usize, mss: usize) {
        self.cwnd = self.ssthresh.min(flight.max(mss) + mss);
    }
}

/// A congestion controller: decides how many bytes may be in flight.
///
/// The connection calls `on_ack` for new data acknowledged outside
/// recovery; `on_fast_retransmit`, `on_recovery_dupack`, `on_partial_ack`
/// and `on_recovery_exit` through a fast recovery; `on_rto` and
/// `on_rto_again` when the retransmission timer fires; and
/// `on_spurious_congestion` when a reduction proves needless.
pub(crate) trait CongestionControl: Debug + Send {
    /// Which algorithm this is.
    fn algorithm(&self) -> CongestionAlgorithm;
    /// The windows.
    fn window(&self) -> Window;
    /// The windows, to change.
    fn window_mut(&mut self) -> &mut Window;
    /// The congestion window in bytes.
    fn cwnd(&self) -> usize {
        self.window().cwnd
    }
    /// The slow-start threshold in bytes.
    fn ssthresh(&self) -> usize {
        self.window().ssthresh
    }
    /// New data was acknowledged outside loss recovery.
    fn on_ack(&mut self, ack: &Ack);
    /// Three duplicate ACKs: entering fast recovery with `flight` bytes outstanding.
    fn on_fast_retransmit(&mut self, flight: usize, mss: usize);
    /// A further duplicate ACK during fast recovery: one more segment left
    /// the network, so the window inflates by one (RFC 5681 §3.2 step 4).
    fn on_recovery_dupack(&mut self, mss: usize) {
        self.window_mut().cwnd += mss;
    }
    /// A partial ACK during recovery acknowledged `acked` bytes (RFC 6582 §3.2 step 4).
    fn on_partial_ack(&mut self, acked: usize, mss: usize) {
        self.window_mut().deflate(acked, mss);
    }
    /// Recovery ended: deflate the window.
    fn on_recovery_exit(&mut self, flight: usize, mss: usize);
    /// The retransmission timer fired with `flight` bytes outstanding.
    fn on_rto(&mut self, flight: usize, mss: usize);
    /// It fired again for the same segment: the window restarts, but the
    /// threshold stays (RFC 5681 §3.1, equation 4 applies once).
    fn on_rto_again(&mut self, mss: usize);
    /// The last reduction was spurious (a D-SACK, Eifel or F-RTO said the
    /// "lost" data had arrived): undo it, if the window has not already
    /// grown past where it was (RFC 9438 §4.9).
    #[allow(dead_code, reason = "for spurious-retransmission detection (RFC 3522, 5682, 2883)")]
    fn on_spurious_congestion(&mut self);
}

/// A controller running `algorithm` from `window`: a new connection's
/// initial window, or the current one when a connection switches
/// algorithm (as on Linux, cwnd and ssthresh carry over).
pub(crate) fn controller(algorithm: CongestionAlgorithm, window: Window) -> Box<dyn CongestionControl> {
    match algorithm {
        CongestionAlgorithm::Cubic => Box::new(Cubic::new(window)),
        CongestionAlgorithm::NewReno => Box::new(NewReno::new(window)),
    }
}

#[cfg(test)]
impl Ack {
    /// An ACK of `acked` bytes at `now` with nothing else to say: the window was full, no RTT sample.
    pub(crate) fn of(now: Instant, acked: usize, mss: usize, cwnd: usize) -> Ack {
        Ack {
            now,
            acked,
            mss,
            in_flight: cwnd,
            rtt: None,
            srtt: None,
            snd_una: SeqNum(0),
            snd_max: SeqNum(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_by_name() {
        assert_eq!(CongestionAlgorithm::default(), CongestionAlgorithm::Cubic);
        for a in [CongestionAlgorithm::Cubic, CongestionAlgorithm::NewReno] {
            assert_eq!(a.name().parse::<CongestionAlgorithm>(), Ok(a));
            assert_eq!(a.to_string(), a.name());
        }
        assert_eq!("Reno".parse::<CongestionAlgorithm>(), Ok(CongestionAlgorithm::NewReno));
        assert!("bbr".parse::<CongestionAlgorithm>().is_err());
    }

    #[test]
    fn switching_keeps_the_windows() {
        let w = Window {
            cwnd: 40_000,
            ssthresh: 30_000,
        };
        for a in [CongestionAlgorithm::Cubic, CongestionAlgorithm::NewReno] {
            let c = controller(a, w);
            assert_eq!((c.algorithm(), c.window()), (a, w));
        }
    }
}
