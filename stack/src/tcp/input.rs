//! Segment arrival (RFC 9293 §3.10.7), hardened per RFC 5961: an RST must
//! hit RCV.NXT exactly, an in-window RST or any SYN on a synchronized
//! connection draws a (rate-limited) challenge ACK, and an ACK for data
//! never sent is answered and dropped.
//!
//! The layer finds the connection (`TcpLayer::input`); the connection
//! processes the segment (`Tcb::synchronized_input` and friends) and says
//! what the layer must do about it in an [`Outcome`]: put it in its
//! listener's accept queue, or release it.

#![forbid(unsafe_code)]

use super::congestion::{self, Window};
use super::output::send_raw;
use super::tcb::{ConnError, State, Tcb, Timer};
use super::timewait::TwVerdict;
use super::{FourTuple, TcpConfig, TcpLayer};
use crate::ip::Delivery;
use crate::ip::context::{Context, Datagram};
use crate::ratelimit::RateLimiter;
use crate::socket::Handle;
use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;
use crate::wire::tcp::{TcpError, TcpSegment, flags};
use std::net::SocketAddrV4;

/// Linux's `tcp_invalid_ratelimit`: one out-of-window or challenge ACK per 500 ms per connection.
pub(super) const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);

/// How long TS.Recent stays valid for PAWS without a refresh (RFC 7323 §5.5: 24 days).
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);

/// PAWS forgives a TSval this many ticks behind TS.Recent (Linux's
/// `TCP_PAWS_WINDOW`: timestamps of segments sent close together may be
/// taken from clocks read out of order).
pub(super) const PAWS_WINDOW: i32 = 1;

/// What a segment did to its connection that the layer must act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// The handshake of a connection from a listener completed: it joins the accept queue.
    established: bool,
    /// The connection ends, with this error for the application.
    release: Option<Option<ConnError>>,
}

impl Outcome {
    fn release(error: Option<ConnError>) -> Outcome {
        Outcome {
            established: false,
            release: Some(error),
        }
    }
}

/// What a connection's input needs from its layer.
struct Env<'a> {
    config: &'a TcpConfig,
    /// The stack-wide challenge ACK budget (RFC 5961 §7).
    challenge_limiter: &'a mut RateLimiter,
    /// The connection's listener has no room in its accept queue.
    accept_queue_full: bool,
    /// The segment is a host's super-packet of segments this large (issue 16), or 0.
    gso_size: u16,
}

impl TcpLayer {
    /// Handles a TCP segment addressed to us.
    pub(crate) fn input(&mut self, cx: &mut Context<'_>, d: &Datagram<'_>) {
        if d.delivery != Delivery::Unicast {
            cx.stats().tcp_not_unicast += 1;
            return;
        }
        let (src, dst) = (d.header.src, d.header.dst);
        let parsed = if d.checksum_trusted {
            TcpSegment::parse_trusted(d.payload)
        } else {
            TcpSegment::parse(d.payload, src, dst)
        };
        let seg = match parsed {
            Ok(s) => s,
            Err(e) => {
                let stats = cx.stats();
                let c = match e {
                    TcpError::Truncated | TcpError::BadOffset => &mut stats.tcp_malformed,
                    TcpError::BadChecksum => &mut stats.tcp_bad_checksum,
                };
                *c += 1;
                log::trace!("tcp from {src}: dropped ({e})");
                return;
            }
        };
        // A super-packet counts as the segments it stands for, as Linux's InSegs.
        cx.stats().tcp_rx_segments += match d.gso_size {
            0 => 1,
            mss => seg.payload.len().div_ceil(usize::from(mss)).max(1) as u64,
        };
        let local = SocketAddrV4::new(dst, seg.dst_port);
        let remote = SocketAddrV4::new(src, seg.src_port);
        let tuple = FourTuple { local, remote };
        if let Some(&h) = self.by_tuple.get(&tuple) {
            self.segment_arrives(cx, h, &seg, d.gso_size);
            return;
        }
        // RFC 9293 §3.10.7.4 / RFC 6191: a new SYN beyond the old connection's
        // sequence space may reopen a TIME-WAIT 4-tuple, if someone listens.
        let listening = self.listener_for(local).is_some();
        let linger = self.config.msl * 2;
        let reopen_isn = match self.time_wait.input(cx, tuple, &seg, listening, linger) {
            TwVerdict::Done => return,
            TwVerdict::Reopen { isn } => Some(isn),
            TwVerdict::NotFound => None,
        };
        if let Some(lh) = self.listener_for(local) {
            self.listen_input(cx, lh, &seg, local, remote, reopen_isn);
            return;
        }
        cx.stats().tcp_no_socket += 1;
        reset_unknown(cx, &seg, FourTuple { local, remote });
    }

