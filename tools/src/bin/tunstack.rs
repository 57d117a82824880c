//! tunstack: the command-line tools of the tutorial, run on tunstack's own
//! stack through the daemon's control socket (`ifconfig`, `route`,
//! `netstat`, `ping`, `traceroute`, `get`, `nc`). The subcommands live in
//! `tunstack_tools::cli`.

use clap::Parser;
use std::process::ExitCode;
use tunstack_tools::cli::{self, Cli};

fn main() -> ExitCode {
    cli::run(Cli::parse())
}
