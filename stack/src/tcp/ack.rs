//! ACK processing (RFC 9293 §3.10.7.4 fifth step): what an acknowledgment
//! frees, the RTT it measures, the congestion window it moves, the window
//! update it carries, and the loss recovery it starts or steers (RFC 5681
//! duplicate ACKs, RFC 6582 NewReno, RFC 6675 SACK, RFC 3042).

#![forbid(unsafe_code)]

use super::congestion::Ack;
use super::tcb::{Prr, Tcb, Timer};
use crate::ip::context::Context;
use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;
use crate::wire::tcp::{TcpSegment, flags};

impl Tcb {
    /// ACK processing for a synchronized connection (RFC 9293 §3.10.7.4
    /// fifth, RFC 5681 and RFC 6582 for duplicate ACKs and recovery).
    pub(super) fn process_ack(&mut self, cx: &mut Context<'_>, seg: &TcpSegment<'_>) {
        let now = cx.now();
        let t = self;
        // RFC 7323 §2.2: the window of a SYN is never scaled.
        let new_wnd = if seg.has(flags::SYN) {
            u32::from(seg.window)
        } else {
            u32::from(seg.window) << t.snd_wscale
        };
        let mss = t.snd_mss;
        let mut retransmit_first = false;
        // RFC 6675: the scoreboard takes every ACK's SACK blocks first; with
        // SACK, a duplicate ACK is one that reports something new (a D-SACK
        // of a network duplicate is no sign of loss, RFC 6675 §2).
        let (una_before, sacked_before) = (t.snd_una, t.scoreboard.sacked_bytes());
        let sack_news = t.sack_ok
            && t.snd_max.gt(t.snd_una)
            && t.scoreboard.update(t.snd_una, t.snd_max, seg.options.sack.as_slice());
        let counts_as_dup = !t.sack_ok || sack_news || seg.options.sack.is_empty();
        if seg.ack.gt(t.snd_una) {
            let in_flight = t.flight();
            let acked = seg.ack.wrapping_distance_from(t.snd_una);
            t.prev_una = t.snd_una;
            let fin_covered = t.snd_fin.is_some_and(|f| seg.ack.gt(f) && t.snd_una.le(f));
            let data_acked = (acked - u32::from(fin_covered)) as usize;
            t.send.consume(data_acked);
            t.snd_una = seg.ack;
            if t.snd_nxt.lt(t.snd_una) {
                t.snd_nxt = t.snd_una;
            }
            let cc_rtt = ack_rtt(t, seg, now);
            match (t.rtt_probe, seg.options.timestamps.filter(|_| t.ts_ok)) {
                (Some((s, at)), _) if seg.ack.ge(s) => {
                    t.rtt.sample(now - at);
                    t.rtt_probe = None;
                }
                // No probe to time (Karn: it was retransmitted): the echoed
                // TSval says which transmission this ACK answers (RFC 7323 §4.1).
                (None, Some((_, echo))) if echo != 0 => {
                    let ms = t.ts_now(now).wrapping_sub(echo);
                    if ms < 1 << 31 {
                        t.rtt.sample(Duration::from_millis(u64::from(ms)));
                    }
                }
                _ => {}
            }
            t.backoff = 0;
            // The path works again: an earlier ICMP error no longer explains a timeout.
            t.soft_error = None;
            if t.rto_high_water.is_some_and(|hw| seg.ack.gt(hw)) {
                t.rto_high_water = None;
            }
            t.scoreboard.ack(t.snd_una);
            match t.recover {
                Some(rec) if seg.ack.ge(rec) => {
                    t.recover = None;
                    let flight = t.flight();
                    t.cc.on_recovery_exit(flight, mss);
                }
                Some(_) => {
                    // Partial ACK: the next hole is lost too (RFC 6582 §3.2
                    // step 4). With SACK the window is not inflated, so it is
                    // not deflated either (RFC 6675 counts `pipe` instead).
                    if !t.sack_ok {
                        t.cc.on_partial_ack(data_acked, mss);
                    }
                    if t.high_rxt.le(t.snd_una) {
                        retransmit_first = true;
                    }
                }
                None => t.cc.on_ack(&Ack {
                    now,
                    acked: data_acked,
                    mss,
                    in_flight,
                    rtt: cc_rtt,
                    srtt: t.rtt.srtt(),
                    snd_una: t.snd_una,
                    snd_max: t.snd_max,
                }),
            }
            t.dupacks = 0;
            if t.snd_una == t.snd_max {
                t.set_timer(Timer::Retransmit, None);
            } else {
                let rto = t.rtt.rto();
                t.set_timer(Timer::Retransmit, Some(now + rto));
            }
        } else if seg.ack == t.snd_una
            && seg.payload.is_empty()
            && !seg.has(flags::FIN)
            && new_wnd == t.snd_wnd
            && t.snd_max.gt(t.snd_una)
            && counts_as_dup
        {
            t.dupacks += 1;
            cx.stats().tcp_dup_acks += 1;
            if t.recover.is_some() {
                if !t.sack_ok {
                    t.cc.on_recovery_dupack(mss);
                }
            } else if t.dupacks == 3 && recovery_allowed(t, seg.ack) {
                enter_recovery(t, cx);
                retransmit_first = true;
            }
        }
        // Enough SACKed data above SND.UNA starts recovery before a third
        // duplicate (IsLost(SND.UNA), RFC 6675 §5 step (b)).
        if sack_news
            && t.recover.is_none()
            && t.scoreboard.lost_boundary(t.snd_una, mss).gt(t.snd_una)
            && recovery_allowed(t, seg.ack)
        {
            enter_recovery(t, cx);
            retransmit_first = true;
        }
        // Window update (RFC 9293 §3.10.7.4: SND.WL1/WL2 guard against old segments).
        if t.snd_wl1.lt(seg.seq) || (t.snd_wl1 == seg.seq && t.snd_wl2.le(seg.ack)) {
            t.snd_wnd = new_wnd;
            t.max_snd_wnd = t.max_snd_wnd.max(new_wnd);
            t.snd_wl1 = seg.seq;
            t.snd_wl2 = seg.ack;
            if new_wnd > 0 && t.timer(Timer::Persist).is_some() {
                t.set_timer(Timer::Persist, None);
                t.backoff = 0;
            }
        }
        if retransmit_first {
            t.retransmit_first(cx);
        }
        if t.sack_recovery() {
            // RFC 6937's DeliveredData: the change in SND.UNA plus the change
            // in SACKed bytes (blocks the ACK now covers move from one to the other).
            let acked = t.snd_una.wrapping_distance_from(una_before) as usize;
            let delivered = (acked + t.scoreboard.sacked_bytes()).saturating_sub(sacked_before);
            proportional_rate_reduction(t, delivered);
            t.sack_retransmit(cx);
        }
    }
}

