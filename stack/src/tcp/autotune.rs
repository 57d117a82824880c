//! Buffer auto-tuning, as Linux does it: buffers start small and grow
//! towards twice what the path carries in a round trip, up to the caps of
//! [`TcpConfig`](super::TcpConfig) (`recv_buffer`, `send_buffer`).
//!
//! - Receive (Linux's dynamic right-sizing, `tcp_rcv_space_adjust`): once
//!   per receiver RTT, the bytes the application read in that RTT are what
//!   the path delivers; if that grew, the buffer (and so the window) grows
//!   to twice it, plus room for the sender's growth (slow start doubles it
//!   each RTT) and a cushion of 16 segments. The receiver's RTT comes from
//!   the timestamps the peer echoes, or without timestamps from the time one
//!   window takes to arrive (`tcp_rcv_rtt_measure`, the minimum of those).
//!   An application that reads slowly reads little per RTT: its window stays.
//! - Send (`tcp_sndbuf_expand`): when the application finds the buffer full
//!   while the congestion window has room, the buffer grows to twice the
//!   congestion window (the flight, and as much again queued, so the sender
//!   never waits for the application).
//!
//! Limits only grow (memory follows only as data needs it: `buffer.rs`), and
//! the window scale is chosen for the cap at the SYN, so the window grows
//! without renegotiation. An application that sets a buffer size
//! (`SO_RCVBUF`/`SO_SNDBUF`) fixes it and auto-tuning leaves that side alone.

#![forbid(unsafe_code)]

use super::tcb::Tcb;
use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;

/// Segments the first flight may hold (RFC 6928's initial window, Linux's
/// `TCP_INIT_CWND`): the send buffer holds two such flights from the start.
const INIT_SEGMENTS: usize = 10;

/// Cushion on top of twice the measured window, in segments (Linux: 16 advmss).
const CUSHION_SEGMENTS: usize = 16;

/// Smallest buffer an application may set (Linux's SOCK_MIN_RCVBUF is about 2 KiB).
pub(crate) const MIN_BUFFER: usize = 2048;

/// One connection's auto-tuning state (Linux's `rcvq_space` and `rcv_rtt_est`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AutoTune {
    /// The caps: auto-tuning grows the limits up to these.
    recv_max: usize,
    send_max: usize,
    /// The application fixed the receive buffer at this size (`SO_RCVBUF`).
    recv_locked: Option<usize>,
    /// The application fixed the send buffer (`SO_SNDBUF`).
    send_locked: bool,
    /// The receiver's RTT estimate.
    rcv_rtt: Option<Duration>,
    /// A window-based RTT measure under way: it ends when RCV.NXT reaches
    /// the sequence number, and began at the instant.
    rtt_mark: Option<(SeqNum, Instant)>,
    /// The TSecr of the latest timestamp measure (one sample per echo).
    last_tsecr: u32,
    /// The largest segment the peer sent: a smaller one may have waited for
    /// the application and would overstate the RTT.
    rcv_seg_max: usize,
    /// Bytes the application has read, in all.
    copied: u64,
    /// New bytes that arrived from the network, in all (in order or not).
    arrived: u64,
    /// The most bytes read in one measured RTT so far.
    space: usize,
    /// `copied`, `arrived` and the time when the current RTT's count began.
    space_mark: (u64, u64, Instant),
    /// The application found the send buffer full (Linux's SOCK_NOSPACE).
    send_starved: bool,
}

impl AutoTune {
    /// Fresh state for caps `recv_max` and `send_max`, at `now`, segments of `mss`.
    pub(crate) fn new(recv_max: usize, send_max: usize, mss: usize, now: Instant) -> AutoTune {
        AutoTune {
            recv_max,
            send_max,
            recv_locked: None,
            send_locked: false,
            rcv_rtt: None,
            rtt_mark: None,
            last_tsecr: 0,
            rcv_seg_max: 0,
            copied: 0,
            arrived: 0,
            space: INIT_SEGMENTS * mss,
            space_mark: (0, 0, now),
            send_starved: false,
        }
    }

    /// The receiver's RTT estimate, once measured.
    pub(crate) fn rcv_rtt(&self) -> Option<Duration> {
        self.rcv_rtt
    }

    /// Folds in an RTT sample: smoothed (1/8) from timestamps, the minimum
    /// from whole windows, which overstate the RTT whenever the sender sent
    /// less than a window (as Linux's `tcp_rcv_rtt_update`).
    fn rtt_sample(&mut self, sample: Duration, from_window: bool) {
        self.rcv_rtt = Some(match self.rcv_rtt {
            None => sample,
            Some(rtt) if from_window => rtt.min(sample),
            Some(rtt) => {
                let (rtt_us, sample_us) = (rtt.as_micros() as i64, sample.as_micros() as i64);
                Duration::from_micros((rtt_us + (sample_us - rtt_us) / 8).max(1) as u64)
            }
        });
    }
}

