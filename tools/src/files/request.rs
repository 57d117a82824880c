//! Reading HTTP/1.1 request heads (RFC 9112) for the file server.
//!
//! Heads are parsed by `httparse` (hyper's parser: well kept and fuzzed),
//! once all of a head is there. On top of it, what request smuggling feeds
//! on is refused with a 400 and a close: a repeated or invalid
//! `Content-Length`, any `Transfer-Encoding` (the server reads no request
//! bodies), a repeated `Host`; and the empty lines allowed before a request
//! line (RFC 9112 §2.2) are bounded. Nothing here indexes a string by a
//! byte count it did not find as a character boundary.

use super::safety::percent_decode;

/// Longest request line.
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Most header bytes in one request (names and values).
const MAX_HEADERS: usize = 16 * 1024;
/// Most header lines in one request.
const MAX_HEADER_LINES: usize = 100;
/// Most empty lines taken before a request line: RFC 9112 §2.2 asks a
/// server to ignore at least one; a client sending more is refused.
const MAX_EMPTY_LINES: usize = 8;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method (a token).
    pub method: String,
    /// The request target, as sent.
    pub target: String,
    /// HTTP/1.`minor`: 0 or 1.
    pub minor: u8,
    /// The header fields, values trimmed (bytes that are not UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    /// The body's length (0 without `Content-Length`).
    pub content_length: u64,
}

impl Request {
    /// The value of header `name` (the first, if several).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many `name` headers there are.
    fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }

    /// Whether the connection stays open after this request (RFC 9112
    /// §9.3): the options of every `Connection` field line, together (RFC
    /// 9110 §5.3), any `close` among them winning.
    pub fn keep_alive(&self) -> bool {
        let mut keep_alive = false;
        let fields = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("connection"));
        for token in fields.flat_map(|(_, v)| v.split(',')).map(str::trim) {
            if token.eq_ignore_ascii_case("close") {
                return false;
            }
            keep_alive |= token.eq_ignore_ascii_case("keep-alive");
        }
        self.minor == 1 || keep_alive
    }
}

/// Why a request head is refused: the status to answer with before closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadError {
    /// 400, 414, 431 or 505.
    pub status: u16,
    /// For the log.
    pub why: &'static str,
}

/// Refuses with `status`.
fn refused(status: u16, why: &'static str) -> HeadError {
    HeadError { status, why }
}

/// Parses one whole request head (up to and with its empty line).
pub fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    let line = head.iter().position(|b| *b == b'\n').unwrap_or(head.len());
    if line > MAX_REQUEST_LINE + 1 {
        return Err(refused(414, "request line too long"));
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADER_LINES];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(refused(400, "incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(refused(431, "too many header fields")),
        Err(httparse::Error::Version) if other_major(&head[..line]) => {
            return Err(refused(505, "an HTTP version other than 1.x"));
        }
        Err(httparse::Error::Version) => return Err(refused(400, "malformed HTTP version")),
        Err(_) => return Err(refused(400, "malformed request head")),
    }
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(refused(400, "malformed request line"));
    };
    let size: usize = parsed.headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    if size > MAX_HEADERS {
        return Err(refused(431, "request header fields too large"));
    }
    let headers = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).trim().to_owned()))
        .collect();
    let mut req = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        minor,
        headers,
        content_length: 0,
    };
    // RFC 9112 §6.1-6.3: a body's framing must be unambiguous, or the bytes
    // after a head could be read as another request (smuggling). We read no
    // bodies, so a chunked one cannot be skipped either.
    if req.header("transfer-encoding").is_some() {
        return Err(refused(400, "Transfer-Encoding on a request"));
    }
    // The raw value, as httparse left it (SP and HTAB around it dropped):
    // ASCII digits only, never what a Unicode-aware trim or parse would pass.
    let mut lengths = parsed
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"));
    match (lengths.next(), lengths.next()) {
        (None, _) => {}
        (Some(h), None) if !h.value.is_empty() && h.value.iter().all(u8::is_ascii_digit) => {
            let digits = std::str::from_utf8(h.value).map_err(|_| refused(400, "invalid Content-Length"))?;
            req.content_length = digits.parse().map_err(|_| refused(400, "Content-Length too large"))?;
        }
        (Some(_), None) => return Err(refused(400, "invalid Content-Length")),
        _ => return Err(refused(400, "repeated Content-Length")),
    }
    // RFC 9112 §3.2: more than one Host is a 400.
    if req.count("host") > 1 {
        return Err(refused(400, "repeated Host"));
    }
    Ok(req)
}

