//! Live tests of the control socket as several users share it: a socket
//! belongs to the uid that made it (another uid, even one the socket's
//! group lets in, cannot attach to, read, write or close it), ids cannot
//! be guessed, and each client's bounds (frame size, a client that never
//! reads, clients and pending connections per uid, the LISTEN backlog)
//! keep one client from hurting the others.
//!
//! Other users are played by the test itself: a thread that changes its own
//! credentials with raw syscalls (glibc's wrappers would change the whole
//! process's) connects, and the daemon sees that uid through SO_PEERCRED;
//! the CLI runs under `setpriv`. None of them needs a passwd or group entry.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener as HostListener, TcpStream as HostTcp};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};
use tunstack_tools::control::frame;

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
const CLI: &str = env!("CARGO_BIN_EXE_tunstack");

/// The group let onto the control socket, and users in it (and one not).
const GROUP: u32 = 4_000_100;
const ALICE: u32 = 4_000_101;
const BOB: u32 = 4_000_102;
const CAROL: u32 = 4_000_103;
const MALLORY: u32 = 4_000_104;

/// A sandbox with a daemon whose control socket (private to this test) is
/// open to [`GROUP`].
fn start(tag: &str) -> (Sandbox, Daemon, String) {
    let sb = Sandbox::create();
    let control = std::env::temp_dir()
        .join(format!("tunstack-{}-{tag}.sock", std::process::id()))
        .to_string_lossy()
        .into_owned();
    let d = sb.start_daemon(DAEMON, &["--control", &control, "--control-group", &GROUP.to_string()]);
    (sb, d, control)
}

/// `n` connections to the control socket made as `uid` with only group
/// `gid`, from a thread that drops to those credentials.
fn connect_many_as(control: &str, uid: u32, gid: u32, n: usize) -> Vec<io::Result<UnixStream>> {
    let control = control.to_owned();
    std::thread::spawn(move || {
        // SAFETY: raw setgroups/setresgid/setresuid with valid arguments;
        // unlike glibc's wrappers they change only this thread's credentials.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
                0
            );
            assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
        }
        (0..n).map(|_| UnixStream::connect(&control)).collect()
    })
    .join()
    .expect("connecting thread")
}

/// A control connection, and the requests made on it.
struct Conn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    fn new(s: UnixStream) -> Conn {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// A connection as `uid` in [`GROUP`] (root: uid 0, the test's own).
    fn as_user(control: &str, uid: u32) -> Conn {
        let s = if uid == 0 {
            UnixStream::connect(control)
        } else {
            connect_many_as(control, uid, GROUP, 1).pop().unwrap()
        };
        Conn::new(s.unwrap_or_else(|e| panic!("uid {uid} cannot connect: {e}")))
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("a reply line in time");
        l.trim_end_matches('\n').to_owned()
    }

    fn request(&mut self, req: &str) -> String {
        // A refused connection may be closed already; its reply is still there to read.
        let _ = writeln!(self.w, "{req}");
        self.line()
    }

    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut buf = Vec::new();
        frame::read(&mut self.r, &mut buf)
            .expect("a frame in time")
            .map(|k| (k, buf))
    }

    /// `SOCKETS`' rows.
    fn sockets(&mut self) -> Vec<String> {
        let n: usize = self.request("SOCKETS").strip_prefix("OK ").unwrap().parse().unwrap();
        (0..n).map(|_| self.line()).collect()
    }
}

/// The id in an `ACCEPT <id> <peer>` line.
fn accepted_id(line: &str) -> u64 {
    let id = line.strip_prefix("ACCEPT ").and_then(|r| r.split(' ').next());
    id.and_then(|i| i.parse().ok()).unwrap_or_else(|| panic!("{line:?}"))
}

/// `tunstack ARGS` run as `uid` with group `gid` only, in the sandbox.
fn cli_as(sb: &Sandbox, control: &str, uid: u32, gid: u32, args: &[&str]) -> tunstack_tests::process::Finished {
    let mut c = sb.command("setpriv");
    c.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
        "--",
        CLI,
        "--control",
        control,
    ])
    .args(args);
    tunstack_tests::process::run(c, Duration::from_secs(30))
}

