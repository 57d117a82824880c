//! `tunstack netstat`: the stack's sockets, in `netstat -anp`'s layout (a
//! listener's Send-Q is 0 and its Recv-Q the connections awaiting accept, as
//! netstat shows them; `ss` would show the backlog as Send-Q), with `-i`
//! each connection's TCP internals, and with `-s` the statistics.

use crate::control::client::{Client, get};
use std::io;
use std::path::Path;

/// Which sockets `netstat` lists, and what it shows of each.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NetstatArgs {
    /// TCP sockets.
    #[arg(short, long)]
    tcp: bool,
    /// UDP sockets.
    #[arg(short, long)]
    udp: bool,
    /// Only listening sockets.
    #[arg(short, long)]
    listening: bool,
    /// Listening and non-listening sockets.
    #[arg(short, long)]
    all: bool,
    /// The owner of each socket (service, or pid/program).
    #[arg(short, long)]
    program: bool,
    /// Per-connection TCP internals on a line of their own: RTT, RTO, cwnd,
    /// ssthresh, MSS, retransmissions, what loss recovery did, bytes, buffers.
    #[arg(short, long)]
    info: bool,
    /// Per-protocol statistics, like netstat -s (with -t or -u: only those protocols).
    #[arg(short, long, conflicts_with_all = ["listening", "all", "program", "info"])]
    statistics: bool,
}

impl NetstatArgs {
    /// The heading's parenthesis, as netstat words it.
    fn heading(&self) -> &'static str {
        match (self.all, self.listening) {
            (true, _) => "servers and established",
            (false, true) => "only servers",
            (false, false) => "w/o servers",
        }
    }

    /// Whether a socket of `proto` ("tcp", "udp") in `state` is listed.
    fn shows(&self, proto: &str, state: &str) -> bool {
        // Neither -t nor -u means both.
        let (want_tcp, want_udp) = if self.tcp || self.udp {
            (self.tcp, self.udp)
        } else {
            (true, true)
        };
        // UDP sockets count as listening unless connected, as in netstat.
        let is_listening = state == "LISTEN" || (proto == "udp" && state == "-");
        (proto == "tcp" && want_tcp || proto == "udp" && want_udp) && (self.all || self.listening == is_listening)
    }
}

/// Prints the sockets (or statistics) `args` asks for.
pub fn run(control: &Path, args: &NetstatArgs) -> io::Result<()> {
    if args.statistics {
        let mut sections = Vec::new();
        if args.tcp {
            sections.extend(["Tcp:", "TcpExt:"]);
        }
        if args.udp {
            sections.push("Udp:");
        }
        return super::statistics::run(control, &sections);
    }
    let rows = Client::connect(control)?.table("SOCKETS")?;
    outln!("Active Internet connections ({})", args.heading())?;
    let mut header = format!(
        "{:<6}{:>6} {:>6} {:<23} {:<23} {:<12}",
        "Proto", "Recv-Q", "Send-Q", "Local Address", "Foreign Address", "State"
    );
    if args.program {
        header.push_str(&format!(" {:<20}", "PID/Program name"));
    }
    outln!("{}", header.trim_end())?;
    for r in &rows {
        let proto = get(r, "proto");
        let state = get(r, "state");
        if !args.shows(proto, state) {
            continue;
        }
        let state = if state == "-" { "" } else { state };
        let mut line = format!(
            "{:<6}{:>6} {:>6} {:<23} {:<23} {:<12}",
            proto,
            get(r, "recvq"),
            get(r, "sendq"),
            get(r, "local"),
            peer(get(r, "remote")),
            state
        );
        if args.program {
            line.push_str(&format!(" {:<20}", get(r, "owner")));
        }
        outln!("{}", line.trim_end())?;
        // A TIME-WAIT entry keeps no TCB, so it has no internals (as `ss -i`).
        if args.info && proto == "tcp" && state != "LISTEN" && state != "TIME_WAIT" {
            outln!("{}", internals(r))?;
        }
    }
    Ok(())
}

