//! Network impairment, since this kernel has no netem: loss, duplication,
//! reordering, delay with jitter, corruption and a rate limit, seeded.
//!
//! [`Impairer`] decides what happens to each packet and when it leaves; it
//! reads no clock (time comes from the caller), so simulations can use it
//! with virtual time. [`ImpairedDevice`] applies it to a real device.
//!
//! With offloads (issue 16), impairment applies per MSS-sized segment: an
//! impaired direction cuts each TCP super-packet into the segments the
//! kernel would make of it ([`vnet::for_each_segment`], checksums
//! completed), and each is lost, delayed, reordered, duplicated or
//! corrupted on its own, then delivered as a plain packet. Inbound, that
//! means the stack verifies every checksum, so corruption is caught; a
//! 64 KiB super-packet is not lost or corrupted as a whole. A direction
//! without impairment passes super-packets and their metadata through.

#![forbid(unsafe_code)]

use super::Device;
use super::vnet::{self, VnetHeader};
use crate::rand::Rng;
use crate::time::{Duration, Instant};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::RawFd;

/// What to do to packets in one direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImpairConfig {
    /// Probability a packet is dropped.
    pub loss: f64,
    /// Probability a packet is sent twice.
    pub duplicate: f64,
    /// Probability a packet is held back so later ones overtake it.
    pub reorder: f64,
    /// Longest extra delay of a held-back packet (uniform from 1 µs).
    pub reorder_hold: Duration,
    /// Probability one byte of a packet is flipped.
    pub corrupt: f64,
    /// Delay added to every packet.
    pub delay: Duration,
    /// Up to this much more delay, uniformly at random (order kept unless reordered).
    pub jitter: Duration,
    /// Link rate in bits per second (serialisation delay, queueing); `None`: unlimited.
    pub rate_bps: Option<u64>,
    /// Packets that may wait in the rate limiter's queue; more are dropped (tail drop).
    pub queue_limit: usize,
    /// Instead of a packet count, bytes that may wait in the rate limiter's queue.
    pub queue_limit_bytes: Option<usize>,
}

impl Default for ImpairConfig {
    fn default() -> ImpairConfig {
        ImpairConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_hold: Duration::from_millis(5),
            corrupt: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_bps: None,
            queue_limit: 1000,
            queue_limit_bytes: None,
        }
    }
}

impl ImpairConfig {
    /// Whether this configuration changes anything.
    pub fn is_active(&self) -> bool {
        *self != ImpairConfig::default()
    }
}

/// Counts of what an [`Impairer`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Packets seen.
    pub packets: u64,
    /// Dropped at random.
    pub lost: u64,
    /// Dropped because the rate limiter's queue was full.
    pub queue_drops: u64,
    /// Sent twice.
    pub duplicated: u64,
    /// Held back to be overtaken.
    pub reordered: u64,
    /// Corrupted.
    pub corrupted: u64,
    /// Sent later than they came, by the delay, the jitter or the rate limit
    /// (a reordered packet's hold counts as reordering, not delay).
    pub delayed: u64,
}

impl ImpairStats {
    /// Every count as `(name, value)`, named as the fields are.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("packets", self.packets),
            ("lost", self.lost),
            ("queue_drops", self.queue_drops),
            ("duplicated", self.duplicated),
            ("reordered", self.reordered),
            ("corrupted", self.corrupted),
            ("delayed", self.delayed),
        ]
        .into_iter()
    }
}

/// What an [`ImpairedDevice`] did, each way (zeros for a direction it leaves alone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImpairCounts {
    /// Packets from the host to the stack.
    pub inbound: ImpairStats,
    /// Packets from the stack to the host.
    pub outbound: ImpairStats,
}

/// Decides the fate of packets in one direction.
#[derive(Debug)]
pub struct Impairer {
    cfg: ImpairConfig,
    rng: Rng,
    /// When the (rate-limited) link is free again.
    link_free: Instant,
    /// Departure time of the last packet not reordered: jitter never reorders.
    last_departure: Instant,
    stats: ImpairStats,
    /// Buffers of delivered packets, given back to hold the next ones.
    spare: Vec<Vec<u8>>,
}

