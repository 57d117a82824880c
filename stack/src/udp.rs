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

use crate::icmp::ErrorContext;
use crate::iface::{Delivery, Interface, SendError as IpSendError};
use crate::ip::{self, protocol};
use crate::rand::SeededState;
use crate::socket::{Handle, Slab};
use crate::time::Instant;
use crate::wire::icmp::{kind, unreachable};
use crate::wire::udp::{self as wire, UdpDatagram};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

/// First port of the ephemeral range (IANA, RFC 6335).
pub const EPHEMERAL_FIRST: u16 = 49152;
/// Last port of the ephemeral range.
pub const EPHEMERAL_LAST: u16 = 65535;

/// Refers to one UDP socket of an [`Interface`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpHandle(pub(crate) Handle);

impl UdpHandle {
    /// A small number identifying the socket while it lives.
    pub fn id(&self) -> u32 {
        self.0.index()
    }
}

/// An error reported to a socket because of an ICMP message (Linux's `icmp_err_convert`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketError {
    /// Port unreachable: nobody listens there (ECONNREFUSED).
    ConnectionRefused,
    /// Protocol unreachable (ENOPROTOOPT).
    ProtocolUnavailable,
    /// Host unreachable, or TTL exceeded on the way (EHOSTUNREACH).
    HostUnreachable,
    /// Network unreachable (ENETUNREACH).
    NetUnreachable,
    /// Fragmentation needed but DF set (EMSGSIZE).
    MessageTooBig,
}

impl SocketError {
    /// Maps an ICMP error to a socket error and whether it is "hard"
    /// (reported on a connected socket). Linux reports only hard errors
    /// without `IP_RECVERR`.
    pub fn from_icmp(kind_: u8, code: u8) -> Option<(SocketError, bool)> {
        match (kind_, code) {
            (kind::DEST_UNREACHABLE, unreachable::NET) => Some((SocketError::NetUnreachable, false)),
            (kind::DEST_UNREACHABLE, unreachable::HOST) => Some((SocketError::HostUnreachable, false)),
            (kind::DEST_UNREACHABLE, unreachable::PROTOCOL) => Some((SocketError::ProtocolUnavailable, true)),
            (kind::DEST_UNREACHABLE, unreachable::PORT) => Some((SocketError::ConnectionRefused, true)),
            (kind::DEST_UNREACHABLE, unreachable::FRAG_NEEDED) => Some((SocketError::MessageTooBig, false)),
            (kind::DEST_UNREACHABLE, 6 | 9 | 11) => Some((SocketError::NetUnreachable, true)),
            (kind::DEST_UNREACHABLE, 5 | 7 | 8 | 10 | 12 | 13 | 14 | 15) => Some((SocketError::HostUnreachable, true)),
            (kind::TIME_EXCEEDED, _) => Some((SocketError::HostUnreachable, false)),
            _ => None,
        }
    }
}

/// Why a bind failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// Another socket holds the address and port.
    AddrInUse,
    /// The address is not one of ours (nor 0.0.0.0 or a broadcast address).
    AddrNotAvailable,
}

/// Why a connect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// Port 0 or address 0.0.0.0.
    InvalidAddress,
    /// A broadcast peer without the broadcast flag.
    PermissionDenied,
    /// No route to the peer.
    NetUnreachable,
}

/// Why a send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// `send` on a socket that is not connected.
    NotConnected,
    /// Port 0 or address 0.0.0.0.
    InvalidAddress,
    /// A broadcast destination without the broadcast flag.
    PermissionDenied,
    /// More than 65507 bytes.
    MessageTooBig,
    /// No route to the destination.
    NetUnreachable,
    /// The transmit queue is full: try again once it drains.
    QueueFull,
    /// An earlier ICMP error, reported now (and cleared).
    Socket(SocketError),
}

/// Why a receive returned no datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing queued.
    WouldBlock,
    /// An earlier ICMP error, reported now (and cleared).
    Socket(SocketError),
}

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

/// All UDP sockets of an interface.
#[derive(Debug)]
pub(crate) struct UdpLayer {
    sockets: Slab<UdpSocket>,
    ports: HashMap<u16, Vec<Handle>, SeededState>,
    /// Receive buffers for reuse, so steady state allocates nothing.
    pool: Vec<Vec<u8>>,
}

const POOL: usize = 256;

