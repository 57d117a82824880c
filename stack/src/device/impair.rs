//! Network impairment, since this kernel has no netem: loss, duplication,
//! reordering, delay with jitter, corruption and a rate limit, seeded.
//!
//! [`Impairer`] decides what happens to each packet and when it leaves; it
//! reads no clock (time comes from the caller), so simulations can use it
//! with virtual time. [`ImpairedDevice`] applies it to a real device.

#![forbid(unsafe_code)]

use super::Device;
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
}

impl Impairer {
    /// An impairer whose random choices come from `seed`.
    pub fn new(cfg: ImpairConfig, seed: u64) -> Impairer {
        Impairer {
            cfg,
            rng: Rng::new(seed),
            link_free: Instant::ZERO,
            last_departure: Instant::ZERO,
            stats: ImpairStats::default(),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> ImpairStats {
        self.stats
    }

    /// Takes `packet` at `now`; appends to `out` each copy to deliver and its
    /// departure time (none if lost).
    pub fn admit(&mut self, now: Instant, packet: &[u8], out: &mut Vec<(Instant, Vec<u8>)>) {
        self.stats.packets += 1;
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        // Serialisation at the link rate, behind what is already queued.
        let mut leave = now;
        if let Some(bps) = self.cfg.rate_bps.filter(|b| *b > 0) {
            let start = self.link_free.max(now);
            let tx_time = Duration::from_nanos((packet.len() as u64 * 8).saturating_mul(1_000_000_000) / bps);
            let queued = start.saturating_duration_since(now);
            let per_packet = tx_time.max(Duration::from_micros(1));
            let full = match self.cfg.queue_limit_bytes {
                Some(limit) => {
                    let waiting = queued.as_nanos() * u128::from(bps) / 8_000_000_000;
                    waiting + packet.len() as u128 > limit as u128
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
        let mut copy = packet.to_vec();
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

/// A device whose packets pass through [`Impairer`]s on the way in and out.
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
}

impl<D: Device> Device for ImpairedDevice<D> {
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(p) = self.in_q.pop_due(now) {
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                return Ok(n);
            }
            let n = self.inner.recv(now, buf)?; // WouldBlock ends the loop
            match self.inbound.as_mut() {
                None => return Ok(n),
                Some(imp) => {
                    imp.admit(now, &buf[..n], &mut self.scratch);
                    for (at, p) in self.scratch.drain(..) {
                        self.in_q.push(at, p);
                    }
                }
            }
        }
    }

    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        let Some(imp) = self.outbound.as_mut() else {
            return self.inner.send(now, packet);
        };
        imp.admit(now, packet, &mut self.scratch);
        for (at, p) in self.scratch.drain(..) {
            self.out_q.push(at, p);
        }
        self.flush(now)
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
        }
        self.inner.flush(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        use crate::device::memory::MemoryLink;
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
}
