//! Counters for everything the stack receives, sends and drops.
//!
//! Bad input from the network is never an error to anyone: it is dropped and
//! counted here, under a name that says why (DESIGN rule 10).

use core::fmt;

macro_rules! counters {
    ($(#[$meta:meta])* pub struct $name:ident { $( $(#[doc = $doc:literal])+ $field:ident, )* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[doc = $doc])+ pub $field: u64, )*
        }

        impl $name {
            /// Every counter's name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Every counter as `(name, value)`, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($field), self.$field)),*].into_iter()
            }

            /// The value of the counter called `name`, if there is one.
            pub fn get(&self, name: &str) -> Option<u64> {
                self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
            }
        }
    };
}

counters! {
    /// Per-interface counters, named `layer_what`.
    pub struct Stats {
        /// Packets handed to the stack by the device.
        link_rx_packets,
        /// Bytes handed to the stack by the device.
        link_rx_bytes,
        /// Packets the stack handed to the device.
        link_tx_packets,
        /// Bytes the stack handed to the device.
        link_tx_bytes,
        /// TCP super-packets the device handed over (offloads on: the host's
        /// TSO or GRO made them; counted in `link_rx_packets` too, once each).
        link_rx_super_packets,
        /// TCP super-packets handed to the device for it to cut (offloads on;
        /// counted in `link_tx_packets` too, once each).
        link_tx_super_packets,
        /// Packets the device failed to read (other than "nothing waiting").
        link_rx_errors,
        /// Packets the device refused to send (dropped, as by a full NIC queue).
        link_tx_errors,
        /// Outgoing datagrams dropped because the transmit queue was full.
        link_tx_queue_full,
        /// Received packets that are not IPv4 (IPv6 from the host, garbage).
        ip_not_ipv4,
        /// Packets shorter than their IPv4 header.
        ip_truncated_header,
        /// Headers whose IHL is below 5 (20 bytes).
        ip_bad_ihl,
        /// Headers whose checksum does not verify.
        ip_bad_checksum,
        /// Packets whose total length claims more bytes than arrived.
        ip_total_len_exceeds_packet,
        /// Packets whose total length is smaller than their header.
        ip_total_len_below_header,
        /// Packets from a source no host may have (multicast, broadcast, loopback, ourselves).
        ip_bad_source,
        /// Packets for an address that is not ours, our broadcast, or 255.255.255.255.
        ip_not_for_us,
        /// Datagrams delivered to ICMP, UDP or TCP (after reassembly).
        ip_delivered,
        /// Datagrams for a protocol the stack does not run.
        ip_unknown_protocol,
        /// Datagrams the stack sent (before fragmentation).
        ip_tx_datagrams,
        /// Datagrams we sent to ourselves, delivered on the loopback path.
        ip_loopback,
        /// Outgoing datagrams with no route to their destination.
        ip_tx_no_route,
        /// Outgoing datagrams too large for IPv4 or needing fragmentation with DF set.
        ip_tx_too_big,
        /// Fragments received.
        frag_rx_fragments,
        /// Datagrams rebuilt from fragments.
        frag_reassembled,
        /// Fragments that exactly repeat one already held (dropped, the rest kept).
        frag_duplicates,
        /// Datagrams discarded because two fragments overlapped.
        frag_overlaps,
        /// Fragments that would make a datagram larger than 65535 bytes, or disagree on its end.
        frag_bad_length,
        /// Datagrams discarded because they were not complete in time.
        frag_timeouts,
        /// Datagrams discarded to keep reassembly memory under its cap.
        frag_evicted,
        /// Outgoing fragments sent.
        frag_tx_fragments,
        /// UDP datagrams queued on a socket.
        udp_rx_datagrams,
        /// UDP datagrams sent.
        udp_tx_datagrams,
        /// UDP datagrams shorter than their header.
        udp_truncated,
        /// UDP datagrams whose length field disagrees with the IP payload.
        udp_bad_length,
        /// UDP datagrams with a wrong checksum.
        udp_bad_checksum,
        /// UDP datagrams to a port no socket holds (port unreachable sent for unicast).
        udp_no_port,
        /// UDP datagrams dropped because the socket's receive queue was full.
        udp_rx_queue_full,
        /// ICMP errors reported to a UDP socket.
        udp_icmp_errors,
        /// TCP segments received with a valid checksum.
        tcp_rx_segments,
        /// TCP segments sent.
        tcp_tx_segments,
        /// TCP segments with a wrong checksum.
        tcp_bad_checksum,
        /// TCP segments too short or with a bad data offset.
        tcp_malformed,
        /// TCP segments to a broadcast address (dropped).
        tcp_not_unicast,
        /// TCP segments for no connection or listener (answered with RST).
        tcp_no_socket,
        /// RSTs sent.
        tcp_tx_resets,
        /// RSTs accepted (exactly at RCV.NXT).
        tcp_rx_resets,
        /// Segments outside the receive window (answered with an ACK).
        tcp_out_of_window,
        /// Challenge ACKs sent (RFC 5961).
        tcp_challenge_acks,
        /// Challenge ACKs suppressed by the rate limits.
        tcp_challenge_acks_limited,
        /// ACKs for data never sent (RFC 5961 §5).
        tcp_ack_too_new,
        /// ACKs older than the window allows (RFC 5961 §5).
        tcp_ack_too_old,
        /// SYNs dropped because the accept queue was full.
        tcp_listen_drops,
        /// SYNs dropped because the half-open queue was full (SYN cookies off).
        tcp_syn_queue_full,
        /// SYNs answered with a SYN cookie (Linux's SyncookiesSent).
        tcp_syncookies_sent,
        /// ACKs that completed a handshake by a valid SYN cookie (SyncookiesRecv).
        tcp_syncookies_recv,
        /// ACKs to a listener sending cookies whose cookie did not check out, reset (SyncookiesFailed).
        tcp_syncookies_failed,
        /// SYNs dropped and connects refused because the stack holds `max_connections` already.
        tcp_conn_limit_drops,
        /// Segments whose data was dropped because the TCP memory budget is spent (Linux's `TCPRcvQDrop`).
        tcp_rcvq_drops,
        /// Handshake-completing ACKs dropped because the accept queue was full.
        tcp_listen_overflows,
        /// Duplicate ACKs received.
        tcp_dup_acks,
        /// Connections this stack opened (SYN sent; Linux's ActiveOpens).
        tcp_active_opens,
        /// Connections a listener accepted the handshake of (Linux's PassiveOpens).
        tcp_passive_opens,
        /// Segments sent again, for any reason (Linux's RetransSegs).
        tcp_retransmitted_segments,
        /// Fast recoveries entered (three duplicate ACKs, or RACK with SACK).
        tcp_fast_retransmits,
        /// Retransmission timeouts.
        tcp_rto_retransmits,
        /// Connections aborted by retransmission or keepalive timeouts.
        tcp_timeouts,
        /// Orphans given up: retransmissions or probes past `orphan_retries`, or FIN-WAIT-2 past `fin_timeout`.
        tcp_orphan_timeouts,
        /// Connections reset on close because too many orphans were held (Linux's TCPAbortOnMemory).
        tcp_orphan_overflows,
        /// Connections freed instead of entering TIME-WAIT, the table being full (Linux's TCPTimeWaitOverflow).
        tcp_time_wait_overflows,
        /// Zero-window probes sent.
        tcp_window_probes,
        /// Keepalive probes sent.
        tcp_keepalive_probes,
        /// Segments received out of order (kept for reassembly).
        tcp_rx_out_of_order,
        /// Loss recoveries driven by the peer's SACK blocks (RFC 6675).
        tcp_sack_recoveries,
        /// Segments retransmitted because SACK and RACK showed them lost.
        tcp_sack_retransmits,
        /// Segments RACK marked lost: a later one was delivered and the reordering window passed (RFC 8985).
        tcp_rack_marked,
        /// Tail loss probes sent (RFC 8985 §7).
        tcp_loss_probes,
        /// Losses a tail loss probe repaired by itself (RFC 8985 §7.4.2).
        tcp_loss_probe_recoveries,
        /// Window reductions undone because a D-SACK or a timestamp proved the retransmission needless.
        tcp_spurious_undone,
        /// Segments dropped by PAWS: a timestamp older than the last one (RFC 7323 §5).
        tcp_paws_dropped,
        /// Path MTU reductions from fragmentation-needed errors (RFC 1191).
        tcp_pmtu_reductions,
        /// ICMP errors about our segments acted on (RFC 1122 §4.2.3.9).
        tcp_icmp_errors,
        /// ICMP errors quoting a sequence number we have not sent or that is acknowledged (RFC 5927).
        tcp_icmp_out_of_window,
        /// ICMP messages received.
        icmp_rx_messages,
        /// ICMP messages with a bad checksum.
        icmp_bad_checksum,
        /// ICMP messages shorter than their fixed header.
        icmp_truncated,
        /// Echo requests received.
        icmp_rx_echo_requests,
        /// Echo replies sent.
        icmp_tx_echo_replies,
        /// Echo requests to a broadcast address ignored by configuration.
        icmp_broadcast_echo_ignored,
        /// Echo replies received with no socket waiting for them.
        icmp_rx_echo_replies,
        /// ICMP error messages received (unreachable, time exceeded, ...).
        icmp_rx_errors,
        /// ICMP messages of a type the stack ignores.
        icmp_rx_other,
        /// ICMP error messages sent.
        icmp_tx_errors,
        /// ICMP errors not sent because of the rate limit.
        icmp_rate_limited,
        /// ICMP errors not sent because the rules forbid one (RFC 1122 §3.2.2).
        icmp_error_suppressed,
    }
}

