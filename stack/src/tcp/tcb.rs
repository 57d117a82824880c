//! The transmission control block: one connection's state (RFC 9293 §3.3.1).

#![forbid(unsafe_code)]

use super::TcpConfig;
use super::autotune::AutoTune;
use super::buffer::{RecvBuffer, SendBuffer};
use super::congestion::{self, CongestionControl, Window};
use super::memory::MemoryAccount;
use super::rack::Rack;
use super::rtt::RttEstimator;
use super::sack::Scoreboard;
use super::undo::Undo;
use crate::socket::Handle;
use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;
use crate::wire::tcp::SackBlocks;
use core::fmt;
use std::net::SocketAddrV4;

/// Connection states (RFC 9293 §3.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection.
    Closed,
    /// Waiting for a connection request (listeners only).
    Listen,
    /// SYN sent, waiting for the matching SYN-ACK.
    SynSent,
    /// SYN received and SYN-ACK sent, waiting for the ACK.
    SynReceived,
    /// Open: data flows both ways.
    Established,
    /// We closed first and sent FIN; waiting for its ACK or the peer's FIN.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// The peer closed first; waiting for our application to close.
    CloseWait,
    /// Both sent FIN at once; waiting for the ACK of ours.
    Closing,
    /// The peer closed first and we followed; waiting for the ACK of our FIN.
    LastAck,
    /// Both closed; waiting 2×MSL so late segments die out.
    TimeWait,
}

impl State {
    /// The name `netstat` prints.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN_SENT",
            State::SynReceived => "SYN_RECV",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN_WAIT1",
            State::FinWait2 => "FIN_WAIT2",
            State::CloseWait => "CLOSE_WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST_ACK",
            State::TimeWait => "TIME_WAIT",
        }
    }

    /// Whether SYNs have been exchanged both ways (RFC 9293's "synchronized states").
    pub fn synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    /// States where keepalive probing makes sense (as Linux: not while closing).
    pub fn keepalive_applies(self) -> bool {
        matches!(self, State::Established | State::CloseWait | State::FinWait2)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) use super::error::ConnError;

/// The connection's timers; each is off or due at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Retransmission of SYN, data or FIN (RFC 6298).
    Retransmit = 0,
    /// Zero-window probing (RFC 9293 §3.8.6.1).
    Persist = 1,
    /// Delayed acknowledgment (RFC 1122 §4.2.3.2).
    DelayedAck = 2,
    /// Keepalive probing (RFC 1122 §4.2.3.6).
    Keepalive = 3,
    /// TIME-WAIT's 2×MSL, or FIN-WAIT-2's timeout for closed sockets.
    Linger = 4,
    /// RACK's reordering timer: when a segment waiting out the reordering
    /// window counts as lost (RFC 8985 §6.2 step 5).
    Reorder = 5,
    /// TLP's probe timeout (PTO, RFC 8985 §7.2).
    LossProbe = 6,
    /// The reader has waited this long with both rings empty: they give
    /// their memory back.
    Idle = 7,
}

/// Number of [`Timer`] kinds.
pub(crate) const TIMERS: usize = 8;

/// How long a connection's reader waits, rings empty, before they let their pages go.
pub(crate) const IDLE_RELEASE: crate::time::Duration = crate::time::Duration::from_secs(1);

/// All kinds, in the order they run when due together: RACK and TLP
/// before the retransmission timeout they exist to forestall.
pub(crate) const ALL_TIMERS: [Timer; TIMERS] = [
    Timer::Reorder,
    Timer::LossProbe,
    Timer::Retransmit,
    Timer::Persist,
    Timer::DelayedAck,
    Timer::Keepalive,
    Timer::Linger,
    Timer::Idle,
];

/// One connection.
#[derive(Debug)]
pub(crate) struct Tcb {
    pub(crate) state: State,
    pub(crate) local: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,
    /// The listener that created this connection, until it is accepted.
    pub(crate) listener: Option<Handle>,
    /// Whether the connection waits in its listener's accept queue.
    pub(crate) queued: bool,
    /// The application closed its handle: the core finishes the connection alone.
    pub(crate) orphaned: bool,

