//! UDP in the core: sockets, port demultiplexing, ephemeral ports, ICMP errors.
//!
//! Semantics follow Linux: a socket bound to 0.0.0.0 receives unicast and
//! broadcast datagrams for its port, one bound to our address only unicast,
//! one bound to a broadcast address only that broadcast; a connected socket
//! only hears its peer. Sending to a broadcast address needs the broadcast
//! flag (`SO_BROADCAST`), else `PermissionDenied`. A datagram to a port no
//! socket holds draws ICMP port unreachable (rate-limited, never for
//! broadcasts). ICMP errors about datagrams we sent are reported on
//! connected sockets, once, by the next send or receive (like `sk_err`).

#![forbid(unsafe_code)]

use crate::ip::context::{Context, Datagram, Delivery, IcmpErrorReport};
use crate::ip::{self, OutputError, Sockets, protocol};
use crate::rand::SeededState;
use crate::socket::{self as sock, Handle, Slab, SocketEvent};
use crate::time::Instant;
use crate::wire::icmp::{kind, unreachable};
use crate::wire::udp::{self as wire, UdpDatagram};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

mod error;

pub use crate::socket::UdpHandle;
pub use error::{BindError, ConnectError, RecvError, SendError, SocketError};

/// What a receive returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// The datagram's full length; more than `len` means the rest was
    /// dropped (or, with peek, is still there), like Linux's `MSG_TRUNC`.
    pub full_len: usize,
    /// The sender.
    pub from: SocketAddrV4,
    /// The address the datagram was sent to (ours or a broadcast address).
    pub to: Ipv4Addr,
}

#[derive(Debug)]
struct RxDatagram {
    from: SocketAddrV4,
    to: Ipv4Addr,
    data: Vec<u8>,
}

/// Receive-queue limits of one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvLimits {
    /// Payload bytes queued at most.
    pub bytes: usize,
    /// Datagrams queued at most.
    pub datagrams: usize,
}

impl Default for RecvLimits {
    /// About Linux's `rmem_default` (212992 bytes of buffer).
    fn default() -> RecvLimits {
        RecvLimits {
            bytes: 256 * 1024,
            datagrams: 1024,
        }
    }
}

/// An ICMP error about a datagram this socket sent, as `IP_RECVERR` queues it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpIcmpError {
    /// Who reported it (a router on the way, or the destination).
    pub from: Ipv4Addr,
    /// ICMP type.
    pub kind: u8,
    /// ICMP code.
    pub code: u8,
    /// Where the offending datagram was going.
    pub dst: SocketAddrV4,
    /// When the error arrived.
    pub at: Instant,
}

/// Errors a socket's error queue holds at most.
const ERROR_QUEUE_LIMIT: usize = 64;

/// What `netstat` shows of a UDP socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpSocketInfo {
    /// Who uses it: a service name or pid/program, if the application said.
    pub owner: Option<std::sync::Arc<str>>,
    /// The socket.
    pub handle: UdpHandle,
    /// Local address and port.
    pub local: SocketAddrV4,
    /// Peer, when connected.
    pub remote: Option<SocketAddrV4>,
    /// Payload bytes waiting to be read.
    pub recv_queue: usize,
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Datagrams dropped because the receive queue was full.
    pub rx_dropped: u64,
}

#[derive(Debug)]
struct UdpSocket {
    local: SocketAddrV4,
    remote: Option<SocketAddrV4>,
    broadcast: bool,
    ttl: u8,
    rx: VecDeque<RxDatagram>,
    rx_bytes: usize,
    limits: RecvLimits,
    error: Option<SocketError>,
    rx_datagrams: u64,
    tx_datagrams: u64,
    rx_dropped: u64,
    /// An event is queued for the runtime and not yet taken.
    event_pending: bool,
    owner: Option<std::sync::Arc<str>>,
    /// Collect every ICMP error about our datagrams (`IP_RECVERR`).
    recv_errors: bool,
    err_queue: VecDeque<UdpIcmpError>,
}

/// The UDP sockets of an interface. Read-only queries are here; socket
/// calls that change state are on [`Sockets<UdpLayer>`](Sockets), from
/// [`Interface::udp`](crate::iface::Interface::udp).
#[derive(Debug)]
pub struct UdpLayer {
    sockets: Slab<UdpSocket>,
    ports: HashMap<u16, Vec<Handle>, SeededState>,
    /// Receive buffers for reuse, so steady state allocates nothing.
    pool: Vec<Vec<u8>>,
    /// Sockets refused for a full transmit queue since it last drained:
    /// they get an event (writable again) when it does.
    tx_refused: Vec<Handle>,
}

