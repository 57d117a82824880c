//! Live tests: the real daemon on a real TUN in a fresh network namespace,
//! pinged by the real `ping`. They need root; see `live_tests_possible`.

use std::net::Ipv4Addr;
use std::time::Duration;
use tunstack::wire::checksum;
use tunstack::wire::icmp::{self, kind};
use tunstack::wire::ipv4::{HEADER_LEN, Ipv4Header};
use tunstack_tests::inject::PacketSocket;
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");

fn start(args: &[&str]) -> (Sandbox, Daemon) {
    let sb = Sandbox::create();
    let d = sb.start_daemon(DAEMON, args);
    (sb, d)
}

fn ping(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.run("ping", args, Duration::from_secs(60));
    out.assert_success(&format!("ping {args:?}"));
    out.stdout
}

/// Checks ping's summary: all `n` answered, no loss.
fn assert_all_answered(out: &str, n: usize) {
    let summary = format!("{n} packets transmitted, {n} received, 0% packet loss");
    assert!(out.contains(&summary), "expected {summary:?} in:\n{out}");
}

#[test]
fn ping_is_answered_with_ttl_64_and_no_loss() {
    if !live_tests_possible("ping_is_answered_with_ttl_64_and_no_loss") {
        return;
    }
    let (sb, mut d) = start(&[]);
    let out = ping(&sb, &["-c", "5", "-i", "0.2", "-W", "2", "10.200.0.2"]);
    assert_all_answered(&out, 5);
    let replies: Vec<&str> = out.lines().filter(|l| l.contains("bytes from 10.200.0.2")).collect();
    assert_eq!(replies.len(), 5, "{out}");
    assert!(replies.iter().all(|l| l.contains("ttl=64")), "{out}");
    let stats = d.stats();
    assert_eq!(stats["icmp_tx_echo_replies"], 5);
    assert!(d.stop().success(), "clean exit on SIGTERM");
    // The interface goes away with the daemon.
    let link = sb.run("ip", &["link", "show", "tun0"], Duration::from_secs(10));
    assert!(!link.status.success(), "tun0 still exists after the daemon stopped");
}

#[test]
fn large_pings_are_reassembled_and_replies_fragmented() {
    if !live_tests_possible("large_pings_are_reassembled_and_replies_fragmented") {
        return;
    }
    let (sb, d) = start(&[]);
    for size in ["8000", "60000"] {
        let out = ping(&sb, &["-c", "3", "-i", "0.2", "-W", "2", "-s", size, "10.200.0.2"]);
        assert_all_answered(&out, 3);
        // iputils checks every byte of the pattern it sent and complains on a mismatch.
        let expected = format!("{} bytes from 10.200.0.2", size.parse::<usize>().unwrap() + 8);
        assert_eq!(out.matches(&expected).count(), 3, "{out}");
        assert!(!out.contains("wrong data"), "{out}");
    }
    let stats = d.stats();
    assert_eq!(stats["frag_reassembled"], 6);
    assert!(stats["frag_tx_fragments"] >= 3 * (6 + 41), "{stats:?}");
}

#[test]
fn large_pings_work_at_mtu_9000() {
    if !live_tests_possible("large_pings_work_at_mtu_9000") {
        return;
    }
    let (sb, _d) = start(&["--mtu", "9000"]);
    let out = ping(&sb, &["-c", "2", "-i", "0.2", "-W", "2", "-s", "8000", "10.200.0.2"]);
    assert_all_answered(&out, 2);
    let out = ping(&sb, &["-c", "2", "-i", "0.2", "-W", "2", "-s", "60000", "10.200.0.2"]);
    assert_all_answered(&out, 2);
}

#[test]
fn directed_broadcast_ping_is_answered() {
    if !live_tests_possible("directed_broadcast_ping_is_answered") {
        return;
    }
    let (sb, _d) = start(&[]);
    let out = ping(&sb, &["-b", "-c", "3", "-i", "0.2", "-W", "2", "10.200.0.255"]);
    assert_all_answered(&out, 3);
    assert_eq!(out.matches("bytes from 10.200.0.2:").count(), 3, "{out}");
}

