//! tunstack: the command-line tools of the tutorial, run on tunstack's own
//! stack through the daemon's control socket (`ifconfig`, `route`,
//! `netstat`, `nc`).

use clap::{Parser, Subcommand};
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use tunstack_tools::control::client::{Client, get};
use tunstack_tools::control::{default_path, frame};

/// Network tools on tunstack's own stack (talks to a running tunstackd).
#[derive(Debug, Parser)]
#[command(name = "tunstack", version, about)]
struct Cli {
    /// The daemon's interface (its control socket is /run/tunstack/<interface>.sock).
    #[arg(short = 'I', long, global = true, default_value = "tun0")]
    interface: String,

    /// The daemon's control socket, if not the default.
    #[arg(long, global = true, value_name = "PATH")]
    control: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The stack's interface: address, mask, broadcast, MTU and counters.
    Ifconfig,
    /// The stack's route table, like `route -n`.
    Route,
    /// The stack's sockets, like `netstat -anp`.
    Netstat {
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
    },
    /// Sends ICMP echo requests from the stack and prints replies like iputils ping.
    Ping {
        /// The host to ping.
        host: String,
        /// Stop after this many requests (default: until interrupted).
        #[arg(short, long)]
        count: Option<u32>,
        /// Seconds between requests.
        #[arg(short, long, default_value_t = 1.0)]
        interval: f64,
        /// Bytes of data per request.
        #[arg(short, long, default_value_t = 56)]
        size: usize,
        /// IP time to live.
        #[arg(short, long, default_value_t = 64)]
        ttl: u8,
    },
    /// Shows the path to a host: UDP probes from the stack with rising TTL.
    Traceroute {
        /// The host to trace.
        host: String,
        /// Largest TTL tried.
        #[arg(short, long, default_value_t = 30)]
        max_hops: u8,
        /// Probes per hop.
        #[arg(short, long, default_value_t = 3)]
        queries: u8,
        /// First destination port.
        #[arg(short, long, default_value_t = 33434)]
        port: u16,
        /// Seconds to wait for each probe's answer.
        #[arg(short, long, default_value_t = 5.0)]
        wait: f64,
    },
    /// Downloads http://HOST[:PORT]/path or tcp://HOST:PORT/name (the
    /// downloader protocol) over the stack, with progress on a terminal.
    Get {
        /// What to download.
        url: String,
        /// Where to write it ("-": standard output); default: the URL's last part.
        #[arg(short, long)]
        output: Option<String>,
        /// Resume a partial file (HTTP Range).
        #[arg(short = 'C', long = "continue")]
        resume: bool,
    },
    /// netcat over tunstack's stack: connect (or listen with -l), stdin to the
    /// network and the network to stdout; end of input is passed on as a half-close.
    Nc {
        /// Listen on PORT instead of connecting.
        #[arg(short, long)]
        listen: bool,
        /// UDP instead of TCP.
        #[arg(short, long)]
        udp: bool,
        /// HOST PORT to connect to, or PORT to listen on.
        #[arg(required = true, num_args = 1..=2)]
        target: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = cli.control.clone().unwrap_or_else(|| default_path(&cli.interface));
    let r = match &cli.command {
        Command::Ifconfig => ifconfig(&path),
        Command::Route => route(&path),
        Command::Netstat {
            tcp,
            udp,
            listening,
            all,
            program,
            info,
        } => netstat(&path, *tcp, *udp, *listening, *all, *program, *info),
        Command::Nc { listen, udp, target } => nc(&path, *listen, *udp, target),
        Command::Get { url, output, resume } => tunstack_tools::get::run(&path, url, output.as_deref(), *resume),
        Command::Ping {
            host,
            count,
            interval,
            size,
            ttl,
        } => return ping(&path, host, *count, *interval, *size, *ttl),
        Command::Traceroute {
            host,
            max_hops,
            queries,
            port,
            wait,
        } => traceroute(&path, host, *max_hops, *queries, *port, *wait),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tunstack: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Bytes in the style of ifconfig: "12345 (12.0 KB)".
fn human(bytes: &str) -> String {
    let b: f64 = bytes.parse().unwrap_or(0.0);
    let (v, unit) = if b >= 1e9 {
        (b / 1e9, "GB")
    } else if b >= 1e6 {
        (b / 1e6, "MB")
    } else if b >= 1e3 {
        (b / 1e3, "KB")
    } else {
        (b, "B")
    };
    format!("{bytes} ({v:.1} {unit})")
}

fn ifconfig(path: &std::path::Path) -> io::Result<()> {
    let rows = Client::connect(path)?.table("IFCONFIG")?;
    for r in &rows {
        println!(
            "{}: flags=<UP,POINTOPOINT,RUNNING,NOARP>  mtu {}",
            get(r, "name"),
            get(r, "mtu")
        );
        println!(
            "        inet {}  netmask {}  broadcast {}",
            get(r, "addr"),
            get(r, "netmask"),
            get(r, "broadcast")
        );
        println!(
            "        RX packets {}  bytes {}",
            get(r, "rx_packets"),
            human(get(r, "rx_bytes"))
        );
        println!(
            "        RX errors {}  dropped {}",
            get(r, "rx_errors"),
            get(r, "rx_dropped")
        );
        println!(
            "        TX packets {}  bytes {}",
            get(r, "tx_packets"),
            human(get(r, "tx_bytes"))
        );
        println!(
            "        TX errors {}  dropped {}",
            get(r, "tx_errors"),
            get(r, "tx_dropped")
        );
    }
    Ok(())
}

fn route(path: &std::path::Path) -> io::Result<()> {
    let rows = Client::connect(path)?.table("ROUTES")?;
    println!("tunstack IP routing table");
    println!(
        "{:<16}{:<16}{:<16}{:<6}{:<7}{:<4}{:>5} Iface",
        "Destination", "Gateway", "Genmask", "Flags", "Metric", "Ref", "Use"
    );
    for r in &rows {
        println!(
            "{:<16}{:<16}{:<16}{:<6}{:<7}{:<4}{:>5} {}",
            get(r, "dest"),
            get(r, "gateway"),
            get(r, "genmask"),
            get(r, "flags"),
            0,
            0,
            0,
            get(r, "iface")
        );
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

fn netstat(
    path: &std::path::Path,
    tcp: bool,
    udp: bool,
    listening: bool,
    all: bool,
    program: bool,
    info: bool,
) -> io::Result<()> {
    let rows = Client::connect(path)?.table("SOCKETS")?;
    let (want_tcp, want_udp) = if tcp || udp { (tcp, udp) } else { (true, true) };
    let heading = match (all, listening) {
        (true, _) => "servers and established",
        (false, true) => "only servers",
        (false, false) => "w/o servers",
    };
    println!("Active Internet connections ({heading})");
    let mut header = format!(
        "{:<6}{:>6} {:>6} {:<23} {:<23} {:<12}",
        "Proto", "Recv-Q", "Send-Q", "Local Address", "Foreign Address", "State"
    );
    if program {
        header.push_str(&format!(" {:<20}", "PID/Program name"));
    }
    if info {
        header.push_str(&format!(
            " {:>9} {:>9} {:>8} {:>8} {:>7} {:>12} {:>12}",
            "RTT(ms)", "RTO(ms)", "cwnd", "ssthresh", "retrans", "bytes-in", "bytes-out"
        ));
    }
    println!("{}", header.trim_end());
    for r in &rows {
        let proto = get(r, "proto");
        let state = get(r, "state");
        // UDP sockets count as listening unless connected, as in netstat.
        let is_listening = state == "LISTEN" || (proto == "udp" && state == "-");
        let shown = (proto == "tcp" && want_tcp || proto == "udp" && want_udp) && (all || listening == is_listening);
        if !shown {
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
        if program {
            line.push_str(&format!(" {:<20}", get(r, "owner")));
        }
        if info && proto == "tcp" && state != "LISTEN" {
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

fn resolve(host: &str, port: &str) -> io::Result<SocketAddrV4> {
    let port: u16 = port
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port {port:?}")))?;
    (host, port)
        .to_socket_addrs()?
        .find_map(|a| match a {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{host} has no IPv4 address")))
}

fn nc(path: &std::path::Path, listen: bool, udp: bool, target: &[String]) -> io::Result<()> {
    let usage = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: tunstack nc [-u] HOST PORT | tunstack nc -l [-u] PORT",
        )
    };
    match (listen, udp, target) {
        (false, false, [host, port]) => {
            let dst = resolve(host, port)?;
            let mut c = Client::connect(path)?;
            c.request(&format!("CONNECT {} {}", dst.ip(), dst.port()))?;
            bridge_stream(c)
        }
        (true, false, [port]) => {
            let mut l = Client::connect(path)?;
            l.request(&format!("LISTEN {port}"))?;
            let accepted = l.read_line()?;
            let id = accepted
                .strip_prefix("ACCEPT ")
                .and_then(|rest| rest.split(' ').next())
                .ok_or_else(|| io::Error::other(accepted.clone()))?;
            let mut c = Client::connect(path)?;
            c.request(&format!("ATTACH {id}"))?;
            drop(l); // one connection, like nc -l
            bridge_stream(c)
        }
        (false, true, [host, port]) => {
            let dst = resolve(host, port)?;
            let mut c = Client::connect(path)?;
            c.request("UDP 0.0.0.0 0")?;
            bridge_datagrams(c, Some(dst))
        }
        (true, true, [port]) => {
            let mut c = Client::connect(path)?;
            c.request(&format!("UDP 0.0.0.0 {port}"))?;
            bridge_datagrams(c, None)
        }
        _ => Err(usage()),
    }
}

/// stdin to the connection (then a half-close), the connection to stdout.
fn bridge_stream(c: Client) -> io::Result<()> {
    let (mut from_daemon, to_daemon) = c.into_parts();
    let mut writer = to_daemon.try_clone()?;
    let sender = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut stdin = io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = frame::write(&mut writer, frame::FIN, b"");
                    break;
                }
                Ok(n) => {
                    if frame::write(&mut writer, frame::DATA, &buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut stdout = io::stdout().lock();
    let mut buf = Vec::new();
    loop {
        match frame::read(&mut from_daemon, &mut buf)? {
            Some(frame::DATA) => {
                stdout.write_all(&buf)?;
                stdout.flush()?;
            }
            // The peer finished sending; ours ends with our input (a half-close
            // each way), so wait for stdin's end before leaving.
            Some(frame::FIN) => {
                let _ = sender.join();
                return Ok(());
            }
            None => return Ok(()),
            Some(frame::ERROR) => return Err(io::Error::other(String::from_utf8_lossy(&buf).into_owned())),
            Some(other) => return Err(io::Error::other(format!("unexpected frame {other}"))),
        }
    }
}

/// Lines of stdin as datagrams (to `dst`, or to whoever spoke last), datagrams to stdout.
fn bridge_datagrams(c: Client, dst: Option<SocketAddrV4>) -> io::Result<()> {
    let (mut from_daemon, to_daemon) = c.into_parts();
    let last_peer = std::sync::Arc::new(std::sync::Mutex::new(dst));
    let peer = last_peer.clone();
    let mut writer: UnixStream = to_daemon.try_clone()?;
    std::thread::spawn(move || {
        let stdin = BufReader::new(io::stdin().lock());
        for line in io::BufRead::split(stdin, b'\n') {
            let Ok(mut line) = line else { break };
            line.push(b'\n');
            let Some(to) = *peer.lock().expect("peer") else {
                continue;
            };
            if frame::write(&mut writer, frame::DATAGRAM, &frame::datagram(to, &line)).is_err() {
                break;
            }
        }
    });
    let mut stdout = io::stdout().lock();
    let mut buf = Vec::new();
    loop {
        match frame::read(&mut from_daemon, &mut buf)? {
            Some(frame::DATAGRAM) => {
                let (from, data) = frame::parse_datagram(&buf)?;
                *last_peer.lock().expect("peer") = Some(from);
                stdout.write_all(data)?;
                stdout.flush()?;
            }
            Some(frame::ERROR) => return Err(io::Error::other(String::from_utf8_lossy(&buf).into_owned())),
            None => return Ok(()),
            Some(other) => return Err(io::Error::other(format!("unexpected frame {other}"))),
        }
    }
}

fn resolve_host(host: &str) -> io::Result<std::net::Ipv4Addr> {
    Ok(*resolve(host, "0")?.ip())
}

/// A time in microseconds as iputils prints it: 3 significant decimals at most.
fn ping_ms(us: u64) -> String {
    if us >= 100_000 {
        format!("{}", us / 1000)
    } else if us >= 10_000 {
        format!("{}.{:01}", us / 1000, (us % 1000) / 100)
    } else if us >= 1000 {
        format!("{}.{:02}", us / 1000, (us % 1000) / 10)
    } else {
        format!("0.{us:03}")
    }
}

/// ICMP error descriptions as iputils prints them.
fn icmp_error_text(kind: &str, code: &str) -> String {
    match (kind, code) {
        ("11", "0") => "Time to live exceeded".into(),
        ("11", _) => "Frag reassembly time exceeded".into(),
        ("3", "0") => "Destination Net Unreachable".into(),
        ("3", "1") => "Destination Host Unreachable".into(),
        ("3", "2") => "Destination Protocol Unreachable".into(),
        ("3", "3") => "Destination Port Unreachable".into(),
        ("3", "4") => "Frag needed and DF set".into(),
        (k, c) => format!("ICMP type {k} code {c}"),
    }
}

/// Formats a number like C's %g (as iputils does for the loss percentage).
fn percent(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn ping(path: &std::path::Path, host: &str, count: Option<u32>, interval: f64, size: usize, ttl: u8) -> ExitCode {
    let run = || -> io::Result<bool> {
        let dst = resolve_host(host)?;
        let interval_ms = (interval * 1000.0).max(1.0) as u64;
        let mut c = Client::connect(path)?;
        c.request(&format!("PING {dst} {} {interval_ms} {size} {ttl}", count.unwrap_or(0)))?;
        println!("PING {host} ({dst}) {size}({}) bytes of data.", size + 28);
        let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone());
        let (mut reader, _writer) = c.into_parts();
        reader
            .get_ref()
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
        let started = std::time::Instant::now();
        let (mut transmitted, mut elapsed_ms) = (0u64, None);
        let (mut rtts, mut errors) = (Vec::<u64>::new(), 0u64);
        let mut line = String::new();
        loop {
            if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            line.clear();
            match io::BufRead::read_line(&mut reader, &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
                Err(e) => return Err(e),
            }
            let (word, rest) = line.trim_end().split_once(' ').unwrap_or((line.trim_end(), ""));
            let f = tunstack_tools::control::fields(rest);
            match word {
                "REPLY" => {
                    let us: u64 = get(&f, "time_us").parse().unwrap_or(0);
                    rtts.push(us);
                    transmitted = transmitted.max(get(&f, "seq").parse().unwrap_or(0));
                    println!(
                        "{} bytes from {}: icmp_seq={} ttl={} time={} ms",
                        get(&f, "bytes"),
                        get(&f, "from"),
                        get(&f, "seq"),
                        get(&f, "ttl"),
                        ping_ms(us)
                    );
                }
                "ERROR" => {
                    errors += 1;
                    println!(
                        "From {} icmp_seq={} {}",
                        get(&f, "from"),
                        get(&f, "seq"),
                        icmp_error_text(get(&f, "type"), get(&f, "code"))
                    );
                }
                "SENDERR" => eprintln!("ping: sendmsg: {}", get(&f, "error")),
                "DONE" => {
                    transmitted = get(&f, "transmitted").parse().unwrap_or(transmitted);
                    elapsed_ms = get(&f, "elapsed_ms").parse::<u64>().ok();
                    break;
                }
                _ => {}
            }
        }
        if elapsed_ms.is_none() {
            // Interrupted: everything sent so far counts, as with iputils' Ctrl-C.
            transmitted = transmitted.max(started.elapsed().as_millis() as u64 / interval_ms.max(1) + 1);
            if let Some(c) = count {
                transmitted = transmitted.min(u64::from(c));
            }
        }
        let received = rtts.len() as u64;
        let loss = if transmitted == 0 {
            0.0
        } else {
            (transmitted - received.min(transmitted)) as f64 * 100.0 / transmitted as f64
        };
        let time = elapsed_ms.unwrap_or(started.elapsed().as_millis() as u64);
        println!();
        println!("--- {host} ping statistics ---");
        let errs = if errors > 0 {
            format!(", +{errors} errors")
        } else {
            String::new()
        };
        println!(
            "{transmitted} packets transmitted, {received} received{errs}, {}% packet loss, time {time}ms",
            percent(loss)
        );
        if received > 0 {
            let n = rtts.len() as f64;
            let min = *rtts.iter().min().expect("nonempty");
            let max = *rtts.iter().max().expect("nonempty");
            let avg = rtts.iter().sum::<u64>() as f64 / n;
            let var = rtts.iter().map(|&t| (t as f64) * (t as f64)).sum::<f64>() / n - avg * avg;
            let mdev = var.max(0.0).sqrt();
            let ms = |us: f64| format!("{:.3}", us / 1000.0);
            println!(
                "rtt min/avg/max/mdev = {}/{}/{}/{} ms",
                ms(min as f64),
                ms(avg),
                ms(max as f64),
                ms(mdev)
            );
        }
        Ok(received > 0)
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tunstack ping: {e}");
            ExitCode::from(2)
        }
    }
}

fn traceroute(path: &std::path::Path, host: &str, max_hops: u8, queries: u8, port: u16, wait: f64) -> io::Result<()> {
    let dst = resolve_host(host)?;
    let wait_ms = (wait * 1000.0).max(1.0) as u64;
    let mut c = Client::connect(path)?;
    c.request(&format!("TRACE {dst} {max_hops} {queries} {port} {wait_ms}"))?;
    println!("traceroute to {host} ({dst}), {max_hops} hops max, 60 byte packets");
    let mut current_ttl = 0u8;
    let mut last_from = String::new();
    let mut out = io::stdout().lock();
    loop {
        let line = c.read_line()?;
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        if word == "DONE" {
            writeln!(out)?;
            return Ok(());
        }
        if word != "HOP" {
            continue;
        }
        let f = tunstack_tools::control::fields(rest);
        let ttl: u8 = get(&f, "ttl").parse().unwrap_or(0);
        if ttl != current_ttl {
            if current_ttl != 0 {
                writeln!(out)?;
            }
            write!(out, "{ttl:>2} ")?;
            current_ttl = ttl;
            last_from.clear();
        }
        if rest.ends_with("timeout") {
            write!(out, " *")?;
        } else {
            let from = get(&f, "from");
            if from != last_from {
                write!(out, " {from}")?;
                last_from = from.to_owned();
            }
            let us: u64 = get(&f, "time_us").parse().unwrap_or(0);
            write!(out, "  {:.3} ms", us as f64 / 1000.0)?;
            // traceroute's annotations for unreachables other than "port".
            match (get(&f, "type"), get(&f, "code")) {
                ("3", "0") => write!(out, " !N")?,
                ("3", "1") => write!(out, " !H")?,
                ("3", "2") => write!(out, " !P")?,
                _ => {}
            }
        }
        out.flush()?;
    }
}