const POOL: usize = 256;

impl UdpLayer {
    pub(crate) fn new(hasher: SeededState) -> UdpLayer {
        UdpLayer {
            sockets: Slab::default(),
            ports: HashMap::with_hasher(hasher),
            pool: Vec::new(),
            tx_refused: Vec::new(),
        }
    }

    fn socket(&self, h: UdpHandle) -> &UdpSocket {
        self.sockets
            .get(h.0)
            .expect("UDP handle is stale: the socket was closed")
    }

    fn socket_mut(&mut self, h: UdpHandle) -> &mut UdpSocket {
        self.sockets
            .get_mut(h.0)
            .expect("UDP handle is stale: the socket was closed")
    }

    fn conflicts(&self, local: SocketAddrV4) -> bool {
        self.ports.get(&local.port()).is_some_and(|hs| {
            hs.iter().any(|h| {
                let other = self.sockets.get(*h).expect("port map is consistent").local.ip();
                other == local.ip() || other.is_unspecified() || local.ip().is_unspecified()
            })
        })
    }

    /// Whether sending to broadcast addresses is allowed.
    pub fn broadcast(&self, h: UdpHandle) -> bool {
        self.socket(h).broadcast
    }

    /// The TTL of datagrams this socket sends.
    pub fn ttl(&self, h: UdpHandle) -> u8 {
        self.socket(h).ttl
    }

    /// The local address.
    pub fn local_addr(&self, h: UdpHandle) -> SocketAddrV4 {
        self.socket(h).local
    }

    /// The peer, if connected.
    pub fn peer_addr(&self, h: UdpHandle) -> Option<SocketAddrV4> {
        self.socket(h).remote
    }

    /// Whether a receive would return at once (a datagram or an error waits).
    pub fn can_recv(&self, h: UdpHandle) -> bool {
        let s = self.socket(h);
        !s.rx.is_empty() || s.error.is_some()
    }