/// A connection's TCP internals, as `ss -i` puts them under its row, with
/// units on every figure: `rtt 0.215ms  rto 200ms  cwnd 10 seg (14600 B)  ...`,
/// and after the retransmissions what loss recovery did.
fn internals(r: &[(String, String)]) -> String {
    let n = |k: &str| get(r, k).parse::<u64>().ok();
    let mss = n("mss").unwrap_or(0);
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let ssthresh = match get(r, "ssthresh") {
        "-" => "∞".to_owned(),
        v => or_dash(v.parse().ok().map(|b| segments(b, mss))),
    };
    // Buffers as auto-tuning left them (`ss -m`'s rb and tb), with the memory
    // they hold; a daemon from before auto-tuning does not report them.
    let buffers = match (n("rcvbuf"), n("sndbuf")) {
        (Some(rb), Some(tb)) => format!(
            "  rcv_rtt {}  rcvbuf {rb} B ({} allocated)  sndbuf {tb} B ({} allocated)",
            or_dash(n("rcv_rtt_us").map(millis)),
            or_dash(n("rcvbuf_alloc").map(|v| v.to_string())),
            or_dash(n("sndbuf_alloc").map(|v| v.to_string())),
        ),
        _ => String::new(),
    };
    format!(
        "        rtt {}  rto {}  cwnd {}  ssthresh {ssthresh}  mss {} B  retrans {} seg{}  received {} B  sent {} B{buffers}",
        or_dash(n("rtt_us").map(millis)),
        or_dash(n("rto_us").map(millis)),
        or_dash(n("cwnd").map(|b| segments(b, mss))),
        mss,
        or_dash(n("retrans").map(|v| v.to_string())),
        recovery(r),
        or_dash(n("bytes_in").map(|v| v.to_string())),
        or_dash(n("bytes_out").map(|v| v.to_string())),
    )
}

/// What loss recovery did on a connection, after two spaces: `recovery 3
/// fast, 12 rack-marked, 2 probes, 1 undone, 0 timeouts` (fast recoveries,
/// segments RACK marked lost, tail loss probes, reductions undone as
/// spurious, retransmission timeouts). Empty when the daemon, from before
/// RACK-TLP, does not report them.
fn recovery(r: &[(String, String)]) -> String {
    let counts: Option<Vec<String>> = [
        ("recoveries", "fast"),
        ("rack_marked", "rack-marked"),
        ("tlps", "probes"),
        ("undone", "undone"),
        ("rtos", "timeouts"),
    ]
    .iter()
    .map(|(key, what)| Some(format!("{} {what}", get(r, key).parse::<u64>().ok()?)))
    .collect();
    counts.map_or_else(String::new, |c| format!("  recovery {}", c.join(", ")))
}

/// A time given in µs, in milliseconds: three decimals below 1 ms, one
/// below 100 ms, none above (`0.215ms`, `12.5ms`, `200ms`).
fn millis(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    match us {
        0..1_000 => format!("{ms:.3}ms"),
        1_000..100_000 => format!("{ms:.1}ms"),
        _ => format!("{}ms", us / 1000),
    }
}

/// A window in bytes as whole segments of `mss` bytes and as bytes: `10 seg (14600 B)`.
fn segments(bytes: u64, mss: u64) -> String {
    match bytes.checked_div(mss) {
        Some(seg) => format!("{seg} seg ({bytes} B)"),
        None => format!("{bytes} B"),
    }
}

