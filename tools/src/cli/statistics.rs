//! `tunstack netstat -s`: the daemon's counters (its `STATS` reply) per
//! protocol, in the layout of Linux's `netstat -s`: a section a protocol
//! (`Ip:`, `Icmp:`, `Udp:`, `Tcp:`, and `TcpExt:` for recovery and
//! hardening), then `Impairment:` for the daemon's own `--loss`, `--delay`,
//! ... each way, and `Sockets:` for a census. Unlike Linux, which hides many
//! zero counters, every counter is printed, so each one has a place to read.

use crate::control::client::Client;
use std::collections::HashMap;
use std::io;
use std::path::Path;

/// One line of the layout.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    /// Spaces before the text: 0 for a heading, 4 in a section, 8 in a group.
    indent: usize,
    /// The text; `{}` stands for the value.
    text: &'static str,
    /// The counters whose sum is the value (none for a heading or a fixed line).
    keys: Vec<String>,
}

/// A line `indent` spaces in, whose value is the sum of counters `keys`.
fn row(indent: usize, keys: &[&str], text: &'static str) -> Row {
    Row {
        indent,
        text,
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
    }
}

/// A section's heading: `Ip:`.
fn heading(text: &'static str) -> Row {
    row(0, &[], text)
}

/// A line of a section with no counter behind it: a fact about the stack,
/// or the heading of a group (netstat's histograms).
fn fixed(text: &'static str) -> Row {
    row(4, &[], text)
}

/// A line of a section: `{}` in `text` is counter `key`.
fn count(key: &str, text: &'static str) -> Row {
    row(4, &[key], text)
}

/// A line inside a group.
fn entry(key: &str, text: &'static str) -> Row {
    row(8, &[key], text)
}

/// What each impairment count means, after `impair_in_` or `impair_out_`.
const IMPAIRMENT: [(&str, &str); 7] = [
    ("packets", "{} packets seen"),
    ("lost", "{} dropped at random (--loss)"),
    ("queue_drops", "{} dropped by the full queue (--rate)"),
    ("duplicated", "{} duplicated (--duplicate)"),
    ("reordered", "{} reordered (--reorder)"),
    ("corrupted", "{} corrupted (--corrupt)"),
    ("delayed", "{} delayed (--delay, --jitter, --rate)"),
];

/// The TCP states of the census, after `sockets_tcp_`, as netstat names them.
const STATES: [(&str, &str); 10] = [
    ("listen", "LISTEN: {}"),
    ("syn_sent", "SYN_SENT: {}"),
    ("syn_recv", "SYN_RECV: {}"),
    ("established", "ESTABLISHED: {}"),
    ("fin_wait1", "FIN_WAIT1: {}"),
    ("fin_wait2", "FIN_WAIT2: {}"),
    ("close_wait", "CLOSE_WAIT: {}"),
    ("closing", "CLOSING: {}"),
    ("last_ack", "LAST_ACK: {}"),
    ("time_wait", "TIME_WAIT: {}"),
];

