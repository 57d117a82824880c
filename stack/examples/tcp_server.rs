//! The tutorial's TCP server, on tunstack: bind, listen(backlog) — only now
//! is the port active — then accept a new socket per client, receive, send,
//! close the client socket; the listener closes when the program ends.
//!
//! It runs its own stack on a TUN of its own (needs root):
//!
//! ```sh
//! cargo build --example tcp_server && sudo target/debug/examples/tcp_server [PORT]
//! # then, from the host:  nc 10.201.0.2 9999
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use tunstack::net::TcpListener;
use tunstack::runtime::{Stack, TunConfig};

fn main() -> std::process::ExitCode {
    // Errors as one line, as the tools print them (not main's Debug output).
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp_server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .map_or(Ok(9999), |p| p.parse())
        .expect("PORT must be a number");
    let cfg = TunConfig::example("tunex0", 201);
    let (stack, name) = Stack::on_tun(&cfg)?;
    // backlog 5: at most 5 (Linux: 6) finished handshakes wait for accept().
    let listener = TcpListener::bind_with_backlog(&stack, (Ipv4Addr::UNSPECIFIED, port), 5)?;
    println!(
        "tcp server on {name}, {}; try: nc 10.201.0.2 {port}",
        listener.local_addr()?
    );
    for client in listener.incoming() {
        let client = client?;
        let peer = client.peer_addr()?;
        println!("{peer} connected");
        // One client at a time, like the tutorial; each line comes back upper-cased.
        let mut reader = BufReader::new(&client);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            (&client).write_all(line.to_uppercase().as_bytes())?;
            line.clear();
        }
        println!("{peer} closed");
    }
    Ok(())
}
