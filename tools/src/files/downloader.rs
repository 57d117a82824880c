//! The tutorial's file downloader, done right: the client sends a file name
//! ending in a newline (or in its half-close), the server streams the whole
//! file, however large, and closes. A file it will not serve gets one line,
//! `tunstack-downloader: error: <why>` (so a plain `nc` user reads why),
//! and then a reset, so a program sees an error instead of a short file
//! (a served file always ends in an orderly close); the daemon logs why.

use super::safety::{Denied, Opened, Root};
use super::server::{Io, Next, Outgoing, Pump, Service};
use std::io;
use std::net::Shutdown;
use std::time::{Duration, Instant};
use tunstack::net::{Interest, TcpStream};

/// How the line that refuses a file begins.
pub const REFUSAL_PREFIX: &str = "tunstack-downloader: error: ";

/// Longest file name accepted.
const MAX_NAME: usize = 4096;

/// How long a refusal's line may take to be acknowledged (a few RTOs on a
/// lossy path) before the reset goes anyway.
const REFUSAL_DELIVERY: Duration = Duration::from_secs(3);

/// How long the acknowledged line stands before the reset: a reader such as
/// OpenBSD `nc` drops a socket with a pending error unread, so the line must
/// be read well before the reset arrives.
const REFUSAL_GRACE: Duration = Duration::from_millis(200);

/// How often a refusal looks whether its line was acknowledged.
const ACK_CHECK: Duration = Duration::from_millis(5);

/// The downloader service.
#[derive(Debug)]
pub struct Downloader {
    /// What it serves.
    pub root: Root,
}

/// Where a downloader connection is.
#[derive(Debug)]
pub(crate) enum Conn {
    /// Reading the file name: what came so far.
    Name(Vec<u8>),
    /// Streaming the file.
    Sending { name: String, out: Outgoing },
    /// The file went out and our FIN after it: reading what the client
    /// still sends until it closes, so closing does not turn into a reset.
    Linger,
    /// Telling the client why not, then resetting.
    Refusing(Refusal),
}

/// A refusal's progress: the line, its acknowledgment, the grace, the reset.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Sending the line.
    Line(Outgoing),
    /// Waiting (until then) for the line to be acknowledged, so the reset cannot overtake it.
    Unacknowledged(Instant),
    /// The line is acknowledged: reset at this time.
    Grace(Instant),
}

/// What the client asked for: the name up to its newline, once all of it
/// is there (`Ok(None)` while it is not; `ended`: the client's FIN came),
/// or why it cannot be read.
pub fn name_of(name: &[u8], ended: bool) -> Result<Option<String>, String> {
    let name = match name.iter().position(|b| *b == b'\n') {
        Some(end) => &name[..end],
        None if ended => name,
        None if name.len() > MAX_NAME => return Err("file name too long".into()),
        None => return Ok(None),
    };
    let name = std::str::from_utf8(name).map_err(|_| "file name is not UTF-8".to_owned())?;
    Ok(Some(name.trim_end_matches('\r').to_owned()))
}

impl Downloader {
    /// What to send for `name`: the file, or a refusal saying why not.
    fn open(&self, name: String, io: &Io<'_>) -> Conn {
        match self.root.open(&name) {
            Ok(Opened::File(file, _)) => Conn::Sending {
                name,
                out: Outgoing::with_file(Vec::new(), file, None),
            },
            Ok(Opened::Dir(_)) => refuse(io, &format!("{name:?} is a directory")),
            Err(Denied::NotFound) => refuse(io, &format!("no such file: {name:?}")),
            Err(Denied::Forbidden(why)) => refuse(io, &format!("forbidden: {why}")),
            Err(Denied::Busy(why)) => refuse_at(log::Level::Debug, io, &format!("busy, try again: {why}")),
            Err(Denied::Failed { why, serious }) => {
                refuse_at(if serious { log::Level::Warn } else { log::Level::Info }, io, &why)
            }
        }
    }
}

impl Service for Downloader {
    const NAME: &'static str = "downloader";
    type Conn = Conn;

    fn refuse(&self, stream: &TcpStream) -> Option<Conn> {
        let _ = stream.abort();
        None
    }

    fn accept(&self) -> Conn {
        Conn::Name(Vec::new())
    }

