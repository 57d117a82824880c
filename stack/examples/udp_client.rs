//! The tutorial's UDP client, on tunstack: `send_to` the server, then
//! `recv_from` its answer. The client's port is ephemeral, picked by the stack.
//!
//! It runs its own stack on a TUN of its own (needs root). Start a server on
//! the host side first, e.g. `nc -u -l 9999` (any address: 10.203.0.1 exists only once the TUN does),
//! or run the example and answer from nc:
//!
//! ```sh
//! cargo build --example udp_client
//! sudo target/debug/examples/udp_client 10.203.0.1:9999 "hello from tunstack"
//! ```

use std::time::Duration;
use tunstack::net::UdpSocket;
use tunstack::runtime::{Stack, TunConfig};

fn main() -> std::process::ExitCode {
    // Errors as one line, as the tools print them (not main's Debug output).
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp_client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "10.203.0.1:9999".into());
    let message = args.next().unwrap_or_else(|| "hello from tunstack".into());
    let cfg = TunConfig::example("tunex1", 203);
    let (stack, _) = Stack::on_tun(&cfg)?;
    let sock = UdpSocket::bind(&stack, "0.0.0.0:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    println!(
        "sending from {} to {server}; waiting up to 30 s for an answer",
        sock.local_addr()?
    );
    sock.send_to(message.as_bytes(), &server)?;
    let mut buf = vec![0u8; 65536];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => println!("{from} answered: {}", String::from_utf8_lossy(&buf[..n]).trim_end()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => println!("no answer within 30 s"),
        Err(e) => println!("error: {e}"),
    }
    stack.shutdown()
}
