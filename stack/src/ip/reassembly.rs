//! Reassembly of IPv4 fragments (RFC 791 §3.2, RFC 815, RFC 1122 §3.3.2).
//!
//! Policy, chosen to match Linux after its FragmentSmack fixes:
//! - fragments may arrive in any order;
//! - a fragment that exactly repeats one already held is dropped alone;
//! - any other overlap discards the whole datagram (no "first wins" games,
//!   which is how overlapping-fragment attacks slip past filters);
//! - a datagram that would exceed 65535 bytes, or whose fragments disagree
//!   on where it ends, is discarded;
//! - a non-final fragment whose length is not a multiple of 8 is trimmed to
//!   one, as Linux does;
//! - each datagram has `timeout` (30 s, Linux's `ipfrag_time`) from its first
//!   fragment; on expiry, if its first fragment had arrived, the caller is
//!   handed a quote for an ICMP "reassembly time exceeded";
//! - memory is charged by buffer capacity and capped in total; when a new
//!   fragment would pass the cap, the oldest datagrams are evicted first.

#![forbid(unsafe_code)]

use crate::rand::SeededState;
use crate::stats::Stats;
use crate::time::{Duration, Instant};
use crate::wire::ipv4::Ipv4Packet;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

/// Limits on reassembly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// How long a datagram may take to complete, from its first fragment.
    pub timeout: Duration,
    /// Memory held by all incomplete datagrams together, in bytes.
    pub max_memory: usize,
}

impl Default for ReassemblyConfig {
    /// Linux's defaults: 30 s, 4 MiB (`ipfrag_time`, `ipfrag_high_thresh`).
    fn default() -> ReassemblyConfig {
        ReassemblyConfig {
            timeout: Duration::from_secs(30),
            max_memory: 4 << 20,
        }
    }
}

/// RFC 791: fragments of one datagram share source, destination, protocol and ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

/// Bookkeeping cost charged per datagram on top of its buffers.
const OVERHEAD: usize = 128;

#[derive(Debug)]
struct Pending {
    /// Header of the fragment at offset 0, once it has arrived.
    first_header: Vec<u8>,
    /// Payload bytes at their offsets; holes are zero until filled.
    data: Vec<u8>,
    /// Received byte ranges `[start, end)`, disjoint, sorted by start.
    ranges: Vec<(usize, usize)>,
    /// Payload length, known once the last fragment (MF = 0) arrives.
    total: Option<usize>,
    /// Bytes covered by `ranges`.
    received: usize,
    /// Distinguishes this datagram from an earlier one with the same key.
    generation: u64,
    charge: usize,
}

impl Pending {
    fn cost(&self) -> usize {
        OVERHEAD + self.first_header.capacity() + self.data.capacity() + self.ranges.capacity() * 16
    }
}

/// A datagram rebuilt from its fragments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembled {
    /// The header of the first fragment, as received.
    pub header: Vec<u8>,
    /// The whole payload.
    pub payload: Vec<u8>,
}

/// The start of a datagram that timed out: its first fragment's header and
/// the first bytes of its payload, for an ICMP time-exceeded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedOut {
    /// Source of the datagram (where the ICMP error goes).
    pub src: Ipv4Addr,
    /// Header followed by up to 8 bytes... or more, of payload.
    pub quote: Vec<u8>,
}

