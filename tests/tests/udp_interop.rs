//! UDP over the in-memory link, no root: two tunstack stacks talk through
//! the std::net-shaped API, and tunstack talks to smoltcp's UDP socket.
//! Datagrams go both ways, small and fragmented.

mod common;

use common::{SmolLink, smol_iface};
use smoltcp::iface::SocketSet;
use smoltcp::socket::udp as smol_udp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::IpAddress;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tunstack::device::memory::MemoryLink;
use tunstack::net::UdpSocket;
use tunstack::runtime::Stack;
use tunstack::{Config, Interface, Ipv4Cidr};

const SIZES: [usize; 8] = [0, 1, 100, 1472, 1473, 8000, 30_000, 65_507];

fn stack_at(link: MemoryLink, ip: [u8; 4], seed: u64) -> Stack {
    let mut c = Config::new(Ipv4Cidr::new(ip.into(), 24).unwrap());
    c.seed = seed;
    Stack::start(Interface::new(c), link).unwrap()
}

fn payload(size: usize, salt: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

#[test]
fn two_tunstack_stacks_exchange_datagrams_both_ways() {
    let (a_link, b_link) = MemoryLink::pair().unwrap();
    let a = stack_at(a_link, [10, 0, 0, 1], 1);
    let b = stack_at(b_link, [10, 0, 0, 2], 2);
    let server = UdpSocket::bind(&b, "0.0.0.0:7000").unwrap();
    let client = UdpSocket::bind(&a, "0.0.0.0:0").unwrap();
    server.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 70_000];
    for (n, &size) in SIZES.iter().enumerate() {
        let out = payload(size, n as u8);
        client.send_to(&out, "10.0.0.2:7000").unwrap();
        let (len, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], &out[..], "{size} bytes a -> b");
        assert_eq!(from, client_addr(&client));
        let back = payload(size, n as u8 ^ 0xff);
        server.send_to(&back, from).unwrap();
        let (len, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], &back[..], "{size} bytes b -> a");
        assert_eq!(from, "10.0.0.2:7000".parse::<SocketAddr>().unwrap());
    }
    assert!(b.stats().frag_reassembled >= 4);
    assert!(a.stats().frag_reassembled >= 4);
    a.shutdown().unwrap();
    b.shutdown().unwrap();
}

fn client_addr(s: &UdpSocket) -> SocketAddr {
    let port = s.local_addr().unwrap().port();
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), port))
}

