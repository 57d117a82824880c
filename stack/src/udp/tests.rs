//! UDP core tests: binding, demultiplexing, broadcast, queues, ICMP errors.

use super::*;
use crate::iface::{Config, Interface};
use crate::ip::Ipv4Cidr;
use crate::socket::{EPHEMERAL_FIRST, EPHEMERAL_LAST};
use crate::testutil::*;
use crate::wire::icmp::IcmpMessage;

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

/// The UDP datagrams the interface sent: (src port, dst, payload).
fn sent_udp(i: &mut Interface) -> Vec<(u16, SocketAddrV4, Vec<u8>)> {
    host_receive(&drain(i))
        .into_iter()
        .filter(|(h, _)| h.header.protocol == protocol::UDP)
        .map(|(h, p)| {
            let d = UdpDatagram::parse(&p, h.header.src, h.header.dst).expect("valid UDP");
            (d.src_port, addr(h.header.dst, d.dst_port), d.payload.to_vec())
        })
        .collect()
}

fn recv(i: &mut Interface, h: UdpHandle) -> Option<(Vec<u8>, SocketAddrV4)> {
    let mut buf = vec![0u8; 70_000];
    let r = i.udp(t(0)).recv_from(h, &mut buf, false).ok()?;
    Some((buf[..r.len].to_vec(), r.from))
}

#[test]
fn ephemeral_ports_are_random_in_range_and_never_collide() {
    let mut i = iface();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let h = i.udp(t(0)).bind(addr(ANY, 0)).unwrap();
        let p = i.udp_layer().local_addr(h).port();
        assert!((EPHEMERAL_FIRST..=EPHEMERAL_LAST).contains(&p));
        assert!(seen.insert(p), "port {p} handed out twice");
    }
    // Two interfaces with different seeds start at different places.
    let mut other = Interface::new(Config { seed: 77, ..config() });
    let mut first = iface();
    let a = first.udp(t(0)).bind(addr(ANY, 0)).unwrap();
    let b = other.udp(t(0)).bind(addr(ANY, 0)).unwrap();
    assert_ne!(
        first.udp_layer().local_addr(a).port(),
        other.udp_layer().local_addr(b).port()
    );
}

#[test]
fn ephemeral_range_exhaustion_is_addr_in_use() {
    let mut i = iface();
    for _ in EPHEMERAL_FIRST..=EPHEMERAL_LAST {
        i.udp(t(0)).bind(addr(ANY, 0)).unwrap();
    }
    assert_eq!(i.udp(t(0)).bind(addr(ANY, 0)), Err(BindError::AddrInUse));
    // Fixed ports outside the range still work.
    assert!(i.udp(t(0)).bind(addr(ANY, 7)).is_ok());
}

#[test]
fn bind_conflicts_follow_linux() {
    let mut i = iface();
    let a = i.udp(t(0)).bind(addr(US, 7)).unwrap();
    assert_eq!(i.udp(t(0)).bind(addr(US, 7)), Err(BindError::AddrInUse));
    assert_eq!(i.udp(t(0)).bind(addr(ANY, 7)), Err(BindError::AddrInUse));
    // The broadcast address is a different local address.
    assert!(i.udp(t(0)).bind(addr(BCAST, 7)).is_ok());
    assert_eq!(
        i.udp(t(0)).bind(addr(Ipv4Addr::new(10, 9, 9, 9), 8)),
        Err(BindError::AddrNotAvailable)
    );
    i.udp(t(0)).close(a);
    assert!(i.udp(t(0)).bind(addr(US, 7)).is_ok(), "port freed on close");
}

#[test]
fn datagram_reaches_the_bound_socket_and_reply_goes_back() {
    let mut i = iface();
    let h = i.udp(t(0)).bind(addr(ANY, 7)).unwrap();
    i.handle_packet(t(0), &udp_packet(HOST, 5555, US, 7, b"ping?"));
    assert!(i.udp_layer().can_recv(h));
    let (data, from) = recv(&mut i, h).unwrap();
    assert_eq!((data.as_slice(), from), (&b"ping?"[..], addr(HOST, 5555)));
    i.udp(t(0)).send_to(h, from, b"pong!", None).unwrap();
    assert_eq!(sent_udp(&mut i), [(7, addr(HOST, 5555), b"pong!".to_vec())]);
    assert_eq!(i.udp(t(0)).recv_from(h, &mut [0; 8], false), Err(RecvError::WouldBlock));
}

