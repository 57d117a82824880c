//! HyStart++ (RFC 9406): leaves the initial slow start when the RTT starts
//! to rise, before the queue overflows, through a few rounds of
//! Conservative Slow Start (CSS) in case the rise was noise.
//!
//! Rounds are delimited by sequence numbers (§4.2): a round ends when the
//! highest sequence number sent at its start is acknowledged. Each round
//! keeps the smallest RTT sampled in it; slow start ends when a round's
//! minimum, over at least `N_RTT_SAMPLE` samples, exceeds the previous
//! round's by a threshold of an eighth of it, clamped to 4..16 ms.
//!
//! HyStart++ needs an RTT sample on most ACKs: with timestamps (RFC 7323)
//! every ACK has one; without them the connection times one segment per
//! round, too few to reach `N_RTT_SAMPLE`, and slow start runs until a loss
//! as plain RFC 5681 slow start does.

#![forbid(unsafe_code)]

use crate::time::Duration;
use crate::wire::seq::SeqNum;

/// The smallest RTT rise that ends slow start (§4.3).
const MIN_RTT_THRESH: Duration = Duration::from_millis(4);
/// The largest (§4.3).
const MAX_RTT_THRESH: Duration = Duration::from_millis(16);
/// The rise that ends slow start is the last round's minimum RTT over this (§4.3).
const MIN_RTT_DIVISOR: u32 = 8;
/// RTT samples a round needs before its minimum is trusted (§4.3).
const N_RTT_SAMPLE: u32 = 8;
/// Rounds of Conservative Slow Start before congestion avoidance (§4.3).
const CSS_ROUNDS: u32 = 5;
/// CSS grows the window this many times slower than slow start (§4.3).
pub(crate) const CSS_GROWTH_DIVISOR: usize = 4;
/// L: the most a window grows per ACK in slow start, in segments, for a
/// sender that does not pace (§4.3).
pub(crate) const SLOW_START_LIMIT: usize = 8;

/// How slow start grows the window on an ACK, as HyStart++ decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Growth {
    /// Standard slow start.
    SlowStart,
    /// Conservative Slow Start: a quarter of slow start's growth.
    Conservative,
    /// CSS is over: congestion avoidance from now on (ssthresh = cwnd).
    Over,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    SlowStart,
    /// `baseline` is the minimum RTT that started CSS; `rounds` counts
    /// rounds in CSS, the partial one it started in included.
    Css {
        baseline: Duration,
        rounds: u32,
    },
    Over,
}

/// HyStart++'s state for one connection's initial slow start.
#[derive(Clone, Debug)]
pub(crate) struct HyStart {
    phase: Phase,
    /// windowEnd: the round ends when this is acknowledged.
    window_end: Option<SeqNum>,
    last_round_min: Option<Duration>,
    current_round_min: Option<Duration>,
    /// RTT samples in the current round.
    samples: u32,
}

/// The RTT rise over `last_round_min` that ends slow start (§4.2).
fn rtt_threshold(last_round_min: Duration) -> Duration {
    (last_round_min / MIN_RTT_DIVISOR).clamp(MIN_RTT_THRESH, MAX_RTT_THRESH)
}

impl HyStart {
    /// At the start of slow start.
    pub(crate) fn new() -> HyStart {
        HyStart {
            phase: Phase::SlowStart,
            window_end: None,
            last_round_min: None,
            current_round_min: None,
            samples: 0,
        }
    }

