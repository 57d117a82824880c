//! The interface: one IPv4 address on one link, and the sans-IO core
//! behind it. It composes the layers — IP below; ICMP, UDP, TCP and the
//! echo sockets above it — dispatches each datagram to its protocol, and
//! offers the driving loop and each layer's socket calls.

#![forbid(unsafe_code)]

use crate::icmp::{self, IcmpInput, IcmpLayer};
use crate::ip::context::{Context, Datagram, IcmpErrorReport};
use crate::ip::layer::{IpConfig, IpLayer};
use crate::ip::route::RouteTable;
use crate::ip::{Ipv4Cidr, ReassemblyConfig, Sockets, protocol};
use crate::ping::PingLayer;
use crate::rand::{Rng, SeededState};
use crate::socket::SocketEvent;
use crate::stats::Stats;
use crate::tcp::{TcpConfig, TcpLayer};
use crate::time::Instant;
use crate::udp::UdpLayer;
use crate::wire::vnet::VnetHeader;
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

/// The protocols above IP, which the interface hands datagrams to.
#[derive(Debug)]
struct Transports {
    icmp: IcmpLayer,
    udp: UdpLayer,
    tcp: TcpLayer,
    ping: PingLayer,
}

impl Transports {
    /// Hands a whole datagram to its protocol; false if we run none for it.
    fn deliver(&mut self, cx: &mut Context<'_>, d: &Datagram<'_>) -> bool {
        match d.header.protocol {
            protocol::ICMP => match self.icmp.input(cx, d) {
                Some(IcmpInput::EchoReply(msg)) => self.ping.echo_reply(cx, d.header.src, d.header.ttl, &msg),
                Some(IcmpInput::Error(report)) => self.icmp_error(cx, &report),
                None => {}
            },
            protocol::UDP => self.udp.input(cx, d),
            protocol::TCP => self.tcp.input(cx, d),
            _ => return false,
        }
        true
    }

