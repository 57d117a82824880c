//! Live: a control-socket client that dies takes its stack sockets with it
//! at once, whatever their state, as the kernel closes a dead process's
//! sockets: SYN_SENT dropped (and no more SYNs), ESTABLISHED closed with a
//! FIN (or reset when data was left unread), listeners and UDP sockets gone.
//! Clients are killed with SIGKILL, so they get no chance to clean up.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener as HostListener, TcpStream as HostTcp};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
const CLI: &str = env!("CARGO_BIN_EXE_tunstack");

/// How soon a dead client's sockets must be gone.
const PROMPTLY: Duration = Duration::from_secs(1);
/// How often the tests look.
const POLL: Duration = Duration::from_millis(50);

/// A sandbox with a daemon whose control socket is private to this test.
struct Stage {
    sb: Sandbox,
    _daemon: Daemon,
    control: String,
}

impl Stage {
    /// Sets the stage for `test`; `None` when live tests cannot run here (skipped).
    fn new(test: &str) -> Option<Stage> {
        if !live_tests_possible(test) {
            return None;
        }
        static STAGES: AtomicUsize = AtomicUsize::new(0);
        let sb = Sandbox::create();
        let control = std::env::temp_dir()
            .join(format!(
                "tunstack-{}-departure-{}.sock",
                std::process::id(),
                STAGES.fetch_add(1, Ordering::SeqCst)
            ))
            .to_string_lossy()
            .into_owned();
        let daemon = sb.start_daemon(DAEMON, &["--control", &control]);
        Some(Stage {
            sb,
            _daemon: daemon,
            control,
        })
    }

    /// `tunstack nc args` in the sandbox, its stdin held open and its stdout piped.
    fn nc(&self, args: &[&str]) -> Child {
        self.sb
            .command(CLI)
            .args(["--control", &self.control, "nc"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tunstack nc")
    }

    /// `tunstack netstat -a -p`.
    fn netstat(&self) -> String {
        let out = self.sb.run(
            CLI,
            &["--control", &self.control, "netstat", "-a", "-p"],
            Duration::from_secs(10),
        );
        out.assert_success("tunstack netstat -a -p");
        out.stdout
    }

    /// The netstat rows `pid` holds open: owned by `<pid>/tunstack`, in a
    /// state an open socket is in. The states that only follow a close
    /// (none of these clients half-closes) are left out: whether such a row
    /// keeps its owner's name is not this test's business.
    fn open_rows(&self, pid: u32) -> (Vec<String>, String) {
        let owner = format!("{pid}/tunstack");
        let all = self.netstat();
        let rows = all
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == owner))
            .filter(|l| {
                !["FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK", "TIME_WAIT"]
                    .iter()
                    .any(|s| l.split_whitespace().any(|w| w == *s))
            })
            .map(str::to_owned)
            .collect();
        (rows, all)
    }

    /// Waits (up to 10 s) until `pid` holds an open row containing all of `needles`.
    fn wait_for_row(&self, pid: u32, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (rows, all) = self.open_rows(pid);
            if let Some(r) = rows.into_iter().find(|r| needles.iter().all(|n| r.contains(n))) {
                return r;
            }
            assert!(Instant::now() < deadline, "no row of {pid} with {needles:?}:\n{all}");
            thread::sleep(POLL);
        }
    }

    /// Kills `client` with SIGKILL and asserts its rows are gone within [`PROMPTLY`].
    fn kill_and_expect_gone(&self, client: &mut Child) {
        let pid = client.id();
        let killed = Instant::now();
        client.kill().expect("SIGKILL");
        client.wait().expect("reap");
        loop {
            let (rows, all) = self.open_rows(pid);
            if rows.is_empty() {
                eprintln!("rows of {pid} gone {:?} after SIGKILL", killed.elapsed());
                return;
            }
            assert!(
                killed.elapsed() < PROMPTLY,
                "{:?} after killing {pid}, it still holds:\n{}\nnetstat:\n{all}",
                killed.elapsed(),
                rows.join("\n")
            );
            thread::sleep(POLL);
        }
    }

    /// A listening socket on the host side (the kernel's), in the sandbox.
    fn host_listener(&self, port: u16) -> HostListener {
        self.sb
            .enter(|| HostListener::bind(("10.200.0.1", port)))
            .expect("host listener")
    }

    /// A raw control-socket client that sent `request` and read its `OK` line,
    /// byte by byte, so whatever follows stays in its socket buffer.
    fn raw_client(&self, request: &str) -> (UnixStream, String) {
        let mut c = UnixStream::connect(&self.control).expect("control socket");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        writeln!(c, "{request}").unwrap();
        (c.try_clone().unwrap(), read_line(&mut c))
    }
}

