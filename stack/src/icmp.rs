//! ICMP on the interface: echo replies, error generation and its rules, rate limiting.

use crate::iface::{Delivery, Interface};
use crate::ip::{self, is_martian_source};
use crate::time::Instant;
use crate::wire::icmp::{self as wire, IcmpError, IcmpMessage, kind};
use std::net::Ipv4Addr;

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

/// Facts about a received datagram that decide whether an ICMP error may answer it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErrorContext<'a> {
    /// The offending datagram: header, then payload.
    pub header: &'a [u8],
    pub payload: &'a [u8],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub delivery: Delivery,
    /// The datagram came from ourselves over the loopback path.
    pub looped: bool,
    /// Fragment offset of the packet (0 for a whole or reassembled datagram).
    pub frag_offset: usize,
    pub protocol: u8,
}

impl Interface {
    /// RFC 1122 §3.2.2: the cases in which an ICMP error must not be sent.
    fn error_forbidden(&self, ctx: &ErrorContext<'_>) -> bool {
        // Never about an ICMP error (queries such as echo are fine).
        let about_icmp_error =
            ctx.protocol == ip::protocol::ICMP && ctx.payload.first().is_none_or(|t| wire::is_error(*t));
        about_icmp_error
            || ctx.delivery != Delivery::Unicast
            || ctx.frag_offset != 0
            || is_martian_source(ctx.src)
            || ctx.src.is_unspecified()
            || Some(ctx.src) == self.config.address.broadcast()
            || (ctx.src == self.config.address.addr() && !ctx.looped)
    }

    /// Sends an ICMP error about a received datagram, if the rules and the rate limit allow.
    pub(crate) fn send_icmp_error(&mut self, now: Instant, kind: u8, code: u8, rest: [u8; 4], ctx: &ErrorContext<'_>) {
        if self.error_forbidden(ctx) {
            self.stats.icmp_error_suppressed += 1;
            return;
        }
        if !self.icmp_error_limiter.allow(now) {
            self.stats.icmp_rate_limited += 1;
            return;
        }
        let mut quote = self.tx.buffer();
        quote.extend_from_slice(ctx.header);
        quote.extend_from_slice(&ctx.payload[..ctx.payload.len().min(wire::MAX_QUOTE)]);
        let mut msg = self.tx.buffer();
        wire::write_error(&mut msg, kind, code, rest, &quote);
        self.tx.recycle(quote);
        if self
            .send_datagram(ctx.src, ip::protocol::ICMP, ip::DEFAULT_TTL, false, msg)
            .is_ok()
        {
            self.stats.icmp_tx_errors += 1;
        }
    }

    /// Handles an ICMP message addressed to us.
    pub(crate) fn icmp_input(&mut self, now: Instant, ctx: &ErrorContext<'_>) {
        self.stats.icmp_rx_messages += 1;
        let msg = match IcmpMessage::parse(ctx.payload) {
            Ok(m) => m,
            Err(IcmpError::Truncated) => {
                self.stats.icmp_truncated += 1;
                return;
            }
            Err(IcmpError::BadChecksum) => {
                self.stats.icmp_bad_checksum += 1;
                log::trace!("icmp from {}: bad checksum", ctx.src);
                return;
            }
        };
        match msg.kind {
            kind::ECHO_REQUEST => {
                self.stats.icmp_rx_echo_requests += 1;
                if ctx.delivery != Delivery::Unicast && !self.config.answer_broadcast_echo {
                    // RFC 1122 §3.2.2.6: a broadcast echo MAY be silently discarded.
                    self.stats.icmp_broadcast_echo_ignored += 1;
                    return;
                }
                let mut reply = self.tx.buffer();
                wire::write_echo_reply(&mut reply, msg.bytes);
                // The reply comes from our own address even when the request
                // went to a broadcast address (RFC 1122 §3.2.2.6).
                if self
                    .send_datagram(ctx.src, ip::protocol::ICMP, ip::DEFAULT_TTL, false, reply)
                    .is_ok()
                {
                    self.stats.icmp_tx_echo_replies += 1;
                }
            }
            kind::ECHO_REPLY => {
                if !self.ping_reply_input(now, ctx, &msg) {
                    self.stats.icmp_rx_echo_replies += 1;
                }
            }
            k if wire::is_error(k) => {
                self.stats.icmp_rx_errors += 1;
                log::debug!("icmp error type {} code {} from {}", msg.kind, msg.code, ctx.src);
                self.icmp_error_input(now, ctx.src, &msg);
            }
            _ => self.stats.icmp_rx_other += 1,
        }
    }

    /// Hands an ICMP error to the transport whose datagram it quotes.
    fn icmp_error_input(&mut self, now: Instant, from: Ipv4Addr, msg: &IcmpMessage<'_>) {
        // The quote: the original IP header, then at least 8 bytes of its payload.
        let q = msg.data;
        let Some(&first) = q.first() else { return };
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < 20 || q.len() < ihl + 8 {
            return;
        }
        let src = Ipv4Addr::new(q[12], q[13], q[14], q[15]);
        let dst = Ipv4Addr::new(q[16], q[17], q[18], q[19]);
        if src != self.config.address.addr() {
            return;
        }
        let ports = &q[ihl..ihl + 4];
        let (sport, dport) = (
            u16::from_be_bytes([ports[0], ports[1]]),
            u16::from_be_bytes([ports[2], ports[3]]),
        );
        match q[9] {
            ip::protocol::UDP => self.udp_icmp_error(
                now,
                from,
                sport,
                std::net::SocketAddrV4::new(dst, dport),
                msg.kind,
                msg.code,
            ),
            ip::protocol::ICMP => self.ping_error_input(now, from, msg, &q[ihl..]),
            _ => {}
        }
    }

    /// Sends "fragment reassembly time exceeded" (RFC 792, code 1) for a timed-out datagram.
    pub(crate) fn send_reassembly_timeout(&mut self, now: Instant, src: Ipv4Addr, quote: &[u8]) {
        let header_len = usize::from(quote[0] & 0x0f) * 4;
        let ctx = ErrorContext {
            header: &quote[..header_len],
            payload: &quote[header_len..],
            src,
            dst: Ipv4Addr::new(quote[16], quote[17], quote[18], quote[19]),
            delivery: Delivery::Unicast,
            looped: false,
            frag_offset: 0,
            protocol: quote[9],
        };
        self.send_icmp_error(now, kind::TIME_EXCEEDED, wire::time_exceeded::REASSEMBLY, [0; 4], &ctx);
    }
}

/// Linux's default ICMP error budget (`icmp_msgs_per_sec`, `icmp_msgs_burst`).
pub const DEFAULT_ERROR_RATE: (u32, u32) = (1000, 50);

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
