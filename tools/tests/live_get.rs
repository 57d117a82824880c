//! Live tests of `tunstack get` against addresses nobody answers: it fails
//! within its connect timeout, and names the cause when an ICMP error says
//! why (the stack's TCP acts on ICMP errors about its SYNs, as Linux does).

use std::time::{Duration, Instant};
use tunstack_tests::netns::{Sandbox, live_tests_possible};
use tunstack_tests::process::Finished;

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
const CLI: &str = env!("CARGO_BIN_EXE_tunstack");

/// The host side forwards, with no route to 10.201.0.0/16: the kernel answers
/// our SYN with ICMP network unreachable, and `get` reports it at once.
#[test]
fn get_to_an_unroutable_address_fails_at_once_naming_the_icmp_cause() {
    if !live_tests_possible("get_to_an_unroutable_address_fails_at_once_naming_the_icmp_cause") {
        return;
    }
    let sb = Sandbox::create();
    let d = sb.start_daemon(DAEMON, &[]);
    sb.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"], Duration::from_secs(10))
        .assert_success("sysctl ip_forward");
    let (r, took) = get_unanswered(&sb, "8");
    assert!(!r.status.success(), "get must fail: {}", r.stderr);
    assert!(r.stderr.contains("unreachable"), "names the ICMP cause: {}", r.stderr);
    assert!(
        took < Duration::from_secs(5),
        "at once, not after the timeout: {took:?}"
    );
    let stats = d.stats();
    assert!(stats["tcp_icmp_errors"] >= 1, "{stats:?}");
    assert!(stats["icmp_rx_errors"] >= 1, "{stats:?}");
}

/// Nobody answers at all (the host drops the SYNs): `get` gives up after
/// `--connect-timeout`, says so, and leaves no connection behind.
#[test]
fn get_to_a_silent_address_fails_within_the_connect_timeout() {
    if !live_tests_possible("get_to_a_silent_address_fails_within_the_connect_timeout") {
        return;
    }
    let sb = Sandbox::create();
    let d = sb.start_daemon(DAEMON, &[]);
    // Forwarding off (the namespace default): the host silently drops what is not for it.
    let (r, took) = get_unanswered(&sb, "2");
    assert!(!r.status.success(), "get must fail: {}", r.stderr);
    assert!(r.stderr.contains("--connect-timeout"), "{}", r.stderr);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "fails at the timeout: {took:?}"
    );
    // Its half-open connection went with it (the daemon drops a departed client's sockets).
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let table = sb.run(CLI, &["netstat", "-a"], Duration::from_secs(10));
        if !table.stdout.contains("SYN_SENT") {
            break;
        }
        assert!(Instant::now() < deadline, "SYN_SENT left behind:\n{}", table.stdout);
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(d);
}

/// `tunstack get` of a URL at 10.201.9.9, which nobody answers, with the given
/// `--connect-timeout`; the result and how long it took.
fn get_unanswered(sb: &Sandbox, connect_timeout: &str) -> (Finished, Duration) {
    let start = Instant::now();
    let r = sb.run(
        CLI,
        &[
            "get",
            "http://10.201.9.9/x",
            "-o",
            "/dev/null",
            "--connect-timeout",
            connect_timeout,
        ],
        Duration::from_secs(30),
    );
    (r, start.elapsed())
}
