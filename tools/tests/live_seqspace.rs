//! Live: a connection carries any number of bytes. 5 GiB go from the
//! host's TCP through the daemon's echo service and back on one connection,
//! compared by sha256 on both sides; then the daemon still answers a ping
//! and a fresh echo.
//!
//! The client waits after 2^32 − 1 bytes until all of them have come back:
//! the echo connection's SND.UNA then sits at its ISS again (the SYN took
//! one number) with nothing in flight, the moment a stack that took
//! SND.UNA == ISS for "SYN not acknowledged" crashed on its next segment.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream as HostTcp};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tunstack_tests::netns::{Sandbox, live_tests_possible};
use tunstack_tests::stream::fill;

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");

/// What goes through.
const TOTAL: u64 = 5 << 30;

/// Where the client waits for everything to come back.
const PAUSE: u64 = (1 << 32) - 1;

/// How long any one read or write on the connection may block before the
/// test gives up (a dead stack thread must fail the test, not hang it).
const STALL: Duration = Duration::from_secs(60);

/// `sha256sum` reading from a pipe.
fn sha256sum() -> Child {
    Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum")
}

/// Closes the input of a `sha256sum` and returns the digest it printed.
fn digest(mut child: Child) -> String {
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("sha256sum runs");
    assert!(out.status.success(), "sha256sum failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Bytes received so far, and a condition variable for whoever waits on them.
#[derive(Default)]
struct Received {
    count: Mutex<u64>,
    moved: Condvar,
}

#[test]
fn five_gib_echo_on_one_connection_then_the_daemon_still_answers() {
    if !live_tests_possible("five_gib_echo_on_one_connection_then_the_daemon_still_answers") {
        return;
    }
    let sb = Sandbox::create();
    let d = sb.start_daemon(DAEMON, &[]);
    let conn = sb.enter(|| HostTcp::connect("10.200.0.2:7").expect("connect to echo"));
    conn.set_read_timeout(Some(STALL)).unwrap();
    conn.set_write_timeout(Some(STALL)).unwrap();
    let started = Instant::now();

    // Everything that comes back is hashed, and counted for the writer.
    let received = Arc::new(Received::default());
    let reader = {
        let mut conn = conn.try_clone().unwrap();
        let received = received.clone();
        let mut hash = sha256sum();
        std::thread::spawn(move || {
            let mut input = hash.stdin.take().unwrap();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = conn.read(&mut buf).expect("echo read (stalled?)");
                if n == 0 {
                    break;
                }
                input.write_all(&buf[..n]).unwrap();
                *received.count.lock().unwrap() += n as u64;
                received.moved.notify_all();
            }
            drop(input);
            (*received.count.lock().unwrap(), digest(hash))
        })
    };

    // The writer: the stream up to the pause, a wait for all of it to come
    // back, then the rest and a half-close.
    let mut sent_hash = sha256sum();
    let mut sent_input = sent_hash.stdin.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    for end in [PAUSE, TOTAL] {
        while written < end {
            let n = (end - written).min(buf.len() as u64) as usize;
            fill(written, &mut buf[..n]);
            (&conn).write_all(&buf[..n]).expect("echo write (stalled?)");
            sent_input.write_all(&buf[..n]).unwrap();
            written += n as u64;
        }
        if end == PAUSE {
            let count = received.count.lock().unwrap();
            let (count, waited) = received
                .moved
                .wait_timeout_while(count, STALL * 2, |c| *c < PAUSE)
                .unwrap();
            assert!(!waited.timed_out(), "only {} of {PAUSE} bytes came back", *count);
        }
    }
    conn.shutdown(Shutdown::Write).unwrap();
    drop(sent_input);
    let (got, got_digest) = reader.join().expect("reader");
    let elapsed = started.elapsed();
    assert_eq!(got, TOTAL, "every byte came back");
    assert_eq!(got_digest, digest(sent_hash), "sha256 of what came back");
    eprintln!(
        "5 GiB echoed in {elapsed:?} ({:.0} MB/s each way)",
        TOTAL as f64 / elapsed.as_secs_f64() / 1e6
    );

    // The daemon is still there: a ping, and a fresh echo.
    sb.run("ping", &["-c", "1", "-W", "5", "10.200.0.2"], Duration::from_secs(20))
        .assert_success("ping after 5 GiB");
    let fresh = sb.enter(|| HostTcp::connect("10.200.0.2:7").expect("a fresh connection"));
    fresh.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&fresh).write_all(b"still here\n").unwrap();
    let mut back = [0u8; 11];
    (&fresh).read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still here\n");
    let stats = d.stats();
    assert!(
        !d.log().snapshot().iter().any(|l| l.contains("panicked")),
        "the daemon logged a panic"
    );
    eprintln!(
        "retransmitted segments {}, RTOs {}",
        stats["tcp_retransmitted_segments"], stats["tcp_rto_retransmits"]
    );
}
