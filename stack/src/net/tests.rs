//! A dead stack thread is never silent: once it panics, every socket call
//! fails with `NetworkDown` carrying the panic's message, callers blocked at
//! that moment wake with it, and the stack says why it stopped.

use super::*;
use crate::device::memory::MemoryLink;
use crate::iface::{Config, Interface};
use crate::testutil::{self, HOST, US};
use std::io::{Read, Write};
use std::thread;

/// Long enough for anything here to happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// The message the stack thread panics with.
const FAULT: &str = "injected fault: the core is broken";

/// Asserts `r` failed as calls on a dead stack must: `NetworkDown`, with the panic's message.
#[track_caller]
fn assert_dead<T: std::fmt::Debug>(r: io::Result<T>, call: &str) {
    let e = r.expect_err(call);
    assert_eq!(e.kind(), io::ErrorKind::NetworkDown, "{call}: {e}");
    assert!(e.to_string().contains(FAULT), "{call}: the cause is missing from {e:?}");
}

/// Waits until a thread is blocked on socket `key`.
fn wait_blocked(stack: &Stack, key: SocketEvent) {
    let deadline = Instant::now() + PATIENCE;
    while !stack.lock().blocked_on(key) {
        assert!(Instant::now() < deadline, "nobody blocked on {key:?}");
        thread::yield_now();
    }
}

#[test]
fn a_panic_on_the_stack_thread_fails_every_call_with_its_message_and_wakes_the_blocked() {
    let (a, b) = MemoryLink::pair().unwrap();
    let ours = Stack::start(Interface::new(testutil::config()), a).unwrap();
    let mut host = Config::new("10.200.0.1/24".parse().unwrap());
    host.seed = 2;
    let host = Stack::start(Interface::new(host), b).unwrap();
    // Ours: a listener with one connection accepted, and a UDP socket.
    let listener = Arc::new(TcpListener::bind(&ours, (US, 80)).unwrap());
    let client = TcpStream::connect(&host, (US, 80)).unwrap();
    let (stream, _) = listener.accept().unwrap();
    let stream = Arc::new(stream);
    let udp = Arc::new(UdpSocket::bind(&ours, (US, 53)).unwrap());
    let mut poll = Poll::new(&ours).unwrap();

    // Three callers block: a read, an accept and a receive.
    let reader = {
        let s = stream.clone();
        thread::spawn(move || (&*s).read(&mut [0u8; 16]))
    };
    let acceptor = {
        let l = listener.clone();
        thread::spawn(move || l.accept().map(|(_, peer)| peer))
    };
    let receiver = {
        let u = udp.clone();
        thread::spawn(move || u.recv_from(&mut [0u8; 16]))
    };
    wait_blocked(&ours, SocketEvent::Tcp(stream.handle));
    wait_blocked(&ours, SocketEvent::Listener(listener.handle));
    wait_blocked(&ours, SocketEvent::Udp(udp.handle));

    ours.inject_panic(FAULT);
    assert!(ours.wait_stopped(Some(PATIENCE)), "the stack stopped");
    assert_dead(reader.join().unwrap(), "a blocked read");
    assert_dead(acceptor.join().unwrap(), "a blocked accept");
    assert_dead(receiver.join().unwrap(), "a blocked recv_from");

    // Every call made afterwards fails the same way.
    assert_dead((&*stream).read(&mut [0u8; 16]), "read");
    assert_dead((&*stream).write(b"hello"), "write");
    assert_dead(stream.shutdown(std::net::Shutdown::Write), "shutdown");
    assert_dead(listener.accept(), "accept");
    assert_dead(TcpStream::connect(&ours, (HOST, 80)), "connect");
    assert_dead(TcpListener::bind(&ours, (US, 81)), "bind");
    assert_dead(udp.recv_from(&mut [0u8; 16]), "recv_from");
    assert_dead(udp.send_to(b"x", (HOST, 53)), "send_to");
    assert_dead(poll.poll(&mut Events::with_capacity(4), None), "poll");
    assert_dead(Poll::new(&ours), "Poll::new");
    let failure = ours.failure().expect("the stack says why it stopped");
    assert!(failure.contains(FAULT), "{failure}");
    assert_dead(ours.shutdown(), "shutdown of the stack");

    // The other stack, on the same link, is untouched: its socket just sees silence.
    client.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let e = (&client).read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    drop((stream, listener, udp, client));
    host.shutdown().unwrap();
}

/// A shutdown is no death: calls fail with plain `ENETDOWN`, and the stack
/// has no failure to report.
#[test]
fn after_a_shutdown_calls_fail_with_enetdown_and_no_cause() {
    let (a, _peer) = MemoryLink::pair().unwrap();
    let ours = Stack::start(Interface::new(testutil::config()), a).unwrap();
    let udp = UdpSocket::bind(&ours, (US, 53)).unwrap();
    ours.shutdown().unwrap();
    assert!(ours.wait_stopped(Some(Duration::from_millis(1))));
    let e = udp.recv_from(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENETDOWN));
    assert_eq!(ours.failure(), None);
}

#[test]
fn a_poll_handed_to_a_dead_stack_thread_is_refused_with_the_cause() {
    let (a, _peer) = MemoryLink::pair().unwrap();
    let ours = Stack::start(Interface::new(testutil::config()), a).unwrap();
    let poll = Poll::new(&ours).unwrap();
    ours.inject_panic(FAULT);
    assert!(ours.wait_stopped(Some(PATIENCE)));
    assert_dead(poll.run_on_stack_thread(|_, _| None), "run_on_stack_thread");
}
