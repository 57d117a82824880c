//! What a connection sends, and when: SYNs, data (Nagle, sender-side silly
//! window avoidance, congestion and flow control), FIN, ACKs and window
//! updates (receiver-side silly window avoidance, RFC 1122 §4.2.3.3-4).

#![forbid(unsafe_code)]

use super::FourTuple;
use super::tcb::{BUILD_AHEAD, State, Tcb, Timer};
use crate::ip::context::Context;
use crate::ip::{DEFAULT_TTL, protocol};
use crate::time::Instant;
use crate::wire::ipv4;
use crate::wire::seq::SeqNum;
use crate::wire::tcp::{self as tcp_wire, SackBlocks, TcpOptions, TcpSegment, flags};
use crate::wire::vnet::VnetHeader;

/// The most payload a super-packet carries (issue 16): a 64 KiB IPv4
/// packet less the largest IPv4 and TCP headers we send (20 + 60).
const MAX_SUPER_PAYLOAD: usize = crate::ip::MAX_DATAGRAM - ipv4::HEADER_LEN - 60;

/// One segment to send: what goes in it.
struct Plan {
    seq: SeqNum,
    flags: u8,
    /// Bytes from the send buffer at this offset past its start.
    data_offset: usize,
    data_len: usize,
    options: TcpOptions,
    /// It carries sequence space sent before.
    retransmission: bool,
}

impl Tcb {
    /// Chooses the window to advertise; moves the right edge only forward and
    /// only by useful amounts (receiver SWS avoidance), rounding up so scaling
    /// never makes it shrink.
    fn advertise(&mut self) -> u16 {
        if matches!(self.state, State::SynSent | State::SynReceived) && !self.syn_acked {
            // Windows in SYN segments are never scaled (RFC 7323 §2.2). A
            // retransmitted SYN-ACK never takes back what the first one
            // offered (RFC 9293 §3.8.6.2.2), even if memory pressure set in
            // between; `accept_syn` set the edge to RCV.NXT.
            let w = self.free_window().min(65535) as u32;
            self.rcv_adv = if self.state == State::SynReceived {
                self.rcv_adv.max(self.rcv_nxt + w)
            } else {
                self.rcv_nxt + w
            };
            return self.rcv_wnd().min(65535) as u16;
        }
        let candidate = self.rcv_nxt + self.free_window() as u32;
        let threshold = (self.recv.limit() / 2).min(self.rcv_mss) as u32;
        if candidate.gt(self.rcv_adv) && candidate.wrapping_distance_from(self.rcv_adv) >= threshold {
            self.rcv_adv = candidate;
        }
        let open = self.rcv_wnd();
        let unit = 1u32 << self.rcv_wscale;
        let field = open.div_ceil(unit).min(65535);
        self.rcv_adv = self.rcv_adv.max(self.rcv_nxt + field * unit);
        field as u16
    }

    /// Options for our SYN or SYN-ACK.
    /// On a SYN-ACK, window scaling, SACK and timestamps only if the
    /// peer's SYN offered them (RFC 7323 §2.2, §3.2; RFC 2018 §2).
    fn syn_options(&self, now: Instant, answering: Option<bool>) -> TcpOptions {
        let offering = answering.is_none();
        TcpOptions {
            mss: Some(self.rcv_mss.min(65535) as u16),
            window_scale: match answering {
                None | Some(true) => Some(self.rcv_wscale),
                Some(false) => None,
            },
            sack_permitted: if offering { self.want_sack } else { self.sack_ok },
            timestamps: (if offering { self.want_ts } else { self.ts_ok })
                .then(|| (self.ts_now(now), if offering { 0 } else { self.ts_recent })),
            sack: SackBlocks::default(),
        }
    }

    /// The options of a segment after the handshake: timestamps once
    /// negotiated (RFC 7323 §3.2), SACK blocks on ACKs while data is missing
    /// (three at most beside timestamps, four without: 40 option bytes).
    fn segment_options(&self, now: Instant) -> TcpOptions {
        let mut o = TcpOptions::default();
        if self.ts_ok {
            o.timestamps = Some((self.ts_now(now), self.ts_recent));
        }
        if self.sack_ok {
            o.sack = self.sack_blocks(if self.ts_ok { 3 } else { SackBlocks::MAX });
        }
        o
    }