#[test]
fn another_uid_cannot_attach_to_read_write_or_close_a_users_connection() {
    if !live_tests_possible("another_uid_cannot_attach_to_read_write_or_close_a_users_connection") {
        return;
    }
    let (sb, _d, control) = start("owner");
    let mut alice = Conn::as_user(&control, ALICE);
    assert_eq!(alice.request("LISTEN 5000"), "OK 0.0.0.0:5000");
    let (mut first, mut second) = sb.enter(|| {
        let c = |_| HostTcp::connect("10.200.0.2:5000").unwrap();
        (c(1), c(2))
    });
    first.write_all(b"for alice only\n").unwrap();
    let (id1, id2) = (accepted_id(&alice.line()), accepted_id(&alice.line()));
    // Unguessable: not a counter a loop could walk (they were 1, 2, ...).
    assert!(id1.abs_diff(id2) > 1 << 20, "ids {id1} and {id2}");

    // Bob is in the socket's group and knows the id: still not his.
    let mut bob = Conn::as_user(&control, BOB);
    assert_eq!(
        bob.request(&format!("ATTACH {id1}")),
        format!("ERR attach {id1}: Operation not permitted")
    );
    assert_eq!(
        bob.request(&format!("ATTACH {}", id1 ^ 1)),
        format!("ERR attach {}: no such pending connection", id1 ^ 1)
    );
    // Nor may he take over her port or a privileged one.
    assert_eq!(bob.request("LISTEN 5000"), "ERR listen on 5000: Address already in use");
    assert_eq!(bob.request("LISTEN 80"), "ERR listen on 80: Permission denied");
    assert_eq!(bob.request("UDP 0.0.0.0 53"), "ERR bind 0.0.0.0:53: Permission denied");
    // Listings show every socket, as ss does on Linux; whose, only to root
    // and the owner.
    let owner_of = |c: &mut Conn, port: u16| {
        let rows = c.sockets();
        let at = format!("local=0.0.0.0:{port} ");
        let row = rows.iter().find(|r| r.contains(&at)).expect("listed");
        row.split(' ')
            .find_map(|f| f.strip_prefix("owner="))
            .unwrap()
            .to_owned()
    };
    let owner_of_5000 = |c: &mut Conn| owner_of(c, 5000);
    assert_eq!(owner_of_5000(&mut bob), "-");
    let alices = owner_of_5000(&mut Conn::as_user(&control, 0));
    assert!(alices.starts_with(&format!("{}/", std::process::id())), "{alices}");
    assert_eq!(owner_of_5000(&mut Conn::as_user(&control, ALICE)), alices);
    // Both users' clients are this process, with one pid and program:
    // whose a socket is goes by uid, not by that label.
    let mut bobs = Conn::as_user(&control, BOB);
    assert_eq!(bobs.request("LISTEN 5001"), "OK 0.0.0.0:5001");
    assert_eq!(owner_of(&mut Conn::as_user(&control, BOB), 5001), alices, "his own");
    assert_eq!(owner_of(&mut Conn::as_user(&control, ALICE), 5001), "-", "not hers");
    assert_eq!(owner_of(&mut Conn::as_user(&control, BOB), 5000), "-", "not his");
    drop(bobs);

    // Alice's connection is intact: her data both ways, untouched.
    let mut mine = Conn::as_user(&control, ALICE);
    assert!(
        mine.request(&format!("ATTACH {id1}"))
            .starts_with("OK 10.200.0.2:5000 ")
    );
    assert_eq!(mine.frame(), Some((frame::DATA, b"for alice only\n".to_vec())));
    frame::write(&mut mine.w, frame::DATA, b"from alice\n").unwrap();
    first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = [0u8; 11];
    first.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"from alice\n");
    // An id attached is gone for everyone, its owner too.
    let mut again = Conn::as_user(&control, ALICE);
    assert!(
        again
            .request(&format!("ATTACH {id1}"))
            .ends_with("no such pending connection")
    );

    // Root may attach anyone's, as root may trace any process.
    let mut root = Conn::as_user(&control, 0);
    assert!(root.request(&format!("ATTACH {id2}")).starts_with("OK "));
    second.write_all(b"x").unwrap();
    assert_eq!(root.frame(), Some((frame::DATA, b"x".to_vec())));

    // The same through the CLI under setpriv: Bob sees, may not bind low;
    // Mallory, outside the group, cannot even reach the socket.
    let ns = cli_as(&sb, &control, BOB, GROUP, &["netstat", "-a", "-p"]);
    ns.assert_success("netstat as bob");
    let row = ns.stdout.lines().find(|l| l.contains("0.0.0.0:5000"));
    assert!(row.is_some_and(|r| r.ends_with(" -")), "{}", ns.stdout);
    let nc = cli_as(&sb, &control, BOB, GROUP, &["nc", "-l", "80"]);
    assert!(
        !nc.status.success() && nc.stderr.contains("Permission denied"),
        "{}",
        nc.stderr
    );
    let out = cli_as(&sb, &control, MALLORY, MALLORY, &["ifconfig"]);
    assert!(
        !out.status.success() && out.stderr.contains("Permission denied"),
        "{}",
        out.stderr
    );
}

