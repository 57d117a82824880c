//! Connection timers: retransmission (RFC 6298), RACK's reordering timer
//! and TLP's probe timeout (RFC 8985), persist, delayed ACK, keepalive,
//! FIN-WAIT-2 expiry, and the end of the orphans that outlive their limits.
//! (TIME-WAIT's 2×MSL is the compact table's, `timewait`.)

#![forbid(unsafe_code)]

use super::tcb::{ALL_TIMERS, ConnError, LossProbe, State, Tcb, Timer};
use super::undo::Undo;
use super::{TcpConfig, TcpLayer};
use crate::ip::context::Context;
use std::cmp::Reverse;

impl TcpLayer {
    /// Runs every connection timer that is due.
    pub(crate) fn handle_timeouts(&mut self, cx: &mut Context<'_>) {
        let now = cx.now();
        self.time_wait.expire(now);
        while let Some(&Reverse((due, h))) = self.heap.peek() {
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(t) = self.conns.get_mut(h) else { continue };
            if t.scheduled != Some(due) {
                continue; // stale entry
            }
            t.scheduled = None;
            for kind in ALL_TIMERS {
                let Some(t) = self.conns.get_mut(h) else { break };
                if t.timer(kind).is_some_and(|at| at <= now) {
                    t.set_timer(kind, None);
                    if let Some(error) = t.timer_fired(cx, &self.config, kind) {
                        self.release(cx, h, error);
                    }
                }
            }
            self.reschedule(h);
        }
    }
}

impl Tcb {
    /// Acts on timer `kind`; `Some(error)` when the connection must end.
    fn timer_fired(&mut self, cx: &mut Context<'_>, cfg: &TcpConfig, kind: Timer) -> Option<Option<ConnError>> {
        let now = cx.now();
        let t = self;
        match kind {
            Timer::Retransmit => {
                let limit = match t.state {
                    State::SynSent => cfg.syn_retries,
                    State::SynReceived => cfg.synack_retries,
                    // FIN-WAIT-1, CLOSING, LAST-ACK with nobody to wait for
                    // the outcome (Linux's tcp_orphan_retries).
                    _ if t.orphaned => cfg.orphan_retries.min(cfg.retries),
                    _ => cfg.retries,
                };
                // A zero window is not a dead peer: while it keeps answering,
                // timeouts turn into probes and do not count (as Linux,
                // RFC 9293 §3.8.6.1). Only silence longer than the maximum
                // RTO ends the connection.
                let window_closed = t.state.synchronized() && t.snd_wnd == 0;
                // An orphan gets no such patience (the FIN-WAIT-1 zero-window attack).
                let heard_lately = now.saturating_duration_since(t.last_heard) < cfg.max_rto && !t.orphaned;
                if t.backoff >= limit && !(window_closed && heard_lately) {
                    log::debug!(
                        "tcp {} -> {}: gave up after {} retransmissions",
                        t.local,
                        t.remote,
                        t.backoff
                    );
                    return Some(t.give_up(cx));
                }
                let first_timeout = t.backoff == 0;
                if t.state.synchronized() {
                    let (flight, mss) = (t.flight(), t.snd_mss);
                    if first_timeout {
                        t.cc.on_rto(flight, mss);
                        t.undo = Some(Undo::new(t.snd_una));
                        t.recovery.timeouts += 1;
                    } else {
                        t.cc.on_rto_again(mss);
                    }
                    t.rto_high_water = Some(t.snd_max);
                }
                t.backoff += 1;
                t.recover = None;
                t.high_rxt = t.snd_una;
                t.dupacks = 0;
                t.rtt_probe = None; // Karn: never time a retransmitted segment.
                t.tlp = None;
                t.set_timer(Timer::LossProbe, None);
                t.set_timer(Timer::Reorder, None);
                if t.sack_ok {
                    // SACK information stays (RFC 6675 §5.1), unless the
                    // receiver reneged: it SACKed the segment at SND.UNA
                    // and still did not acknowledge it (Linux's test).
                    if t.scoreboard.head_sacked() {
                        t.scoreboard.clear_sacks();
                    }
                    // The first segment, and whatever RACK finds overdue, is
                    // lost (RFC 8985 §6.3); `output` resends it.
                    let reo_wnd = t.reo_wnd(false, true);
                    t.rack.mark_lost_on_timeout(&mut t.scoreboard, now, reo_wnd);
                } else {
                    // Go back N from SND.UNA.
                    t.snd_nxt = t.snd_una;
                }
                let rto = t.rtt.backed_off(t.backoff);
                t.set_timer(Timer::Retransmit, Some(now + rto));
                cx.stats().tcp_rto_retransmits += 1;
                if window_closed {
                    // RFC 6298 §5.4: resend the earliest unacknowledged segment,
                    // even into a closed window; the answer carries the real window.
                    t.retransmit_first(cx);
                } else {
                    // RFC 6298 §5.4: the earliest segment goes now, as Linux's
                    // timer sends it. A segment sent within RACK.rtt is not
                    // overdue and stays in `pipe`, which would otherwise keep
                    // the one-segment window shut until the next, doubled, timeout.
                    if t.sack_ok {
                        let mss = t.send_mss();
                        t.resend_first_lost(cx, mss);
                    }
                    t.output(cx);
                }
            }
            Timer::Reorder => {
                // RACK's reordering window passed (RFC 8985 §6.2 step 5).
                t.detect_loss(cx, false);
                t.output(cx);
            }
            Timer::LossProbe => t.send_loss_probe(cx),
            Timer::Persist => {
                // Probes the peer never answers end the connection (as Linux's
                // tcp_retries2). An orphan's count goes on while the peer
                // answers without progress, up to `orphan_retries`, and so
                // does its backoff, which only progress resets: one probed
                // long before its application left ends as soon as that
                // reaches the limit (Linux's tcp_probe_timer: `icsk_backoff
                // >= max_probes`), not `orphan_retries` maximal RTOs later.
                let (limit, count) = if t.orphaned {
                    (cfg.orphan_retries.min(cfg.retries), t.probes_unanswered.max(t.backoff))
                } else {
                    (cfg.retries, t.probes_unanswered)
                };
                if count >= limit {
                    log::debug!("tcp {} -> {}: zero-window probes unanswered", t.local, t.remote);
                    return Some(t.give_up(cx));
                }
                t.probes_unanswered += 1;
                t.backoff = (t.backoff + 1).min(16);
                let rto = t.rtt.backed_off(t.backoff);
                let waiting = t.snd_wnd == 0 && !t.send.is_empty();
                if waiting {
                    t.set_timer(Timer::Persist, Some(now + rto));
                }
                cx.stats().tcp_window_probes += 1;
                t.send_probe(cx);
            }
            Timer::DelayedAck => {
                // No reply came to carry it: not interactive after all.
                t.pingpong = false;
                t.ack_now = true;
                t.output(cx);
            }
            Timer::Keepalive => {
                let idle = t.keepalive?;
                if !t.state.keepalive_applies() {
                    return None;
                }
                if t.keepalive_probes >= cfg.keepalive_probes {
                    cx.stats().tcp_timeouts += 1;
                    return Some(Some(t.soft_error.unwrap_or(ConnError::TimedOut)));
                }
                let silent = now.saturating_duration_since(t.last_heard);
                if silent < idle {
                    t.set_timer(Timer::Keepalive, Some(t.last_heard + idle));
                    return None;
                }
                t.keepalive_probes += 1;
                t.set_timer(Timer::Keepalive, Some(now + cfg.keepalive_interval));
                cx.stats().tcp_keepalive_probes += 1;
                t.send_probe(cx);
            }
            Timer::Linger => {
                // A closed socket sat in FIN-WAIT-2 too long: reset, as Linux
                // does when `tcp_fin_timeout` is over.
                log::debug!("tcp {} -> {}: FIN_WAIT2 timed out", t.local, t.remote);
                cx.stats().tcp_orphan_timeouts += 1;
                t.send_rst(cx);
                return Some(None);
            }
            Timer::Idle => {
                // Nothing moved since the reader began to wait: an idle
                // connection holds no buffer memory (the next message
                // allocates a page).
                let moved = t.bytes_in + t.bytes_out;
                if moved == t.idle_mark {
                    t.recv.release_if_empty();
                    t.send.release_if_empty();
                }
                if t.recv.allocated() + t.send.allocated() > 0 {
                    // Traffic since (an event loop drains, then replies, and
                    // reads again only when more comes): count again from now.
                    t.idle_mark = moved;
                    t.set_timer(Timer::Idle, Some(now + super::tcb::IDLE_RELEASE));
                }
            }
        }
        None
    }
}

