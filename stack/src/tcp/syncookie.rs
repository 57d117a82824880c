//! SYN cookies (RFC 4987 §3.6), as Linux's `tcp_syncookies` makes them.
//!
//! When a listener's SYN queue is full, a SYN is answered with a SYN-ACK
//! whose sequence number is a cookie and nothing is kept: the ACK that
//! comes back (ack − 1 is the cookie) proves the peer got our SYN-ACK, and
//! the connection is built from what the cookie and the ACK carry. A flood
//! of spoofed SYNs then costs a SYN-ACK each, and no memory.
//!
//! The cookie, as Linux's: 32 bits made of
//!
//! ```text
//! H0(4-tuple) + peer's ISN + (period << 24) + ((H1(4-tuple, period) + MSS index) mod 2^24)
//! ```
//!
//! where H0 and H1 are SipHash under the stack's secret (the one behind
//! ISNs), and `period` counts 64-second slots. Checking an ACK subtracts
//! H0 and the peer's ISN (its SEQ − 1), reads the period from the top
//! byte, accepts it only if it is the current slot or the one before (a
//! cookie lives 64 to 128 s, Linux's `MAX_SYNCOOKIE_AGE`), and then the
//! low 24 bits less H1 must be a valid MSS index: a blind guess passes
//! about once in 2^29 tries per 4-tuple (2 periods of 256, 4 indices of
//! 2^24). The MSS is one of four (Linux's `msstab`): the largest not
//! above the peer's.
//!
//! The other options this stack negotiates ride in the low 6 bits of our
//! SYN-ACK's TSval, which the peer echoes in every TSecr (Linux's
//! `cookie_init_timestamp`): bits 0-3 the peer's window scale (15: none),
//! bit 4 SACK-permitted, bit 5 ECN (never set: this stack does no ECN). A
//! SYN without timestamps gets a SYN-ACK with the MSS option alone, and its
//! connection goes without window scaling and SACK, as on Linux.

#![forbid(unsafe_code)]

use super::input::take_mss_and_scale;
use super::tcb::{State, Tcb, window_scale_for};
use super::{FourTuple, TcpConfig, TcpLayer};
use crate::ip::context::Context;
use crate::ip::{DEFAULT_TTL, protocol};
use crate::rand::KeyedHasher;
use crate::socket::Handle;
use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;
use crate::wire::tcp::{TcpOptions, TcpSegment, flags};

/// When a listener answers SYNs with cookies (Linux's `tcp_syncookies`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SynCookies {
    /// Never: a SYN that finds the SYN queue full is dropped (Linux's 0).
    Off,
    /// When the listener's SYN queue is full (Linux's default, 1).
    #[default]
    On,
    /// For every SYN: listeners keep no half-open connections (Linux's 2).
    Always,
}

/// The MSS values a cookie can carry, by index (Linux's `msstab`): RFC
/// 9293's default, then what tunnels, PPPoE and Ethernet leave.
pub(crate) const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// A cookie's clock ticks once per this many seconds (Linux: 60).
const PERIOD_SECS: u64 = 64;

/// Cookies of this many periods are good: the current one and the one before.
const MAX_AGE: u32 = 2;

/// How long a listener checks ACKs for cookies after it last sent one
/// (Linux's `TCP_SYNCOOKIE_VALID`): a cookie's longest life.
const VALID_FOR: Duration = Duration::from_secs(PERIOD_SECS * MAX_AGE as u64);

/// The period sits above this bit; the MAC and MSS index below it.
const PERIOD_SHIFT: u32 = 24;
const LOW_MASK: u32 = (1 << PERIOD_SHIFT) - 1;

/// Low bits of the SYN-ACK's TSval that carry options.
const TS_OPTION_BITS: u32 = 6;
const TS_OPTION_MASK: u32 = (1 << TS_OPTION_BITS) - 1;
/// The window-scale field; all ones means the peer offered none.
const TS_NO_WSCALE: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;

/// Makes and checks cookies with the stack's secret.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CookieJar {
    secret: KeyedHasher,
}