/// Most buffers kept for reuse: enough for a burst, not a queue's worth.
const SPARE_BUFFERS: usize = 64;

impl Impairer {
    /// An impairer whose random choices come from `seed`.
    pub fn new(cfg: ImpairConfig, seed: u64) -> Impairer {
        Impairer {
            cfg,
            rng: Rng::new(seed),
            link_free: Instant::ZERO,
            last_departure: Instant::ZERO,
            stats: ImpairStats::default(),
            spare: Vec::new(),
        }
    }

    /// Takes back the buffer of a packet delivered, to hold a later one
    /// instead of allocating.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(buf);
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> ImpairStats {
        self.stats
    }

    /// Takes `packet` at `now`; appends to `out` each copy to deliver and its
    /// departure time (none if lost).
    pub fn admit(&mut self, now: Instant, packet: &[u8], out: &mut Vec<(Instant, Vec<u8>)>) {
        self.admit_parts(now, &[packet], out);
    }

    /// As [`admit`](Self::admit), for a packet given in parts (its headers
    /// and its payload), which the copy delivered joins.
    pub fn admit_parts(&mut self, now: Instant, parts: &[&[u8]], out: &mut Vec<(Instant, Vec<u8>)>) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.stats.packets += 1;
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        // Serialisation at the link rate, behind what is already queued.
        let mut leave = now;
        if let Some(bps) = self.cfg.rate_bps.filter(|b| *b > 0) {
            let start = self.link_free.max(now);
            let tx_time = Duration::from_nanos((len as u64 * 8).saturating_mul(1_000_000_000) / bps);
            let queued = start.saturating_duration_since(now);
            let per_packet = tx_time.max(Duration::from_micros(1));
            let full = match self.cfg.queue_limit_bytes {
                Some(limit) => {
                    let waiting = queued.as_nanos() * u128::from(bps) / 8_000_000_000;
                    waiting + len as u128 > limit as u128
                }
                None => queued > per_packet * self.cfg.queue_limit as u32,
            };
            if full {
                self.stats.queue_drops += 1;
                return;
            }
            self.link_free = start + tx_time;
            leave = self.link_free;
        }
        leave += self.cfg.delay;
        if !self.cfg.jitter.is_zero() {
            let j = self.rng.below(self.cfg.jitter.as_micros() as u64 + 1);
            leave += Duration::from_micros(j);
        }
        let reordered = self.rng.chance(self.cfg.reorder);
        if !reordered {
            leave = leave.max(self.last_departure);
            self.last_departure = leave;
        }
        if leave > now {
            self.stats.delayed += 1;
        }
        if reordered {
            // Held back long enough for the following packets to pass it.
            self.stats.reordered += 1;
            let max = self.cfg.reorder_hold.as_micros().max(1) as u64;
            let hold = Duration::from_micros(1 + self.rng.below(max));
            leave += hold;
        }
        let mut copy = self.spare.pop().unwrap_or_default();
        copy.clear();
        for part in parts {
            copy.extend_from_slice(part);
        }
        if !copy.is_empty() && self.rng.chance(self.cfg.corrupt) {
            self.stats.corrupted += 1;
            let at = self.rng.below(copy.len() as u64) as usize;
            copy[at] ^= 1 << self.rng.below(8);
        }
        if self.rng.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            out.push((leave, copy.clone()));
        }
        out.push((leave, copy));
    }
}

/// Packets waiting for their departure time, earliest first.
#[derive(Debug, Default)]
struct Delayed {
    heap: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    seq: u64,
}

impl Delayed {
    fn push(&mut self, at: Instant, p: Vec<u8>) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, p)));
    }

    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.heap.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            self.heap.pop().map(|Reverse((_, _, p))| p)
        } else {
            None
        }
    }

    fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }
}

/// Which way impairments apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Packets from the host to the stack.
    In,
    /// Packets from the stack to the host.
    Out,
    /// Both ways (independently).
    Both,
}

/// A device whose packets pass through [`Impairer`]s on the way in and out,
/// one MSS-sized segment at a time (see the module doc).
#[derive(Debug)]
pub struct ImpairedDevice<D> {
    inner: D,
    inbound: Option<Impairer>,
    outbound: Option<Impairer>,
    in_q: Delayed,
    out_q: Delayed,
    scratch: Vec<(Instant, Vec<u8>)>,
}

