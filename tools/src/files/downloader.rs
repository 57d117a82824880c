//! The tutorial's file downloader, done right: the client sends a file name
//! ending in a newline (or in its half-close), the server streams the whole
//! file, however large, and closes. A missing or forbidden file gets nothing
//! at all: the connection is reset, so the client sees an error instead of
//! an empty file, and the daemon logs why.

use super::safety::{Root, Target};
use super::{Service, is_idle};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use tunstack::net::TcpStream;

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
                log::info!("downloader: {peer}: no file name ({why}); resetting");
                return conn.abort();
            }
        };
        let path = match self.root.resolve(&name) {
            Ok(Target::File(p)) => p,
            Ok(Target::Dir(_)) => {
                log::info!("downloader: {peer} asked for {name:?}: a directory; resetting");
                return conn.abort();
            }
            Err(why) => {
                log::info!("downloader: {peer} asked for {name:?}: {why:?}; resetting");
                return conn.abort();
            }
        };
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                log::info!("downloader: {peer} asked for {name:?}: {e}; resetting");
                return conn.abort();
            }
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