/// Writes to `conn` until a write makes no progress for 3 s; the bytes
/// written.
fn fill(mut conn: HostTcp) -> u64 {
    conn.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let chunk = vec![b'y'; 64 * 1024];
    let mut sent = 0u64;
    while let Ok(n) = conn.write(&chunk) {
        sent += n as u64;
    }
    sent
}

#[test]
fn a_huge_frame_and_a_client_that_never_reads_leave_other_clients_unaffected() {
    if !live_tests_possible("a_huge_frame_and_a_client_that_never_reads_leave_other_clients_unaffected") {
        return;
    }
    let (sb, d, control) = start("bounds");
    let host = sb.enter(|| HostListener::bind("10.200.0.1:6000").unwrap());
    let connect = |c: &mut Conn| {
        let ok = c.request("CONNECT 10.200.0.1 6000");
        assert!(ok.starts_with("OK "), "{ok}");
        let (conn, _) = host.accept().unwrap();
        conn
    };

    // Carol's client never reads while the host floods her connection: the
    // flood stalls (what waits for her is bounded), and only hers.
    let mut carol = Conn::as_user(&control, CAROL);
    let flood = connect(&mut carol);
    let (done, stalled) = mpsc::channel();
    std::thread::spawn(move || done.send(fill(flood)));
    let sent = stalled
        .recv_timeout(Duration::from_secs(120))
        .expect("the flood to a client that never reads stalls");
    assert!(sent < 64 << 20, "{sent} bytes queued for a client that reads nothing");

    // Bob sends a 4 GiB length prefix: told why, disconnected, his
    // connection reset; nothing of that size is allocated.
    let mut bob = Conn::as_user(&control, BOB);
    let mut victim = connect(&mut bob);
    bob.w.write_all(&[frame::DATA, 0xff, 0xff, 0xff, 0xff]).unwrap();
    assert_eq!(
        bob.frame(),
        Some((frame::ERROR, b"frame of 4294967295 bytes is too long".to_vec()))
    );
    assert_eq!(bob.frame(), None, "disconnected");
    victim.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let e = victim.read(&mut [0u8; 16]).expect_err("reset");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    // The same on a UDP bridge.
    let mut udp = Conn::as_user(&control, BOB);
    assert!(udp.request("UDP 0.0.0.0 0").starts_with("OK "));
    udp.w.write_all(&[frame::DATAGRAM, 0xff, 0xff, 0xff, 0xff]).unwrap();
    assert_eq!(
        udp.frame(),
        Some((frame::ERROR, b"frame of 4294967295 bytes is too long".to_vec()))
    );
    assert_eq!(udp.frame(), None, "disconnected");

    // Meanwhile Alice's connection carries a megabyte each way at once.
    let started = Instant::now();
    let mut alice = Conn::as_user(&control, ALICE);
    let mut echo = connect(&mut alice);
    let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let expected = data.clone();
    let echoer = std::thread::spawn(move || {
        echo.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        echo.read_exact(&mut buf).unwrap();
        echo.write_all(&buf).unwrap();
    });
    for chunk in data.chunks(64 * 1024) {
        frame::write(&mut alice.w, frame::DATA, chunk).unwrap();
    }
    let mut back = Vec::new();
    while back.len() < expected.len() {
        match alice.frame() {
            Some((frame::DATA, b)) => back.extend_from_slice(&b),
            other => panic!("{other:?}"),
        }
    }
    echoer.join().unwrap();
    assert!(back == expected, "echoed bytes differ");
    let netstat = tunstack_tests::process::run(
        {
            let mut c = sb.command(CLI);
            c.args(["--control", &control, "netstat", "-t"]);
            c
        },
        Duration::from_secs(30),
    );
    netstat.assert_success("netstat while a client stalls");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    drop(carol);

    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    // About 7 MiB measured: twice that catches a buffer sized by the
    // 4 GiB prefix, or one per stalled write, long before memory runs out.
    assert!(peak_kib < 16 * 1024, "the daemon's peak RSS was {peak_kib} KiB");
}

