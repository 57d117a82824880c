//! TIME-WAIT (RFC 9293 §3.10.7.4, RFC 6191): what a closed connection
//! keeps for 2×MSL, compact and apart from live connections, as Linux's
//! `inet_timewait_sock`: no buffers, no timers but one, no congestion or
//! loss-recovery state; only what it takes to acknowledge a retransmitted
//! FIN, answer old duplicates and judge a new SYN. The table is capped
//! (`TcpConfig::max_tw_buckets`): beyond it a connection is just freed.

#![forbid(unsafe_code)]

use super::input::{OOW_ACK_INTERVAL, PAWS_WINDOW};
use super::output::send_bare;
use super::{FourTuple, TcpLayer};
use crate::ip::context::Context;
use crate::rand::SeededState;
use crate::socket::Handle;
use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;
use crate::wire::tcp::{TcpOptions, TcpSegment, flags};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// One connection in TIME-WAIT.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimeWait {
    /// Our SND.NXT: past our FIN.
    pub snd_nxt: SeqNum,
    /// The peer's RCV.NXT: past its FIN.
    pub rcv_nxt: SeqNum,
    /// The window field of our last ACK (already scaled down).
    pub window: u16,
    /// Timestamps, if the connection used them.
    pub ts: Option<TwTimestamps>,
    /// When 2×MSL is over (restarted by a retransmitted FIN).
    expires: Instant,
    /// Tells this entry from an earlier one of the same 4-tuple in the heap.
    id: u64,
    /// When we last answered a segment outside the window (RFC 7323 §5.3 rate limit).
    last_oow_ack: Option<Instant>,
}

/// What TIME-WAIT remembers of the timestamps option (RFC 7323).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TwTimestamps {
    /// TS.Recent, the peer's latest TSval.
    pub recent: u32,
    /// When TS.Recent was taken.
    pub recent_at: Instant,
    /// Our offset added to the millisecond clock for TSval.
    pub offset: u32,
}

/// What a segment to a TIME-WAIT 4-tuple leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TwVerdict {
    /// No entry for the 4-tuple.
    NotFound,
    /// Handled here (acknowledged, ignored, or the entry killed by a RST).
    Done,
    /// A new SYN beyond the old connection: the entry is gone, the SYN
    /// goes to the listener, and the new connection's ISS is `isn`: past
    /// every sequence number the old one used (RFC 1122 §4.2.2.13(a);
    /// Linux's `tw_snd_nxt + 65535 + 2`).
    Reopen { isn: SeqNum },
}

/// How far past the old SND.NXT a reopened 4-tuple's ISS starts: a whole
/// unscaled window, as Linux.
pub(crate) const REOPEN_ISN_GAP: u32 = 65537;

/// The TIME-WAIT entries, by 4-tuple, with their deadlines.
#[derive(Debug)]
pub(crate) struct TimeWaitTable {
    entries: HashMap<FourTuple, TimeWait, SeededState>,
    /// Deadlines, earliest first; an entry whose id or deadline no longer
    /// matches is stale (killed, reused, or restarted and filed again).
    heap: BinaryHeap<Reverse<(Instant, u64, FourTuple)>>,
    next_id: u64,
}