/// netstat's "0.0.0.0:*" for an unbound peer.
fn peer(addr: &str) -> String {
    if addr == "0.0.0.0:0" {
        "0.0.0.0:*".into()
    } else {
        addr.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_choose_sockets_as_netstat_does() {
        let plain = NetstatArgs::default();
        assert_eq!(plain.heading(), "w/o servers");
        assert!(plain.shows("tcp", "ESTABLISHED"));
        assert!(!plain.shows("tcp", "LISTEN"));
        assert!(!plain.shows("udp", "-"), "an unconnected UDP socket listens");
        let listening = NetstatArgs {
            listening: true,
            ..NetstatArgs::default()
        };
        assert_eq!(listening.heading(), "only servers");
        assert!(listening.shows("tcp", "LISTEN") && listening.shows("udp", "-"));
        assert!(!listening.shows("tcp", "ESTABLISHED"));
        let all_udp = NetstatArgs {
            all: true,
            udp: true,
            ..NetstatArgs::default()
        };
        assert_eq!(all_udp.heading(), "servers and established");
        assert!(all_udp.shows("udp", "-") && all_udp.shows("udp", "ESTABLISHED"));
        assert!(!all_udp.shows("tcp", "LISTEN"));
        assert_eq!(peer("0.0.0.0:0"), "0.0.0.0:*");
        assert_eq!(peer("10.0.0.1:7"), "10.0.0.1:7");
    }

    fn row(line: &str) -> Vec<(String, String)> {
        crate::control::fields(line)
    }

    #[test]
    fn every_figure_carries_its_unit() {
        assert_eq!(millis(215), "0.215ms");
        assert_eq!(millis(12_549), "12.5ms");
        assert_eq!(millis(200_000), "200ms");
        assert_eq!(millis(1_000_000), "1000ms");
        assert_eq!(segments(14600, 1460), "10 seg (14600 B)");
        assert_eq!(
            segments(15000, 1460),
            "10 seg (15000 B)",
            "whole segments fit in the window"
        );
        assert_eq!(segments(500, 0), "500 B");
        let r = row(
            "proto=tcp state=ESTABLISHED rtt_us=215 rto_us=200000 cwnd=14600 ssthresh=- mss=1460 retrans=2 bytes_in=3 bytes_out=4",
        );
        assert_eq!(
            internals(&r),
            "        rtt 0.215ms  rto 200ms  cwnd 10 seg (14600 B)  ssthresh ∞  mss 1460 B  retrans 2 seg  received 3 B  sent 4 B"
        );
        let r = row(
            "proto=tcp state=ESTABLISHED rtt_us=215 rto_us=200000 cwnd=14600 ssthresh=- mss=1460 retrans=2 bytes_in=3 bytes_out=4 rcv_rtt_us=20100 rcvbuf=65536 rcvbuf_alloc=4096 sndbuf=29200 sndbuf_alloc=0",
        );
        assert!(
            internals(&r)
                .ends_with("sent 4 B  rcv_rtt 20.1ms  rcvbuf 65536 B (4096 allocated)  sndbuf 29200 B (0 allocated)"),
            "{}",
            internals(&r)
        );
    }

    #[test]
    fn recovery_counts_follow_the_retransmissions_when_the_daemon_sends_them() {
        let line = crate::control::server::tcp_row(&crate::control::server::recovered_connection());
        let shown = internals(&row(&line));
        assert!(
            shown.contains(
                "  retrans 17 seg  recovery 3 fast, 12 rack-marked, 2 probes, 1 undone, 4 timeouts  received 3000000 B"
            ),
            "{shown}"
        );
        // A daemon from before RACK-TLP: no recovery, and nothing else lost.
        let old = row("cwnd=14600 ssthresh=- mss=1460 retrans=2 bytes_in=3 bytes_out=4");
        assert!(
            internals(&old).contains("  retrans 2 seg  received 3 B"),
            "{}",
            internals(&old)
        );
        assert_eq!(recovery(&old), "");
        assert_eq!(
            recovery(&row("recoveries=1 rack_marked=2 tlps=3 undone=4")),
            "",
            "all five or none"
        );
        assert_eq!(
            recovery(&row("recoveries=0 rack_marked=0 tlps=0 undone=0 rtos=0")),
            "  recovery 0 fast, 0 rack-marked, 0 probes, 0 undone, 0 timeouts",
            "a clean connection shows its zeros"
        );
    }

    #[test]
    fn ssthresh_is_infinite_until_set_and_never_zero_or_huge() {
        let unset = internals(&row("rtt_us=- rto_us=1000000 cwnd=14600 ssthresh=- mss=1460"));
        assert!(
            unset.contains("ssthresh ∞ ") && unset.contains("rtt -  rto 1000ms"),
            "{unset}"
        );
        let set = internals(&row("cwnd=8000 ssthresh=7300 mss=1460"));
        assert!(set.contains("ssthresh 5 seg (7300 B)"), "{set}");
    }
}
