//! The `tunstack` CLI: the command-line tools of the tutorial, run on
//! tunstack's own stack through the daemon's control socket. One module a
//! subcommand; this one parses the command line, dispatches, and owns
//! standard output.
//!
//! Every subcommand writes standard output through [`stdout`] (or
//! `outln!`, its `println!`). When the reader has gone (`tunstack netstat |
//! head -1`), the process ends silently by SIGPIPE, as the classic tools do
//! (a shell shows status 141), instead of panicking in `println!`.

/// `println!` through [`stdout`]; returns the `io::Result` to pass on.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::cli::stdout(), $($arg)*)
    }};
}

pub mod get;
pub mod ifconfig;
pub mod nc;
pub mod netstat;
pub mod ping;
pub mod route;
pub mod statistics;
pub mod traceroute;

use clap::{Parser, Subcommand};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// tunstack, the command-line tools (ifconfig, route, netstat, ping, traceroute, get, nc) run on tunstack's own stack, through a running tunstackd's control socket.
#[derive(Debug, Parser)]
#[command(name = "tunstack", version)]
pub struct Cli {
    /// The daemon's interface (its control socket is /run/tunstack/<interface>/control.sock; /run/tunstack/<interface>-netns<inode>/control.sock outside the machine's own network namespace).
    #[arg(short = 'I', long, global = true, default_value = "tun0")]
    interface: String,

    /// The daemon's control socket, if not the default.
    #[arg(long, global = true, value_name = "PATH")]
    control: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

/// The subcommands, in the order `--help` lists them.
#[derive(Debug, Subcommand)]
enum Command {
    /// The stack's interface: address, mask, broadcast, MTU and counters.
    Ifconfig,
    /// The stack's route table, like `route -n`.
    Route,
    /// The stack's sockets, like `netstat -anp`; with -s, per-protocol statistics like `netstat -s`.
    Netstat(netstat::NetstatArgs),
    /// Sends ICMP echo requests from the stack and prints replies like iputils ping.
    Ping(ping::PingArgs),
    /// Shows the path to a host: UDP probes from the stack with rising TTL.
    Traceroute(traceroute::TracerouteArgs),
    /// Downloads http://HOST[:PORT]/path or tcp://HOST:PORT/name (the
    /// downloader protocol) over the stack, with progress on a terminal.
    Get(get::GetArgs),
    /// netcat over tunstack's stack: connect (or listen with -l), stdin to the
    /// network and the network to stdout; end of input is passed on as a half-close.
    Nc(nc::NcArgs),
}

/// Runs the parsed command line; errors are reported on stderr.
pub fn run(cli: Cli) -> ExitCode {
    let control = match cli.control {
        Some(path) => path,
        None => {
            let path = crate::control::default_path(&cli.interface);
            if let Err(e) = crate::control::client::check_default_socket(&path) {
                eprintln!("tunstack: {e}");
                return ExitCode::FAILURE;
            }
            path
        }
    };
    let r = match &cli.command {
        Command::Ifconfig => ifconfig::run(&control),
        Command::Route => route::run(&control),
        Command::Netstat(args) => netstat::run(&control, args),
        // ping reports its own errors: its exit codes are iputils' (1: no reply, 2: error).
        Command::Ping(args) => return ping::run(&control, args),
        Command::Traceroute(args) => traceroute::run(&control, args),
        Command::Get(args) => get::run(&control, args),
        Command::Nc(args) => nc::run(&control, args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tunstack: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Standard output, locked, for the subcommands. Output is line-buffered as
/// `println!`'s is.
#[derive(Debug)]
pub struct Stdout(io::StdoutLock<'static>);

/// The subcommands' standard output: a write to a closed pipe ends the
/// process by SIGPIPE, quietly; other errors are returned.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(end_if_pipe_closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(end_if_pipe_closed)
    }
}

/// Rust ignores SIGPIPE, so a closed pipe shows up as EPIPE: end as the
/// signal would have ended a C tool (status 141 in a shell), without a word.
fn end_if_pipe_closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
        std::process::exit(128 + signal_hook::consts::SIGPIPE);
    }
    e
}

/// The first IPv4 address of `host` (a name or an address), with `port`.
fn resolve(host: &str, port: u16) -> io::Result<SocketAddrV4> {
    (host, port)
        .to_socket_addrs()?
        .find_map(|a| match a {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{host} has no IPv4 address")))
}

/// The first IPv4 address of `host`.
fn resolve_host(host: &str) -> io::Result<Ipv4Addr> {
    Ok(*resolve(host, 0)?.ip())
}

/// `d` in whole milliseconds as the daemon's PING and TRACE take it: at
/// least 1, since a zero interval or wait means nothing useful there.
fn request_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_millis_are_whole_and_never_zero() {
        assert_eq!(request_millis(Duration::from_millis(200)), 200);
        assert_eq!(request_millis(Duration::from_micros(1500)), 1);
        assert_eq!(request_millis(Duration::ZERO), 1);
        assert_eq!(request_millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn the_command_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn the_command_line_parses_as_before() {
        let cli = Cli::try_parse_from(["tunstack", "-I", "tun9", "netstat", "-t", "-i"]).unwrap();
        assert_eq!(cli.interface, "tun9");
        assert!(matches!(cli.command, Command::Netstat(_)));
        let cli = Cli::try_parse_from(["tunstack", "ping", "-c", "5", "-i", "0.2", "h", "--control", "/x"]).unwrap();
        assert_eq!(cli.control, Some(PathBuf::from("/x")));
        assert!(Cli::try_parse_from(["tunstack", "ping", "--interval=-1", "h"]).is_err());
        assert!(Cli::try_parse_from(["tunstack", "traceroute", "-w", "inf", "h"]).is_err());
        assert!(Cli::try_parse_from(["tunstack", "nc"]).is_err());
        let cli = Cli::try_parse_from(["tunstack", "netstat", "-s"]).unwrap();
        assert!(matches!(cli.command, Command::Netstat(_)));
    }

    /// The one way to standard output is [`stdout`]: a `println!` would
    /// panic on a closed pipe.
    #[test]
    fn subcommands_write_standard_output_only_through_the_wrapper() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cli");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == "mod.rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            for bare in ["println!", "print!", "io::stdout()"] {
                // As a token of its own (eprintln! to stderr is fine).
                let used = src.match_indices(bare).any(|(at, _)| {
                    !src[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                assert!(!used, "{} uses {bare}", path.display());
            }
        }
    }
}