impl TimeWaitTable {
    /// An empty table.
    pub(crate) fn new(hasher: SeededState) -> TimeWaitTable {
        TimeWaitTable {
            entries: HashMap::with_hasher(hasher),
            heap: BinaryHeap::new(),
            next_id: 0,
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of `tuple`, if it is in TIME-WAIT.
    pub(crate) fn get(&self, tuple: &FourTuple) -> Option<&TimeWait> {
        self.entries.get(tuple)
    }

    /// Every entry.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&FourTuple, &TimeWait)> {
        self.entries.iter()
    }

    /// Forgets `tuple` (a new connection takes it).
    pub(crate) fn remove(&mut self, tuple: &FourTuple) {
        self.entries.remove(tuple);
    }

    /// Files `tw` under `tuple` for 2×MSL (`linger`) from `now`; false,
    /// and nothing kept, when the table already holds `cap` entries.
    pub(crate) fn insert(
        &mut self,
        tuple: FourTuple,
        mut tw: TimeWait,
        now: Instant,
        linger: Duration,
        cap: usize,
    ) -> bool {
        if self.entries.len() >= cap && !self.entries.contains_key(&tuple) {
            return false;
        }
        tw.id = self.next_id;
        self.next_id += 1;
        tw.expires = now + linger;
        self.heap.push(Reverse((tw.expires, tw.id, tuple)));
        self.entries.insert(tuple, tw);
        // Entries killed early (a RST, a reopen, a reuse) leave stale
        // deadlines behind; past twice the live ones, the heap is rebuilt,
        // so its size follows the table's cap, not the rate of TIME-WAITs.
        if self.heap.len() > 2 * self.entries.len() + 64 {
            self.heap = self
                .entries
                .iter()
                .map(|(t, tw)| Reverse((tw.expires, tw.id, *t)))
                .collect();
        }
        true
    }

    /// The earliest deadline (perhaps of a stale heap entry: waking for it is harmless).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Drops every entry whose 2×MSL is over.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, id, tuple))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(tw) = self.entries.get(&tuple) else { continue };
            if tw.id != id {
                continue;
            }
            if tw.expires <= now {
                log::debug!("tcp {} -> {}: TIME_WAIT -> CLOSED", tuple.local, tuple.remote);
                self.entries.remove(&tuple);
            } else {
                // Restarted by a retransmitted FIN: filed again.
                self.heap.push(Reverse((tw.expires, id, tuple)));
            }
        }
    }

    /// RFC 9293 §3.10.7.4 in TIME-WAIT, with Linux's choices
    /// (`tcp_timewait_state_process`): a retransmitted FIN is acknowledged
    /// again and restarts 2×MSL; a RST at RCV.NXT ends TIME-WAIT (RFC 1337's
    /// hazard accepted, as Linux's default); a new SYN past the old
    /// sequence space (or with a newer timestamp) may reopen the 4-tuple if
    /// someone listens; a bare ACK at RCV.NXT is absorbed; anything else is
    /// an old duplicate, answered with a rate-limited ACK.
    pub(crate) fn input(
        &mut self,
        cx: &mut Context<'_>,
        tuple: FourTuple,
        seg: &TcpSegment<'_>,
        listening: bool,
        linger: Duration,
    ) -> TwVerdict {
        let Some(tw) = self.entries.get_mut(&tuple) else {
            return TwVerdict::NotFound;
        };
        let now = cx.now();
        let tsval = seg.options.timestamps.filter(|_| tw.ts.is_some()).map(|(v, _)| v);
        let paws_reject = match (tw.ts, tsval) {
            (Some(ts), Some(v)) => ts.recent.wrapping_sub(v) as i32 > PAWS_WINDOW,
            _ => false,
        };
        if seg.has(flags::RST) {
            if !paws_reject && seg.seq == tw.rcv_nxt {
                log::debug!("tcp {} -> {}: RST ends TIME_WAIT", tuple.local, tuple.remote);
                cx.stats().tcp_rx_resets += 1;
                self.entries.remove(&tuple);
            }
            return TwVerdict::Done;
        }
        if seg.flags & (flags::SYN | flags::ACK) == flags::SYN && !paws_reject {
            let newer = match (tw.ts, tsval) {
                (Some(ts), Some(v)) => (v.wrapping_sub(ts.recent) as i32) > 0,
                _ => seg.seq.gt(tw.rcv_nxt),
            };
            if newer && listening {
                log::debug!("tcp {} -> {}: new SYN reopens TIME_WAIT", tuple.local, tuple.remote);
                let isn = tw.snd_nxt + REOPEN_ISN_GAP;
                self.entries.remove(&tuple);
                return TwVerdict::Reopen { isn };
            }
        }
        if paws_reject {
            cx.stats().tcp_paws_dropped += 1;
        } else if seg.has(flags::FIN) && !seg.has(flags::SYN) && seg.seq + seg.payload.len() as u32 + 1 == tw.rcv_nxt {
            // The peer's FIN again: our last ACK was lost.
            tw.expires = now + linger;
            tw.send_ack(cx, tuple);
            return TwVerdict::Done;
        } else if seg.seq == tw.rcv_nxt && seg.seg_len() == 0 && seg.has(flags::ACK) {
            if let (Some(ts), Some(v)) = (tw.ts.as_mut(), tsval) {
                ts.recent = v;
                ts.recent_at = now;
            }
            return TwVerdict::Done;
        }
        if tw.last_oow_ack.is_some_and(|last| now < last + OOW_ACK_INTERVAL) {
            return TwVerdict::Done;
        }
        tw.last_oow_ack = Some(now);
        cx.stats().tcp_out_of_window += 1;
        tw.send_ack(cx, tuple);
        TwVerdict::Done
    }
}

