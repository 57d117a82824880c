//! `tunstack ping`: ICMP echo requests sent by the stack (the daemon's PING
//! request), printed like iputils ping, exit codes included.

use super::{request_millis, resolve_host};
use crate::args::seconds;
use crate::control::client::{Client, get};
use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What `ping` sends, and to whom.
#[derive(Debug, clap::Args)]
pub struct PingArgs {
    /// The host to ping.
    host: String,
    /// Stop after this many requests (default: until interrupted).
    #[arg(short, long)]
    count: Option<u32>,
    /// Seconds between requests.
    #[arg(short, long, default_value = "1", value_parser = seconds)]
    interval: Duration,
    /// Bytes of data per request.
    #[arg(short, long, default_value_t = 56)]
    size: usize,
    /// IP time to live.
    #[arg(short, long, default_value_t = 64)]
    ttl: u8,
}

/// Pings until the count is reached or SIGINT; like iputils, exits 0 if any
/// reply came, 1 if none did and 2 on an error.
pub fn run(control: &Path, args: &PingArgs) -> ExitCode {
    match ping(control, args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tunstack ping: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints the replies and the statistics; true if any reply came.
fn ping(control: &Path, args: &PingArgs) -> io::Result<bool> {
    let PingArgs {
        host,
        count,
        interval,
        size,
        ttl,
    } = args;
    let dst = resolve_host(host)?;
    let interval_ms = request_millis(*interval);
    let mut c = Client::connect(control)?;
    c.request(&format!("PING {dst} {} {interval_ms} {size} {ttl}", count.unwrap_or(0)))?;
    outln!("PING {host} ({dst}) {size}({}) bytes of data.", size + 28)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone());
    let (mut reader, _writer) = c.into_parts();
    // Short reads, so that an interrupt is noticed while no reply comes.
    reader.get_ref().set_read_timeout(Some(Duration::from_millis(200)))?;
    let started = Instant::now();
    let (mut transmitted, mut elapsed_ms) = (0u64, None);
    let (mut rtts, mut errors) = (Vec::<u64>::new(), 0u64);
    let mut line = String::new();
    loop {
        if interrupted.load(Ordering::Relaxed) {
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
        let f = crate::control::fields(rest);
        match word {
            "REPLY" => {
                let us: u64 = get(&f, "time_us").parse().unwrap_or(0);
                rtts.push(us);
                transmitted = transmitted.max(get(&f, "seq").parse().unwrap_or(0));
                outln!(
                    "{} bytes from {}: icmp_seq={} ttl={} time={} ms",
                    get(&f, "bytes"),
                    get(&f, "from"),
                    get(&f, "seq"),
                    get(&f, "ttl"),
                    ping_ms(us)
                )?;
            }
            "ERROR" => {
                errors += 1;
                outln!(
                    "From {} icmp_seq={} {}",
                    get(&f, "from"),
                    get(&f, "seq"),
                    icmp_error_text(get(&f, "type"), get(&f, "code"))
                )?;
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
        transmitted = transmitted.max(started.elapsed().as_millis() as u64 / interval_ms + 1);
        if let Some(c) = count {
            transmitted = transmitted.min(u64::from(*c));
        }
    }
    let received = rtts.len() as u64;
    let loss = if transmitted == 0 {
        0.0
    } else {
        (transmitted - received.min(transmitted)) as f64 * 100.0 / transmitted as f64
    };
    let time = elapsed_ms.unwrap_or(started.elapsed().as_millis() as u64);
    outln!()?;
    outln!("--- {host} ping statistics ---")?;
    let errs = if errors > 0 {
        format!(", +{errors} errors")
    } else {
        String::new()
    };
    outln!(
        "{transmitted} packets transmitted, {received} received{errs}, {}% packet loss, time {time}ms",
        percent(loss)
    )?;
    if received > 0 {
        let n = rtts.len() as f64;
        let min = *rtts.iter().min().expect("nonempty");
        let max = *rtts.iter().max().expect("nonempty");
        let avg = rtts.iter().sum::<u64>() as f64 / n;
        let var = rtts.iter().map(|&t| (t as f64) * (t as f64)).sum::<f64>() / n - avg * avg;
        let mdev = var.max(0.0).sqrt();
        let ms = |us: f64| format!("{:.3}", us / 1000.0);
        outln!(
            "rtt min/avg/max/mdev = {}/{}/{}/{} ms",
            ms(min as f64),
            ms(avg),
            ms(max as f64),
            ms(mdev)
        )?;
    }
    Ok(received > 0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_percentages_print_as_iputils_does() {
        assert_eq!(ping_ms(42), "0.042");
        assert_eq!(ping_ms(1234), "1.23");
        assert_eq!(ping_ms(12_345), "12.3");
        assert_eq!(ping_ms(123_456), "123");
        assert_eq!(percent(0.0), "0");
        assert_eq!(percent(100.0), "100");
        assert_eq!(percent(100.0 / 3.0), "33.3333");
        assert_eq!(icmp_error_text("3", "1"), "Destination Host Unreachable");
        assert_eq!(icmp_error_text("5", "1"), "ICMP type 5 code 1");
    }
}