fn read_line(c: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while b[0] != b'\n' {
        c.read_exact(&mut b).expect("a line from the daemon");
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

/// Waits up to 10 s for bytes to be readable on `c`, without reading them.
fn wait_readable(c: &UnixStream) {
    let mut pfd = libc::pollfd {
        fd: c.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid, live pollfd; poll(2) only writes its revents.
    let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
    assert_eq!(n, 1, "nothing arrived for the client");
}

/// How the host's end of a connection saw it end, and how long that took.
fn host_sees_end(conn: &mut HostTcp) -> (std::io::Result<usize>, Duration) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let r = conn.read(&mut buf);
    (r, start.elapsed())
}

/// Asserts the host's end of `conn` is reset within [`PROMPTLY`]; `why` says why it should be.
fn expect_reset(conn: &mut HostTcp, why: &str) {
    let (end, took) = host_sees_end(conn);
    assert_eq!(end.expect_err(why).kind(), ErrorKind::ConnectionReset);
    assert!(took < PROMPTLY, "the RST took {took:?}");
}

/// Packets counted by nft counter `syns` (see `count_syns`).
fn syns(sb: &Sandbox) -> u64 {
    let out = sb.run(
        "nft",
        &["list", "counter", "ip", "departure", "syns"],
        Duration::from_secs(10),
    );
    out.assert_success("nft list counter");
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == "packets")
        .expect("packets in nft output");
    words[i + 1].parse().expect("a packet count")
}

/// Counts, on the host side, the SYNs the stack sends to `dst` port 80.
fn count_syns(sb: &Sandbox, dst: &str) {
    let rules = format!(
        "table ip departure {{
            counter syns {{ }}
            chain pre {{
                type filter hook prerouting priority 0; policy accept;
                ip daddr {dst} tcp dport 80 tcp flags & (syn | ack) == syn counter name \"syns\"
            }}
        }}"
    );
    let mut nft = sb.command("nft");
    nft.args(["-f", "-"]).stdin(Stdio::piped());
    let mut child = nft.spawn().expect("nft");
    child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "nft rules");
}

#[test]
fn a_killed_client_connecting_in_syn_sent_is_dropped_and_sends_no_more_syns() {
    let Some(st) = Stage::new("a_killed_client_connecting_in_syn_sent_is_dropped_and_sends_no_more_syns") else {
        return;
    };
    // On the stack's own subnet but nobody's: the host kernel drops what it
    // gets for it (no forwarding in the sandbox), so the SYNs go unanswered.
    let nobody = "10.200.0.99";
    count_syns(&st.sb, nobody);
    let mut client = st.nc(&[nobody, "80"]);
    st.wait_for_row(client.id(), &["SYN_SENT", "10.200.0.99:80"]);
    // A retransmission shows the attempt going on (and the counter working).
    let deadline = Instant::now() + Duration::from_secs(10);
    while syns(&st.sb) < 2 {
        assert!(Instant::now() < deadline, "the stack never retransmitted its SYN");
        thread::sleep(POLL);
    }
    st.kill_and_expect_gone(&mut client);
    let after = syns(&st.sb);
    // SYNs are resent 1 s, 3 s, 7 s, ... after the first: a live attempt
    // sends one more within 3 s of the second.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(syns(&st.sb), after, "SYNs left after the client was gone");
}

#[test]
fn a_killed_clients_established_connection_closes_with_a_fin() {
    let Some(st) = Stage::new("a_killed_clients_established_connection_closes_with_a_fin") else {
        return;
    };
    let host = st.host_listener(6100);
    let mut client = st.nc(&["10.200.0.1", "6100"]);
    st.wait_for_row(client.id(), &["ESTABLISHED", "10.200.0.1:6100"]);
    let (mut conn, _) = host.accept().unwrap();
    // The client reads all it is sent: nothing is left unread.
    conn.write_all(b"hello\n").unwrap();
    let mut got = [0u8; 6];
    client.stdout.as_mut().unwrap().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello\n");

    st.kill_and_expect_gone(&mut client);
    let (end, took) = host_sees_end(&mut conn);
    assert_eq!(end.expect("an orderly close, not a reset"), 0, "the host reads EOF");
    assert!(took < PROMPTLY, "the FIN took {took:?}");
}

