//! Live: a dead stack thread is never silent. When tunstackd's stack thread
//! panics, the daemon logs the panic, exits non-zero, and removes tun0 and
//! its control socket file as on a normal exit, instead of living on with
//! stale answers and no network.
//!
//! The panic is injected with SIGUSR2, which only debug builds of tunstackd
//! handle (`Stack::inject_panic`): these tests exist in debug builds only.

#![cfg(debug_assertions)]

use std::io::{Read, Write};
use std::net::TcpStream as HostTcp;
use std::process::Command;
use std::time::Duration;
use tunstack_tests::netns::{Sandbox, live_tests_possible};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");

/// What the injected panic says (tunstackd's SIGUSR2 handler).
const FAULT: &str = "SIGUSR2: test-only fault injection";

/// Long enough for anything here to happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn a_panic_on_the_stack_thread_ends_the_daemon_with_the_panic_in_its_log() {
    if !live_tests_possible("a_panic_on_the_stack_thread_ends_the_daemon_with_the_panic_in_its_log") {
        return;
    }
    let sb = Sandbox::create();
    let control = std::env::temp_dir().join(format!("tunstack-{}-dead-stack.sock", std::process::id()));
    let mut d = sb.start_daemon(DAEMON, &["--control", control.to_str().unwrap()]);
    assert!(control.exists(), "the control socket is there");

    // It serves: a ping, and an echo on a connection the host keeps open.
    sb.run("ping", &["-c", "1", "-W", "5", "10.200.0.2"], PATIENCE)
        .assert_success("ping");
    let conn = sb.enter(|| HostTcp::connect("10.200.0.2:7").expect("connect to echo"));
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    (&conn).write_all(b"before\n").unwrap();
    let mut back = [0u8; 7];
    (&conn).read_exact(&mut back).unwrap();
    assert_eq!(&back, b"before\n");

    let status = Command::new("kill")
        .args(["-USR2", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -USR2");
    let status = d
        .wait_exit(PATIENCE)
        .expect("the daemon exits once its stack thread died");
    assert_eq!(status.code(), Some(1), "a failure: {status}");

    // The log has the panic (where, and its message) and the reason for the exit.
    let panicked = |l: &str| l.contains("'tunstack'") && l.contains("panicked");
    d.log()
        .wait_for(0, PATIENCE, panicked)
        .unwrap_or_else(|| panic!("no panic logged: {:?}", d.log().snapshot()));
    let last = |l: &str| l.starts_with("tunstackd: stack thread panicked") && l.contains(FAULT);
    d.log()
        .wait_for(0, PATIENCE, last)
        .unwrap_or_else(|| panic!("no exit line with the cause: {:?}", d.log().snapshot()));
    // Cleaned up as on a normal exit: the counters printed, tun0 and the socket file gone.
    assert!(
        d.stdout().snapshot().iter().any(|l| l.starts_with("stats: ")),
        "the counters on the way out"
    );
    assert!(!control.exists(), "the control socket file is removed");
    let link = sb.run("ip", &["link", "show", "tun0"], PATIENCE);
    assert!(!link.status.success(), "tun0 is gone: {}", link.stdout);
    drop(conn);
}
