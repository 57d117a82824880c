//! The sender's SACK scoreboard (RFC 6675 §2-4): which bytes above SND.UNA
//! the receiver reported holding, and from it which holes count as lost
//! (`IsLost`) and how much is still in the network (`pipe`).
//!
//! Blocks are kept sorted and merged, as sequence ranges `[left, right)`
//! strictly inside SND.UNA..SND.MAX; at most [`MAX_BLOCKS`] of them, so a
//! receiver cannot make the scoreboard grow without bound.

#![forbid(unsafe_code)]

use crate::wire::seq::SeqNum;

/// SACKed ranges the scoreboard keeps at most (the lowest are kept: they
/// decide which holes are lost).
pub(crate) const MAX_BLOCKS: usize = 32;

/// RFC 6675's DupThresh: SACKed segments above a hole before it counts as lost.
pub(crate) const DUP_THRESH: usize = 3;

/// SACKed ranges above SND.UNA, sorted and disjoint.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scoreboard {
    blocks: Vec<(SeqNum, SeqNum)>,
}

impl Scoreboard {
    /// Forgets everything (after a retransmission timeout, RFC 2018 §8:
    /// the receiver may have discarded what it SACKed).
    pub(crate) fn clear(&mut self) {
        self.blocks.clear();
    }

    /// Records the SACK blocks of an ACK for SND.UNA `una` with SND.MAX `max`;
    /// returns whether they reported anything new. Blocks at or below `una`
    /// (D-SACKs, RFC 2883) or beyond `max` (bogus) are ignored.
    pub(crate) fn update(&mut self, una: SeqNum, max: SeqNum, blocks: &[(SeqNum, SeqNum)]) -> bool {
        let before = self.sacked_bytes();
        for &(left, right) in blocks {
            if !left.lt(right) || right.le(una) || right.gt(max) {
                continue;
            }
            let left = if left.lt(una) { una } else { left };
            self.insert(left, right);
        }
        self.sacked_bytes() != before
    }

    fn insert(&mut self, mut left: SeqNum, mut right: SeqNum) {
        // Merge with every block it touches or overlaps.
        let mut i = 0;
        while i < self.blocks.len() {
            let (l, r) = self.blocks[i];
            if r.lt(left) || right.lt(l) {
                i += 1;
                continue;
            }
            left = if l.lt(left) { l } else { left };
            right = if r.gt(right) { r } else { right };
            self.blocks.remove(i);
        }
        let at = self
            .blocks
            .iter()
            .position(|(l, _)| left.lt(*l))
            .unwrap_or(self.blocks.len());
        self.blocks.insert(at, (left, right));
        self.blocks.truncate(MAX_BLOCKS);
    }

    /// The cumulative ACK moved to `una`: what lies below it is history.
    pub(crate) fn ack(&mut self, una: SeqNum) {
        self.blocks.retain(|(_, r)| r.gt(una));
        if let Some(first) = self.blocks.first_mut() {
            if first.0.lt(una) {
                first.0 = una;
            }
        }
    }

