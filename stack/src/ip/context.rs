//! What the protocols above IP get from it: the datagram they were handed,
//! and a [`Context`] through which they send, raise socket events, count,
//! and draw randomness — and nothing else of the interface.

#![forbid(unsafe_code)]

use super::layer::IpLayer;
use super::output::QueueError;
use super::{DEFAULT_TTL, MAX_DATAGRAM, is_martian_source, protocol};
use crate::rand::Rng;
use crate::socket::SocketEvent;
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::icmp::{self as icmp_wire, IcmpMessage};
use crate::wire::ipv4::{HEADER_LEN, Ipv4Header};
use crate::wire::vnet::VnetHeader;
use std::net::Ipv4Addr;

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

/// A whole datagram for us (validated, and reassembled if it came in
/// fragments), as IP hands it to ICMP, UDP or TCP.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Datagram<'a> {
    /// Its header (the first fragment's, for a reassembled datagram).
    pub header: Ipv4Header,
    /// That header's bytes as received, options included: what an ICMP error quotes.
    pub header_bytes: &'a [u8],
    /// The whole payload.
    pub payload: &'a [u8],
    /// How it was addressed to us.
    pub delivery: Delivery,
    /// It came from ourselves over the loopback path.
    pub looped: bool,
    /// The device vouches for its transport checksum (issue 16: the host
    /// left it partial, `NEEDS_CSUM`, or verified it, `DATA_VALID`), so
    /// TCP and UDP do not verify it; a TCP super-packet comes so.
    pub checksum_trusted: bool,
    /// For a TCP super-packet from the host (issue 16), the MSS it stands
    /// for segments of (its `gso_size`); 0 for a plain packet.
    pub gso_size: u16,
}

/// An ICMP error about a datagram we sent, for the protocol that sent it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IcmpErrorReport<'a> {
    /// The router or host that reported it.
    pub from: Ipv4Addr,
    /// ICMP type (3 unreachable, 11 time exceeded, ...).
    pub kind: u8,
    /// ICMP code.
    pub code: u8,
    /// Bytes 4..8 of the ICMP header: the next-hop MTU for fragmentation-needed (RFC 1191).
    pub rest: [u8; 4],
    /// The header of our datagram, as quoted.
    pub quoted: Ipv4Header,
    /// The quoted start of its payload: at least 8 bytes, the transport's ports.
    pub transport: &'a [u8],
}

/// Why a datagram could not be queued for sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputError {
    /// No route to the destination.
    NoRoute,
    /// The transmit queue is full.
    QueueFull,
    /// Too large for IPv4, or needing fragmentation with DF set.
    TooBig,
}

error_messages!(OutputError {
    NoRoute => "no route to the destination",
    QueueFull => "transmit queue full",
    TooBig => "datagram too large",
});

/// Datagrams the loopback queue holds at most.
const LOOPBACK_LIMIT: usize = 4096;

/// The IP layer as the protocols above it see it, for the duration of one
/// call: the time, our address, and the services below them.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    now: Instant,
    ip: &'a mut IpLayer,
}

impl<'a> Context<'a> {
    pub(super) fn new(now: Instant, ip: &'a mut IpLayer) -> Context<'a> {
        Context { now, ip }
    }

    /// The time of the call.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Our address.
    pub(crate) fn addr(&self) -> Ipv4Addr {
        self.ip.address.addr()
    }

    /// Link MTU.
    pub(crate) fn mtu(&self) -> usize {
        self.ip.tx.mtu()
    }

    /// Whether `ip` is a broadcast address on our link (limited or directed).
    pub(crate) fn is_broadcast(&self, ip: Ipv4Addr) -> bool {
        ip.is_broadcast() || Some(ip) == self.ip.address.broadcast()
    }

    /// Whether some route leads to `dst`.
    pub(crate) fn has_route(&self, dst: Ipv4Addr) -> bool {
        self.ip.routes.lookup(dst).is_some()
    }

    /// The interface's counters.
    pub(crate) fn stats(&mut self) -> &mut Stats {
        &mut self.ip.stats
    }

    /// The interface's seeded random number generator.
    pub(crate) fn rng(&mut self) -> &mut Rng {
        &mut self.ip.rng
    }

    /// Tells the runtime that a socket's state changed.
    pub(crate) fn notify(&mut self, event: SocketEvent) {
        self.ip.events.push(event);
    }

    /// Datagrams queued for the link and not yet taken by `poll_transmit`:
    /// a transport that builds segments as they are sent stops at a few.
    pub(crate) fn tx_backlog(&self) -> usize {
        self.ip.tx.packets()
    }

    /// An empty buffer to build a payload in (recycled when possible).
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        self.ip.tx.buffer()
    }

