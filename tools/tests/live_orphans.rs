//! Live: connections the stack keeps after their application closed them
//! are bounded. An HTTP client that stops reading and goes on ACKing a
//! zero window loses the closed download within the orphan lifetime
//! (`--orphan-retries`), and TIME-WAIT holds no more than
//! `--max-tw-buckets` entries.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream as HostTcp};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
const CLI: &str = env!("CARGO_BIN_EXE_tunstack");

/// The file the client downloads: more than a tiny receive buffer takes,
/// less than the stack's first send buffer (64 KiB), so the server writes
/// it all, closes, and leaves the rest to the orphan.
const FILE_LEN: usize = 40 * 1024;

/// Orphan retries in the test: the zero-window probes back off from about
/// 200 ms, so the orphan lives until about 2^(N+1) RTOs after the window
/// closed: a few seconds.
const ORPHAN_RETRIES: &str = "4";

/// How long the HTTP service waits for a stalled client before it closes
/// the connection and leaves it to the stack, an orphan.
const IDLE_TIMEOUT: &str = "1";

/// What the orphan may live at most with `ORPHAN_RETRIES`, with slack for a busy machine.
const ORPHAN_LIFETIME: Duration = Duration::from_secs(30);

/// A directory with one file for the HTTP service; removed on drop.
struct Site(PathBuf);

