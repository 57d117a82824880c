//! An HTTP/1.1 file server (RFC 9110, 9112): GET and HEAD, Content-Length,
//! Content-Type by extension, directory listings, single byte ranges (206)
//! so downloads can resume, keep-alive by default with `Connection: close`
//! honoured, and pipelined requests answered in order.

use super::listing::listing;
use super::safety::{Denied, Root, Target, percent_decode};
use super::server::{Io, Next, Outgoing, Pump, Service};
use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tunstack::net::{Interest, TcpStream};

/// Longest request line.
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Most header bytes in one request.
const MAX_HEADERS: usize = 16 * 1024;
/// Most header lines in one request.
const MAX_HEADER_LINES: usize = 100;

/// The HTTP service.
#[derive(Debug)]
pub struct Http {
    /// What it serves.
    pub root: Root,
}

/// A parsed request head.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after this request (RFC 9112 §9.3).
    fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let tokens: Vec<&str> = conn.split(',').map(str::trim).collect();
        if tokens.contains(&"close") {
            return false;
        }
        self.version == "HTTP/1.1" || tokens.contains(&"keep-alive")
    }
}

/// Why a request head could not be read.
enum HeadError {
    /// The client closed (or went idle) between requests: just stop.
    Gone,
    /// Answer with this status, then close.
    Status(u16, &'static str),
}

/// Reads one line of at most `limit` bytes (CRLF or LF), without its end.
fn read_line(r: &mut impl BufRead, limit: usize) -> Result<Option<String>, HeadError> {
    let mut line = Vec::new();
    let n = r
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|_| HeadError::Gone)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if n > limit {
            HeadError::Status(431, "request too large")
        } else {
            HeadError::Gone
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| HeadError::Status(400, "request is not text"))
}

