//! The sender's scoreboard (RFC 6675 §3, RFC 8985 §5.2): every segment
//! between SND.UNA and SND.MAX, in sequence order, as last transmitted:
//! when it was sent, whether it was ever resent, whether the peer SACKed it,
//! and whether it is deemed lost. Running byte counts make `pipe` (bytes in
//! the network) cost nothing per segment sent.
//!
//! SACK blocks mark the segments they cover whole; the cumulative ACK drops
//! them. Only our own retransmissions split a segment (a part resent at a
//! smaller MSS), so nothing grows beyond the segments we sent, whatever
//! blocks the receiver sends.

#![forbid(unsafe_code)]

use crate::time::Instant;
use crate::wire::seq::SeqNum;
use std::collections::VecDeque;

/// One segment as last transmitted (RFC 8985 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    /// First sequence number.
    pub(crate) start: SeqNum,
    /// One past the last (a FIN counts one).
    pub(crate) end: SeqNum,
    /// When it was last sent (Segment.xmit_ts).
    pub(crate) xmit: Instant,
    /// The place of that transmission in the connection's sending order.
    pub(crate) order: u64,
    /// It was sent more than once (Segment.retransmitted).
    pub(crate) retransmitted: bool,
    /// Its last transmission is deemed lost: it waits to be sent again (Segment.lost).
    pub(crate) lost: bool,
    /// The peer SACKed it.
    pub(crate) sacked: bool,
}

impl Sent {
    /// Sequence space it covers.
    pub(crate) fn len(&self) -> usize {
        self.end.wrapping_distance_from(self.start) as usize
    }
}

/// Every segment between SND.UNA and SND.MAX, in sequence order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scoreboard {
    segs: VecDeque<Sent>,
    /// Bytes SACKed.
    sacked: usize,
    /// Bytes marked lost (never SACKed ones).
    lost: usize,
    /// Segments SACKed (RACK.segs_sacked).
    sacked_segs: usize,
    /// Transmissions so far: the next one's `order`.
    transmissions: u64,
}

impl Scoreboard {
    /// Records a transmission of `start..end` at `now`: a first one appends,
    /// a retransmission stamps the segments it covers (RFC 8985 §6.1),
    /// splitting those it covers only in part.
    pub(crate) fn sent(&mut self, start: SeqNum, end: SeqNum, now: Instant) {
        if !start.lt(end) {
            return;
        }
        let order = self.transmissions;
        self.transmissions += 1;
        let tail = self.segs.back().map(|s| s.end);
        let first_new = match tail {
            Some(tail) if start.lt(tail) => {
                let resent_end = if end.lt(tail) { end } else { tail };
                self.split_at(start);
                self.split_at(resent_end);
                for s in self.range_mut(start, resent_end) {
                    s.retransmitted = true;
                    s.xmit = now;
                    s.order = order;
                    s.lost = false;
                }
                self.recount();
                tail
            }
            _ => start,
        };
        if first_new.lt(end) {
            self.segs.push_back(Sent {
                start: first_new,
                end,
                xmit: now,
                order,
                retransmitted: false,
                lost: false,
                sacked: false,
            });
        }
    }

    /// The cumulative ACK reached `una`: calls `delivered` for each segment
    /// it newly delivers (not those SACKed before) and forgets them.
    pub(crate) fn acked(&mut self, una: SeqNum, mut delivered: impl FnMut(&Sent)) {
        while let Some(front) = self.segs.front_mut() {
            if front.end.le(una) {
                let s = self.segs.pop_front().expect("front exists");
                self.forget(&s);
                if !s.sacked {
                    delivered(&s);
                }
            } else {
                if front.start.lt(una) {
                    // Part of a segment: what is left of it stays.
                    let cut = una.wrapping_distance_from(front.start) as usize;
                    if front.sacked {
                        self.sacked -= cut;
                    } else if front.lost {
                        self.lost -= cut;
                    }
                    front.start = una;
                }
                break;
            }
        }
    }

    /// Marks the segments wholly inside the SACK block `left..right` as
    /// SACKed and calls `delivered` for each one newly SACKed. Returns the
    /// bytes newly SACKed.
    pub(crate) fn sack(&mut self, left: SeqNum, right: SeqNum, mut delivered: impl FnMut(&Sent)) -> usize {
        let (Some(first), Some(last)) = (self.segs.front(), self.segs.back()) else {
            return 0;
        };
        let left = if left.lt(first.start) { first.start } else { left };
        let right = if right.gt(last.end) { last.end } else { right };
        if !left.lt(right) {
            return 0;
        }
        // Whole segments only, as Linux: a block edge inside a segment does
        // not split it (a peer sending one-byte blocks could otherwise make
        // the scoreboard grow by several entries per ACK). A segment only
        // partly SACKed is resent whole if lost; the receiver keeps what it has.
        let mut news = 0;
        let (mut bytes, mut lost, mut segs) = (0, 0, 0);
        for s in self.range_mut(left, right) {
            // The first may begin below the block: only partly SACKed.
            if s.sacked || s.start.lt(left) {
                continue;
            }
            s.sacked = true;
            bytes += s.len();
            segs += 1;
            if s.lost {
                s.lost = false;
                lost += s.len();
            }
            news += s.len();
            delivered(s);
        }
        self.sacked += bytes;
        self.sacked_segs += segs;
        self.lost -= lost;
        news
    }

