//! ICMP errors about our segments (RFC 1122 §4.2.3.9), validated as RFC
//! 5927 asks, and acted on as Linux does: while connecting, an unreachable
//! or time-exceeded ends the attempt at once with its cause (what `connect`
//! reports); on a synchronized connection the error is "soft", kept to be
//! reported instead of a bare timeout if the connection later times out.
//! Fragmentation-needed drives path MTU discovery (RFC 1191): our segments
//! carry DF, and a router's next-hop MTU lowers the MSS.

#![forbid(unsafe_code)]

use super::tcb::State;
use super::{ConnError, FourTuple, TcpLayer};
use crate::ip::context::{Context, IcmpErrorReport};
use crate::wire::icmp::{kind, unreachable};
use crate::wire::tcp::TcpSegment;
use std::net::SocketAddrV4;

impl TcpLayer {
    /// An ICMP error quoting a TCP segment we sent.
    pub(crate) fn icmp_error(&mut self, cx: &mut Context<'_>, report: &IcmpErrorReport<'_>) {
        let Some(sent) = TcpSegment::parse_quote(report.transport) else {
            return;
        };
        let frag_needed = report.kind == kind::DEST_UNREACHABLE && report.code == unreachable::FRAG_NEEDED;
        let icmp_error = ConnError::from_icmp(report.kind, report.code);
        if !frag_needed && icmp_error.is_none() {
            return;
        }
        let tuple = FourTuple {
            local: SocketAddrV4::new(report.quoted.src, sent.src_port),
            remote: SocketAddrV4::new(report.quoted.dst, sent.dst_port),
        };
        let Some(&h) = self.by_tuple.get(&tuple) else {
            return;
        };
        let t = self.conns.get_mut(h).expect("table and slab agree");
        // RFC 5927 §4.1: only a segment we sent and is not yet acknowledged
        // can be quoted; anything else is stale or forged (Linux's
        // OutOfWindowIcmps).
        if !(sent.seq.ge(t.snd_una) && sent.seq.le(t.snd_max)) {
            cx.stats().tcp_icmp_out_of_window += 1;
            log::debug!(
                "tcp {} -> {}: ICMP error quoting seq {} outside the window",
                t.local,
                t.remote,
                sent.seq.0
            );
            return;
        }
        cx.stats().tcp_icmp_errors += 1;
        if frag_needed {
            let mtu = path_mtu(report);
            if t.reduce_mss(mtu) {
                cx.stats().tcp_pmtu_reductions += 1;
                log::debug!(
                    "tcp {} -> {}: path MTU {mtu} from {}: MSS {}",
                    t.local,
                    t.remote,
                    report.from,
                    t.snd_mss
                );
                t.output(cx);
            }
            self.reschedule(h);
            return;
        }
        let Some((error, _)) = icmp_error else { return };
        log::debug!(
            "tcp {} -> {}: {error} (ICMP type {} code {} from {})",
            t.local,
            t.remote,
            report.kind,
            report.code,
            report.from
        );
        let ends = match t.state {
            // Linux gives up a connect at once on any of these (tcp_v4_err),
            // and so a simultaneous open.
            State::SynSent => true,
            State::SynReceived if t.listener.is_none() => true,
            // A half-open connection from a listener goes, as in Linux's
            // tcp_req_err, when its SYN-ACK cannot reach the peer (net or host
            // unreachable, time exceeded), not on port or protocol unreachable.
            State::SynReceived => sent.seq == t.iss && unreachable_path(report.kind, report.code),
            _ => false,
        };
        if ends {
            self.release(cx, h, Some(error));
        } else {
            t.soft_error = Some(error);
        }
        self.reschedule(h);
    }
}

/// RFC 1191 §7's plateaus, for routers that send no next-hop MTU.
const PLATEAUS: [usize; 10] = [65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296];

/// The path MTU a fragmentation-needed error reports: its next-hop MTU, or
/// (from an old router, RFC 1191 §5) the plateau below the quoted datagram.
/// `Tcb::reduce_mss` decides how far to believe it.
fn path_mtu(report: &IcmpErrorReport<'_>) -> usize {
    let next_hop = usize::from(u16::from_be_bytes([report.rest[2], report.rest[3]]));
    if next_hop >= 68 {
        next_hop
    } else {
        let sent = report.quoted.header_len + report.quoted.payload_len;
        PLATEAUS.into_iter().find(|p| *p < sent).unwrap_or(68)
    }
}

/// An error saying the path to the peer is gone: net or host unreachable,
/// or time exceeded (what ends a half-open connection in Linux).
fn unreachable_path(kind_: u8, code: u8) -> bool {
    kind_ == kind::TIME_EXCEEDED
        || (kind_ == kind::DEST_UNREACHABLE && (code == unreachable::NET || code == unreachable::HOST))
}