    /// Every UDP socket, for `netstat`.
    pub fn sockets(&self) -> impl Iterator<Item = UdpSocketInfo> + '_ {
        self.sockets.iter().map(|(h, s)| UdpSocketInfo {
            owner: s.owner.clone(),
            handle: UdpHandle(h),
            local: s.local,
            remote: s.remote,
            recv_queue: s.rx_bytes,
            rx_datagrams: s.rx_datagrams,
            tx_datagrams: s.tx_datagrams,
            rx_dropped: s.rx_dropped,
        })
    }

    fn event(&mut self, cx: &mut Context<'_>, h: Handle) {
        let s = self.sockets.get_mut(h).expect("live socket");
        if !s.event_pending {
            s.event_pending = true;
            cx.notify(SocketEvent::Udp(UdpHandle(h)));
        }
    }

    /// The transmit queue drained: sockets refused for a full queue get an
    /// event (a Poll sees them writable again, as EPOLLOUT on Linux).
    pub(crate) fn tx_drained(&mut self, cx: &mut Context<'_>) {
        let refused = std::mem::take(&mut self.tx_refused);
        for &h in &refused {
            if self.sockets.get(h).is_some() {
                self.event(cx, h);
            }
        }
        self.tx_refused = refused;
        self.tx_refused.clear();
    }

    /// Whether a socket waits for the transmit queue to drain.
    pub(crate) fn tx_refused(&self) -> bool {
        !self.tx_refused.is_empty()
    }

    /// Marks a taken event as seen, so the next change queues a new one.
    pub(crate) fn event_taken(&mut self, h: UdpHandle) {
        if let Some(s) = self.sockets.get_mut(h.0) {
            s.event_pending = false;
        }
    }

    /// Queues a copy of `data` on socket `h`, or counts a drop.
    fn enqueue(&mut self, cx: &mut Context<'_>, h: Handle, from: SocketAddrV4, to: Ipv4Addr, data: &[u8]) {
        let mut buf = self.pool.pop().unwrap_or_default();
        let s = self.sockets.get_mut(h).expect("live socket");
        let over = s.rx_bytes + data.len() > s.limits.bytes || s.rx.len() >= s.limits.datagrams;
        if over && !s.rx.is_empty() {
            s.rx_dropped += 1;
            cx.stats().udp_rx_queue_full += 1;
            self.pool.push(buf);
            return;
        }
        buf.extend_from_slice(data);
        s.rx_bytes += data.len();
        s.rx_datagrams += 1;
        s.rx.push_back(RxDatagram { from, to, data: buf });
        cx.stats().udp_rx_datagrams += 1;
        self.event(cx, h);
    }

    /// Handles a UDP datagram addressed to us.
    pub(crate) fn input(&mut self, cx: &mut Context<'_>, dg: &Datagram<'_>) {
        let (src, dst) = (dg.header.src, dg.header.dst);
        let parsed = if dg.checksum_trusted {
            UdpDatagram::parse_trusted(dg.payload)
        } else {
            UdpDatagram::parse(dg.payload, src, dst)
        };
        let d = match parsed {
            Ok(d) => d,
            Err(e) => {
                let stats = cx.stats();
                let c = match e {
                    wire::UdpError::Truncated => &mut stats.udp_truncated,
                    wire::UdpError::BadLength => &mut stats.udp_bad_length,
                    wire::UdpError::BadChecksum => &mut stats.udp_bad_checksum,
                };
                *c += 1;
                log::trace!("udp from {src}: dropped ({e})");
                return;
            }
        };
        let from = SocketAddrV4::new(src, d.src_port);
        let Some(candidates) = self.ports.get(&d.dst_port) else {
            no_port(cx, dg);
            return;
        };
        // Each candidate's fitness: None if it must not hear this datagram.
        let score = |s: &UdpSocket| -> Option<u8> {
            let local = *s.local.ip();
            let mut score = 0;
            if local == dst {
                score += 1;
            } else if !local.is_unspecified() {
                return None;
            }
            match s.remote {
                Some(r) if r == from => score += 2,
                Some(_) => return None,
                None => {}
            }
            Some(score)
        };
        if dg.delivery == Delivery::Unicast {
            let best = candidates
                .iter()
                .filter_map(|h| score(self.sockets.get(*h).expect("live")).map(|sc| (sc, *h)))
                .max_by_key(|(sc, _)| *sc)
                .map(|(_, h)| h);
            match best {
                Some(h) => self.enqueue(cx, h, from, dst, d.payload),
                None => no_port(cx, dg),
            }
        } else {
            // Broadcasts go to every socket that may hear them (never an ICMP error).
            let hearers: Vec<Handle> = candidates
                .iter()
                .copied()
                .filter(|h| score(self.sockets.get(*h).expect("live")).is_some())
                .collect();
            if hearers.is_empty() {
                cx.stats().udp_no_port += 1;
            }
            for h in hearers {
                self.enqueue(cx, h, from, dst, d.payload);
            }
        }
    }

    /// An ICMP error quoting a UDP datagram we sent.
    pub(crate) fn icmp_error(&mut self, cx: &mut Context<'_>, report: &IcmpErrorReport<'_>) {
        let Some(sent) = UdpDatagram::parse_quote(report.transport) else {
            return;
        };
        let local_port = sent.src_port;
        let remote = SocketAddrV4::new(report.quoted.dst, sent.dst_port);
        let (kind_, code) = (report.kind, report.code);
        if let Some(hs) = self.ports.get(&local_port) {
            let queued: Vec<Handle> = hs
                .iter()
                .copied()
                .filter(|h| {
                    let s = self.sockets.get(*h).expect("live");
                    s.recv_errors && s.remote.is_none_or(|r| r == remote)
                })
                .collect();
            for h in queued {
                let s = self.sockets.get_mut(h).expect("live");
                if s.err_queue.len() < ERROR_QUEUE_LIMIT {
                    s.err_queue.push_back(UdpIcmpError {
                        from: report.from,
                        kind: kind_,
                        code,
                        dst: remote,
                        at: cx.now(),
                    });
                    self.event(cx, h);
                }
            }
        }
        let Some((err, hard)) = SocketError::from_icmp(kind_, code) else {
            return;
        };
        let Some(hs) = self.ports.get(&local_port) else {
            return;
        };
        let target = hs
            .iter()
            .copied()
            .find(|h| self.sockets.get(*h).is_some_and(|s| s.remote == Some(remote)));
        match target {
            Some(h) if hard => {
                self.sockets.get_mut(h).expect("live").error = Some(err);
                cx.stats().udp_icmp_errors += 1;
                log::debug!("udp port {local_port}: {err} from {remote}");
                self.event(cx, h);
            }
            _ => log::trace!("udp port {local_port}: ICMP {kind_}/{code} about {remote} not reported"),
        }
    }
}

