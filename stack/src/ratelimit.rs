//! A token bucket, for everything the stack rate-limits: ICMP errors
//! (RFC 1812 §4.3.2.8, Linux's `icmp_ratelimit`) and TCP challenge ACKs
//! (RFC 5961 §7).

#![forbid(unsafe_code)]

use crate::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Clone, Copy, Debug)]
pub struct RateLimiter {
    rate_per_sec: u32,
    burst: u32,
    /// Tokens, in millionths, so refills at microsecond granularity are exact.
    micro_tokens: u64,
    last: Instant,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(rate_per_sec: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate_per_sec,
            burst,
            micro_tokens: u64::from(burst) * 1_000_000,
            last: Instant::ZERO,
        }
    }

    /// Takes a token if one is available at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let refill = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(self.rate_per_sec));
        let cap = u64::from(self.burst) * 1_000_000;
        self.micro_tokens = self.micro_tokens.saturating_add(refill).min(cap);
        if self.micro_tokens >= 1_000_000 {
            self.micro_tokens -= 1_000_000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let mut r = RateLimiter::new(10, 3);
        let t = Instant::from_secs(5);
        assert!((0..3).all(|_| r.allow(t)));
        assert!(!r.allow(t));
        assert!(!r.allow(t + Duration::from_millis(99)));
        assert!(r.allow(t + Duration::from_millis(100)));
        assert!(!r.allow(t + Duration::from_millis(100)));
        // A long pause refills only up to the burst.
        let later = t + Duration::from_secs(60);
        assert!((0..3).all(|_| r.allow(later)));
        assert!(!r.allow(later));
    }
}