    /// RFC 9293 §3.10.7.2: a segment for a listening socket. `reopen_isn`
    /// is the ISS a SYN that reopens a TIME-WAIT 4-tuple must use; such a
    /// SYN gets no cookie, whose ISS could not honour it (as Linux).
    fn listen_input(
        &mut self,
        cx: &mut Context<'_>,
        lh: Handle,
        seg: &TcpSegment<'_>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        reopen_isn: Option<SeqNum>,
    ) {
        if seg.has(flags::RST) {
            return;
        }
        let tuple = FourTuple { local, remote };
        if seg.has(flags::ACK) {
            if !self.cookie_ack(cx, lh, seg, tuple) {
                send_raw(cx, tuple, seg.ack, None, flags::RST);
            }
            return;
        }
        // A SYN that also carries FIN is nonsense; Linux discards it too.
        if !seg.has(flags::SYN) || seg.has(flags::FIN) {
            return;
        }
        if self.accept_queue_full(lh) {
            cx.stats().tcp_listen_drops += 1;
            log::debug!("tcp {local}: accept queue full, SYN from {remote} dropped");
            return;
        }
        if self.at_connection_limit(cx, tuple) {
            return;
        }
        if reopen_isn.is_none() && self.syn_flood_action(cx, lh, seg, tuple) {
            return;
        }
        let now = cx.now();
        let iss = reopen_isn.unwrap_or_else(|| self.choose_isn(now, local, remote));
        let mut t = Tcb::new(&self.config, local, remote, iss, now, cx.mtu(), &self.memory);
        t.listener = Some(lh);
        t.owner = self.listeners.get(lh).and_then(|l| l.owner.clone());
        t.set_state(State::Listen);
        t.set_state(State::SynReceived);
        t.ts_offset = self.isn.ts_offset(local, remote);
        accept_syn(&mut t, seg);
        t.ts_recent_at = now;
        let h = self.conns.insert(t);
        self.by_tuple.insert(FourTuple { local, remote }, h);
        if let Some(l) = self.listeners.get_mut(lh) {
            l.half_open += 1;
        }
        self.output(cx, h);
    }

    /// Processes a segment for an existing connection.
    /// Runs a segment for connection `h`; `gso_size` is a super-packet's (or 0).
    pub(super) fn segment_arrives(&mut self, cx: &mut Context<'_>, h: Handle, seg: &TcpSegment<'_>, gso_size: u16) {
        let before = self.conns.get(h).map(Progress::of);
        let sending = self.conns.get(h).map(|t| (t.snd_una, t.snd_wnd));
        let listener = self.conns.get(h).and_then(|t| t.listener);
        let accept_queue_full = listener.is_some_and(|l| self.accept_queue_full(l));
        let TcpLayer {
            conns,
            config,
            challenge_limiter,
            ..
        } = self;
        let t = conns.get_mut(h).expect("table and slab agree");
        let outcome = if t.state == State::SynSent {
            t.syn_sent_input(cx, seg)
        } else {
            let mut env = Env {
                config,
                challenge_limiter,
                accept_queue_full,
                gso_size,
            };
            t.synchronized_input(cx, &mut env, seg)
        };
        if outcome.established {
            self.enqueue_accept(cx, h);
        }
        if let Some(error) = outcome.release {
            self.release(cx, h, error);
        }
        if let Some(t) = self.conns.get_mut(h) {
            let now = cx.now();
            t.last_heard = now;
            t.keepalive_probes = 0;
            // An orphan's probes count until they achieve something: a
            // peer that goes on answering with a zero window, or with
            // segments we cannot use, must not keep it forever (Linux
            // kills it by its backoff, tcp_probe_timer).
            let progress = sending.is_none_or(|(una, wnd)| t.snd_una != una || (wnd == 0 && t.snd_wnd > 0));
            if !t.orphaned || progress {
                t.probes_unanswered = 0;
            }
            t.release_unusable_buffers();
            if let Some(idle) = t.keepalive.filter(|_| t.state.keepalive_applies()) {
                t.set_timer(Timer::Keepalive, Some(now + idle));
            }
            self.output(cx, h);
            if let Some(t) = self.conns.get_mut(h) {
                t.expand_send_buffer();
                if t.ack_deferred && !t.ack_listed {
                    t.ack_listed = true;
                    self.deferred_acks.push(h);
                }
                if before.is_none_or(|b| b.woken_by(t)) {
                    self.notify(cx, h);
                }
            }
        }
        if self.conns.get(h).is_some_and(|t| t.state == State::TimeWait) {
            self.enter_time_wait(cx, h);
        }
    }
}

