//! An HTTP/1.1 file server (RFC 9110, 9112): GET and HEAD, Content-Length,
//! Content-Type by extension, directory listings, single byte ranges (206)
//! so downloads can resume, keep-alive by default with `Connection: close`
//! honoured, and pipelined requests answered in order. Request heads are
//! read by [`super::request`].

use super::listing::{listing, url_escape};
use super::request::{HeadError, HeadReader, MAX_HEAD, Request, request_path};
use super::safety::{Denied, Opened, Root, relative};
use super::server::{Io, Next, Outgoing, Pump, Service};
use std::io::{self, Seek, SeekFrom};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tunstack::net::{Interest, TcpStream};

/// The HTTP service.
#[derive(Debug)]
pub struct Http {
    /// What it serves.
    pub root: Root,
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
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
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

/// A range no byte of the file is in (416).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A single byte range of a `len`-byte file, from a `Range` header.
/// `Ok(None)`: serve the whole file (no header, or one we do not honour,
/// like several ranges); `Err`: unsatisfiable (416).
pub fn parse_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
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
                return Err(Unsatisfiable);
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
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

/// Methods RFC 9110 and RFC 5789 define: 405 (with `Allow`) for these, 501 for others.
const KNOWN_METHODS: [&str; 7] = ["POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// Where a directory named `path` (decoded, as requested) is, with its
/// slash: built from its checked components, percent-encoded, so it is
/// always a path on this server.
fn location(path: &str) -> String {
    match relative(path) {
        Ok(rel) if rel.as_bytes() != b"." => format!("/{}/", url_escape(&rel.to_string_lossy())),
        _ => "/".to_owned(),
    }
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
        if req.content_length > 0 {
            keep = false; // we do not read request bodies: close after answering
        }
        let head_only = req.method == "HEAD";
        if req.method != "GET" && !head_only {
            // RFC 9110 §15.6.2: a method we do not know is 501; one we know, but not here, 405.
            if KNOWN_METHODS.contains(&req.method.as_str()) {
                let allow = [("Allow", "GET, HEAD".to_owned())];
                simple(&mut w, 405, &allow, "405 Method Not Allowed\n", true, keep);
            } else {
                simple(&mut w, 501, &[], "501 Not Implemented\n", true, keep);
            }
            return Ok((Outgoing::bytes(w), keep));
        }
        if req.minor == 1 && req.header("host").is_none() {
            simple(&mut w, 400, &[], "400 Bad Request: no Host header\n", !head_only, false);
            return Ok((Outgoing::bytes(w), false));
        }
        let Some((raw_path, path)) = request_path(&req.target) else {
            simple(&mut w, 400, &[], "400 Bad Request\n", !head_only, false);
            return Ok((Outgoing::bytes(w), false));
        };
        match self.root.open(&path) {
            Err(Denied::NotFound) => {
                log::debug!("http: {peer}: {path:?} not found");
                simple(&mut w, 404, &[], "404 Not Found\n", !head_only, keep);
            }
            Err(Denied::Forbidden(why)) => {
                log::info!("http: {peer}: {path:?} refused: {why}");
                simple(&mut w, 403, &[], "403 Forbidden\n", !head_only, keep);
            }
            Err(Denied::Busy(why)) => {
                log::debug!("http: {peer}: {why}");
                let retry = [("Retry-After", "1".to_owned())];
                simple(&mut w, 503, &retry, "503 Service Unavailable\n", !head_only, keep);
            }
            Err(Denied::Failed { why, serious }) => {
                let level = if serious { log::Level::Warn } else { log::Level::Info };
                log::log!(level, "http: {peer}: {why}");
                simple(&mut w, 500, &[], "500 Internal Server Error\n", !head_only, keep);
            }
            Ok(Opened::Dir(dir)) => {
                if !raw_path.ends_with('/') {
                    // From the name as checked, never the target as sent:
                    // `//host` there would send the client to another site.
                    let loc = [("Location", location(&path))];
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
                    if head_only {
                        return Ok((Outgoing::bytes(w), keep));
                    }
                    let mut page = page.into_bytes();
                    page.splice(..0, w);
                    return Ok((Outgoing::bytes(page), keep));
                }
            }
            Ok(Opened::File(mut file, len)) => {
                let ctype = content_type(Path::new(&path)).to_owned();
                // RFC 9110 §14.2: Range is for GET only; and with If-Range,
                // whose validators we never send, the whole file is the answer.
                let range = match req.header("if-range") {
                    None if !head_only => req.header("range"),
                    _ => None,
                };
                match parse_range(range, len) {
                    Err(Unsatisfiable) => {
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
    /// Request heads as they come.
    reader: HeadReader,
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

impl Conn {
    fn new(refused: bool, phase: Phase) -> Conn {
        Conn {
            reader: HeadReader::default(),
            ended: false,
            refused,
            phase,
        }
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
                    let (out, keep) = match conn.reader.take() {
                        Some(Ok(req)) => self.answer(&req, io.peer)?,
                        Some(Err(HeadError { status, why })) => {
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
                            let want = (MAX_HEAD + 1)
                                .saturating_sub(conn.reader.held())
                                .clamp(1, scratch.len());
                            match io.read(&mut scratch[..want])? {
                                None => return Ok(Next::Wait(Interest::READABLE)),
                                Some(0) => conn.ended = true,
                                Some(n) => conn.reader.push(&scratch[..n]),
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
    use std::io::{Read, Write};

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=5-2"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=-0"), 100), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=abc-"), 100), Ok(None), "invalid: ignored");
        assert_eq!(parse_range(Some("bytes=99999999999999999999-"), 100), Ok(None));
    }

    #[test]
    fn a_directory_redirect_stays_on_this_server() {
        assert_eq!(location("//evil.example/x"), "/evil.example/x/");
        assert_eq!(location("/a b/é"), "/a%20b/%C3%A9/");
        assert_eq!(location("/."), "/");
        let site = Site::new("redirect", 10, 16, PATIENCE);
        std::fs::create_dir_all(site.dir.join("sub/deeper")).unwrap();
        let s = site.connect(HTTP);
        for (target, want) in [
            ("//sub", "/sub/"),
            ("/sub//deeper", "/sub/deeper/"),
            ("http://x//sub", "/sub/"),
        ] {
            send(&s, &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
            let r = read_response(&s, false);
            assert_eq!((r.status, r.header("location")), (301, Some(want)), "{target}");
        }
    }

    #[test]
    fn ranges_are_for_get_without_if_range_and_methods_get_their_status() {
        let site = Site::new("ranges", 100, 16, PATIENCE);
        let s = site.connect(HTTP);
        let ask = |method: &str, extra: &str| {
            send(&s, &format!("{method} /big.bin HTTP/1.1\r\nHost: x\r\n{extra}\r\n"));
            read_response(&s, method == "HEAD")
        };
        let r = ask("GET", "Range: bytes=0-9\r\n");
        assert_eq!((r.status, r.body.len()), (206, 10));
        let r = ask("HEAD", "Range: bytes=0-9\r\n");
        assert_eq!(
            (r.status, r.header("content-length")),
            (200, Some("100")),
            "HEAD ignores Range"
        );
        let r = ask("GET", "Range: bytes=0-9\r\nIf-Range: \"x\"\r\n");
        assert_eq!((r.status, r.body.len()), (200, 100), "If-Range: the whole file");
        for (method, status) in [("POST", 405), ("DELETE", 405), ("BREW", 501), ("get", 501)] {
            let r = ask(method, "");
            assert_eq!(r.status, status, "{method}");
            assert_eq!(r.header("allow").is_some(), status == 405, "{method}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type(Path::new("a/index.HTML")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("x.png")), "image/png");
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
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
