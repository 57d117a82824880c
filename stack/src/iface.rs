//! The interface: one IPv4 address on one link, and the sans-IO core behind it.

#![forbid(unsafe_code)]

use crate::icmp::{self, ErrorContext, RateLimiter};
use crate::ip::ident::IdGenerator;
use crate::ip::output::{QueueError, TxQueue};
use crate::ip::reassembly::{Reassembler, ReassemblyConfig};
use crate::ip::route::RouteTable;
use crate::ip::{self, Ipv4Cidr, is_martian_source};
use crate::rand::{Rng, SeededState};
use crate::stats::Stats;
use crate::tcp::{ListenerHandle, TcpConfig, TcpHandle, TcpLayer};
use crate::time::Instant;
use crate::udp::{UdpHandle, UdpLayer};
use crate::wire::icmp::{kind, unreachable};
use crate::wire::ipv4::{HeaderFields, Ipv4Packet};
use std::net::Ipv4Addr;

/// Settings of an [`Interface`]; [`Config::new`] gives Linux-like defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Our address and subnet, e.g. 10.200.0.2/24.
    pub address: Ipv4Cidr,
    /// The default gateway (the host side of the TUN), if any.
    pub gateway: Option<Ipv4Addr>,
    /// Link MTU: the largest packet handed to the device.
    pub mtu: usize,
    /// Seed for every random choice the core makes. Take it from the OS's RNG
    /// in production; fix it in tests for reproducible runs.
    pub seed: u64,
    /// Fragment reassembly limits.
    pub reassembly: ReassemblyConfig,
    /// ICMP errors sent per second, sustained.
    pub icmp_error_rate: u32,
    /// ICMP errors that may be sent back to back.
    pub icmp_error_burst: u32,
    /// Whether echo requests to a broadcast address are answered
    /// (Linux's `icmp_echo_ignore_broadcasts=0`).
    pub answer_broadcast_echo: bool,
    /// Payload bytes the transmit queue may hold before it drops.
    pub tx_queue_limit: usize,
    /// TCP settings.
    pub tcp: TcpConfig,
}

impl Config {
    /// Defaults for an interface at `address`: MTU 1500, no gateway, seed 0.
    pub fn new(address: Ipv4Cidr) -> Config {
        let (rate, burst) = icmp::DEFAULT_ERROR_RATE;
        Config {
            address,
            gateway: None,
            mtu: 1500,
            seed: 0,
            reassembly: ReassemblyConfig::default(),
            icmp_error_rate: rate,
            icmp_error_burst: burst,
            answer_broadcast_echo: true,
            tx_queue_limit: 16 << 20,
            tcp: TcpConfig::default(),
        }
    }
}

/// A socket whose state changed: it may now be readable (or have an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketEvent {
    /// A UDP socket.
    Udp(UdpHandle),
    /// A TCP connection: data, space, a state change or an error.
    Tcp(TcpHandle),
    /// A TCP listener with a connection to accept.
    Listener(ListenerHandle),
    /// An ICMP echo socket with a reply or error.
    Icmp(crate::ping::IcmpHandle),
}

/// Why a datagram could not be queued for sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No route to the destination.
    NoRoute,
    /// The transmit queue is full.
    QueueFull,
    /// Too large for IPv4, or needing fragmentation with DF set.
    TooBig,
}

/// How a received datagram was addressed to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// To our own address.
    Unicast,
    /// To our subnet's directed broadcast address.
    DirectedBroadcast,
    /// To 255.255.255.255.
    LimitedBroadcast,
}

/// The sans-IO core of one interface.
///
/// It never reads a clock, sleeps, or does I/O: the caller owns the device
/// and the time. Drive it like this, in a loop:
///
/// 1. For each packet read from the device, call [`handle_packet`](Self::handle_packet).
/// 2. Call [`handle_timeout`](Self::handle_timeout) when the time from
///    [`poll_timeout`](Self::poll_timeout) has come (calling it early is harmless).
/// 3. Call [`poll_transmit`](Self::poll_transmit) until it returns `None`,
///    writing each packet to the device.
/// 4. Sleep until a packet arrives or `poll_timeout()` is reached.
///
/// Every method does bounded work for its input, so a flood of packets
/// cannot starve timers.
#[derive(Debug)]
pub struct Interface {
    pub(crate) config: Config,
    pub(crate) routes: RouteTable,
    pub(crate) stats: Stats,
    pub(crate) reassembler: Reassembler,
    pub(crate) tx: TxQueue,
    pub(crate) ident: IdGenerator,
    pub(crate) icmp_error_limiter: RateLimiter,
    pub(crate) udp: UdpLayer,
    pub(crate) tcp: TcpLayer,
    pub(crate) ping: crate::ping::PingLayer,
    pub(crate) rng: Rng,
    pub(crate) events: Vec<SocketEvent>,
    /// Datagrams we sent to our own address, delivered on the next
    /// `handle_timeout` (the loopback path: they never touch the link).
    pub(crate) loopback: std::collections::VecDeque<Vec<u8>>,
}

