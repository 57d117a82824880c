//! Live tests of the file services' hardening (issue 15) and of chargen:
//! a directory swapped for a link to /etc while requested, a FIFO under
//! the root, HTTP heads that used to panic or smuggle, and RFC 864's
//! source sending on connect.
//!
//! The roots are world-readable (0755 directories, 0644 files), so the
//! tests hold for a daemon that dropped its privileges too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream as HostTcp;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};
use tunstack_tests::process;

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
/// How the downloader's refusal line begins.
const REFUSAL: &str = "tunstack-downloader: error: ";
/// What `sub/passwd` under the root holds: not /etc/passwd.
const DECOY: &[u8] = b"this is the served directory's own sub/passwd\n";
/// How long one answer may take.
const PATIENCE: Duration = Duration::from_secs(10);

/// A world-readable served directory, removed on drop.
struct Site {
    base: PathBuf,
}

impl Site {
    fn new(tag: &str) -> Site {
        let base = std::env::temp_dir().join(format!("tunstack-hardening-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let site = Site { base };
        site.dir("");
        site.dir("www");
        site
    }

    fn root(&self) -> PathBuf {
        self.base.join("www")
    }

    /// A 0755 directory `www/name` (`name` empty: the base).
    fn dir(&self, name: &str) {
        let path = if name.is_empty() {
            self.base.clone()
        } else {
            self.base.join(name)
        };
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A 0644 file `www/name`.
    fn file(&self, name: &str, data: &[u8]) {
        let path = self.root().join(name);
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// tunstackd serving it, with room for many clients from one address.
    fn start(&self, sb: &Sandbox) -> Daemon {
        let root = self.root().to_string_lossy().into_owned();
        sb.start_daemon(DAEMON, &["--files", &root, "--max-per-client", "64"])
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A connection to the stack's `port`, reads and writes bounded by PATIENCE
/// (call inside the namespace).
fn connect(port: u16) -> HostTcp {
    let s = HostTcp::connect(("10.200.0.2", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// An HTTP response: status and body.
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// Reads one response (with its Content-Length body) from `r`.
fn read_response(r: &mut impl BufRead) -> std::io::Result<Response> {
    let mut status = None;
    let mut len = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status.is_none() {
            status = line.split(' ').nth(1).and_then(|s| s.parse().ok());
        } else if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Response {
        status: status.expect("a status line"),
        body,
    })
}

/// Whether `body` holds anything of the host's /etc/passwd (its first line, or any `root:`).
fn leaks_etc(body: &[u8]) -> bool {
    static FIRST: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let first = FIRST.get_or_init(|| {
        let passwd = std::fs::read("/etc/passwd").unwrap();
        passwd.split(|b| *b == b'\n').next().unwrap().to_vec()
    });
    body.windows(first.len().max(1)).any(|w| w == first.as_slice()) || body.windows(5).any(|w| w == b"root:")
}

/// Swaps `www/sub` between a real directory (holding the decoy passwd)
/// and a link out (to /etc, or climbing there), until `stop`; how many swaps.
fn swap_until(root: &Path, stop: &AtomicBool) -> usize {
    let (sub, real) = (root.join("sub"), root.join("sub.real"));
    let mut swaps = 0;
    while !stop.load(Ordering::Relaxed) {
        std::fs::rename(&sub, &real).unwrap();
        let out = if swaps % 2 == 0 {
            "/etc"
        } else {
            "../../../../../../../../etc"
        };
        std::os::unix::fs::symlink(out, &sub).unwrap();
        // Long enough for requests to meet the link (and be refused, 403)
        // on every run, not only on lucky ones.
        std::thread::sleep(Duration::from_micros(100));
        std::fs::remove_file(&sub).unwrap();
        std::fs::rename(&real, &sub).unwrap();
        // Most of the time it is the real directory, so that most requests
        // are served (a refused downloader request costs ~200 ms): the
        // link comes and goes thousands of times meanwhile.
        std::thread::sleep(Duration::from_micros(500));
        swaps += 1;
    }
    swaps
}

/// What the clients of one protocol saw: files served, refusals as
/// forbidden (403, or the downloader's "forbidden: ..."), and as missing
/// (404, "no such file": the name was between two states); of the
/// forbidden, how many the downloader said were "not a regular file".
#[derive(Debug, Default)]
struct Seen {
    served: usize,
    forbidden: usize,
    missing: usize,
    not_regular: usize,
}

impl Seen {
    fn total(&self) -> usize {
        self.served + self.forbidden + self.missing
    }
}

/// What is asked and what may come back: the file's name, its only
/// allowed content, and how long an answer may take.
#[derive(Clone, Copy)]
struct Ask {
    name: &'static str,
    want: &'static [u8],
    within: Duration,
}

/// Runs `client` on `clients` threads at once and adds up what they saw.
fn in_parallel(clients: usize, client: impl Fn() -> Seen + Sync) -> Seen {
    let seen: Vec<Seen> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients).map(|_| s.spawn(&client)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    sum(seen)
}

/// `count` HTTP GETs of `ask` over `clients` keep-alive connections.
fn http_requests(ask: Ask, count: usize, clients: usize) -> Seen {
    let each = count / clients;
    in_parallel(clients, move || {
        let mut seen = Seen::default();
        let stream = connect(80);
        stream.set_read_timeout(Some(ask.within)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let request = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", ask.name);
        for _ in 0..each {
            (&stream).write_all(request.as_bytes()).unwrap();
            let r = read_response(&mut reader).unwrap_or_else(|e| panic!("no answer within {:?}: {e}", ask.within));
            assert!(
                !leaks_etc(&r.body),
                "/etc leaked over HTTP: {:?}",
                String::from_utf8_lossy(&r.body)
            );
            match r.status {
                200 => {
                    assert_eq!(r.body, ask.want);
                    seen.served += 1;
                }
                403 => seen.forbidden += 1,
                404 => seen.missing += 1,
                other => panic!("status {other}"),
            }
        }
        seen
    })
}

/// `count` downloader requests for `ask`, `clients` at a time.
fn downloader_requests(ask: Ask, count: usize, clients: usize) -> Seen {
    let each = count / clients;
    in_parallel(clients, move || {
        let mut seen = Seen::default();
        for _ in 0..each {
            let started = Instant::now();
            let mut stream = connect(2000);
            stream.set_read_timeout(Some(ask.within)).unwrap();
            stream.write_all(format!("{}\n", ask.name).as_bytes()).unwrap();
            let mut got = Vec::new();
            let end = stream.read_to_end(&mut got);
            // A refusal's reset comes ~200 ms after its line: a
            // hung open shows as the read timing out.
            assert!(started.elapsed() < ask.within, "{:?}: {end:?}", started.elapsed());
            assert!(
                !leaks_etc(&got),
                "/etc leaked by the downloader: {:?}",
                String::from_utf8_lossy(&got)
            );
            if got.starts_with(REFUSAL.as_bytes()) {
                assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
                let line = String::from_utf8_lossy(&got[REFUSAL.len()..]);
                if line.starts_with("forbidden: ") {
                    seen.forbidden += 1;
                    seen.not_regular += usize::from(line.contains("not a regular file"));
                } else if line.starts_with("no such file: ") {
                    seen.missing += 1;
                } else {
                    panic!("refused: {line:?}");
                }
            } else {
                end.unwrap();
                assert_eq!(got, ask.want);
                seen.served += 1;
            }
        }
        seen
    })
}

fn sum(seen: Vec<Seen>) -> Seen {
    seen.into_iter().fold(Seen::default(), |a, b| Seen {
        served: a.served + b.served,
        forbidden: a.forbidden + b.forbidden,
        missing: a.missing + b.missing,
        not_regular: a.not_regular + b.not_regular,
    })
}

/// The daemon logged no panic.
fn assert_no_panic(d: &Daemon) {
    let log = d.log().snapshot();
    let panics: Vec<&String> = log.iter().filter(|l| l.contains("panicked")).collect();
    assert!(panics.is_empty(), "{panics:?}");
}

#[test]
fn a_directory_swapped_for_a_link_to_etc_while_requested_never_serves_etc() {
    if !live_tests_possible("a_directory_swapped_for_a_link_to_etc_while_requested_never_serves_etc") {
        return;
    }
    const REQUESTS: usize = 10_000;
    let site = Site::new("swap");
    site.dir("www/sub");
    site.file("sub/passwd", DECOY);
    let sb = Sandbox::create();
    let d = site.start(&sb);
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let ask = Ask {
        name: "sub/passwd",
        want: DECOY,
        within: PATIENCE,
    };
    let (swaps, http, downloader) = std::thread::scope(|s| {
        let swapper = s.spawn(|| swap_until(&site.root(), &stop));
        let http = s.spawn(|| sb.enter(|| http_requests(ask, REQUESTS, 8)));
        let downloader = s.spawn(|| sb.enter(|| downloader_requests(ask, REQUESTS, 40)));
        let http = http.join();
        let downloader = downloader.join();
        stop.store(true, Ordering::Relaxed);
        (swapper.join().unwrap(), http.unwrap(), downloader.unwrap())
    });
    eprintln!(
        "{swaps} swaps in {:?}; HTTP {http:?}; downloader {downloader:?}",
        started.elapsed()
    );
    assert_eq!(http.total(), REQUESTS);
    assert_eq!(downloader.total(), REQUESTS);
    // Both states were met: the race was run, not missed. A 404 (the name
    // between its two states) does not count: only meeting the link does.
    assert!(http.served > 0 && http.forbidden > 0, "{http:?}");
    assert!(downloader.served > 0 && downloader.forbidden > 0, "{downloader:?}");
    assert_no_panic(&d);
}

#[test]
fn a_fifo_under_the_root_is_refused_at_once_by_http_and_the_downloader_even_swapped_in() {
    if !live_tests_possible("a_fifo_under_the_root_is_refused_at_once_by_http_and_the_downloader_even_swapped_in") {
        return;
    }
    let site = Site::new("fifo");
    site.file("ok.txt", b"fine\n");
    let fifo = site.root().join("pipe");
    let mut mk = std::process::Command::new("mkfifo");
    mk.args(["-m", "0644"]).arg(&fifo);
    process::run(mk, PATIENCE).assert_success("mkfifo");
    let sb = Sandbox::create();
    let d = site.start(&sb);
    let at_once = Duration::from_secs(2);
    sb.enter(|| {
        for _ in 0..3 {
            let started = Instant::now();
            let s = connect(80);
            s.set_read_timeout(Some(at_once)).unwrap();
            (&s).write_all(b"GET /pipe HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut reader = BufReader::new(&s);
            let r = read_response(&mut reader).expect("an answer within 2 s");
            assert_eq!(r.status, 403);
            // The service is not stuck: the next request on it is served.
            (&s).write_all(b"GET /ok.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let r = read_response(&mut reader).expect("an answer within 2 s");
            assert_eq!((r.status, r.body.as_slice()), (200, &b"fine\n"[..]));
            assert!(started.elapsed() < at_once, "{:?}", started.elapsed());

            let started = Instant::now();
            let mut s = connect(2000);
            s.set_read_timeout(Some(at_once)).unwrap();
            s.write_all(b"pipe\n").unwrap();
            let mut got = Vec::new();
            let end = s.read_to_end(&mut got);
            let line = String::from_utf8_lossy(&got);
            assert!(
                line.starts_with(REFUSAL) && line.contains("not a regular file"),
                "{line:?}"
            );
            assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
            assert!(started.elapsed() < at_once, "{:?}", started.elapsed());
        }
    });
    // A name that flips between a regular file and a FIFO while requested:
    // what is opened is what is checked, so no request hangs.
    site.file("plain", b"plain\n");
    let mut mk = std::process::Command::new("mkfifo");
    mk.args(["-m", "0644"]).arg(site.root().join("fifo"));
    process::run(mk, PATIENCE).assert_success("mkfifo");
    let stop = AtomicBool::new(false);
    let ask = Ask {
        name: "flip",
        want: b"plain\n",
        within: at_once,
    };
    let (flips, http, downloader) = std::thread::scope(|s| {
        let flipper = s.spawn(|| flip_until(&site.root(), &stop));
        let http = s.spawn(|| sb.enter(|| http_requests(ask, 4000, 8)));
        let downloader = s.spawn(|| sb.enter(|| downloader_requests(ask, 1000, 40)));
        let (http, downloader) = (http.join(), downloader.join());
        stop.store(true, Ordering::Relaxed);
        (flipper.join().unwrap(), http.unwrap(), downloader.unwrap())
    });
    eprintln!("{flips} flips; HTTP {http:?}; downloader {downloader:?}");
    // Both states were met: the FIFO was there and refused as one.
    assert!(http.served > 0 && http.forbidden > 0, "{http:?}");
    assert!(downloader.served > 0 && downloader.not_regular > 0, "{downloader:?}");
    assert_no_panic(&d);
}

/// Moves a regular file and a FIFO in turn to `www/flip`, until `stop`; how many times.
fn flip_until(root: &Path, stop: &AtomicBool) -> usize {
    let flip = root.join("flip");
    let mut flips = 0;
    while !stop.load(Ordering::Relaxed) {
        let from = root.join(if flips % 2 == 0 { "plain" } else { "fifo" });
        std::fs::rename(&from, &flip).unwrap();
        std::thread::sleep(Duration::from_micros(200));
        std::fs::rename(&flip, &from).unwrap();
        flips += 1;
    }
    flips
}

#[test]
fn hostile_http_heads_get_a_correct_answer_or_400_and_the_next_client_is_served() {
    if !live_tests_possible("hostile_http_heads_get_a_correct_answer_or_400_and_the_next_client_is_served") {
        return;
    }
    let site = Site::new("heads");
    site.file("ok.txt", b"fine\n");
    // The 'é' takes bytes 6 and 7 of the target: the old code cut it at 7.
    site.file("aaaaaéx", b"accented\n");
    site.file("secret.txt", b"smuggled\n");
    let sb = Sandbox::create();
    let d = site.start(&sb);
    let smuggled = "GET /secret.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a character across byte 7",
            "GET /aaaaaéx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            200,
        ),
        (
            "two Content-Length",
            format!(
                "GET /ok.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            )
            .into(),
            400,
        ),
        (
            "Transfer-Encoding: chunked",
            format!(
                "GET /ok.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
                smuggled.len()
            )
            .into(),
            400,
        ),
        (
            "10,000 leading CRLFs",
            ["\r\n".repeat(10_000), "GET /ok.txt HTTP/1.1\r\nHost: x\r\n\r\n".into()]
                .concat()
                .into(),
            400,
        ),
    ];
    sb.enter(|| {
        for (what, request, want) in &cases {
            let s = connect(80);
            // The server may answer and close before all of it is read: a write error is fine.
            let _ = (&s).write_all(request);
            let mut reader = BufReader::new(&s);
            let r = read_response(&mut reader).unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
            assert_eq!(r.status, *want, "{what}: {}", String::from_utf8_lossy(&r.body));
            if *want == 200 {
                assert_eq!(r.body, b"accented\n", "{what}");
            }
            // Then the connection ends: no second answer (the smuggled request).
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            assert!(
                !String::from_utf8_lossy(&rest).contains("smuggled"),
                "{what}: {}",
                String::from_utf8_lossy(&rest)
            );
            assert!(!rest.starts_with(b"HTTP/"), "{what}: a second answer");
        }
        // The daemon serves the next client.
        let s = connect(80);
        (&s).write_all(b"GET /ok.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = read_response(&mut BufReader::new(&s)).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"fine\n"[..]));
    });
    assert_no_panic(&d);
}

#[test]
fn chargen_sends_on_connect_without_a_byte_from_the_client() {
    if !live_tests_possible("chargen_sends_on_connect_without_a_byte_from_the_client") {
        return;
    }
    let sb = Sandbox::create();
    let d = sb.start_daemon(DAEMON, &[]);
    // nc -d never reads its stdin, so it sends nothing.
    let mut c = sb.command("sh");
    c.args(["-c", "nc -d 10.200.0.2 19 | head -c 1000 | wc -c"]);
    let out = process::run(c, Duration::from_secs(30));
    out.assert_success("nc -d from chargen");
    assert_eq!(out.stdout.trim(), "1000", "{}", out.stderr);
    // The lines are RFC 864's: 72 printable characters and CRLF, rotating.
    let lines = sb.enter(|| {
        let s = connect(19);
        let mut got = vec![0u8; 74 * 3];
        (&s).read_exact(&mut got).unwrap();
        got
    });
    let printable: Vec<u8> = (b' '..=b'~').collect();
    for (i, line) in lines.chunks(74).enumerate() {
        let want: Vec<u8> = (0..72).map(|j| printable[(i + j) % printable.len()]).collect();
        assert_eq!(&line[..72], want.as_slice(), "line {i}");
        assert_eq!(&line[72..], b"\r\n");
    }
    assert_no_panic(&d);
}
