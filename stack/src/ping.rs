//! ICMP echo sockets: what `ping` uses. Like Linux's ping sockets, each has
//! an identifier (its "port"); replies carrying it come back to it, and so
//! do ICMP errors that quote one of its requests (TTL exceeded on the way,
//! unreachable), which is what `traceroute -I` reads.

#![forbid(unsafe_code)]

use crate::ip::context::{Context, IcmpErrorReport};
use crate::ip::{OutputError, Sockets, protocol};
use crate::socket::{Handle, Slab, SocketEvent};
use crate::time::Instant;
use crate::wire::icmp::{IcmpMessage, kind};
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

pub use crate::socket::IcmpHandle;

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

error_messages!(PingError {
    PermissionDenied => "echo requests to a broadcast address are not allowed",
    NetUnreachable => "no route to the destination",
    QueueFull => "transmit queue full",
    TooBig => "echo data longer than 65507 bytes",
});

const QUEUE_LIMIT: usize = 256;

#[derive(Debug)]
struct EchoSocket {
    ident: u16,
    queue: VecDeque<IcmpEvent>,
    event_pending: bool,
}

/// The echo sockets of an interface.
#[derive(Debug, Default)]
pub struct PingLayer {
    sockets: Slab<EchoSocket>,
    by_ident: HashMap<u16, Handle>,
}

impl PingLayer {
    /// The socket's echo identifier.
    pub fn ident(&self, h: IcmpHandle) -> u16 {
        self.sockets.get(h.0).expect("echo handle is stale").ident
    }

    /// Marks a taken event as seen.
    pub(crate) fn event_taken(&mut self, h: IcmpHandle) {
        if let Some(s) = self.sockets.get_mut(h.0) {
            s.event_pending = false;
        }
    }

    /// Queues `ev` for the socket with identifier `ident`; false if there is none.
    fn deliver(&mut self, cx: &mut Context<'_>, ident: u16, ev: IcmpEvent) -> bool {
        let Some(&h) = self.by_ident.get(&ident) else {
            return false;
        };
        let s = self.sockets.get_mut(h).expect("table and slab agree");
        if s.queue.len() >= QUEUE_LIMIT {
            return true; // full: dropped, as a full socket buffer would
        }
        s.queue.push_back(ev);
        if !s.event_pending {
            s.event_pending = true;
            cx.notify(SocketEvent::Icmp(IcmpHandle(h)));
        }
        true
    }

    /// An echo reply for us (`from`, with IP TTL `ttl`): to the socket with its identifier, if any.
    pub(crate) fn echo_reply(&mut self, cx: &mut Context<'_>, from: Ipv4Addr, ttl: u8, msg: &IcmpMessage<'_>) {
        let ev = IcmpEvent::Reply {
            from,
            seq: msg.echo_seq(),
            ttl,
            data: msg.data.to_vec(),
            at: cx.now(),
        };
        if !self.deliver(cx, msg.echo_ident(), ev) {
            cx.stats().icmp_rx_echo_replies += 1;
        }
    }

    /// An ICMP error quoting an echo request of ours.
    pub(crate) fn icmp_error(&mut self, cx: &mut Context<'_>, report: &IcmpErrorReport<'_>) {
        let Some(request) = IcmpMessage::parse_quote(report.transport) else {
            return;
        };
        if request.kind != kind::ECHO_REQUEST {
            return;
        }
        let ev = IcmpEvent::Error {
            from: report.from,
            kind: report.kind,
            code: report.code,
            seq: request.echo_seq(),
            at: cx.now(),
        };
        self.deliver(cx, request.echo_ident(), ev);
    }
}

/// The socket calls.
impl Sockets<'_, PingLayer> {
    /// Opens an echo socket with an unused random identifier.
    pub fn bind(&mut self) -> IcmpHandle {
        let ident = loop {
            let id = self.cx.rng().next_u32() as u16;
            if !self.layer.by_ident.contains_key(&id) {
                break id;
            }
        };
        let h = self.layer.sockets.insert(EchoSocket {
            ident,
            queue: VecDeque::new(),
            event_pending: false,
        });
        self.layer.by_ident.insert(ident, h);
        IcmpHandle(h)
    }

    /// Closes an echo socket.
    pub fn close(&mut self, h: IcmpHandle) {
        if let Some(s) = self.layer.sockets.remove(h.0) {
            self.layer.by_ident.remove(&s.ident);
        }
    }

    /// Sends an echo request with `data` and IP TTL `ttl`.
    pub fn send_echo(&mut self, h: IcmpHandle, dst: Ipv4Addr, seq: u16, data: &[u8], ttl: u8) -> Result<(), PingError> {
        if self.cx.is_broadcast(dst) {
            return Err(PingError::PermissionDenied);
        }
        if data.len() > 65507 {
            return Err(PingError::TooBig);
        }
        let ident = self.layer.ident(h);
        let mut msg = self.cx.buffer();
        IcmpMessage::echo(kind::ECHO_REQUEST, ident, seq, data).emit(&mut msg);
        match self.cx.send_datagram(dst, protocol::ICMP, ttl, false, msg) {
            Ok(()) => Ok(()),
            Err(OutputError::NoRoute) => Err(PingError::NetUnreachable),
            Err(OutputError::QueueFull) => Err(PingError::QueueFull),
            Err(OutputError::TooBig) => Err(PingError::TooBig),
        }
    }

    /// The next reply or error for the socket, if any.
    pub fn recv(&mut self, h: IcmpHandle) -> Option<IcmpEvent> {
        self.layer
            .sockets
            .get_mut(h.0)
            .expect("echo handle is stale")
            .queue
            .pop_front()
    }
}
