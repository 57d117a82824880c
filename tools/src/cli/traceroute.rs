//! `tunstack traceroute`: UDP probes sent by the stack with rising TTL (the
//! daemon's TRACE request), printed like traceroute.

use super::{request_millis, resolve_host};
use crate::args::seconds;
use crate::control::client::{Client, get};
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

/// How `traceroute` probes, and where to.
#[derive(Debug, clap::Args)]
pub struct TracerouteArgs {
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
    #[arg(short, long, default_value = "5", value_parser = seconds)]
    wait: Duration,
}

/// Prints a line a hop, as the daemon reports the probes' answers.
pub fn run(control: &Path, args: &TracerouteArgs) -> io::Result<()> {
    let TracerouteArgs {
        host,
        max_hops,
        queries,
        port,
        wait,
    } = args;
    let dst = resolve_host(host)?;
    let wait_ms = request_millis(*wait);
    let mut c = Client::connect(control)?;
    c.request(&format!("TRACE {dst} {max_hops} {queries} {port} {wait_ms}"))?;
    outln!("traceroute to {host} ({dst}), {max_hops} hops max, 60 byte packets")?;
    let mut current_ttl = 0u8;
    let mut last_from = String::new();
    let mut out = super::stdout();
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
        let f = crate::control::fields(rest);
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