    // Send sequence space (RFC 9293 §3.3.1).
    pub(crate) iss: SeqNum,
    /// Our SYN is acknowledged: the send buffer starts at SND.UNA, not at
    /// ISS + 1. Set on entering a synchronized state, never inferred from
    /// SND.UNA == ISS, which holds again after 2^32 − 1 bytes.
    pub(crate) syn_acked: bool,
    pub(crate) snd_una: SeqNum,
    pub(crate) snd_nxt: SeqNum,
    /// The highest sequence number sent (SND.NXT before any rewind for retransmission).
    pub(crate) snd_max: SeqNum,
    pub(crate) snd_wnd: u32,
    pub(crate) max_snd_wnd: u32,
    pub(crate) snd_wl1: SeqNum,
    pub(crate) snd_wl2: SeqNum,
    pub(crate) send: SendBuffer,
    /// Where our FIN goes, once the application will send no more.
    pub(crate) snd_fin: Option<SeqNum>,
    /// Largest segment we send.
    pub(crate) snd_mss: usize,
    /// Shift applied to windows the peer sends us.
    pub(crate) snd_wscale: u8,
    /// Shift applied to windows we send.
    pub(crate) rcv_wscale: u8,
    /// Both sides agreed to window scaling (RFC 7323 §2.2).
    pub(crate) wscale_ok: bool,
    /// Timestamps to offer in our SYN / allowed by the stack (RFC 7323).
    pub(crate) want_ts: bool,
    /// SACK to offer in our SYN / allowed by the stack (RFC 2018).
    pub(crate) want_sack: bool,
    /// Both SYNs carried timestamps: every segment carries them (RFC 7323 §3.2).
    pub(crate) ts_ok: bool,
    /// Added to our millisecond clock for TSval: one per pair of hosts (see `IsnGenerator::ts_offset`).
    pub(crate) ts_offset: u32,
    /// TS.Recent: the peer's TSval we echo (RFC 7323 §4.3).
    pub(crate) ts_recent: u32,
    /// When TS.Recent was last set (PAWS forgets it after 24 days, RFC 7323 §5.5).
    pub(crate) ts_recent_at: Instant,
    /// Last.ACK.sent: the acknowledgment number of our latest segment (RFC 7323 §4.3).
    pub(crate) last_ack_sent: SeqNum,
    /// The peer accepts SACK blocks (its SYN said SACK-permitted, and we allow it).
    pub(crate) sack_ok: bool,
    /// Sequence numbers of the latest out-of-order segments, newest first:
    /// their islands lead our SACK blocks (RFC 2018 §4).
    pub(crate) sack_recent: [Option<SeqNum>; 3],
    /// Proportional Rate Reduction's counts during a SACK recovery (RFC 6937).
    pub(crate) prr: Prr,
    /// Segments carry DF (path MTU discovery) unless a path below
    /// [`MIN_PMTU`] was reported.
    pub(crate) dont_fragment: bool,
    /// A duplicate to report first in the next ACK (D-SACK, RFC 2883).
    pub(crate) dsack: Option<(SeqNum, SeqNum)>,
    /// HighRxt: the end of the highest retransmission in this recovery (RFC 6675 §2).
    pub(crate) high_rxt: SeqNum,
    /// Every segment in flight, with SACK: when sent, whether SACKed or
    /// lost (RFC 6675's scoreboard, with RFC 8985 §5.2's fields).
    pub(crate) scoreboard: Scoreboard,
    /// RACK's state (RFC 8985 §5.3).
    pub(crate) rack: Rack,
    /// The loss probe in flight, if any (TLP.end_seq, TLP.is_retrans).
    pub(crate) tlp: Option<LossProbe>,
    /// An RTT was measured since the last loss probe (RFC 8985 §7.3).
    pub(crate) rtt_since_probe: bool,
    /// The next segment is a loss probe: it may exceed cwnd by one segment and ignores Nagle.
    pub(crate) probing: bool,
    /// The latest congestion episode, while it may prove spurious.
    pub(crate) undo: Option<Undo>,
    /// What loss recovery did on this connection, for `netstat -t -i`.
    pub(crate) recovery: RecoveryCounts,