/// The whole layout, in order. Wording follows Linux's netstat where a
/// counter means what Linux's does; the rest says what ours counts.
fn layout() -> Vec<Row> {
    let mut rows = vec![
        heading("Ip:"),
        fixed("Forwarding: 2"), // SNMP's "not forwarding": the stack is a host, not a router
        count("link_rx_packets", "{} total packets received"),
        count("link_rx_super_packets", "{} of them TCP super-packets (offloads)"),
        count("link_rx_errors", "{} device read errors"),
        count("ip_not_ipv4", "{} not IPv4"),
        count("ip_truncated_header", "{} with truncated headers"),
        count("ip_bad_ihl", "{} with header lengths below 20 bytes"),
        count("ip_bad_checksum", "{} with bad header checksums"),
        count("ip_total_len_exceeds_packet", "{} with total lengths beyond the packet"),
        count("ip_total_len_below_header", "{} with total lengths below the header"),
        count("ip_bad_source", "{} with invalid source addresses"),
        count("ip_not_for_us", "{} with invalid addresses (not for us)"),
        fixed("0 forwarded"),
        count("ip_unknown_protocol", "{} with unknown protocol"),
        count("ip_delivered", "{} incoming packets delivered"),
        count("ip_tx_datagrams", "{} requests sent out"),
        count("link_tx_super_packets", "{} TCP super-packets sent (offloads)"),
        count("ip_loopback", "{} sent to ourselves (loopback)"),
        count(
            "link_tx_queue_full",
            "{} outgoing packets dropped (transmit queue full)",
        ),
        count("ip_tx_no_route", "{} dropped because of missing route"),
        count("ip_tx_too_big", "{} dropped as too big to send"),
        count("link_tx_errors", "{} outgoing packets the device refused"),
        count("frag_rx_fragments", "{} fragments received"),
        count("frag_reassembled", "{} packets reassembled ok"),
        count("frag_duplicates", "{} duplicate fragments dropped"),
        count("frag_overlaps", "{} packet reassemblies failed (overlapping fragments)"),
        count("frag_bad_length", "{} packet reassemblies failed (bad lengths)"),
        count("frag_timeouts", "{} packet reassemblies timed out"),
        count("frag_evicted", "{} packet reassemblies dropped to bound memory"),
        count("frag_tx_fragments", "{} fragments created"),
        count("link_tx_packets", "OutTransmits: {}"),
        heading("IpExt:"),
        count("link_rx_bytes", "InOctets: {}"),
        count("link_tx_bytes", "OutOctets: {}"),
        heading("Icmp:"),
        count("icmp_rx_messages", "{} ICMP messages received"),
        count("icmp_truncated", "{} input ICMP message failed (truncated)"),
        count("icmp_bad_checksum", "InCsumErrors: {}"),
        count(
            "icmp_broadcast_echo_ignored",
            "{} echo requests to a broadcast address ignored",
        ),
        count("icmp_rate_limited", "{} ICMP errors not sent (rate limit)"),
        count(
            "icmp_error_suppressed",
            "{} ICMP errors not sent (RFC 1122 forbids them)",
        ),
        fixed("ICMP input histogram:"),
        entry("icmp_rx_echo_requests", "echo requests: {}"),
        entry("icmp_rx_echo_replies", "echo replies no socket waited for: {}"),
        entry("icmp_rx_errors", "errors (unreachable, time exceeded, ...): {}"),
        entry("icmp_rx_other", "other types: {}"),
        fixed("ICMP output histogram:"),
        entry("icmp_tx_echo_replies", "echo replies: {}"),
        entry("icmp_tx_errors", "errors: {}"),
        heading("Udp:"),
        count("udp_rx_datagrams", "{} packets received"),
        count("udp_no_port", "{} packets to unknown port received"),
        count("udp_truncated", "{} truncated packets received"),
        count("udp_bad_length", "{} packets with bad lengths received"),
        count("udp_bad_checksum", "InCsumErrors: {}"),
        count("udp_tx_datagrams", "{} packets sent"),
        count("udp_rx_queue_full", "{} receive buffer errors"),
        count("udp_icmp_errors", "{} ICMP errors reported to sockets"),
        heading("Tcp:"),
        count("tcp_active_opens", "{} active connection openings"),
        count("tcp_passive_opens", "{} passive connection openings"),
        // Linux's CurrEstab counts ESTABLISHED and CLOSE_WAIT.
        row(
            4,
            &["sockets_tcp_established", "sockets_tcp_close_wait"],
            "{} connections established",
        ),
        count("tcp_rx_segments", "{} segments received"),
        count("tcp_tx_segments", "{} segments sent out"),
        count("tcp_malformed", "{} bad segments received"),
        count("tcp_bad_checksum", "InCsumErrors: {}"),
        count("tcp_retransmitted_segments", "{} segments retransmitted"),
        count("tcp_tx_resets", "{} resets sent"),
        count("tcp_rx_resets", "{} resets received"),
        count("tcp_no_socket", "{} segments for no connection (answered with a reset)"),
        count("tcp_not_unicast", "{} segments to a broadcast address dropped"),
        heading("TcpExt:"),
        count(
            "tcp_listen_overflows",
            "{} times the listen queue of a socket overflowed",
        ),
        count("tcp_listen_drops", "{} SYNs to LISTEN sockets dropped"),
        count(
            "tcp_syn_queue_full",
            "{} SYNs dropped because the half-open queue was full",
        ),
        count("tcp_syncookies_sent", "{} SYN cookies sent"),
        count("tcp_syncookies_recv", "{} SYN cookies received"),
        count("tcp_syncookies_failed", "{} invalid SYN cookies received"),
        count(
            "tcp_conn_limit_drops",
            "{} SYNs dropped and connects refused at the connection limit (--max-connections)",
        ),
        count("tcp_memory_pressures", "TCPMemoryPressures: {}"),
        count("tcp_rcvq_drops", "TCPRcvQDrop: {}"),
        count("tcp_fast_retransmits", "{} fast recoveries"),
        count("tcp_sack_recoveries", "{} recoveries steered by SACK"),
        count(
            "tcp_sack_retransmits",
            "{} segments retransmitted because SACK and RACK showed them lost",
        ),
        count("tcp_rack_marked", "{} segments RACK marked lost"),
        count("tcp_loss_probes", "{} tail loss probes sent"),
        count("tcp_loss_probe_recoveries", "{} losses repaired by a tail loss probe"),
        count(
            "tcp_spurious_undone",
            "{} window reductions undone as spurious (D-SACK or timestamps)",
        ),
        count("tcp_rto_retransmits", "{} retransmission timeouts"),
        count("tcp_dup_acks", "{} duplicate acknowledgments received"),
        count("tcp_rx_out_of_order", "{} segments received out of order"),
        count(
            "tcp_out_of_window",
            "{} segments outside the window (answered with an ACK)",
        ),
        count("tcp_challenge_acks", "{} challenge ACKs sent"),
        count(
            "tcp_challenge_acks_limited",
            "{} challenge ACKs suppressed by the rate limit",
        ),
        count("tcp_ack_too_new", "{} ACKs for data never sent"),
        count("tcp_ack_too_old", "{} ACKs older than the window allows"),
        count(
            "tcp_paws_dropped",
            "{} packets rejected in established connections because of timestamp",
        ),
        count("tcp_icmp_errors", "{} ICMP errors about our segments acted on"),
        count(
            "tcp_icmp_out_of_window",
            "{} ICMP packets dropped because they were out-of-window",
        ),
        count("tcp_pmtu_reductions", "{} path MTU reductions"),
        count("tcp_window_probes", "{} window probes sent"),
        count("tcp_keepalive_probes", "{} keepalive probes sent"),
        count("tcp_timeouts", "{} connections aborted due to timeout"),
        count(
            "tcp_orphan_timeouts",
            "{} orphaned connections given up (orphan retries or FIN-WAIT-2 timeout)",
        ),
        count(
            "tcp_orphan_overflows",
            "{} connections reset on close: too many orphans",
        ),
        count(
            "tcp_time_wait_overflows",
            "{} connections freed at once: TIME-WAIT table full",
        ),
        heading("Impairment:"),
    ];
    for (way, title) in [("in", "host to stack (in):"), ("out", "stack to host (out):")] {
        rows.push(fixed(title));
        rows.extend(
            IMPAIRMENT
                .iter()
                .map(|(k, text)| entry(&format!("impair_{way}_{k}"), text)),
        );
    }
    rows.push(heading("Sockets:"));
    rows.push(count(
        "tcp_connections",
        "{} TCP connections, TIME-WAIT included (--max-connections counts the others)",
    ));
    rows.push(count("tcp_mem_allocated", "{} bytes in TCP buffers (--tcp-mem)"));
    rows.push(count("tcp_mem_pressure", "TCP memory pressure: {}"));
    rows.push(count("sockets_tcp", "{} TCP sockets"));
    rows.push(count("sockets_udp", "{} UDP sockets"));
    rows.push(fixed("TCP sockets by state:"));
    rows.extend(STATES.iter().map(|(k, text)| entry(&format!("sockets_tcp_{k}"), text)));
    rows
}