    /// Bytes SACKed.
    pub(crate) fn sacked_bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|(l, r)| r.wrapping_distance_from(*l) as usize)
            .sum()
    }

    /// Whether `seq` is SACKed.
    #[cfg(test)]
    pub(crate) fn is_sacked(&self, seq: SeqNum) -> bool {
        self.blocks.iter().any(|(l, r)| seq.ge(*l) && seq.lt(*r))
    }

    /// The highest sequence number below which every unSACKed byte counts as
    /// lost, or `una` if none does. RFC 6675 `IsLost(seq)`: DupThresh
    /// discontiguous SACKed ranges, or more than (DupThresh − 1) × SMSS
    /// SACKed bytes, above `seq`. Both only grow as `seq` goes down, so the
    /// boundary is the left edge of the highest block where that holds.
    pub(crate) fn lost_boundary(&self, una: SeqNum, mss: usize) -> SeqNum {
        let mut bytes_above = 0usize;
        for (count, &(left, right)) in self.blocks.iter().rev().enumerate() {
            bytes_above += right.wrapping_distance_from(left) as usize;
            if count + 1 >= DUP_THRESH || bytes_above > (DUP_THRESH - 1) * mss {
                return left;
            }
        }
        una
    }

    /// The first unSACKed range at or above `from` and below `limit`:
    /// `(start, end)` with `end` at the next SACKed block or `limit`.
    pub(crate) fn next_hole(&self, from: SeqNum, limit: SeqNum) -> Option<(SeqNum, SeqNum)> {
        let mut at = from;
        for &(l, r) in &self.blocks {
            if r.le(at) {
                continue;
            }
            if at.lt(l) {
                let end = if l.lt(limit) { l } else { limit };
                return at.lt(end).then_some((at, end));
            }
            at = r;
        }
        at.lt(limit).then_some((at, limit))
    }

    /// `seq`, or the end of the SACKed range holding it.
    pub(crate) fn skip_sacked(&self, seq: SeqNum) -> SeqNum {
        self.blocks
            .iter()
            .find(|(l, r)| seq.ge(*l) && seq.lt(*r))
            .map_or(seq, |&(_, r)| r)
    }

    /// Where the first SACKed range above `seq` begins, if any.
    pub(crate) fn next_block_start(&self, seq: SeqNum) -> Option<SeqNum> {
        self.blocks.iter().map(|&(l, _)| l).find(|l| l.gt(seq))
    }

    /// The SACKed ranges, lowest first.
    #[cfg(test)]
    pub(crate) fn blocks(&self) -> &[(SeqNum, SeqNum)] {
        &self.blocks
    }

    /// UnSACKed bytes in `[from, to)`.
    pub(crate) fn unsacked_between(&self, from: SeqNum, to: SeqNum) -> usize {
        if !from.lt(to) {
            return 0;
        }
        let total = to.wrapping_distance_from(from) as usize;
        let sacked: usize = self
            .blocks
            .iter()
            .map(|&(l, r)| {
                let l = if l.lt(from) { from } else { l };
                let r = if r.gt(to) { to } else { r };
                if l.lt(r) {
                    r.wrapping_distance_from(l) as usize
                } else {
                    0
                }
            })
            .sum();
        total - sacked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNum {
        SeqNum(n)
    }

    #[test]
    fn blocks_merge_and_stay_inside_the_window() {
        let mut b = Scoreboard::default();
        assert!(b.update(s(1000), s(10_000), &[(s(3000), s(4000)), (s(5000), s(6000))]));
        assert!(
            b.update(s(1000), s(10_000), &[(s(4000), s(5000))]),
            "fills the gap: one block"
        );
        assert_eq!(b.blocks, [(s(3000), s(6000))]);
        assert!(!b.update(s(1000), s(10_000), &[(s(3500), s(4500))]), "nothing new");
        assert!(
            !b.update(s(1000), s(10_000), &[(s(500), s(900)), (s(9000), s(11_000))]),
            "D-SACK and beyond SND.MAX"
        );
        b.ack(s(3500));
        assert_eq!(b.blocks, [(s(3500), s(6000))]);
        assert_eq!(b.sacked_bytes(), 2500);
    }

    #[test]
    fn works_across_the_sequence_wrap() {
        let mut b = Scoreboard::default();
        let una = s(u32::MAX - 1000);
        b.update(una, s(5000), &[(s(u32::MAX - 100), s(200))]);
        assert!(b.is_sacked(s(u32::MAX)) && b.is_sacked(s(100)) && !b.is_sacked(s(300)));
        assert_eq!(b.next_hole(una, s(5000)), Some((una, s(u32::MAX - 100))));
        assert_eq!(b.next_hole(s(u32::MAX - 50), s(5000)), Some((s(200), s(5000))));
    }

    /// RFC 6675 §4 IsLost: three SACKed ranges above a hole, or more than
    /// two segments' worth of SACKed bytes.
    #[test]
    fn holes_count_as_lost_by_dupthresh() {
        let mss = 1000;
        let mut b = Scoreboard::default();
        b.update(s(0), s(20_000), &[(s(1000), s(2000))]);
        assert_eq!(b.lost_boundary(s(0), mss), s(0), "one segment above: not yet");
        b.update(s(0), s(20_000), &[(s(3000), s(4000))]);
        assert_eq!(b.lost_boundary(s(0), mss), s(0), "two discontiguous: not yet");
        b.update(s(0), s(20_000), &[(s(5000), s(6000))]);
        assert_eq!(
            b.lost_boundary(s(0), mss),
            s(1000),
            "three: the hole below the first is lost"
        );
        let mut big = Scoreboard::default();
        big.update(s(0), s(20_000), &[(s(1000), s(3001))]);
        assert_eq!(big.lost_boundary(s(0), mss), s(1000), "more than 2 × SMSS bytes above");
    }

    #[test]
    fn holes_and_unsacked_bytes() {
        let mut b = Scoreboard::default();
        b.update(s(0), s(10_000), &[(s(2000), s(3000)), (s(5000), s(6000))]);
        assert_eq!(b.next_hole(s(0), s(10_000)), Some((s(0), s(2000))));
        assert_eq!(b.next_hole(s(2500), s(10_000)), Some((s(3000), s(5000))));
        assert_eq!(b.next_hole(s(5000), s(5500)), None);
        assert_eq!(b.unsacked_between(s(0), s(10_000)), 8000);
        assert_eq!(b.unsacked_between(s(2500), s(5500)), 2000);
    }

    #[test]
    fn the_scoreboard_is_bounded() {
        let mut b = Scoreboard::default();
        for i in 0..100u32 {
            b.update(s(0), s(1_000_000), &[(s(i * 2000 + 1000), s(i * 2000 + 1500))]);
        }
        assert_eq!(b.blocks.len(), MAX_BLOCKS);
        assert_eq!(b.blocks[0], (s(1000), s(1500)), "the lowest are kept");
    }
}
