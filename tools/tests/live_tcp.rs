//! Live TCP tests: the daemon's services and an in-process stack on a real
//! TUN, against the host kernel's TCP (nc, ss, std sockets) in a namespace.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream as HostTcp};
use std::time::{Duration, Instant};
use tunstack::runtime::{Stack, TunConfig};
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};
use tunstack_tests::process;

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");

fn start(args: &[&str]) -> (Sandbox, Daemon) {
    let sb = Sandbox::create();
    let d = sb.start_daemon(DAEMON, args);
    (sb, d)
}

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = tunstack::rand::Rng::new(seed);
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(8) {
        let x = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&x[..chunk.len()]);
    }
    v
}

/// Writes `bytes` to a fresh file under the system temp dir; removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let p = std::env::temp_dir().join(format!("tunstack-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        TempFile(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn sha256_of_file(path: &str) -> String {
    let mut c = std::process::Command::new("sha256sum");
    c.arg(path);
    let out = process::run(c, Duration::from_secs(60));
    out.assert_success("sha256sum");
    out.stdout.split_whitespace().next().unwrap().to_owned()
}

fn echo_20mb_through_nc(mtu: &str) {
    let (sb, d) = start(&["--mtu", mtu]);
    let input = TempFile::new(&format!("echo-in-{mtu}"), &data(20_000_000, 7));
    let output = TempFile::new(&format!("echo-out-{mtu}"), b"");
    let mut cmd = sb.command("sh");
    cmd.args([
        "-c",
        &format!("nc -N 10.200.0.2 7 < {} > {}", input.path(), output.path()),
    ]);
    process::run(cmd, Duration::from_secs(300)).assert_success("nc echo");
    assert_eq!(
        sha256_of_file(output.path()),
        sha256_of_file(input.path()),
        "echo at MTU {mtu} differs"
    );
    let stats = d.stats();
    eprintln!(
        "MTU {mtu}: fast retransmits {}, RTOs {}, out-of-order {}",
        stats["tcp_fast_retransmits"], stats["tcp_rto_retransmits"], stats["tcp_rx_out_of_order"]
    );
}

#[test]
fn echo_20mb_is_byte_identical_at_mtu_1500() {
    if !live_tests_possible("echo_20mb_is_byte_identical_at_mtu_1500") {
        return;
    }
    echo_20mb_through_nc("1500");
}

#[test]
fn echo_20mb_is_byte_identical_at_mtu_9000() {
    if !live_tests_possible("echo_20mb_is_byte_identical_at_mtu_9000") {
        return;
    }
    echo_20mb_through_nc("9000");
}

#[test]
fn closed_port_is_refused_at_once_and_ss_shows_established_then_time_wait() {
    if !live_tests_possible("closed_port_is_refused_at_once_and_ss_shows_established_then_time_wait") {
        return;
    }
    let (sb, _d) = start(&[]);
    let t = Instant::now();
    let out = sb.run(
        "nc",
        &["-z", "-v", "-w", "5", "10.200.0.2", "81"],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "refused at once, not after a timeout"
    );

    let mut conn = sb.enter(|| HostTcp::connect("10.200.0.2:7").unwrap());
    conn.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping\n");
    let port = conn.local_addr().unwrap().port();
    let ss = sb.run("ss", &["-tan"], Duration::from_secs(10)).stdout;
    let row = ss
        .lines()
        .find(|l| l.contains(&format!("10.200.0.1:{port}")))
        .unwrap_or_else(|| panic!("{ss}"));
    assert!(row.starts_with("ESTAB") && row.contains("10.200.0.2:7"), "{row}");
    // The host closes first: its side waits in TIME-WAIT.
    conn.shutdown(Shutdown::Write).unwrap();
    assert_eq!(conn.read(&mut buf).unwrap(), 0, "the echo service closes in turn");
    drop(conn);
    let ss = sb.run("ss", &["-tan"], Duration::from_secs(10)).stdout;
    let row = ss
        .lines()
        .find(|l| l.contains(&format!("10.200.0.1:{port}")))
        .unwrap_or_else(|| panic!("{ss}"));
    assert!(row.starts_with("TIME-WAIT"), "{row}");
}

#[test]
fn stack_connects_out_and_transfers_20mb_both_ways_with_half_closes() {
    if !live_tests_possible("stack_connects_out_and_transfers_20mb_both_ways_with_half_closes") {
        return;
    }
    let sb = Sandbox::create();
    let cfg = TunConfig {
        seed: Some(5),
        offload: tunstack_tests::netns::test_offload(),
        ..TunConfig::default()
    };
    let (stack, _) = sb.enter(|| Stack::on_tun(&cfg).expect("stack on a TUN"));
    let to_host = data(20_000_000, 1);
    let to_stack = data(20_000_000, 2);
    let host_in = TempFile::new("to-stack", &to_stack);
    let host_out = TempFile::new("from-stack", b"");
    // The host listens with nc: it sends its file and half-closes (-N), then
    // keeps reading until our FIN. (nc stops sending once it sees EOF, so the
    // directions take turns: the host's half-close first, then ours.)
    let mut cmd = sb.command("sh");
    cmd.args([
        "-c",
        &format!("nc -N -l 10.200.0.1 6000 < {} > {}", host_in.path(), host_out.path()),
    ]);
    let nc = std::thread::spawn(move || process::run(cmd, Duration::from_secs(300)));
    let mut conn = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tunstack::net::TcpStream::connect(&stack, "10.200.0.1:6000") {
                Ok(c) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50)); // nc is not listening yet
                }
                Err(e) => panic!("connect: {e}"),
            }
        }
    };
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert!(got == to_stack, "bytes from the host differ ({} received)", got.len());
    assert_eq!(conn.state(), tunstack::tcp::State::CloseWait, "the host half-closed");
    conn.write_all(&to_host).unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    nc.join().unwrap().assert_success("nc -l");
    let sent = std::fs::read(host_out.path()).unwrap();
    assert!(sent == to_host, "bytes to the host differ ({} received)", sent.len());
    drop(conn);
    stack.shutdown().unwrap();
}

