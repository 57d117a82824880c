//! Built-in services the daemon runs on its own stack.

use std::io;
use std::net::Ipv4Addr;
use std::thread::JoinHandle;
use tunstack::net::UdpSocket;
use tunstack::runtime::Stack;

/// Source ports of services that answer anything (echo, daytime, qotd,
/// chargen, time): echoing to them could bounce datagrams forever between
/// two such services, so their datagrams are not answered.
const REFLECTING_PORTS: [u16; 5] = [7, 13, 17, 19, 37];

/// UDP echo (RFC 862) on `port`: every datagram goes back to its sender.
/// Returns once the socket is bound; the service runs until the stack stops.
pub fn udp_echo(stack: &Stack, port: u16) -> io::Result<JoinHandle<()>> {
    let sock = UdpSocket::bind(stack, (Ipv4Addr::UNSPECIFIED, port))?;
    log::info!("udp echo listening on {}", sock.local_addr()?);
    std::thread::Builder::new()
        .name(format!("udp-echo-{port}"))
        .spawn(move || {
            // Large enough for any UDP datagram over IPv4.
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv_msg(&mut buf) {
                    Ok(m) => {
                        if REFLECTING_PORTS.contains(&m.from.port()) {
                            log::debug!("udp echo: not answering {} (a reflecting service port)", m.from);
                            continue;
                        }
                        if let Err(e) = sock.send_to(&buf[..m.len], m.from) {
                            log::debug!("udp echo: reply to {} failed: {e}", m.from);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NetworkDown => break,
                    Err(e) => log::debug!("udp echo: {e}"),
                }
            }
        })
}
