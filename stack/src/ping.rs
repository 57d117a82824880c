//! ICMP echo sockets: what `ping` uses. Like Linux's ping sockets, each has
//! an identifier (its "port"); replies carrying it come back to it, and so
//! do ICMP errors that quote one of its requests (TTL exceeded on the way,
//! unreachable), which is what `traceroute -I` reads.

#![forbid(unsafe_code)]

use crate::icmp::ErrorContext;
use crate::iface::{Interface, SendError as IpSendError, SocketEvent};
use crate::ip;
use crate::socket::{Handle, Slab};
use crate::time::Instant;
use crate::wire::icmp::{self as wire, IcmpMessage, kind};
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

/// Refers to one ICMP echo socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpHandle(pub(crate) Handle);

/// Something that came back for an echo socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IcmpEvent {
    /// An echo reply.
    Reply {
        /// Who answered.
        from: Ipv4Addr,
        /// The sequence number it echoes.
        seq: u16,
        /// TTL of the reply's IP header.
        ttl: u8,
        /// The echoed data.
        data: Vec<u8>,
        /// When it arrived (the stack's clock).
        at: Instant,
    },
    /// An ICMP error about one of our echo requests.
    Error {
        /// The router or host that reported it.
        from: Ipv4Addr,
        /// ICMP type (3 unreachable, 11 time exceeded, ...).
        kind: u8,
        /// ICMP code.
        code: u8,
        /// The sequence number of the request it quotes.
        seq: u16,
        /// When it arrived.
        at: Instant,
    },
}

/// Why an echo request was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingError {
    /// Broadcast destination (ping -b is for the host's ping; not supported here).
    PermissionDenied,
    /// No route.
    NetUnreachable,
    /// Transmit queue full.
    QueueFull,
    /// More than 65507 bytes of data.
    TooBig,
}

const QUEUE_LIMIT: usize = 256;

#[derive(Debug)]
struct EchoSocket {
    ident: u16,
    queue: VecDeque<IcmpEvent>,
    event_pending: bool,
}

/// All echo sockets.
#[derive(Debug, Default)]
pub(crate) struct PingLayer {
    sockets: Slab<EchoSocket>,
    by_ident: HashMap<u16, Handle>,
}

impl Interface {
    /// Opens an echo socket with an unused random identifier.
    pub fn icmp_bind(&mut self) -> IcmpHandle {
        let ident = loop {
            let id = self.rng.next_u32() as u16;
            if !self.ping.by_ident.contains_key(&id) {
                break id;
            }
        };
        let h = self.ping.sockets.insert(EchoSocket {
            ident,
            queue: VecDeque::new(),
            event_pending: false,
        });
        self.ping.by_ident.insert(ident, h);
        IcmpHandle(h)
    }

    /// The socket's echo identifier.
    pub fn icmp_ident(&self, h: IcmpHandle) -> u16 {
        self.ping.sockets.get(h.0).expect("echo handle is stale").ident
    }

    /// Closes an echo socket.
    pub fn icmp_close(&mut self, h: IcmpHandle) {
        if let Some(s) = self.ping.sockets.remove(h.0) {
            self.ping.by_ident.remove(&s.ident);
        }
    }

    /// Sends an echo request with `data` and IP TTL `ttl`.
    pub fn icmp_send_echo(
        &mut self,
        h: IcmpHandle,
        dst: Ipv4Addr,
        seq: u16,
        data: &[u8],
        ttl: u8,
    ) -> Result<(), PingError> {
        if dst.is_broadcast() || Some(dst) == self.config.address.broadcast() {
            return Err(PingError::PermissionDenied);
        }
        if data.len() > 65507 {
            return Err(PingError::TooBig);
        }
        let ident = self.icmp_ident(h);
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&ident.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        let mut msg = self.tx.buffer();
        wire::write_message(&mut msg, kind::ECHO_REQUEST, 0, rest, data);
        match self.send_datagram(dst, ip::protocol::ICMP, ttl, false, msg) {
            Ok(()) => Ok(()),
            Err(IpSendError::NoRoute) => Err(PingError::NetUnreachable),
            Err(IpSendError::QueueFull) => Err(PingError::QueueFull),
            Err(IpSendError::TooBig) => Err(PingError::TooBig),
        }
    }

    /// The next reply or error for the socket, if any.
    pub fn icmp_recv(&mut self, h: IcmpHandle) -> Option<IcmpEvent> {
        self.ping
            .sockets
            .get_mut(h.0)
            .expect("echo handle is stale")
            .queue
            .pop_front()
    }

    /// Marks a taken event as seen.
    pub(crate) fn icmp_event_taken(&mut self, h: IcmpHandle) {
        if let Some(s) = self.ping.sockets.get_mut(h.0) {
            s.event_pending = false;
        }
    }

    fn ping_deliver(&mut self, ident: u16, ev: IcmpEvent) -> bool {
        let Some(&h) = self.ping.by_ident.get(&ident) else {
            return false;
        };
        let s = self.ping.sockets.get_mut(h).expect("table and slab agree");
        if s.queue.len() >= QUEUE_LIMIT {
            return true; // full: dropped, as a full socket buffer would
        }
        s.queue.push_back(ev);
        if !s.event_pending {
            s.event_pending = true;
            self.events.push(SocketEvent::Icmp(IcmpHandle(h)));
        }
        true
    }

    /// An echo reply for us: to the socket with its identifier, if any.
    pub(crate) fn ping_reply_input(&mut self, now: Instant, ctx: &ErrorContext<'_>, msg: &IcmpMessage<'_>) -> bool {
        let ev = IcmpEvent::Reply {
            from: ctx.src,
            seq: msg.echo_seq(),
            ttl: ctx.header.get(8).copied().unwrap_or(0),
            data: msg.data.to_vec(),
            at: now,
        };
        self.ping_deliver(msg.echo_ident(), ev)
    }

    /// An ICMP error quoting an echo request of ours (`quote_icmp`: the quoted ICMP header).
    pub(crate) fn ping_error_input(&mut self, now: Instant, from: Ipv4Addr, msg: &IcmpMessage<'_>, quote_icmp: &[u8]) {
        if quote_icmp.len() < 8 || quote_icmp[0] != kind::ECHO_REQUEST {
            return;
        }
        let ident = u16::from_be_bytes([quote_icmp[4], quote_icmp[5]]);
        let seq = u16::from_be_bytes([quote_icmp[6], quote_icmp[7]]);
        let ev = IcmpEvent::Error {
            from,
            kind: msg.kind,
            code: msg.code,
            seq,
            at: now,
        };
        self.ping_deliver(ident, ev);
    }
}