/// No socket for a unicast datagram: ICMP port unreachable (RFC 1122 §4.1.3.1).
fn no_port(cx: &mut Context<'_>, dg: &Datagram<'_>) {
    cx.stats().udp_no_port += 1;
    cx.send_icmp_error(kind::DEST_UNREACHABLE, unreachable::PORT, [0; 4], dg);
}

/// The socket calls.
impl Sockets<'_, UdpLayer> {
    /// Opens a UDP socket bound to `local`; port 0 picks a free ephemeral port.
    pub fn bind(&mut self, local: SocketAddrV4) -> Result<UdpHandle, BindError> {
        let ip = *local.ip();
        if !(ip.is_unspecified() || ip == self.cx.addr() || self.cx.is_broadcast(ip)) {
            return Err(BindError::AddrNotAvailable);
        }
        let layer = &mut *self.layer;
        let port = if local.port() == 0 {
            sock::ephemeral_port(self.cx.rng(), |p| {
                layer.ports.contains_key(&p) || layer.conflicts(SocketAddrV4::new(ip, p))
            })
            .ok_or(BindError::AddrInUse)?
        } else {
            local.port()
        };
        let local = SocketAddrV4::new(ip, port);
        if layer.conflicts(local) {
            return Err(BindError::AddrInUse);
        }
        let h = layer.sockets.insert(UdpSocket {
            local,
            remote: None,
            broadcast: false,
            ttl: ip::DEFAULT_TTL,
            rx: VecDeque::new(),
            rx_bytes: 0,
            limits: RecvLimits::default(),
            error: None,
            rx_datagrams: 0,
            tx_datagrams: 0,
            rx_dropped: 0,
            event_pending: false,
            owner: None,
            recv_errors: false,
            err_queue: VecDeque::new(),
        });
        layer.ports.entry(port).or_default().push(h);
        log::debug!("udp {local}: bound");
        Ok(UdpHandle(h))
    }

    /// Closes a socket; queued datagrams are discarded.
    pub fn close(&mut self, h: UdpHandle) {
        let layer = &mut *self.layer;
        let s = layer
            .sockets
            .remove(h.0)
            .expect("UDP handle is stale: the socket was closed");
        if let Some(hs) = layer.ports.get_mut(&s.local.port()) {
            hs.retain(|x| *x != h.0);
            if hs.is_empty() {
                layer.ports.remove(&s.local.port());
            }
        }
        log::debug!("udp {}: closed", s.local);
    }

    /// Sets the default peer: `send` goes there and only its datagrams are received.
    pub fn connect(&mut self, h: UdpHandle, remote: SocketAddrV4) -> Result<(), ConnectError> {
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(ConnectError::InvalidAddress);
        }
        if self.cx.is_broadcast(*remote.ip()) && !self.layer.broadcast(h) {
            return Err(ConnectError::PermissionDenied);
        }
        if !self.cx.has_route(*remote.ip()) && !remote.ip().is_broadcast() {
            return Err(ConnectError::NetUnreachable);
        }
        let our = self.cx.addr();
        let s = self.layer.socket_mut(h);
        // Like Linux, a wildcard-bound socket takes the source address it will use.
        if s.local.ip().is_unspecified() {
            s.local.set_ip(our);
        }
        s.remote = Some(remote);
        s.error = None;
        log::debug!("udp {}: connected to {remote}", s.local);
        Ok(())
    }

    /// Allows or forbids sending to broadcast addresses (`SO_BROADCAST`).
    pub fn set_broadcast(&mut self, h: UdpHandle, on: bool) {
        self.layer.socket_mut(h).broadcast = on;
    }

    /// Queues every ICMP error about this socket's datagrams, connected or
    /// not (Linux's `IP_RECVERR`), for [`recv_error`](Self::recv_error).
    pub fn set_recv_errors(&mut self, h: UdpHandle, on: bool) {
        let s = self.layer.socket_mut(h);
        s.recv_errors = on;
        if !on {
            s.err_queue.clear();
        }
    }

    /// The oldest queued ICMP error, if any.
    pub fn recv_error(&mut self, h: UdpHandle) -> Option<UdpIcmpError> {
        self.layer.socket_mut(h).err_queue.pop_front()
    }

    /// Labels the socket with its user, for netstat.
    pub fn set_owner(&mut self, h: UdpHandle, owner: Option<std::sync::Arc<str>>) {
        self.layer.socket_mut(h).owner = owner;
    }

    /// Sets the TTL of datagrams this socket sends (`IP_TTL`).
    pub fn set_ttl(&mut self, h: UdpHandle, ttl: u8) {
        self.layer.socket_mut(h).ttl = ttl;
    }

    /// Sets the receive-queue limits.
    pub fn set_recv_limits(&mut self, h: UdpHandle, limits: RecvLimits) {
        self.layer.socket_mut(h).limits = limits;
    }

    /// Takes the pending ICMP-derived error, if any (`SO_ERROR`).
    pub fn take_error(&mut self, h: UdpHandle) -> Option<SocketError> {
        self.layer.socket_mut(h).error.take()
    }

    /// Sends to the connected peer.
    pub fn send(&mut self, h: UdpHandle, data: &[u8]) -> Result<(), SendError> {
        let remote = self.layer.peer_addr(h).ok_or(SendError::NotConnected)?;
        self.send_to(h, remote, data, None)
    }

    /// Sends one datagram to `dst`, with the socket's TTL unless `ttl` is given.
    pub fn send_to(&mut self, h: UdpHandle, dst: SocketAddrV4, data: &[u8], ttl: Option<u8>) -> Result<(), SendError> {
        let broadcast_dst = self.cx.is_broadcast(*dst.ip());
        let s = self.layer.socket_mut(h);
        if let Some(e) = s.error.take() {
            return Err(SendError::Socket(e));
        }
        if dst.port() == 0 || dst.ip().is_unspecified() {
            return Err(SendError::InvalidAddress);
        }
        if data.len() > wire::MAX_PAYLOAD {
            return Err(SendError::MessageTooBig);
        }
        if broadcast_dst && !s.broadcast {
            return Err(SendError::PermissionDenied);
        }
        let ttl = ttl.unwrap_or(s.ttl);
        let datagram = UdpDatagram {
            src_port: s.local.port(),
            dst_port: dst.port(),
            payload: data,
        };
        let mut payload = self.cx.buffer();
        datagram.emit(&mut payload, self.cx.addr(), *dst.ip());
        match self.cx.send_datagram(*dst.ip(), protocol::UDP, ttl, false, payload) {
            Ok(()) => {
                self.cx.stats().udp_tx_datagrams += 1;
                self.layer.socket_mut(h).tx_datagrams += 1;
                Ok(())
            }
            Err(OutputError::NoRoute) => Err(SendError::NetUnreachable),
            Err(OutputError::QueueFull) => {
                if !self.layer.tx_refused.contains(&h.0) {
                    self.layer.tx_refused.push(h.0);
                }
                Err(SendError::QueueFull)
            }
            Err(OutputError::TooBig) => Err(SendError::MessageTooBig),
        }
    }

    /// Receives (or with `peek`, looks at) the next datagram, copying what
    /// fits into `buf`; the rest of a longer datagram is dropped unless peeking.
    pub fn recv_from(&mut self, h: UdpHandle, buf: &mut [u8], peek: bool) -> Result<Received, RecvError> {
        let layer = &mut *self.layer;
        let s = layer
            .sockets
            .get_mut(h.0)
            .expect("UDP handle is stale: the socket was closed");
        if let Some(e) = s.error.take() {
            return Err(RecvError::Socket(e));
        }
        let d = s.rx.front().ok_or(RecvError::WouldBlock)?;
        let len = d.data.len().min(buf.len());
        buf[..len].copy_from_slice(&d.data[..len]);
        let got = Received {
            len,
            full_len: d.data.len(),
            from: d.from,
            to: d.to,
        };
        if !peek {
            let d = s.rx.pop_front().expect("front exists");
            s.rx_bytes -= d.data.len();
            if layer.pool.len() < POOL {
                let mut b = d.data;
                b.clear();
                layer.pool.push(b);
            }
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests;
