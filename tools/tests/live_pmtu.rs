//! Live test of path MTU discovery (RFC 1191): the stack's segments carry
//! DF, a Linux router in front of a 1280-byte link answers the big ones
//! with fragmentation-needed, and the transfer adapts and completes.
//!
//! stack 10.200.0.2 -> host 10.200.0.1 | 10.201.1.1 -> router 10.201.1.2 | 10.201.2.1 =(MTU 1280)=> far 10.201.2.2

use std::time::Duration;
use tunstack_tests::netns::{Sandbox, live_tests_possible};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");

#[test]
fn a_20mb_transfer_through_a_1280_byte_link_adapts_its_mss_and_completes() {
    if !live_tests_possible("a_20mb_transfer_through_a_1280_byte_link_adapts_its_mss_and_completes") {
        return;
    }
    let host = Sandbox::create();
    let router = Sandbox::create();
    let far = Sandbox::create();
    let d = host.start_daemon(DAEMON, &[]);
    tunstack_tests::netns::router_chain(&host, &router, &far);
    // The router's way to the far host carries 1280 bytes; the far host
    // itself has 1500, so its SYN offers MSS 1460 and only the router knows.
    router
        .run("ip", &["link", "set", "tsv-rf", "mtu", "1280"], Duration::from_secs(10))
        .assert_success("mtu 1280");
    // The far host asks the stack's sized source for 20 MB.
    let out = far.run(
        "sh",
        &["-c", "echo 20000000 | nc -N 10.200.0.2 1919 | wc -c"],
        Duration::from_secs(120),
    );
    out.assert_success("nc from the far host");
    assert_eq!(out.stdout.trim(), "20000000", "all 20 MB arrived");
    let stats = d.stats();
    assert!(stats["tcp_pmtu_reductions"] >= 1, "the MSS came down: {stats:?}");
    assert!(stats["icmp_rx_errors"] >= 1, "{stats:?}");
}