    fn run(&self, conn: &mut Conn, io: &mut Io<'_>, scratch: &mut [u8]) -> io::Result<Next> {
        loop {
            if io.spent() {
                return Ok(Next::Again);
            }
            match conn {
                Conn::Name(name) => {
                    let want = (MAX_NAME + 1).saturating_sub(name.len()).clamp(1, scratch.len());
                    let ended = match io.read(&mut scratch[..want]) {
                        Ok(None) => return Ok(Next::Wait(Interest::READABLE)),
                        Ok(Some(0)) => true,
                        Ok(Some(n)) => {
                            name.extend_from_slice(&scratch[..n]);
                            false
                        }
                        Err(e) => {
                            *conn = refuse(io, &format!("no file name ({e})"));
                            continue;
                        }
                    };
                    *conn = match name_of(name, ended) {
                        Ok(None) => continue,
                        Ok(Some(name)) => self.open(name, io),
                        Err(why) => refuse(io, &format!("no file name ({why})")),
                    };
                }
                Conn::Sending { name, out } => match out.pump(io)? {
                    Pump::Done => {
                        log::info!(
                            "downloader: sent {name:?} ({} bytes) to {}",
                            out.file_bytes_sent(),
                            io.peer
                        );
                        io.stream().shutdown(Shutdown::Write)?;
                        *conn = Conn::Linger;
                    }
                    waiting => return Ok(waiting.waiting()),
                },
                Conn::Linger => match io.read(scratch)? {
                    None => return Ok(Next::Wait(Interest::READABLE)),
                    Some(0) => return Ok(Next::Close),
                    Some(_) => {}
                },
                Conn::Refusing(refusal) => return refusal.run(io),
            }
        }
    }

    fn idle(&self, conn: &mut Conn, io: &mut Io<'_>) -> io::Result<Next> {
        match conn {
            Conn::Name(_) => {
                *conn = refuse(io, "no file name (idle too long)");
                let Conn::Refusing(refusal) = conn else {
                    unreachable!("just set")
                };
                refusal.run(io)
            }
            Conn::Refusing(_) => {
                io.stream().abort()?;
                Ok(Next::Close)
            }
            Conn::Sending { .. } | Conn::Linger => Ok(Next::Close),
        }
    }
}

/// Starts a refusal: one line saying why, then, once the line is
/// acknowledged (so the reset cannot overtake it) and a moment later, a reset.
fn refuse(io: &Io<'_>, why: &str) -> Conn {
    refuse_at(log::Level::Info, io, why)
}

/// As [`refuse`], logging why at `level`.
fn refuse_at(level: log::Level, io: &Io<'_>, why: &str) -> Conn {
    log::log!(level, "downloader: {}: {why}; refusing", io.peer);
    let line = format!("{REFUSAL_PREFIX}{}\n", why.replace(['\n', '\r'], " "));
    Conn::Refusing(Refusal::Line(Outgoing::bytes(line.into_bytes())))
}

impl Refusal {
    fn run(&mut self, io: &mut Io<'_>) -> io::Result<Next> {
        if let Refusal::Line(out) = self {
            match out.pump(io)? {
                Pump::Done => *self = Refusal::Unacknowledged(io.now + REFUSAL_DELIVERY),
                waiting => return Ok(waiting.waiting()),
            }
        }
        if let Refusal::Unacknowledged(until) = *self {
            // The stack says when all is acknowledged only to a blocking
            // wait; the shortest one is a look (`SIOCOUTQ` is 0?). A
            // failed connection gets its reset at once.
            match io.stream().wait_acknowledged(Duration::from_nanos(1)) {
                Ok(()) => *self = Refusal::Grace(io.now + REFUSAL_GRACE),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && io.now < until => {
                    io.wake_at((io.now + ACK_CHECK).min(until));
                    return Ok(Next::Wait(Interest::READABLE));
                }
                Err(_) => return reset(io),
            }
        }
        let Refusal::Grace(at) = *self else {
            unreachable!("the line is acknowledged")
        };
        if io.now < at {
            io.wake_at(at);
            return Ok(Next::Wait(Interest::READABLE));
        }
        reset(io)
    }
}

/// Ends a refusal with a reset.
fn reset(io: &Io<'_>) -> io::Result<Next> {
    io.stream().abort()?;
    Ok(Next::Close)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::testing::{DOWNLOADER, PATIENCE, Site, big_data};
    use std::io::{Read, Write};

    #[test]
    fn names_end_in_a_newline_or_the_half_close() {
        assert_eq!(name_of(b"a.txt", false), Ok(None));
        assert_eq!(name_of(b"a.txt\r\nmore", false), Ok(Some("a.txt".into())));
        assert_eq!(name_of(b"a.txt", true), Ok(Some("a.txt".into())));
        assert!(name_of(&[b'a'; MAX_NAME + 1], false).is_err());
        assert!(name_of(b"\xff\n", false).is_err());
    }

    #[test]
    fn a_file_comes_down_whole_and_a_refusal_is_a_line_then_a_reset() {
        const BIG: usize = 3_000_000;
        let site = Site::new("downloader", BIG, 16, PATIENCE);
        let s = site.connect(DOWNLOADER);
        s.set_nodelay(true).unwrap();
        for b in b"big.bin\n" {
            (&s).write_all(&[*b]).unwrap();
        }
        let mut got = Vec::new();
        (&s).read_to_end(&mut got).unwrap();
        assert!(got == big_data(BIG), "{} bytes came of {BIG}", got.len());

        let s = site.connect(DOWNLOADER);
        (&s).write_all(b"../secret\n").unwrap();
        let mut got = Vec::new();
        let e = (&s).read_to_end(&mut got).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        let line = String::from_utf8(got).unwrap();
        assert!(
            line.starts_with(REFUSAL_PREFIX) && line.contains("forbidden") && line.ends_with('\n'),
            "{line:?}"
        );
    }
}