    /// The most payload a segment may carry now: the MSS less the options
    /// every segment carries (Linux's `tcp_current_mss`), so it fits the MTU.
    pub(crate) fn send_mss(&self) -> usize {
        let options = self.segment_options(Instant::ZERO).len();
        self.snd_mss.saturating_sub(options).max(1)
    }

    /// The most payload one segment may carry: an MSS, or with offloads on
    /// (issue 16) as many whole MSS as fit a 64 KiB super-packet, which the
    /// device cuts into MSS-sized segments.
    fn segment_limit(&self, offloads: bool) -> usize {
        let mss = self.send_mss();
        if offloads {
            (MAX_SUPER_PAYLOAD / mss).max(1) * mss
        } else {
            mss
        }
    }

    /// Decides the next segment to send, if any, and advances SND.NXT past
    /// it. With `offloads`, a data segment may be a super-packet of several
    /// MSS (see `segment_limit`); congestion and flow control count bytes,
    /// so they see the same MSS-sized segments the device makes of it.
    fn next_segment(&mut self, now: Instant, rto_if_idle: crate::time::Duration, offloads: bool) -> Option<Plan> {
        let syn_flags = match self.state {
            State::SynSent => Some(flags::SYN),
            State::SynReceived => Some(flags::SYN | flags::ACK),
            _ => None,
        };
        if let Some(f) = syn_flags {
            if self.snd_nxt != self.iss {
                return None;
            }
            let answering = (self.state == State::SynReceived).then_some(self.snd_wscale_offered());
            let options = self.syn_options(now, answering);
            if self.retransmits == 0 && self.backoff == 0 {
                // Time the handshake: the first RTT sample (never a retransmitted SYN, per Karn).
                self.rtt_probe = Some((self.iss + 1, now));
            }
            self.snd_nxt = self.iss + 1;
            self.snd_max = self.snd_max.max(self.snd_nxt);
            if self.timer(Timer::Retransmit).is_none() {
                self.set_timer(Timer::Retransmit, Some(now + rto_if_idle));
            }
            return Some(Plan {
                seq: self.iss,
                flags: f,
                data_offset: 0,
                data_len: 0,
                options,
                retransmission: false,
            });
        }
        if matches!(self.state, State::Closed | State::Listen) {
            return None;
        }
        let may_send_data = matches!(
            self.state,
            State::Established | State::CloseWait | State::FinWait1 | State::LastAck | State::Closing
        );
        let data_end = self.data_end();
        // Going back over what was sent, without SACK (after a timeout or a
        // smaller path MTU). With SACK, what is lost is resent by
        // `retransmit_lost` instead, and SND.NXT stays at SND.MAX.
        let resending = self.snd_nxt.lt(self.snd_max);
        let unsent = if self.snd_nxt.lt(data_end) {
            data_end.wrapping_distance_from(self.snd_nxt) as usize
        } else {
            0
        };
        if may_send_data && unsent > 0 {
            let flight = self.flight();
            // RFC 3042 limited transmit: the first two duplicate ACKs each let
            // one new segment out beyond the congestion window. (With SACK,
            // `pipe` leaves out what was SACKed, which does the same.) A loss
            // probe may exceed the window by one segment (RFC 8985 §7.3).
            let limited = if self.recover.is_none() && !self.sack_ok {
                self.dupacks.min(2) as usize * self.snd_mss
            } else if self.probing {
                self.snd_mss
            } else {
                0
            };
            // The peer's window bounds sequence numbers (SND.UNA + SND.WND);
            // the congestion window bounds what is in the network, which a
            // SACK recovery counts as `pipe` (RFC 6675).
            let by_peer = (self.snd_wnd as usize).saturating_sub(flight);
            let by_congestion = (self.cc.cwnd() + limited).saturating_sub(self.in_flight());
            let usable = by_peer.min(by_congestion);
            let mss = self.send_mss();
            // A loss probe is one segment (RFC 8985 §7.3).
            let limit = if self.probing {
                mss
            } else {
                self.segment_limit(offloads)
            };
            let mut len = unsent.min(limit).min(usable);
            if len > mss && len % mss != 0 {
                // A super-packet ends on an MSS boundary, unless its tail
                // is the end of the data and Nagle would let that small
                // segment go alone (as Linux's `tcp_mss_split_point`).
                let tail_may_go = len == unsent && (self.nodelay || flight == 0 || self.fin_queued());
                if !tail_may_go {
                    len -= len % mss;
                }
            }
            // Nagle and sender SWS hold back new small segments, never a
            // resend or a loss probe.
            let send_it = len > 0
                && (len >= mss
                    || resending
                    || self.probing
                    || (len == unsent && (self.nodelay || flight == 0 || self.fin_queued()))
                    || len >= (self.max_snd_wnd as usize / 2).max(1)
                    || flight == 0);
            if send_it {
                let seq = self.snd_nxt;
                let offset = seq.wrapping_distance_from(self.data_start()) as usize;
                let mut f = flags::ACK;
                if len == unsent {
                    f |= flags::PSH;
                    if self.fin_queued() {
                        f |= flags::FIN;
                    }
                }
                let retransmission = seq.lt(self.snd_max);
                self.note_sent(now, seq, len as u32 + u32::from(f & flags::FIN != 0), len, rto_if_idle);
                return Some(Plan {
                    seq,
                    flags: f,
                    data_offset: offset,
                    data_len: len,
                    options: TcpOptions::default(),
                    retransmission,
                });
            }
        }
        if self.fin_queued() && self.snd_nxt == data_end && may_send_data {
            let seq = self.snd_nxt;
            let retransmission = seq.lt(self.snd_max);
            self.note_sent(now, seq, 1, 0, rto_if_idle);
            return Some(Plan {
                seq,
                flags: flags::FIN | flags::ACK,
                data_offset: 0,
                data_len: 0,
                options: TcpOptions::default(),
                retransmission,
            });
        }
        if may_send_data
            && unsent > 0
            && self.snd_wnd == 0
            && self.flight() == 0
            && self.timer(Timer::Retransmit).is_none()
            && self.timer(Timer::Persist).is_none()
        {
            self.set_timer(Timer::Persist, Some(now + self.rtt.backed_off(self.backoff)));
        }
        if self.ack_now {
            return Some(self.ack_plan());
        }
        None
    }