    /// An ICMP error goes to the protocol whose datagram it quotes.
    fn icmp_error(&mut self, cx: &mut Context<'_>, report: &IcmpErrorReport<'_>) {
        match report.quoted.protocol {
            protocol::UDP => self.udp.icmp_error(cx, report),
            protocol::TCP => self.tcp.icmp_error(cx, report),
            protocol::ICMP => self.ping.icmp_error(cx, report),
            _ => {}
        }
    }
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
/// 4. Pass [`take_events`](Self::take_events) on to the threads waiting on those sockets.
/// 5. Sleep until a packet arrives or `poll_timeout()` is reached.
///
/// Sockets are used through [`udp`](Self::udp), [`tcp`](Self::tcp) and
/// [`ping`](Self::ping), each of which lends one layer's socket calls for
/// one call at a given time; [`udp_layer`](Self::udp_layer) and friends
/// answer read-only queries.
///
/// Every method does bounded work for its input, so a flood of packets
/// cannot starve timers.
#[derive(Debug)]
pub struct Interface {
    config: Config,
    ip: IpLayer,
    transports: Transports,
}

impl Interface {
    /// An interface with a connected route for its subnet and, if configured,
    /// a default route through the gateway.
    pub fn new(config: Config) -> Interface {
        let mut ip = IpLayer::new(
            IpConfig {
                address: config.address,
                gateway: config.gateway,
                mtu: config.mtu,
                reassembly: config.reassembly,
                icmp_error_rate: config.icmp_error_rate,
                icmp_error_burst: config.icmp_error_burst,
                tx_queue_limit: config.tx_queue_limit,
            },
            Rng::new(config.seed),
        );
        let udp = UdpLayer::new(SeededState::from_rng(ip.rng()));
        let tcp = TcpLayer::new(config.tcp, ip.rng());
        Interface {
            transports: Transports {
                icmp: IcmpLayer::new(config.answer_broadcast_echo),
                udp,
                tcp,
                ping: PingLayer::default(),
            },
            ip,
            config,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters since creation.
    pub fn stats(&self) -> &Stats {
        self.ip.stats()
    }

    /// Counts packets the device failed to read or refused to send.
    pub fn count_device_errors(&mut self, rx_errors: u64, tx_errors: u64) {
        let s = self.ip.stats_mut();
        s.link_rx_errors += rx_errors;
        s.link_tx_errors += tx_errors;
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        self.ip.routes()
    }

    /// The route table, to add or remove routes.
    pub fn routes_mut(&mut self) -> &mut RouteTable {
        self.ip.routes_mut()
    }

    /// Processes one packet received from the link. An ACK it owes may wait
    /// for the next [`poll_transmit`](Self::poll_transmit), so that feeding
    /// a whole batch first gets one ACK per connection for it.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.handle_packet_meta(now, packet, &VnetHeader::default());
    }

    /// As [`handle_packet`](Self::handle_packet), with the offload metadata
    /// the device read with it (issue 16). A TCP super-packet is taken as
    /// one large segment, whatever the MTU and MSS; a transport checksum
    /// the device vouches for (`NEEDS_CSUM`, `DATA_VALID`) is not verified.
    pub fn handle_packet_meta(&mut self, now: Instant, packet: &[u8], meta: &VnetHeader) {
        let stats = self.ip.stats_mut();
        stats.link_rx_packets += 1;
        stats.link_rx_bytes += packet.len() as u64;
        if meta.is_gso() {
            stats.link_rx_super_packets += 1;
        }
        let transports = &mut self.transports;
        self.ip
            .input(now, packet, false, meta, &mut |cx, d| transports.deliver(cx, d));
    }

    /// Tells the core whether the device takes offloaded packets
    /// ([`Device::offloads`](crate::device::Device::offloads)): if so, TCP
    /// sends super-packets of up to 64 KiB, cut into MSS-sized segments by
    /// the device, with checksums left partial. The runtime sets this from
    /// its device; off by default.
    pub fn set_offloads(&mut self, on: bool) {
        self.ip.set_offloads(on);
    }

    /// Whether TCP sends super-packets (see [`set_offloads`](Self::set_offloads)).
    pub fn offloads(&self) -> bool {
        self.ip.offloads()
    }

    /// Runs timers that are due (reassembly expiry, TCP timers) and delivers
    /// datagrams we sent to ourselves.
    pub fn handle_timeout(&mut self, now: Instant) {
        let transports = &mut self.transports;
        self.ip.handle_timeout(now, &mut |cx, d| transports.deliver(cx, d));
        self.transports.tcp.handle_timeouts(&mut self.ip.context(now));
        // The loopback queue drained too (a socket refused by it may send).
        self.note_tx_space(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work, if ever.
    /// Output waiting for [`poll_transmit`](Self::poll_transmit) is not a
    /// deadline: drive the interface as the runtime does, `poll_transmit`
    /// until `None` after every batch of `handle_packet` and every socket
    /// call (ACKs a batch owes wait there, see `handle_packet`), or check
    /// [`has_output`](Self::has_output).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.ip.next_deadline(), self.transports.tcp.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Writes the next outgoing packet into `buf` (at least the MTU long;
    /// 65535 bytes with offloads on) and returns its length, or `None` when
    /// nothing is waiting. Its checksums are complete; a super-packet comes
    /// out as one large segment (use `poll_transmit_parts` to have the
    /// device cut it).
    /// ACKs owed for a batch of received packets go out first (one per
    /// connection: see `handle_packet`), so call it after the whole batch.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.prepare_transmit(now);
        self.ip.poll_transmit(buf)
    }

    /// Sends the batch's deferred ACKs, and builds more segments if the queue ran dry.
    fn prepare_transmit(&mut self, now: Instant) {
        let tcp = &mut self.transports.tcp;
        if tcp.has_output() {
            let mut cx = self.ip.context(now);
            tcp.flush_deferred_acks(&mut cx);
            if cx.tx_backlog() == 0 {
                tcp.pull_output(&mut cx);
            }
        }
    }

    /// As [`poll_transmit`](Self::poll_transmit), but hands the packet
    /// over as its IP header and the rest: a datagram that leaves whole
    /// swaps its buffer with `payload` (no copy; give back any buffer, it
    /// is reused). For devices that send in two parts (`Device::send_parts`).
    /// With offloads on, the metadata returned goes to
    /// [`Device::send_meta`](crate::device::Device::send_meta) with the packet.
    pub fn poll_transmit_parts(
        &mut self,
        now: Instant,
        header: &mut [u8; crate::wire::ipv4::HEADER_LEN],
        payload: &mut Vec<u8>,
    ) -> Option<(usize, VnetHeader)> {
        self.prepare_transmit(now);
        self.ip.poll_transmit_parts(header, payload)
    }

    /// Sockets whose state changed since the last call, appended to `out`.
    /// The runtime wakes the threads waiting on them.
    pub fn take_events(&mut self, out: &mut Vec<SocketEvent>) {
        let start = out.len();
        out.append(self.ip.events());
        let t = &mut self.transports;
        for e in &out[start..] {
            match *e {
                SocketEvent::Udp(h) => t.udp.event_taken(h),
                SocketEvent::Icmp(h) => t.ping.event_taken(h),
                SocketEvent::Tcp(_) | SocketEvent::Listener(_) => t.tcp.event_taken(*e),
            }
        }
    }

    /// Whether packets wait for [`poll_transmit`](Self::poll_transmit).
    pub fn has_output(&self) -> bool {
        !self.ip.tx_queue_is_empty() || self.transports.tcp.has_output()
    }

    /// Whether socket events wait for [`take_events`](Self::take_events).
    pub fn has_events(&self) -> bool {
        self.ip.has_events()
    }

    /// Packets were taken from the transmit queue: UDP sockets refused for
    /// a full queue get an event (they can send again).
    pub fn note_tx_space(&mut self, now: Instant) {
        if self.transports.udp.tx_refused() {
            self.transports.udp.tx_drained(&mut self.ip.context(now));
        }
    }

    /// Whether the transmit queue is empty (senders refused with a full queue may retry).
    pub fn tx_queue_is_empty(&self) -> bool {
        self.ip.tx_queue_is_empty()
    }

    /// UDP's socket calls, at `now`.
    pub fn udp(&mut self, now: Instant) -> Sockets<'_, UdpLayer> {
        Sockets::new(&mut self.transports.udp, self.ip.context(now))
    }

    /// UDP's sockets, for read-only queries.
    pub fn udp_layer(&self) -> &UdpLayer {
        &self.transports.udp
    }

    /// TCP's socket calls, at `now`.
    pub fn tcp(&mut self, now: Instant) -> Sockets<'_, TcpLayer> {
        Sockets::new(&mut self.transports.tcp, self.ip.context(now))
    }

    /// TCP's connections and listeners, for read-only queries.
    pub fn tcp_layer(&self) -> &TcpLayer {
        &self.transports.tcp
    }

    /// TCP's state, for tests that pin internals (the ISN).
    #[cfg(test)]
    pub(crate) fn tcp_layer_mut(&mut self) -> &mut TcpLayer {
        &mut self.transports.tcp
    }

    /// The ICMP echo sockets' calls, at `now`.
    pub fn ping(&mut self, now: Instant) -> Sockets<'_, PingLayer> {
        Sockets::new(&mut self.transports.ping, self.ip.context(now))
    }

    /// The ICMP echo sockets, for read-only queries.
    pub fn ping_layer(&self) -> &PingLayer {
        &self.transports.ping
    }
}

#[cfg(test)]
mod tests;