/// Whether the request line `line` ends in a well-formed HTTP version
/// whose major number is not 1 (`HTTP/2.0`, `HTTP/3`): 505, not 400.
fn other_major(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(version) = line
        .rsplit(|b| *b == b' ')
        .next()
        .and_then(|v| v.strip_prefix(b"HTTP/"))
    else {
        return false;
    };
    let (major, minor) = match version.iter().position(|b| *b == b'.') {
        Some(dot) => (&version[..dot], &version[dot + 1..]),
        None => (version, &b"0"[..]),
    };
    let digits = |d: &[u8]| !d.is_empty() && d.len() <= 3 && d.iter().all(u8::is_ascii_digit);
    digits(major) && digits(minor) && major != b"1"
}

/// The path a request target names, as sent and percent-decoded: origin
/// form, or absolute form (`http://host/path`, RFC 9112 §3.2.2: the scheme
/// is case-insensitive; no path means `/`); query and fragment are not part
/// of it. `None` if it is not a path.
pub fn request_path(target: &str) -> Option<(&str, String)> {
    let target = match target.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("http://") => {
            let rest = &target[7..];
            rest.find('/').map_or("/", |i| &rest[i..])
        }
        _ => target,
    };
    let raw = target.split(['?', '#']).next().unwrap_or("");
    let path = percent_decode(raw).filter(|p| p.starts_with('/'))?;
    Some((raw, path))
}

/// Most bytes of a request head, with the ends of its lines.
pub const MAX_HEAD: usize = MAX_REQUEST_LINE + MAX_HEADERS + 4 * (MAX_HEADER_LINES + 2);

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

/// Request heads as a connection's bytes bring them: bytes in, whole heads
/// out (parsed once all of a head is there), in order; what follows a head
/// (a pipelined request) stays for the next. It holds at most a head's
/// worth before refusing.
#[derive(Debug, Default)]
pub struct HeadReader {
    /// Bytes not yet taken as a request. No capacity when empty.
    input: Vec<u8>,
    /// How far `input` was searched for the end of a head.
    scanned: usize,
    /// Empty lines dropped before the head now coming.
    empty: usize,
}

impl HeadReader {
    /// Bytes as they came from the client.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// How many bytes it holds.
    pub fn held(&self) -> usize {
        self.input.len()
    }