fn read_request(r: &mut impl BufRead) -> Result<Request, HeadError> {
    // RFC 9112 §2.2: ignore empty lines before a request line.
    let line = loop {
        match read_line(r, MAX_REQUEST_LINE)? {
            None => return Err(HeadError::Gone),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Status(400, "malformed request line"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Status(400, "unsupported HTTP version"));
    }
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let l = read_line(r, MAX_HEADERS)?.ok_or(HeadError::Gone)?;
        if l.is_empty() {
            break;
        }
        total += l.len();
        if total > MAX_HEADERS || headers.len() >= MAX_HEADER_LINES {
            return Err(HeadError::Status(431, "request header fields too large"));
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err(HeadError::Status(400, "malformed header"));
        };
        if k.is_empty() || k.contains(' ') {
            return Err(HeadError::Status(400, "malformed header"));
        }
        headers.push((k.to_owned(), v.trim().to_owned()));
    }
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Content-Type by file extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "log" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "csv" => "text/csv; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "wasm" => "application/wasm",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// A single byte range of a `len`-byte file, from a `Range` header.
/// `Ok(None)`: serve the whole file (no header, or one we do not honour,
/// like several ranges); `Err(())`: unsatisfiable (416).
fn parse_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: the whole file is a valid answer (RFC 9110 §14.2)
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = match (a.trim(), b.trim()) {
        ("", "") => return Ok(None),
        ("", n) => {
            let Ok(n) = n.parse::<u64>() else { return Ok(None) };
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (s, "") => {
            let Ok(s) = s.parse::<u64>() else { return Ok(None) };
            (s, len.saturating_sub(1))
        }
        (s, e) => {
            let (Ok(s), Ok(e)) = (s.parse::<u64>(), e.parse::<u64>()) else {
                return Ok(None);
            };
            if e < s {
                return Ok(None); // invalid: ignore the header
            }
            (s, e.min(len.saturating_sub(1)))
        }
    };
    if len == 0 || start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Writes a response head.
fn head(w: &mut Vec<u8>, status: u16, headers: &[(&str, String)], keep: bool) {
    let mut h = format!("HTTP/1.1 {status} {}\r\nServer: tunstack\r\n", reason(status));
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str(if keep {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    w.extend_from_slice(h.as_bytes());
}

/// A small complete response with a text body.
fn simple(w: &mut Vec<u8>, status: u16, extra: &[(&str, String)], body: &str, send_body: bool, keep: bool) {
    let mut headers = vec![
        ("Content-Type", "text/plain; charset=utf-8".to_owned()),
        ("Content-Length", body.len().to_string()),
    ];
    headers.extend(extra.iter().cloned());
    head(w, status, &headers, keep);
    if send_body {
        w.extend_from_slice(body.as_bytes());
    }
}

/// Answers for a file or directory the server may not read: 403, or 500.
fn unreadable(peer: SocketAddr, path: &str, e: &io::Error, head_only: bool, keep: bool) -> (Vec<u8>, bool) {
    log::info!("http: {peer}: {path:?} unreadable: {e}");
    let mut w = Vec::new();
    if e.kind() == io::ErrorKind::PermissionDenied {
        simple(&mut w, 403, &[], "403 Forbidden\n", !head_only, keep);
    } else {
        simple(&mut w, 500, &[], "500 Internal Server Error\n", !head_only, keep);
    }
    (w, keep)
}

impl Http {
    /// The response to one request, and whether the connection stays open after it.
    fn answer(&self, req: &Request, peer: SocketAddr) -> io::Result<(Outgoing, bool)> {
        let mut w = Vec::new();
        let mut keep = req.keep_alive();
        let has_body =
            req.header("content-length").is_some_and(|v| v.trim() != "0") || req.header("transfer-encoding").is_some();
        if has_body {
            keep = false; // we do not read request bodies: close after answering
        }
        let head_only = req.method == "HEAD";
        if req.method != "GET" && !head_only {
            let allow = [("Allow", "GET, HEAD".to_owned())];
            simple(&mut w, 405, &allow, "405 Method Not Allowed\n", true, keep);
            return Ok((Outgoing::bytes(w), keep));
        }
        if req.version == "HTTP/1.1" && req.header("host").is_none() {
            simple(&mut w, 400, &[], "400 Bad Request: no Host header\n", !head_only, false);
            return Ok((Outgoing::bytes(w), false));
        }
        // Origin form, or absolute form (http://host/path); query and fragment are not part of the file name.
        // Absolute form (RFC 9112 §3.2.2): the scheme is case-insensitive; no path means "/".
        let target = if req.target.len() >= 7 && req.target[..7].eq_ignore_ascii_case("http://") {
            let rest = &req.target[7..];
            rest.find('/').map_or("/", |i| &rest[i..])
        } else {
            req.target.as_str()
        };
        let raw_path = target.split(['?', '#']).next().unwrap_or("");
        let Some(path) = percent_decode(raw_path).filter(|p| p.starts_with('/')) else {
            simple(&mut w, 400, &[], "400 Bad Request\n", !head_only, false);
            return Ok((Outgoing::bytes(w), false));
        };
        match self.root.resolve(&path) {
            Err(Denied::NotFound) => {
                log::debug!("http: {peer}: {path:?} not found");
                simple(&mut w, 404, &[], "404 Not Found\n", !head_only, keep);
            }
            Err(Denied::Forbidden(why)) => {
                log::info!("http: {peer}: {path:?} refused: {why}");
                simple(&mut w, 403, &[], "403 Forbidden\n", !head_only, keep);
            }
            Ok(Target::Dir(dir)) => {
                if !raw_path.ends_with('/') {
                    let loc = [("Location", format!("{raw_path}/"))];
                    simple(&mut w, 301, &loc, "301 Moved Permanently\n", !head_only, keep);
                } else {
                    let page = match listing(&dir, &path) {
                        Ok(p) => p,
                        Err(e) => {
                            let (w, keep) = unreadable(peer, &path, &e, head_only, keep);
                            return Ok((Outgoing::bytes(w), keep));
                        }
                    };
                    let headers = [
                        ("Content-Type", "text/html; charset=utf-8".to_owned()),
                        ("Content-Length", page.len().to_string()),
                    ];
                    head(&mut w, 200, &headers, keep);
                    if !head_only {
                        w.extend_from_slice(page.as_bytes());
                    }
                }
            }
            Ok(Target::File(file_path)) => {
                let opened = File::open(&file_path).and_then(|f| f.metadata().map(|m| (f, m.len())));
                let (mut file, len) = match opened {
                    Ok(x) => x,
                    Err(e) => {
                        let (w, keep) = unreadable(peer, &path, &e, head_only, keep);
                        return Ok((Outgoing::bytes(w), keep));
                    }
                };
                let ctype = content_type(&file_path).to_owned();
                match parse_range(req.header("range"), len) {
                    Err(()) => {
                        let cr = [("Content-Range", format!("bytes */{len}"))];
                        simple(&mut w, 416, &cr, "416 Range Not Satisfiable\n", !head_only, keep);
                    }
                    Ok(range) => {
                        let (status, start, count) = match range {
                            Some((s, e)) => (206, s, e - s + 1),
                            None => (200, 0, len),
                        };
                        let mut headers = vec![
                            ("Content-Type", ctype),
                            ("Content-Length", count.to_string()),
                            ("Accept-Ranges", "bytes".to_owned()),
                        ];
                        if status == 206 {
                            headers.push(("Content-Range", format!("bytes {start}-{}/{len}", start + count - 1)));
                        }
                        head(&mut w, status, &headers, keep);
                        log::debug!("http: {peer}: {} {path} -> {status} ({count} bytes)", req.method);
                        if !head_only {
                            file.seek(SeekFrom::Start(start))?;
                            return Ok((Outgoing::with_file(w, file, Some(count)), keep));
                        }
                    }
                }
            }
        }
        Ok((Outgoing::bytes(w), keep))
    }
}

/// Where an HTTP connection is.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Bytes read but not yet taken as a request: a head still coming, or
    /// requests pipelined behind the one being answered. No capacity when empty.
    input: Vec<u8>,
    /// How far `input` was searched for the end of a head.
    scanned: usize,
    /// The client closed its side.
    ended: bool,
    /// A refused connection: its answer is a 503, and its end is quicker.
    refused: bool,
    phase: Phase,
}

/// What an HTTP connection does now.
#[derive(Debug)]
enum Phase {
    /// Reading a request head.
    Head,
    /// Sending a response; then the next request, or closing.
    Respond { out: Outgoing, keep: bool },
    /// Our FIN went out after the last response: reading what the client
    /// still sends (at most `left` bytes, until `until` if set) so that
    /// closing does not turn into a reset that could destroy the response.
    Linger { left: usize, until: Option<Instant> },
}

/// How much of its last bytes a refused client may send, and for how long, before the close.
const REFUSED_DRAIN: (usize, Duration) = (64 * 1024, Duration::from_secs(1));

/// Most bytes of a request head, with the ends of its lines.
const MAX_HEAD: usize = MAX_REQUEST_LINE + MAX_HEADERS + 2 * (MAX_HEADER_LINES + 2);

/// The length of the empty lines at the start of `input` (RFC 9112 §2.2: ignored before a request line).
fn leading_empty_lines(input: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match &input[at..] {
            [b'\n', ..] => at += 1,
            [b'\r', b'\n', ..] => at += 2,
            _ => return at,
        }
    }
}

/// Where the head at the start of `input` ends, just past its empty line,
/// if it is all there; `input[..from]` was searched already.
fn head_end(input: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(2);
    (start..input.len()).find_map(|i| match &input[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

impl Conn {
    fn new(refused: bool, phase: Phase) -> Conn {
        Conn {
            input: Vec::new(),
            scanned: 0,
            ended: false,
            refused,
            phase,
        }
    }

    /// The next request head from `input`: `None` until all of it is there.
    fn take_head(&mut self) -> Option<Result<Request, HeadError>> {
        let skip = leading_empty_lines(&self.input);
        if skip > 0 {
            self.input.drain(..skip);
            self.scanned = 0;
        }
        let Some(end) = head_end(&self.input, self.scanned) else {
            self.scanned = self.input.len();
            let line_too_long = !self.input.contains(&b'\n') && self.input.len() > MAX_REQUEST_LINE;
            return if line_too_long {
                Some(Err(HeadError::Status(431, "request too large")))
            } else if self.input.len() > MAX_HEAD {
                Some(Err(HeadError::Status(431, "request header fields too large")))
            } else {
                None
            };
        };
        let req = read_request(&mut io::Cursor::new(&self.input[..end]));
        self.input.drain(..end);
        self.scanned = 0;
        if self.input.is_empty() {
            self.input = Vec::new(); // an idle connection holds no memory
        }
        Some(req)
    }
}

impl Service for Http {
    const NAME: &'static str = "http";
    type Conn = Conn;

    fn refuse(&self, _stream: &TcpStream) -> Option<Conn> {
        let mut w = Vec::new();
        simple(
            &mut w,
            503,
            &[("Retry-After", "1".to_owned())],
            "503 Service Unavailable: too many connections from your address\n",
            true,
            false,
        );
        let out = Outgoing::bytes(w);
        Some(Conn::new(true, Phase::Respond { out, keep: false }))
    }

    fn accept(&self) -> Conn {
        Conn::new(false, Phase::Head)
    }

    fn run(&self, conn: &mut Conn, io: &mut Io<'_>, scratch: &mut [u8]) -> io::Result<Next> {
        loop {
            if io.spent() {
                return Ok(Next::Again);
            }
            match &mut conn.phase {
                Phase::Head => {
                    let (out, keep) = match conn.take_head() {
                        Some(Ok(req)) => self.answer(&req, io.peer)?,
                        Some(Err(HeadError::Gone)) => return Ok(Next::Close),
                        Some(Err(HeadError::Status(status, why))) => {
                            log::info!("http: {}: {why}", io.peer);
                            let mut w = Vec::new();
                            simple(
                                &mut w,
                                status,
                                &[],
                                &format!("{status} {}\n", reason(status)),
                                true,
                                false,
                            );
                            (Outgoing::bytes(w), false)
                        }
                        // The client closed (or went idle) between requests: just stop.
                        None if conn.ended => return Ok(Next::Close),
                        None => {
                            let want = (MAX_HEAD + 1).saturating_sub(conn.input.len()).clamp(1, scratch.len());
                            match io.read(&mut scratch[..want])? {
                                None => return Ok(Next::Wait(Interest::READABLE)),
                                Some(0) => conn.ended = true,
                                Some(n) => conn.input.extend_from_slice(&scratch[..n]),
                            }
                            continue;
                        }
                    };
                    conn.phase = Phase::Respond { out, keep };
                }
                Phase::Respond { out, keep } => match out.pump(io)? {
                    Pump::Done if *keep => conn.phase = Phase::Head,
                    Pump::Done => {
                        io.stream().shutdown(Shutdown::Write)?;
                        conn.phase = if conn.refused {
                            let (left, within) = REFUSED_DRAIN;
                            Phase::Linger {
                                left,
                                until: Some(io.now + within),
                            }
                        } else {
                            Phase::Linger {
                                left: usize::MAX,
                                until: None,
                            }
                        };
                    }
                    waiting => return Ok(waiting.waiting()),
                },
                Phase::Linger { left, until } => {
                    if let Some(until) = *until {
                        if io.now >= until {
                            return Ok(Next::Close);
                        }
                        io.wake_at(until);
                    }
                    let want = (*left).min(scratch.len());
                    match io.read(&mut scratch[..want])? {
                        None => return Ok(Next::Wait(Interest::READABLE)),
                        Some(0) => return Ok(Next::Close),
                        Some(n) => {
                            *left -= n;
                            if *left == 0 {
                                return Ok(Next::Close);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::testing::{self, HTTP, PATIENCE, Site, read_response, send};
    use std::io::Write;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=5-2"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=-0"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=abc-"), 100), Ok(None), "invalid: ignored");
        assert_eq!(parse_range(Some("bytes=99999999999999999999-"), 100), Ok(None));
    }

    #[test]
    fn request_heads_parse_with_limits() {
        let mut r = io::Cursor::new(
            b"\r\nGET /a%20b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n".to_vec(),
        );
        let req = read_request(&mut r).ok().unwrap();
        assert_eq!((req.method.as_str(), req.target.as_str()), ("GET", "/a%20b"));
        assert!(!req.keep_alive());
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            big.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(100)).as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert!(matches!(
            read_request(&mut io::Cursor::new(big)),
            Err(HeadError::Status(431, _))
        ));
        assert!(matches!(
            read_request(&mut io::Cursor::new(b"GARBAGE\r\n\r\n".to_vec())),
            Err(HeadError::Status(400, _))
        ));
        assert!(matches!(
            read_request(&mut io::Cursor::new(b"GET / HTTP/2\r\n\r\n".to_vec())),
            Err(HeadError::Status(400, _))
        ));
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type(Path::new("a/index.HTML")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("x.png")), "image/png");
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
    }

    #[test]
    fn a_head_split_anywhere_is_taken_once_whole_and_what_follows_stays() {
        let bytes = b"\r\n\nGET /small.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /";
        let end = bytes.len() - "GET /".len();
        let mut c = Conn::new(false, Phase::Head);
        for (i, b) in bytes.iter().enumerate() {
            c.input.push(*b);
            let got = c.take_head();
            if i + 1 == end {
                let req = got.expect("a whole head").ok().expect("a valid head");
                assert_eq!((req.method.as_str(), req.target.as_str()), ("GET", "/small.txt"));
            } else {
                assert!(got.is_none(), "a head after {} bytes", i + 1);
            }
        }
        assert_eq!(c.input, b"GET /", "the pipelined start stays");
    }

    #[test]
    fn endless_heads_are_refused_at_their_bound_and_empty_lines_cost_nothing() {
        let mut c = Conn::new(false, Phase::Head);
        for _ in 0..100_000 {
            c.input.extend_from_slice(b"\r\n");
            assert!(c.take_head().is_none());
            assert!(c.input.is_empty(), "empty lines are dropped");
        }
        c.input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut got = None;
        for i in 0..100_000 {
            c.input.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            got = c.take_head();
            if got.is_some() {
                break;
            }
        }
        assert!(matches!(got, Some(Err(HeadError::Status(431, _)))));
        assert!(c.input.len() <= MAX_HEAD + 16, "{} bytes held", c.input.len());
        let mut c = Conn::new(false, Phase::Head);
        c.input = vec![b'a'; MAX_REQUEST_LINE + 1];
        assert!(matches!(c.take_head(), Some(Err(HeadError::Status(431, _)))));
    }

    #[test]
    fn a_head_sent_byte_by_byte_is_answered() {
        let site = Site::new("bytewise", 1000, 16, PATIENCE);
        let s = site.connect(HTTP);
        s.set_nodelay(true).unwrap();
        for b in b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n" {
            (&s).write_all(&[*b]).unwrap();
        }
        let r = read_response(&s, false);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]), "{}", r.head);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_on_one_connection() {
        let site = Site::new("pipelined", 100_000, 16, PATIENCE);
        let big = testing::big_data(100_000);
        let s = site.connect(HTTP);
        send(
            &s,
            concat!(
                "GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n",
                "HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-1999\r\n\r\n",
                "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /sub HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ),
        );
        let r = read_response(&s, false);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));
        assert_eq!(r.header("connection"), Some("keep-alive"));
        let r = read_response(&s, true);
        assert_eq!((r.status, r.header("content-length")), (200, Some("100000")));
        let r = read_response(&s, false);
        assert_eq!(r.status, 206);
        assert_eq!(r.header("content-range"), Some("bytes 1000-1999/100000"));
        assert!(r.body == big[1000..2000]);
        assert_eq!(read_response(&s, false).status, 404);
        let r = read_response(&s, false);
        assert_eq!((r.status, r.header("location")), (301, Some("/sub/")));
        let r = read_response(&s, false);
        assert_eq!((r.status, r.header("connection")), (200, Some("close")));
        assert!(r.body == big);
        let mut rest = Vec::new();
        assert_eq!((&s).read_to_end(&mut rest).unwrap(), 0, "closed after the last");
    }

    #[test]
    fn a_client_that_never_reads_stalls_nobody_else() {
        const BIG: usize = 16 << 20;
        let site = Site::new("slow", BIG, 64, PATIENCE);
        let slow = site.connect(HTTP);
        send(&slow, "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        // Others are served in full meanwhile, over HTTP and the downloader.
        for _ in 0..3 {
            let s = site.connect(HTTP);
            send(&s, "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=-100\r\n\r\n");
            send(&s, "GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(read_response(&s, false).status, 206);
            assert_eq!(read_response(&s, false).body, b"hello\n");
            let d = site.connect(testing::DOWNLOADER);
            (&d).write_all(b"small.txt\n").unwrap();
            let mut got = Vec::new();
            (&d).read_to_end(&mut got).unwrap();
            assert_eq!(got, b"hello\n");
        }
        // The slow client has but a part of its file yet (its buffers' worth)...
        let port = slow.local_addr().unwrap().port();
        let queued: usize = site.stack.with_interface(|i| {
            i.tcp_layer()
                .sockets()
                .iter()
                .filter(|c| c.local.port() == port)
                .map(|c| c.recv_queue)
                .sum()
        });
        assert!(queued < BIG, "{queued} bytes of {BIG} wait for the slow client");
        // ... and gets the rest, intact, once it reads.
        let r = read_response(&slow, false);
        assert_eq!(r.status, 200);
        assert!(r.body == testing::big_data(BIG), "the slow client's file differs");
    }
}
