//! The tutorial's UDP server, on tunstack: bind a fixed port, then for each
//! datagram `recv_from` (data + client address) and `send_to` the reply.
//!
//! It runs its own stack on a TUN of its own (needs root):
//!
//! ```sh
//! cargo build --example udp_server && sudo target/debug/examples/udp_server [PORT]
//! # then, from the host:  nc -u 10.201.0.2 9999
//! ```

use std::net::Ipv4Addr;
use tunstack::net::UdpSocket;
use tunstack::runtime::{Stack, TunConfig};

fn main() -> std::process::ExitCode {
    // Errors as one line, as the tools print them (not main's Debug output).
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp_server: {e}");
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
    let server = UdpSocket::bind(&stack, (Ipv4Addr::UNSPECIFIED, port))?;
    println!(
        "udp server on {name}, {}; try: nc -u 10.201.0.2 {port}",
        server.local_addr()?
    );
    // A buffer as big as the largest datagram: nothing is ever cut short.
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = server.recv_from(&mut buf)?;
        let text = String::from_utf8_lossy(&buf[..n]);
        println!("{client} sent {n} bytes: {}", text.trim_end());
        server.send_to(text.to_uppercase().as_bytes(), client)?;
    }
}