    /// The next request head: `None` until all of it is there. After an
    /// error, the connection is to be closed (what follows is not taken).
    pub fn take(&mut self) -> Option<Result<Request, HeadError>> {
        // RFC 9112 §2.2: empty lines before a request line are ignored, a few.
        let mut skip = 0;
        loop {
            let len = match &self.input[skip..] {
                [b'\n', ..] => 1,
                [b'\r', b'\n', ..] => 2,
                _ => break,
            };
            if self.empty == MAX_EMPTY_LINES {
                return Some(Err(refused(400, "too many empty lines before the request line")));
            }
            self.empty += 1;
            skip += len;
        }
        if skip > 0 {
            self.input.drain(..skip);
            self.scanned = 0;
        }
        let Some(end) = head_end(&self.input, self.scanned) else {
            self.scanned = self.input.len();
            let line_too_long = !self.input.contains(&b'\n') && self.input.len() > MAX_REQUEST_LINE;
            return if line_too_long {
                Some(Err(refused(414, "request line too long")))
            } else if self.input.len() > MAX_HEAD {
                Some(Err(refused(431, "request header fields too large")))
            } else {
                None
            };
        };
        let req = parse_head(&self.input[..end]);
        self.input.drain(..end);
        self.scanned = 0;
        self.empty = 0;
        if self.input.is_empty() {
            self.input = Vec::new(); // an idle connection holds no memory
        }
        Some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_parse_with_limits() {
        let req = parse_head(b"GET /a%20b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!((req.method.as_str(), req.target.as_str()), ("GET", "/a%20b"));
        assert!(!req.keep_alive());
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            big.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(100)).as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&big).unwrap_err().status, 431);
        let mut wide = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..20 {
            wide.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(1000)).as_bytes());
        }
        wide.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&wide).unwrap_err().status, 431);
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/1.x\r\n\r\n",
            b"GET / HTTPS/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(bad).unwrap_err().status,
                400,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn body_framing_that_could_smuggle_a_request_is_refused() {
        let head = |h: &str| parse_head(format!("GET / HTTP/1.1\r\nHost: x\r\n{h}\r\n").as_bytes());
        for bad in [
            "Content-Length: 0\r\nContent-Length: 20\r\n",
            "Content-Length: 5\r\nContent-length: 5\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: +1\r\n",
            "Content-Length: 99999999999999999999999\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: identity\r\nContent-Length: 3\r\n",
            "Host: y\r\n",
        ] {
            assert_eq!(head(bad).map_err(|e| e.status), Err(400), "{bad:?}");
        }
        assert_eq!(head("Content-Length: 20\r\n").unwrap().content_length, 20);
        assert_eq!(head("").unwrap().content_length, 0);
    }

    #[test]
    fn non_ascii_targets_never_panic() {
        // The 'é' straddles byte 7, where the absolute form's scheme ends.
        let req = parse_head("GET /aaaaé HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes()).unwrap();
        assert_eq!(request_path(&req.target), Some(("/aaaaé", "/aaaaé".to_owned())));
        assert_eq!(request_path("HTTP://h/x?q"), Some(("/x", "/x".to_owned())));
        assert_eq!(request_path("http://h"), Some(("/", "/".to_owned())));
        assert_eq!(request_path("http:/é"), None);
        assert_eq!(request_path("*"), None);
        assert_eq!(parse_head(b"GET /\xff HTTP/1.1\r\n\r\n").unwrap_err().status, 400);
        let req = parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nX: \xc3\xa9\xff\r\n\r\n").unwrap();
        assert_eq!(req.header("x"), Some("é\u{fffd}"));
    }

    #[test]
    fn a_head_split_anywhere_is_taken_once_whole_and_what_follows_stays() {
        let bytes = b"\r\n\nGET /small.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /";
        let end = bytes.len() - "GET /".len();
        let mut r = HeadReader::default();
        for (i, b) in bytes.iter().enumerate() {
            r.push(&[*b]);
            let got = r.take();
            if i + 1 == end {
                let req = got.expect("a whole head").expect("a valid head");
                assert_eq!((req.method.as_str(), req.target.as_str()), ("GET", "/small.txt"));
            } else {
                assert!(got.is_none(), "a head after {} bytes", i + 1);
            }
        }
        assert_eq!(r.input, b"GET /", "the pipelined start stays");
    }

    #[test]
    fn endless_heads_and_empty_lines_are_refused_at_their_bound() {
        let mut r = HeadReader::default();
        for _ in 0..MAX_EMPTY_LINES {
            r.push(b"\r\n");
            assert!(r.take().is_none());
            assert!(r.input.is_empty(), "empty lines are dropped");
        }
        r.push(b"\n");
        assert_eq!(r.take().unwrap().unwrap_err().status, 400, "one more is too many");
        // The count starts again with each request.
        let mut r = HeadReader::default();
        for _ in 0..3 {
            r.push(&b"\r\n".repeat(MAX_EMPTY_LINES));
            r.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(r.take().unwrap().is_ok());
        }
        r.push(b"GET / HTTP/1.1\r\n");
        let mut got = None;
        for i in 0..100_000 {
            r.push(format!("X-{i}: v\r\n").as_bytes());
            got = r.take();
            if got.is_some() {
                break;
            }
        }
        assert_eq!(got.unwrap().unwrap_err().status, 431);
        assert!(r.input.len() <= MAX_HEAD + 16, "{} bytes held", r.input.len());
        let mut r = HeadReader::default();
        r.push(&vec![b'a'; MAX_REQUEST_LINE + 1]);
        assert_eq!(r.take().unwrap().unwrap_err().status, 414);
    }

    #[test]
    fn a_long_target_is_414_and_another_major_version_505() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(parse_head(long.as_bytes()).unwrap_err().status, 414);
        let mut r = HeadReader::default();
        r.push(long.as_bytes());
        assert_eq!(r.take().unwrap().unwrap_err().status, 414);
        for other in ["HTTP/2.0", "HTTP/2", "HTTP/3.0", "HTTP/0.9"] {
            let head = format!("GET / {other}\r\nHost: x\r\n\r\n");
            assert_eq!(parse_head(head.as_bytes()).unwrap_err().status, 505, "{other}");
        }
        assert_eq!(parse_head(b"PRI * HTTP/2.0\r\n\r\n").unwrap_err().status, 505);
    }

    #[test]
    fn content_length_is_ascii_digits_only() {
        let head = |v: &str| parse_head(format!("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: {v}\r\n\r\n").as_bytes());
        assert_eq!(head("12").unwrap().content_length, 12);
        assert_eq!(
            head("\t12 ").unwrap().content_length,
            12,
            "SP and HTAB around it are fine"
        );
        for bad in ["\u{a0}12", "12\u{a0}", "\u{2003}1", "\u{661}", "1 2", "0x1", ""] {
            assert_eq!(head(bad).map_err(|e| e.status), Err(400), "{bad:?}");
        }
    }

    #[test]
    fn every_connection_field_line_counts() {
        let head = |h: &str, v: &str| parse_head(format!("GET / HTTP/{v}\r\nHost: x\r\n{h}\r\n").as_bytes()).unwrap();
        assert!(!head("Connection: keep-alive\r\nConnection: close\r\n", "1.1").keep_alive());
        assert!(!head("Connection: Keep-Alive\r\nCONNECTION: foo, CLOSE\r\n", "1.1").keep_alive());
        assert!(!head("Connection: te,close\r\n", "1.1").keep_alive());
        assert!(head("Connection: foo\r\nconnection: KEEP-ALIVE\r\n", "1.0").keep_alive());
        assert!(!head("Connection: foo\r\n", "1.0").keep_alive());
        assert!(head("", "1.1").keep_alive());
    }
}