/// What an application may be waiting for on a connection, before a
/// segment, to tell whether the segment lets it progress: a pure ACK that
/// frees a little send space wakes nobody.
#[derive(Clone, Copy)]
struct Progress {
    state: State,
    /// Moves with data and FIN to read.
    rcv_nxt: SeqNum,
    failed: bool,
    writable: bool,
    acknowledged: bool,
}

impl Progress {
    fn of(t: &Tcb) -> Progress {
        Progress {
            state: t.state,
            rcv_nxt: t.rcv_nxt,
            failed: t.error.is_some(),
            writable: writable(t),
            acknowledged: t.send.is_empty(),
        }
    }

    /// Whether `t`, after the segment, has news for whoever waits on it:
    /// a new state or error, data or EOF to read, a third of the send
    /// buffer free again (Linux's `sk_stream_write_space`), or all of it
    /// acknowledged.
    fn woken_by(&self, t: &Tcb) -> bool {
        self.state != t.state
            || self.rcv_nxt != t.rcv_nxt
            || self.failed != t.error.is_some()
            || (!self.writable && writable(t))
            || (!self.acknowledged && t.send.is_empty())
    }
}

/// A writer may go on: at least a third of the send buffer is free.
pub(crate) fn writable(t: &Tcb) -> bool {
    3 * t.send.free() >= t.send.usable()
}

/// RFC 9293 §3.10.7.1: the reply to a segment for no connection.
fn reset_unknown(cx: &mut Context<'_>, seg: &TcpSegment<'_>, t: FourTuple) {
    if seg.has(flags::RST) {
        return;
    }
    if seg.has(flags::ACK) {
        send_raw(cx, t, seg.ack, None, flags::RST);
    } else {
        send_raw(cx, t, SeqNum(0), Some(seg.seq + seg.seg_len()), flags::RST);
    }
}

impl Tcb {
    fn tuple(&self) -> FourTuple {
        FourTuple {
            local: self.local,
            remote: self.remote,
        }
    }

    /// Sends a challenge ACK (RFC 5961 §3.2, §4.2), within both rate limits.
    fn challenge_ack(&mut self, cx: &mut Context<'_>, limiter: &mut RateLimiter) {
        if self.oow_limited(cx.now()) || !limiter.allow(cx.now()) {
            cx.stats().tcp_challenge_acks_limited += 1;
            return;
        }
        cx.stats().tcp_challenge_acks += 1;
        self.send_ack(cx);
    }

    /// Per-connection limit on ACKs for out-of-window segments; true if limited now.
    fn oow_limited(&mut self, now: Instant) -> bool {
        if self.last_oow_ack.is_some_and(|last| now < last + OOW_ACK_INTERVAL) {
            return true;
        }
        self.last_oow_ack = Some(now);
        false
    }

    /// RFC 9293 §3.10.7.3: SYN-SENT.
    /// Linux's `tcp_disordered_ack`: a pure duplicate ACK at RCV.NXT that
    /// changes no window and whose TSval is behind TS.Recent by less than
    /// an RTO was only reordered on the way (an ACK that left before the
    /// one that set TS.Recent); PAWS lets it through.
    fn disordered_ack(&self, seg: &TcpSegment<'_>, behind: i32) -> bool {
        let new_wnd = u32::from(seg.window) << self.snd_wscale;
        let may_update_window = seg.ack.gt(self.snd_una)
            || seg.seq.gt(self.snd_wl1)
            || (seg.seq == self.snd_wl1 && (new_wnd > self.snd_wnd || new_wnd == 0));
        seg.has(flags::ACK)
            && seg.seg_len() == 0
            && seg.seq == self.rcv_nxt
            && seg.ack == self.snd_una
            && !may_update_window
            && i64::from(behind) <= self.rtt.backed_off(self.backoff).as_millis() as i64
    }

