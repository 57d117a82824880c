//! The tables the info requests answer with: the interface, the routes,
//! the sockets and the counters, each line `key=value` fields.

use crate::control::escape;
use std::net::Ipv4Addr;
use std::sync::Arc;
use tunstack::Stats;
use tunstack::device::impair::ImpairCounts;
use tunstack::runtime::Stack;
use tunstack::tcp::{MemoryUsage, State, TcpInfo};

/// One line describing the interface, for `tunstack ifconfig`.
pub(super) fn ifconfig(stack: &Stack, ifname: &str, offloads: bool) -> String {
    let (cfg, s) = stack.with_interface(|i| (i.config().clone(), i.stats().clone()));
    let a = cfg.address;
    let rx_errors = s.ip_truncated_header
        + s.ip_bad_ihl
        + s.ip_bad_checksum
        + s.ip_total_len_exceeds_packet
        + s.ip_total_len_below_header
        + s.link_rx_errors;
    // What is true of the stack's side: it runs, it is one end of a
    // point-to-point link with no ARP, and it hears its subnet's broadcast
    // if the subnet has one. It does no multicast.
    let broadcast = a.broadcast();
    let flags = if broadcast.is_some() {
        "UP,BROADCAST,POINTOPOINT,RUNNING,NOARP"
    } else {
        "UP,POINTOPOINT,RUNNING,NOARP"
    };
    let dash = |v: Option<Ipv4Addr>| v.map_or("-".into(), |b| b.to_string());
    format!(
        "name={ifname} flags={flags} addr={} netmask={} broadcast={} destination={} mtu={} rx_packets={} rx_bytes={} rx_errors={} rx_dropped={} tx_packets={} tx_bytes={} tx_errors={} tx_dropped={} offloads={}",
        a.addr(),
        a.netmask(),
        dash(broadcast),
        dash(cfg.gateway),
        cfg.mtu,
        s.link_rx_packets,
        s.link_rx_bytes,
        rx_errors,
        s.drops().saturating_sub(rx_errors - s.link_rx_errors),
        s.link_tx_packets,
        s.link_tx_bytes,
        s.link_tx_errors,
        s.link_tx_queue_full + s.ip_tx_no_route,
        if offloads { "on" } else { "off" },
    )
}

/// The route table, one route a line.
pub(super) fn routes(stack: &Stack, ifname: &str) -> Vec<String> {
    stack.with_interface(|i| {
        i.routes()
            .iter()
            .map(|r| {
                format!(
                    "dest={} gateway={} genmask={} flags={} iface={ifname}",
                    r.destination.network(),
                    r.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    r.destination.netmask(),
                    r.flags()
                )
            })
            .collect()
    })
}

/// Every socket, one a line, for `tunstack netstat`. `shown` says, from
/// the uid in a socket's owner label (see [`owner::label`](crate::control::owner::label);
/// `None`: the daemon's), whether its owner may be named (the others' show as `-`).
pub(super) fn sockets(stack: &Stack, shown: impl Fn(Option<u32>) -> bool) -> Vec<String> {
    let (mut tcp, mut udp) =
        stack.with_interface(|i| (i.tcp_layer().sockets(), i.udp_layer().sockets().collect::<Vec<_>>()));
    let hide = |o: &mut Option<Arc<str>>| {
        *o = o.as_deref().and_then(|label| {
            let (uid, what) = crate::control::owner::split_label(label);
            shown(uid).then(|| what.into())
        });
    };
    tcp.iter_mut().for_each(|t| hide(&mut t.owner));
    udp.iter_mut().for_each(|u| hide(&mut u.owner));
    let owner = |o: &Option<Arc<str>>| escape(o.as_deref().unwrap_or("-"));
    let mut lines: Vec<String> = tcp.iter().map(tcp_row).collect();
    lines.extend(udp.iter().map(|u| {
        format!(
            "proto=udp state={} local={} remote={} recvq={} sendq=0 owner={} rx={} tx={} drops={}",
            if u.remote.is_some() { "ESTABLISHED" } else { "-" },
            u.local,
            u.remote.map_or("0.0.0.0:0".into(), |r| r.to_string()),
            u.recv_queue,
            owner(&u.owner),
            u.rx_datagrams,
            u.tx_datagrams,
            u.rx_dropped
        )
    }));
    lines
}

/// A TCP socket's `SOCKETS` line: a listener's queues, or a connection's
/// internals and what loss recovery did.
pub(crate) fn tcp_row(t: &TcpInfo) -> String {
    let owner = escape(t.owner.as_deref().unwrap_or("-"));
    let common = format!(
        "proto=tcp state={} local={} remote={} recvq={}",
        t.state.name(),
        t.local,
        t.remote,
        t.recv_queue
    );
    if t.state == State::Listen {
        // As netstat -anp shows a listener (from /proc/net/tcp): the
        // accept queue as Recv-Q, Send-Q 0; the backlog on its own.
        return format!("{common} sendq=0 owner={owner} backlog={}", t.send_queue);
    }
    let r = &t.recovery;
    format!(
        "{common} sendq={} owner={owner} rtt_us={} rto_us={} cwnd={} ssthresh={} mss={} retrans={} bytes_in={} bytes_out={} rcv_rtt_us={} rcvbuf={} rcvbuf_alloc={} sndbuf={} sndbuf_alloc={} recoveries={} rack_marked={} tlps={} undone={} rtos={}",
        t.send_queue,
        t.srtt.map_or("-".into(), |d| d.as_micros().to_string()),
        t.rto.as_micros(),
        t.cwnd,
        ssthresh(t),
        t.mss,
        t.retransmits,
        t.bytes_in,
        t.bytes_out,
        t.rcv_rtt.map_or("-".into(), |d| d.as_micros().to_string()),
        t.recv_buffer,
        t.recv_allocated,
        t.send_buffer,
        t.send_allocated,
        r.fast_recoveries,
        r.rack_marked,
        r.loss_probes,
        r.undone,
        r.timeouts
    )
}

