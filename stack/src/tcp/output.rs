//! What a connection sends, and when: SYNs, data (Nagle, sender-side silly
//! window avoidance, congestion and flow control), FIN, ACKs and window
//! updates (receiver-side silly window avoidance, RFC 1122 §4.2.3.3-4).

#![forbid(unsafe_code)]

use super::FourTuple;
use super::seq::SeqNum;
use super::tcb::{State, Tcb, Timer};
use crate::iface::Interface;
use crate::ip::protocol;
use crate::socket::Handle;
use crate::time::Instant;
use crate::wire::tcp::{self as wire, SegmentFields, TcpOptions, flags};
use std::net::SocketAddrV4;

/// One segment to send: what goes in it.
struct Plan {
    seq: SeqNum,
    flags: u8,
    /// Bytes from the send buffer at this offset past its start.
    data_offset: usize,
    data_len: usize,
    options: TcpOptions,
}

impl Tcb {
    /// Chooses the window to advertise; moves the right edge only forward and
    /// only by useful amounts (receiver SWS avoidance), rounding up so scaling
    /// never makes it shrink.
    fn advertise(&mut self) -> u16 {
        if self.state == State::SynSent || (self.state == State::SynReceived && self.snd_una == self.iss) {
            // Windows in SYN segments are never scaled (RFC 7323 §2.2).
            let w = self.free_window().min(65535);
            self.rcv_adv = self.rcv_nxt + w as u32;
            return w as u16;
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
    fn syn_options(&self, answering: Option<bool>) -> TcpOptions {
        TcpOptions {
            mss: Some(self.rcv_mss.min(65535) as u16),
            // On a SYN-ACK, window scaling only if the peer offered it.
            window_scale: match answering {
                None | Some(true) => Some(self.rcv_wscale),
                Some(false) => None,
            },
            sack_permitted: false,
            timestamps: None,
        }
    }

    /// Decides the next segment to send, if any, and advances SND.NXT past it.
    fn next_segment(&mut self, now: Instant, rto_if_idle: crate::time::Duration) -> Option<Plan> {
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
            let options = self.syn_options(answering);
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
        let unsent = if self.snd_nxt.lt(data_end) {
            data_end.wrapping_distance_from(self.snd_nxt) as usize
        } else {
            0
        };
        if may_send_data && unsent > 0 {
            let flight = self.flight();
            let window = (self.snd_wnd as usize).min(self.cc.cwnd());
            let usable = window.saturating_sub(flight);
            let len = unsent.min(self.snd_mss).min(usable);
            let send_it = len > 0
                && (len == self.snd_mss
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
                self.note_sent(now, seq, len as u32 + u32::from(f & flags::FIN != 0), len, rto_if_idle);
                return Some(Plan {
                    seq,
                    flags: f,
                    data_offset: offset,
                    data_len: len,
                    options: TcpOptions::default(),
                });
            }
        }
        if self.fin_queued() && self.snd_nxt == data_end && may_send_data {
            let seq = self.snd_nxt;
            self.note_sent(now, seq, 1, 0, rto_if_idle);
            return Some(Plan {
                seq,
                flags: flags::FIN | flags::ACK,
                data_offset: 0,
                data_len: 0,
                options: TcpOptions::default(),
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

impl Interface {
    /// Sends whatever connection `h` has to send now.
    pub(crate) fn tcp_output(&mut self, now: Instant, h: Handle) {
        loop {
            let Some(t) = self.tcp.conns.get_mut(h) else { return };
            let rto = t.rtt.backed_off(t.backoff);
            let Some(plan) = t.next_segment(now, rto) else { break };
            self.tcp_transmit(h, &plan);
        }
        self.tcp.reschedule(h);
    }

    /// Builds and queues one planned segment of connection `h`.
    fn tcp_transmit(&mut self, h: Handle, plan: &Plan) {
        let mut buf = self.tx.buffer();
        let t = self.tcp.conns.get_mut(h).expect("live");
        let window = if plan.flags & flags::RST != 0 { 0 } else { t.advertise() };
        let fields = SegmentFields {
            src_port: t.local.port(),
            dst_port: t.remote.port(),
            seq: plan.seq,
            ack: t.rcv_nxt,
            flags: plan.flags,
            window,
            options: plan.options,
        };
        if plan.flags & flags::ACK != 0 {
            t.ack_now = false;
            t.bytes_unacked = 0;
            t.set_timer(Timer::DelayedAck, None);
        }
        let send = &t.send;
        wire::write_with(&mut buf, *t.local.ip(), *t.remote.ip(), &fields, plan.data_len, |out| {
            send.peek(plan.data_offset, out)
        });
        let dst = *t.remote.ip();
        self.stats.tcp_tx_segments += 1;
        let _ = self.send_datagram(dst, protocol::TCP, crate::ip::DEFAULT_TTL, true, buf);
    }

    /// Retransmits one segment at SND.UNA (fast retransmit, NewReno partial ACK).
    pub(crate) fn tcp_retransmit_first(&mut self, now: Instant, h: Handle) {
        let Some(t) = self.tcp.conns.get_mut(h) else { return };
        let start = t.snd_una;
        // Only what was sent before: never bytes beyond SND.MAX.
        let sent_end = if t.fin_sent() { t.data_end() } else { t.snd_max };
        let avail = if start.lt(sent_end) {
            sent_end.wrapping_distance_from(start) as usize
        } else {
            0
        };
        let len = avail.min(t.snd_mss);
        let mut f = flags::ACK;
        if len == avail && t.fin_sent() {
            f |= flags::FIN;
        }
        if len == 0 && f & flags::FIN == 0 {
            return;
        }
        t.retransmits += 1;
        t.rtt_probe = None;
        let rto = t.rtt.backed_off(t.backoff);
        t.set_timer(Timer::Retransmit, Some(now + rto));
        let plan = Plan {
            seq: start,
            flags: f,
            data_offset: start.wrapping_distance_from(t.data_start()) as usize,
            data_len: len,
            options: TcpOptions::default(),
        };
        self.tcp_transmit(h, &plan);
        self.tcp.reschedule(h);
    }

    /// Sends an ACK now, for connection `h` (challenge ACKs, duplicate ACKs).
    pub(crate) fn tcp_send_ack(&mut self, h: Handle) {
        let Some(t) = self.tcp.conns.get(h) else { return };
        let plan = t.ack_plan();
        self.tcp_transmit(h, &plan);
    }

    /// Sends a probe: an ACK one below SND.UNA, which the peer must answer
    /// with its current window (zero-window and keepalive probes, as Linux).
    pub(crate) fn tcp_send_probe(&mut self, h: Handle) {
        let Some(t) = self.tcp.conns.get(h) else { return };
        let plan = Plan {
            seq: t.snd_una - 1,
            flags: flags::ACK,
            data_offset: 0,
            data_len: 0,
            options: TcpOptions::default(),
        };
        self.tcp_transmit(h, &plan);
    }

    /// Resets connection `h`'s peer: RST at SND.NXT (with ACK once synchronized).
    pub(crate) fn tcp_send_rst_for(&mut self, h: Handle) {
        let Some(t) = self.tcp.conns.get(h) else { return };
        if matches!(t.state, State::Closed | State::SynSent | State::TimeWait) {
            return;
        }
        let (local, remote, seq, ack) = (t.local, t.remote, t.snd_max, t.rcv_nxt);
        self.tcp_send_raw(FourTuple { local, remote }, seq, Some(ack), flags::RST);
    }

    /// Sends a segment that belongs to no connection (RSTs), window 0.
    pub(crate) fn tcp_send_raw(&mut self, tuple: FourTuple, seq: SeqNum, ack: Option<SeqNum>, f: u8) {
        let mut buf = self.tx.buffer();
        let fields = SegmentFields {
            src_port: tuple.local.port(),
            dst_port: tuple.remote.port(),
            seq,
            ack: ack.unwrap_or(SeqNum(0)),
            flags: f | if ack.is_some() { flags::ACK } else { 0 },
            window: 0,
            options: TcpOptions::default(),
        };
        wire::write_with(&mut buf, *tuple.local.ip(), *tuple.remote.ip(), &fields, 0, |_| {});
        if f & flags::RST != 0 {
            self.stats.tcp_tx_resets += 1;
        }
        self.stats.tcp_tx_segments += 1;
        let _ = self.send_datagram(*tuple.remote.ip(), protocol::TCP, crate::ip::DEFAULT_TTL, true, buf);
    }
}

/// The 4-tuple of a connection from `local` to `remote`.
pub(crate) fn tuple(local: SocketAddrV4, remote: SocketAddrV4) -> FourTuple {
    FourTuple { local, remote }
}