/// The options a cookie connection decodes from its ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CookieOptions {
    /// The peer's MSS, rounded down to the table.
    pub(crate) mss: u16,
    /// The peer's window scale, if it offered scaling.
    pub(crate) wscale: Option<u8>,
    /// The peer offered SACK.
    pub(crate) sack: bool,
}

/// A listener's record of cookies sent.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ListenerCookies {
    /// When it last answered a SYN with a cookie: ACKs are checked for
    /// cookies only until `VALID_FOR` after it (Linux's
    /// `tcp_synq_no_recent_overflow`), so blind ACKs to a listener that
    /// never overflowed cannot even try one.
    last_sent: Option<Instant>,
    /// The flood has been logged (once per listener, as Linux does).
    warned: bool,
}

impl CookieJar {
    /// A jar keyed with the stack's secret.
    pub(crate) fn new(secret: KeyedHasher) -> CookieJar {
        CookieJar { secret }
    }

    /// The cookie for a SYN from the peer of `tuple` with ISN `peer_isn`, carrying MSS index `index`.
    pub(crate) fn make(&self, now: Instant, tuple: FourTuple, peer_isn: SeqNum, index: usize) -> SeqNum {
        let period = period(now);
        let low = self.keyed(tuple, Some(period)).wrapping_add(index as u32) & LOW_MASK;
        SeqNum(
            self.keyed(tuple, None)
                .wrapping_add(peer_isn.0)
                .wrapping_add(period << PERIOD_SHIFT)
                .wrapping_add(low),
        )
    }

    /// The MSS index in `cookie`, if it is ours for this 4-tuple and peer ISN and recent enough.
    pub(crate) fn check(&self, now: Instant, tuple: FourTuple, peer_isn: SeqNum, cookie: SeqNum) -> Option<usize> {
        let rest = cookie.0.wrapping_sub(self.keyed(tuple, None)).wrapping_sub(peer_isn.0);
        let current = period(now);
        // Periods compare in the 8 bits the cookie has room for.
        let age = current.wrapping_sub(rest >> PERIOD_SHIFT) & (u32::MAX >> PERIOD_SHIFT);
        if age >= MAX_AGE {
            return None;
        }
        let index = rest.wrapping_sub(self.keyed(tuple, Some(current.wrapping_sub(age)))) & LOW_MASK;
        (index < MSS_TABLE.len() as u32).then_some(index as usize)
    }

    /// H0 (no period) or H1 (with one) of the 4-tuple, 32 bits.
    fn keyed(&self, tuple: FourTuple, period: Option<u32>) -> u32 {
        // Tagged, so that no other use of the secret hashes the same bytes.
        let mut key = [0u8; 19];
        key[..2].copy_from_slice(b"sc");
        key[2] = u8::from(period.is_some());
        key[3..7].copy_from_slice(&period.unwrap_or(0).to_be_bytes());
        key[7..11].copy_from_slice(&tuple.local.ip().octets());
        key[11..13].copy_from_slice(&tuple.local.port().to_be_bytes());
        key[13..17].copy_from_slice(&tuple.remote.ip().octets());
        key[17..19].copy_from_slice(&tuple.remote.port().to_be_bytes());
        self.secret.hash(&key) as u32
    }
}

/// The cookie clock: 64-second slots.
fn period(now: Instant) -> u32 {
    (now.total_millis() / 1000 / PERIOD_SECS) as u32
}

/// The index of the largest table MSS not above `mss` (the smallest if all are).
pub(crate) fn mss_index(mss: u16) -> usize {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0)
}

/// The TSval clock value (before the per-host offset) that carries the
/// options: `clock` with its low bits replaced, never ahead of `clock`, so
/// the peer sees our timestamps only move forward.
pub(crate) fn encode_ts(clock: u32, wscale: Option<u8>, sack: bool) -> u32 {
    let mut options = wscale.map_or(TS_NO_WSCALE, |s| u32::from(s.min(14)));
    if sack {
        options |= TS_SACK;
    }
    let ts = (clock & !TS_OPTION_MASK) | options;
    if ts > clock {
        ts.wrapping_sub(1 << TS_OPTION_BITS)
    } else {
        ts
    }
}

