//! An HTTP/1.1 file server (RFC 9110, 9112): GET and HEAD, Content-Length,
//! Content-Type by extension, directory listings, single byte ranges (206)
//! so downloads can resume, keep-alive by default with `Connection: close`
//! honoured, and pipelined requests answered in order.

use super::safety::{Denied, Root, Target, percent_decode};
use super::{Service, is_idle};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use tunstack::net::TcpStream;

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

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A plain HTML listing of `dir`, shown as `shown`.
fn listing(dir: &Path, shown: &str) -> io::Result<String> {
    let mut entries: Vec<(String, bool, u64)> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| {
            let meta = e.metadata().ok();
            let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
            (
                e.file_name().to_string_lossy().into_owned(),
                is_dir,
                meta.map_or(0, |m| m.len()),
            )
        })
        .collect();
    entries.sort();
    let title = html_escape(shown);
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if shown != "/" {
        page.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (name, is_dir, size) in entries {
        let slash = if is_dir { "/" } else { "" };
        let size = if is_dir {
            String::new()
        } else {
            format!(" ({size} bytes)")
        };
        page.push_str(&format!(
            "<li><a href=\"{}{slash}\">{}{slash}</a>{size}</li>\n",
            url_escape(&name),
            html_escape(&name)
        ));
    }
    page.push_str("</ul></body></html>\n");
    Ok(page)
}