    /// Whether the segment at SND.UNA is SACKed: the receiver kept data
    /// beyond its cumulative ACK and then did not take it in order, so it
    /// dropped what it SACKed (reneging, RFC 2018 §8; Linux's test).
    pub(crate) fn head_sacked(&self) -> bool {
        self.segs.front().is_some_and(|s| s.sacked)
    }

    /// Forgets every SACK (the receiver reneged).
    pub(crate) fn clear_sacks(&mut self) {
        for s in &mut self.segs {
            s.sacked = false;
        }
        self.recount();
    }

    /// Marks every segment not SACKed as lost (a retransmission timeout, a
    /// smaller path MTU): all of it goes again.
    pub(crate) fn mark_all_lost(&mut self) {
        for s in &mut self.segs {
            s.lost = !s.sacked;
        }
        self.recount();
    }

    /// Takes back every loss mark (the reduction proved spurious): nothing
    /// more is resent.
    pub(crate) fn clear_lost(&mut self) {
        for s in &mut self.segs {
            s.lost = false;
        }
        self.lost = 0;
    }

    /// Bytes sent and neither SACKed nor deemed lost: what is in the network
    /// (RFC 6675's `pipe`, as Linux counts it; a lost segment resent counts
    /// again).
    pub(crate) fn pipe(&self) -> usize {
        self.total() - self.sacked - self.lost
    }

    /// Bytes SACKed.
    pub(crate) fn sacked_bytes(&self) -> usize {
        self.sacked
    }

    /// Bytes marked lost and not yet sent again.
    pub(crate) fn lost_bytes(&self) -> usize {
        self.lost
    }

    /// Segments SACKed.
    pub(crate) fn sacked_segs(&self) -> usize {
        self.sacked_segs
    }

    /// The lowest segment marked lost.
    pub(crate) fn first_lost(&self) -> Option<Sent> {
        if self.lost == 0 {
            return None;
        }
        self.segs.iter().find(|s| s.lost).copied()
    }

    /// The highest segment sent.
    pub(crate) fn last(&self) -> Option<Sent> {
        self.segs.back().copied()
    }