#[test]
fn closed_port_draws_port_unreachable_but_broadcast_does_not() {
    let mut i = iface();
    let pkt = udp_packet(HOST, 5555, US, 9999, b"anyone?");
    i.handle_packet(t(0), &pkt);
    let got = host_receive(&drain(&mut i));
    assert_eq!(got.len(), 1);
    let m = IcmpMessage::parse(&got[0].1).unwrap();
    assert_eq!((m.kind, m.code), (kind::DEST_UNREACHABLE, unreachable::PORT));
    assert_eq!(&m.data[..pkt.len()], &pkt[..]);
    assert_eq!(i.stats().udp_no_port, 1);
    i.handle_packet(t(0), &udp_packet(HOST, 5555, BCAST, 9999, b"anyone?"));
    i.handle_packet(t(0), &udp_packet(HOST, 5555, Ipv4Addr::BROADCAST, 9999, b"anyone?"));
    assert!(drain(&mut i).is_empty());
    assert_eq!(i.stats().udp_no_port, 3);
}

#[test]
fn broadcasts_reach_wildcard_and_broadcast_bound_sockets_not_unicast_bound() {
    let mut i = iface();
    let wild = i.udp(t(0)).bind(addr(ANY, 5000)).unwrap();
    let uni = i.udp(t(0)).bind(addr(US, 6000)).unwrap();
    let bcast = i.udp(t(0)).bind(addr(BCAST, 6000)).unwrap();
    i.handle_packet(t(0), &udp_packet(HOST, 1, BCAST, 5000, b"directed"));
    i.handle_packet(t(0), &udp_packet(HOST, 1, Ipv4Addr::BROADCAST, 5000, b"limited"));
    assert_eq!(recv(&mut i, wild).unwrap().0, b"directed");
    assert_eq!(recv(&mut i, wild).unwrap().0, b"limited");
    i.handle_packet(t(0), &udp_packet(HOST, 1, BCAST, 6000, b"to 6000"));
    assert_eq!(recv(&mut i, bcast).unwrap().0, b"to 6000");
    assert!(recv(&mut i, uni).is_none(), "a unicast-bound socket hears no broadcast");
    i.handle_packet(t(0), &udp_packet(HOST, 1, US, 6000, b"unicast"));
    assert_eq!(recv(&mut i, uni).unwrap().0, b"unicast");
    assert!(recv(&mut i, bcast).is_none());
}

#[test]
fn sending_to_broadcast_needs_permission() {
    let mut i = iface();
    let h = i.udp(t(0)).bind(addr(ANY, 0)).unwrap();
    for dst in [BCAST, Ipv4Addr::BROADCAST] {
        assert_eq!(
            i.udp(t(0)).send_to(h, addr(dst, 9), b"x", None),
            Err(SendError::PermissionDenied)
        );
        assert_eq!(
            i.udp(t(0)).connect(h, addr(dst, 9)),
            Err(ConnectError::PermissionDenied)
        );
    }
    assert!(drain(&mut i).is_empty());
    i.udp(t(0)).set_broadcast(h, true);
    i.udp(t(0)).send_to(h, addr(BCAST, 9), b"x", None).unwrap();
    i.udp(t(0))
        .send_to(h, addr(Ipv4Addr::BROADCAST, 9), b"y", None)
        .unwrap();
    let sent = sent_udp(&mut i);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].1, addr(BCAST, 9));
    assert_eq!(sent[1].1, addr(Ipv4Addr::BROADCAST, 9));
}

#[test]
fn long_datagram_is_truncated_to_the_buffer_and_full_length_reported() {
    let mut i = iface();
    let h = i.udp(t(0)).bind(addr(ANY, 7)).unwrap();
    let data: Vec<u8> = (0..100u8).collect();
    i.handle_packet(t(0), &udp_packet(HOST, 1, US, 7, &data));
    i.handle_packet(t(0), &udp_packet(HOST, 1, US, 7, b"next"));
    let mut small = [0u8; 10];
    let peeked = i.udp(t(0)).recv_from(h, &mut small, true).unwrap();
    assert_eq!((peeked.len, peeked.full_len), (10, 100));
    let got = i.udp(t(0)).recv_from(h, &mut small, false).unwrap();
    assert_eq!((got.len, got.full_len), (10, 100));
    assert_eq!(small, data[..10]);
    // The excess is gone: the next receive is the next datagram, as on Linux.
    assert_eq!(recv(&mut i, h).unwrap().0, b"next");
}

