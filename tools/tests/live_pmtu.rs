//! Live test of path MTU discovery (RFC 1191): the stack's segments carry
//! DF, a Linux router in front of a 1280-byte link answers the big ones
//! with fragmentation-needed, and the transfer adapts and completes.
//!
//! stack 10.200.0.2 -> host 10.200.0.1 | 10.201.1.1 -> router 10.201.1.2 | 10.201.2.1 =(MTU 1280)=> far 10.201.2.2

use std::time::Duration;
use tunstack_tests::netns::{Sandbox, live_tests_possible};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");

fn ip(args: &[&str]) {
    let mut c = std::process::Command::new("ip");
    c.args(args);
    tunstack_tests::process::run(c, Duration::from_secs(20)).assert_success(&format!("ip {args:?}"));
}

#[test]
fn a_20mb_transfer_through_a_1280_byte_link_adapts_its_mss_and_completes() {
    if !live_tests_possible("a_20mb_transfer_through_a_1280_byte_link_adapts_its_mss_and_completes") {
        return;
    }
    let host = Sandbox::create();
    let router = Sandbox::create();
    let far = Sandbox::create();
    let d = host.start_daemon(DAEMON, &[]);
    let (h, r, f) = (host.name(), router.name(), far.name());
    ip(&[
        "-n", h, "link", "add", "tsv-hr", "type", "veth", "peer", "name", "tsv-rh", "netns", r,
    ]);
    ip(&[
        "-n", r, "link", "add", "tsv-rf", "type", "veth", "peer", "name", "tsv-fr", "netns", f,
    ]);
    for (ns, dev, addr) in [
        (h, "tsv-hr", "10.201.1.1/30"),
        (r, "tsv-rh", "10.201.1.2/30"),
        (r, "tsv-rf", "10.201.2.1/30"),
        (f, "tsv-fr", "10.201.2.2/30"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    // The router's way to the far host carries 1280 bytes; the far host
    // itself has 1500, so its SYN offers MSS 1460 and only the router knows.
    ip(&["-n", r, "link", "set", "tsv-rf", "mtu", "1280"]);
    ip(&["-n", h, "route", "add", "10.201.2.0/30", "via", "10.201.1.2"]);
    ip(&["-n", r, "route", "add", "10.200.0.0/24", "via", "10.201.1.1"]);
    ip(&["-n", f, "route", "add", "default", "via", "10.201.2.1"]);
    for sb in [&host, &router] {
        sb.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"], Duration::from_secs(10))
            .assert_success("ip_forward");
    }
    router
        .run("sysctl", &["-qw", "net.ipv4.icmp_ratelimit=0"], Duration::from_secs(10))
        .assert_success("ratelimit");
    // The far host asks the stack's source service for 20 MB.
    let out = far.run(
        "sh",
        &["-c", "echo 20000000 | nc -N 10.200.0.2 19 | wc -c"],
        Duration::from_secs(120),
    );
    out.assert_success("nc from the far host");
    assert_eq!(out.stdout.trim(), "20000000", "all 20 MB arrived");
    let stats = d.stats();
    assert!(stats["tcp_pmtu_reductions"] >= 1, "the MSS came down: {stats:?}");
    assert!(stats["icmp_rx_errors"] >= 1, "{stats:?}");
}