    // Receive sequence space.
    pub(crate) irs: SeqNum,
    pub(crate) rcv_nxt: SeqNum,
    pub(crate) recv: RecvBuffer,
    /// The right edge of the window we last advertised; never moves left.
    pub(crate) rcv_adv: SeqNum,
    /// Largest segment we expect (our advertised MSS).
    pub(crate) rcv_mss: usize,
    /// The largest payload received so far: what a full-sized segment from
    /// this peer carries (less than `rcv_mss` once options take their
    /// room, as Linux's `tcp_measure_rcv_mss` estimates it).
    pub(crate) rcv_seg_max: usize,
    /// The payload of the last in-order segment smaller than
    /// `rcv_seg_max` that could still be full-sized; a second one of the
    /// same size makes it the full size (Linux's `last_seg_size`).
    pub(crate) rcv_last_seg: usize,
    /// Where the peer's FIN sits, once seen (it may arrive out of order).
    pub(crate) fin_seq: Option<SeqNum>,
    /// The peer's FIN has been consumed: reads end after the buffered data.
    pub(crate) rcv_closed: bool,
    /// The application shut down reading.
    pub(crate) shut_rd: bool,

    // Acknowledgment generation.
    pub(crate) ack_now: bool,
    pub(crate) bytes_unacked: usize,
    /// A segment with PSH arrived since our last ACK (Linux's
    /// `ICSK_ACK_PUSHED`): once the application has read everything, the
    /// ACK goes at once rather than after the delayed-ACK timer.
    pub(crate) ack_pushed: bool,
    /// The connection looks interactive: our data carried ACKs we owed
    /// (Linux's pingpong mode), so delayed ACKs ride on replies and reads
    /// send no ACK of their own. Ends when the delayed-ACK timer fires.
    pub(crate) pingpong: bool,
    /// An ACK is owed for in-order data but waits for the end of the
    /// batch of received packets: one (stretch) ACK then covers all of it.
    pub(crate) ack_deferred: bool,
    /// The connection is on the layer's list of deferred ACKs.
    pub(crate) ack_listed: bool,
    /// Full-sized segments still to be acknowledged one by one (Linux's
    /// quick-ACK mode): at the start, so the peer's slow start is not
    /// slowed by stretch ACKs, and after a hole is filled.
    pub(crate) quick_acks: u8,
    /// The congestion and flow windows allow more, but the link's queue
    /// holds enough already: the rest is built when the queue drains.
    pub(crate) tx_pending: bool,
    /// The connection is on the layer's list of pending output.
    pub(crate) tx_listed: bool,
    /// Bytes in and out when the reader began to wait (`Timer::Idle`).
    pub(crate) idle_mark: u64,
    /// Last out-of-window or challenge ACK sent (rate limit, as Linux's tcp_invalid_ratelimit).
    pub(crate) last_oow_ack: Option<Instant>,

    // Timers, retransmission and congestion.
    pub(crate) timers: [Option<Instant>; TIMERS],
    /// The earliest deadline handed to the layer's timer heap.
    pub(crate) scheduled: Option<Instant>,
    pub(crate) backoff: u32,
    pub(crate) rtt: RttEstimator,
    /// A segment being timed: (sequence number that acknowledges it, send time).
    pub(crate) rtt_probe: Option<(SeqNum, Instant)>,
    pub(crate) cc: Box<dyn CongestionControl>,
    pub(crate) dupacks: u32,
    /// In fast recovery until SND.UNA reaches this (RFC 6582's `recover`).
    pub(crate) recover: Option<SeqNum>,
    pub(crate) nodelay: bool,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) keepalive_probes: u32,
    /// Zero-window probes sent since the peer last said anything.
    pub(crate) probes_unanswered: u32,
    /// After a timeout, duplicate ACKs below this do not start fast
    /// retransmit (RFC 6582 §3.2: `recover` set to the highest sequence sent).
    pub(crate) rto_high_water: Option<SeqNum>,
    /// SND.UNA before the latest cumulative ACK moved it (RFC 6582's prev_highest_ack).
    pub(crate) prev_una: SeqNum,
    pub(crate) last_heard: Instant,

    pub(crate) error: Option<ConnError>,
    /// `take_error` has returned `error` (SO_ERROR reports it once).
    pub(crate) error_taken: bool,
    /// The latest ICMP error about this connection's segments, reported
    /// instead of a timeout if the connection times out (Linux's `sk_err_soft`).
    pub(crate) soft_error: Option<ConnError>,
    pub(crate) event_pending: bool,
    /// Who uses the connection, for netstat (a service name, or pid/program).
    pub(crate) owner: Option<std::sync::Arc<str>>,

    /// Buffer auto-tuning: how far `send` and `recv` may grow (`autotune.rs`).
    pub(crate) tune: AutoTune,

    /// Segments D-SACKed (Linux's `dsack_dups`): more than `retransmits`
    /// means the network duplicates, and D-SACKs then prove nothing.
    pub(crate) dsack_dups: u64,

    // Counters for netstat -i.
    pub(crate) retransmits: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

