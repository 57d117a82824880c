//! The IP layer of an interface: input (validation, source and destination
//! checks, reassembly), the transmit queue, the loopback path, and the
//! state every protocol above reaches through a [`Context`].

#![forbid(unsafe_code)]

use super::context::{Context, Datagram, Delivery};
use super::ident::IdGenerator;
use super::output::TxQueue;
use super::reassembly::{Reassembler, ReassemblyConfig};
use super::route::RouteTable;
use super::{Ipv4Cidr, is_martian_source};
use crate::rand::{Rng, SeededState};
use crate::ratelimit::RateLimiter;
use crate::socket::SocketEvent;
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::icmp::{kind, time_exceeded, unreachable};
use crate::wire::ipv4::{Ipv4Error, Ipv4Header, Ipv4Packet};
use crate::wire::vnet::VnetHeader;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

/// Settings of the IP layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IpConfig {
    pub address: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: usize,
    pub reassembly: ReassemblyConfig,
    pub icmp_error_rate: u32,
    pub icmp_error_burst: u32,
    pub tx_queue_limit: usize,
}

/// IPv4 state of one interface.
#[derive(Debug)]
pub(crate) struct IpLayer {
    pub(super) address: Ipv4Cidr,
    pub(super) routes: RouteTable,
    pub(super) reassembler: Reassembler,
    pub(super) tx: TxQueue,
    pub(super) ident: IdGenerator,
    pub(super) icmp_error_limiter: RateLimiter,
    pub(super) rng: Rng,
    pub(super) stats: Stats,
    pub(super) events: Vec<SocketEvent>,
    /// Datagrams we sent to our own address, delivered on the next
    /// `handle_timeout` (the loopback path: they never touch the link).
    pub(super) loopback: VecDeque<Vec<u8>>,
    /// The device takes TCP super-packets and partial checksums (issue 16).
    pub(super) offloads: bool,
}

