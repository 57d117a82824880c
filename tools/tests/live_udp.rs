//! Live UDP tests: the daemon's echo service and stack sockets on a real
//! TUN, against the host kernel's UDP (nc, std sockets) in a namespace.

use std::io::ErrorKind;
use std::net::UdpSocket as HostUdp;
use std::time::Duration;
use tunstack::runtime::{Stack, TunConfig};
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};
use tunstack_tests::sockopt::bind_to_device;

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");

fn start(args: &[&str]) -> (Sandbox, Daemon) {
    let sb = Sandbox::create();
    let d = sb.start_daemon(DAEMON, args);
    (sb, d)
}

#[test]
fn nc_lines_are_echoed() {
    if !live_tests_possible("nc_lines_are_echoed") {
        return;
    }
    let (sb, _d) = start(&[]);
    // One datagram per line, like typing into `nc -u`; -q1 quits a second after stdin ends.
    let mut cmd = sb.command("sh");
    cmd.args([
        "-c",
        "for l in one two three; do echo $l; sleep 0.1; done | nc -u -q1 10.200.0.2 7",
    ]);
    let out = tunstack_tests::process::run(cmd, Duration::from_secs(30));
    out.assert_success("nc -u");
    assert_eq!(out.stdout, "one\ntwo\nthree\n");
}

#[test]
fn a_60000_byte_datagram_comes_back_intact() {
    if !live_tests_possible("a_60000_byte_datagram_comes_back_intact") {
        return;
    }
    let (sb, d) = start(&[]);
    let sock = sb.enter(|| HostUdp::bind("10.200.0.1:0").unwrap());
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let data: Vec<u8> = (0..60_000u32).map(|i| (i * 7 % 251) as u8).collect();
    sock.send_to(&data, "10.200.0.2:7").unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(from.to_string(), "10.200.0.2:7");
    assert_eq!(n, data.len());
    assert!(buf[..n] == data[..], "echoed bytes differ");
    let stats = d.stats();
    assert!(
        stats["frag_reassembled"] >= 1 && stats["frag_tx_fragments"] >= 41,
        "{stats:?}"
    );
}

#[test]
fn closed_port_is_refused_and_counted() {
    if !live_tests_possible("closed_port_is_refused_and_counted") {
        return;
    }
    let (sb, d) = start(&[]);
    let sock = sb.enter(|| HostUdp::bind("10.200.0.1:0").unwrap());
    sock.connect("10.200.0.2:9999").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.send(b"is anyone there?").unwrap();
    let err = sock.recv(&mut [0u8; 64]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    let stats = d.stats();
    assert_eq!(stats["udp_no_port"], 1);
    assert_eq!(stats["icmp_tx_errors"], 1);
}

#[test]
fn echo_service_can_move_or_stop() {
    if !live_tests_possible("echo_service_can_move_or_stop") {
        return;
    }
    let (sb, _d) = start(&["--udp-echo", "7007"]);
    let sock = sb.enter(|| HostUdp::bind("10.200.0.1:0").unwrap());
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.send_to(b"moved", "10.200.0.2:7007").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(sock.recv(&mut buf).unwrap(), 5);
    drop(sb);
    let (sb, d) = start(&["--no-udp-echo"]);
    let sock = sb.enter(|| HostUdp::bind("10.200.0.1:0").unwrap());
    sock.connect("10.200.0.2:7").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.send(b"anyone?").unwrap();
    assert_eq!(sock.recv(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    assert_eq!(d.stats()["udp_no_port"], 1);
}

#[test]
fn host_broadcasts_reach_a_stack_socket() {
    if !live_tests_possible("host_broadcasts_reach_a_stack_socket") {
        return;
    }
    let sb = Sandbox::create();
    // The stack runs in this process, its TUN created inside the sandbox.
    let cfg = TunConfig {
        seed: Some(11),
        offload: tunstack_tests::netns::test_offload(),
        ..TunConfig::default()
    };
    let (stack, name) = sb.enter(|| Stack::on_tun(&cfg).expect("stack on a TUN"));
    let rx = tunstack::net::UdpSocket::bind(&stack, "0.0.0.0:6000").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let host = sb.enter(|| HostUdp::bind("0.0.0.0:0").unwrap());
    host.set_broadcast(true).unwrap();
    bind_to_device(&host, &name).unwrap();
    for dst in ["10.200.0.255:6000", "255.255.255.255:6000"] {
        host.send_to(dst.as_bytes(), dst).unwrap();
        let mut buf = [0u8; 64];
        let m = rx
            .recv_msg(&mut buf)
            .unwrap_or_else(|e| panic!("no datagram to {dst}: {e}"));
        assert_eq!(&buf[..m.len], dst.as_bytes());
        assert_eq!(m.from.ip().to_string(), "10.200.0.1");
    }
    // And the stack may broadcast back once it says so.
    let tx = tunstack::net::UdpSocket::bind(&stack, "0.0.0.0:0").unwrap();
    assert_eq!(
        tx.send_to(b"x", "10.200.0.255:6001").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    let listener = sb.enter(|| HostUdp::bind("0.0.0.0:6001").unwrap());
    listener.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tx.set_broadcast(true).unwrap();
    tx.send_to(b"hello all", "10.200.0.255:6001").unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = listener.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello all");
    assert_eq!(from.ip().to_string(), "10.200.0.2");
    stack.shutdown().unwrap();
}
