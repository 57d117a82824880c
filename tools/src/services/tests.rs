//! The built-in services, through a stack's loopback path: each service's
//! behaviour in both modes (own thread, stack thread), and their limits.

use super::*;
use tunstack::device::memory::MemoryLink;
use tunstack::iface::{Config, Interface};

const US: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// How long a test waits for what must happen.
const PATIENCE: Duration = Duration::from_secs(20);

/// A stack with every service on its usual port; clients on the same
/// stack reach them over its loopback path. Keep the link's other end.
fn services(on_stack_thread: bool) -> (Stack, MemoryLink) {
    services_with(on_stack_thread, None)
}

/// As `services`, with `limits` if any.
fn services_with(on_stack_thread: bool, limits: Option<ServiceLimits>) -> (Stack, MemoryLink) {
    let (link, peer) = MemoryLink::pair().unwrap();
    let stack = Stack::start(Interface::new(Config::new("10.200.0.2/24".parse().unwrap())), link).unwrap();
    let mut s = Services::new(&stack);
    if let Some(limits) = limits {
        s.limit(limits);
    }
    s.udp_echo(7).unwrap();
    s.tcp_echo(7).unwrap();
    s.tcp_discard(9).unwrap();
    s.tcp_source(19).unwrap();
    s.tcp_sized_source(1919).unwrap();
    if on_stack_thread {
        s.start_on_stack_thread().unwrap();
    } else {
        s.start().unwrap().expect("a thread");
    }
    (stack, peer)
}

/// Runs a test with the services on their own thread and on the stack thread.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn own_thread() {
                super::$name(false);
            }
            #[test]
            fn stack_thread() {
                super::$name(true);
            }
        }
    )*};
}

in_both_modes!(
    echo_returns_every_byte_then_answers_fin_with_fin,
    echo_stops_reading_from_a_client_that_does_not_read_and_resumes,
    discard_swallows_everything_and_closes_after_the_client,
    chargen_sends_from_the_connect_and_discards_what_it_reads,
    sized_source_sends_what_is_asked_or_without_end,
    udp_echo_answers_datagrams_and_hundreds_of_tcp_clients_share_one_thread,
    the_per_client_limit_counts_every_service_and_resets_past_it,
    idle_connections_are_closed_and_busy_ones_kept,
);

/// The services with `per_client` connections per address and an `idle` timeout.
fn limited(on_stack_thread: bool, per_client: usize, idle: Duration) -> (Stack, MemoryLink) {
    let limits = ServiceLimits {
        clients: Arc::new(ClientLimits::default()),
        per_client,
        idle,
    };
    services_with(on_stack_thread, Some(limits))
}

/// Server ends of connections to `port` (every client here is the stack itself).
fn served(stack: &Stack, port: u16) -> usize {
    stack.with_interface(|i| {
        i.tcp_layer()
            .sockets()
            .iter()
            .filter(|c| c.local.port() == port && c.remote.port() != 0)
            .count()
    })
}

/// Waits until `done`, failing with `what` after PATIENCE.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asks the sized source for `n` bytes and reads them: `Err` if it was refused.
fn source_request(stack: &Stack, n: usize) -> io::Result<usize> {
    // A refusal may come before the connect has returned: an error too.
    let s = TcpStream::connect(stack, (US, 1919))?;
    s.set_read_timeout(Some(PATIENCE))?;
    (&s).write_all(format!("{n}\n").as_bytes())?;
    let mut got = Vec::new();
    (&s).read_to_end(&mut got)
}

fn the_per_client_limit_counts_every_service_and_resets_past_it(on_stack_thread: bool) {
    let (stack, _peer) = limited(on_stack_thread, 2, Duration::from_secs(60));
    let echo = connect(&stack, 7);
    (&echo).write_all(b"hi\n").unwrap();
    let mut got = [0u8; 3];
    (&echo).read_exact(&mut got).unwrap();
    let discard = connect(&stack, 9);
    wait_until("discard serves its client", || served(&stack, 9) == 1);
    // Two held, across two services: a third, to a third service, is reset.
    let refused = source_request(&stack, 10).expect_err("past the limit");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionReset, "{refused}");
    // One goes: the next is served again (once the service has let it go).
    drop(discard);
    wait_until("a slot comes free", || {
        source_request(&stack, 10).is_ok_and(|n| n == 10)
    });
    stack.shutdown().unwrap();
}

fn idle_connections_are_closed_and_busy_ones_kept(on_stack_thread: bool) {
    let idle = Duration::from_millis(500);
    let (stack, _peer) = limited(on_stack_thread, 100, idle);
    let quiet = connect(&stack, 7);
    let busy = connect(&stack, 7);
    // A client of an endless stream that never reads: the source fills
    // its send buffer and moves nothing more.
    let stalled = connect(&stack, 19);
    (&stalled).write_all(b"\n").unwrap();
    let started = Instant::now();
    while started.elapsed() < idle * 5 {
        (&busy).write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        (&busy).read_exact(&mut b).unwrap();
        std::thread::sleep(idle / 5);
    }
    // The quiet one was closed with a FIN; the stalled one reset (a FIN
    // would only queue behind data its client does not read).
    let mut buf = [0u8; 8];
    assert_eq!((&quiet).read(&mut buf).unwrap(), 0, "closed for idleness");
    wait_until("the stalled source connection goes", || served(&stack, 19) == 0);
    // A byte there and back now and then is no idleness.
    (&busy).write_all(b"y").unwrap();
    let mut b = [0u8; 1];
    (&busy).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"y");
    stack.shutdown().unwrap();
}

