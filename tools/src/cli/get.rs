//! `tunstack get`: downloads over tunstack's stack (through the daemon's
//! control socket) from `http://HOST[:PORT]/path` or, with the downloader
//! protocol, `tcp://HOST:PORT/name`, with a progress bar on a terminal and
//! resuming of partial files over HTTP.

use super::resolve;
use crate::control::client::Client;
use crate::control::frame;
use crate::files::downloader::REFUSAL_PREFIX;
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// What `get` downloads, and where to.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// What to download.
    url: String,
    /// Where to write it ("-": standard output); default: the URL's last part.
    #[arg(short, long)]
    output: Option<String>,
    /// Resume a partial file (HTTP Range).
    #[arg(short = 'C', long = "continue")]
    resume: bool,
    /// Give up connecting after SECONDS (the stack's own SYN retries take about 2 minutes).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = crate::args::positive_seconds)]
    connect_timeout: Duration,
}

/// How long the download may stall before it is given up.
const STALL: Duration = Duration::from_secs(30);

/// A parsed URL.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    /// "http" or "tcp".
    pub scheme: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path (HTTP, starting with '/') or file name (downloader).
    pub path: String,
}

/// Parses `http://HOST[:PORT]/path` and `tcp://HOST:PORT/name`.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected http://HOST/path or tcp://HOST:PORT/name")?;
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err("no host in the URL".into());
    }
    let port = match (scheme.as_str(), port) {
        ("http", p) => p.unwrap_or(80),
        ("tcp", Some(p)) => p,
        ("tcp", None) => return Err("tcp:// URLs need a port (the downloader's is usually 2000)".into()),
        (s, _) => return Err(format!("unsupported scheme {s:?}")),
    };
    let path = if scheme == "tcp" {
        path.trim_start_matches('/').to_owned()
    } else {
        path.to_owned()
    };
    if scheme == "tcp" && path.is_empty() {
        return Err("no file name in the tcp:// URL".into());
    }
    Ok(Url {
        scheme,
        host: host.to_owned(),
        port,
        path,
    })
}

/// The bridged connection's bytes as a `Read`: data frames, end at `F`,
/// an error at `E` (a reset) or after a stall.
struct FrameReader {
    inner: BufReader<UnixStream>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for FrameReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.pos = 0;
            match frame::read(&mut self.inner, &mut self.buf) {
                Ok(Some(frame::DATA)) => {}
                Ok(Some(frame::FIN)) | Ok(None) => {
                    self.buf.clear();
                    self.done = true;
                }
                Ok(Some(frame::ERROR)) => {
                    let msg = String::from_utf8_lossy(&self.buf).into_owned();
                    return Err(io::Error::new(io::ErrorKind::ConnectionReset, msg));
                }
                Ok(Some(k)) => return Err(io::Error::other(format!("unexpected frame {k}"))),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no data for {} s", STALL.as_secs()),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// `d` as a person writes it: "10 s", "1.5 s", "250 ms".
fn humantime(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Connects through the daemon to `url`'s host and port, giving up after
/// `timeout`: the control connection then closes, and the daemon drops the
/// half-open connection with it.
fn connect(control: &Path, url: &Url, timeout: Duration) -> io::Result<(FrameReader, UnixStream)> {
    let addr = resolve(&url.host, url.port)?;
    let mut c = Client::connect(control)?;
    c.set_read_timeout(Some(timeout))?;
    match c.request(&format!("CONNECT {} {}", addr.ip(), addr.port())) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "cannot connect to {addr}: no answer within {} (--connect-timeout)",
                    humantime(timeout)
                ),
            ));
        }
        Err(e) => return Err(e),
    }
    let (reader, writer) = c.into_parts();
    reader.get_ref().set_read_timeout(Some(STALL))?;
    Ok((
        FrameReader {
            inner: reader,
            buf: Vec::new(),
            pos: 0,
            done: false,
        },
        writer,
    ))
}

/// A progress bar on a terminal, nothing otherwise.
fn progress(total: Option<u64>, done: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template("{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .expect("valid template"),
        ),
        None => ProgressBar::new_spinner()
            .with_style(ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}").expect("valid template")),
    };
    bar.set_position(done);
    bar
}

/// Copies `body` to `out` (at most `limit` bytes), ticking the progress bar.
fn copy(body: &mut impl Read, out: &mut impl Write, limit: Option<u64>, bar: &ProgressBar) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let want = match limit {
            Some(l) if total >= l => break,
            Some(l) => buf.len().min((l - total) as usize),
            None => buf.len(),
        };
        let n = body.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        total += n as u64;
        bar.inc(n as u64);
    }
    Ok(total)
}

/// The default output name: the last part of the path.
pub fn default_output(url: &Url) -> String {
    let last = url.path.rsplit('/').next().unwrap_or("");
    if last.is_empty() {
        "index.html".into()
    } else {
        last.to_owned()
    }
}