/// Holds incomplete datagrams until they complete, time out, or are evicted.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    pending: HashMap<Key, Pending, SeededState>,
    /// Keys in arrival order of their first fragment: deadlines ascend, and
    /// the front is the oldest. Entries whose generation no longer matches
    /// are stale and skipped.
    order: VecDeque<(Key, u64, Instant)>,
    next_generation: u64,
    memory: usize,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(config: ReassemblyConfig, hasher: SeededState) -> Reassembler {
        Reassembler {
            config,
            pending: HashMap::with_hasher(hasher),
            order: VecDeque::new(),
            next_generation: 0,
            memory: 0,
        }
    }

    /// Bytes currently charged to incomplete datagrams.
    #[doc(hidden)]
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// Whether no datagram is waiting for fragments.
    #[doc(hidden)]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The earliest deadline of any incomplete datagram.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(_, _, d)| *d)
    }

    fn remove(&mut self, key: &Key) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        self.memory -= p.charge;
        self.drop_stale_front();
        Some(p)
    }

    fn drop_stale_front(&mut self) {
        while let Some((k, g, _)) = self.order.front() {
            match self.pending.get(k) {
                Some(p) if p.generation == *g => break,
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Adds one fragment; returns the datagram if this fragment completed it.
    pub fn insert(&mut self, now: Instant, pkt: &Ipv4Packet<'_>, stats: &mut Stats) -> Option<Reassembled> {
        stats.frag_rx_fragments += 1;
        let key = Key {
            src: pkt.header.src,
            dst: pkt.header.dst,
            protocol: pkt.header.protocol,
            ident: pkt.header.ident,
        };
        let offset = pkt.header.frag_offset;
        let last = !pkt.header.more_fragments;
        let mut len = pkt.payload().len();
        if !last {
            len &= !7; // RFC 791: non-final fragments carry multiples of 8 bytes; trim as Linux does.
        }
        let end = offset + len;
        let header_len = pkt.header_bytes().len();

        if end + header_len > crate::ip::MAX_DATAGRAM {
            stats.frag_bad_length += 1;
            self.remove(&key);
            return None;
        }
        if len == 0 && !last {
            stats.frag_bad_length += 1;
            return None;
        }

        if !self.pending.contains_key(&key) {
            let generation = self.next_generation;
            self.next_generation += 1;
            let deadline = now + self.config.timeout;
            let p = Pending {
                first_header: Vec::new(),
                data: Vec::new(),
                ranges: Vec::new(),
                total: None,
                received: 0,
                generation,
                charge: OVERHEAD,
            };
            self.memory += p.charge;
            self.pending.insert(key, p);
            self.order.push_back((key, generation, deadline));
        }
        let p = self.pending.get_mut(&key).expect("just inserted");

        // The end of the datagram must be consistent across fragments.
        let max_seen = p.ranges.last().map_or(0, |r| r.1);
        let bad_end = if last {
            p.total.is_some_and(|t| t != end) || max_seen > end
        } else {
            p.total.is_some_and(|t| end > t)
        };
        if bad_end {
            stats.frag_bad_length += 1;
            self.remove(&key);
            return None;
        }

        // Overlap check against neighbours in the sorted, disjoint range list.
        let idx = p.ranges.partition_point(|r| r.0 < offset);
        if p.ranges.get(idx) == Some(&(offset, end)) {
            stats.frag_duplicates += 1;
            return None;
        }
        let overlaps_prev = idx > 0 && p.ranges[idx - 1].1 > offset;
        let overlaps_next = p.ranges.get(idx).is_some_and(|r| r.0 < end);
        if overlaps_prev || overlaps_next {
            stats.frag_overlaps += 1;
            self.remove(&key);
            return None;
        }

        if last {
            p.total = Some(end);
            p.data.reserve_exact(end.saturating_sub(p.data.len()));
        }
        if p.data.len() < end {
            p.data.resize(end, 0);
        }
        p.data[offset..end].copy_from_slice(&pkt.payload()[..len]);
        p.ranges.insert(idx, (offset, end));
        p.received += len;
        if offset == 0 {
            p.first_header = pkt.header_bytes().to_vec();
        }
        let new_charge = p.cost();
        self.memory = self.memory - p.charge + new_charge;
        p.charge = new_charge;

        if p.total == Some(p.received) {
            let p = self.remove(&key).expect("present");
            stats.frag_reassembled += 1;
            let mut payload = p.data;
            payload.truncate(p.received);
            return Some(Reassembled {
                header: p.first_header,
                payload,
            });
        }

        // Stay under the memory cap: evict the oldest datagrams first.
        while self.memory > self.config.max_memory {
            let Some(&(oldest, _, _)) = self.order.front() else {
                break;
            };
            stats.frag_evicted += 1;
            self.remove(&oldest);
        }
        None
    }

    /// Discards datagrams whose deadline has passed; returns quotes for the
    /// ones whose first fragment had arrived (RFC 792: time exceeded, code 1).
    pub fn expire(&mut self, now: Instant, stats: &mut Stats) -> Vec<TimedOut> {
        let mut out = Vec::new();
        while let Some(&(key, _, deadline)) = self.order.front() {
            if deadline > now {
                break;
            }
            let p = self.remove(&key).expect("front is never stale");
            stats.frag_timeouts += 1;
            if !p.first_header.is_empty() {
                let first_len = p.ranges.first().map_or(0, |r| r.1).min(8);
                let mut quote = p.first_header;
                quote.extend_from_slice(&p.data[..first_len]);
                out.push(TimedOut { src: key.src, quote });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;
    use crate::wire::ipv4::{HEADER_LEN, Ipv4Header};

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

    fn reassembler(max_memory: usize) -> Reassembler {
        let config = ReassemblyConfig {
            timeout: Duration::from_secs(30),
            max_memory,
        };
        Reassembler::new(config, SeededState::from_rng(&mut Rng::new(1)))
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    /// One fragment of datagram `ident`, carrying `data[offset..end]`.
    fn frag(ident: u16, data: &[u8], offset: usize, end: usize, more: bool) -> Vec<u8> {
        let mut h = Ipv4Header::new(SRC, DST, 1, 64, ident, end - offset);
        h.frag_offset = offset;
        h.more_fragments = more;
        let mut v = vec![0u8; HEADER_LEN + end - offset];
        h.emit(&mut v);
        v[HEADER_LEN..].copy_from_slice(&data[offset..end]);
        v
    }

    /// Splits `data` into fragments of `size` bytes (size a multiple of 8).
    fn fragments(ident: u16, data: &[u8], size: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < data.len() {
            let end = (off + size).min(data.len());
            out.push(frag(ident, data, off, end, end < data.len()));
            off = end;
        }
        out
    }

    fn feed(r: &mut Reassembler, now: Instant, pkts: &[Vec<u8>], stats: &mut Stats) -> Vec<Reassembled> {
        pkts.iter()
            .filter_map(|p| r.insert(now, &Ipv4Packet::parse(p).unwrap(), stats))
            .collect()
    }

    #[test]
    fn in_order() {
        let data = payload(8000);
        let mut r = reassembler(1 << 20);
        let mut s = Stats::default();
        let done = feed(&mut r, Instant::ZERO, &fragments(1, &data, 1480), &mut s);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].payload, data);
        assert_eq!(done[0].header.len(), 20);
        assert!(r.is_empty());
        assert_eq!(r.memory(), 0);
        assert_eq!(r.next_deadline(), None);
        assert_eq!(s.frag_reassembled, 1);
    }

    #[test]
    fn reverse_order() {
        let data = payload(60_000);
        let mut frags = fragments(2, &data, 1480);
        frags.reverse();
        let mut r = reassembler(1 << 20);
        let mut s = Stats::default();
        let done = feed(&mut r, Instant::ZERO, &frags, &mut s);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].payload, data);
    }

    #[test]
    fn shuffled_and_interleaved_datagrams() {
        let a = payload(5000);
        let b: Vec<u8> = payload(3001).iter().map(|x| x ^ 0xaa).collect();
        let mut frags: Vec<Vec<u8>> = fragments(10, &a, 512)
            .into_iter()
            .chain(fragments(11, &b, 256))
            .collect();
        let mut rng = Rng::new(99);
        for i in (1..frags.len()).rev() {
            frags.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut r = reassembler(1 << 20);
        let mut s = Stats::default();
        let mut done = feed(&mut r, Instant::ZERO, &frags, &mut s);
        done.sort_by_key(|d| d.payload.len());
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].payload, b);
        assert_eq!(done[1].payload, a);
    }

    #[test]
    fn exact_duplicate_is_dropped_alone() {
        let data = payload(3000);
        let f = fragments(3, &data, 1000);
        let mut r = reassembler(1 << 20);
        let mut s = Stats::default();
        let done = feed(
            &mut r,
            Instant::ZERO,
            &[f[0].clone(), f[0].clone(), f[1].clone(), f[1].clone(), f[2].clone()],
            &mut s,
        );
        assert_eq!(s.frag_duplicates, 2);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].payload, data);
    }

    #[test]
    fn overlap_discards_the_whole_datagram() {
        let data = payload(3000);
        let mut r = reassembler(1 << 20);
        let mut s = Stats::default();
        // [0,1000) then [992,2000): overlapping by 8 bytes.
        let pkts = [frag(4, &data, 0, 1000, true), frag(4, &data, 992, 2000, true)];
        assert!(feed(&mut r, Instant::ZERO, &pkts, &mut s).is_empty());
        assert_eq!(s.frag_overlaps, 1);
        assert!(r.is_empty(), "overlap must discard the datagram");
        // The remaining fragment cannot complete anything.
        assert!(feed(&mut r, Instant::ZERO, &[frag(4, &data, 2000, 3000, false)], &mut s).is_empty());
        // A fragment inside another (not an exact repeat) is an overlap too.
        let mut r = reassembler(1 << 20);
        let pkts = [frag(5, &data, 0, 2000, true), frag(5, &data, 1000, 1504, true)];
        assert!(feed(&mut r, Instant::ZERO, &pkts, &mut s).is_empty());
        assert_eq!(s.frag_overlaps, 2);
        assert!(r.is_empty());
    }

    #[test]
    fn oversized_datagram_is_discarded() {
        // Offset 65528 with 16 bytes: the "ping of death".
        let data = payload(65_600);
        let mut r = reassembler(1 << 20);
        let mut s = Stats::default();
        let pkts = [frag(6, &data, 0, 8, true), frag(6, &data, 65_528, 65_544, false)];
        assert!(feed(&mut r, Instant::ZERO, &pkts, &mut s).is_empty());
        assert_eq!(s.frag_bad_length, 1);
        assert!(r.is_empty());
    }

    #[test]
    fn conflicting_ends_discard_the_datagram() {
        let data = payload(4000);
        let mut r = reassembler(1 << 20);
        let mut s = Stats::default();
        let pkts = [frag(7, &data, 2000, 3000, false), frag(7, &data, 3000, 4000, true)];
        assert!(feed(&mut r, Instant::ZERO, &pkts, &mut s).is_empty());
        assert_eq!(s.frag_bad_length, 1);
        assert!(r.is_empty());
    }

    #[test]
    fn timeout_discards_and_quotes_the_first_fragment() {
        let data = payload(3000);
        let mut r = reassembler(1 << 20);
        let mut s = Stats::default();
        let t0 = Instant::from_secs(100);
        feed(&mut r, t0, &[frag(8, &data, 0, 1000, true)], &mut s);
        feed(
            &mut r,
            t0 + Duration::from_secs(1),
            &[frag(9, &data, 1000, 2000, true)],
            &mut s,
        );
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(30)));
        assert!(r.expire(t0 + Duration::from_millis(29_999), &mut s).is_empty());
        let out = r.expire(t0 + Duration::from_secs(30), &mut s);
        assert_eq!(out.len(), 1, "datagram 8 had its first fragment");
        assert_eq!(out[0].src, SRC);
        assert_eq!(out[0].quote.len(), 28);
        assert_eq!(&out[0].quote[20..], &data[..8]);
        // Datagram 9 never got its first fragment: it expires silently.
        assert!(r.expire(t0 + Duration::from_secs(31), &mut s).is_empty());
        assert_eq!(s.frag_timeouts, 2);
        assert!(r.is_empty());
        assert_eq!(r.memory(), 0);
        // A late fragment starts a fresh datagram, which cannot complete alone.
        assert!(
            feed(
                &mut r,
                t0 + Duration::from_secs(40),
                &[frag(8, &data, 1000, 3000, false)],
                &mut s
            )
            .is_empty()
        );
    }

    #[test]
    fn memory_cap_evicts_oldest_first() {
        let data = payload(20_000);
        let mut r = reassembler(64 * 1024);
        let mut s = Stats::default();
        // Each datagram holds ~20 KB once its last fragment arrives.
        for id in 0..10u16 {
            feed(
                &mut r,
                Instant::from_secs(u64::from(id)),
                &[frag(id, &data, 18_000, 20_000, false)],
                &mut s,
            );
            assert!(r.memory() <= 64 * 1024, "memory {} over cap", r.memory());
        }
        assert!(s.frag_evicted >= 6, "evicted {}", s.frag_evicted);
        // The newest datagram survived and still completes.
        let done = feed(
            &mut r,
            Instant::from_secs(10),
            &[frag(9, &data, 0, 18_000, true)],
            &mut s,
        );
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].payload, data);
        // The oldest did not.
        assert!(
            feed(
                &mut r,
                Instant::from_secs(10),
                &[frag(0, &data, 0, 18_000, true)],
                &mut s
            )
            .is_empty()
        );
    }

    #[test]
    fn non_final_fragment_is_trimmed_to_a_multiple_of_eight() {
        let data = payload(2000);
        let mut r = reassembler(1 << 20);
        let mut s = Stats::default();
        // 1003 bytes at offset 0: trimmed to 1000; the next starts at 1000.
        let pkts = [frag(12, &data, 0, 1003, true), frag(12, &data, 1000, 2000, false)];
        let done = feed(&mut r, Instant::ZERO, &pkts, &mut s);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].payload, data);
    }
}