    /// A pure ACK. Its sequence number is the highest ever sent (RFC 9293's
    /// SND.NXT, our `snd_max`): after a retransmission timeout rewinds
    /// `snd_nxt`, a lower number would fall below the peer's RCV.NXT and the
    /// peer would discard the ACK unread (BSD uses snd_max here too).
    fn ack_plan(&self) -> Plan {
        Plan {
            seq: self.snd_max,
            flags: flags::ACK,
            data_offset: 0,
            data_len: 0,
            options: TcpOptions::default(),
            retransmission: false,
        }
    }

    /// Whether the peer's SYN offered window scaling (recorded as a nonzero
    /// shift, or scaling explicitly agreed with shift 0).
    fn snd_wscale_offered(&self) -> bool {
        self.wscale_ok
    }

    /// Bookkeeping for a segment covering `seq .. seq + span` (data and FIN).
    fn note_sent(&mut self, now: Instant, seq: SeqNum, span: u32, data_len: usize, rto: crate::time::Duration) {
        let end = seq + span;
        if seq.lt(self.snd_max) {
            self.retransmits += 1;
        } else {
            self.bytes_out += data_len as u64;
            if self.rtt_probe.is_none() {
                self.rtt_probe = Some((end, now));
            }
        }
        self.snd_nxt = end;
        self.snd_max = self.snd_max.max(end);
        if self.timer(Timer::Retransmit).is_none() {
            self.set_timer(Timer::Retransmit, Some(now + rto));
            self.set_timer(Timer::Persist, None);
        }
    }
}

