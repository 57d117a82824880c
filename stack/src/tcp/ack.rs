//! ACK processing (RFC 9293 §3.10.7.4 fifth step): what an acknowledgment
//! frees, the RTT it measures, the congestion window it moves, the window
//! update it carries, and the loss recovery it starts or steers: RACK-TLP
//! with SACK (RFC 8985, with RFC 6675's `pipe` and RFC 6937's PRR),
//! duplicate ACKs and NewReno without (RFC 5681, 6582), and the undoing of
//! reductions that prove spurious (RFC 2883, 3522).

#![forbid(unsafe_code)]

use super::congestion::Ack;
use super::sack::Sent;
use super::tcb::{Prr, Tcb, Timer};
use super::undo::Undo;
use crate::ip::context::Context;
use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;
use crate::wire::tcp::{TcpSegment, flags};

impl Tcb {
    /// ACK processing for a synchronized connection (RFC 9293 §3.10.7.4
    /// fifth; RFC 5681 and RFC 6582 without SACK; RFC 8985 RACK-TLP with
    /// SACK; undoing spurious reductions, RFC 2883 and RFC 3522).
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
        // A zero TSecr echoes nothing (as Linux reads it).
        let echo = seg
            .options
            .timestamps
            .filter(|&(_, echo)| t.ts_ok && echo != 0)
            .map(|(_, echo)| echo);
        let dsack_seen = if t.sack_ok { dsack_block(seg) } else { None };
        // Only a D-SACK our own retransmissions can explain says anything
        // of reordering or of a spurious episode (Linux's tcp_dsack_seen);
        // a duplicate of a loss probe says nothing of RACK's window either.
        let dsack = dsack_seen.filter(|&(left, right)| t.dsack_plausible(left, right));
        let probe_dsack = dsack.is_some_and(|(_, right)| t.tlp.is_some_and(|p| p.is_retrans && p.end == right));
        let (una_before, sacked_before) = (t.snd_una, t.scoreboard.sacked_bytes());
        // The SACK blocks first (RFC 6675 §5, RFC 8985 §6.2): each segment
        // they newly cover is a delivery RACK learns from. A duplicate ACK
        // with SACK is one that reports something new (a D-SACK of a
        // network duplicate is no sign of loss, RFC 6675 §2).
        let mut sack_news = false;
        if t.sack_ok && t.snd_max.gt(t.snd_una) {
            for &(left, right) in seg.options.sack.as_slice() {
                if dsack_seen == Some((left, right)) || !left.lt(right) || right.gt(t.snd_max) {
                    continue;
                }
                let (offset, rack) = (t.ts_offset, &mut t.rack);
                let news = t
                    .scoreboard
                    .sack(left, right, |d| rack.delivered(d, now, echoes_older(d, echo, offset)));
                sack_news |= news > 0;
            }
        }
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
            // The segments this ACK delivers that were sent once: their send
            // times, in microseconds, time the path (as Linux's seq_rtt and
            // ca_rtt: the oldest for the estimator, the newest for
            // congestion control). Not when it delivers a retransmission
            // too (Karn, RFC 6298 §3, as Linux): those sent once waited at
            // the receiver for it to fill the hole. Else the timed segment;
            // else the echoed TSval says which transmission this ACK answers
            // (RFC 7323 §4.1), to the millisecond.
            let (offset, rack) = (t.ts_offset, &mut t.rack);
            let mut fresh: Option<(Instant, Instant)> = None;
            let mut resent_acked = false;
            t.scoreboard.acked(seg.ack, |d| {
                rack.delivered(d, now, echoes_older(d, echo, offset));
                resent_acked |= d.retransmitted;
                if !d.retransmitted {
                    fresh = Some(fresh.map_or((d.xmit, d.xmit), |(o, n)| (o.min(d.xmit), n.max(d.xmit))));
                }
            });
            let fresh = fresh.filter(|_| !resent_acked);
            let probe = t.rtt_probe.filter(|&(s, _)| seg.ack.ge(s)).map(|(_, at)| now - at);
            if probe.is_some() {
                t.rtt_probe = None;
            }
            let echoed = echo.and_then(|echo| {
                let ms = t.ts_now(now).wrapping_sub(echo);
                (ms < 1 << 31).then(|| Duration::from_millis(u64::from(ms)))
            });
            let sample = fresh.map(|(oldest, _)| now - oldest).or(probe).or(echoed);
            let cc_rtt = fresh.map(|(_, newest)| now - newest).or(probe).or(echoed);
            // Karn (RFC 6298 §5, as Linux): the backed-off timer stays until
            // an RTT is measured, from a segment sent once or from an echoed
            // TSval; an ACK of retransmitted data alone proves nothing.
            if let Some(rtt) = sample {
                t.rtt.sample(rtt);
                t.rack.note_rtt(rtt, now);
                t.rtt_since_probe = true;
                t.backoff = 0;
            }
            // The path works again: an earlier ICMP error no longer explains a timeout.
            t.soft_error = None;
            if t.rto_high_water.is_some_and(|hw| seg.ack.gt(hw)) {
                t.rto_high_water = None;
                t.rack.recovery_ended();
            }
            match t.recover {
                Some(rec) if seg.ack.ge(rec) => {
                    t.recover = None;
                    t.rack.recovery_ended();
                    // With SACK, PRR has brought the window to ssthresh and
                    // it stays there (RFC 6937 §3, Linux's
                    // tcp_end_cwnd_reduction); NewReno deflates to what is
                    // in flight (RFC 6582 §3.2 step 3). Deflating after PRR
                    // would take the window to a segment or two whenever
                    // the recovery drained the flight, as a single loss does.
                    let flight = if t.sack_ok { t.cc.ssthresh() } else { t.flight() };
                    t.cc.on_recovery_exit(flight, mss);
                }
                Some(_) => {
                    // Partial ACK: the next hole is lost too (RFC 6582 §3.2
                    // step 4). With SACK, RACK finds the holes, and the
                    // window is not inflated, so not deflated either.
                    if !t.sack_ok {
                        t.cc.on_partial_ack(data_acked, mss);
                        if t.high_rxt.le(t.snd_una) {
                            retransmit_first = true;
                        }
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
                // RFC 6298 (5.3): restarted with the current RTO, backoff included.
                let rto = t.rtt.backed_off(t.backoff);
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
            // Without SACK, duplicate ACKs are all there is (RFC 5681, 6582).
            if !t.sack_ok {
                if t.recover.is_some() {
                    t.cc.on_recovery_dupack(mss);
                } else if t.dupacks == 3 && fast_retransmit_allowed(t, seg.ack) {
                    t.enter_recovery(cx);
                    retransmit_first = true;
                }
            }
        }
        // A reduction that proves needless is taken back. A retransmission
        // reported received twice also shows the original was only late:
        // reordering, which RACK's window must allow for (RFC 8985 §3.3.2).
        // An episode half the sequence space behind is forgotten first.
        if t.undo.as_ref().is_some_and(|undo| undo.outlived(t.snd_una)) {
            t.undo = None;
        }
        if let Some(undo) = &mut t.undo {
            let verdict = dsack.and_then(|(left, right)| undo.dsack(left, right));
            if verdict.is_some() {
                t.rack.reordering_seen = true;
            }
            if verdict == Some(true) || (seg.ack.gt(una_before) && undo.eifel(seg.ack, echo)) {
                t.undo_reduction(cx, seg.ack.gt(una_before));
            }
        }
        t.loss_probe_answered(cx, seg, dsack, una_before);
        if t.sack_ok {
            t.detect_loss(cx, dsack.is_some() && !probe_dsack);
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
            // in SACKed bytes (blocks the ACK now covers move from one to the
            // other). What RACK marked lost goes out from `output`.
            let acked = t.snd_una.wrapping_distance_from(una_before) as usize;
            let delivered = (acked + t.scoreboard.sacked_bytes()).saturating_sub(sacked_before);
            proportional_rate_reduction(t, delivered);
        }
        // New data acknowledged re-arms the probe; SACKs cancel it (RFC 8985
        // §7.2: the reordering timer and recovery take over).
        if seg.ack.gt(una_before) || sack_news {
            t.schedule_loss_probe(now);
        }
    }

    /// Whether a D-SACK for `left..right` may report one of our
    /// retransmissions (RFC 8985 §3.3.2): not wider than any window the
    /// peer offered, and no more segments D-SACKed in all than were ever
    /// resent; beyond that the network duplicates (Linux's tcp_dsack_seen).
    fn dsack_plausible(&mut self, left: SeqNum, right: SeqNum) -> bool {
        let len = right.wrapping_distance_from(left);
        if !left.lt(right) || len > self.max_snd_wnd.max(self.snd_mss as u32) {
            return false;
        }
        self.dsack_dups += u64::from(len.div_ceil(self.snd_mss.max(1) as u32));
        self.dsack_dups <= self.retransmits
    }

    /// RACK's loss detection (RFC 8985 §6.2 steps 4-5), on an ACK or when
    /// the reordering timer fires: marks what is overdue lost, starts a
    /// recovery if none is under way, and sets the timer for what may yet
    /// be only reordered.
    pub(super) fn detect_loss(&mut self, cx: &mut Context<'_>, dsack: bool) {
        let in_recovery = self.recover.is_some() || self.rto_high_water.is_some();
        let reo_wnd = self.reo_wnd(dsack, in_recovery);
        // With nothing SACKed and no recovery under way, every segment sent
        // before the latest one delivered was delivered too: nothing to
        // look for (the common case costs no walk of the scoreboard).
        if self.scoreboard.is_empty() || (self.scoreboard.sacked_segs() == 0 && !in_recovery) {
            self.set_timer(Timer::Reorder, None);
            return;
        }
        let (marked, timer) = self.rack.detect_loss(&mut self.scoreboard, cx.now(), reo_wnd);
        self.set_timer(Timer::Reorder, timer);
        if marked > 0 {
            cx.stats().tcp_rack_marked += marked as u64;
            self.recovery.rack_marked += marked as u64;
            // After a timeout, RACK repairs what it finds within that
            // recovery, with no second reduction (RFC 6675 §5.1).
            if !in_recovery {
                self.enter_recovery(cx);
            }
        }
    }

    /// RACK's reordering window now (RFC 8985 §6.2 step 4), for an ACK
    /// with or without a D-SACK.
    pub(super) fn reo_wnd(&mut self, dsack: bool, in_recovery: bool) -> Duration {
        let sacked_segs = self.scoreboard.sacked_segs();
        let (una, nxt, srtt) = (self.snd_una, self.snd_max, self.rtt.srtt());
        self.rack.reo_wnd(dsack, in_recovery, sacked_segs, una, nxt, srtt)
    }

    /// Fast retransmit starts a recovery (RFC 5681 §3.2, RFC 6582, RFC
    /// 6675 §5, RFC 8985): the window falls, and the recovery lasts until
    /// everything sent so far is acknowledged.
    pub(super) fn enter_recovery(&mut self, cx: &mut Context<'_>) {
        let t = self;
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
        t.undo = Some(Undo::new(t.snd_una));
        t.tlp = None;
        t.set_timer(Timer::LossProbe, None);
        t.recovery.fast_recoveries += 1;
        cx.stats().tcp_fast_retransmits += 1;
        if t.sack_ok {
            cx.stats().tcp_sack_recoveries += 1;
        }
    }

    /// The latest reduction was needless (a D-SACK for every retransmission,
    /// or Eifel): the window comes back (RFC 9438 §4.9), the recovery ends,
    /// and nothing more is resent. After a timeout, sending resumes with new
    /// data (RFC 4015 §3). The timer's backoff, which decides when the
    /// connection gives up, resets only if the ACK also moved SND.UNA: a
    /// peer that D-SACKs every retransmission yet acknowledges nothing
    /// must still run out of retries.
    fn undo_reduction(&mut self, cx: &mut Context<'_>, progress: bool) {
        self.undo = None;
        self.cc.on_spurious_congestion();
        if self.recover.take().is_some() {
            self.rack.recovery_ended();
        }
        if self.rto_high_water.take().is_some() {
            self.rack.recovery_ended();
            if progress {
                self.backoff = 0;
            }
            self.snd_nxt = self.snd_max;
        }
        self.scoreboard.clear_lost();
        self.dupacks = 0;
        self.recovery.undone += 1;
        cx.stats().tcp_spurious_undone += 1;
        log::debug!(
            "tcp {} -> {}: spurious retransmission, window restored",
            self.local,
            self.remote
        );
    }

    /// What the ACK says of the loss probe in flight (RFC 8985 §7.4): it
    /// arrived with the original (a D-SACK, or a duplicate ACK without
    /// SACK), or it repaired a loss, which calls for the congestion
    /// response of a fast recovery.
    fn loss_probe_answered(
        &mut self,
        cx: &mut Context<'_>,
        seg: &TcpSegment<'_>,
        dsack: Option<(SeqNum, SeqNum)>,
        una_before: SeqNum,
    ) {
        let Some(probe) = self.tlp else { return };
        if !seg.ack.ge(probe.end) {
            return;
        }
        if !probe.is_retrans || dsack.is_some_and(|(_, right)| right == probe.end) {
            self.tlp = None;
        } else if seg.ack.gt(probe.end) {
            self.tlp = None;
            if self.recover.is_none() && self.rto_high_water.is_none() {
                let flight = self.flight().min(self.cc.cwnd()).max(self.snd_mss);
                self.cc.on_fast_retransmit(flight, self.snd_mss);
                let w = self.cc.window_mut();
                w.cwnd = w.ssthresh;
                cx.stats().tcp_loss_probe_recoveries += 1;
            }
        } else if seg.ack == una_before && seg.options.sack.is_empty() && seg.payload.is_empty() {
            self.tlp = None;
        }
    }

    /// Arms the loss probe timeout (RFC 8985 §7.2) after new data went out
    /// or new data was acknowledged, outside recovery and with nothing
    /// SACKed: two SRTTs, plus room for a delayed ACK when a single segment
    /// is out, and never later than the retransmission timeout.
    pub(super) fn schedule_loss_probe(&mut self, now: Instant) {
        let eligible = self.sack_ok
            && self.state.synchronized()
            && self.recover.is_none()
            && self.rto_high_water.is_none()
            && self.tlp.is_none()
            && self.scoreboard.sacked_segs() == 0
            && !self.scoreboard.is_empty();
        if !eligible {
            self.set_timer(Timer::LossProbe, None);
            return;
        }
        let pto = match self.rtt.srtt() {
            Some(srtt) if self.flight() <= self.snd_mss => srtt * 2 + self.rtt.min_rto(),
            Some(srtt) => srtt * 2 + PTO_SLACK,
            None => Duration::from_secs(1),
        };
        let mut at = now + pto;
        if let Some(rto) = self.timer(Timer::Retransmit) {
            at = at.min(rto);
        }
        self.set_timer(Timer::LossProbe, Some(at));
    }
}

/// Added to two SRTTs for the loss probe timeout when more than one segment
/// is out, so a probe does not race ACKs jittered by the host (Linux adds
/// two ticks, `TCP_TIMEOUT_MIN`).
const PTO_SLACK: Duration = Duration::from_millis(2);

/// The ACK's D-SACK block, if its first block is one (RFC 2883 §4): below
/// the cumulative ACK, or inside the second block. A block above the ACK
/// must start past it: one that claims the byte at the ACK point arrived
/// (twice) while the ACK does not cover it contradicts itself.
fn dsack_block(seg: &TcpSegment<'_>) -> Option<(SeqNum, SeqNum)> {
    let blocks = seg.options.sack.as_slice();
    let &(left, right) = blocks.first()?;
    let inside_second = left.gt(seg.ack) && blocks.get(1).is_some_and(|&(l2, r2)| left.ge(l2) && right.le(r2));
    (right.le(seg.ack) || inside_second).then_some((left, right))
}

/// Whether an ACK echoing `echo` predates the last transmission of `s`
/// (RFC 8985 §6.2 step 2: it may answer the original, not the resend).
fn echoes_older(s: &Sent, echo: Option<u32>, ts_offset: u32) -> bool {
    echo.is_some_and(|echo| {
        let sent_ts = (s.xmit.total_millis() as u32).wrapping_add(ts_offset);
        (echo.wrapping_sub(sent_ts) as i32) < 0
    })
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
    // The fast retransmit goes on the ACK that starts the recovery (RFC
    // 6675 §5 (4.3)), even when a proportional share of one delivered
    // segment is less than a segment (as Linux: one while prr_out is zero).
    let sndcnt = if t.prr.out == 0 {
        sndcnt.max(t.send_mss())
    } else {
        sndcnt
    };
    t.cc.window_mut().cwnd = pipe + sndcnt;
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