impl UdpLayer {
    pub(crate) fn new(hasher: SeededState) -> UdpLayer {
        UdpLayer {
            sockets: Slab::default(),
            ports: HashMap::with_hasher(hasher),
            pool: Vec::new(),
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
}

/// Whether `ip` is a broadcast address for an interface on `cidr`.
fn is_broadcast(iface: &Interface, ip: Ipv4Addr) -> bool {
    ip.is_broadcast() || Some(ip) == iface.config.address.broadcast()
}

impl Interface {
    /// Opens a UDP socket bound to `local`; port 0 picks a free ephemeral port.
    pub fn udp_bind(&mut self, local: SocketAddrV4) -> Result<UdpHandle, BindError> {
        let ip = *local.ip();
        if !(ip.is_unspecified() || ip == self.config.address.addr() || is_broadcast(self, ip)) {
            return Err(BindError::AddrNotAvailable);
        }
        let port = if local.port() == 0 {
            self.udp_ephemeral_port(ip).ok_or(BindError::AddrInUse)?
        } else {
            local.port()
        };
        let local = SocketAddrV4::new(ip, port);
        if self.udp.conflicts(local) {
            return Err(BindError::AddrInUse);
        }
        let h = self.udp.sockets.insert(UdpSocket {
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
        self.udp.ports.entry(port).or_default().push(h);
        log::debug!("udp {local}: bound");
        Ok(UdpHandle(h))
    }

    /// A free port from the ephemeral range: a random start, then the next free one.
    fn udp_ephemeral_port(&mut self, ip: Ipv4Addr) -> Option<u16> {
        let span = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
        let start = self.rng.below(u64::from(span)) as u32;
        (0..span)
            .map(|i| EPHEMERAL_FIRST + ((start + i) % span) as u16)
            .find(|p| !self.udp.ports.contains_key(p) && !self.udp.conflicts(SocketAddrV4::new(ip, *p)))
    }

    /// Closes a socket; queued datagrams are discarded.
    pub fn udp_close(&mut self, h: UdpHandle) {
        let s = self
            .udp
            .sockets
            .remove(h.0)
            .expect("UDP handle is stale: the socket was closed");
        if let Some(hs) = self.udp.ports.get_mut(&s.local.port()) {
            hs.retain(|x| *x != h.0);
            if hs.is_empty() {
                self.udp.ports.remove(&s.local.port());
            }
        }
        log::debug!("udp {}: closed", s.local);
    }

    /// Sets the default peer: `udp_send` goes there and only its datagrams are received.
    pub fn udp_connect(&mut self, h: UdpHandle, remote: SocketAddrV4) -> Result<(), ConnectError> {
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(ConnectError::InvalidAddress);
        }
        if is_broadcast(self, *remote.ip()) && !self.udp.socket(h).broadcast {
            return Err(ConnectError::PermissionDenied);
        }
        if self.routes.lookup(*remote.ip()).is_none() && !remote.ip().is_broadcast() {
            return Err(ConnectError::NetUnreachable);
        }
        let our = self.config.address.addr();
        let s = self.udp.socket_mut(h);
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
    pub fn udp_set_broadcast(&mut self, h: UdpHandle, on: bool) {
        self.udp.socket_mut(h).broadcast = on;
    }

    /// Whether sending to broadcast addresses is allowed.
    pub fn udp_broadcast(&self, h: UdpHandle) -> bool {
        self.udp.socket(h).broadcast
    }

    /// Queues every ICMP error about this socket's datagrams, connected or
    /// not (Linux's `IP_RECVERR`), for [`udp_recv_error`](Self::udp_recv_error).
    pub fn udp_set_recv_errors(&mut self, h: UdpHandle, on: bool) {
        let s = self.udp.socket_mut(h);
        s.recv_errors = on;
        if !on {
            s.err_queue.clear();
        }
    }

    /// The oldest queued ICMP error, if any.
    pub fn udp_recv_error(&mut self, h: UdpHandle) -> Option<UdpIcmpError> {
        self.udp.socket_mut(h).err_queue.pop_front()
    }

    /// Labels the socket with its user, for netstat.
    pub fn udp_set_owner(&mut self, h: UdpHandle, owner: Option<std::sync::Arc<str>>) {
        self.udp.socket_mut(h).owner = owner;
    }

    /// Sets the TTL of datagrams this socket sends (`IP_TTL`).
    pub fn udp_set_ttl(&mut self, h: UdpHandle, ttl: u8) {
        self.udp.socket_mut(h).ttl = ttl;
    }

    /// The TTL of datagrams this socket sends.
    pub fn udp_ttl(&self, h: UdpHandle) -> u8 {
        self.udp.socket(h).ttl
    }

    /// Sets the receive-queue limits.
    pub fn udp_set_recv_limits(&mut self, h: UdpHandle, limits: RecvLimits) {
        self.udp.socket_mut(h).limits = limits;
    }

    /// The local address.
    pub fn udp_local_addr(&self, h: UdpHandle) -> SocketAddrV4 {
        self.udp.socket(h).local
    }

    /// The peer, if connected.
    pub fn udp_peer_addr(&self, h: UdpHandle) -> Option<SocketAddrV4> {
        self.udp.socket(h).remote
    }

    /// Takes the pending ICMP-derived error, if any (`SO_ERROR`).
    pub fn udp_take_error(&mut self, h: UdpHandle) -> Option<SocketError> {
        self.udp.socket_mut(h).error.take()
    }

    /// Whether a receive would return at once (a datagram or an error waits).
    pub fn udp_can_recv(&self, h: UdpHandle) -> bool {
        let s = self.udp.socket(h);
        !s.rx.is_empty() || s.error.is_some()
    }

    /// Sends to the connected peer.
    pub fn udp_send(&mut self, now: Instant, h: UdpHandle, data: &[u8]) -> Result<(), SendError> {
        let remote = self.udp.socket(h).remote.ok_or(SendError::NotConnected)?;
        self.udp_send_to(now, h, remote, data, None)
    }

    /// Sends one datagram to `dst`, with the socket's TTL unless `ttl` is given.
    pub fn udp_send_to(
        &mut self,
        _now: Instant,
        h: UdpHandle,
        dst: SocketAddrV4,
        data: &[u8],
        ttl: Option<u8>,
    ) -> Result<(), SendError> {
        let broadcast_dst = is_broadcast(self, *dst.ip());
        let s = self.udp.socket_mut(h);
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
        let src_port = s.local.port();
        let src = self.config.address.addr();
        let mut payload = self.tx.buffer();
        wire::write(&mut payload, src, src_port, *dst.ip(), dst.port(), data);
        match self.send_datagram(*dst.ip(), protocol::UDP, ttl, false, payload) {
            Ok(()) => {
                self.stats.udp_tx_datagrams += 1;
                self.udp.socket_mut(h).tx_datagrams += 1;
                Ok(())
            }
            Err(IpSendError::NoRoute) => Err(SendError::NetUnreachable),
            Err(IpSendError::QueueFull) => Err(SendError::QueueFull),
            Err(IpSendError::TooBig) => Err(SendError::MessageTooBig),
        }
    }

    /// Receives (or with `peek`, looks at) the next datagram, copying what
    /// fits into `buf`; the rest of a longer datagram is dropped unless peeking.
    pub fn udp_recv_from(&mut self, h: UdpHandle, buf: &mut [u8], peek: bool) -> Result<Received, RecvError> {
        let s = self
            .udp
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
            if self.udp.pool.len() < POOL {
                let mut b = d.data;
                b.clear();
                self.udp.pool.push(b);
            }
        }
        Ok(got)
    }

    /// Every UDP socket, for `netstat`.
    pub fn udp_sockets(&self) -> impl Iterator<Item = UdpSocketInfo> + '_ {
        self.udp.sockets.iter().map(|(h, s)| UdpSocketInfo {
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

    fn udp_event(&mut self, h: Handle) {
        let s = self.udp.sockets.get_mut(h).expect("live socket");
        if !s.event_pending {
            s.event_pending = true;
            self.events.push(crate::iface::SocketEvent::Udp(UdpHandle(h)));
        }
    }

    /// Marks a taken event as seen, so the next change queues a new one.
    pub(crate) fn udp_event_taken(&mut self, h: UdpHandle) {
        if let Some(s) = self.udp.sockets.get_mut(h.0) {
            s.event_pending = false;
        }
    }

    /// Queues a copy of `data` on socket `h`, or counts a drop.
    fn udp_enqueue(&mut self, h: Handle, from: SocketAddrV4, to: Ipv4Addr, data: &[u8]) {
        let mut buf = self.udp.pool.pop().unwrap_or_default();
        let s = self.udp.sockets.get_mut(h).expect("live socket");
        let over = s.rx_bytes + data.len() > s.limits.bytes || s.rx.len() >= s.limits.datagrams;
        if over && !s.rx.is_empty() {
            s.rx_dropped += 1;
            self.stats.udp_rx_queue_full += 1;
            self.udp.pool.push(buf);
            return;
        }
        buf.extend_from_slice(data);
        s.rx_bytes += data.len();
        s.rx_datagrams += 1;
        s.rx.push_back(RxDatagram { from, to, data: buf });
        self.stats.udp_rx_datagrams += 1;
        self.udp_event(h);
    }

    /// Handles a UDP datagram addressed to us.
    pub(crate) fn udp_input(&mut self, now: Instant, ctx: &ErrorContext<'_>, dst: Ipv4Addr) {
        let d = match UdpDatagram::parse(ctx.payload, ctx.src, dst) {
            Ok(d) => d,
            Err(e) => {
                let c = match e {
                    wire::UdpError::Truncated => &mut self.stats.udp_truncated,
                    wire::UdpError::BadLength => &mut self.stats.udp_bad_length,
                    wire::UdpError::BadChecksum => &mut self.stats.udp_bad_checksum,
                };
                *c += 1;
                log::trace!("udp from {}: dropped ({e:?})", ctx.src);
                return;
            }
        };
        let from = SocketAddrV4::new(ctx.src, d.src_port);
        let Some(candidates) = self.udp.ports.get(&d.dst_port) else {
            self.udp_no_port(now, ctx);
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
        if ctx.delivery == Delivery::Unicast {
            let best = candidates
                .iter()
                .filter_map(|h| score(self.udp.sockets.get(*h).expect("live")).map(|sc| (sc, *h)))
                .max_by_key(|(sc, _)| *sc)
                .map(|(_, h)| h);
            match best {
                Some(h) => self.udp_enqueue(h, from, dst, d.payload),
                None => self.udp_no_port(now, ctx),
            }
        } else {
            // Broadcasts go to every socket that may hear them (never an ICMP error).
            let hearers: Vec<Handle> = candidates
                .iter()
                .copied()
                .filter(|h| score(self.udp.sockets.get(*h).expect("live")).is_some())
                .collect();
            if hearers.is_empty() {
                self.stats.udp_no_port += 1;
            }
            for h in hearers {
                self.udp_enqueue(h, from, dst, d.payload);
            }
        }
    }

    fn udp_no_port(&mut self, now: Instant, ctx: &ErrorContext<'_>) {
        self.stats.udp_no_port += 1;
        self.send_icmp_error(now, kind::DEST_UNREACHABLE, unreachable::PORT, [0; 4], ctx);
    }

    /// An ICMP error from `from` quoting a UDP datagram we sent from
    /// `local_port` to `remote`.
    pub(crate) fn udp_icmp_error(
        &mut self,
        now: Instant,
        from: Ipv4Addr,
        local_port: u16,
        remote: SocketAddrV4,
        kind_: u8,
        code: u8,
    ) {
        if let Some(hs) = self.udp.ports.get(&local_port) {
            let queued: Vec<Handle> = hs
                .iter()
                .copied()
                .filter(|h| {
                    let s = self.udp.sockets.get(*h).expect("live");
                    s.recv_errors && s.remote.is_none_or(|r| r == remote)
                })
                .collect();
            for h in queued {
                let s = self.udp.sockets.get_mut(h).expect("live");
                if s.err_queue.len() < ERROR_QUEUE_LIMIT {
                    s.err_queue.push_back(UdpIcmpError {
                        from,
                        kind: kind_,
                        code,
                        dst: remote,
                        at: now,
                    });
                    self.udp_event(h);
                }
            }
        }
        let Some((err, hard)) = SocketError::from_icmp(kind_, code) else {
            return;
        };
        let Some(hs) = self.udp.ports.get(&local_port) else {
            return;
        };
        let target = hs
            .iter()
            .copied()
            .find(|h| self.udp.sockets.get(*h).is_some_and(|s| s.remote == Some(remote)));
        match target {
            Some(h) if hard => {
                self.udp.sockets.get_mut(h).expect("live").error = Some(err);
                self.stats.udp_icmp_errors += 1;
                log::debug!("udp port {local_port}: {err:?} from {remote}");
                self.udp_event(h);
            }
            _ => log::trace!("udp port {local_port}: ICMP {kind_}/{code} about {remote} not reported"),
        }
    }
}

#[cfg(test)]
mod tests;