/// A connection's slow-start threshold, `-` until the first loss sets it.
/// Congestion controls start it "infinite" (NewReno at `usize::MAX`); like
/// `ss`, anything from Linux's TCP_INFINITE_SSTHRESH (2^31 - 1) up counts as unset.
fn ssthresh(t: &TcpInfo) -> String {
    if t.ssthresh >= 0x7fff_ffff {
        "-".into()
    } else {
        t.ssthresh.to_string()
    }
}

/// The TCP states the socket census counts, each as `sockets_tcp_<state>`.
const CENSUS_STATES: [State; 10] = [
    State::Listen,
    State::SynSent,
    State::SynReceived,
    State::Established,
    State::FinWait1,
    State::FinWait2,
    State::CloseWait,
    State::Closing,
    State::LastAck,
    State::TimeWait,
];

/// Every counter the daemon reports (the `STATS` reply and SIGUSR1's line).
pub fn counters(stack: &Stack) -> Vec<(String, u64)> {
    let (stats, tcp, udp, memory) = stack.with_interface(|i| {
        let udp = i.udp_layer().sockets().count();
        let tcp = i.tcp_layer();
        let memory = TcpMemory {
            usage: tcp.memory(),
            connections: tcp.connection_count(),
        };
        (i.stats().clone(), tcp.sockets(), udp, memory)
    });
    counters_from(&stats, &stack.impairment().unwrap_or_default(), &tcp, udp, memory)
}

/// TCP's memory budget and connection count, for the counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpMemory {
    /// The budget's state.
    pub usage: MemoryUsage,
    /// Connections held, any state but LISTEN (what `--max-connections` caps).
    pub connections: usize,
}

/// The counters, in order: the stack's (`Stats`), TCP's memory budget and
/// connections (`tcp_memory_pressures`, `tcp_mem_allocated`,
/// `tcp_mem_pressure`, `tcp_connections`), the impairment's each way
/// (`impair_in_*`, `impair_out_*`; zeros without impairment), and a census
/// of the sockets (`sockets_tcp`, `sockets_udp`, `sockets_tcp_<state>`).
pub fn counters_from(
    stats: &Stats,
    impairment: &ImpairCounts,
    tcp: &[TcpInfo],
    udp: usize,
    memory: TcpMemory,
) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = stats.iter().map(|(k, v)| (k.to_owned(), v)).collect();
    out.extend([
        ("tcp_memory_pressures".to_owned(), memory.usage.pressures),
        ("tcp_mem_allocated".to_owned(), memory.usage.allocated as u64),
        ("tcp_mem_pressure".to_owned(), u64::from(memory.usage.pressure)),
        ("tcp_connections".to_owned(), memory.connections as u64),
    ]);
    for (way, s) in [("in", &impairment.inbound), ("out", &impairment.outbound)] {
        out.extend(s.iter().map(|(k, v)| (format!("impair_{way}_{k}"), v)));
    }
    out.push(("sockets_tcp".into(), tcp.len() as u64));
    out.push(("sockets_udp".into(), udp as u64));
    for state in CENSUS_STATES {
        let n = tcp.iter().filter(|t| t.state == state).count() as u64;
        out.push((format!("sockets_tcp_{}", state.name().to_lowercase()), n));
    }
    out
}

/// An established connection that has been through loss recovery, for tests
/// of the `SOCKETS` line and of what netstat makes of it.
#[cfg(test)]
pub(crate) fn recovered_connection() -> TcpInfo {
    TcpInfo {
        owner: Some("4242/my prog".into()),
        state: State::Established,
        local: "10.200.0.2:7".parse().unwrap(),
        remote: "10.200.0.1:40000".parse().unwrap(),
        recv_queue: 0,
        send_queue: 2920,
        srtt: Some(std::time::Duration::from_micros(1500)),
        rcv_rtt: None,
        rto: std::time::Duration::from_millis(201),
        cwnd: 14600,
        ssthresh: 7300,
        mss: 1460,
        retransmits: 17,
        bytes_in: 3_000_000,
        bytes_out: 2_997_080,
        recovery: tunstack::tcp::RecoveryCounts {
            fast_recoveries: 3,
            rack_marked: 12,
            loss_probes: 2,
            undone: 1,
            timeouts: 4,
        },
        recv_buffer: 65536,
        recv_allocated: 4096,
        send_buffer: 29200,
        send_allocated: 8192,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_row_carries_its_internals_and_recovery_counts() {
        let mut t = recovered_connection();
        let row = crate::control::fields(&tcp_row(&t));
        let value = |k: &str| row.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(value("owner"), Some("4242/my prog"), "escaped, then read back");
        for (key, want) in [
            ("state", "ESTABLISHED"),
            ("sendq", "2920"),
            ("rtt_us", "1500"),
            ("ssthresh", "7300"),
            ("retrans", "17"),
            ("rcv_rtt_us", "-"),
            ("recoveries", "3"),
            ("rack_marked", "12"),
            ("tlps", "2"),
            ("undone", "1"),
            ("rtos", "4"),
        ] {
            assert_eq!(value(key), Some(want), "{key}");
        }
        // A listener has none of a connection's figures.
        t.state = State::Listen;
        t.send_queue = 128;
        let listener = tcp_row(&t);
        assert!(
            listener.ends_with(" sendq=0 owner=4242/my%20prog backlog=128"),
            "{listener}"
        );
        assert!(!listener.contains("recoveries="), "{listener}");
    }
}