    fn syn_sent_input(&mut self, cx: &mut Context<'_>, seg: &TcpSegment<'_>) -> Outcome {
        let ack_ok = seg.has(flags::ACK) && seg.ack.gt(self.iss) && seg.ack.le(self.snd_max);
        if seg.has(flags::ACK) && !ack_ok {
            if !seg.has(flags::RST) {
                send_raw(cx, self.tuple(), seg.ack, None, flags::RST);
            }
            return Outcome::default();
        }
        if seg.has(flags::RST) {
            if ack_ok {
                log::debug!("tcp {} -> {}: connection refused", self.local, self.remote);
                return Outcome::release(Some(ConnError::Refused));
            }
            return Outcome::default();
        }
        if !seg.has(flags::SYN) {
            return Outcome::default();
        }
        accept_syn(self, seg);
        if ack_ok {
            self.snd_una = seg.ack;
            if let Some((s, at)) = self.rtt_probe.take() {
                if seg.ack.ge(s) && self.backoff == 0 {
                    self.rtt.sample(cx.now() - at);
                }
            }
            self.backoff = 0;
            self.set_timer(Timer::Retransmit, None);
            self.snd_wnd = u32::from(seg.window);
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            restart_window_after_syn_loss(self);
            self.set_state(State::Established);
            self.ack_now = true;
        } else {
            // Simultaneous open (RFC 9293 §3.5, figure 8): answer with SYN-ACK.
            self.set_state(State::SynReceived);
            self.snd_nxt = self.iss;
            self.set_timer(Timer::Retransmit, None);
        }
        Outcome::default()
    }