impl Tcb {
    /// A fresh connection between `local` and `remote` with our ISN.
    pub(crate) fn new(
        cfg: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNum,
        now: Instant,
        mtu: usize,
        memory: &MemoryAccount,
    ) -> Tcb {
        let rcv_mss = mtu - 40;
        // The scale is chosen for the cap, so auto-tuning can grow the
        // window without renegotiation (RFC 7323 §2.3, as Linux's tcp_rmem[2]).
        let rcv_wscale = window_scale_for(cfg.recv_buffer);
        Tcb {
            state: State::Closed,
            local,
            remote,
            listener: None,
            queued: false,
            orphaned: false,
            iss,
            syn_acked: false,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: SeqNum(0),
            send: SendBuffer::new(cfg.send_buffer_initial.min(cfg.send_buffer), memory),
            snd_fin: None,
            snd_mss: 536,
            snd_wscale: 0,
            rcv_wscale,
            wscale_ok: false,
            want_ts: cfg.timestamps,
            want_sack: cfg.sack,
            ts_ok: false,
            ts_offset: 0,
            ts_recent: 0,
            ts_recent_at: now,
            last_ack_sent: SeqNum(0),
            sack_ok: false,
            sack_recent: [None; 3],
            dsack: None,
            dont_fragment: true,
            prr: Prr::default(),
            high_rxt: iss,
            scoreboard: Scoreboard::default(),
            rack: Rack::default(),
            tlp: None,
            rtt_since_probe: true,
            probing: false,
            undo: None,
            recovery: RecoveryCounts::default(),
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            recv: RecvBuffer::new(cfg.recv_buffer_initial.min(cfg.recv_buffer), memory),
            rcv_adv: SeqNum(0),
            rcv_mss,
            rcv_seg_max: 0,
            rcv_last_seg: 0,
            fin_seq: None,
            rcv_closed: false,
            shut_rd: false,
            ack_now: false,
            bytes_unacked: 0,
            ack_pushed: false,
            pingpong: false,
            tx_pending: false,
            tx_listed: false,
            idle_mark: 0,
            ack_deferred: false,
            ack_listed: false,
            quick_acks: MAX_QUICK_ACKS,
            last_oow_ack: None,
            timers: [None; TIMERS],
            scheduled: None,
            backoff: 0,
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto),
            rtt_probe: None,
            cc: congestion::controller(cfg.congestion, Window::initial(536)),
            dupacks: 0,
            recover: None,
            nodelay: false,
            keepalive: None,
            keepalive_probes: 0,
            probes_unanswered: 0,
            rto_high_water: None,
            prev_una: iss,
            last_heard: now,
            error: None,
            error_taken: false,
            soft_error: None,
            event_pending: false,
            owner: None,
            tune: AutoTune::new(cfg.recv_buffer, cfg.send_buffer, rcv_mss, now),
            dsack_dups: 0,
            retransmits: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Sets or clears a timer.
    pub(crate) fn set_timer(&mut self, t: Timer, at: Option<Instant>) {
        self.timers[t as usize] = at;
    }

    /// When timer `t` fires, if armed.
    pub(crate) fn timer(&self, t: Timer) -> Option<Instant> {
        self.timers[t as usize]
    }

    /// The earliest armed timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// Sequence number of the first byte in the send buffer.
    pub(crate) fn data_start(&self) -> SeqNum {
        match self.snd_fin {
            _ if !self.syn_acked => self.iss + 1,
            Some(f) if self.snd_una.gt(f) => f,
            _ => self.snd_una,
        }
    }

    /// Sequence number just past the buffered data (where FIN goes).
    pub(crate) fn data_end(&self) -> SeqNum {
        self.snd_fin
            .unwrap_or_else(|| self.data_start() + self.send.len() as u32)
    }

    /// Gives back the buffers the connection can no longer use: the
    /// receive ring once nothing more can be read from it (reading shut
    /// down, the application gone, the peer's FIN in or the connection
    /// ended, and all read), the send ring once our FIN is queued and every
    /// byte is acknowledged.
    pub(crate) fn release_unusable_buffers(&mut self) {
        if self.shut_rd || self.orphaned || self.rcv_closed || self.state == State::Closed {
            self.recv.release_if_empty();
        }
        if self.fin_queued() {
            self.send.release_if_empty();
        }
    }

    /// Whether the application shut down sending (FIN queued or sent).
    pub(crate) fn fin_queued(&self) -> bool {
        self.snd_fin.is_some()
    }

    /// Marks the end of the data: FIN goes after what is buffered now.
    pub(crate) fn queue_fin(&mut self) {
        if self.snd_fin.is_none() {
            self.snd_fin = Some(self.data_start() + self.send.len() as u32);
        }
    }

    /// Whether our FIN has been sent.
    pub(crate) fn fin_sent(&self) -> bool {
        self.snd_fin.is_some_and(|f| self.snd_max.gt(f))
    }

    /// Whether our FIN has been acknowledged.
    pub(crate) fn fin_acked(&self) -> bool {
        self.snd_fin.is_some_and(|f| self.snd_una.gt(f))
    }

    /// A smaller path MTU is known (RFC 1191): segments shrink to fit it,
    /// and everything in flight, sent too large and dropped on the way,
    /// goes again at the new size (as Linux's tcp_simple_retransmit; the
    /// congestion window is left alone: this was no congestion). False if
    /// the MSS was already that small.
    pub(crate) fn reduce_mss(&mut self, path_mtu: usize) -> bool {
        // Below MIN_PMTU the MTU is not believed, but the path is: segments
        // of MIN_PMTU go without DF and routers fragment them (Linux locks
        // the route's MTU and clears DF the same way; RFC 1191 §5).
        let (path_mtu, dont_fragment) = if path_mtu < MIN_PMTU {
            (MIN_PMTU, false)
        } else {
            (path_mtu, true)
        };
        let mss = path_mtu.saturating_sub(40);
        if mss >= self.snd_mss && dont_fragment == self.dont_fragment {
            return false;
        }
        self.dont_fragment &= dont_fragment;
        self.snd_mss = mss.min(self.snd_mss);
        self.rtt_probe = None;
        self.high_rxt = self.snd_una;
        if self.sack_ok {
            // Resent at the new size by `retransmit_lost`, SACKed data excepted.
            self.scoreboard.mark_all_lost();
        } else {
            self.snd_nxt = self.snd_una;
        }
        true
    }

    /// Our TSval at `now`: milliseconds plus the connection's offset (RFC 7323 §5.4).
    pub(crate) fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// The SACK blocks our next ACK carries, at most `max`: a D-SACK first,
    /// then the islands that got data most recently, then the others from
    /// the highest down (RFC 2018 §4, RFC 2883).
    pub(crate) fn sack_blocks(&self, max: usize) -> SackBlocks {
        let mut out = SackBlocks::default();
        if !self.sack_ok {
            return out;
        }
        if let Some((left, right)) = self.dsack {
            out.push(left, right);
        }
        let islands = self.recv.out_of_order();
        let block = |&(start, end): &(usize, usize)| (self.rcv_nxt + start as u32, self.rcv_nxt + end as u32);
        let recent = self.sack_recent.iter().flatten().filter_map(|seq| {
            islands
                .iter()
                .map(block)
                .find(|(left, right)| seq.ge(*left) && seq.lt(*right))
        });
        // Islands are listed once; the D-SACK block does not count as one.
        let first_island = out.len();
        for (left, right) in recent.chain(islands.iter().rev().map(block)) {
            if out.len() >= max {
                break;
            }
            if !out.as_slice()[first_island..].contains(&(left, right)) {
                out.push(left, right);
            }
        }
        out
    }

    /// Bytes sent and not yet acknowledged.
    pub(crate) fn flight(&self) -> usize {
        self.snd_nxt.wrapping_distance_from(self.snd_una) as usize
    }

    /// The window we could advertise now: free receive space, clamped
    /// under memory pressure to what the ring has room for or 4 segments.
    pub(crate) fn free_window(&self) -> usize {
        let max = 65535usize << self.rcv_wscale;
        self.recv.pressure_window(4 * self.rcv_mss).min(max)
    }

    /// The advertised window still open to the peer (RCV.WND).
    pub(crate) fn rcv_wnd(&self) -> u32 {
        if self.rcv_adv.gt(self.rcv_nxt) {
            self.rcv_adv.wrapping_distance_from(self.rcv_nxt)
        } else {
            0
        }
    }

    /// ACKs the next full-sized segments one by one, and leaves pingpong
    /// mode (Linux's `tcp_enter_quickack_mode`): the peer retransmitted.
    pub(crate) fn enter_quick_ack_mode(&mut self) {
        self.quick_acks = MAX_QUICK_ACKS;
        self.pingpong = false;
    }

    /// Logs and performs a state change. A connection enters a
    /// synchronized state only once its SYN is acknowledged (RFC 9293 §3.5).
    pub(crate) fn set_state(&mut self, to: State) {
        if self.state != to {
            log::debug!("tcp {} -> {}: {} -> {}", self.local, self.remote, self.state, to);
            self.state = to;
            self.syn_acked |= to.synchronized();
        }
    }
}

/// Datagrams the link's queue may hold before a connection stops building
/// segments (they are built as they are sent, not a whole window at once).
pub(crate) const BUILD_AHEAD: usize = 64;

/// Segments acknowledged one by one in quick-ACK mode (Linux's `TCP_MAX_QUICKACKS`).
pub(crate) const MAX_QUICK_ACKS: u8 = 16;

/// A loss probe sent and not yet answered (RFC 8985 §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LossProbe {
    /// SND.NXT after the probe (TLP.end_seq).
    pub(crate) end: SeqNum,
    /// The probe resent old data (TLP.is_retrans).
    pub(crate) is_retrans: bool,
}