#[test]
fn a_client_leaving_data_unread_has_its_connection_reset() {
    let Some(st) = Stage::new("a_client_leaving_data_unread_has_its_connection_reset") else {
        return;
    };
    let host = st.host_listener(6101);
    let (client, ok) = st.raw_client("CONNECT 10.200.0.1 6101");
    assert!(ok.starts_with("OK "), "{ok}");
    let (mut conn, _) = host.accept().unwrap();
    conn.write_all(b"never read\n").unwrap();
    wait_readable(&client); // the bytes reached the client, which leaves without reading them
    drop(client);
    expect_reset(&mut conn, "a reset, as close(2) with unread data");
}

#[test]
fn a_killed_clients_listener_goes() {
    let Some(st) = Stage::new("a_killed_clients_listener_goes") else {
        return;
    };
    let mut client = st.nc(&["-l", "6200"]);
    st.wait_for_row(client.id(), &["LISTEN", "0.0.0.0:6200"]);
    st.kill_and_expect_gone(&mut client);
    let refused = st.sb.enter(|| HostTcp::connect("10.200.0.2:6200"));
    assert_eq!(
        refused.expect_err("nobody listens").kind(),
        ErrorKind::ConnectionRefused
    );
}

#[test]
fn connections_a_departed_listener_never_handed_out_are_reset() {
    let Some(st) = Stage::new("connections_a_departed_listener_never_handed_out_are_reset") else {
        return;
    };
    let (mut client, ok) = st.raw_client("LISTEN 6201");
    assert!(ok.starts_with("OK "), "{ok}");
    let mut conn = st.sb.enter(|| HostTcp::connect("10.200.0.2:6201")).unwrap();
    let accepted = read_line(&mut client);
    assert!(accepted.starts_with("ACCEPT "), "{accepted}");
    drop(client); // without attaching it
    expect_reset(&mut conn, "a reset, as for a listener's accept queue");
    let ns = st.netstat();
    assert!(!ns.contains("10.200.0.2:6201"), "{ns}");
}

#[test]
fn a_killed_clients_udp_socket_goes() {
    let Some(st) = Stage::new("a_killed_clients_udp_socket_goes") else {
        return;
    };
    let mut client = st.nc(&["-u", "10.200.0.1", "6300"]);
    // `nc -u HOST PORT` connects its socket, as Linux's does.
    st.wait_for_row(client.id(), &["udp", "ESTABLISHED"]);
    st.kill_and_expect_gone(&mut client);
}

#[test]
fn a_killed_client_stuck_on_a_full_send_buffer_has_its_connection_reset() {
    let Some(st) = Stage::new("a_killed_client_stuck_on_a_full_send_buffer_has_its_connection_reset") else {
        return;
    };
    let host = st.host_listener(6102);
    // An endless upload to a host that does not read: every buffer on the way fills.
    let mut client = st
        .sb
        .command(CLI)
        .args(["--control", &st.control, "nc", "10.200.0.1", "6102"])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .stdout(Stdio::null())
        .spawn()
        .expect("start tunstack nc");
    let pid = client.id();
    let (mut conn, _) = host.accept().unwrap();
    // Stuck: the stack's Send-Q stops moving.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = (String::new(), 0);
    loop {
        let row = st.wait_for_row(pid, &["ESTABLISHED", "10.200.0.1:6102"]);
        let sendq = row.split_whitespace().nth(2).unwrap_or_default().to_owned();
        last = if sendq == last.0 {
            (sendq, last.1 + 1)
        } else {
            (sendq, 0)
        };
        if last.1 == 5 && last.0 != "0" {
            break;
        }
        assert!(Instant::now() < deadline, "the upload never stalled: {row}");
        thread::sleep(POLL);
    }
    st.kill_and_expect_gone(&mut client);
    // Part of what the client sent never got into the stack: the host must
    // not take the stream for complete.
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    let end = conn.read_to_end(&mut sink);
    assert_eq!(
        end.expect_err("a reset, not a FIN").kind(),
        ErrorKind::ConnectionReset,
        "after {} bytes",
        sink.len()
    );
}
