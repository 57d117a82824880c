//! Requests on the control socket: reading one request line, and what it asks for.
//!
//! Parsing is apart from serving so that it is a pure function of the
//! client's bytes, fuzzed on its own (the `control` fuzz target).

use super::MAX_REQUEST;
use super::probe::{PingSpec, TraceSpec};
use std::io::{self, BufRead, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// Backlog of a `LISTEN` that names none.
pub const DEFAULT_BACKLOG: usize = 16;

/// Largest `LISTEN` backlog: larger requests are cut to it without a word,
/// as Linux cuts `listen(2)`'s to `net.core.somaxconn` (4096 by default).
pub const MAX_BACKLOG: usize = 4096;

/// What a request line asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Request {
    /// `VERSION`
    Version,
    /// `IFCONFIG`
    Ifconfig,
    /// `ROUTES`
    Routes,
    /// `SOCKETS`
    Sockets,
    /// `STATS`
    Stats,
    /// `CONNECT <ip> <port>`
    Connect(SocketAddrV4),
    /// `ATTACH <id>`: a connection accepted for one of the client's listeners.
    Attach(u64),
    /// `LISTEN <port> [<backlog>]`, the backlog already capped at [`MAX_BACKLOG`].
    Listen {
        /// Port to listen on (0: an ephemeral one).
        port: u16,
        /// Connections that may wait for `accept`.
        backlog: usize,
    },
    /// `UDP <ip> <port> [<peer-ip> <peer-port>]`
    Udp {
        /// Address to bind.
        local: SocketAddrV4,
        /// The peer a connected socket talks to.
        peer: Option<SocketAddrV4>,
    },
    /// `PING <ip> <count> <interval_ms> <size> <ttl>`
    Ping(PingSpec),
    /// `TRACE <ip> <max_hops> <probes> <port> <wait_ms>`
    Trace(TraceSpec),
}

impl Request {
    /// Whether the request turns the connection into a bridge or a stream
    /// of results (everything but the info requests).
    pub fn is_lasting(&self) -> bool {
        !matches!(
            self,
            Request::Version | Request::Ifconfig | Request::Routes | Request::Sockets | Request::Stats
        )
    }
}

/// Reads one request line (without its `\n`); `Ok(None)` when the client
/// is gone. Never reads more than [`MAX_REQUEST`] + 1 bytes for it.
pub fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.by_ref().take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request line too long or unterminated",
        ));
    }
    line.pop();
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request is not text"))
}

/// Parses a request line; the error is the `ERR` message.
pub fn parse(line: &str) -> Result<Request, String> {
    let mut words = line.split(' ');
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    let w: Vec<&str> = words.collect();
    let usage = |u: &str| format!("usage: {u}");
    Ok(match verb.as_str() {
        "VERSION" => Request::Version,
        "IFCONFIG" => Request::Ifconfig,
        "ROUTES" => Request::Routes,
        "SOCKETS" => Request::Sockets,
        "STATS" => Request::Stats,
        "CONNECT" => Request::Connect(parse_addr(w.first(), w.get(1))?),
        "ATTACH" => match w.as_slice() {
            [id] => Request::Attach(id.parse().map_err(|_| usage("ATTACH ID"))?),
            _ => return Err(usage("ATTACH ID")),
        },
        "LISTEN" => {
            let port = w.first().and_then(|p| p.parse::<u16>().ok());
            let backlog = w.get(1).map_or(Some(DEFAULT_BACKLOG), |b| backlog(b));
            match (port, backlog) {
                (Some(port), Some(backlog)) => Request::Listen { port, backlog },
                _ => return Err(usage("LISTEN PORT [BACKLOG]")),
            }
        }
        "UDP" => {
            let local = parse_addr(w.first(), w.get(1))?;
            // An optional peer connects the socket, as `nc -u HOST PORT` does.
            let peer = match w.get(2) {
                None => None,
                ip => Some(parse_addr(ip, w.get(3))?),
            };
            Request::Udp { local, peer }
        }
        "PING" => {
            let spec = (|| {
                Some(PingSpec {
                    dst: w.first()?.parse().ok()?,
                    count: w.get(1)?.parse().ok()?,
                    interval: Duration::from_millis(w.get(2)?.parse::<u64>().ok()?.clamp(1, 3_600_000)),
                    size: w.get(3)?.parse::<usize>().ok().filter(|s| *s <= 65507)?,
                    ttl: w.get(4)?.parse::<u8>().ok().filter(|t| *t > 0)?,
                })
            })();
            Request::Ping(spec.ok_or_else(|| usage("PING IP COUNT INTERVAL_MS SIZE TTL"))?)
        }
        "TRACE" => {
            let spec = (|| {
                Some(TraceSpec {
                    dst: w.first()?.parse().ok()?,
                    max_hops: w.get(1)?.parse::<u8>().ok().filter(|h| *h > 0)?,
                    probes: w.get(2)?.parse::<u8>().ok().filter(|p| (1..=10).contains(p))?,
                    port: w.get(3)?.parse().ok()?,
                    wait: Duration::from_millis(w.get(4)?.parse::<u64>().ok()?.clamp(1, 60_000)),
                })
            })();
            Request::Trace(spec.ok_or_else(|| usage("TRACE IP MAX_HOPS PROBES PORT WAIT_MS"))?)
        }
        "" => return Err("empty request".into()),
        other => return Err(format!("unknown request {other:?}")),
    })
}

