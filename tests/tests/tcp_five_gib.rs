//! A connection carries any number of bytes: 5 GiB from one tunstack stack
//! to another over the simulated link (tunstack_tests::sim), through one
//! connection with a few losses on the way, checked byte for byte. Its
//! sequence numbers go round the whole space and more; the writer waits at
//! 2^32 − 1 bytes until they are all acknowledged, so SND.UNA sits at ISS
//! again when the next segment is built.
//!
//! The content is made as it is sent and checked as it is read
//! (`tunstack_tests::stream`), so nothing holds 5 GiB; at an MTU of 65535,
//! 5 GiB is about 82,000 segments (about 15 s in the test profile).

use std::net::SocketAddrV4;
use tunstack::{Duration, Instant, Interface};
use tunstack_tests::sim::{
    ADDR_A, ADDR_B, Endpoint, LinkConfig, Recv, SERVER_PORT, Side, SimLink, TcpEndpoint, TransferSpec, TunstackEndpoint,
};
use tunstack_tests::stream::fill;

/// What goes through: more than the 2^32 sequence numbers.
const TOTAL: u64 = 5 << 30;

/// Where the writer pauses until everything is acknowledged: then SND.UNA
/// is ISS again (the SYN took one number) and nothing is in flight, the
/// moment a stack that takes SND.UNA == ISS for "SYN not acknowledged"
/// builds its next segment from the wrong place.
const PAUSE: u64 = (1 << 32) - 1;

/// A stack with a 65535-byte MTU for the run.
fn endpoint(addr: std::net::Ipv4Addr, seed: u64, spec: &TransferSpec) -> TunstackEndpoint {
    let mut c = TunstackEndpoint::config(addr, seed, spec);
    c.mtu = 65535;
    TunstackEndpoint::new(Interface::new(c))
}

#[test]
fn five_gib_through_one_connection_byte_for_byte() {
    let mut spec = TransferSpec::new(5);
    spec.send_buffer = Some(4 << 20);
    let mut a = endpoint(ADDR_A, 1, &spec);
    let mut b = endpoint(ADDR_B, 2, &spec);
    // A short path with a few losses: recoveries on the way, around the wrap too.
    let mut link = SimLink::new(
        LinkConfig {
            latency: Duration::from_micros(500),
            loss: 0.000_5,
            ..LinkConfig::default()
        },
        7,
    );
    let mut now = Instant::ZERO;
    b.listen(now, SERVER_PORT).unwrap();
    a.connect(now, SocketAddrV4::new(ADDR_B, SERVER_PORT), 40_000).unwrap();
    let (mut written, mut pending, mut pending_at) = (0u64, Vec::new(), 0usize);
    let (mut read, mut buf, mut want) = (0u64, vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let (mut a_shut, mut a_eof, mut a_closed) = (false, false, false);
    let (mut b_eof, mut b_closed) = (false, false);
    let mut steps = 0u64;
    let mut paused_at = None;
    loop {
        steps += 1;
        link.deliver_due(now, &mut a, &mut b);
        a.run_due_timers(now);
        b.run_due_timers(now);
        // A writes the stream, then shuts down, reads B's EOF and closes.
        if !a_closed && a.ready(now).unwrap() {
            let h = a.handle().expect("connected");
            while written < TOTAL {
                if written == PAUSE && a.iface.tcp_layer().send_queue(h) > 0 {
                    paused_at.get_or_insert(now);
                    break;
                }
                if pending_at == pending.len() {
                    let end = if written < PAUSE { PAUSE } else { TOTAL };
                    pending.resize((end - written).min(1 << 20) as usize, 0);
                    fill(written, &mut pending);
                    pending_at = 0;
                }
                let n = a.send(now, &pending[pending_at..]).unwrap();
                pending_at += n;
                written += n as u64;
                if n == 0 {
                    break;
                }
            }
            if written == TOTAL && !a_shut {
                a.shutdown_write(now).unwrap();
                a_shut = true;
            }
            if !a_eof {
                a_eof = a.recv(now, &mut buf).unwrap() == Recv::Eof;
            }
            if a_eof && b_eof {
                a.close(now).unwrap();
                a_closed = true;
            }
        }
        // B reads and checks every byte, then closes at A's EOF.
        if !b_closed && b.ready(now).unwrap() {
            loop {
                match b.recv(now, &mut buf).unwrap() {
                    Recv::Data(n) => {
                        fill(read, &mut want[..n]);
                        assert!(buf[..n] == want[..n], "bytes {read}..{} differ", read + n as u64);
                        read += n as u64;
                    }
                    Recv::Eof => {
                        b_eof = true;
                        break;
                    }
                    Recv::WouldBlock => break,
                }
            }
            if b_eof {
                assert_eq!(read, TOTAL, "EOF after every byte");
                b.shutdown_write(now).unwrap();
                b.close(now).unwrap();
                b_closed = true;
            }
        }
        link.send_all(now, Side::A, &mut a);
        link.send_all(now, Side::B, &mut b);
        if a_closed && b_closed && a.connections() + b.connections() == 0 {
            break;
        }
        let next = [link.next_delivery(), a.poll_timeout(now), b.poll_timeout(now)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| panic!("stalled at {read} bytes: {} / {}", a.describe(), b.describe()));
        now = now.max(next);
        assert!(
            now - Instant::ZERO < Duration::from_secs(3600),
            "no finish in an hour of virtual time: {read} bytes; {}",
            a.describe()
        );
    }
    assert_eq!(read, TOTAL);
    println!(
        "5 GiB in {steps} steps, {now} of virtual time (paused at {paused_at:?}); link {:?}",
        link.stats
    );
    assert!(paused_at.is_some(), "the writer waited at 2^32 - 1 bytes");
    assert!(link.stats.lost > 0, "losses were repaired on the way");
}
