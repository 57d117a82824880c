//! Spurious retransmissions found out, and the window reduction undone:
//! through D-SACK (RFC 2883 §4.2, RFC 3708) when every retransmission of
//! a recovery was reported as a duplicate, and through timestamps (Eifel,
//! RFC 3522) when the first ACK after a retransmission echoes the original
//! transmission. Reordering and duplication then cost no window.

#![forbid(unsafe_code)]

use crate::wire::seq::SeqNum;

/// Retransmitted ranges one episode tracks at most; past that it cannot be undone.
const MAX_RANGES: usize = 64;

/// One congestion episode (a fast recovery, a TLP-repaired loss or a
/// timeout) that may yet prove spurious (Linux's undo_marker,
/// undo_retrans and retrans_stamp).
#[derive(Clone, Debug)]
pub(crate) struct Undo {
    /// SND.UNA when the episode began: only data from here on was resent.
    marker: SeqNum,
    /// Retransmitted ranges no D-SACK has reported yet.
    pending: Vec<(SeqNum, SeqNum)>,
    /// Something was retransmitted in this episode.
    retransmitted: bool,
    /// More retransmissions than `MAX_RANGES`: the D-SACK test gives up.
    overflow: bool,
    /// The TSval of the episode's first retransmission (Eifel's RetransmitTS).
    first_tsval: Option<u32>,
    /// The first ACK past the marker was checked (Eifel looks only at it).
    eifel_checked: bool,
}

impl Undo {
    /// An episode starting with SND.UNA at `marker`.
    pub(crate) fn new(marker: SeqNum) -> Undo {
        Undo {
            marker,
            pending: Vec::new(),
            retransmitted: false,
            overflow: false,
            first_tsval: None,
            eifel_checked: false,
        }
    }

    /// `start..end` was retransmitted, carrying `tsval` if timestamps are on.
    pub(crate) fn retransmitted(&mut self, start: SeqNum, end: SeqNum, tsval: Option<u32>) {
        self.retransmitted = true;
        if self.first_tsval.is_none() {
            self.first_tsval = tsval;
        }
        if self.pending.contains(&(start, end)) {
            // Sent twice: one D-SACK cannot vouch for both copies.
            self.overflow = true;
        } else if self.pending.len() < MAX_RANGES {
            self.pending.push((start, end));
        } else {
            self.overflow = true;
        }
    }

    /// A D-SACK reported `left..right` received twice: `None` if it covers
    /// none of this episode's retransmissions, else whether that was the
    /// last one outstanding, so every one was needless (RFC 3708).
    pub(crate) fn dsack(&mut self, left: SeqNum, right: SeqNum) -> Option<bool> {
        if left.lt(self.marker) {
            return None;
        }
        let before = self.pending.len();
        self.pending.retain(|&(s, e)| !(s.ge(left) && e.le(right)));
        (self.pending.len() < before).then_some(self.pending.is_empty() && self.retransmitted && !self.overflow)
    }

    /// Whether SND.UNA, now `snd_una`, went more than half the sequence
    /// space past the marker (which it never precedes, so the marker then
    /// looks ahead of it): sequence numbers no longer tell this episode's
    /// ranges from new data, and nothing of it may be undone any more.
    pub(crate) fn outlived(&self, snd_una: SeqNum) -> bool {
        self.marker.gt(snd_una)
    }

    /// An ACK acknowledged new data up to `ack`, echoing `echo` (RFC 3522
    /// §3.2): if it is the first past the marker and its echo predates the
    /// first retransmission, the original arrived and the retransmission
    /// was needless.
    ///
    /// The echo speaks only for the segment that filled the hole at the
    /// marker (the receiver takes TS.Recent from in-order segments, RFC
    /// 7323 §4.3): a retransmission still outstanding above the ACK may
    /// have repaired a real loss, so the reduction then stands (as Linux's
    /// partial undo, which waits for `retrans_out` to reach zero).
    pub(crate) fn eifel(&mut self, ack: SeqNum, echo: Option<u32>) -> bool {
        if self.eifel_checked || !ack.gt(self.marker) {
            return false;
        }
        self.eifel_checked = true;
        if self.overflow || self.pending.iter().any(|&(_, end)| end.gt(ack)) {
            return false;
        }
        match (echo, self.first_tsval) {
            (Some(echo), Some(first)) => echo != 0 && (echo.wrapping_sub(first) as i32) < 0,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNum {
        SeqNum(n)
    }

    #[test]
    fn dsacks_for_every_retransmission_prove_the_episode_spurious() {
        let mut u = Undo::new(s(1000));
        u.retransmitted(s(1000), s(2000), None);
        u.retransmitted(s(3000), s(4000), None);
        assert_eq!(u.dsack(s(500), s(1000)), None, "below the marker: an older duplicate");
        assert_eq!(u.dsack(s(1000), s(2000)), Some(false), "one still outstanding");
        assert_eq!(u.dsack(s(1000), s(2000)), None, "the same again counts once");
        assert_eq!(u.dsack(s(3000), s(4000)), Some(true));
    }

    /// An episode left alone for half the sequence space would take a
    /// D-SACK of new data at the same numbers for one of its own.
    #[test]
    fn an_episode_is_outlived_once_snd_una_is_half_the_space_past_it() {
        let marker = s(u32::MAX - 10);
        let u = Undo::new(marker);
        assert!(!u.outlived(marker));
        assert!(!u.outlived(marker + (1 << 31) - 1), "still comparable");
        assert!(u.outlived(marker + (1 << 31) + 1));
        assert!(u.outlived(marker + u32::MAX), "back at the marker, less one");
    }

    #[test]
    fn a_range_resent_twice_cannot_be_undone_by_dsack() {
        let mut u = Undo::new(s(0));
        u.retransmitted(s(0), s(100), None);
        u.retransmitted(s(0), s(100), None);
        assert_eq!(u.dsack(s(0), s(100)), Some(false));
    }

    /// RFC 3522: only the first ACK past the marker is looked at, and it
    /// proves the retransmission needless if it echoes an older TSval.
    #[test]
    fn eifel_looks_at_the_first_ack_past_the_marker() {
        let mut u = Undo::new(s(1000));
        u.retransmitted(s(1000), s(2000), Some(500));
        assert!(!u.eifel(s(1000), Some(400)), "no new data acknowledged");
        assert!(u.eifel(s(2000), Some(400)));
        let mut u = Undo::new(s(1000));
        u.retransmitted(s(1000), s(2000), Some(500));
        assert!(!u.eifel(s(2000), Some(500)), "echoes the retransmission");
        assert!(!u.eifel(s(3000), Some(400)), "only the first ACK counts");
        let mut u = Undo::new(s(1000));
        u.retransmitted(s(1000), s(2000), Some(5));
        assert!(u.eifel(s(2000), Some(u32::MAX - 5)), "across the TSval wrap");
        let mut u = Undo::new(s(1000));
        u.retransmitted(s(1000), s(2000), Some(500));
        u.retransmitted(s(5000), s(6000), Some(501));
        assert!(
            !u.eifel(s(2000), Some(400)),
            "the resend of 5000 may have repaired a loss"
        );
    }
}