/// A backlog in decimal, cut to [`MAX_BACKLOG`] however large.
fn backlog(b: &str) -> Option<usize> {
    if b.is_empty() || !b.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(b.parse::<usize>().unwrap_or(usize::MAX).min(MAX_BACKLOG))
}

fn parse_addr(ip: Option<&&str>, port: Option<&&str>) -> Result<SocketAddrV4, String> {
    let ip: Ipv4Addr = ip
        .ok_or("missing address")?
        .parse()
        .map_err(|e| format!("bad address: {e}"))?;
    let port: u16 = port
        .ok_or("missing port")?
        .parse()
        .map_err(|e| format!("bad port: {e}"))?;
    Ok(SocketAddrV4::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_backlog_is_capped_like_somaxconn() {
        let listen = |l: &str| parse(l).unwrap();
        assert_eq!(
            listen("LISTEN 80"),
            Request::Listen {
                port: 80,
                backlog: DEFAULT_BACKLOG
            }
        );
        assert_eq!(listen("LISTEN 80 5"), Request::Listen { port: 80, backlog: 5 });
        for big in ["4097", "1000000", "99999999999999999999999999"] {
            assert_eq!(
                listen(&format!("listen 80 {big}")),
                Request::Listen {
                    port: 80,
                    backlog: MAX_BACKLOG
                }
            );
        }
        assert!(parse("LISTEN 80 -1").is_err());
        assert!(parse("LISTEN 80 x").is_err());
        assert!(parse("LISTEN 65536").is_err());
    }

    #[test]
    fn requests_parse_and_bad_ones_say_what_is_wrong() {
        let addr: SocketAddrV4 = "10.200.0.1:7".parse().unwrap();
        assert_eq!(parse("CONNECT 10.200.0.1 7"), Ok(Request::Connect(addr)));
        assert_eq!(parse("ATTACH 18446744073709551615"), Ok(Request::Attach(u64::MAX)));
        assert_eq!(parse("ATTACH 1 2"), Err("usage: ATTACH ID".into()));
        assert_eq!(parse("ATTACH -1"), Err("usage: ATTACH ID".into()));
        assert_eq!(
            parse("UDP 0.0.0.0 0 10.200.0.1 7"),
            Ok(Request::Udp {
                local: "0.0.0.0:0".parse().unwrap(),
                peer: Some(addr)
            })
        );
        assert_eq!(parse("UDP 0.0.0.0 0 10.200.0.1"), Err("missing port".into()));
        assert_eq!(parse("CONNECT 10.200.0.1"), Err("missing port".into()));
        assert_eq!(parse(""), Err("empty request".into()));
        assert_eq!(parse("HELLO"), Err("unknown request \"HELLO\"".into()));
        assert!(parse("PING 10.200.0.1 1 1000 65508 64").is_err());
        assert!(!parse("STATS").unwrap().is_lasting());
        assert!(parse("TRACE 10.200.0.1 30 3 33434 5000").unwrap().is_lasting());
    }

    #[test]
    fn a_request_line_is_bounded_and_must_be_text() {
        let mut r = &b"VERSION\nSTATS"[..];
        assert_eq!(read_line(&mut r).unwrap().as_deref(), Some("VERSION"));
        assert!(read_line(&mut r).is_err(), "unterminated");
        let long = vec![b'A'; MAX_REQUEST + 10];
        assert!(read_line(&mut &long[..]).is_err());
        assert!(read_line(&mut &b"\xff\n"[..]).is_err());
        assert_eq!(read_line(&mut &b""[..]).unwrap(), None);
    }
}