    /// RFC 9293 §3.10.7.4: every state after SYN-SENT.
    fn synchronized_input(&mut self, cx: &mut Context<'_>, env: &mut Env<'_>, seg: &TcpSegment<'_>) -> Outcome {
        let now = cx.now();
        let mut outcome = Outcome::default();

        // A retransmitted SYN for a half-open connection: our SYN-ACK was lost.
        if self.state == State::SynReceived
            && seg.flags & (flags::SYN | flags::ACK) == flags::SYN
            && seg.seq == self.irs
        {
            if !self.oow_limited(now) {
                self.snd_nxt = self.iss;
            }
            return outcome;
        }
        // Simultaneous open (RFC 9293 figure 8): the peer's SYN-ACK acknowledges
        // our SYN in SYN-RECEIVED; its SYN is old news, its ACK completes the handshake.
        let simultaneous_syn_ack = self.state == State::SynReceived
            && seg.has(flags::SYN | flags::ACK)
            && !seg.has(flags::RST)
            && seg.seq == self.irs
            && seg.ack.gt(self.snd_una)
            && seg.ack.le(self.snd_max);
        // RFC 7323 §5.3 R1, PAWS: a segment whose TSval is older than
        // TS.Recent is an old duplicate from a previous wrap of the sequence
        // space; it is acknowledged and dropped (RSTs are judged by sequence
        // number alone, as Linux does). TS.Recent older than 24 days is void.
        let tsval = seg.options.timestamps.filter(|_| self.ts_ok).map(|(value, _)| value);
        if let Some(value) = tsval {
            let recent_valid = now.saturating_duration_since(self.ts_recent_at) < PAWS_IDLE;
            // As Linux: a tick of tolerance (TCP_PAWS_WINDOW), and a late
            // duplicate ACK (reordered on the way) is let through.
            let behind = self.ts_recent.wrapping_sub(value) as i32;
            // A TS.Recent of zero is none (as Linux's tcp_paws_check):
            // some stacks send TSval 0 in their SYN, then their real clock.
            let recent_valid = recent_valid && self.ts_recent != 0;
            if behind > PAWS_WINDOW && recent_valid && !seg.has(flags::RST) && !self.disordered_ack(seg, behind) {
                cx.stats().tcp_paws_dropped += 1;
                let end = seg.seq + seg.payload.len() as u32;
                if !seg.payload.is_empty() && seg.seq.lt(self.rcv_nxt) {
                    // Data we had: the duplicate ACK says so (D-SACK, RFC
                    // 2883 §4.1, as Linux's tcp_send_dupack), so a sender
                    // whose retransmission was needless can undo; and, our
                    // ACKs being perhaps lost, the next ones go one by one.
                    if self.sack_ok {
                        self.dsack = Some((seg.seq, end.min(self.rcv_nxt)));
                    }
                    self.enter_quick_ack_mode();
                }
                if !seg.payload.is_empty() || !self.oow_limited(now) {
                    self.send_ack(cx);
                }
                return outcome;
            }
        }

        // First: is the segment acceptable (the four cases of §3.10.7.4)?
        let rcv_wnd = self.rcv_wnd();
        let seg_len = seg.seg_len();
        let acceptable = match (seg_len == 0, rcv_wnd == 0) {
            (true, true) => seg.seq == self.rcv_nxt,
            (true, false) => seg.seq.in_window(self.rcv_nxt, rcv_wnd),
            (false, true) => false,
            (false, false) => {
                seg.seq.in_window(self.rcv_nxt, rcv_wnd) || (seg.seq + (seg_len - 1)).in_window(self.rcv_nxt, rcv_wnd)
            }
        };
        // With a zero window, ACK and RST information at RCV.NXT still counts (§3.10.7.4).
        let zero_window_probe = !acceptable && rcv_wnd == 0 && seg.seq == self.rcv_nxt;
        if !acceptable && !zero_window_probe && !simultaneous_syn_ack {
            if !seg.has(flags::RST) {
                cx.stats().tcp_out_of_window += 1;
                let end = seg.seq + seg.payload.len() as u32;
                if !seg.payload.is_empty() && end.le(self.rcv_nxt) {
                    // Data we had already: its duplicate ACK says so (D-SACK,
                    // RFC 2883 §4.1). The peer retransmits, so our ACKs may
                    // be lost: the next segments are ACKed one by one
                    // (quick-ACK mode, as Linux's tcp_data_queue).
                    if self.sack_ok {
                        self.dsack = Some((seg.seq, end));
                    }
                    self.enter_quick_ack_mode();
                }
                // Data segments always get their duplicate ACK; others are rate-limited (as Linux).
                if !seg.payload.is_empty() && !seg.has(flags::SYN) || !self.oow_limited(now) {
                    self.send_ack(cx);
                }
            }
            return outcome;
        }

        // Second: RST (RFC 5961 §3.2).
        if seg.has(flags::RST) {
            if seg.seq == self.rcv_nxt {
                let err = match self.state {
                    State::SynReceived if self.listener.is_some() => None,
                    State::SynReceived => Some(ConnError::Refused),
                    State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => Some(ConnError::Reset),
                    _ => None,
                };
                log::debug!("tcp {} -> {}: reset by peer", self.local, self.remote);
                cx.stats().tcp_rx_resets += 1;
                return Outcome::release(err);
            }
            self.challenge_ack(cx, env.challenge_limiter);
            return outcome;
        }

        // Fourth: SYN on a synchronized connection (RFC 5961 §4.2).
        if seg.has(flags::SYN) && !simultaneous_syn_ack {
            self.challenge_ack(cx, env.challenge_limiter);
            return outcome;
        }

        // Fifth: ACK.
        if !seg.has(flags::ACK) {
            return outcome;
        }
        if self.state == State::SynReceived {
            if !(seg.ack.gt(self.snd_una) && seg.ack.le(self.snd_max)) {
                send_raw(cx, self.tuple(), seg.ack, None, flags::RST);
                return outcome;
            }
            if self.listener.is_some() && env.accept_queue_full {
                // As Linux: keep the half-open connection; our SYN-ACK retransmits.
                cx.stats().tcp_listen_overflows += 1;
                return outcome;
            }
            self.snd_una = seg.ack;
            self.backoff = 0;
            self.set_timer(Timer::Retransmit, None);
            if let Some((s, at)) = self.rtt_probe.take() {
                if seg.ack.ge(s) {
                    self.rtt.sample(now - at);
                }
            }
            // RFC 7323 §2.2: the window of a SYN (a simultaneous open's SYN-ACK) is never scaled.
            let shift = if seg.has(flags::SYN) { 0 } else { self.snd_wscale };
            self.snd_wnd = u32::from(seg.window) << shift;
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            restart_window_after_syn_loss(self);
            // A close that came during the handshake takes effect now.
            self.set_state(if self.fin_queued() {
                State::FinWait1
            } else {
                State::Established
            });
            outcome.established = self.listener.is_some();
        }
        if seg.ack.gt(self.snd_max) {
            // RFC 5961 §5.2 / RFC 9293: an ACK for something not yet sent.
            cx.stats().tcp_ack_too_new += 1;
            if !self.oow_limited(now) {
                self.send_ack(cx);
            }
            return outcome;
        }
        if seg.ack.lt(self.snd_una - self.max_snd_wnd.max(1)) {
            cx.stats().tcp_ack_too_old += 1;
            if !self.oow_limited(now) {
                self.send_ack(cx);
            }
            return outcome;
        }
        // RFC 7323 §4.3 R3: the TSval to echo comes from the segment at the
        // left edge of the window (not from one beyond a hole); taken only now
        // that the segment passed the RST, SYN and ACK checks (as Linux), so a
        // blind in-window segment cannot move it. A TS.Recent idle past PAWS's
        // 24 days, or zero (none, as above), is replaced whatever its order (§5.5).
        if let Some(value) = tsval {
            let stale = now.saturating_duration_since(self.ts_recent_at) >= PAWS_IDLE || self.ts_recent == 0;
            if ((value.wrapping_sub(self.ts_recent) as i32) >= 0 || stale) && seg.seq.le(self.last_ack_sent) {
                self.ts_recent = value;
                self.ts_recent_at = now;
            }
        }
        self.process_ack(cx, seg);
        match self.state {
            State::FinWait1 if self.fin_acked() => {
                self.set_state(State::FinWait2);
                if self.orphaned {
                    // FIN-WAIT-2 of an orphan lasts `fin_timeout` at most.
                    self.set_timer(Timer::Linger, Some(now + env.config.fin_timeout));
                }
            }
            State::Closing if self.fin_acked() => enter_time_wait(self),
            State::LastAck if self.fin_acked() => {
                outcome.release = Some(None);
                return outcome;
            }
            _ => {}
        }

        // Seventh: segment text.
        if !seg.payload.is_empty() && !zero_window_probe {
            if matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
                if self.orphaned {
                    // Data for a socket the application closed: nobody will read it (Linux resets).
                    log::debug!("tcp {} -> {}: data after close, resetting", self.local, self.remote);
                    self.send_rst(cx);
                    outcome.release = Some(None);
                    return outcome;
                }
                receive_text(self, seg, env, now, cx.stats());
            }
        } else if zero_window_probe {
            self.ack_now = true;
        }