fn connect(stack: &Stack, port: u16) -> TcpStream {
    let s = TcpStream::connect(stack, (US, port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn echo_returns_every_byte_then_answers_fin_with_fin(on_stack_thread: bool) {
    let (stack, _peer) = services(on_stack_thread);
    let sent = data(3_000_000);
    let s = connect(&stack, 7);
    let back = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut back = Vec::new();
            (&s).read_to_end(&mut back).map(|_| back)
        });
        (&s).write_all(&sent).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        reader.join().unwrap().unwrap()
    });
    assert!(back == sent, "{} bytes came back of {}", back.len(), sent.len());
    stack.shutdown().unwrap();
}

fn echo_stops_reading_from_a_client_that_does_not_read_and_resumes(on_stack_thread: bool) {
    let (stack, _peer) = services(on_stack_thread);
    let s = connect(&stack, 7);
    // Writes stall once every buffer on the way there and back is full.
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let chunk = data(64 * 1024);
    let mut sent = Vec::new();
    while sent.len() < 64 << 20 {
        match (&s).write(&chunk) {
            Ok(n) => sent.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(
        sent.len() < 64 << 20,
        "echo took {} bytes from a client that reads nothing",
        sent.len()
    );
    // The server side of the connection holds its buffers' worth, not what was sent.
    let held: usize = stack.with_interface(|i| {
        i.tcp_layer()
            .sockets()
            .iter()
            .filter(|c| c.local.port() == 7 && c.remote.port() != 0)
            .map(|c| c.recv_queue + c.send_queue)
            .sum()
    });
    assert!(held < sent.len(), "the server holds {held} of {} bytes", sent.len());
    // Reading lets it go on: everything comes back, in order.
    let mut back = vec![0u8; sent.len()];
    (&s).read_exact(&mut back).unwrap();
    assert!(back == sent, "the echo differs from what was sent");
    stack.shutdown().unwrap();
}

fn discard_swallows_everything_and_closes_after_the_client(on_stack_thread: bool) {
    let (stack, _peer) = services(on_stack_thread);
    let s = connect(&stack, 9);
    (&s).write_all(&data(1_000_000)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    assert_eq!((&s).read_to_end(&mut rest).unwrap(), 0);
    stack.shutdown().unwrap();
}

fn chargen_sends_from_the_connect_and_discards_what_it_reads(on_stack_thread: bool) {
    let (stack, _peer) = services(on_stack_thread);
    let pattern = chargen_pattern();
    let s = connect(&stack, 19);
    // Lines come without a byte sent.
    let mut got = vec![0u8; 300_000];
    (&s).read_exact(&mut got).unwrap();
    assert!(got.iter().zip(pattern.iter().cycle()).all(|(a, b)| a == b));
    // What the client sends is read and thrown away, however much (it
    // would stall on a full window otherwise), and a number is no request.
    (&s).write_all(b"10\n").unwrap();
    (&s).write_all(&vec![b'x'; 1_000_000]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    // After the client's FIN, the stream goes on: it may still read.
    let mut got = vec![0u8; 1_000_000];
    (&s).read_exact(&mut got).unwrap();
    let at = 300_000 % pattern.len();
    assert!(
        got.iter()
            .zip(pattern[at..].iter().chain(pattern.iter().cycle()))
            .all(|(a, b)| a == b)
    );
    stack.shutdown().unwrap();
}

fn sized_source_sends_what_is_asked_or_without_end(on_stack_thread: bool) {
    let (stack, _peer) = services(on_stack_thread);
    let pattern = chargen_pattern();
    let s = connect(&stack, 1919);
    (&s).write_all(b"100000\n").unwrap();
    let mut got = Vec::new();
    (&s).read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 100_000);
    assert!(got.iter().zip(pattern.iter().cycle()).all(|(a, b)| a == b));

    for request in [&b"\n"[..], b""] {
        let s = connect(&stack, 1919);
        (&s).write_all(request).unwrap();
        if request.is_empty() {
            s.shutdown(Shutdown::Write).unwrap(); // EOF without a line: endless too
        }
        let mut got = vec![0u8; 2_000_000];
        (&s).read_exact(&mut got).unwrap();
        assert!(got.iter().zip(pattern.iter().cycle()).all(|(a, b)| a == b));
    }
    // Anything else is refused in one line, never taken for "endless".
    for request in [&b"100M\n"[..], b"-1\n", b"99999999999999999999999\n", b"abc\r\n"] {
        let s = connect(&stack, 1919);
        (&s).write_all(request).unwrap();
        let mut got = Vec::new();
        (&s).read_to_end(&mut got).unwrap();
        assert_eq!(got, SIZED_REFUSAL, "{request:?}");
    }
    stack.shutdown().unwrap();
}

fn udp_echo_answers_datagrams_and_hundreds_of_tcp_clients_share_one_thread(on_stack_thread: bool) {
    let (stack, _peer) = services(on_stack_thread);
    let u = UdpSocket::bind(&stack, (US, 0)).unwrap();
    u.set_read_timeout(Some(PATIENCE)).unwrap();
    u.send_to(b"ping", (US, 7)).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = u.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"ping"[..], SocketAddr::from((US, 7))));

    let clients: Vec<TcpStream> = (0..300).map(|_| connect(&stack, 7)).collect();
    for (i, c) in clients.iter().enumerate() {
        (&*c).write_all(format!("{i}\n").as_bytes()).unwrap();
    }
    for (i, c) in clients.iter().enumerate() {
        let want = format!("{i}\n");
        let mut got = vec![0u8; want.len()];
        (&*c).read_exact(&mut got).unwrap();
        assert_eq!(got, want.as_bytes());
    }
    stack.shutdown().unwrap();
}