/// The options `encode_ts` put in an echoed clock value: window scale and SACK.
pub(crate) fn decode_ts(echoed: u32) -> (Option<u8>, bool) {
    let options = echoed & TS_OPTION_MASK;
    let wscale = options & TS_NO_WSCALE;
    (
        (wscale != TS_NO_WSCALE).then(|| wscale.min(14) as u8),
        options & TS_SACK != 0,
    )
}

/// The window of our SYN-ACK (unscaled, RFC 7323 §2.2): a new
/// connection's first receive buffer, as `Tcb` advertises it.
fn syn_ack_window(config: &TcpConfig) -> u32 {
    config.recv_buffer_initial.min(config.recv_buffer).min(65535) as u32
}

impl TcpLayer {
    /// Answers a SYN to listener `lh` with a cookie, or drops it, if its
    /// SYN queue is full or cookies are always used (Linux's
    /// `tcp_syn_flood_action`); false if the SYN may join the queue.
    pub(super) fn syn_flood_action(
        &mut self,
        cx: &mut Context<'_>,
        lh: Handle,
        seg: &TcpSegment<'_>,
        tuple: FourTuple,
    ) -> bool {
        let Some(l) = self.listeners.get_mut(lh) else {
            return false;
        };
        let full = l.half_open >= self.config.syn_backlog;
        let mode = self.config.syncookies;
        if full && !l.cookies.warned && mode != SynCookies::Always {
            // Once per listener, as Linux does.
            l.cookies.warned = true;
            let action = if mode == SynCookies::Off {
                "Dropping SYNs (SYN cookies are off)"
            } else {
                "Sending cookies"
            };
            log::warn!(
                "tcp {}: possible SYN flooding ({} half-open connections). {action}; see the syncookie counters",
                l.local,
                l.half_open
            );
        }
        match mode {
            SynCookies::Always => self.send_cookie(cx, lh, seg, tuple),
            SynCookies::On if full => self.send_cookie(cx, lh, seg, tuple),
            SynCookies::Off if full => {
                cx.stats().tcp_syn_queue_full += 1;
                log::debug!("tcp {}: SYN queue full, SYN from {} dropped", tuple.local, tuple.remote);
            }
            _ => return false,
        }
        true
    }

    /// Answers the SYN `seg` to listener `lh` with a cookie SYN-ACK, keeping nothing.
    fn send_cookie(&mut self, cx: &mut Context<'_>, lh: Handle, seg: &TcpSegment<'_>, tuple: FourTuple) {
        let now = cx.now();
        let peer_mss = seg.options.mss.unwrap_or(MSS_TABLE[0]);
        let iss = self.cookies.make(now, tuple, seg.seq, mss_index(peer_mss));
        let mut options = TcpOptions {
            mss: Some((cx.mtu() - 40).min(65535) as u16),
            ..TcpOptions::default()
        };
        // Without timestamps the cookie has no room for the other options.
        if let Some((tsval, _)) = seg.options.timestamps.filter(|_| self.config.timestamps) {
            let wscale = seg.options.window_scale;
            let sack = seg.options.sack_permitted && self.config.sack;
            options.window_scale = wscale.map(|_| window_scale_for(self.config.recv_buffer));
            options.sack_permitted = sack;
            let clock = encode_ts(now.total_millis() as u32, wscale, sack);
            let offset = self.isn.ts_offset(tuple.local, tuple.remote);
            options.timestamps = Some((clock.wrapping_add(offset), tsval));
        }
        let reply = TcpSegment {
            src_port: tuple.local.port(),
            dst_port: tuple.remote.port(),
            seq: iss,
            ack: seg.seq + 1,
            flags: flags::SYN | flags::ACK,
            window: syn_ack_window(&self.config) as u16,
            options,
            payload: &[],
        };
        let mut buf = cx.buffer();
        reply.emit(&mut buf, *tuple.local.ip(), *tuple.remote.ip());
        let stats = cx.stats();
        stats.tcp_syncookies_sent += 1;
        stats.tcp_tx_segments += 1;
        let _ = cx.send_datagram(*tuple.remote.ip(), protocol::TCP, DEFAULT_TTL, true, buf);
        if let Some(l) = self.listeners.get_mut(lh) {
            l.cookies.last_sent = Some(now);
        }
        log::trace!("tcp {} -> {}: SYN answered with a cookie", tuple.local, tuple.remote);
    }