/// What loss recovery did on one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryCounts {
    /// Fast recoveries (SACK-steered or NewReno).
    pub fast_recoveries: u64,
    /// Segments RACK marked lost.
    pub rack_marked: u64,
    /// Tail loss probes sent.
    pub loss_probes: u64,
    /// Congestion episodes undone as spurious (D-SACK or Eifel).
    pub undone: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
}

/// RFC 6937's state: bytes delivered to the peer and sent by us since the
/// recovery began, and the flight then (RecoverFS).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Prr {
    pub(crate) delivered: usize,
    pub(crate) out: usize,
    pub(crate) recover_fs: usize,
}

/// The smallest path MTU believed (Linux's `min_pmtu`, RFC 5927 §7.2): a
/// forged fragmentation-needed cannot shrink segments to a few bytes.
pub(crate) const MIN_PMTU: usize = 552;

/// The window-scale shift that lets a window of `buffer` bytes be advertised (RFC 7323 §2.3).
pub(crate) fn window_scale_for(buffer: usize) -> u8 {
    let mut shift = 0u8;
    while shift < 14 && (65535usize << shift) < buffer {
        shift += 1;
    }
    shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_scale_covers_the_buffer() {
        assert_eq!(window_scale_for(65535), 0);
        assert_eq!(window_scale_for(65536), 1);
        assert_eq!(window_scale_for(1 << 20), 5);
        assert_eq!(window_scale_for(usize::MAX), 14);
    }
}
