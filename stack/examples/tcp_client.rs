//! The tutorial's TCP client, on tunstack: connect, send, receive, close.
//! The three-way handshake happens in `connect`, the four-way close when
//! the stream is dropped (run with RUST_LOG=debug to watch the states).
//!
//! It runs its own stack on a TUN of its own (needs root). Start a server on
//! the host side first, e.g. `nc -l 9999` once the TUN exists:
//!
//! ```sh
//! cargo build --example tcp_client
//! sudo target/debug/examples/tcp_client 10.203.0.1:9999 "hello from tunstack"
//! ```

use std::io::{Read, Write};
use std::time::Duration;
use tunstack::net::TcpStream;
use tunstack::runtime::{Stack, TunConfig};

fn main() -> std::process::ExitCode {
    // Errors as one line, as the tools print them (not main's Debug output).
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp_client: {e}");
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
    let addr = server.parse().expect("SERVER must be IP:PORT");
    // Retry for a while: the host's server may start only once the TUN exists.
    let mut stream = loop {
        match TcpStream::connect_timeout(&stack, &addr, Duration::from_secs(5)) {
            Ok(s) => break s,
            Err(e) => {
                println!("connect to {server}: {e}; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    println!("connected from {} to {}", stream.local_addr()?, stream.peer_addr()?);
    stream.write_all(message.as_bytes())?;
    stream.write_all(b"\n")?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    println!("answer: {}", answer.trim_end());
    drop(stream);
    stack.shutdown()
}