    /// Takes one ACK of slow start: `snd_una` after it, the highest
    /// sequence number sent, and the RTT it measured; says how the window
    /// grows on it.
    pub(crate) fn on_ack(&mut self, snd_una: SeqNum, snd_max: SeqNum, rtt: Option<Duration>) -> Growth {
        if self.phase == Phase::Over {
            return Growth::Over;
        }
        // A round ends when its end is acknowledged. An end that looks
        // beyond everything sent is more than half the sequence space
        // behind (slow start resumed after an undone reduction): over too.
        if self.window_end.is_none_or(|end| snd_una.ge(end) || end.gt(snd_max)) {
            // A new round (§4.2): the last one's minimum is the reference.
            if let Phase::Css { rounds, .. } = &mut self.phase {
                if *rounds >= CSS_ROUNDS {
                    self.phase = Phase::Over;
                    return Growth::Over;
                }
                *rounds += 1;
            }
            self.window_end = Some(snd_max);
            self.last_round_min = self.current_round_min.take();
            self.samples = 0;
        }
        if let Some(rtt) = rtt {
            self.current_round_min = Some(self.current_round_min.map_or(rtt, |m| m.min(rtt)));
            self.samples += 1;
        }
        let current = self.current_round_min.filter(|_| self.samples >= N_RTT_SAMPLE);
        match (self.phase, current) {
            (Phase::SlowStart, Some(current)) => {
                if let Some(last) = self.last_round_min {
                    if current >= last + rtt_threshold(last) {
                        self.phase = Phase::Css {
                            baseline: current,
                            rounds: 1,
                        };
                    }
                }
            }
            (Phase::Css { baseline, .. }, Some(current)) if current < baseline => {
                // The rise was a fluctuation: back to slow start (§4.2).
                self.phase = Phase::SlowStart;
            }
            _ => {}
        }
        match self.phase {
            Phase::SlowStart => Growth::SlowStart,
            Phase::Css { .. } => Growth::Conservative,
            Phase::Over => Growth::Over,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Drives rounds of `acks` ACKs, each with an RTT sample: round `r` of
    /// `rtts` acknowledges up to `(r + 1) * acks` and ends at the last ACK.
    struct Rounds {
        h: HyStart,
        sent: u32,
    }

    impl Rounds {
        fn new() -> Rounds {
            Rounds {
                h: HyStart::new(),
                sent: 0,
            }
        }

        /// One round of `acks` ACKs with these RTTs; the growth of each.
        fn round(&mut self, acks: u32, rtt: impl Fn(u32) -> Duration) -> Vec<Growth> {
            let start = self.sent;
            self.sent += acks;
            (0..acks)
                .map(|i| {
                    // The ACK of segment `start + i`; everything up to `sent` is out.
                    self.h.on_ack(SeqNum(start + i), SeqNum(self.sent), Some(rtt(i)))
                })
                .collect()
        }
    }

    #[test]
    fn the_threshold_is_an_eighth_of_the_rtt_within_4_to_16_ms() {
        assert_eq!(rtt_threshold(MS * 10), MS * 4);
        assert_eq!(rtt_threshold(MS * 64), MS * 8);
        assert_eq!(rtt_threshold(MS * 200), MS * 16);
    }

    #[test]
    fn an_rtt_rise_of_the_threshold_ends_slow_start() {
        let mut r = Rounds::new();
        assert!(r.round(10, |_| MS * 10).iter().all(|g| *g == Growth::SlowStart));
        // 3.9 ms more is under the 4 ms threshold.
        let g = r.round(10, |_| MS * 10 + Duration::from_micros(3900));
        assert!(g.iter().all(|g| *g == Growth::SlowStart), "{g:?}");
        // The next round's minimum is compared with 13.9 ms: 17.9 ms is 4 ms more.
        let g = r.round(10, |_| Duration::from_micros(17_900));
        assert_eq!(g[..7], [Growth::SlowStart; 7], "not before N_RTT_SAMPLE samples");
        assert_eq!(g[7..], [Growth::Conservative; 3], "CSS from the eighth sample on");
    }

    /// A round's end left behind for more than half the sequence space
    /// (slow start resumed much later) ends the round; it does not wait
    /// for SND.UNA to come round to it.
    #[test]
    fn a_round_end_half_the_space_behind_ends_the_round() {
        let mut h = HyStart::new();
        h.on_ack(SeqNum(0), SeqNum(1000), None);
        assert_eq!(h.window_end, Some(SeqNum(1000)));
        let una = SeqNum(1000 + (1 << 31) + 5000);
        h.on_ack(una, una + 1000, None);
        assert_eq!(h.window_end, Some(una + 1000), "a new round");
    }

    #[test]
    fn no_exit_without_enough_samples() {
        let mut r = Rounds::new();
        r.round(7, |_| MS * 10);
        let g = r.round(7, |_| MS * 100);
        assert!(g.iter().all(|g| *g == Growth::SlowStart), "{g:?}");
    }

    #[test]
    fn css_lasts_five_rounds_then_congestion_avoidance() {
        let mut r = Rounds::new();
        r.round(10, |_| MS * 10);
        let g = r.round(10, |_| MS * 20);
        assert_eq!(
            g[9],
            Growth::Conservative,
            "CSS started in this round (the first of five)"
        );
        for round in 2..=CSS_ROUNDS {
            let g = r.round(10, |_| MS * 20);
            assert!(g.iter().all(|g| *g == Growth::Conservative), "round {round}: {g:?}");
        }
        let g = r.round(10, |_| MS * 20);
        assert_eq!(g[0], Growth::Over, "after five CSS rounds");
        assert_eq!(r.h.on_ack(SeqNum(1000), SeqNum(1000), None), Growth::Over, "for good");
    }

    #[test]
    fn an_rtt_back_below_the_baseline_resumes_slow_start() {
        let mut r = Rounds::new();
        r.round(10, |_| MS * 10);
        r.round(10, |_| MS * 20);
        // The next round sees 12 ms again: the rise was noise.
        let g = r.round(10, |i| if i == 3 { MS * 12 } else { MS * 25 });
        assert_eq!(g[6], Growth::Conservative);
        assert_eq!(
            g[7],
            Growth::SlowStart,
            "resumed once the round has N_RTT_SAMPLE samples"
        );
    }
}
