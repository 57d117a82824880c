//! The tutorial's file downloader, done right: the client sends a file name
//! ending in a newline (or in its half-close), the server streams the whole
//! file, however large, and closes. A file it will not serve gets one line,
//! `tunstack-downloader: error: <why>` (so a plain `nc` user reads why),
//! and then a reset, so a program sees an error instead of a short file
//! (a served file always ends in an orderly close); the daemon logs why.

use super::safety::{Denied, Root, Target};
use super::{Service, is_idle};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;
use tunstack::net::TcpStream;

/// How the line that refuses a file begins.
pub const REFUSAL_PREFIX: &str = "tunstack-downloader: error: ";

/// Longest file name accepted.
const MAX_NAME: usize = 4096;

/// The downloader service.
#[derive(Debug)]
pub struct Downloader {
    /// What it serves.
    pub root: Root,
}

/// Reads the requested name: up to a newline or the client's half-close.
fn read_name(mut conn: &TcpStream) -> io::Result<String> {
    let mut name = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(end) = buf[..n].iter().position(|b| *b == b'\n') {
            name.extend_from_slice(&buf[..end]);
            break;
        }
        name.extend_from_slice(&buf[..n]);
        if name.len() > MAX_NAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "file name too long"));
        }
    }
    let name =
        String::from_utf8(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file name is not UTF-8"))?;
    Ok(name.trim_end_matches('\r').to_owned())
}

impl Service for Downloader {
    const NAME: &'static str = "downloader";

    fn refuse(&self, conn: TcpStream) {
        let _ = conn.abort();
    }

    fn serve(&self, conn: &TcpStream, peer: SocketAddr) -> io::Result<()> {
        let name = match read_name(conn) {
            Ok(n) => n,
            Err(e) => {
                let why = if is_idle(&e) {
                    "idle too long".to_owned()
                } else {
                    e.to_string()
                };
                return refuse(conn, peer, &format!("no file name ({why})"));
            }
        };
        let path = match self.root.resolve(&name) {
            Ok(Target::File(p)) => p,
            Ok(Target::Dir(_)) => return refuse(conn, peer, &format!("{name:?} is a directory")),
            Err(Denied::NotFound) => return refuse(conn, peer, &format!("no such file: {name:?}")),
            Err(Denied::Forbidden(why)) => return refuse(conn, peer, &format!("forbidden: {why}")),
        };
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => return refuse(conn, peer, &format!("{name:?}: {e}")),
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent: u64 = 0;
        let mut w = conn;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n])?;
            sent += n as u64;
        }
        log::info!("downloader: sent {name:?} ({sent} bytes) to {peer}");
        conn.shutdown(Shutdown::Write)?;
        // Let the client finish: whatever it still sends is read and dropped,
        // so closing does not turn into a reset.
        let mut r = conn;
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        Ok(())
    }
}

/// How long a refusal's line may take to be acknowledged (a few RTOs on a
/// lossy path) before the reset goes anyway.
const REFUSAL_DELIVERY: Duration = Duration::from_secs(3);

/// How long the acknowledged line stands before the reset: a reader such as
/// OpenBSD `nc` drops a socket with a pending error unread, so the line must
/// be read well before the reset arrives.
const REFUSAL_GRACE: Duration = Duration::from_millis(200);

/// Tells the client why in one line, then, once the line is acknowledged
/// (so the reset cannot overtake it) and a moment later, resets the connection.
fn refuse(conn: &TcpStream, peer: SocketAddr, why: &str) -> io::Result<()> {
    log::info!("downloader: {peer}: {why}; refusing");
    let mut w = conn;
    let line = format!("{REFUSAL_PREFIX}{}\n", why.replace(['\n', '\r'], " "));
    if w.write_all(line.as_bytes()).is_ok() && conn.wait_acknowledged(REFUSAL_DELIVERY).is_ok() {
        std::thread::sleep(REFUSAL_GRACE);
    }
    conn.abort()
}