    /// Whether nothing is outstanding.
    pub(crate) fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// The segments, lowest first.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Sent> {
        self.segs.iter()
    }

    /// Marks lost each segment neither SACKed nor already lost for which
    /// `lost(index, segment)` says so; returns how many.
    pub(crate) fn mark_lost(&mut self, mut lost: impl FnMut(usize, &Sent) -> bool) -> usize {
        let mut marked = 0;
        for (i, s) in self.segs.iter_mut().enumerate() {
            if !s.sacked && !s.lost && lost(i, s) {
                s.lost = true;
                self.lost += s.len();
                marked += 1;
            }
        }
        marked
    }

    /// Where the first SACKed segment at or above `seq` begins, if any.
    pub(crate) fn next_sacked(&self, seq: SeqNum) -> Option<SeqNum> {
        self.segs.iter().find(|s| s.sacked && s.end.gt(seq)).map(|s| s.start)
    }

    /// Panics unless the segments tile SND.UNA..SND.MAX in order and the
    /// running counts match them.
    #[cfg(test)]
    pub(crate) fn assert_sound(&self, una: SeqNum, max: SeqNum) {
        let (Some(first), Some(last)) = (self.segs.front(), self.segs.back()) else {
            return;
        };
        assert_eq!(
            (first.start, last.end),
            (una, max),
            "the segments cover SND.UNA..SND.MAX"
        );
        for w in self.segs.iter().collect::<Vec<_>>().windows(2) {
            assert_eq!(w[0].end, w[1].start, "contiguous: {:?}", self.segs);
        }
        let mut copy = self.clone();
        copy.recount();
        assert_eq!(
            (copy.sacked, copy.lost, copy.sacked_segs),
            (self.sacked, self.lost, self.sacked_segs)
        );
        assert!(self.segs.iter().all(|s| s.start.lt(s.end) && !(s.lost && s.sacked)));
    }

    fn total(&self) -> usize {
        match (self.segs.front(), self.segs.back()) {
            (Some(f), Some(b)) => b.end.wrapping_distance_from(f.start) as usize,
            _ => 0,
        }
    }

    fn forget(&mut self, s: &Sent) {
        if s.sacked {
            self.sacked -= s.len();
            self.sacked_segs -= 1;
        } else if s.lost {
            self.lost -= s.len();
        }
    }

    fn recount(&mut self) {
        self.sacked = 0;
        self.lost = 0;
        self.sacked_segs = 0;
        for s in &self.segs {
            if s.sacked {
                self.sacked += s.len();
                self.sacked_segs += 1;
            } else if s.lost {
                self.lost += s.len();
            }
        }
    }

    /// Index of the segment holding `seq`.
    fn index_of(&self, seq: SeqNum) -> Option<usize> {
        let i = self.segs.partition_point(|s| s.end.le(seq));
        (i < self.segs.len() && self.segs[i].start.le(seq)).then_some(i)
    }

    /// Splits the segment holding `seq` so that a segment starts there.
    fn split_at(&mut self, seq: SeqNum) {
        let Some(i) = self.index_of(seq) else { return };
        let s = self.segs[i];
        if s.start == seq {
            return;
        }
        self.segs[i].end = seq;
        let mut upper = s;
        upper.start = seq;
        self.segs.insert(i + 1, upper);
        if s.sacked {
            self.sacked_segs += 1;
        }
    }

    /// The segments that end inside `start..end`: the first may begin
    /// below `start` unless a segment was split there.
    fn range_mut(&mut self, start: SeqNum, end: SeqNum) -> impl Iterator<Item = &mut Sent> {
        let from = self.segs.partition_point(|s| s.end.le(start));
        self.segs.range_mut(from..).take_while(move |s| s.end.le(end))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn s(n: u32) -> SeqNum {
        SeqNum(n)
    }

    pub(crate) fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Ten 100-byte segments sent 1 ms apart from t = 0.
    pub(crate) fn ten() -> Scoreboard {
        let mut log = Scoreboard::default();
        for i in 0..10u32 {
            log.sent(s(i * 100), s(i * 100 + 100), ms(u64::from(i)));
        }
        log
    }

    #[test]
    fn the_log_counts_pipe_sacked_and_lost() {
        let mut log = ten();
        assert_eq!(log.pipe(), 1000);
        assert_eq!(log.sack(s(300), s(500), |_| {}), 200);
        assert_eq!((log.pipe(), log.sacked_bytes(), log.sacked_segs()), (800, 200, 2));
        log.mark_all_lost();
        assert_eq!((log.pipe(), log.lost_bytes()), (0, 800));
        log.sent(s(0), s(100), ms(20));
        assert_eq!(log.pipe(), 100, "a lost segment sent again is in the network again");
        let mut got = Vec::new();
        log.acked(s(250), |d| got.push(d.start));
        assert_eq!(got, [s(0), s(100)], "the third is only partly acknowledged");
        assert_eq!(log.iter().next().map(|f| f.start), Some(s(250)));
        assert_eq!((log.lost_bytes(), log.sacked_bytes()), (50 + 500, 200));
        log.acked(s(1000), |_| {});
        assert!(log.is_empty());
        assert_eq!(
            (log.pipe(), log.lost_bytes(), log.sacked_bytes(), log.sacked_segs()),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn a_partial_retransmission_splits_a_segment_and_a_partial_sack_does_not() {
        let mut log = ten();
        log.sent(s(150), s(180), ms(30));
        let parts: Vec<_> = log
            .iter()
            .take(4)
            .map(|x| (x.start.0, x.end.0, x.retransmitted))
            .collect();
        assert_eq!(
            parts,
            [(0, 100, false), (100, 150, false), (150, 180, true), (180, 200, false)]
        );
        assert_eq!(log.sack(s(420), s(460), |_| {}), 0, "part of a segment: not SACKed");
        assert_eq!(
            log.sack(s(400), s(520), |_| {}),
            100,
            "the whole segment inside the block"
        );
        assert_eq!((log.sacked_segs(), log.iter().count()), (1, 12));
        assert_eq!(log.pipe(), 900);
    }

    #[test]
    fn a_retransmission_reaching_past_the_tail_appends_the_new_part() {
        let mut log = ten();
        log.sent(s(950), s(1100), ms(40));
        let last: Vec<_> = log
            .iter()
            .skip(10)
            .map(|x| (x.start.0, x.end.0, x.retransmitted))
            .collect();
        assert_eq!(last, [(950, 1000, true), (1000, 1100, false)]);
        assert_eq!(log.pipe(), 1100);
    }

    #[test]
    fn sack_blocks_outside_the_flight_change_nothing() {
        let mut log = ten();
        assert_eq!(log.sack(s(2000), s(3000), |_| {}), 0);
        assert_eq!(log.sack(s(u32::MAX - 10), s(0), |_| {}), 0);
        assert_eq!(log.sack(s(900), s(5000), |_| {}), 100, "clipped to SND.MAX");
        assert_eq!(log.next_sacked(s(0)), Some(s(900)));
    }
}