    /// An ACK to listener `lh` that matches no connection: if ack − 1 is a
    /// cookie of ours, the handshake it completes makes a connection,
    /// ESTABLISHED at once, and the segment's data is taken. False if it is
    /// no cookie (the caller resets it, as for any ACK to a listener).
    pub(super) fn cookie_ack(
        &mut self,
        cx: &mut Context<'_>,
        lh: Handle,
        seg: &TcpSegment<'_>,
        tuple: FourTuple,
    ) -> bool {
        let now = cx.now();
        let checking = self.config.syncookies != SynCookies::Off
            && !seg.has(flags::SYN)
            && !seg.has(flags::RST)
            && self
                .listeners
                .get(lh)
                .and_then(|l| l.cookies.last_sent)
                .is_some_and(|at| now.saturating_duration_since(at) <= VALID_FOR);
        if !checking {
            return false;
        }
        let (peer_isn, iss) = (seg.seq - 1, seg.ack - 1);
        let Some(index) = self.cookies.check(now, tuple, peer_isn, iss) else {
            cx.stats().tcp_syncookies_failed += 1;
            log::trace!(
                "tcp {} -> {}: ACK with an invalid SYN cookie, reset",
                tuple.local,
                tuple.remote
            );
            return false;
        };
        cx.stats().tcp_syncookies_recv += 1;
        if self.accept_queue_full(lh) {
            // As Linux: dropped, no reset; the peer retransmits, or its data does.
            cx.stats().tcp_listen_overflows += 1;
            return true;
        }
        if self.at_connection_limit(cx, tuple) {
            return true;
        }
        let ts = seg.options.timestamps.filter(|_| self.config.timestamps);
        let ts_offset = self.isn.ts_offset(tuple.local, tuple.remote);
        let (wscale, sack) = ts.map_or((None, false), |(_, echo)| decode_ts(echo.wrapping_sub(ts_offset)));
        let options = CookieOptions {
            mss: MSS_TABLE[index],
            wscale,
            sack: sack && self.config.sack,
        };
        let mut t = Tcb::new(
            &self.config,
            tuple.local,
            tuple.remote,
            iss,
            now,
            cx.mtu(),
            &self.memory,
        );
        t.listener = Some(lh);
        t.owner = self.listeners.get(lh).and_then(|l| l.owner.clone());
        t.ts_offset = ts_offset;
        rebuild_syn_received(&mut t, &self.config, seg, options, ts.map(|(value, _)| value));
        log::debug!(
            "tcp {} -> {}: SYN cookie accepted ({options:?}, timestamps {})",
            tuple.local,
            tuple.remote,
            t.ts_ok
        );
        let h = self.conns.insert(t);
        self.by_tuple.insert(tuple, h);
        if let Some(l) = self.listeners.get_mut(lh) {
            // Half-open for the moment it takes the ACK to complete it.
            l.half_open += 1;
        }
        self.segment_arrives(cx, h, seg, 0);
        if self.conns.get(h).is_some_and(|t| t.state == State::SynReceived) {
            // Nothing in the ACK should stop it; if something did, nothing stays.
            self.release(cx, h, None);
        }
        true
    }
}