impl Stats {
    /// Total of all drop counters (everything not delivered or sent).
    pub fn drops(&self) -> u64 {
        self.ip_not_ipv4
            + self.ip_truncated_header
            + self.ip_bad_ihl
            + self.ip_bad_checksum
            + self.ip_total_len_exceeds_packet
            + self.ip_total_len_below_header
            + self.ip_bad_source
            + self.ip_not_for_us
            + self.ip_unknown_protocol
            + self.frag_duplicates
            + self.frag_overlaps
            + self.frag_bad_length
            + self.frag_timeouts
            + self.frag_evicted
            + self.udp_truncated
            + self.udp_bad_length
            + self.udp_bad_checksum
            + self.udp_no_port
            + self.udp_rx_queue_full
            + self.tcp_bad_checksum
            + self.tcp_malformed
            + self.tcp_not_unicast
            + self.icmp_bad_checksum
            + self.icmp_truncated
    }
}

impl fmt::Display for Stats {
    /// One line of `name=value` pairs, every counter included, easy to grep.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, value) in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_iter_and_get_agree() {
        let s = Stats {
            ip_bad_checksum: 3,
            ..Stats::default()
        };
        assert_eq!(Stats::NAMES.len(), s.iter().count());
        assert_eq!(s.get("ip_bad_checksum"), Some(3));
        assert_eq!(s.get("no_such_counter"), None);
        assert!(s.to_string().contains("ip_bad_checksum=3"));
        assert_eq!(s.drops(), 3);
    }
}