#[test]
fn a_thousand_concurrent_connections_echo_and_the_table_drains_after_time_wait() {
    if !live_tests_possible("a_thousand_concurrent_connections_echo_and_the_table_drains_after_time_wait") {
        return;
    }
    // Every client is 10.200.0.1: raise the per-client limit past them.
    let (sb, d) = start(&["--msl", "1", "--max-per-client", "2000"]);
    let listeners = d.sockets()["tcp"];
    assert_eq!(listeners, 4, "echo, discard, chargen and the sized source");
    // 1000 connections open at once, each echoing its own message.
    let conns: Vec<HostTcp> = sb.enter(|| (0..1000).map(|_| HostTcp::connect("10.200.0.2:7").unwrap()).collect());
    for (n, c) in conns.iter().enumerate() {
        (&*c).write_all(format!("connection {n}\n").as_bytes()).unwrap();
    }
    assert!(d.sockets()["tcp_established"] >= 1000);
    for (n, c) in conns.iter().enumerate() {
        let want = format!("connection {n}\n");
        let mut got = vec![0u8; want.len()];
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        (&*c).read_exact(&mut got).unwrap();
        assert_eq!(got, want.as_bytes());
    }
    drop(conns);
    // Now 1000 connections the stack closes first (the sized source sends
    // what was asked, then FIN): those wait in TIME-WAIT on the stack.
    let conns: Vec<HostTcp> = sb.enter(|| {
        (0..1000)
            .map(|_| HostTcp::connect("10.200.0.2:1919").unwrap())
            .collect()
    });
    for c in &conns {
        (&*c).write_all(b"100\n").unwrap();
    }
    for c in &conns {
        let mut got = Vec::new();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        (&*c).read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 100);
    }
    drop(conns);
    let closed_at = Instant::now();
    let mut saw_time_wait = 0;
    let deadline = closed_at + Duration::from_secs(30);
    loop {
        let s = d.sockets();
        saw_time_wait = saw_time_wait.max(s.get("tcp_time_wait").copied().unwrap_or(0));
        if s["tcp"] == listeners {
            break;
        }
        assert!(Instant::now() < deadline, "table never drained: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        saw_time_wait >= 900,
        "the stack's side waited in TIME-WAIT ({saw_time_wait} seen)"
    );
    assert!(
        closed_at.elapsed() >= Duration::from_millis(1500),
        "drained before 2×MSL"
    );
}

/// The host's count of retransmitted TCP segments (RetransSegs of
/// /proc/net/snmp), in the sandbox's namespace.
fn host_retransmitted(sb: &Sandbox) -> u64 {
    let out = sb.run("cat", &["/proc/net/snmp"], Duration::from_secs(10));
    out.assert_success("cat /proc/net/snmp");
    let tcp: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("Tcp:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(tcp.len(), 2, "a header line and a value line: {}", out.stdout);
    let at = tcp[0].iter().position(|f| *f == "RetransSegs").expect("RetransSegs");
    tcp[1][at].parse().expect("a count")
}

/// Issue 13's silent discard: on a clean link, a 200 MB upload must reach
/// the stack with nothing out of order (no in-order segment dropped
/// without a count) and make the host retransmit nothing.
#[test]
fn a_200_mb_upload_on_a_clean_link_has_nothing_out_of_order_and_no_host_retransmission() {
    if !live_tests_possible("a_200_mb_upload_on_a_clean_link_has_nothing_out_of_order_and_no_host_retransmission") {
        return;
    }
    let (sb, d) = start(&[]);
    let before = host_retransmitted(&sb);
    let mut cmd = sb.command("sh");
    cmd.args(["-c", "head -c 200000000 /dev/zero | nc -N 10.200.0.2 9"]);
    process::run(cmd, Duration::from_secs(300)).assert_success("nc upload to discard");
    let retransmitted = host_retransmitted(&sb) - before;
    let stats = d.stats();
    assert!(
        stats["tcp_rx_segments"] >= 200_000_000 / 1460,
        "the upload went through the stack: {stats:?}"
    );
    assert_eq!(stats["tcp_rx_out_of_order"], 0, "{stats:?}");
    assert_eq!(stats["link_rx_errors"], 0);
    assert_eq!(retransmitted, 0, "the host retransmitted on a clean link: {stats:?}");
}
