//! Live: the global limits hold under thousands of clients that never read.
//! 3,000 host connections to the source service with a 4 KiB receive
//! buffer, and 3,000 to echo that each try to write 1 MB, none of them
//! reading, against a daemon with its default limits (only the per-client
//! limit raised, so that the global ones are what is tested): its RSS stays
//! under 256 MiB, its thread count does not move, ping and a fresh `nc`
//! echo from a second host-side address are answered, and once the clients
//! go, every connection and every byte of buffer memory is released (the
//! stack's own accounting, read through its counters) and the RSS comes
//! back down.

use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream as HostTcp};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};
use tunstack_tests::netns::{Sandbox, live_tests_possible};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
const CLI: &str = env!("CARGO_BIN_EXE_tunstack");

/// Clients of each service.
const CLIENTS: usize = 3000;
/// What each echo client tries to write.
const ECHO_BYTES: usize = 1 << 20;
/// The daemon's RSS must stay under this.
const RSS_MAX_KIB: u64 = 256 * 1024;
/// How long the clients hold on, writing, while the daemon is watched.
const HOLD: Duration = Duration::from_secs(15);
/// How far above its first RSS the daemon's may stay once they are gone
/// (the heap keeps some: the daemon trims it when memory pressure ends).
const RSS_AFTER_KIB: u64 = 32 * 1024;
/// How long the daemon may take to release everything once they are gone.
const RELEASE_WITHIN: Duration = Duration::from_secs(60);

