//! Targets `http_head`, `downloader_name`, `file_path`: what the daemon's
//! file services read from a client before touching the disk.
//!
//! - `http_head`: the HTTP request reader (`HeadReader`, httparse under it)
//!   fed in pieces (the first byte sets their size) must give the same
//!   requests and refusals as when fed at once, hold no more than a head's
//!   worth while waiting, and let nothing through that frames a body
//!   ambiguously; each request's target then goes through the path steps,
//!   and its `Range` header, if any, through the server's range parser,
//!   whose range must lie within the file.
//! - `downloader_name`: the downloader's request line, whole (the first
//!   byte says whether the client's FIN came) and every prefix of it, which
//!   must agree: nothing until the newline, then the same name.
//! - `file_path`: percent-decoding, then the lexical check of a name
//!   beneath the root (pure: no file is opened). What passes has no NUL, no
//!   `..`, no empty component and no leading `/`, and checks as itself.

use tunstack_tools::files::downloader::name_of;
use tunstack_tools::files::http::parse_range;
use tunstack_tools::files::request::{HeadError, HeadReader, MAX_HEAD, Request, request_path};
use tunstack_tools::files::safety::{percent_decode, relative};

/// What a reader gives for `pieces`, in order, up to the first refusal.
fn heads<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Vec<Result<Request, HeadError>> {
    let mut r = HeadReader::default();
    let mut out = Vec::new();
    for piece in pieces {
        r.push(piece);
        loop {
            match r.take() {
                None => {
                    assert!(r.held() <= MAX_HEAD, "{} bytes held waiting for a head", r.held());
                    break;
                }
                Some(Ok(req)) => out.push(Ok(req)),
                Some(Err(e)) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

/// Runs the target on one input.
pub fn http_head(data: &[u8]) {
    let Some((&size, bytes)) = data.split_first() else {
        return;
    };
    let piece = usize::from(size % 64) + 1;
    // The server reads no more than fills a head: pieces beyond it are cut.
    let bytes = &bytes[..bytes.len().min(4 * MAX_HEAD)];
    let whole = heads(std::iter::once(bytes));
    let split = heads(bytes.chunks(piece));
    assert_eq!(whole, split, "the pieces' size changed what was read");
    for req in whole.iter().flatten() {
        trace!("{req:?}");
        assert!(req.header("transfer-encoding").is_none(), "{req:?}");
        let lengths = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        assert!(lengths.count() <= 1, "{req:?}");
        assert!(req.minor <= 1);
        let _ = req.keep_alive();
        if let Some((raw, path)) = request_path(&req.target) {
            assert!(req.target.contains(raw));
            assert!(path.starts_with('/'));
            check_relative(&path);
        }
        if let Some(range) = req.header("range") {
            check_range(range);
        }
    }
}

/// A satisfiable range lies within the file, for files of any length.
fn check_range(header: &str) {
    for len in [0, 1, 2, 100, u64::MAX / 2, u64::MAX] {
        if let Ok(Some((start, end))) = parse_range(Some(header), len) {
            trace!("{header:?} of {len}: {start}-{end}");
            assert!(start <= end && end < len, "{header:?} of {len}: {start}-{end}");
        }
    }
}

/// Runs the target on one input.
pub fn downloader_name(data: &[u8]) {
    let Some((&control, line)) = data.split_first() else {
        return;
    };
    let ended = control & 1 != 0;
    let whole = name_of(line, ended);
    trace!("{whole:?}");
    if let Ok(Some(name)) = &whole {
        assert!(!name.contains('\n'));
        assert!(line.starts_with(name.as_bytes()));
        check_relative(name);
    }
    // Read as it came, byte by byte: nothing until the newline, then the same.
    let newline = line.iter().position(|b| *b == b'\n');
    for end in 0..line.len().min(4096) {
        let got = name_of(&line[..end], false);
        match newline {
            Some(n) if n < end => assert_eq!(got, name_of(line, false), "prefix of {end}"),
            _ => assert!(matches!(got, Ok(None) | Err(_)), "a name before the newline: {got:?}"),
        }
    }
}

/// Runs the target on one input.
pub fn file_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(decoded) = percent_decode(text) {
        trace!("{decoded:?}");
        assert!(!decoded.contains('\0'));
        if !text.contains('%') {
            assert_eq!(decoded, text, "nothing to decode");
        }
        check_relative(&decoded);
    }
    check_relative(text);
}

/// What `relative` lets through stays beneath the root, and is its own check.
fn check_relative(name: &str) {
    let Ok(rel) = relative(name) else { return };
    let rel = rel.to_str().expect("a &str's parts are UTF-8");
    if rel == "." {
        return;
    }
    assert!(!rel.starts_with('/'), "{rel:?}");
    for part in rel.split('/') {
        assert!(!part.is_empty() && part != "." && part != "..", "{rel:?}");
    }
    assert_eq!(relative(rel).expect("passes again").to_str(), Ok(rel));
}