impl Tcb {
    /// Sends whatever the connection has to send now: what is marked lost
    /// first, then new data, FIN and ACKs.
    pub(super) fn output(&mut self, cx: &mut Context<'_>) {
        let sent_before = self.snd_max;
        self.retransmit_lost(cx);
        loop {
            if cx.tx_backlog() >= BUILD_AHEAD && self.state.synchronized() && !self.probing {
                // Enough queued: the rest is built as the queue drains
                // (`TcpLayer::pull_output`), straight from the send buffer.
                // Only data waits: an ACK owed now (a duplicate ACK must be
                // immediate, RFC 5681 §4.2) goes at once, and the next data
                // segment will carry the next one. (Handshakes and loss
                // probes are never held.)
                self.tx_pending = true;
                if self.ack_now {
                    let plan = self.ack_plan();
                    self.transmit(cx, &plan);
                }
                break;
            }
            let rto = self.rtt.backed_off(self.backoff);
            let Some(plan) = self.next_segment(cx.now(), rto, cx.offloads()) else {
                break;
            };
            self.transmit(cx, &plan);
        }
        if self.snd_max != sent_before {
            self.schedule_loss_probe(cx.now());
        }
    }

    /// Builds and queues one planned segment.
    fn transmit(&mut self, cx: &mut Context<'_>, plan: &Plan) {
        let mut buf = cx.buffer();
        let window = if plan.flags & flags::RST != 0 {
            0
        } else {
            self.advertise()
        };
        let options = if plan.flags & (flags::SYN | flags::RST) != 0 {
            plan.options
        } else {
            self.segment_options(cx.now())
        };
        let seg = TcpSegment {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq: plan.seq,
            ack: self.rcv_nxt,
            flags: plan.flags,
            window,
            options,
            payload: &[],
        };
        if self.sack_recovery() {
            self.prr.out += plan.data_len;
        }
        let span = plan.data_len as u32 + u32::from(plan.flags & flags::FIN != 0);
        if span > 0 && plan.flags & (flags::SYN | flags::RST) == 0 {
            let (start, end) = (plan.seq, plan.seq + span);
            if self.sack_ok {
                // One entry per segment on the wire: with offloads, per
                // `gso_size` piece of a super-packet, so a SACK block can
                // mark each one (RFC 6675 §3; Linux splits TSO skbs on SACK).
                let piece = if cx.offloads() {
                    self.snd_mss.saturating_sub(options.len()).max(1) as u32
                } else {
                    span
                };
                let mut at = start;
                while at.lt(end) {
                    let next = if end.wrapping_distance_from(at) > piece {
                        at + piece
                    } else {
                        end
                    };
                    self.scoreboard.sent(at, next, cx.now());
                    at = next;
                }
            }
            if plan.retransmission {
                cx.stats().tcp_retransmitted_segments += 1;
                let tsval = self.ts_ok.then(|| self.ts_now(cx.now()));
                if let Some(undo) = &mut self.undo {
                    undo.retransmitted(start, end, tsval);
                }
            }
        }
        if plan.flags & flags::ACK != 0 {
            if plan.data_len > 0 && self.bytes_unacked > 0 {
                // Data that carries an ACK we owed: a request answered.
                self.pingpong = true;
            }
            self.ack_now = false;
            self.ack_deferred = false;
            self.ack_pushed = false;
            self.bytes_unacked = 0;
            self.set_timer(Timer::DelayedAck, None);
            self.last_ack_sent = self.rcv_nxt;
            self.dsack = None;
        }
        let send = &self.send;
        let (src, dst) = (*self.local.ip(), *self.remote.ip());
        let fill = |out: &mut Vec<u8>| send.append_to(plan.data_offset, plan.data_len, out);
        if !cx.offloads() {
            seg.emit_with(&mut buf, src, dst, plan.data_len, fill);
            cx.stats().tcp_tx_segments += 1;
            let _ = cx.send_datagram(dst, protocol::TCP, DEFAULT_TTL, self.dont_fragment, buf);
            return;
        }
        // Offloads (issue 16): the device completes the checksum and cuts a
        // super-packet into segments of the MSS these options leave.
        let header_len = seg.emit_partial_with(&mut buf, src, dst, plan.data_len, fill);
        let seg_mss = self.snd_mss.saturating_sub(header_len - tcp_wire::HEADER_LEN).max(1);
        let gso = (plan.data_len > seg_mss).then_some(seg_mss as u16);
        let meta = VnetHeader::tcpv4(ipv4::HEADER_LEN, header_len, gso);
        // Counted as the segments that leave the device, as Linux counts TSO.
        let segments = plan.data_len.div_ceil(seg_mss).max(1) as u64;
        cx.stats().tcp_tx_segments += segments;
        if plan.retransmission && segments > 1 {
            cx.stats().tcp_retransmitted_segments += segments - 1;
        }
        let _ = cx.send_datagram_meta(dst, protocol::TCP, DEFAULT_TTL, self.dont_fragment, buf, meta);
    }