        // Eighth: FIN (possibly recorded earlier, out of order).
        if seg.has(flags::FIN)
            && matches!(
                self.state,
                State::SynReceived | State::Established | State::FinWait1 | State::FinWait2
            )
        {
            let at = seg.seq + seg.payload.len() as u32;
            if self.fin_seq.is_none() && at.ge(self.rcv_nxt) {
                self.fin_seq = Some(at);
            }
            if at.gt(self.rcv_nxt) {
                self.ack_now = true;
            }
        }
        if self.fin_seq == Some(self.rcv_nxt) && !self.rcv_closed {
            self.rcv_nxt += 1;
            self.rcv_closed = true;
            if matches!(self.state, State::SynReceived | State::Established) {
                // Into CLOSE-WAIT: the application is likely to close now
                // that it read the end, and our FIN can carry this ACK.
                // It waits for the end of the batch (Linux delays it too,
                // entering pingpong mode in tcp_fin).
                self.ack_deferred = true;
            } else {
                self.ack_now = true;
            }
            match self.state {
                State::SynReceived | State::Established => self.set_state(State::CloseWait),
                State::FinWait1 if self.fin_acked() => enter_time_wait(self),
                State::FinWait1 => self.set_state(State::Closing),
                State::FinWait2 => enter_time_wait(self),
                _ => {}
            }
        }
        outcome
    }
}

/// Takes the peer's SYN: IRS, RCV.NXT, MSS and window scaling.
fn accept_syn(t: &mut Tcb, seg: &TcpSegment<'_>) {
    t.irs = seg.seq;
    t.rcv_nxt = seg.seq + 1;
    t.rcv_adv = t.rcv_nxt;
    // RFC 9293 §3.7.1: 536 when the peer sends no MSS option.
    let peer_mss = usize::from(seg.options.mss.unwrap_or(536)).max(64);
    let in_handshake = t.state == State::SynReceived || t.state == State::SynSent;
    take_mss_and_scale(t, peer_mss, seg.options.window_scale.filter(|_| in_handshake));
    // Timestamps and SACK hold when both SYNs carry them (RFC 7323 §3.2,
    // RFC 2018 §2); our SYN-ACK answers only what the SYN offered.
    t.ts_ok = t.want_ts && seg.options.timestamps.is_some();
    if let Some((value, _)) = seg.options.timestamps.filter(|_| t.ts_ok) {
        t.ts_recent = value;
    }
    t.sack_ok = t.want_sack && seg.options.sack_permitted;
    t.snd_wnd = u32::from(seg.window);
    t.max_snd_wnd = t.snd_wnd;
    t.snd_wl1 = seg.seq;
}