#[test]
fn connected_socket_sees_connection_refused_from_a_closed_port() {
    let (a_link, b_link) = MemoryLink::pair().unwrap();
    let a = stack_at(a_link, [10, 0, 0, 1], 3);
    let b = stack_at(b_link, [10, 0, 0, 2], 4);
    let s = UdpSocket::bind(&a, "0.0.0.0:0").unwrap();
    s.connect("10.0.0.2:9").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.send(b"anyone home?").unwrap();
    let err = s.recv(&mut [0u8; 64]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(b.stats().udp_no_port, 1);
    assert_eq!(a.stats().udp_icmp_errors, 1);
    a.shutdown().unwrap();
    b.shutdown().unwrap();
}

#[test]
fn api_errors_have_linux_kinds() {
    let (a_link, _b_link) = MemoryLink::pair().unwrap();
    let a = stack_at(a_link, [10, 0, 0, 1], 5);
    let s = UdpSocket::bind(&a, "0.0.0.0:5000").unwrap();
    assert_eq!(
        UdpSocket::bind(&a, "0.0.0.0:5000").unwrap_err().kind(),
        ErrorKind::AddrInUse
    );
    assert_eq!(
        UdpSocket::bind(&a, "192.0.2.1:5001").unwrap_err().kind(),
        ErrorKind::AddrNotAvailable
    );
    assert_eq!(
        s.send_to(b"x", "10.0.0.255:9").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        s.send_to(b"x", "255.255.255.255:9").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    s.set_broadcast(true).unwrap();
    assert!(s.broadcast().unwrap());
    s.send_to(b"x", "10.0.0.255:9").unwrap();
    assert_eq!(s.peer_addr().unwrap_err().kind(), ErrorKind::NotConnected);
    s.set_nonblocking(true).unwrap();
    assert_eq!(s.recv_from(&mut [0u8; 8]).unwrap_err().kind(), ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let t = std::time::Instant::now();
    assert_eq!(s.recv_from(&mut [0u8; 8]).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        s.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        s.send_to(&vec![0u8; 65_508], "10.0.0.2:9").unwrap_err().raw_os_error(),
        Some(libc::EMSGSIZE)
    );
    a.shutdown().unwrap();
    assert_eq!(s.recv_from(&mut [0u8; 8]).unwrap_err().kind(), ErrorKind::NetworkDown);
}

#[test]
fn truncation_drops_the_excess_and_reports_the_full_length() {
    let (a_link, b_link) = MemoryLink::pair().unwrap();
    let a = stack_at(a_link, [10, 0, 0, 1], 6);
    let b = stack_at(b_link, [10, 0, 0, 2], 7);
    let rx = UdpSocket::bind(&b, "0.0.0.0:7000").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let tx = UdpSocket::bind(&a, "0.0.0.0:0").unwrap();
    tx.send_to(&[1u8; 3000], "10.0.0.2:7000").unwrap();
    tx.send_to(b"second", "10.0.0.2:7000").unwrap();
    let mut small = [0u8; 1024];
    let (n, _) = rx.peek_from(&mut small).unwrap();
    assert_eq!(n, 1024);
    let m = rx.recv_msg(&mut small).unwrap();
    assert!(m.truncated());
    assert_eq!((m.len, m.full_len), (1024, 3000));
    let (n, _) = rx.recv_from(&mut small).unwrap();
    assert_eq!(&small[..n], b"second");
    a.shutdown().unwrap();
    b.shutdown().unwrap();
}

#[test]
fn broadcast_from_one_stack_reaches_a_wildcard_socket_on_the_other() {
    let (a_link, b_link) = MemoryLink::pair().unwrap();
    let a = stack_at(a_link, [10, 0, 0, 1], 8);
    let b = stack_at(b_link, [10, 0, 0, 2], 9);
    let rx = UdpSocket::bind(&b, "0.0.0.0:6000").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let tx = UdpSocket::bind(&a, "0.0.0.0:0").unwrap();
    tx.set_broadcast(true).unwrap();
    for dst in ["10.0.0.255:6000", "255.255.255.255:6000"] {
        tx.send_to(dst.as_bytes(), dst).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], dst.as_bytes());
    }
    a.shutdown().unwrap();
    b.shutdown().unwrap();
}

#[test]
fn tunstack_and_smoltcp_exchange_udp_both_ways() {
    let (ours, theirs) = MemoryLink::pair().unwrap();
    let stack = stack_at(ours, [10, 200, 0, 2], 10);
    let sock = UdpSocket::bind(&stack, "0.0.0.0:7").unwrap();
    sock.set_nonblocking(true).unwrap();

    let mut link = SmolLink(theirs);
    let mut smol = smol_iface(&mut link, [10, 200, 0, 1]);
    let mut sockets = SocketSet::new(vec![]);
    let buf = || smol_udp::PacketBuffer::new(vec![smol_udp::PacketMetadata::EMPTY; 16], vec![0u8; 300_000]);
    let mut s = smol_udp::Socket::new(buf(), buf());
    s.bind(4000).unwrap();
    let h = sockets.add(s);
    let start = std::time::Instant::now();
    let smol_now = || SmolInstant::from_micros(start.elapsed().as_micros() as i64);

    let mut rbuf = vec![0u8; 70_000];
    for (n, &size) in SIZES.iter().enumerate() {
        // smoltcp -> tunstack
        let out = payload(size, n as u8);
        sockets
            .get_mut::<smol_udp::Socket>(h)
            .send_slice(&out, (IpAddress::v4(10, 200, 0, 2), 7))
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (len, from) = loop {
            smol.poll(smol_now(), &mut link, &mut sockets);
            match sock.recv_from(&mut rbuf) {
                Ok(x) => break x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "tunstack got no {size}-byte datagram"
                    );
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&rbuf[..len], &out[..], "{size} bytes smoltcp -> tunstack");
        assert_eq!(from, "10.200.0.1:4000".parse::<SocketAddr>().unwrap());

        // tunstack -> smoltcp
        let back = payload(size, !(n as u8));
        sock.send_to(&back, from).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            smol.poll(smol_now(), &mut link, &mut sockets);
            let s = sockets.get_mut::<smol_udp::Socket>(h);
            if let Ok((data, meta)) = s.recv() {
                assert_eq!(data, &back[..], "{size} bytes tunstack -> smoltcp");
                assert_eq!(meta.endpoint.port, 7);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "smoltcp got no {size}-byte datagram"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let stats = stack.stats();
    assert!(stats.frag_reassembled >= 4, "{stats}");
    assert_eq!(stats.udp_bad_checksum, 0);
    stack.shutdown().unwrap();
}