/// Datagrams the loopback queue holds at most.
const LOOPBACK_LIMIT: usize = 4096;

impl Interface {
    /// An interface with a connected route for its subnet and, if configured,
    /// a default route through the gateway.
    pub fn new(config: Config) -> Interface {
        let mut rng = Rng::new(config.seed);
        let mut routes = RouteTable::new();
        routes.add(config.address, None).expect("empty table");
        if let Some(gw) = config.gateway {
            let default = Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0).expect("valid");
            if config.address.prefix_len() != 0 {
                routes.add(default, Some(gw)).expect("distinct prefix");
            }
        }
        Interface {
            reassembler: Reassembler::new(config.reassembly, SeededState::from_rng(&mut rng)),
            tx: TxQueue::new(config.mtu, config.tx_queue_limit),
            ident: IdGenerator::new(&mut rng),
            icmp_error_limiter: RateLimiter::new(config.icmp_error_rate, config.icmp_error_burst),
            udp: UdpLayer::new(SeededState::from_rng(&mut rng)),
            tcp: TcpLayer::new(config.tcp, &mut rng),
            ping: crate::ping::PingLayer::default(),
            events: Vec::new(),
            loopback: std::collections::VecDeque::new(),
            rng,
            routes,
            stats: Stats::default(),
            config,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters since creation.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The route table, to add or remove routes.
    pub fn routes_mut(&mut self) -> &mut RouteTable {
        &mut self.routes
    }

    /// How `dst` addresses us, or `None` if the datagram is not for us.
    fn classify(&self, dst: Ipv4Addr) -> Option<Delivery> {
        if dst == self.config.address.addr() {
            Some(Delivery::Unicast)
        } else if Some(dst) == self.config.address.broadcast() {
            Some(Delivery::DirectedBroadcast)
        } else if dst.is_broadcast() {
            Some(Delivery::LimitedBroadcast)
        } else {
            None
        }
    }

    /// Processes one packet received from the link.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.stats.link_rx_packets += 1;
        self.stats.link_rx_bytes += packet.len() as u64;
        self.input(now, packet, false);
    }

    /// IPv4 input, from the link or (`looped`) from ourselves.
    fn input(&mut self, now: Instant, packet: &[u8], looped: bool) {
        let pkt = match Ipv4Packet::parse(packet) {
            Ok(p) => p,
            Err(e) => {
                log::trace!("dropped {} bytes: {e:?}", packet.len());
                e.count(&mut self.stats);
                return;
            }
        };
        let src = pkt.src();
        let ours = src == self.config.address.addr() && !looped;
        if is_martian_source(src) || ours || Some(src) == self.config.address.broadcast() {
            self.stats.ip_bad_source += 1;
            log::trace!("dropped packet from martian source {src}");
            return;
        }
        let Some(delivery) = self.classify(pkt.dst()) else {
            self.stats.ip_not_for_us += 1;
            log::trace!("dropped packet for {} (not ours)", pkt.dst());
            return;
        };
        if pkt.is_fragment() {
            if let Some(whole) = self.reassembler.insert(now, &pkt, &mut self.stats) {
                let ctx = ErrorContext {
                    header: &whole.header,
                    payload: &whole.payload,
                    src,
                    dst: pkt.dst(),
                    delivery,
                    looped,
                    frag_offset: 0,
                    protocol: pkt.protocol(),
                };
                self.deliver(now, &ctx);
            }
            return;
        }
        let ctx = ErrorContext {
            header: pkt.header_bytes(),
            payload: pkt.payload(),
            src,
            dst: pkt.dst(),
            delivery,
            looped,
            frag_offset: 0,
            protocol: pkt.protocol(),
        };
        self.deliver(now, &ctx);
    }