#[test]
fn backlogs_are_capped_and_a_listener_holds_at_most_its_backlog_unattached() {
    if !live_tests_possible("backlogs_are_capped_and_a_listener_holds_at_most_its_backlog_unattached") {
        return;
    }
    let (sb, _d, control) = start("backlog");
    // Capped silently, as listen(2) caps at somaxconn.
    let mut big = Conn::as_user(&control, ALICE);
    assert_eq!(big.request("LISTEN 5001 1000000"), "OK 0.0.0.0:5001");
    let mut look = Conn::as_user(&control, BOB);
    let row = look.sockets().into_iter().find(|r| r.contains("local=0.0.0.0:5001"));
    assert!(row.as_deref().is_some_and(|r| r.ends_with(" backlog=4096")), "{row:?}");

    // A client that never attaches has at most its backlog announced; the
    // rest wait in the listener's queue (itself backlog + 1, as Linux's).
    let mut l = Conn::as_user(&control, ALICE);
    assert_eq!(l.request("LISTEN 5002 2"), "OK 0.0.0.0:5002");
    let conns: Vec<HostTcp> = sb.enter(|| {
        (0..3)
            .map(|_| HostTcp::connect_timeout(&"10.200.0.2:5002".parse().unwrap(), Duration::from_secs(10)).unwrap())
            .collect()
    });
    let ids = [accepted_id(&l.line()), accepted_id(&l.line())];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = look
            .sockets()
            .into_iter()
            .find(|r| r.contains("local=0.0.0.0:5002"))
            .unwrap();
        if row.contains(" recvq=1 ") {
            break; // the third waits in the stack's queue, unannounced
        }
        assert!(Instant::now() < deadline, "{row}");
    }
    l.w.set_nonblocking(true).unwrap();
    let mut more = [0u8; 1];
    let unannounced = l.r.read(&mut more);
    assert_eq!(unannounced.map_err(|e| e.kind()).err(), Some(io::ErrorKind::WouldBlock));
    l.w.set_nonblocking(false).unwrap();
    // Attaching one makes room for the next.
    let mut a = Conn::as_user(&control, ALICE);
    assert!(a.request(&format!("ATTACH {}", ids[0])).starts_with("OK "));
    let third = accepted_id(&l.line());
    assert!(!ids.contains(&third));
    drop(conns);
}

/// The daemon's thread count.
fn threads(d: &Daemon) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let n = status.lines().find_map(|l| l.strip_prefix("Threads:"));
    n.and_then(|n| n.trim().parse().ok()).expect("a Threads line")
}

#[test]
fn control_connections_are_bounded_per_uid_and_others_still_get_in() {
    if !live_tests_possible("control_connections_are_bounded_per_uid_and_others_still_get_in") {
        return;
    }
    let (_sb, d, control) = start("clients");
    let before = threads(&d);
    // Idle clients beyond her 256 are turned away, and cost no thread.
    let mut held = connect_many_as(&control, CAROL, GROUP, 300);
    for extra in held.split_off(256) {
        let mut refused = Conn::new(extra.expect("the socket itself accepts"));
        assert_eq!(
            refused.line(),
            format!("ERR too many control connections for uid {CAROL} (256)")
        );
        assert_eq!(refused.line(), "", "and closed");
    }
    // (Some slack for the daemon's own threads that start lazily.)
    let after = threads(&d);
    assert!(after <= before + 256 + 16, "{before} threads, then {after}");
    // The 256 she holds all work; another user is not held back by them.
    let mut one = Conn::new(held.pop().unwrap().unwrap());
    assert!(one.request("VERSION").starts_with("OK tunstackd "));
    let mut bob = Conn::as_user(&control, BOB);
    assert!(bob.request("VERSION").starts_with("OK tunstackd "));
    // One of hers closed, she gets one again (once the daemon saw it go).
    drop(one);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Conn::new(connect_many_as(&control, CAROL, GROUP, 1).pop().unwrap().unwrap());
        let reply = c.request("VERSION");
        if reply.starts_with("OK ") {
            break;
        }
        assert!(
            reply.starts_with("ERR too many") && Instant::now() < deadline,
            "{reply}"
        );
    }
    drop(held);
}
