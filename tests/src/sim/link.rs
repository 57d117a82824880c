//! The simulated link: latency, bandwidth, seeded impairments, virtual time.

use super::Endpoint;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use tunstack::device::impair::{ImpairConfig, Impairer};
use tunstack::rand::Rng;
use tunstack::wire::ipv4::Ipv4Packet;
use tunstack::wire::tcp::{TcpSegment, flags};
use tunstack::{Duration, Instant};

/// One end of the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The first endpoint.
    A,
    /// The second endpoint.
    B,
}

impl Side {
    pub(crate) fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// How the simulated link behaves (each direction separately, same settings).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Bytes per second; `None` means no serialisation delay.
    pub bandwidth: Option<u64>,
    /// Bytes that may wait for serialisation before the link drops (drop-tail);
    /// only with a bandwidth.
    pub queue_limit: Option<usize>,
    /// Probability a packet is lost.
    pub loss: f64,
    /// Probability a packet is delivered twice.
    pub duplicate: f64,
    /// Probability a packet (copy) is held back by up to `reorder_delay`.
    pub reorder: f64,
    /// Largest extra delay of a reordered packet.
    pub reorder_delay: Duration,
    /// Probability one random byte of a packet (copy) is changed.
    pub corrupt: f64,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            latency: Duration::from_millis(10),
            bandwidth: None,
            queue_limit: None,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
            corrupt: 0.0,
        }
    }
}

impl fmt::Display for LinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "latency {:?}", self.latency)?;
        match self.bandwidth {
            Some(bw) => write!(f, ", bandwidth {bw} B/s")?,
            None => write!(f, ", bandwidth unlimited")?,
        }
        if let Some(q) = self.queue_limit {
            write!(f, ", queue {q} B")?;
        }
        write!(
            f,
            ", loss {:.1}%, dup {:.1}%, reorder {:.1}% (<= {:?}), corrupt {:.1}%",
            self.loss * 100.0,
            self.duplicate * 100.0,
            self.reorder * 100.0,
            self.reorder_delay,
            self.corrupt * 100.0
        )
    }
}

/// What the link did, per direction where it matters (index 0: A to B).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets handed to the link.
    pub sent: [u64; 2],
    /// Packets (copies) delivered.
    pub delivered: [u64; 2],
    /// Bytes delivered.
    pub delivered_bytes: [u64; 2],
    /// Packets lost at random.
    pub lost: u64,
    /// Packets dropped by a full queue.
    pub queue_drops: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Copies held back.
    pub reordered: u64,
    /// Copies with a changed byte.
    pub corrupted: u64,
}

/// A packet on its way.
#[derive(Debug)]
pub(crate) struct InFlight {
    at: Instant,
    seq: u64,
    to: Side,
    data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed: the earliest delivery (then the earliest sent) is the heap's top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A simulated point-to-point link with a virtual clock. What happens to
/// each packet is decided by the same [`Impairer`] the daemon's impairment
/// layer uses (one per direction), driven by virtual time.
#[derive(Debug)]
pub struct SimLink {
    cfg: LinkConfig,
    impairers: [Impairer; 2],
    queue: BinaryHeap<InFlight>,
    next_seq: u64,
    scratch: Vec<(Instant, Vec<u8>)>,
    /// What the link did.
    pub stats: LinkStats,
    /// Print each packet's fate.
    pub trace: bool,
    /// Packets taken from an endpoint by `send_all` (kept for its allocation).
    outbox: Vec<Vec<u8>>,
}

impl SimLink {
    /// A link whose every random choice comes from `seed`.
    pub fn new(cfg: LinkConfig, seed: u64) -> SimLink {
        let impair = ImpairConfig {
            loss: cfg.loss,
            duplicate: cfg.duplicate,
            reorder: cfg.reorder,
            reorder_hold: cfg.reorder_delay,
            corrupt: cfg.corrupt,
            delay: cfg.latency,
            jitter: Duration::ZERO,
            rate_bps: cfg.bandwidth.filter(|b| *b > 0).map(|b| b * 8),
            queue_limit: usize::MAX,
            queue_limit_bytes: cfg.queue_limit,
        };
        let mut rng = Rng::new(seed);
        let impairers = [
            Impairer::new(impair, rng.next_u64()),
            Impairer::new(impair, rng.next_u64()),
        ];
        SimLink {
            cfg,
            impairers,
            queue: BinaryHeap::new(),
            next_seq: 0,
            scratch: Vec::new(),
            stats: LinkStats::default(),
            trace: false,
            outbox: Vec::new(),
        }
    }