/// Puts `t` where a SYN-RECEIVED connection stands once its SYN-ACK (the
/// cookie, `t.iss`) is out, from the ACK `seg` that answers it and what the
/// cookie held: the ACK then completes the handshake as any other.
fn rebuild_syn_received(
    t: &mut Tcb,
    config: &TcpConfig,
    seg: &TcpSegment<'_>,
    options: CookieOptions,
    ts_recent: Option<u32>,
) {
    t.set_state(State::Listen);
    t.set_state(State::SynReceived);
    t.snd_nxt = t.iss + 1;
    t.snd_max = t.snd_nxt;
    t.irs = seg.seq - 1;
    t.rcv_nxt = seg.seq;
    t.rcv_adv = t.rcv_nxt + syn_ack_window(config);
    t.last_ack_sent = t.rcv_nxt;
    take_mss_and_scale(t, usize::from(options.mss), options.wscale);
    // TS.Recent from the ACK itself (as Linux): the SYN's TSval is gone.
    t.ts_ok = ts_recent.is_some();
    t.ts_recent = ts_recent.unwrap_or(0);
    t.sack_ok = options.sack;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn tuple(remote_port: u16) -> FourTuple {
        FourTuple {
            local: "10.200.0.2:7".parse::<SocketAddrV4>().unwrap(),
            remote: SocketAddrV4::new([10, 200, 0, 1].into(), remote_port),
        }
    }

    fn jar() -> CookieJar {
        CookieJar::new(KeyedHasher::new(3, 4))
    }

    #[test]
    fn a_cookie_gives_back_its_mss_index_for_its_tuple_and_isn_only() {
        let j = jar();
        let now = Instant::from_secs(1000);
        for index in 0..MSS_TABLE.len() {
            for isn in [0u32, 1, 0x7fff_ffff, u32::MAX] {
                let c = j.make(now, tuple(40000), SeqNum(isn), index);
                assert_eq!(j.check(now, tuple(40000), SeqNum(isn), c), Some(index));
                assert_eq!(j.check(now, tuple(40001), SeqNum(isn), c), None, "another port");
                // (The MSS index is added in, so a cookie a few off reads as
                // another index, as in Linux: a guess still has to come that close.)
                assert_eq!(
                    j.check(now, tuple(40000), SeqNum(isn.wrapping_add(4)), c),
                    None,
                    "another ISN"
                );
                assert_eq!(j.check(now, tuple(40000), SeqNum(isn), c + 4), None, "another cookie");
            }
        }
        let other = CookieJar::new(KeyedHasher::new(3, 5));
        let c = j.make(now, tuple(40000), SeqNum(9), 3);
        assert_eq!(other.check(now, tuple(40000), SeqNum(9), c), None, "another secret");
    }

    #[test]
    fn a_cookie_lives_for_its_period_and_the_next() {
        let j = jar();
        let sent = Instant::from_secs(64 * 10 + 63);
        let c = j.make(sent, tuple(5), SeqNum(77), 2);
        let at = |s: u64| j.check(Instant::from_secs(s), tuple(5), SeqNum(77), c);
        assert_eq!(at(64 * 10), Some(2), "same period");
        assert_eq!(at(64 * 11 + 63), Some(2), "the next");
        assert_eq!(at(64 * 12), None, "two periods on");
        assert_eq!(at(64 * 9 + 63), None, "from the future");
        // The period wraps in the 8 bits the cookie holds.
        let sent = Instant::from_secs(64 * 255);
        let c = j.make(sent, tuple(5), SeqNum(77), 1);
        assert_eq!(j.check(Instant::from_secs(64 * 256), tuple(5), SeqNum(77), c), Some(1));
    }

    #[test]
    fn guessed_cookies_almost_never_pass() {
        let j = jar();
        let now = Instant::from_secs(500);
        let hits = (0..200_000u32)
            .filter(|i| {
                j.check(now, tuple(1), SeqNum(5), SeqNum(i.wrapping_mul(2_654_435_761)))
                    .is_some()
            })
            .count();
        assert_eq!(hits, 0);
    }

    #[test]
    fn mss_rounds_down_to_the_table() {
        assert_eq!(mss_index(1460), 3);
        assert_eq!(mss_index(65495), 3);
        assert_eq!(mss_index(1459), 2);
        assert_eq!(mss_index(1440), 2);
        assert_eq!(mss_index(1300), 1);
        assert_eq!(mss_index(1299), 0);
        assert_eq!(mss_index(536), 0);
        assert_eq!(mss_index(100), 0, "as Linux: 536 is the floor");
    }

    #[test]
    fn timestamps_carry_the_options_and_never_run_ahead_of_the_clock() {
        for clock in [0u32, 5, 63, 64, 1000, 0xffff_ffc0, u32::MAX] {
            for wscale in [None, Some(0), Some(7), Some(14)] {
                for sack in [false, true] {
                    let ts = encode_ts(clock, wscale, sack);
                    assert_eq!(decode_ts(ts), (wscale, sack), "clock {clock}");
                    let behind = clock.wrapping_sub(ts);
                    assert!(behind < 64, "{ts} is {behind} behind {clock}");
                }
            }
        }
    }
}