/// Downloads the URL into the output ("-": standard output), resuming a
/// partial file if asked to.
pub fn run(control: &Path, args: &GetArgs) -> io::Result<()> {
    let resume = args.resume;
    let url = parse_url(&args.url).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let output = args.output.clone().unwrap_or_else(|| default_output(&url));
    let to_stdout = output == "-";
    let have = if resume && !to_stdout {
        std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0)
    } else {
        0
    };
    if url.scheme == "tcp" {
        if resume && have > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the downloader protocol cannot resume; use http://",
            ));
        }
        let (body, mut w) = connect(control, &url, args.connect_timeout)?;
        frame::write(&mut w, frame::DATA, format!("{}\n", url.path).as_bytes())?;
        frame::write(&mut w, frame::FIN, b"")?;
        let mut body = refusal_checked(body)
            .map_err(|e| explain_reset(e, "the server refused the file (missing or forbidden?)"))?;
        let bar = progress(None, 0);
        let got = write_body(&output, to_stdout, false, &mut body, None, &bar)
            .map_err(|e| explain_reset(e, "the server refused the file (missing or forbidden?)"))?;
        bar.finish_and_clear();
        eprintln!(
            "tunstack get: {got} bytes from {}:{} {} -> {output}",
            url.host, url.port, url.path
        );
        return Ok(());
    }
    let (body, mut w) = connect(control, &url, args.connect_timeout)?;
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tunstack-get/{}\r\nAccept: */*\r\nConnection: close\r\n",
        url.path,
        if url.port == 80 {
            url.host.clone()
        } else {
            format!("{}:{}", url.host, url.port)
        },
        env!("CARGO_PKG_VERSION")
    );
    if have > 0 {
        req.push_str(&format!("Range: bytes={have}-\r\n"));
    }
    req.push_str("\r\n");
    frame::write(&mut w, frame::DATA, req.as_bytes())?;
    let mut body = BufReader::new(body);
    let mut status_line = String::new();
    body.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an HTTP response: {status_line:?}"),
            )
        })?;
    let mut length: Option<u64> = None;
    let mut range_start: Option<u64> = None;
    loop {
        let mut line = String::new();
        if body.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the response head",
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().ok();
            } else if k.eq_ignore_ascii_case("content-range") {
                range_start = v
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse().ok());
            }
        }
    }
    let (append, skip) = match status {
        200 => (have > 0, have), // the server ignored the range: skip what we have
        206 if range_start == Some(have) => (true, 0),
        206 => {
            return Err(io::Error::other(format!(
                "the server resumed at {range_start:?}, not at {have}"
            )));
        }
        416 if have > 0 => {
            eprintln!("tunstack get: {output} is already complete ({have} bytes)");
            return Ok(());
        }
        s => {
            let reason = status_line.trim_end().splitn(3, ' ').nth(2).unwrap_or("").to_owned();
            return Err(io::Error::other(format!("HTTP {s} {reason}")));
        }
    };
    if skip > 0 {
        io::copy(&mut (&mut body).take(skip), &mut io::sink())?;
    }
    let remaining = length.map(|l| l.saturating_sub(skip));
    let bar = progress(remaining.map(|r| r + have), have);
    let got = write_body(&output, to_stdout, append, &mut body, remaining, &bar)?;
    bar.finish_and_clear();
    if let Some(r) = remaining {
        if got < r {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed after {got} of {r} bytes"),
            ));
        }
    }
    eprintln!(
        "tunstack get: {} bytes from {} -> {output}{}",
        got,
        url.path,
        if append { " (resumed)" } else { "" }
    );
    Ok(())
}

fn write_body(
    output: &str,
    to_stdout: bool,
    append: bool,
    body: &mut impl Read,
    limit: Option<u64>,
    bar: &ProgressBar,
) -> io::Result<u64> {
    if to_stdout {
        return copy(body, &mut super::stdout(), limit, bar);
    }
    // The file is opened (and, unless appending, truncated) only once the
    // first bytes arrive: a refused download leaves an existing file alone.
    let mut out = LazyFile {
        path: output,
        append,
        file: None,
    };
    let n = copy(body, &mut out, limit, bar)?;
    if out.file.is_none() {
        out.open()?; // an empty download is still a (new, empty) file
    }
    Ok(n)
}

/// A file created on first write.
struct LazyFile<'a> {
    path: &'a str,
    append: bool,
    file: Option<File>,
}

impl LazyFile<'_> {
    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let f = if self.append {
                OpenOptions::new().append(true).open(self.path)?
            } else {
                File::create(self.path)?
            };
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("just opened"))
    }
}

impl Write for LazyFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.open()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// The downloader's answer, with a refusal (its one-line reason, then a
/// reset) turned into an error that carries the reason. A file that merely
/// begins like a refusal is passed on whole: only the reset makes it one.
fn refusal_checked(body: FrameReader) -> io::Result<impl Read> {
    let mut body = BufReader::new(body);
    let prefix = REFUSAL_PREFIX.as_bytes();
    let mut first_line = Vec::new();
    if body.fill_buf()?.starts_with(prefix) {
        body.read_until(b'\n', &mut first_line)?;
        match body.fill_buf() {
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                let why = String::from_utf8_lossy(&first_line[prefix.len()..]);
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("the server refused: {}", why.trim_end()),
                ));
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    Ok(io::Cursor::new(first_line).chain(body))
}

fn explain_reset(e: io::Error, what: &str) -> io::Error {
    if e.kind() == io::ErrorKind::ConnectionReset {
        io::Error::new(io::ErrorKind::ConnectionReset, format!("connection reset: {what}"))
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_errors() {
        let u = parse_url("http://10.200.0.1:8000/files/a.bin").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("10.200.0.1", 8000, "/files/a.bin")
        );
        assert_eq!(parse_url("http://h").unwrap().port, 80);
        assert_eq!(parse_url("http://h").unwrap().path, "/");
        let t = parse_url("tcp://10.200.0.2:2000/hello.txt").unwrap();
        assert_eq!((t.scheme.as_str(), t.path.as_str()), ("tcp", "hello.txt"));
        assert!(parse_url("tcp://h/x").is_err());
        assert!(parse_url("ftp://h/x").is_err());
        assert!(parse_url("nourl").is_err());
        assert_eq!(default_output(&parse_url("http://h/dir/").unwrap()), "index.html");
        assert_eq!(default_output(&t), "hello.txt");
    }
}