    /// Whether this is a loss recovery the peer's SACK blocks steer (RFC 6675).
    pub(crate) fn sack_recovery(&self) -> bool {
        self.sack_ok && self.recover.is_some()
    }

    /// Bytes counted against the congestion window: with SACK, RFC 6675's
    /// `pipe` as Linux counts it (sent, less what is SACKed or deemed lost;
    /// a lost segment counts again once resent); without, SND.NXT − SND.UNA.
    pub(crate) fn in_flight(&self) -> usize {
        if self.sack_ok {
            self.scoreboard.pipe()
        } else {
            self.flight()
        }
    }

    /// Resends, lowest first, what RACK or a timeout marked lost, while the
    /// congestion window has room (RFC 6675 §5 NextSeg rule 1, with RACK's
    /// marks for IsLost; new data follows from `output`).
    fn retransmit_lost(&mut self, cx: &mut Context<'_>) {
        if !self.sack_ok || self.scoreboard.lost_bytes() == 0 {
            return;
        }
        let mss = self.send_mss();
        let limit = self.segment_limit(cx.offloads());
        // Bounded: each round sends a segment or stops (DESIGN rule 11).
        for _ in 0..64 {
            if cx.tx_backlog() >= BUILD_AHEAD {
                self.tx_pending = true;
                break;
            }
            // Room for this segment (a small one, such as a FIN, fits in less than an MSS).
            let Some(next) = self.scoreboard.first_lost() else {
                break;
            };
            if self.in_flight() + next.len().min(mss) > self.cc.cwnd() {
                break;
            }
            // With offloads, as many whole MSS of the lost range as the window has room for, in one super-packet.
            let room = self.cc.cwnd() - self.in_flight();
            if !self.resend_first_lost(cx, (room - room % mss).clamp(mss, limit)) {
                break;
            }
        }
    }

    /// Resends the lowest segment marked lost (at most `max` bytes of it:
    /// one MSS, or with offloads a super-packet), whatever the congestion
    /// window says; false if none is.
    pub(super) fn resend_first_lost(&mut self, cx: &mut Context<'_>, max: usize) -> bool {
        let Some(lost) = self.scoreboard.first_lost() else {
            return false;
        };
        self.resend(cx, lost.start, lost.end.min(lost.start + max as u32));
        cx.stats().tcp_sack_retransmits += 1;
        true
    }

    /// Resends the sequence space `start..end`: data, and the FIN if it lies there.
    pub(super) fn resend(&mut self, cx: &mut Context<'_>, start: SeqNum, end: SeqNum) {
        match self.snd_fin {
            Some(fin) if end.gt(fin) => {
                let len = fin.wrapping_distance_from(start) as usize;
                self.retransmit_range(cx, start, len, true);
            }
            _ => {
                let len = end.wrapping_distance_from(start) as usize;
                self.retransmit_range(cx, start, len, false);
            }
        }
    }

    /// Sends `len` bytes from `start` again (and FIN with them if `fin`).
    fn retransmit_range(&mut self, cx: &mut Context<'_>, start: SeqNum, len: usize, fin: bool) {
        self.retransmits += 1;
        self.rtt_probe = None; // Karn: never time a retransmitted segment.
        let end = start + len as u32 + u32::from(fin);
        if end.gt(self.high_rxt) {
            self.high_rxt = end;
        }
        // Going back after a timeout, this range needs no second resend.
        if self.snd_nxt.ge(start) && self.snd_nxt.lt(end) {
            self.snd_nxt = end;
        }
        if self.timer(Timer::Retransmit).is_none() {
            let rto = self.rtt.backed_off(self.backoff);
            self.set_timer(Timer::Retransmit, Some(cx.now() + rto));
        }
        let plan = Plan {
            seq: start,
            flags: flags::ACK | if fin { flags::FIN } else { 0 },
            data_offset: start.wrapping_distance_from(self.data_start()) as usize,
            data_len: len,
            options: TcpOptions::default(),
            retransmission: true,
        };
        self.transmit(cx, &plan);
    }