    /// Gives back a buffer that was not sent.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        self.ip.tx.recycle(buf);
    }

    /// Whether the device takes TCP super-packets and partial checksums
    /// (issue 16): then TCP builds segments of up to 64 KiB.
    pub(crate) fn offloads(&self) -> bool {
        self.ip.offloads
    }

    /// Queues a datagram from our address to `dst`; drops are counted.
    pub(crate) fn send_datagram(
        &mut self,
        dst: Ipv4Addr,
        protocol: u8,
        ttl: u8,
        dont_fragment: bool,
        payload: Vec<u8>,
    ) -> Result<(), OutputError> {
        self.send_datagram_meta(dst, protocol, ttl, dont_fragment, payload, VnetHeader::default())
    }

    /// As [`send_datagram`](Self::send_datagram), with offload metadata
    /// for the device: only with [`offloads`](Self::offloads) on.
    pub(crate) fn send_datagram_meta(
        &mut self,
        dst: Ipv4Addr,
        protocol: u8,
        ttl: u8,
        dont_fragment: bool,
        payload: Vec<u8>,
        meta: VnetHeader,
    ) -> Result<(), OutputError> {
        let ip = &mut *self.ip;
        if ip.routes.lookup(dst).is_none() && !dst.is_broadcast() {
            ip.stats.ip_tx_no_route += 1;
            ip.tx.recycle(payload);
            return Err(OutputError::NoRoute);
        }
        let src = ip.address.addr();
        // A super-packet leaves as several datagrams, each with its own ID.
        let datagrams = if meta.is_gso() {
            let data = payload
                .len()
                .saturating_sub(usize::from(meta.hdr_len).saturating_sub(HEADER_LEN));
            data.div_ceil(usize::from(meta.gso_size).max(1))
        } else {
            1
        };
        let ident = ip.ident.reserve(src, dst, protocol, datagrams.clamp(1, 65535) as u16);
        let mut header = Ipv4Header::new(src, dst, protocol, ttl, ident, payload.len());
        header.dont_fragment = dont_fragment;
        if dst == src {
            return self.send_to_self(header, payload, &meta);
        }
        match ip.tx.push_meta(header, payload, meta) {
            Ok(()) => {
                ip.stats.ip_tx_datagrams += 1;
                Ok(())
            }
            Err(QueueError::Full) => {
                ip.stats.link_tx_queue_full += 1;
                Err(OutputError::QueueFull)
            }
            Err(QueueError::TooBig) => {
                ip.stats.ip_tx_too_big += 1;
                Err(OutputError::TooBig)
            }
        }
    }

    /// Queues a datagram for our own address on the loopback path (whole:
    /// no MTU there; a partial checksum is completed, as Linux's loopback
    /// would not need to, but our input verifies it).
    fn send_to_self(&mut self, header: Ipv4Header, payload: Vec<u8>, meta: &VnetHeader) -> Result<(), OutputError> {
        let ip = &mut *self.ip;
        let error = if payload.len() + HEADER_LEN > MAX_DATAGRAM {
            ip.stats.ip_tx_too_big += 1;
            Some(OutputError::TooBig)
        } else if ip.loopback.len() >= LOOPBACK_LIMIT {
            ip.stats.link_tx_queue_full += 1;
            Some(OutputError::QueueFull)
        } else {
            None
        };
        if let Some(e) = error {
            ip.tx.recycle(payload);
            return Err(e);
        }
        let mut p = ip.tx.buffer();
        p.resize(HEADER_LEN, 0);
        header.emit(&mut p);
        p.extend_from_slice(&payload);
        crate::wire::vnet::complete_checksum(&mut p, meta).expect("our own metadata fits the packet");
        ip.tx.recycle(payload);
        ip.loopback.push_back(p);
        ip.stats.ip_tx_datagrams += 1;
        Ok(())
    }

    /// RFC 1122 §3.2.2: the cases in which an ICMP error must not be sent.
    fn icmp_error_forbidden(&self, about: &Datagram<'_>) -> bool {
        let h = &about.header;
        // Never about an ICMP error (queries such as echo are fine).
        let about_icmp_error =
            h.protocol == protocol::ICMP && about.payload.first().is_none_or(|t| icmp_wire::is_error(*t));
        about_icmp_error
            || about.delivery != Delivery::Unicast
            || h.frag_offset != 0
            || is_martian_source(h.src)
            || h.src.is_unspecified()
            || Some(h.src) == self.ip.address.broadcast()
            || (h.src == self.ip.address.addr() && !about.looped)
    }

    /// Sends an ICMP error about a received datagram, if RFC 1122's rules and
    /// the rate limit allow. The quote is the datagram's header and as much
    /// of its payload as keeps the error within 576 bytes.
    pub(crate) fn send_icmp_error(&mut self, kind: u8, code: u8, rest: [u8; 4], about: &Datagram<'_>) {
        if self.icmp_error_forbidden(about) {
            self.ip.stats.icmp_error_suppressed += 1;
            return;
        }
        if !self.ip.icmp_error_limiter.allow(self.now) {
            self.ip.stats.icmp_rate_limited += 1;
            return;
        }
        let mut quote = self.buffer();
        quote.extend_from_slice(about.header_bytes);
        quote.extend_from_slice(&about.payload[..about.payload.len().min(icmp_wire::MAX_QUOTE)]);
        quote.truncate(icmp_wire::MAX_QUOTE);
        let mut msg = self.buffer();
        IcmpMessage {
            kind,
            code,
            rest,
            data: &quote,
        }
        .emit(&mut msg);
        self.recycle(quote);
        if self
            .send_datagram(about.header.src, protocol::ICMP, DEFAULT_TTL, false, msg)
            .is_ok()
        {
            self.ip.stats.icmp_tx_errors += 1;
        }
    }
}