impl<D: Device> ImpairedDevice<D> {
    /// Wraps `inner`, impairing `direction` as `cfg` says, seeded by `seed`.
    pub fn new(inner: D, cfg: ImpairConfig, direction: Direction, seed: u64) -> ImpairedDevice<D> {
        let mk = |salt: u64| Some(Impairer::new(cfg, seed ^ salt));
        ImpairedDevice {
            inner,
            inbound: if direction != Direction::Out { mk(0x1d) } else { None },
            outbound: if direction != Direction::In { mk(0x0d) } else { None },
            in_q: Delayed::default(),
            out_q: Delayed::default(),
            scratch: Vec::new(),
        }
    }

    /// What the impairers did, inbound and outbound.
    pub fn stats(&self) -> ImpairCounts {
        ImpairCounts {
            inbound: self.inbound.as_ref().map(Impairer::stats).unwrap_or_default(),
            outbound: self.outbound.as_ref().map(Impairer::stats).unwrap_or_default(),
        }
    }

    /// Receives through `recv` from the device inside: straight through if
    /// inbound is not impaired, else cut into plain segments that wait
    /// their turn in the inbound queue.
    fn recv_with(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        mut recv: impl FnMut(&mut D, Instant, &mut [u8]) -> io::Result<(usize, VnetHeader)>,
    ) -> io::Result<(usize, VnetHeader)> {
        loop {
            if let Some(p) = self.in_q.pop_due(now) {
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                if let Some(imp) = self.inbound.as_mut() {
                    imp.recycle(p);
                }
                return Ok((n, VnetHeader::default()));
            }
            let (n, meta) = recv(&mut self.inner, now, buf)?; // WouldBlock ends the loop
            let Some(imp) = self.inbound.as_mut() else {
                return Ok((n, meta));
            };
            if let Err(e) = admit_segments(imp, now, &meta, &buf[..n], &[], &mut self.scratch) {
                log::debug!("impairment: inbound packet passes whole: {e}");
                return Ok((n, meta));
            }
            for (at, p) in self.scratch.drain(..) {
                self.in_q.push(at, p);
            }
        }
    }

    /// Queues what the outbound impairer let through and sends what is due.
    fn queue_out(&mut self, now: Instant) -> io::Result<()> {
        for (at, p) in self.scratch.drain(..) {
            self.out_q.push(at, p);
        }
        self.flush(now)
    }
}

/// Cuts a packet into plain MSS-sized segments with whole checksums and
/// admits each to `imp` on its own. A packet that cannot be cut (a GSO type
/// other than TCPv4, a header that does not fit it) is refused before any
/// segment is admitted; the caller passes it on whole, unimpaired.
fn admit_segments(
    imp: &mut Impairer,
    now: Instant,
    meta: &VnetHeader,
    header: &[u8],
    payload: &[u8],
    out: &mut Vec<(Instant, Vec<u8>)>,
) -> Result<usize, vnet::VnetError> {
    vnet::for_each_segment(meta, header, payload, |h, p| imp.admit_parts(now, &[h, p], out))
}