impl TimeWait {
    /// What TIME-WAIT keeps of a connection.
    pub(crate) fn new(snd_nxt: SeqNum, rcv_nxt: SeqNum, window: u16, ts: Option<TwTimestamps>) -> TimeWait {
        TimeWait {
            snd_nxt,
            rcv_nxt,
            window,
            ts,
            expires: Instant::from_secs(0),
            id: 0,
            last_oow_ack: None,
        }
    }

    /// Acknowledges RCV.NXT, with the window and timestamps of the last ACK.
    fn send_ack(&self, cx: &mut Context<'_>, tuple: FourTuple) {
        let now = cx.now();
        let options = TcpOptions {
            timestamps: self
                .ts
                .map(|ts| ((now.total_millis() as u32).wrapping_add(ts.offset), ts.recent)),
            ..TcpOptions::default()
        };
        send_bare(
            cx,
            tuple,
            self.snd_nxt,
            Some(self.rcv_nxt),
            flags::ACK,
            self.window,
            options,
        );
    }
}

impl TcpLayer {
    /// Moves connection `h`, just come to TIME-WAIT, into the compact table
    /// (or lets it go if the table is full) and releases its block. An
    /// application still holding it sees it closed, as on Linux; what it
    /// has not read stays readable.
    pub(super) fn enter_time_wait(&mut self, cx: &mut Context<'_>, h: Handle) {
        let now = cx.now();
        let Some(t) = self.conns.get_mut(h) else { return };
        if std::mem::take(&mut t.ack_deferred) {
            // The ACK of the peer's FIN cannot wait for the end of the batch.
            t.ack_now = true;
            t.output(cx);
        }
        let tuple = FourTuple {
            local: t.local,
            remote: t.remote,
        };
        let window = t.rcv_wnd().div_ceil(1 << t.rcv_wscale).min(65535) as u16;
        let ts = t.ts_ok.then_some(TwTimestamps {
            recent: t.ts_recent,
            recent_at: t.ts_recent_at,
            offset: t.ts_offset,
        });
        let tw = TimeWait::new(t.snd_max, t.rcv_nxt, window, ts);
        t.send.release_if_empty();
        t.recv.release_if_empty();
        let linger = self.config.msl * 2;
        if !self
            .time_wait
            .insert(tuple, tw, now, linger, self.config.max_tw_buckets)
        {
            // Logged once per thousand, as Linux rate-limits its
            // "time wait bucket table overflow".
            let stats = cx.stats();
            stats.tcp_time_wait_overflows += 1;
            if stats.tcp_time_wait_overflows % 1000 == 1 {
                log::warn!(
                    "tcp {} -> {}: TIME_WAIT table full (--max-tw-buckets {}), freed at once",
                    tuple.local,
                    tuple.remote,
                    self.config.max_tw_buckets
                );
            }
        }
        self.release(cx, h, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port),
        }
    }

    /// Entries killed before their 2×MSL (a RST, a reopen, a reuse) leave
    /// stale deadlines; the heap is rebuilt before they outnumber the live
    /// entries twice over, however many come and go.
    #[test]
    fn stale_deadlines_stay_bounded_by_the_live_entries() {
        let mut table = TimeWaitTable::new(SeededState::from_rng(&mut Rng::new(1)));
        let now = Instant::from_secs(10);
        let linger = Duration::from_secs(60);
        let tw = || TimeWait::new(SeqNum(1), SeqNum(2), 100, None);
        for port in 1..=10 {
            assert!(table.insert(tuple(port), tw(), now, linger, 100));
        }
        for port in 1000..21_000 {
            assert!(table.insert(tuple(port), tw(), now, linger, 100));
            table.remove(&tuple(port));
            assert!(
                table.heap.len() <= 2 * (table.len() + 1) + 64,
                "{} stale",
                table.heap.len()
            );
        }
        assert_eq!(table.len(), 10);
        table.expire(now + linger);
        assert_eq!(table.len(), 0);
        assert!(table.heap.is_empty());
    }
}
