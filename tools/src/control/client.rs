//! The client side of the control socket, used by the `tunstack` CLI.

use super::{fields, printable};
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
        // Shown on a terminal: nothing from the daemon may drive it.
        Ok(printable(line.trim_end_matches('\n')))
    }

    /// Sends a request whose reply is `OK <n>` and n lines of fields.
    pub fn table(&mut self, line: &str) -> io::Result<Vec<Vec<(String, String)>>> {
        let n: usize = self
            .request(line)?
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad line count"))?;
        (0..n)
            .map(|_| {
                let row = fields(&self.read_line()?);
                Ok(row.into_iter().map(|(k, v)| (k, printable(&v))).collect())
            })
            .collect()
    }

    /// The two halves, for a bridged connection (after an `OK`).
    pub fn into_parts(self) -> (BufReader<UnixStream>, UnixStream) {
        (self.reader, self.writer)
    }
}

/// Refuses a socket at the default path (`/run/tunstack/<dir>/<socket>`)
/// that its daemon cannot have made: only root may add a directory to
/// `/run/tunstack`, and gives it to the daemon's user, whose socket is
/// in it; so `/run/tunstack` must be root's and writable by no one else,
/// the directory writable by its owner only, and the socket that owner's,
/// root's or the caller's. This refuses a socket an unrelated user put
/// there; it cannot tell the daemon from another process of the daemon's
/// own user (see the README on `--user`). Nothing there is left to connect to
/// report.
pub fn check_default_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(socket) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing {}: {why}", path.display()),
        ))
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let top = dir.parent().unwrap_or(Path::new("/"));
    let (d, t) = (std::fs::symlink_metadata(dir)?, std::fs::symlink_metadata(top)?);
    if !t.is_dir() || t.uid() != 0 || t.mode() & 0o022 != 0 {
        return refuse(format!("{} is not root's alone", top.display()));
    }
    if !d.is_dir() || d.mode() & 0o022 != 0 {
        return refuse(format!(
            "{} is not a directory only its owner may write to",
            dir.display()
        ));
    }
    if !socket.file_type().is_socket() {
        return refuse("not a socket".into());
    }
    if ![0, d.uid(), crate::privilege::euid()].contains(&socket.uid()) {
        return refuse(format!(
            "it belongs to uid {}, not to the owner of its directory (uid {}): someone else put it there",
            socket.uid(),
            d.uid()
        ));
    }
    Ok(())
}

/// The value of field `key` in a row ("" if absent).
pub fn get<'a>(row: &'a [(String, String)], key: &str) -> &'a str {
    row.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_default_socket_is_refused_unless_its_directorys_owner_or_root_made_it() {
        if crate::privilege::euid() != 0 {
            return; // the ownerships below need root to make
        }
        let top = std::env::temp_dir().join(format!("tunstack-client-{}", std::process::id()));
        let dir = top.join("tun0");
        std::fs::create_dir_all(&dir).unwrap();
        let chmod = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        chmod(&top, 0o755);
        chmod(&dir, 0o755);
        let sock = dir.join("control.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let chown = |p: &Path, uid| std::os::unix::fs::lchown(p, Some(uid), None).unwrap();
        assert!(check_default_socket(&sock).is_ok(), "root's");
        chown(&sock, 4242);
        let e = check_default_socket(&sock).unwrap_err();
        assert!(e.to_string().contains("belongs to uid 4242"), "{e}");
        chown(&dir, 4242);
        assert!(check_default_socket(&sock).is_ok(), "the directory owner's");
        chmod(&dir, 0o777);
        assert!(check_default_socket(&sock).is_err(), "a directory anyone may write to");
        chmod(&dir, 0o755);
        chmod(&top, 0o1777);
        assert!(check_default_socket(&sock).is_err(), "a top anyone may write to");
        assert!(
            check_default_socket(&dir.join("missing")).is_ok(),
            "left to connect to report"
        );
        std::fs::remove_dir_all(&top).unwrap();
    }
}