/// Takes the peer's MSS (never above ours) and window scale, if it offered
/// scaling (RFC 7323 §2.2), with a congestion window for that MSS.
pub(super) fn take_mss_and_scale(t: &mut Tcb, peer_mss: usize, wscale: Option<u8>) {
    t.snd_mss = peer_mss.min(t.rcv_mss);
    t.cc = congestion::controller(t.cc.algorithm(), Window::initial(t.snd_mss));
    match wscale {
        Some(shift) => {
            t.snd_wscale = shift;
            t.wscale_ok = true;
        }
        None => {
            // No scaling both ways: our windows stay under 64 KiB.
            t.snd_wscale = 0;
            t.rcv_wscale = 0;
            t.wscale_ok = false;
        }
    }
}

/// RFC 5681 §3.1: if the SYN or SYN-ACK had to be retransmitted, the
/// initial window is one segment.
fn restart_window_after_syn_loss(t: &mut Tcb) {
    if t.retransmits > 0 {
        let mss = t.snd_mss;
        t.cc.on_rto_again(mss);
    }
}

/// Stores in-window data and decides how soon to acknowledge it.
fn receive_text(t: &mut Tcb, seg: &TcpSegment<'_>, env: &Env<'_>, now: Instant, stats: &mut crate::stats::Stats) {
    let delayed_ack = env.config.delayed_ack;
    // Nothing counts past the peer's FIN (a later, longer FIN is bogus).
    let payload = match t.fin_seq {
        Some(f) if seg.seq.ge(f) => &seg.payload[..0],
        Some(f) if (seg.seq + seg.payload.len() as u32).gt(f) => {
            &seg.payload[..f.wrapping_distance_from(seg.seq) as usize]
        }
        _ => seg.payload,
    };
    let (data, offset) = if seg.seq.lt(t.rcv_nxt) {
        let skip = t.rcv_nxt.wrapping_distance_from(seg.seq) as usize;
        (&payload[skip.min(payload.len())..], 0usize)
    } else {
        (payload, seg.seq.wrapping_distance_from(t.rcv_nxt) as usize)
    };
    if t.sack_ok {
        note_for_sack(t, seg.seq, payload.len(), offset, data.len());
    }
    if data.is_empty() {
        // All of it had arrived already: the peer retransmits, so it may
        // have lost our ACKs. ACK at once, and the next segments one by one
        // (Linux's tcp_data_queue enters quick-ACK mode here).
        t.ack_now = true;
        if !payload.is_empty() {
            t.enter_quick_ack_mode();
        }
        return;
    }
    let holes_before = !t.recv.out_of_order().is_empty();
    let promised = t.rcv_wnd() as usize;
    let stored = t.recv.write_within(offset, data, promised);
    if stored.dropped {
        // The memory budget is spent: dropped as if lost, and the ACK
        // tells the sender what is missing (Linux's TCPRcvQDrop).
        stats.tcp_rcvq_drops += 1;
        t.ack_now = true;
    }
    let advanced = stored.advanced;
    t.rcv_nxt += advanced as u32;
    if t.recv.out_of_order().is_empty() {
        // No island left to lead the SACK blocks: forgotten, so none can
        // match a later one at the same numbers, 2^32 bytes on.
        t.sack_recent = [None; 3];
    }
    t.bytes_in += advanced as u64;
    t.rcv_rtt_measure(
        now,
        seg.options.timestamps.map(|(_, echo)| echo),
        seg.payload.len(),
        data.len(),
    );
    if t.shut_rd {
        // Shut down for reading: acknowledged, then thrown away.
        let mut sink = [0u8; 4096];
        while t.recv.read(&mut sink) > 0 {}
    }
    if offset > 0 || advanced < data.len() || holes_before {
        // Out of order, beyond the window, or filling a hole: ACK at once
        // (RFC 5681 §4.2). Not quick-ACK mode after it, as Linux: with 1%
        // loss each way, ACKing every segment after each filled hole cost
        // a host sender (BBR) a third of its upload rate.
        if offset > 0 {
            stats.tcp_rx_out_of_order += 1;
        }
        t.ack_now = true;
    } else {
        // Every second full-sized segment is acknowledged (RFC 5681 §4.2).
        // Full-sized is what this peer's segments carry: with timestamps,
        // 12 bytes less than the MSS, so counting against the MSS would
        // wait for a third segment, or the delayed-ACK timer.
        // A super-packet stands for segments of its gso_size (Linux's
        // tcp_measure_rcv_mss takes gso_size too).
        let len = match env.gso_size {
            0 => seg.payload.len(),
            mss => usize::from(mss).min(seg.payload.len()),
        };
        measure_rcv_seg(t, len);
        let full = t.rcv_seg_max.max(t.rcv_mss.min(MIN_FULL_SEGMENT));
        t.bytes_unacked += advanced;
        t.ack_pushed |= seg.has(flags::PSH);
        if t.quick_acks > 0 && !t.pingpong && seg.payload.len() >= full {
            // Quick-ACK mode: each full segment at once. (Linux counts
            // small ones too; a request of a few bytes is answered by
            // the application's reply, or the delayed ACK, instead.)
            t.quick_acks -= 1;
            t.ack_now = true;
        } else if t.bytes_unacked >= stretch_limit(t, full) {
            t.ack_now = true;
        } else if t.bytes_unacked >= 2 * full {
            // Owed, but the rest of this batch of packets may be ours too:
            // one ACK for all of it at the end of the batch (a stretch ACK,
            // as Linux's GRO makes). Each ACK costs the peer a trip
            // through its stack; on a TUN link that is our thread's time.
            t.ack_deferred = true;
        } else if t.timer(Timer::DelayedAck).is_none() {
            t.set_timer(Timer::DelayedAck, Some(now + delayed_ack));
        }
    }
}

