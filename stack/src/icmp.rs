//! ICMP (RFC 792, RFC 1122 §3.2.2): answers echo requests, and reads the
//! replies and errors that concern our own sockets, handing them up to the
//! interface, which passes them to the echo sockets or to the transport
//! whose datagram an error quotes. Sending errors is IP's job
//! ([`Context::send_icmp_error`]), since every protocol raises them.

#![forbid(unsafe_code)]

use crate::ip::context::{Context, Datagram, Delivery, IcmpErrorReport};
use crate::ip::{DEFAULT_TTL, protocol};
use crate::wire::icmp::{self as wire, IcmpError, IcmpMessage, kind};
use crate::wire::ipv4::Ipv4Header;

/// Linux's default ICMP error budget (`icmp_msgs_per_sec`, `icmp_msgs_burst`).
pub const DEFAULT_ERROR_RATE: (u32, u32) = (1000, 50);

/// What an incoming ICMP message means for the layers above.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IcmpInput<'a> {
    /// An echo reply, for the echo socket with its identifier.
    EchoReply(IcmpMessage<'a>),
    /// An error about a datagram we sent.
    Error(IcmpErrorReport<'a>),
}

/// ICMP's own state: its one setting.
#[derive(Debug)]
pub(crate) struct IcmpLayer {
    /// Answer echo requests sent to a broadcast address (Linux's `icmp_echo_ignore_broadcasts=0`).
    answer_broadcast_echo: bool,
}

impl IcmpLayer {
    pub(crate) fn new(answer_broadcast_echo: bool) -> IcmpLayer {
        IcmpLayer { answer_broadcast_echo }
    }

    /// Handles an ICMP message addressed to us; echo replies and errors
    /// about our datagrams are returned for the interface to dispatch.
    pub(crate) fn input<'a>(&mut self, cx: &mut Context<'_>, d: &Datagram<'a>) -> Option<IcmpInput<'a>> {
        cx.stats().icmp_rx_messages += 1;
        let msg = match IcmpMessage::parse(d.payload) {
            Ok(m) => m,
            Err(IcmpError::Truncated) => {
                cx.stats().icmp_truncated += 1;
                return None;
            }
            Err(IcmpError::BadChecksum) => {
                cx.stats().icmp_bad_checksum += 1;
                log::trace!("icmp from {}: bad checksum", d.header.src);
                return None;
            }
        };
        match msg.kind {
            kind::ECHO_REQUEST => {
                self.answer_echo(cx, d);
                None
            }
            kind::ECHO_REPLY => Some(IcmpInput::EchoReply(msg)),
            k if wire::is_error(k) => {
                cx.stats().icmp_rx_errors += 1;
                log::debug!("icmp error type {} code {} from {}", msg.kind, msg.code, d.header.src);
                error_report(cx, d, &msg).map(IcmpInput::Error)
            }
            _ => {
                cx.stats().icmp_rx_other += 1;
                None
            }
        }
    }

    /// Answers an echo request (RFC 792), from our own address even when it
    /// went to a broadcast address (RFC 1122 §3.2.2.6).
    fn answer_echo(&mut self, cx: &mut Context<'_>, d: &Datagram<'_>) {
        cx.stats().icmp_rx_echo_requests += 1;
        if d.delivery != Delivery::Unicast && !self.answer_broadcast_echo {
            // RFC 1122 §3.2.2.6: a broadcast echo MAY be silently discarded.
            cx.stats().icmp_broadcast_echo_ignored += 1;
            return;
        }
        let mut reply = cx.buffer();
        wire::write_echo_reply(&mut reply, d.payload);
        if cx
            .send_datagram(d.header.src, protocol::ICMP, DEFAULT_TTL, false, reply)
            .is_ok()
        {
            cx.stats().icmp_tx_echo_replies += 1;
        }
    }
}

/// The error's quote, read: the quoted header must be one of ours and hold
/// at least 8 bytes of its payload (RFC 792), or the error concerns nobody.
fn error_report<'a>(cx: &Context<'_>, d: &Datagram<'a>, msg: &IcmpMessage<'a>) -> Option<IcmpErrorReport<'a>> {
    let (quoted, transport) = Ipv4Header::parse_quote(msg.data)?;
    if transport.len() < 8 || quoted.src != cx.addr() {
        return None;
    }
    Some(IcmpErrorReport {
        from: d.header.src,
        kind: msg.kind,
        code: msg.code,
        rest: msg.rest,
        quoted,
        transport,
    })
}