#[test]
fn receive_queue_overflow_drops_and_counts() {
    let mut i = iface();
    let h = i.udp(t(0)).bind(addr(ANY, 7)).unwrap();
    i.udp(t(0)).set_recv_limits(
        h,
        RecvLimits {
            bytes: 1000,
            datagrams: 3,
        },
    );
    for n in 0..5u8 {
        i.handle_packet(t(0), &udp_packet(HOST, 1, US, 7, &[n; 100]));
    }
    assert_eq!(i.stats().udp_rx_queue_full, 2, "datagram limit");
    i.handle_packet(t(0), &udp_packet(HOST, 1, US, 7, &[9; 900]));
    assert_eq!(i.stats().udp_rx_queue_full, 3, "byte limit");
    let info = i.udp_layer().sockets().next().unwrap();
    assert_eq!((info.recv_queue, info.rx_dropped), (300, 3));
    for n in 0..3u8 {
        assert_eq!(recv(&mut i, h).unwrap().0, vec![n; 100]);
    }
    // An empty queue always takes one datagram, even one over the byte limit.
    i.handle_packet(t(0), &udp_packet(HOST, 1, US, 7, &[1; 1500]));
    assert_eq!(recv(&mut i, h).unwrap().0.len(), 1500);
}

#[test]
fn connected_socket_hears_only_its_peer_and_gets_port_unreachable() {
    let mut i = iface();
    let h = i.udp(t(0)).bind(addr(ANY, 0)).unwrap();
    i.udp(t(0)).connect(h, addr(HOST, 9999)).unwrap();
    assert_eq!(
        i.udp_layer().local_addr(h).ip(),
        &US,
        "connect fixes the source address"
    );
    let port = i.udp_layer().local_addr(h).port();
    i.handle_packet(t(0), &udp_packet(HOST, 1234, US, port, b"stranger"));
    assert!(recv(&mut i, h).is_none());
    // As on Linux, nobody else heard it: the stranger gets port unreachable.
    assert_eq!(drain(&mut i).len(), 1);
    assert_eq!(i.stats().udp_no_port, 1);
    i.handle_packet(t(0), &udp_packet(HOST, 9999, US, port, b"peer"));
    assert_eq!(recv(&mut i, h).unwrap().0, b"peer");

    // The peer's kernel answers our datagram with port unreachable.
    i.udp(t(0)).send(h, b"hello?").unwrap();
    let sent = drain(&mut i);
    let err = icmp_error(kind::DEST_UNREACHABLE, unreachable::PORT, &sent[0]);
    i.handle_packet(t(1), &ip_packet(HOST, US, protocol::ICMP, 1, &err));
    assert!(i.udp_layer().can_recv(h));
    assert_eq!(
        i.udp(t(0)).recv_from(h, &mut [0; 8], false),
        Err(RecvError::Socket(SocketError::ConnectionRefused))
    );
    // Reported once.
    assert_eq!(i.udp(t(0)).recv_from(h, &mut [0; 8], false), Err(RecvError::WouldBlock));
    assert_eq!(i.stats().udp_icmp_errors, 1);
    // A later send reports a new error the same way.
    i.udp(t(2)).send(h, b"again?").unwrap();
    let sent = drain(&mut i);
    let err = icmp_error(kind::DEST_UNREACHABLE, unreachable::PORT, &sent[0]);
    i.handle_packet(t(3), &ip_packet(HOST, US, protocol::ICMP, 2, &err));
    assert_eq!(
        i.udp(t(3)).send(h, b"x"),
        Err(SendError::Socket(SocketError::ConnectionRefused))
    );
}

#[test]
fn unconnected_socket_ignores_icmp_errors_like_linux() {
    let mut i = iface();
    let h = i.udp(t(0)).bind(addr(ANY, 0)).unwrap();
    i.udp(t(0)).send_to(h, addr(HOST, 9999), b"hello?", None).unwrap();
    let sent = drain(&mut i);
    let err = icmp_error(kind::DEST_UNREACHABLE, unreachable::PORT, &sent[0]);
    i.handle_packet(t(1), &ip_packet(HOST, US, protocol::ICMP, 1, &err));
    assert!(!i.udp_layer().can_recv(h));
}

#[test]
fn send_checks_size_address_and_route() {
    let mut i = Interface::new(Config::new(Ipv4Cidr::new(US, 24).unwrap()));
    let h = i.udp(t(0)).bind(addr(ANY, 0)).unwrap();
    assert_eq!(
        i.udp(t(0)).send_to(h, addr(HOST, 7), &vec![0; 65_508], None),
        Err(SendError::MessageTooBig)
    );
    assert_eq!(
        i.udp(t(0)).send_to(h, addr(HOST, 0), b"x", None),
        Err(SendError::InvalidAddress)
    );
    assert_eq!(
        i.udp(t(0)).send_to(h, addr(ANY, 7), b"x", None),
        Err(SendError::InvalidAddress)
    );
    assert_eq!(i.udp(t(0)).send(h, b"x"), Err(SendError::NotConnected));
    // No gateway configured: off-subnet destinations are unreachable.
    assert_eq!(
        i.udp(t(0)).send_to(h, addr(Ipv4Addr::new(192, 0, 2, 1), 7), b"x", None),
        Err(SendError::NetUnreachable)
    );
    // The largest datagram goes out, fragmented.
    i.udp(t(0)).send_to(h, addr(HOST, 7), &vec![7; 65_507], None).unwrap();
    let sent = sent_udp(&mut i);
    assert_eq!(sent[0].2.len(), 65_507);
}