impl Tcb {
    /// Ends the connection on a timeout: the error for the application,
    /// or, for an orphan, a RST to tell a peer that is still there.
    fn give_up(&self, cx: &mut Context<'_>) -> Option<ConnError> {
        cx.stats().tcp_timeouts += 1;
        if self.orphaned {
            cx.stats().tcp_orphan_timeouts += 1;
            self.send_rst(cx);
        }
        Some(self.soft_error.unwrap_or(ConnError::TimedOut))
    }

    /// The probe timeout fired (RFC 8985 §7.3): unless a probe is already
    /// out or no RTT was measured since the last, send one segment, new
    /// data if the peer's window allows, else the highest sent again; then
    /// the retransmission timer takes over.
    fn send_loss_probe(&mut self, cx: &mut Context<'_>) {
        let now = cx.now();
        if !self.state.synchronized() || self.scoreboard.is_empty() {
            return;
        }
        if self.tlp.is_none() && self.rtt_since_probe {
            let sent_before = self.snd_max;
            self.probing = true;
            self.output(cx);
            self.probing = false;
            let is_retrans = self.snd_max == sent_before;
            if is_retrans {
                let Some(last) = self.scoreboard.last() else { return };
                let mss = self.send_mss() as u32;
                let start = if last.len() > mss as usize {
                    last.end - mss
                } else {
                    last.start
                };
                self.resend(cx, start, last.end);
            }
            self.tlp = Some(LossProbe {
                end: self.snd_max,
                is_retrans,
            });
            self.rtt_since_probe = false;
            self.recovery.loss_probes += 1;
            cx.stats().tcp_loss_probes += 1;
        }
        self.set_timer(Timer::LossProbe, None);
        let rto = self.rtt.backed_off(self.backoff);
        self.set_timer(Timer::Retransmit, Some(now + rto));
    }
}