/// The statistics as lines, from counters by name (a missing counter is 0).
pub fn render(counters: &HashMap<String, u64>) -> Vec<String> {
    layout()
        .iter()
        .map(|r| {
            let text = if r.keys.is_empty() {
                r.text.to_owned()
            } else {
                let value: u64 = r.keys.iter().map(|k| counters.get(k).copied().unwrap_or(0)).sum();
                r.text.replace("{}", &value.to_string())
            };
            format!("{:indent$}{text}", "", indent = r.indent)
        })
        .collect()
}

/// Prints the daemon's statistics: the sections named (`Tcp:`, ...), or all.
pub fn run(control: &Path, sections: &[&str]) -> io::Result<()> {
    let rows = Client::connect(control)?.table("STATS")?;
    let counters: HashMap<String, u64> = rows
        .iter()
        .flat_map(|r| r.iter())
        .filter_map(|(k, v)| Some((k.clone(), v.parse().ok()?)))
        .collect();
    for line in only(render(&counters), sections) {
        outln!("{line}")?;
    }
    Ok(())
}

/// The lines of the sections named, headings included; all if none are.
fn only(lines: Vec<String>, sections: &[&str]) -> Vec<String> {
    let mut keep = sections.is_empty();
    lines
        .into_iter()
        .filter(|l| {
            if !l.starts_with(' ') {
                keep = sections.is_empty() || sections.contains(&l.as_str());
            }
            keep
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::server::counters_from;
    use std::collections::BTreeSet;
    use tunstack::Stats;
    use tunstack::device::impair::ImpairCounts;

    #[test]
    fn every_counter_the_daemon_reports_has_exactly_one_line() {
        let reported: Vec<String> =
            counters_from(&Stats::default(), &ImpairCounts::default(), &[], 0, Default::default())
                .into_iter()
                .map(|(k, _)| k)
                .collect();
        let shown: Vec<String> = layout().into_iter().flat_map(|r| r.keys).collect();
        let reported_set: BTreeSet<&String> = reported.iter().collect();
        let shown_set: BTreeSet<&String> = shown.iter().collect();
        let missing: Vec<_> = reported_set.difference(&shown_set).collect();
        let unknown: Vec<_> = shown_set.difference(&reported_set).collect();
        assert!(missing.is_empty(), "counters netstat -s does not show: {missing:?}");
        assert!(unknown.is_empty(), "lines for counters nobody reports: {unknown:?}");
        // One line each, except CLOSE_WAIT and ESTABLISHED, which also make up
        // Linux's "connections established".
        assert_eq!(shown.len(), reported.len() + 2);
        assert_eq!(Stats::NAMES.len() + 4 + 2 * 7 + 2 + 10, reported.len());
    }

    #[test]
    fn lines_read_like_linux_netstat_s() {
        let counters: HashMap<String, u64> = [
            ("link_rx_packets", 1384),
            ("tcp_rx_segments", 1351),
            ("tcp_fast_retransmits", 4),
            ("icmp_rx_echo_requests", 2),
            ("impair_out_lost", 7),
            ("sockets_tcp_established", 2),
            ("sockets_tcp_close_wait", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let out = render(&counters);
        let has = |line: &str| out.iter().any(|l| l == line);
        assert_eq!(out[0], "Ip:");
        assert!(has("    Forwarding: 2"));
        assert!(has("    1384 total packets received"));
        assert!(has("    0 forwarded"));
        assert!(has("    1351 segments received"));
        assert!(has("    4 fast recoveries"));
        assert!(has("    ICMP input histogram:"));
        assert!(has("        echo requests: 2"));
        assert!(
            has("    3 connections established"),
            "ESTABLISHED and CLOSE_WAIT, as Linux"
        );
        assert!(has("        7 dropped at random (--loss)"));
        assert!(has("    0 segments sent out"), "a counter the reply lacks reads 0");
        let sections: Vec<&String> = out.iter().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(
            sections,
            [
                "Ip:",
                "IpExt:",
                "Icmp:",
                "Udp:",
                "Tcp:",
                "TcpExt:",
                "Impairment:",
                "Sockets:"
            ]
        );
        let in_at = out.iter().position(|l| l == "    host to stack (in):").unwrap();
        let out_at = out.iter().position(|l| l == "    stack to host (out):").unwrap();
        assert!(
            out[in_at..out_at]
                .iter()
                .any(|l| l == "        0 dropped at random (--loss)")
        );
        assert!(
            out[out_at..]
                .iter()
                .any(|l| l == "        7 dropped at random (--loss)")
        );
    }

    #[test]
    fn tcpext_says_what_loss_recovery_did() {
        let counters: HashMap<String, u64> = [
            ("tcp_sack_recoveries", 3),
            ("tcp_rack_marked", 12),
            ("tcp_loss_probes", 2),
            ("tcp_spurious_undone", 1),
            ("tcp_rto_retransmits", 4),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let tcpext = only(render(&counters), &["TcpExt:"]);
        for line in [
            "    3 recoveries steered by SACK",
            "    12 segments RACK marked lost",
            "    2 tail loss probes sent",
            "    1 window reductions undone as spurious (D-SACK or timestamps)",
            "    4 retransmission timeouts",
        ] {
            assert!(tcpext.iter().any(|l| l == line), "no {line:?} in {tcpext:#?}");
        }
    }

    #[test]
    fn sections_can_be_picked_like_netstat_st() {
        let all = render(&HashMap::new());
        let tcp = only(all.clone(), &["Tcp:", "TcpExt:"]);
        assert_eq!(tcp[0], "Tcp:");
        assert!(tcp.contains(&"TcpExt:".to_owned()) && tcp.contains(&"    0 fast recoveries".to_owned()));
        assert!(!tcp.iter().any(|l| l == "Udp:" || l.contains("total packets received")));
        assert_eq!(only(all.clone(), &[]), all);
    }
}
