//! Round-trip time estimation and the retransmission timeout (RFC 6298).

#![forbid(unsafe_code)]

use crate::time::Duration;

/// Clock granularity G of RFC 6298 (our clock counts microseconds; Linux uses 1 ms-ish).
const GRANULARITY: Duration = Duration::from_millis(1);

/// SRTT, RTTVAR and RTO of one connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
}

impl RttEstimator {
    /// Before any sample the RTO is `initial` (1 s, RFC 6298 §2.1).
    pub(crate) fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: initial.clamp(min_rto, max_rto),
            min_rto,
            max_rto,
        }
    }

    /// Folds in one measurement (RFC 6298 §2.2, §2.3).
    pub(crate) fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.expect("set above");
        self.rto = (srtt + (self.rttvar * 4).max(GRANULARITY)).clamp(self.min_rto, self.max_rto);
    }

    /// The current RTO, before backoff.
    #[cfg(test)]
    pub(crate) fn rto(&self) -> Duration {
        self.rto
    }

    /// The RTO after `backoff` doublings (RFC 6298 §5.5), at most the maximum.
    pub(crate) fn backed_off(&self, backoff: u32) -> Duration {
        self.rto.saturating_mul(1u32 << backoff.min(16)).min(self.max_rto)
    }

    /// The smallest RTO (Linux's `tcp_rto_min`).
    pub(crate) fn min_rto(&self) -> Duration {
        self.min_rto
    }

    /// The smoothed RTT, once measured.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The RTT variation.
    #[cfg(test)]
    pub(crate) fn rttvar(&self) -> Duration {
        self.rttvar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(120),
        )
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut e = est();
        assert_eq!(e.rto(), Duration::from_secs(1));
        e.sample(Duration::from_millis(100));
        assert_eq!(e.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(e.rttvar(), Duration::from_millis(50));
        assert_eq!(e.rto(), Duration::from_millis(300));
    }

    #[test]
    fn later_samples_smooth_and_rto_respects_the_minimum() {
        let mut e = est();
        e.sample(Duration::from_millis(100));
        e.sample(Duration::from_millis(200));
        // RTTVAR = 3/4·50 + 1/4·100 = 62.5; SRTT = 7/8·100 + 1/8·200 = 112.5
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.rto(), Duration::from_micros(362_500));
        for _ in 0..50 {
            e.sample(Duration::from_micros(100));
        }
        assert_eq!(e.rto(), Duration::from_millis(200), "clamped to the minimum");
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let e = est();
        assert_eq!(e.backed_off(0), Duration::from_secs(1));
        assert_eq!(e.backed_off(3), Duration::from_secs(8));
        assert_eq!(e.backed_off(30), Duration::from_secs(120));
    }
}
