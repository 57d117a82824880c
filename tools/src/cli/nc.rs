//! `tunstack nc`: netcat over tunstack's stack. A TCP connection (made or
//! accepted) or a UDP socket borrowed from the daemon, bridged to stdin and
//! stdout.

use super::resolve;
use crate::control::client::Client;
use crate::control::frame;
use std::io::{self, BufReader, Read, Write};
use std::net::SocketAddrV4;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What `nc` connects to or listens on.
#[derive(Debug, clap::Args)]
pub struct NcArgs {
    /// Listen on PORT instead of connecting.
    #[arg(short, long)]
    listen: bool,
    /// UDP instead of TCP.
    #[arg(short, long)]
    udp: bool,
    /// HOST PORT to connect to, or PORT to listen on.
    #[arg(required = true, num_args = 1..=2)]
    target: Vec<String>,
}

/// Bridges stdin and stdout to the connection or socket `args` asks for.
pub fn run(control: &Path, args: &NcArgs) -> io::Result<()> {
    match (args.listen, args.udp, args.target.as_slice()) {
        (false, false, [host, port]) => {
            let dst = resolve(host, parse_port(port)?)?;
            let mut c = Client::connect(control)?;
            c.request(&format!("CONNECT {} {}", dst.ip(), dst.port()))?;
            bridge_stream(c)
        }
        (true, false, [port]) => {
            let mut l = Client::connect(control)?;
            l.request(&format!("LISTEN {port}"))?;
            let accepted = l.read_line()?;
            let id = accepted
                .strip_prefix("ACCEPT ")
                .and_then(|rest| rest.split(' ').next())
                .ok_or_else(|| io::Error::other(accepted.clone()))?;
            let mut c = Client::connect(control)?;
            c.request(&format!("ATTACH {id}"))?;
            drop(l); // one connection, like nc -l
            bridge_stream(c)
        }
        (false, true, [host, port]) => {
            let dst = resolve(host, parse_port(port)?)?;
            let mut c = Client::connect(control)?;
            // A connected socket, as nc -u makes: it hears only its peer, and
            // an ICMP port unreachable comes back as "Connection refused".
            c.request(&format!("UDP 0.0.0.0 0 {} {}", dst.ip(), dst.port()))?;
            bridge_datagrams(c, Some(dst))
        }
        (true, true, [port]) => {
            let mut c = Client::connect(control)?;
            c.request(&format!("UDP 0.0.0.0 {port}"))?;
            bridge_datagrams(c, None)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: tunstack nc [-u] HOST PORT | tunstack nc -l [-u] PORT",
        )),
    }
}

fn parse_port(port: &str) -> io::Result<u16> {
    port.parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port {port:?}")))
}

/// The error a frame of `kind` other than the expected ones stands for
/// (`buf`: its payload): the daemon's own message for an error frame.
fn unexpected(kind: u8, buf: &[u8]) -> io::Error {
    if kind == frame::ERROR {
        io::Error::other(String::from_utf8_lossy(buf).into_owned())
    } else {
        io::Error::other(format!("unexpected frame {kind}"))
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
    let mut stdout = super::stdout();
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
            Some(other) => return Err(unexpected(other, &buf)),
        }
    }
}

/// Lines of stdin as datagrams (to `dst`, or to whoever spoke last), datagrams to stdout.
fn bridge_datagrams(c: Client, dst: Option<SocketAddrV4>) -> io::Result<()> {
    let (mut from_daemon, to_daemon) = c.into_parts();
    let last_peer = Arc::new(Mutex::new(dst));
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
    let mut stdout = super::stdout();
    let mut buf = Vec::new();
    loop {
        match frame::read(&mut from_daemon, &mut buf)? {
            Some(frame::DATAGRAM) => {
                let (from, data) = frame::parse_datagram(&buf)?;
                *last_peer.lock().expect("peer") = Some(from);
                stdout.write_all(data)?;
                stdout.flush()?;
            }
            None => return Ok(()),
            Some(other) => return Err(unexpected(other, &buf)),
        }
    }
}