    /// Hands every packet due by `now` to its endpoint.
    pub fn deliver_due(&mut self, now: Instant, a: &mut dyn Endpoint, b: &mut dyn Endpoint) {
        while let Some((to, pkt)) = self.pop_due(now) {
            match to {
                Side::A => a.handle_packet(now, &pkt),
                Side::B => b.handle_packet(now, &pkt),
            }
        }
    }

    /// Puts on the link everything `ep`, at side `from`, has to send at `now`.
    pub fn send_all(&mut self, now: Instant, from: Side, ep: &mut dyn Endpoint) {
        let mut out = std::mem::take(&mut self.outbox);
        ep.poll_transmit(now, &mut out);
        for p in out.drain(..) {
            self.send(now, from, p);
        }
        self.outbox = out;
    }

    /// The link's settings.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// `from` transmits `packet` at `now`.
    pub fn send(&mut self, now: Instant, from: Side, packet: Vec<u8>) {
        let dir = from.index();
        self.stats.sent[dir] += 1;
        let imp = &mut self.impairers[dir];
        let before = imp.stats();
        imp.admit(now, &packet, &mut self.scratch);
        let after = imp.stats();
        self.stats.lost += after.lost - before.lost;
        self.stats.queue_drops += after.queue_drops - before.queue_drops;
        self.stats.duplicated += after.duplicated - before.duplicated;
        self.stats.reordered += after.reordered - before.reordered;
        self.stats.corrupted += after.corrupted - before.corrupted;
        if self.trace {
            let fate = if after.lost > before.lost {
                Some("LOST")
            } else if after.queue_drops > before.queue_drops {
                Some("QUEUE DROP")
            } else if after.corrupted > before.corrupted {
                Some("CORRUPTED")
            } else {
                None
            };
            if let Some(fate) = fate {
                println!("{now} {from:?}->{:?} {fate} {}", from.peer(), describe_packet(&packet));
            }
        }
        for (at, data) in self.scratch.drain(..) {
            self.queue.push(InFlight {
                at,
                seq: self.next_seq,
                to: from.peer(),
                data,
            });
            self.next_seq += 1;
        }
    }

    /// When the next packet arrives, if any is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|p| p.at)
    }

    /// The next packet due by `now`, with the side it goes to.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Side, Vec<u8>)> {
        if self.queue.peek()?.at > now {
            return None;
        }
        let p = self.queue.pop().expect("peeked");
        let dir = p.to.peer().index();
        self.stats.delivered[dir] += 1;
        self.stats.delivered_bytes[dir] += p.data.len() as u64;
        Some((p.to, p.data))
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}

/// Whether `p` is an intact IPv4 TCP segment (both checksums verify) with RST set.
pub fn is_valid_rst(p: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::parse(p) else { return false };
    ip.header.protocol == tunstack::ip::protocol::TCP
        && TcpSegment::parse(ip.payload(), ip.header.src, ip.header.dst).is_ok_and(|s| s.has(flags::RST))
}

/// A one-line summary of an IPv4/TCP packet, for traces: flags, seq, ack, window, length.
pub fn describe_packet(p: &[u8]) -> String {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return format!("non-IPv4 ({} bytes)", p.len());
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if p[9] != 6 || p.len() < ihl + 20 || ihl < 20 {
        return format!("proto {} ({} bytes)", p[9], p.len());
    }
    let t = &p[ihl..];
    let be32 = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
    let off = usize::from(t[12] >> 4) * 4;
    let fl = t[13];
    let mut flags = String::new();
    for (bit, c) in [(0x02, 'S'), (0x10, '.'), (0x08, 'P'), (0x01, 'F'), (0x04, 'R')] {
        if fl & bit != 0 {
            flags.push(c);
        }
    }
    let len = total.saturating_sub(ihl + off);
    format!(
        "{}->{} [{flags}] seq {} ack {} win {} len {len}",
        u16::from_be_bytes([t[0], t[1]]),
        u16::from_be_bytes([t[2], t[3]]),
        be32(4),
        be32(8),
        u16::from_be_bytes([t[14], t[15]]),
    )
}