/// Writes a response head.
fn head(w: &mut impl Write, status: u16, headers: &[(&str, String)], keep: bool) -> io::Result<()> {
    let mut h = format!("HTTP/1.1 {status} {}\r\nServer: tunstack\r\n", reason(status));
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str(if keep {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    w.write_all(h.as_bytes())
}

/// A small complete response with a text body.
fn simple(
    w: &mut impl Write,
    status: u16,
    extra: &[(&str, String)],
    body: &str,
    send_body: bool,
    keep: bool,
) -> io::Result<()> {
    let mut headers = vec![
        ("Content-Type", "text/plain; charset=utf-8".to_owned()),
        ("Content-Length", body.len().to_string()),
    ];
    headers.extend(extra.iter().cloned());
    head(w, status, &headers, keep)?;
    if send_body {
        w.write_all(body.as_bytes())?;
    }
    Ok(())
}

/// Answers for a file or directory the server may not read: 403, or 500.
fn unreadable(
    w: &mut &TcpStream,
    peer: SocketAddr,
    path: &str,
    e: &io::Error,
    head_only: bool,
    keep: bool,
) -> io::Result<bool> {
    log::info!("http: {peer}: {path:?} unreadable: {e}");
    if e.kind() == io::ErrorKind::PermissionDenied {
        simple(w, 403, &[], "403 Forbidden\n", !head_only, keep)?;
    } else {
        simple(w, 500, &[], "500 Internal Server Error\n", !head_only, keep)?;
    }
    Ok(keep)
}

impl Http {
    /// Answers one request; returns whether the connection stays open.
    fn answer(&self, w: &mut &TcpStream, req: &Request, peer: SocketAddr) -> io::Result<bool> {
        let mut keep = req.keep_alive();
        let has_body =
            req.header("content-length").is_some_and(|v| v.trim() != "0") || req.header("transfer-encoding").is_some();
        if has_body {
            keep = false; // we do not read request bodies: close after answering
        }
        let head_only = req.method == "HEAD";
        if req.method != "GET" && !head_only {
            let allow = [("Allow", "GET, HEAD".to_owned())];
            simple(w, 405, &allow, "405 Method Not Allowed\n", true, keep)?;
            return Ok(keep);
        }
        if req.version == "HTTP/1.1" && req.header("host").is_none() {
            simple(w, 400, &[], "400 Bad Request: no Host header\n", !head_only, false)?;
            return Ok(false);
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
            simple(w, 400, &[], "400 Bad Request\n", !head_only, false)?;
            return Ok(false);
        };
        match self.root.resolve(&path) {
            Err(Denied::NotFound) => {
                log::debug!("http: {peer}: {path:?} not found");
                simple(w, 404, &[], "404 Not Found\n", !head_only, keep)?;
            }
            Err(Denied::Forbidden(why)) => {
                log::info!("http: {peer}: {path:?} refused: {why}");
                simple(w, 403, &[], "403 Forbidden\n", !head_only, keep)?;
            }
            Ok(Target::Dir(dir)) => {
                if !raw_path.ends_with('/') {
                    let loc = [("Location", format!("{raw_path}/"))];
                    simple(w, 301, &loc, "301 Moved Permanently\n", !head_only, keep)?;
                } else {
                    let page = match listing(&dir, &path) {
                        Ok(p) => p,
                        Err(e) => return unreadable(w, peer, &path, &e, head_only, keep),
                    };
                    let headers = [
                        ("Content-Type", "text/html; charset=utf-8".to_owned()),
                        ("Content-Length", page.len().to_string()),
                    ];
                    head(w, 200, &headers, keep)?;
                    if !head_only {
                        w.write_all(page.as_bytes())?;
                    }
                }
            }
            Ok(Target::File(file_path)) => {
                let opened = File::open(&file_path).and_then(|f| f.metadata().map(|m| (f, m.len())));
                let (mut file, len) = match opened {
                    Ok(x) => x,
                    Err(e) => return unreadable(w, peer, &path, &e, head_only, keep),
                };
                let ctype = content_type(&file_path).to_owned();
                match parse_range(req.header("range"), len) {
                    Err(()) => {
                        let cr = [("Content-Range", format!("bytes */{len}"))];
                        simple(w, 416, &cr, "416 Range Not Satisfiable\n", !head_only, keep)?;
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
                        head(w, status, &headers, keep)?;
                        if !head_only {
                            file.seek(SeekFrom::Start(start))?;
                            let mut left = count;
                            let mut buf = vec![0u8; 64 * 1024];
                            while left > 0 {
                                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                                let n = file.read(&mut buf[..want])?;
                                if n == 0 {
                                    // The file shrank under us: the promised length cannot be kept.
                                    return Ok(false);
                                }
                                w.write_all(&buf[..n])?;
                                left -= n as u64;
                            }
                        }
                        log::debug!("http: {peer}: {} {path} -> {status} ({count} bytes)", req.method);
                    }
                }
            }
        }
        Ok(keep)
    }
}

impl Service for Http {
    const NAME: &'static str = "http";

    fn refuse(&self, conn: TcpStream) {
        let mut w = &conn;
        let _ = simple(
            &mut w,
            503,
            &[("Retry-After", "1".to_owned())],
            "503 Service Unavailable: too many connections from your address\n",
            true,
            false,
        );
        let _ = conn.shutdown(Shutdown::Write);
        // Drain briefly (a second, 64 KiB at most) so the 503 is not lost to a reset.
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_millis(250)));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let (mut buf, mut drained) = ([0u8; 4096], 0usize);
        let mut r = &conn;
        while std::time::Instant::now() < deadline && drained < 64 * 1024 {
            match r.read(&mut buf) {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
    }

    fn serve(&self, conn: &TcpStream, peer: SocketAddr) -> io::Result<()> {
        let mut reader = BufReader::with_capacity(16 * 1024, conn);
        let mut w = conn;
        loop {
            let req = match read_request(&mut reader) {
                Ok(r) => r,
                Err(HeadError::Gone) => return Ok(()),
                Err(HeadError::Status(status, why)) => {
                    log::info!("http: {peer}: {why}");
                    simple(
                        &mut w,
                        status,
                        &[],
                        &format!("{status} {}\n", reason(status)),
                        true,
                        false,
                    )?;
                    break;
                }
            };
            match self.answer(&mut w, &req, peer) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) if is_idle(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        conn.shutdown(Shutdown::Write)?;
        let mut buf = [0u8; 4096];
        let mut r = conn;
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn listings_escape_names() {
        let dir = std::env::temp_dir().join(format!("tunstack-listing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a <b>.txt"), b"x").unwrap();
        let page = listing(&dir, "/").unwrap();
        assert!(
            page.contains("href=\"a%20%3Cb%3E.txt\">a &lt;b&gt;.txt</a> (1 bytes)"),
            "{page}"
        );
        assert!(page.contains("href=\"sub/\">sub/</a>"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