/// Bytes a stretch ACK may cover at most: a quarter of the receive buffer
/// (so the sender's window keeps moving), at most 64 KiB (GRO's largest).
fn stretch_limit(t: &Tcb, full: usize) -> usize {
    (t.recv.limit() / 4).min(64 * 1024).max(2 * full)
}

/// Learns the size of this peer's full-sized segments from an in-order
/// one of `len` bytes, as Linux's `tcp_measure_rcv_mss`: a larger one
/// raises it at once (never past our MSS: a coalesced super-segment is
/// not one); two in a row of the same smaller size lower it (the peer's
/// path MTU fell), unless they are too small to be anyone's full segment.
fn measure_rcv_seg(t: &mut Tcb, len: usize) {
    let last = std::mem::take(&mut t.rcv_last_seg);
    if len >= t.rcv_seg_max {
        t.rcv_seg_max = len.min(t.rcv_mss);
        return;
    }
    // Counted with the timestamp option's room, as Linux counts the header.
    let options = if t.ts_ok { TIMESTAMP_OPTION_LEN } else { 0 };
    if len + options >= MIN_FULL_SEGMENT {
        t.rcv_last_seg = len;
        if len == last {
            t.rcv_seg_max = len;
        }
    }
}

/// Bytes the timestamp option takes in every segment once negotiated
/// (RFC 7323 §3.2: 10, padded to 12).
const TIMESTAMP_OPTION_LEN: usize = 12;

/// The smallest payload taken for a full-sized segment, whatever the peer
/// sent so far (RFC 9293's default MSS, as Linux's `TCP_MSS_DEFAULT`).
const MIN_FULL_SEGMENT: usize = 536;

/// Enters TIME-WAIT, every timer stopped: at the end of the segment the
/// layer moves the connection into the compact table, which keeps the
/// 2×MSL (`TcpLayer::enter_time_wait`, in `timewait`).
fn enter_time_wait(t: &mut Tcb) {
    t.set_state(State::TimeWait);
    t.timers = [None; super::tcb::TIMERS];
}

/// Remembers what the next SACK option reports: a duplicate (all or part of
/// the segment already received) as a D-SACK block (RFC 2883 §4), and where
/// new out-of-order data went, so its island is reported first (RFC 2018 §4).
fn note_for_sack(t: &mut Tcb, seq: SeqNum, len: usize, offset: usize, new_len: usize) {
    let old = len - new_len; // bytes below RCV.NXT
    if old > 0 {
        t.dsack = Some((seq, seq + old as u32));
    } else if offset > 0 {
        let (start, end) = (offset, offset + new_len);
        let held = t.recv.out_of_order().iter().any(|&(s, e)| s <= start && end <= e);
        if held {
            t.dsack = Some((seq, seq + new_len as u32));
        }
        // Its island goes first (after a D-SACK, the island holding the
        // duplicate: RFC 2883 §4 (4), what lets the sender recognise it).
        t.sack_recent.rotate_right(1);
        t.sack_recent[0] = Some(seq);
    }
}
