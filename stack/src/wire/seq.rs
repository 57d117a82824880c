//! TCP sequence numbers: 32-bit, compared modulo 2^32 (RFC 9293 §3.4).
//!
//! Deliberately not `Ord`: `a < b` only means something within half the
//! number space, so comparisons are explicit methods.

#![forbid(unsafe_code)]

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A sequence number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// `self < other` modulo 2^32.
    pub fn lt(self, other: SeqNum) -> bool {
        (self.0.wrapping_sub(other.0) as i32) < 0
    }

    /// `self <= other` modulo 2^32.
    pub fn le(self, other: SeqNum) -> bool {
        (self.0.wrapping_sub(other.0) as i32) <= 0
    }

    /// `self > other` modulo 2^32.
    pub fn gt(self, other: SeqNum) -> bool {
        other.lt(self)
    }

    /// `self >= other` modulo 2^32.
    pub fn ge(self, other: SeqNum) -> bool {
        other.le(self)
    }

    /// `start <= self < start + len` (the window test of RFC 9293 §3.4).
    pub fn in_window(self, start: SeqNum, len: u32) -> bool {
        self.wrapping_distance_from(start) < len
    }

    /// `self - earlier` as an unsigned distance (wrapping).
    pub fn wrapping_distance_from(self, earlier: SeqNum) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// The larger of two sequence numbers.
    pub fn max(self, other: SeqNum) -> SeqNum {
        if self.lt(other) { other } else { self }
    }

    /// The smaller of two sequence numbers.
    pub fn min(self, other: SeqNum) -> SeqNum {
        if self.lt(other) { self } else { other }
    }
}

impl Add<u32> for SeqNum {
    type Output = SeqNum;
    fn add(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs))
    }
}

impl AddAssign<u32> for SeqNum {
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u32> for SeqNum {
    type Output = SeqNum;
    fn sub(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_sub(rhs))
    }
}

impl Sub<SeqNum> for SeqNum {
    type Output = i64;
    /// Signed distance `self - rhs`, meaningful within half the space.
    fn sub(self, rhs: SeqNum) -> i64 {
        i64::from(self.0.wrapping_sub(rhs.0) as i32)
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_across_the_wrap() {
        let a = SeqNum(u32::MAX - 10);
        let b = a + 20; // wrapped past zero
        assert_eq!(b.0, 9);
        assert!(a.lt(b) && a.le(b) && b.gt(a) && b.ge(a));
        assert!(!b.lt(a));
        assert!(a.le(a) && a.ge(a) && !a.lt(a));
        assert_eq!(b - a, 20);
        assert_eq!(a - b, -20);
        assert_eq!(b.wrapping_distance_from(a), 20);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
    }

    #[test]
    fn window_test_across_the_wrap() {
        let start = SeqNum(u32::MAX - 2);
        assert!(start.in_window(start, 10));
        assert!((start + 9).in_window(start, 10));
        assert!(!(start + 10).in_window(start, 10));
        assert!(!(start - 1).in_window(start, 10));
        assert!(!start.in_window(start, 0));
    }
}