    /// Hands a whole datagram to its protocol.
    fn deliver(&mut self, now: Instant, ctx: &ErrorContext<'_>) {
        match ctx.protocol {
            ip::protocol::ICMP => {
                self.stats.ip_delivered += 1;
                self.icmp_input(now, ctx);
            }
            ip::protocol::UDP => {
                self.stats.ip_delivered += 1;
                self.udp_input(now, ctx, ctx.dst);
            }
            ip::protocol::TCP => {
                self.stats.ip_delivered += 1;
                self.tcp_input(now, ctx, ctx.dst);
            }
            other => {
                self.stats.ip_unknown_protocol += 1;
                log::trace!("protocol {other} from {} is not served", ctx.src);
                self.send_icmp_error(now, kind::DEST_UNREACHABLE, unreachable::PROTOCOL, [0; 4], ctx);
            }
        }
    }

    /// Runs timers that are due (reassembly expiry, TCP timers) and delivers
    /// datagrams we sent to ourselves.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Only what was queued before: loopback traffic this produces waits a turn.
        for _ in 0..self.loopback.len() {
            let Some(p) = self.loopback.pop_front() else { break };
            self.stats.ip_loopback += 1;
            self.input(now, &p, true);
            self.tx.recycle(p);
        }
        for timed_out in self.reassembler.expire(now, &mut self.stats) {
            self.send_reassembly_timeout(now, timed_out.src, &timed_out.quote);
        }
        self.tcp_handle_timeouts(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.loopback.is_empty() {
            return Some(Instant::ZERO);
        }
        match (self.reassembler.next_deadline(), self.tcp.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Writes the next outgoing packet into `buf` (at least the MTU long) and
    /// returns its length, or `None` when nothing is waiting.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<usize> {
        let w = self.tx.pop_packet(buf)?;
        self.stats.link_tx_packets += 1;
        self.stats.link_tx_bytes += w.len as u64;
        if w.fragment {
            self.stats.frag_tx_fragments += 1;
        }
        Some(w.len)
    }

    /// Queues a datagram for our own address on the loopback path.
    fn send_to_self(&mut self, fields: &HeaderFields, payload: Vec<u8>) -> Result<(), SendError> {
        if payload.len() + crate::wire::ipv4::HEADER_LEN > ip::MAX_DATAGRAM {
            self.stats.ip_tx_too_big += 1;
            self.tx.recycle(payload);
            return Err(SendError::TooBig);
        }
        if self.loopback.len() >= LOOPBACK_LIMIT {
            self.stats.link_tx_queue_full += 1;
            self.tx.recycle(payload);
            return Err(SendError::QueueFull);
        }
        let mut p = self.tx.buffer();
        p.resize(crate::wire::ipv4::HEADER_LEN, 0);
        crate::wire::ipv4::write_header(&mut p, fields, payload.len(), 0, false);
        p.extend_from_slice(&payload);
        self.tx.recycle(payload);
        self.loopback.push_back(p);
        self.stats.ip_tx_datagrams += 1;
        Ok(())
    }

    /// Sockets whose state changed since the last call, appended to `out`.
    /// The runtime wakes the threads waiting on them.
    pub fn take_events(&mut self, out: &mut Vec<SocketEvent>) {
        let start = out.len();
        out.append(&mut self.events);
        for e in &out[start..] {
            match *e {
                SocketEvent::Udp(h) => self.udp_event_taken(h),
                SocketEvent::Icmp(h) => self.icmp_event_taken(h),
                other => self.tcp_event_taken(other),
            }
        }
    }

    /// Whether the transmit queue is empty (senders refused with a full queue may retry).
    pub fn tx_queue_is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// Queues a datagram from our address to `dst`; drops are counted.
    pub(crate) fn send_datagram(
        &mut self,
        dst: Ipv4Addr,
        protocol: u8,
        ttl: u8,
        dont_fragment: bool,
        payload: Vec<u8>,
    ) -> Result<(), SendError> {
        if self.routes.lookup(dst).is_none() && !dst.is_broadcast() {
            self.stats.ip_tx_no_route += 1;
            self.tx.recycle(payload);
            return Err(SendError::NoRoute);
        }
        let src = self.config.address.addr();
        let fields = HeaderFields {
            src,
            dst,
            protocol,
            ttl,
            ident: self.ident.next(src, dst, protocol),
            dont_fragment,
        };
        if dst == src {
            return self.send_to_self(&fields, payload);
        }
        match self.tx.push(fields, payload) {
            Ok(()) => {
                self.stats.ip_tx_datagrams += 1;
                Ok(())
            }
            Err(QueueError::Full) => {
                self.stats.link_tx_queue_full += 1;
                Err(SendError::QueueFull)
            }
            Err(QueueError::TooBig) => {
                self.stats.ip_tx_too_big += 1;
                Err(SendError::TooBig)
            }
        }
    }
}

#[cfg(test)]
mod tests;