#[test]
fn per_datagram_and_socket_ttl() {
    let mut i = iface();
    let h = i.udp(t(0)).bind(addr(ANY, 0)).unwrap();
    i.udp(t(0)).send_to(h, addr(HOST, 7), b"a", Some(3)).unwrap();
    i.udp(t(0)).set_ttl(h, 9);
    i.udp(t(0)).send_to(h, addr(HOST, 7), b"b", None).unwrap();
    let ttls: Vec<u8> = host_receive(&drain(&mut i)).iter().map(|(h, _)| h.header.ttl).collect();
    assert_eq!(ttls, [3, 9]);
}

#[test]
fn bad_udp_is_dropped_and_counted_zero_checksum_accepted() {
    let mut i = iface();
    let h = i.udp(t(0)).bind(addr(ANY, 7)).unwrap();
    let mut bad = udp_packet(HOST, 1, US, 7, b"data");
    bad[30] ^= 1;
    i.handle_packet(t(0), &bad);
    assert_eq!(i.stats().udp_bad_checksum, 1);
    let mut none = udp_packet(HOST, 1, US, 7, b"data");
    none[26] = 0;
    none[27] = 0;
    i.handle_packet(t(0), &none);
    assert_eq!(recv(&mut i, h).unwrap().0, b"data");
    i.handle_packet(t(0), &ip_packet(HOST, US, protocol::UDP, 1, &[0, 1, 0]));
    assert_eq!(i.stats().udp_truncated, 1);
    assert!(drain(&mut i).is_empty(), "no ICMP for malformed datagrams");
}

#[test]
fn events_announce_readable_sockets_once_until_taken() {
    let mut i = iface();
    let h = i.udp(t(0)).bind(addr(ANY, 7)).unwrap();
    i.handle_packet(t(0), &udp_packet(HOST, 1, US, 7, b"1"));
    i.handle_packet(t(0), &udp_packet(HOST, 1, US, 7, b"2"));
    let mut ev = Vec::new();
    i.take_events(&mut ev);
    assert_eq!(ev, [crate::socket::SocketEvent::Udp(h)]);
    ev.clear();
    i.take_events(&mut ev);
    assert!(ev.is_empty());
    i.handle_packet(t(0), &udp_packet(HOST, 1, US, 7, b"3"));
    i.take_events(&mut ev);
    assert_eq!(ev.len(), 1);
}

#[test]
fn datagram_to_our_own_closed_port_is_refused_over_loopback() {
    let mut i = iface();
    let h = i.udp(t(0)).bind(addr(ANY, 0)).unwrap();
    i.udp(t(0)).connect(h, addr(US, 9)).unwrap();
    i.udp(t(0)).send(h, b"anyone?").unwrap();
    for _ in 0..4 {
        i.handle_timeout(t(0));
    }
    assert_eq!(
        i.udp(t(0)).recv_from(h, &mut [0; 8], false),
        Err(RecvError::Socket(SocketError::ConnectionRefused))
    );
    assert!(drain(&mut i).is_empty(), "nothing touched the link");
}

/// A socket refused for a full transmit queue gets an event once the queue
/// drains, so a Poll sees it writable again (Linux's EPOLLOUT).
#[test]
fn a_socket_refused_for_a_full_queue_gets_an_event_when_it_drains() {
    let mut config = Config::new(Ipv4Cidr::new(US, 24).unwrap());
    config.gateway = Some(HOST);
    config.tx_queue_limit = 2000;
    let mut i = Interface::new(config);
    let h = i.udp(t(0)).bind(addr(ANY, 5000)).unwrap();
    let big = [7u8; 1400];
    assert_eq!(i.udp(t(0)).send_to(h, addr(HOST, 9), &big, None), Ok(()));
    assert_eq!(
        i.udp(t(0)).send_to(h, addr(HOST, 9), &big, None),
        Err(SendError::QueueFull)
    );
    let mut ev = Vec::new();
    i.take_events(&mut ev);
    assert!(ev.is_empty(), "nothing yet: the queue is full");
    assert_eq!(drain(&mut i).len(), 1);
    i.note_tx_space(t(0));
    i.take_events(&mut ev);
    assert_eq!(ev, [crate::socket::SocketEvent::Udp(h)]);
    ev.clear();
    i.note_tx_space(t(0));
    i.take_events(&mut ev);
    assert!(ev.is_empty(), "once per refusal");
    assert_eq!(i.udp(t(0)).send_to(h, addr(HOST, 9), &big, None), Ok(()));
}