impl Site {
    fn new() -> Site {
        let dir = std::env::temp_dir().join(format!("tunstack-orphans-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..FILE_LEN).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("big.bin"), data).unwrap();
        Site(dir)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP connection to `addr` whose receive buffer is set to `rcvbuf`
/// before the handshake (the window scale and first window follow it), as
/// a client that means to read slowly would open it. std cannot set
/// options before connecting, hence libc.
fn connect_with_rcvbuf(addr: SocketAddrV4, rcvbuf: i32) -> HostTcp {
    // SAFETY: socket(2) with constant arguments; the fd is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh socket nobody else owns; the stream closes it.
    let stream = unsafe { HostTcp::from_raw_fd(fd) };
    // SAFETY: setsockopt(2) on our fd with a pointer to an i32 and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const rcvbuf).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: connect(2) on our fd with a sockaddr_in and its size.
    let rc = unsafe {
        libc::connect(
            fd,
            (&raw const sin).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
    stream
}

/// Waits up to `timeout` for `pred` over the daemon's counters; returns them when it holds.
fn wait_for_counters(
    d: &Daemon,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&dyn Fn(&str) -> u64) -> bool,
) -> std::collections::HashMap<String, u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let counters = d.stats();
        let stat = |k: &str| counters.get(k).copied().unwrap_or(0);
        if pred(&stat) {
            return counters;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}: {counters:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_closed_download_against_a_zero_window_dies_within_the_orphan_lifetime() {
    let test = "a_closed_download_against_a_zero_window_dies_within_the_orphan_lifetime";
    if !live_tests_possible(test) {
        return;
    }
    let site = Site::new();
    let sb = Sandbox::create();
    let d = sb.start_daemon(
        DAEMON,
        &[
            "--files",
            site.0.to_str().unwrap(),
            "--orphan-retries",
            ORPHAN_RETRIES,
            "--idle-timeout",
            IDLE_TIMEOUT,
        ],
    );
    let addr = SocketAddrV4::new([10, 200, 0, 2].into(), 80);
    let mut client = sb.enter(|| connect_with_rcvbuf(addr, 4096));
    client.write_all(b"GET /big.bin HTTP/1.0\r\n\r\n").unwrap();
    // The server shut its side with most of the file queued, then, the
    // client stalled, gave up on it after its idle timeout: an orphan in
    // FIN-WAIT-1 (owner `-` in netstat -p), against the client's closed
    // window. The client keeps its socket and never reads; its kernel
    // answers every probe.
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let shown = sb.run(CLI, &["netstat", "-t", "-p"], Duration::from_secs(30));
        shown.assert_success("tunstack netstat");
        let row = shown
            .stdout
            .lines()
            .find(|l| l.contains("FIN_WAIT1"))
            .map(str::to_owned);
        if let Some(row) = row.filter(|r| r.trim_end().ends_with(" -")) {
            break row;
        }
        assert!(Instant::now() < deadline, "no orphan in FIN_WAIT1:\n{}", shown.stdout);
        std::thread::sleep(Duration::from_millis(100));
    };
    let orphaned_at = Instant::now();
    let sendq: usize = row.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(sendq > FILE_LEN / 2, "the file waits in the send queue: {row}");
    let counters = d.stats();
    assert_eq!(counters["tcp_orphan_timeouts"], 0);

    let counters = wait_for_counters(&d, ORPHAN_LIFETIME, "the orphan gone", |stat| {
        stat("sockets_tcp_fin_wait1") == 0
    });
    let lived = orphaned_at.elapsed();
    let (probes, rtos) = (counters["tcp_window_probes"], counters["tcp_rto_retransmits"]);
    eprintln!("the orphan lived {lived:?} after {probes} window probes and {rtos} timeouts");
    // It was the orphan limit that ended it, the probes answered all along.
    assert_eq!(counters["tcp_orphan_timeouts"], 1, "{counters:?}");
    assert_eq!(
        counters["sockets_tcp"], counters["sockets_tcp_listen"],
        "only the listeners are left: {counters:?}"
    );
    let log = d.log().snapshot();
    assert!(
        log.iter()
            .any(|l| l.contains("zero-window probes unanswered") || l.contains("gave up after")),
        "the log says why"
    );
    // The client heard of it: a reset, and never the whole file.
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let end = client.read_to_end(&mut got);
    assert!(got.len() < FILE_LEN, "{} bytes arrived", got.len());
    assert_eq!(
        end.expect_err("the stack reset the connection").kind(),
        std::io::ErrorKind::ConnectionReset
    );
}

#[test]
fn time_wait_entries_are_capped_by_max_tw_buckets() {
    let test = "time_wait_entries_are_capped_by_max_tw_buckets";
    if !live_tests_possible(test) {
        return;
    }
    const CAP: u64 = 5;
    const CONNECTIONS: u64 = 20;
    let sb = Sandbox::create();
    // TIME-WAIT lasts 60 s: every entry outlives the test.
    let d = sb.start_daemon(DAEMON, &["--max-tw-buckets", &CAP.to_string()]);
    sb.enter(|| {
        for _ in 0..CONNECTIONS {
            // The sized source sends 10 bytes and closes first: its side
            // goes to TIME-WAIT once our FIN is acknowledged.
            let mut s = HostTcp::connect("10.200.0.2:1919").unwrap();
            s.write_all(b"10\n").unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), 10);
        }
    });
    let counters = wait_for_counters(&d, Duration::from_secs(10), "every close done", |stat| {
        stat("sockets_tcp_time_wait") + stat("tcp_time_wait_overflows") == CONNECTIONS
    });
    assert_eq!(counters["sockets_tcp_time_wait"], CAP, "{counters:?}");
    assert_eq!(counters["tcp_time_wait_overflows"], CONNECTIONS - CAP);
    // netstat lists them, and `netstat -s` counts the rest.
    let shown = sb.run(CLI, &["netstat", "-t", "-a"], Duration::from_secs(30));
    shown.assert_success("tunstack netstat");
    let rows = shown.stdout.lines().filter(|l| l.contains("TIME_WAIT")).count();
    assert_eq!(rows as u64, CAP, "{}", shown.stdout);
    let stats = sb.run(CLI, &["netstat", "-s", "-t"], Duration::from_secs(30));
    stats.assert_success("tunstack netstat -s");
    let line = stats
        .stdout
        .lines()
        .find(|l| l.ends_with("connections freed at once: TIME-WAIT table full"))
        .unwrap_or_else(|| panic!("no overflow line in {}", stats.stdout));
    let overflowed = (CONNECTIONS - CAP).to_string();
    assert_eq!(line.split_whitespace().next(), Some(overflowed.as_str()));
}