impl IpLayer {
    /// An IP layer with a connected route for its subnet and, if configured,
    /// a default route through the gateway. `rng` is seeded by the caller.
    pub(crate) fn new(config: IpConfig, mut rng: Rng) -> IpLayer {
        let mut routes = RouteTable::new();
        routes.add(config.address, None).expect("empty table");
        if let Some(gw) = config.gateway {
            let default = Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0).expect("valid");
            if config.address.prefix_len() != 0 {
                routes.add(default, Some(gw)).expect("distinct prefix");
            }
        }
        IpLayer {
            address: config.address,
            reassembler: Reassembler::new(config.reassembly, SeededState::from_rng(&mut rng)),
            tx: TxQueue::new(config.mtu, config.tx_queue_limit),
            ident: IdGenerator::new(&mut rng),
            icmp_error_limiter: RateLimiter::new(config.icmp_error_rate, config.icmp_error_burst),
            rng,
            routes,
            stats: Stats::default(),
            events: Vec::new(),
            loopback: VecDeque::new(),
            offloads: false,
        }
    }

    /// The context the protocols above use during one call at `now`.
    pub(crate) fn context(&mut self, now: Instant) -> Context<'_> {
        Context::new(now, self)
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    pub(crate) fn routes(&self) -> &RouteTable {
        &self.routes
    }

    pub(crate) fn routes_mut(&mut self) -> &mut RouteTable {
        &mut self.routes
    }

    pub(crate) fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    pub(crate) fn events(&mut self) -> &mut Vec<SocketEvent> {
        &mut self.events
    }

    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    pub(crate) fn tx_queue_is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// How `dst` addresses us, or `None` if the datagram is not for us.
    fn classify(&self, dst: Ipv4Addr) -> Option<Delivery> {
        if dst == self.address.addr() {
            Some(Delivery::Unicast)
        } else if Some(dst) == self.address.broadcast() {
            Some(Delivery::DirectedBroadcast)
        } else if dst.is_broadcast() {
            Some(Delivery::LimitedBroadcast)
        } else {
            None
        }
    }

    /// Whether the device takes offloaded packets (see `Interface::set_offloads`).
    pub(crate) fn set_offloads(&mut self, on: bool) {
        self.offloads = on;
    }

    pub(crate) fn offloads(&self) -> bool {
        self.offloads
    }

    /// IPv4 input, from the link or (`looped`) from ourselves: whole
    /// datagrams for us go to `deliver`, which says whether it runs their
    /// protocol; the rest is dropped and counted. `meta`: what the device
    /// said of it (a checksum it vouches for, a super-packet's MSS; never
    /// for fragments).
    pub(crate) fn input<F>(&mut self, now: Instant, packet: &[u8], looped: bool, meta: &VnetHeader, deliver: &mut F)
    where
        F: FnMut(&mut Context<'_>, &Datagram<'_>) -> bool,
    {
        let pkt = match Ipv4Packet::parse(packet) {
            Ok(p) => p,
            Err(e) => {
                log::trace!("dropped {} bytes: {e}", packet.len());
                self.count_bad_packet(e);
                return;
            }
        };
        let src = pkt.header.src;
        let ours = src == self.address.addr() && !looped;
        if is_martian_source(src) || ours || Some(src) == self.address.broadcast() {
            self.stats.ip_bad_source += 1;
            log::trace!("dropped packet from martian source {src}");
            return;
        }
        let Some(delivery) = self.classify(pkt.header.dst) else {
            self.stats.ip_not_for_us += 1;
            log::trace!("dropped packet for {} (not ours)", pkt.header.dst);
            return;
        };
        if pkt.header.is_fragment() {
            if let Some(whole) = self.reassembler.insert(now, &pkt, &mut self.stats) {
                // The datagram's header is its first fragment's (RFC 791 §3.2:
                // options and TTL as that fragment carried them).
                let Some((mut header, _)) = Ipv4Header::parse_quote(&whole.header) else {
                    return;
                };
                header.frag_offset = 0;
                header.more_fragments = false;
                header.payload_len = whole.payload.len();
                let d = Datagram {
                    header,
                    header_bytes: &whole.header,
                    payload: &whole.payload,
                    delivery,
                    looped,
                    checksum_trusted: false,
                    gso_size: 0,
                };
                self.deliver(now, &d, deliver);
            }
            return;
        }
        let d = Datagram {
            header: pkt.header,
            header_bytes: pkt.header_bytes(),
            payload: pkt.payload(),
            delivery,
            looped,
            checksum_trusted: meta.checksum_trusted(),
            gso_size: if meta.is_gso() { meta.gso_size } else { 0 },
        };
        self.deliver(now, &d, deliver);
    }

    /// Hands a whole datagram to its protocol; RFC 1122 §3.2.2.1: protocol
    /// unreachable when nobody runs it.
    fn deliver<F>(&mut self, now: Instant, d: &Datagram<'_>, deliver: &mut F)
    where
        F: FnMut(&mut Context<'_>, &Datagram<'_>) -> bool,
    {
        let mut cx = self.context(now);
        if deliver(&mut cx, d) {
            cx.stats().ip_delivered += 1;
        } else {
            cx.stats().ip_unknown_protocol += 1;
            log::trace!("protocol {} from {} is not served", d.header.protocol, d.header.src);
            cx.send_icmp_error(kind::DEST_UNREACHABLE, unreachable::PROTOCOL, [0; 4], d);
        }
    }

    /// The drop counter of each reason a packet is not IPv4 we can use.
    fn count_bad_packet(&mut self, e: Ipv4Error) {
        let s = &mut self.stats;
        let c = match e {
            Ipv4Error::NotIpv4 => &mut s.ip_not_ipv4,
            Ipv4Error::TruncatedHeader => &mut s.ip_truncated_header,
            Ipv4Error::BadIhl => &mut s.ip_bad_ihl,
            Ipv4Error::BadChecksum => &mut s.ip_bad_checksum,
            Ipv4Error::TotalLenExceedsPacket => &mut s.ip_total_len_exceeds_packet,
            Ipv4Error::TotalLenBelowHeader => &mut s.ip_total_len_below_header,
        };
        *c += 1;
    }

    /// Delivers what we sent ourselves before this call, and expires
    /// reassembly (RFC 792: time exceeded, code 1, if the first fragment came).
    pub(crate) fn handle_timeout<F>(&mut self, now: Instant, deliver: &mut F)
    where
        F: FnMut(&mut Context<'_>, &Datagram<'_>) -> bool,
    {
        // Only what was queued before: loopback traffic this produces waits a turn.
        for _ in 0..self.loopback.len() {
            let Some(p) = self.loopback.pop_front() else { break };
            self.stats.ip_loopback += 1;
            self.input(now, &p, true, &VnetHeader::default(), deliver);
            self.tx.recycle(p);
        }
        for timed_out in self.reassembler.expire(now, &mut self.stats) {
            let Some((header, payload)) = Ipv4Header::parse_quote(&timed_out.quote) else {
                continue;
            };
            let about = Datagram {
                header,
                header_bytes: &timed_out.quote[..header.header_len],
                payload,
                delivery: Delivery::Unicast,
                looped: false,
                checksum_trusted: false,
                gso_size: 0,
            };
            self.context(now)
                .send_icmp_error(kind::TIME_EXCEEDED, time_exceeded::REASSEMBLY, [0; 4], &about);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work, if ever.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if !self.loopback.is_empty() {
            return Some(Instant::ZERO);
        }
        self.reassembler.next_deadline()
    }

    /// Takes the next outgoing packet as header and payload (see
    /// `TxQueue::pop_parts`); its length and offload metadata, or `None`.
    pub(crate) fn poll_transmit_parts(
        &mut self,
        header: &mut [u8; crate::wire::ipv4::HEADER_LEN],
        payload: &mut Vec<u8>,
    ) -> Option<(usize, crate::wire::vnet::VnetHeader)> {
        let w = self.tx.pop_parts(header, payload)?;
        self.count_sent(w);
        Some((w.len, w.meta))
    }

    fn count_sent(&mut self, w: crate::ip::output::Written) {
        self.stats.link_tx_packets += 1;
        self.stats.link_tx_bytes += w.len as u64;
        if w.meta.is_gso() {
            self.stats.link_tx_super_packets += 1;
        }
        if w.fragment {
            self.stats.frag_tx_fragments += 1;
        }
    }

    /// Writes the next outgoing packet into `buf`; its length, or `None`.
    pub(crate) fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        let w = self.tx.pop_packet(buf)?;
        self.count_sent(w);
        Some(w.len)
    }
}
