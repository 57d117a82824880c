//! The client side of the control socket, used by the `tunstack` CLI.

use super::fields;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// A connection to a daemon's control socket.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Client> {
        let s = UnixStream::connect(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot reach tunstackd at {}: {}; is it running, and may you use it?",
                    path.display(),
                    super::server::error_text(&e)
                ),
            )
        })?;
        Ok(Client {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// How long a reply may take before reads fail with `WouldBlock` (`None`: forever).
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(timeout)
    }

    /// Sends a request line and returns the words after `OK`.
    pub fn request(&mut self, line: &str) -> io::Result<String> {
        writeln!(self.writer, "{line}")?;
        self.read_reply()
    }

    /// Reads one reply line: the words after `OK`, or the `ERR` message as an error.
    pub fn read_reply(&mut self) -> io::Result<String> {
        let line = self.read_line()?;
        if let Some(rest) = line.strip_prefix("OK") {
            Ok(rest.trim_start().to_owned())
        } else if let Some(msg) = line.strip_prefix("ERR ") {
            Err(io::Error::other(msg.to_owned()))
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected reply {line:?}"),
            ))
        }
    }

    /// Reads one line (without its newline); end of stream is an error.
    pub fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "tunstackd closed the control connection",
            ));
        }
        Ok(line.trim_end_matches('\n').to_owned())
    }

    /// Sends a request whose reply is `OK <n>` and n lines of fields.
    pub fn table(&mut self, line: &str) -> io::Result<Vec<Vec<(String, String)>>> {
        let n: usize = self
            .request(line)?
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad line count"))?;
        (0..n).map(|_| self.read_line().map(|l| fields(&l))).collect()
    }

    /// The two halves, for a bridged connection (after an `OK`).
    pub fn into_parts(self) -> (BufReader<UnixStream>, UnixStream) {
        (self.reader, self.writer)
    }
}

/// The value of field `key` in a row ("" if absent).
pub fn get<'a>(row: &'a [(String, String)], key: &str) -> &'a str {
    row.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
}