    /// Retransmits one segment at SND.UNA (fast retransmit, NewReno partial
    /// ACK, a closed window's probe), up to the first SACKed byte.
    pub(super) fn retransmit_first(&mut self, cx: &mut Context<'_>) {
        let start = self.snd_una;
        // Only what was sent before: never bytes beyond SND.MAX.
        let sent_end = if self.fin_sent() { self.data_end() } else { self.snd_max };
        let avail = if start.lt(sent_end) {
            sent_end.wrapping_distance_from(start) as usize
        } else {
            0
        };
        let hole = self
            .scoreboard
            .next_sacked(start)
            .map_or(avail, |sacked| sacked.wrapping_distance_from(start) as usize);
        let len = avail.min(hole).min(self.send_mss());
        let fin = len == avail && self.fin_sent();
        if len == 0 && !fin {
            return;
        }
        // The timer restarts for this retransmission (RFC 6298 §5.3).
        self.set_timer(Timer::Retransmit, None);
        self.retransmit_range(cx, start, len, fin);
    }

    /// Sends an ACK now (challenge ACKs, duplicate ACKs).
    pub(super) fn send_ack(&mut self, cx: &mut Context<'_>) {
        let plan = self.ack_plan();
        self.transmit(cx, &plan);
    }

    /// Sends a probe: an ACK one below SND.UNA, which the peer must answer
    /// with its current window (zero-window and keepalive probes, as Linux).
    pub(super) fn send_probe(&mut self, cx: &mut Context<'_>) {
        let plan = Plan {
            seq: self.snd_una - 1,
            flags: flags::ACK,
            data_offset: 0,
            data_len: 0,
            options: TcpOptions::default(),
            retransmission: false,
        };
        self.transmit(cx, &plan);
    }

    /// Resets the peer: RST at SND.NXT (with ACK once synchronized), or at
    /// the right edge of the peer's window if we sent past it, where the
    /// peer will take it (Linux's `tcp_acceptable_seq`: against a zero
    /// window, only SND.UNA is).
    pub(super) fn send_rst(&self, cx: &mut Context<'_>) {
        if matches!(self.state, State::Closed | State::SynSent | State::TimeWait) {
            return;
        }
        let tuple = FourTuple {
            local: self.local,
            remote: self.remote,
        };
        let window_end = self.snd_una + self.snd_wnd;
        let seq = if self.syn_acked && self.snd_max.gt(window_end) {
            window_end
        } else {
            self.snd_max
        };
        send_raw(cx, tuple, seq, Some(self.rcv_nxt), flags::RST);
    }
}

/// Sends a segment that belongs to no connection (RSTs), window 0.
pub(super) fn send_raw(cx: &mut Context<'_>, tuple: FourTuple, seq: SeqNum, ack: Option<SeqNum>, f: u8) {
    send_bare(cx, tuple, seq, ack, f, 0, TcpOptions::default());
}

/// Sends a segment without payload outside any connection block (RSTs, TIME-WAIT's ACKs).
pub(super) fn send_bare(
    cx: &mut Context<'_>,
    tuple: FourTuple,
    seq: SeqNum,
    ack: Option<SeqNum>,
    f: u8,
    window: u16,
    options: TcpOptions,
) {
    let mut buf = cx.buffer();
    let seg = TcpSegment {
        src_port: tuple.local.port(),
        dst_port: tuple.remote.port(),
        seq,
        ack: ack.unwrap_or(SeqNum(0)),
        flags: f | if ack.is_some() { flags::ACK } else { 0 },
        window,
        options,
        payload: &[],
    };
    seg.emit(&mut buf, *tuple.local.ip(), *tuple.remote.ip());
    if f & flags::RST != 0 {
        cx.stats().tcp_tx_resets += 1;
    }
    cx.stats().tcp_tx_segments += 1;
    let _ = cx.send_datagram(*tuple.remote.ip(), protocol::TCP, DEFAULT_TTL, true, buf);
}
