//! `tunstack netstat`: the stack's sockets, in `netstat -anp`'s layout.

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
    /// Per-connection TCP internals: RTT, RTO, cwnd, ssthresh, retransmissions, bytes.
    #[arg(short, long)]
    info: bool,
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

/// Prints the sockets `args` asks for.
pub fn run(control: &Path, args: &NetstatArgs) -> io::Result<()> {
    let rows = Client::connect(control)?.table("SOCKETS")?;
    println!("Active Internet connections ({})", args.heading());
    let mut header = format!(
        "{:<6}{:>6} {:>6} {:<23} {:<23} {:<12}",
        "Proto", "Recv-Q", "Send-Q", "Local Address", "Foreign Address", "State"
    );
    if args.program {
        header.push_str(&format!(" {:<20}", "PID/Program name"));
    }
    if args.info {
        header.push_str(&format!(
            " {:>9} {:>9} {:>8} {:>8} {:>7} {:>12} {:>12}",
            "RTT(ms)", "RTO(ms)", "cwnd", "ssthresh", "retrans", "bytes-in", "bytes-out"
        ));
    }
    println!("{}", header.trim_end());
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
        if args.info && proto == "tcp" && state != "LISTEN" {
            let ms = |k: &str| match get(r, k).parse::<f64>() {
                Ok(us) if us > 0.0 => format!("{:.1}", us / 1000.0),
                _ => "-".into(),
            };
            line.push_str(&format!(
                " {:>9} {:>9} {:>8} {:>8} {:>7} {:>12} {:>12}",
                ms("rtt_us"),
                ms("rto_us"),
                get(r, "cwnd"),
                get(r, "ssthresh"),
                get(r, "retrans"),
                get(r, "bytes_in"),
                get(r, "bytes_out")
            ));
        }
        println!("{}", line.trim_end());
    }
    Ok(())
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
}
