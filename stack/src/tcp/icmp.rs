//! ICMP errors about our segments (RFC 1122 §4.2.3.9), validated as RFC
//! 5927 asks, and acted on as Linux does: while connecting, an unreachable
//! or time-exceeded ends the attempt at once with its cause (what `connect`
//! reports); on a synchronized connection the error is "soft", kept to be
//! reported instead of a bare timeout if the connection later times out.
//! Fragmentation-needed (path MTU discovery) is not acted on yet.

#![forbid(unsafe_code)]

use super::tcb::State;
use super::{ConnError, FourTuple, TcpLayer};
use crate::ip::context::{Context, IcmpErrorReport};
use crate::wire::tcp::TcpSegment;
use std::net::SocketAddrV4;

impl TcpLayer {
    /// An ICMP error quoting a TCP segment we sent.
    pub(crate) fn icmp_error(&mut self, cx: &mut Context<'_>, report: &IcmpErrorReport<'_>) {
        let Some(sent) = TcpSegment::parse_quote(report.transport) else {
            return;
        };
        let Some((error, hard)) = ConnError::from_icmp(report.kind, report.code) else {
            return;
        };
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
        log::debug!(
            "tcp {} -> {}: {error} (ICMP type {} code {} from {})",
            t.local,
            t.remote,
            report.kind,
            report.code,
            report.from
        );
        let ends = match t.state {
            // Linux gives up a connect at once on any of these (tcp_v4_err).
            State::SynSent => true,
            // A half-open connection from a listener goes only on a hard error.
            State::SynReceived => hard,
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