/// A value from `/proc/PID/status` (`VmRSS` in KiB, `Threads`).
fn status(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon alive");
    let line = status
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Lets this process hold every client socket at once.
fn raise_file_limit(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit(2) with a valid, initialised struct.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// A blocking connect to `to`, with `SO_RCVBUF` set first (before the
/// handshake, so the window it announces is small from the start), then
/// made non-blocking.
fn connect(to: SocketAddrV4, rcvbuf: Option<i32>) -> HostTcp {
    // SAFETY: socket(2) returns a new descriptor or -1; a valid one is owned by the TcpStream below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is ours and open; from here on the TcpStream closes it.
    let s = unsafe { HostTcp::from_raw_fd(fd) };
    if let Some(size) = rcvbuf {
        // SAFETY: setsockopt(2) on our socket with a pointer to an int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const i32).cast(),
                size_of::<i32>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: connect(2) with a valid sockaddr_in and its size.
    let rc = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "connect to {to}: {}", std::io::Error::last_os_error());
    s.set_nonblocking(true).unwrap();
    s
}

/// Writes what the socket takes of the rest of `ECHO_BYTES`; returns how much.
fn write_some(s: &mut HostTcp, done: usize, chunk: &[u8]) -> usize {
    let want = chunk.len().min(ECHO_BYTES - done);
    match s.write(&chunk[..want]) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
        Err(e) => panic!("echo client write: {e}"),
    }
}

/// What the daemon looked like while loaded.
#[derive(Debug, Default)]
struct Peak {
    rss_kib: u64,
    threads: u64,
}

impl Peak {
    fn sample(&mut self, pid: u32) {
        self.rss_kib = self.rss_kib.max(status(pid, "VmRSS"));
        self.threads = self.threads.max(status(pid, "Threads"));
    }
}

#[test]
fn thousands_of_clients_that_never_read_stay_within_the_global_limits() {
    let test = "thousands_of_clients_that_never_read_stay_within_the_global_limits";
    if !live_tests_possible(test) {
        return;
    }
    raise_file_limit(4 * CLIENTS as u64 + 1024);
    let sb = Sandbox::create();
    // Every client is 10.200.0.1: the per-client limit must not be what refuses them.
    let d = sb.start_daemon(DAEMON, &["--max-per-client", "10000"]);
    let pid = d.pid();
    // A second host-side address, for a client that is not one of the thousands.
    sb.run(
        "ip",
        &["addr", "add", "10.200.0.3/24", "dev", "tun0"],
        Duration::from_secs(10),
    )
    .assert_success("ip addr add 10.200.0.3/24");
    let (rss_before, threads_before) = (status(pid, "VmRSS"), status(pid, "Threads"));
    let stack = Ipv4Addr::new(10, 200, 0, 2);
    let mut peak = Peak::default();

    let (mut sources, mut echoes) = sb.enter(|| {
        let mut sources = Vec::with_capacity(CLIENTS);
        let mut echoes = Vec::with_capacity(CLIENTS);
        for i in 0..CLIENTS {
            let mut s = connect(SocketAddrV4::new(stack, 1919), Some(4096));
            // The sized source's request: an empty line, an endless stream.
            s.write_all(b"\n").expect("source request");
            sources.push(s);
            echoes.push((connect(SocketAddrV4::new(stack, 7), None), 0usize));
            if i % 100 == 0 {
                peak.sample(pid);
            }
        }
        (sources, echoes)
    });
    let loaded = d.stats();
    eprintln!(
        "{} connections open: RSS {rss_before} -> {} KiB, {} bytes in TCP buffers",
        loaded["tcp_connections"], peak.rss_kib, loaded["tcp_mem_allocated"]
    );
    assert!(loaded["tcp_connections"] >= 2 * CLIENTS as u64, "{loaded:?}");

    // The echo clients write, never reading, for a while; the daemon is watched.
    let chunk = vec![b'x'; 64 * 1024];
    let started = Instant::now();
    let mut written = 0usize;
    while started.elapsed() < HOLD {
        for (s, done) in echoes.iter_mut().filter(|(_, done)| *done < ECHO_BYTES) {
            let n = write_some(s, *done, &chunk);
            *done += n;
            written += n;
        }
        peak.sample(pid);
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = d.stats();
    eprintln!(
        "held {HOLD:?}: echo clients wrote {written} bytes; RSS peak {} KiB, threads {threads_before} -> {}; \
         {} bytes in TCP buffers, pressure {} (entered {} times), {} receive drops",
        peak.rss_kib,
        peak.threads,
        held["tcp_mem_allocated"],
        held["tcp_mem_pressure"],
        held["tcp_memory_pressures"],
        held["tcp_rcvq_drops"],
    );
    assert!(
        peak.rss_kib < RSS_MAX_KIB,
        "RSS reached {} KiB (limit {RSS_MAX_KIB})",
        peak.rss_kib
    );
    assert!(
        peak.threads <= threads_before + 1,
        "threads grew from {threads_before} to {}",
        peak.threads
    );
    // The budget is what held them: it came under pressure.
    assert!(held["tcp_memory_pressures"] >= 1, "{held:?}");
    assert_eq!(held["tcp_connections"], loaded["tcp_connections"], "none was dropped");

    // Under that load the daemon still answers a ping, and a fresh client
    // from another address gets its echo.
    sb.run(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", "10.200.0.2"],
        Duration::from_secs(20),
    )
    .assert_success("ping under load");
    let nc = sb.run(
        "sh",
        &["-c", "echo fresh-echo | timeout 10 nc -N -s 10.200.0.3 10.200.0.2 7"],
        Duration::from_secs(20),
    );
    nc.assert_success("nc echo from 10.200.0.3 under load");
    assert_eq!(nc.stdout, "fresh-echo\n", "the echo came back");
    peak.sample(pid);

    // The clients go: they close (with unread data: a reset each), a
    // hundred at a time, so that the host's TUN queue does not drop resets.
    for batch in 0.. {
        let from = batch * 100;
        if from >= CLIENTS {
            break;
        }
        sources.drain(..100.min(sources.len()));
        echoes.drain(..100.min(echoes.len()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let released_by = Instant::now() + RELEASE_WITHIN;
    let settled = |after: &std::collections::HashMap<String, u64>| {
        after["tcp_connections"] == 0
            && after["tcp_mem_allocated"] == 0
            && status(pid, "VmRSS") < rss_before + RSS_AFTER_KIB
    };
    let mut after = d.stats();
    while !settled(&after) && Instant::now() < released_by {
        std::thread::sleep(Duration::from_millis(500));
        after = d.stats();
    }
    let rss_after = status(pid, "VmRSS");
    eprintln!(
        "released: {} connections, {} bytes in TCP buffers; RSS {rss_after} KiB",
        after["tcp_connections"], after["tcp_mem_allocated"]
    );
    assert_eq!(after["tcp_connections"], 0, "connections left after {RELEASE_WITHIN:?}");
    assert_eq!(after["tcp_mem_allocated"], 0, "buffer memory left");
    assert_eq!(after["tcp_mem_pressure"], 0, "pressure is over");
    assert!(
        rss_after < rss_before + RSS_AFTER_KIB,
        "RSS {rss_after} KiB, from {rss_before} before the clients (peak {})",
        peak.rss_kib
    );
    assert!(status(pid, "Threads") <= threads_before + 1);
    // `tunstack netstat -s` reads the same.
    let shown = sb.run(CLI, &["netstat", "-s"], Duration::from_secs(30));
    shown.assert_success("tunstack netstat -s");
    for line in ["0 TCP connections", "0 bytes in TCP buffers", "TCP memory pressure: 0"] {
        assert!(
            shown.stdout.lines().any(|l| l.trim_start().starts_with(line)),
            "no {line:?} in {}",
            shown.stdout
        );
    }
}