impl Tcb {
    /// A segment of `len` bytes brought `new` bytes not held before (stored
    /// already, RCV.NXT moved): a receiver RTT sample, from the echoed
    /// timestamp of a full-sized segment, or without timestamps once a
    /// window's worth has arrived since the last mark.
    pub(crate) fn rcv_rtt_measure(&mut self, now: Instant, tsecr: Option<u32>, len: usize, new: usize) {
        self.tune.arrived += new as u64;
        self.tune.rcv_seg_max = self.tune.rcv_seg_max.max(len);
        if self.ts_ok {
            let Some(echo) = tsecr.filter(|&e| e != 0 && e != self.tune.last_tsecr) else {
                return;
            };
            if len < self.tune.rcv_seg_max {
                return;
            }
            let ms = self.ts_now(now).wrapping_sub(echo);
            if ms < 1 << 31 {
                self.tune.last_tsecr = echo;
                // Our clock ticks in milliseconds: a faster echo counts as 1 ms.
                self.tune.rtt_sample(Duration::from_millis(u64::from(ms.max(1))), false);
            }
            return;
        }
        if let Some((seq, at)) = self.tune.rtt_mark {
            if self.rcv_nxt.lt(seq) {
                return;
            }
            let sample = (now - at).max(Duration::from_micros(1));
            self.tune.rtt_sample(sample, true);
        }
        // The next measure spans the window open now (at least one segment).
        let span = (self.rcv_wnd() as usize).max(self.rcv_mss);
        self.tune.rtt_mark = Some((self.rcv_nxt + span as u32, now));
    }

    /// The application read `read` bytes: once per receiver RTT, compares
    /// what it read in that RTT with the most so far and grows the receive
    /// buffer if the path delivers more (Linux's `tcp_rcv_space_adjust`).
    pub(crate) fn rcv_space_adjust(&mut self, now: Instant, read: usize) {
        self.tune.copied += read as u64;
        self.fit_locked_recv_buffer();
        let tune = &mut self.tune;
        let Some(rtt) = tune.rcv_rtt else { return };
        let (copied_mark, arrived_mark, since) = tune.space_mark;
        if now - since < rtt {
            return;
        }
        // What the application read in the RTT, but no more than came from
        // the network in it: a hole filled by a retransmission makes a
        // window's worth readable at once, which is no measure of the path.
        let copied = ((tune.copied - copied_mark).min(tune.arrived - arrived_mark)) as usize;
        tune.space_mark = (tune.copied, tune.arrived, now);
        if copied <= tune.space {
            return;
        }
        let grown_by = copied - tune.space;
        let previous = tune.space;
        tune.space = copied;
        if tune.recv_locked.is_some() || self.recv.memory().under_pressure() {
            // Fixed by the application, or memory is short: no growth
            // (Linux's tcp_rcv_space_adjust checks tcp_under_memory_pressure).
            return;
        }
        // Twice what one RTT delivered (a loss costs a round trip's worth
        // of buffering) and a cushion; then, as the window we announce now
        // serves the next RTT, room for the sender's growth at the rate it
        // grew in this one: a sender in slow start doubles it, 4× in all.
        // (Linux adds the growth twice, for 6×; once keeps the window
        // nearer 2× the BDP when slow start ends.)
        let window = 2 * copied + CUSHION_SEGMENTS * self.rcv_mss;
        let growth = (window as u128 * grown_by as u128 / previous.max(1) as u128).min(window as u128) as usize;
        let target = (window + growth).min(tune.recv_max);
        if target > self.recv.limit() {
            log::trace!(
                "tcp {} -> {}: receive buffer {} -> {target} ({copied} B read in {rtt:?})",
                self.local,
                self.remote,
                self.recv.limit()
            );
            self.recv.set_limit(target);
        }
    }

    /// After an ACK was processed and whatever could be sent went: grows
    /// the send buffer to twice the congestion window if the application
    /// found it full while the congestion window had room for more (Linux's
    /// `tcp_new_space` / `tcp_sndbuf_expand`). Once established, it holds
    /// at least two initial windows (Linux's `tcp_init_buffer_space`).
    pub(crate) fn expand_send_buffer(&mut self) {
        if self.tune.send_locked || !self.state.synchronized() || self.send.memory().under_pressure() {
            // Memory is short: send buffers stop growing (Linux's tcp_should_expand_sndbuf).
            return;
        }
        let mss = self.snd_mss;
        let cwnd = self.cc.cwnd();
        let starved = self.tune.send_starved && self.in_flight() < cwnd;
        let segments = if starved {
            (cwnd / mss.max(1)).max(INIT_SEGMENTS)
        } else {
            INIT_SEGMENTS
        };
        let target = (2 * segments * mss).min(self.tune.send_max);
        if target > self.send.limit() {
            self.send.set_limit(target);
        }
    }

    /// Records whether the application's latest write found the send buffer full.
    pub(crate) fn note_send_space(&mut self, full: bool) {
        self.tune.send_starved = full;
    }

    /// The application fixes the receive buffer at `size` bytes (`SO_RCVBUF`):
    /// auto-tuning stops. A size below what the advertised window promised
    /// takes effect as the application reads (the window never shrinks).
    pub(crate) fn lock_recv_buffer(&mut self, size: usize) {
        let size = size.clamp(MIN_BUFFER, self.tune.recv_max);
        self.tune.recv_locked = Some(size);
        self.fit_locked_recv_buffer();
    }

    /// Brings a fixed receive buffer to its size, as far as the window
    /// already advertised allows.
    pub(crate) fn fit_locked_recv_buffer(&mut self) {
        if let Some(size) = self.tune.recv_locked {
            let promised = self.recv.len() + self.rcv_wnd() as usize;
            self.recv.set_limit(size.max(promised));
        }
    }

    /// The application fixes the send buffer at `size` bytes (`SO_SNDBUF`):
    /// auto-tuning stops; bytes already queued stay.
    pub(crate) fn lock_send_buffer(&mut self, size: usize) {
        self.tune.send_locked = true;
        self.send.set_limit(size.clamp(MIN_BUFFER, self.tune.send_max));
    }
}