#[test]
fn broadcast_ping_can_be_ignored() {
    if !live_tests_possible("broadcast_ping_can_be_ignored") {
        return;
    }
    let (sb, d) = start(&["--ignore-broadcast-ping"]);
    let out = sb.run(
        "ping",
        &["-b", "-c", "2", "-i", "0.2", "-W", "1", "10.200.0.255"],
        Duration::from_secs(30),
    );
    assert!(!out.status.success(), "no reply expected:\n{}", out.stdout);
    assert_eq!(d.stats()["icmp_broadcast_echo_ignored"], 2);
    assert_all_answered(&ping(&sb, &["-c", "1", "-W", "2", "10.200.0.2"]), 1);
}

/// A well-formed echo request from the host side to the stack.
fn echo_request_packet(seq: u16) -> Vec<u8> {
    let mut msg = Vec::new();
    icmp::IcmpMessage::echo(kind::ECHO_REQUEST, 0x1234, seq, b"crafted!").emit(&mut msg);
    let h = Ipv4Header::new(
        Ipv4Addr::new(10, 200, 0, 1),
        Ipv4Addr::new(10, 200, 0, 2),
        1,
        64,
        seq,
        msg.len(),
    );
    let mut p = vec![0u8; HEADER_LEN + msg.len()];
    h.emit(&mut p);
    p[HEADER_LEN..].copy_from_slice(&msg);
    p
}

fn refresh_header_checksum(p: &mut [u8]) {
    p[10] = 0;
    p[11] = 0;
    let c = checksum::checksum(&p[..HEADER_LEN]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn malformed_packets_get_no_answer_and_are_counted() {
    if !live_tests_possible("malformed_packets_get_no_answer_and_are_counted") {
        return;
    }
    let (sb, d) = start(&[]);
    let good = echo_request_packet(1);
    let mut bad_ip_checksum = good.clone();
    bad_ip_checksum[10] ^= 0x5a;
    let mut bad_icmp_checksum = good.clone();
    bad_icmp_checksum[HEADER_LEN + 2] ^= 0x5a;
    let truncated_header = good[..14].to_vec();
    let mut total_len_too_big = good.clone();
    total_len_too_big[2..4].copy_from_slice(&500u16.to_be_bytes());
    refresh_header_checksum(&mut total_len_too_big);
    let mut ihl_below_5 = good.clone();
    ihl_below_5[0] = 0x44;
    let cases = [
        ("ip_bad_checksum", bad_ip_checksum),
        ("icmp_bad_checksum", bad_icmp_checksum),
        ("ip_truncated_header", truncated_header),
        ("ip_total_len_exceeds_packet", total_len_too_big),
        ("ip_bad_ihl", ihl_below_5),
    ];
    let sock = sb.enter(|| PacketSocket::open("tun0").expect("AF_PACKET socket on tun0"));
    for (counter, packet) in &cases {
        let before = d.stats();
        sock.send(packet).expect("inject");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let after = loop {
            let s = d.stats();
            if s[*counter] > before[*counter] || std::time::Instant::now() > deadline {
                break s;
            }
        };
        assert_eq!(
            after[*counter],
            before[*counter] + 1,
            "{counter} did not count the packet"
        );
        assert_eq!(
            after["link_tx_packets"], before["link_tx_packets"],
            "{counter}: the stack answered a bad packet"
        );
    }
    // The good packet, injected the same way, is answered: the checks above are not vacuous.
    let before = d.stats();
    sock.send(&good).expect("inject");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.stats()["icmp_tx_echo_replies"] == before["icmp_tx_echo_replies"] {
        assert!(
            std::time::Instant::now() < deadline,
            "crafted good echo request was not answered"
        );
    }
    // And real pings still work.
    assert_all_answered(&ping(&sb, &["-c", "3", "-i", "0.2", "-W", "2", "10.200.0.2"]), 3);
}

#[test]
fn host_side_can_be_left_alone() {
    if !live_tests_possible("host_side_can_be_left_alone") {
        return;
    }
    let (sb, _d) = start(&["--no-configure-host", "--interface", "tsk0"]);
    let addrs = sb.run("ip", &["-4", "addr", "show", "tsk0"], Duration::from_secs(10));
    addrs.assert_success("ip addr show tsk0");
    assert!(
        !addrs.stdout.contains("inet "),
        "host side was configured:\n{}",
        addrs.stdout
    );
    // Configure it by hand, as a user who chose this option would, and ping.
    sb.run(
        "ip",
        &["addr", "add", "10.200.0.1/24", "dev", "tsk0"],
        Duration::from_secs(10),
    )
    .assert_success("ip addr add");
    assert_all_answered(&ping(&sb, &["-c", "2", "-i", "0.2", "-W", "2", "10.200.0.2"]), 2);
}