impl<D: Device> Device for ImpairedDevice<D> {
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        let plain = |d: &mut D, now, buf: &mut [u8]| d.recv(now, buf).map(|n| (n, VnetHeader::default()));
        self.recv_with(now, buf, plain).map(|(n, _)| n)
    }

    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        let Some(imp) = self.outbound.as_mut() else {
            return self.inner.send(now, packet);
        };
        imp.admit(now, packet, &mut self.scratch);
        self.queue_out(now)
    }

    fn send_parts(&mut self, now: Instant, header: &[u8], payload: &[u8]) -> io::Result<()> {
        let Some(imp) = self.outbound.as_mut() else {
            return self.inner.send_parts(now, header, payload);
        };
        imp.admit_parts(now, &[header, payload], &mut self.scratch);
        self.queue_out(now)
    }

    fn offloads(&self) -> bool {
        self.inner.offloads()
    }

    fn recv_meta(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<(usize, VnetHeader)> {
        self.recv_with(now, buf, D::recv_meta)
    }

    fn send_meta(&mut self, now: Instant, meta: &VnetHeader, header: &[u8], payload: &[u8]) -> io::Result<()> {
        let Some(imp) = self.outbound.as_mut() else {
            return self.inner.send_meta(now, meta, header, payload);
        };
        if let Err(e) = admit_segments(imp, now, meta, header, payload, &mut self.scratch) {
            log::debug!("impairment: outbound packet passes whole: {e}");
            return self.inner.send_meta(now, meta, header, payload);
        }
        self.queue_out(now)
    }

    fn readable_fd(&self) -> Option<RawFd> {
        self.inner.readable_fd()
    }

    fn impairment(&self) -> Option<ImpairCounts> {
        Some(self.stats())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mine = match (self.in_q.next(), self.out_q.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (mine, self.inner.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn flush(&mut self, now: Instant) -> io::Result<()> {
        while let Some(p) = self.out_q.pop_due(now) {
            if let Err(e) = self.inner.send(now, &p) {
                log::debug!("impaired send failed: {e}");
            }
            if let Some(imp) = self.outbound.as_mut() {
                imp.recycle(p);
            }
        }
        self.inner.flush(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::memory::MemoryLink;
    use crate::wire::ipv4::Ipv4Packet;
    use crate::wire::tcp::TcpSegment;
    use crate::wire::vnet::tests::{DST, SRC, super_packet};

    fn run(cfg: ImpairConfig, seed: u64, n: usize) -> (Vec<(Instant, Vec<u8>)>, ImpairStats) {
        let mut imp = Impairer::new(cfg, seed);
        let mut out = Vec::new();
        for i in 0..n {
            imp.admit(Instant::from_millis(i as u64), &(i as u32).to_be_bytes(), &mut out);
        }
        (out, imp.stats())
    }

    #[test]
    fn nothing_configured_changes_nothing() {
        let (out, s) = run(ImpairConfig::default(), 1, 100);
        assert_eq!(out.len(), 100);
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, (t, p))| *t == Instant::from_millis(i as u64) && p == &(i as u32).to_be_bytes())
        );
        assert_eq!(s.packets, 100);
        assert_eq!(s.delayed, 0);
        assert!(!ImpairConfig::default().is_active());
    }

    #[test]
    fn loss_duplication_and_corruption_happen_at_about_their_rates() {
        let cfg = ImpairConfig {
            loss: 0.1,
            duplicate: 0.05,
            corrupt: 0.02,
            ..ImpairConfig::default()
        };
        let (out, s) = run(cfg, 7, 20_000);
        assert!((1_700..2_300).contains(&s.lost), "{s:?}");
        assert!((700..1_100).contains(&s.duplicated), "{s:?}");
        assert!((250..550).contains(&s.corrupted), "{s:?}");
        assert_eq!(out.len() as u64, s.packets - s.lost + s.duplicated);
    }

    #[test]
    fn same_seed_same_fate() {
        let cfg = ImpairConfig {
            loss: 0.2,
            reorder: 0.2,
            jitter: Duration::from_millis(3),
            ..ImpairConfig::default()
        };
        assert_eq!(run(cfg, 42, 500).0, run(cfg, 42, 500).0);
        assert_ne!(run(cfg, 42, 500).0, run(cfg, 43, 500).0);
    }

    #[test]
    fn delay_and_jitter_keep_order_but_reorder_does_not() {
        let cfg = ImpairConfig {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            ..ImpairConfig::default()
        };
        let (out, s) = run(cfg, 3, 1000);
        assert_eq!(s.delayed, 1000, "every packet waits the fixed delay");
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0), "jitter alone keeps order");
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, (t, _))| *t >= Instant::from_millis(i as u64 + 10))
        );
        let cfg = ImpairConfig {
            reorder: 0.1,
            ..ImpairConfig::default()
        };
        let (out, s) = run(cfg, 3, 1000);
        let overtaken = out.windows(2).filter(|w| w[0].0 > w[1].0).count();
        assert!(s.reordered > 50 && overtaken > 0, "{s:?} {overtaken}");
        assert_eq!(s.delayed, 0, "a hold counts as reordering, not delay");
    }

    #[test]
    fn rate_limit_spaces_packets_and_tail_drops() {
        let cfg = ImpairConfig {
            rate_bps: Some(8_000_000), // 1 byte per µs
            queue_limit: 10,
            ..ImpairConfig::default()
        };
        let mut imp = Impairer::new(cfg, 1);
        let mut out = Vec::new();
        for _ in 0..20 {
            imp.admit(Instant::ZERO, &[0u8; 1000], &mut out);
        }
        assert_eq!(out[0].0, Instant::from_micros(1000));
        assert_eq!(out[1].0, Instant::from_micros(2000));
        assert!(imp.stats().queue_drops > 0 && out.len() < 20);
        assert_eq!(
            imp.stats().delayed,
            out.len() as u64,
            "serialisation delays each packet sent"
        );
    }

    #[test]
    fn the_device_reports_each_direction() {
        let (link, mut peer) = MemoryLink::pair().unwrap();
        let cfg = ImpairConfig {
            loss: 1.0,
            ..ImpairConfig::default()
        };
        let mut dev = ImpairedDevice::new(link, cfg, Direction::Out, 1);
        for _ in 0..3 {
            dev.send(Instant::ZERO, b"lost").unwrap();
        }
        peer.send(Instant::ZERO, b"kept").unwrap();
        let mut buf = [0u8; 16];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while dev.recv(Instant::ZERO, &mut buf).is_err() {
            assert!(std::time::Instant::now() < deadline, "the inbound packet never came");
        }
        let counts = dev.impairment().expect("an impaired device reports");
        assert_eq!((counts.outbound.packets, counts.outbound.lost), (3, 3));
        assert_eq!(counts.inbound, ImpairStats::default(), "inbound is left alone");
        assert_eq!(counts.outbound.iter().count(), 7);
        assert_eq!(Box::new(dev).impairment(), Some(counts), "a box forwards it");
    }

    /// Everything `dev` has for the stack now, with its metadata.
    fn drain(dev: &mut impl Device) -> Vec<(Vec<u8>, VnetHeader)> {
        let mut buf = vec![0u8; 65_536 + 64];
        let mut out = Vec::new();
        loop {
            match dev.recv_meta(Instant::ZERO, &mut buf) {
                Ok((n, meta)) => out.push((buf[..n].to_vec(), meta)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The TCP payloads of plain packets with valid checksums, joined.
    fn payloads(packets: &[(Vec<u8>, VnetHeader)]) -> Vec<u8> {
        let mut data = Vec::new();
        for (p, meta) in packets {
            assert!(meta.is_plain(), "delivered plain: {meta:?}");
            let ip = Ipv4Packet::parse(p).unwrap();
            let seg = TcpSegment::parse(ip.payload(), SRC, DST).expect("a whole checksum");
            assert_eq!(seg.payload.len(), 1000, "MSS-sized");
            data.extend_from_slice(seg.payload);
        }
        data
    }

    /// An impaired device over an offloading link, and the link's other end.
    fn offloading(cfg: ImpairConfig, direction: Direction) -> (ImpairedDevice<MemoryLink>, MemoryLink) {
        let (link, peer) = MemoryLink::pair_offloading().unwrap();
        let dev = ImpairedDevice::new(link, cfg, direction, 5);
        assert!(dev.offloads(), "forwarded from the device inside");
        (dev, peer)
    }

    #[test]
    fn an_impaired_direction_cuts_super_packets_into_plain_segments() {
        let (packet, meta) = super_packet(7 * 1000, 0, 1, 1);
        let (header, payload) = packet.split_at(20);
        let whole = &packet[52..];

        for direction in [Direction::Out, Direction::In] {
            let (mut dev, mut peer) = offloading(ImpairConfig::default(), direction);
            dev.send_meta(Instant::ZERO, &meta, header, payload).unwrap();
            peer.send_meta(Instant::ZERO, &meta, header, payload).unwrap();
            let (sent, received) = (drain(&mut peer), drain(&mut dev));
            let (cut, passed) = match direction {
                Direction::Out => (sent, received),
                _ => (received, sent),
            };
            assert_eq!(cut.len(), 7, "{direction:?}");
            assert_eq!(payloads(&cut), whole, "{direction:?}");
            // The other way is not impaired: the super-packet comes through as it was.
            assert_eq!(passed, [(packet.clone(), meta)], "{direction:?}");
            let counts = dev.stats();
            let (impaired, other) = match direction {
                Direction::Out => (counts.outbound, counts.inbound),
                _ => (counts.inbound, counts.outbound),
            };
            assert_eq!((impaired.packets, other.packets), (7, 0), "{direction:?}");
        }
    }

    #[test]
    fn loss_is_drawn_per_segment_both_ways() {
        let cfg = ImpairConfig {
            loss: 0.5,
            ..ImpairConfig::default()
        };
        let (packet, meta) = super_packet(10 * 1000, 0, 1, 1);
        let (header, payload) = packet.split_at(20);
        let (mut dev, mut peer) = offloading(cfg, Direction::Both);
        for _ in 0..4 {
            dev.send_meta(Instant::ZERO, &meta, header, payload).unwrap();
            peer.send_meta(Instant::ZERO, &meta, header, payload).unwrap();
        }
        let sent = drain(&mut peer);
        let received = drain(&mut dev);
        payloads(&sent);
        payloads(&received);
        let counts = dev.stats();
        for (way, stats, delivered) in [
            ("out", counts.outbound, sent.len()),
            ("in", counts.inbound, received.len()),
        ] {
            assert_eq!(stats.packets, 40, "{way}: one draw per segment");
            assert_eq!(delivered as u64, 40 - stats.lost, "{way}");
            // Whole super-packets lost would leave a multiple of 10.
            assert!(stats.lost > 0 && stats.lost % 10 != 0, "{way}: {stats:?}");
        }
    }

    #[test]
    fn corrupted_inbound_segments_come_plain_so_the_stack_checks_them() {
        let cfg = ImpairConfig {
            corrupt: 1.0,
            ..ImpairConfig::default()
        };
        let (packet, meta) = super_packet(5 * 1000, 0, 1, 1);
        let (mut dev, mut peer) = offloading(cfg, Direction::In);
        peer.send_meta(Instant::ZERO, &meta, &packet[..20], &packet[20..])
            .unwrap();
        let got = drain(&mut dev);
        assert_eq!(got.len(), 5);
        for (p, meta) in &got {
            assert!(meta.is_plain() && !meta.checksum_trusted());
            let valid = Ipv4Packet::parse(p).is_ok_and(|ip| TcpSegment::parse(ip.payload(), SRC, DST).is_ok());
            assert!(!valid, "a flipped bit is caught by a checksum");
        }
        assert_eq!(dev.stats().inbound.corrupted, 5);
    }

    #[test]
    fn what_cannot_be_cut_passes_whole_with_its_metadata() {
        let (packet, meta) = super_packet(3000, 0, 1, 1);
        let udp = VnetHeader {
            gso_type: vnet::GSO_UDP_L4,
            ..meta
        };
        let (mut dev, mut peer) = offloading(ImpairConfig::default(), Direction::Both);
        dev.send_meta(Instant::ZERO, &udp, &packet[..20], &packet[20..])
            .unwrap();
        assert_eq!(drain(&mut peer), [(packet.clone(), udp)]);
        peer.send_meta(Instant::ZERO, &udp, &packet[..20], &packet[20..])
            .unwrap();
        assert_eq!(drain(&mut dev), [(packet, udp)]);
        assert_eq!(dev.stats(), ImpairCounts::default(), "not impaired, not counted");
    }

    #[test]
    fn delivered_buffers_are_reused() {
        let cfg = ImpairConfig {
            delay: Duration::from_millis(1),
            ..ImpairConfig::default()
        };
        let mut imp = Impairer::new(cfg, 1);
        let mut out = Vec::new();
        imp.admit_parts(Instant::ZERO, &[b"head", b"er"], &mut out);
        let (_, buf) = out.pop().unwrap();
        assert_eq!(buf, b"header");
        let at = buf.as_ptr();
        imp.recycle(buf);
        imp.admit(Instant::ZERO, b"next", &mut out);
        assert_eq!((out[0].1.as_ptr(), &out[0].1[..]), (at, &b"next"[..]));
    }
}