/// Fast retransmit starts a recovery (RFC 5681 §3.2, RFC 6582, RFC 6675
/// §5): the window halves, and the recovery lasts until everything sent so
/// far is acknowledged.
fn enter_recovery(t: &mut Tcb, cx: &mut Context<'_>) {
    // FlightSize leaves out what limited transmit sent beyond cwnd (RFC 5681 §3.2 step 2).
    let flight = t.flight().min(t.cc.cwnd());
    t.cc.on_fast_retransmit(flight, t.snd_mss);
    if t.sack_ok {
        // RFC 6675 §5 (4.2): cwnd = ssthresh; `pipe` counts what left the
        // network, so NewReno's inflation by three segments would count it
        // twice. PRR then paces the window down to it (RFC 6937).
        let w = t.cc.window_mut();
        w.cwnd = w.ssthresh;
        t.prr = Prr {
            delivered: 0,
            out: 0,
            recover_fs: flight.max(1),
        };
    }
    t.recover = Some(t.snd_max);
    t.high_rxt = t.snd_una;
    cx.stats().tcp_fast_retransmits += 1;
    if t.sack_ok {
        cx.stats().tcp_sack_recoveries += 1;
    }
}

/// Proportional Rate Reduction (RFC 6937 §3): on each ACK of a SACK
/// recovery, the window is what is in the network plus what this ACK lets
/// out: in proportion to what was delivered while `pipe` is above ssthresh
/// (so the window comes down smoothly instead of stopping dead), then
/// slow-start-like back up to ssthresh (PRR-SSRB).
fn proportional_rate_reduction(t: &mut Tcb, delivered: usize) {
    let mss = t.snd_mss;
    t.prr.delivered += delivered;
    let pipe = t.in_flight();
    let ssthresh = t.cc.ssthresh();
    let sndcnt = if pipe > ssthresh {
        (t.prr.delivered * ssthresh)
            .div_ceil(t.prr.recover_fs)
            .saturating_sub(t.prr.out)
    } else {
        let limit = t.prr.delivered.saturating_sub(t.prr.out).max(delivered) + mss;
        (ssthresh - pipe).min(limit)
    };
    t.cc.window_mut().cwnd = pipe + sndcnt;
}

/// Whether duplicate ACKs for `ack` may start a recovery now: after a
/// timeout, RFC 6582's heuristic below, with or without SACK. (RFC 6675
/// §5.1 would wait for everything sent before the timeout; without a
/// Linux-like loss state that repairs holes meanwhile, that leaves each lost
/// retransmission to a backed-off timeout, which is far worse.)
fn recovery_allowed(t: &Tcb, ack: SeqNum) -> bool {
    fast_retransmit_allowed(t, ack)
}

/// RFC 6582 §3.2 step 1 and §4.2: after a timeout, duplicate ACKs that do
/// not cover everything sent before it usually come from our own go-back-N
/// resends, so they start fast retransmit only when the ACK heuristic says a
/// segment was lost: the window is above one segment and the last
/// cumulative ACK advanced by at most four segments.
fn fast_retransmit_allowed(t: &Tcb, ack: SeqNum) -> bool {
    match t.rto_high_water {
        Some(hw) if ack.le(hw) => {
            t.cc.cwnd() > t.snd_mss && t.snd_una.wrapping_distance_from(t.prev_una) as usize <= 4 * t.snd_mss
        }
        _ => true,
    }
}

/// The RTT an ACK of new data measures, for congestion control: it wants
/// one from every ACK that gives one (HyStart++ counts samples per round),
/// where the estimator takes one per flight. The timed segment's if this
/// ACK covers it, else the echoed TSval's (RFC 7323 §4.1).
fn ack_rtt(t: &Tcb, seg: &TcpSegment<'_>, now: Instant) -> Option<Duration> {
    if let Some((_, at)) = t.rtt_probe.filter(|&(s, _)| seg.ack.ge(s)) {
        return Some(now - at);
    }
    let (_, echo) = seg.options.timestamps.filter(|_| t.ts_ok)?;
    let ms = t.ts_now(now).wrapping_sub(echo);
    (echo != 0 && ms < 1 << 31).then(|| Duration::from_millis(u64::from(ms)))
}
