//! Interface-level tests: packets in, packets out, counters.

use super::*;
use crate::ip;
use crate::rand::Rng;
use crate::testutil::*;
use crate::time::Duration;
use crate::wire::checksum;
use crate::wire::icmp::{IcmpMessage, kind, time_exceeded, unreachable};
use crate::wire::ipv4::HEADER_LEN;
use crate::wire::ipv4::Ipv4Packet;
use std::net::SocketAddrV4;

#[test]
fn echo_request_gets_a_reply_with_ttl_64_and_copied_fields() {
    let mut i = iface();
    i.handle_packet(t(0), &ping_packet(US, 5, b"hello, tunstack"));
    let got = host_receive(&drain(&mut i));
    assert_eq!(got.len(), 1);
    let (hdr, payload) = &got[0];
    assert_eq!((hdr.header.src, hdr.header.dst, hdr.header.ttl), (US, HOST, 64));
    let m = IcmpMessage::parse(payload).unwrap();
    assert_eq!((m.kind, m.code), (kind::ECHO_REPLY, 0));
    assert_eq!((m.echo_ident(), m.echo_seq()), (0x77, 5));
    assert_eq!(m.data, b"hello, tunstack");
    assert_eq!(i.stats().icmp_tx_echo_replies, 1);
}

#[test]
fn echo_to_directed_and_limited_broadcast_is_answered_from_our_address() {
    let mut i = iface();
    i.handle_packet(t(0), &ping_packet(BCAST, 1, b"b"));
    i.handle_packet(t(0), &ping_packet(Ipv4Addr::BROADCAST, 2, b"b"));
    let got = host_receive(&drain(&mut i));
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(h, _)| h.header.src == US && h.header.dst == HOST));
}

#[test]
fn broadcast_echo_can_be_ignored_by_configuration() {
    let mut c = config();
    c.answer_broadcast_echo = false;
    let mut i = Interface::new(c);
    i.handle_packet(t(0), &ping_packet(BCAST, 1, b"b"));
    assert!(drain(&mut i).is_empty());
    assert_eq!(i.stats().icmp_broadcast_echo_ignored, 1);
}

#[test]
fn large_echo_is_reassembled_and_the_reply_fragmented() {
    for size in [8000usize, 60_000] {
        let mut i = iface();
        let data: Vec<u8> = (0..size).map(|n| (n % 253) as u8).collect();
        let whole = ping_packet(US, 9, &data);
        // Fragment the request as the host would, at 1480-byte payloads, in reverse order.
        let icmp = &whole[HEADER_LEN..];
        let mut frags = Vec::new();
        let mut off = 0;
        while off < icmp.len() {
            let end = (off + 1480).min(icmp.len());
            frags.push(ip_fragment(HOST, US, 1, 4242, &icmp[off..end], off, end < icmp.len()));
            off = end;
        }
        frags.reverse();
        for f in &frags {
            i.handle_packet(t(0), f);
        }
        let sent = drain(&mut i);
        assert!(sent.len() > 1, "reply of {size} bytes must be fragmented");
        let got = host_receive(&sent);
        assert_eq!(got.len(), 1);
        let m = IcmpMessage::parse(&got[0].1).unwrap();
        assert_eq!(m.kind, kind::ECHO_REPLY);
        assert_eq!(m.data, &data[..]);
        assert_eq!(i.stats().frag_reassembled, 1);
        assert_eq!(i.stats().frag_tx_fragments, sent.len() as u64);
    }
}

#[test]
fn malformed_packets_are_dropped_and_counted() {
    let good = ping_packet(US, 1, b"abcdefgh");
    let refresh = |p: &mut Vec<u8>| {
        let ihl = usize::from(p[0] & 0xf) * 4;
        p[10] = 0;
        p[11] = 0;
        let c = checksum::checksum(&p[..ihl.min(p.len())]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    };
    let mut bad_ip_csum = good.clone();
    bad_ip_csum[10] ^= 0xff;
    let mut bad_icmp_csum = good.clone();
    bad_icmp_csum[22] ^= 0xff;
    let truncated = good[..12].to_vec();
    let mut too_long = good.clone();
    too_long[2..4].copy_from_slice(&200u16.to_be_bytes());
    refresh(&mut too_long);
    let mut ihl4 = good.clone();
    ihl4[0] = 0x44;
    let cases: [(&str, Vec<u8>); 5] = [
        ("ip_bad_checksum", bad_ip_csum),
        ("icmp_bad_checksum", bad_icmp_csum),
        ("ip_truncated_header", truncated),
        ("ip_total_len_exceeds_packet", too_long),
        ("ip_bad_ihl", ihl4),
    ];
    let mut i = iface();
    for (counter, pkt) in &cases {
        let before = i.stats().get(counter).unwrap();
        i.handle_packet(t(0), pkt);
        assert_eq!(i.stats().get(counter).unwrap(), before + 1, "{counter}");
        assert!(drain(&mut i).is_empty(), "{counter}: no answer to a bad packet");
    }
    // Still answers good pings afterwards.
    i.handle_packet(t(0), &good);
    assert_eq!(drain(&mut i).len(), 1);
}

#[test]
fn packets_not_for_us_or_from_martians_are_dropped() {
    let mut i = iface();
    i.handle_packet(t(0), &ping_packet(Ipv4Addr::new(10, 200, 0, 3), 1, b"x"));
    i.handle_packet(t(0), &ping_packet(Ipv4Addr::new(224, 0, 0, 1), 1, b"x"));
    assert_eq!(i.stats().ip_not_for_us, 2);
    for src in [
        Ipv4Addr::new(224, 0, 0, 9),
        Ipv4Addr::LOCALHOST,
        US,
        BCAST,
        Ipv4Addr::BROADCAST,
    ] {
        i.handle_packet(t(0), &ip_packet(src, US, 1, 1, &echo_request(1, 1, b"x")));
    }
    assert_eq!(i.stats().ip_bad_source, 5);
    assert!(drain(&mut i).is_empty());
    let mut ipv6 = vec![0u8; 40];
    ipv6[0] = 0x60;
    i.handle_packet(t(0), &ipv6);
    assert_eq!(i.stats().ip_not_ipv4, 1);
}

#[test]
fn unknown_protocol_draws_protocol_unreachable_quoting_the_datagram() {
    let mut i = iface();
    let pkt = ip_packet(HOST, US, 99, 7, b"some payload of protocol 99");
    i.handle_packet(t(0), &pkt);
    let got = host_receive(&drain(&mut i));
    assert_eq!(got.len(), 1);
    let m = IcmpMessage::parse(&got[0].1).unwrap();
    assert_eq!((m.kind, m.code), (kind::DEST_UNREACHABLE, unreachable::PROTOCOL));
    assert_eq!(m.data, &pkt[..], "quotes the whole (short) datagram");
    assert_eq!(i.stats().ip_unknown_protocol, 1);
}

#[test]
fn no_icmp_error_for_broadcasts() {
    let mut i = iface();
    i.handle_packet(t(0), &ip_packet(HOST, BCAST, 99, 1, b"x"));
    i.handle_packet(t(0), &ip_packet(HOST, Ipv4Addr::BROADCAST, 99, 2, b"x"));
    assert!(drain(&mut i).is_empty());
    assert_eq!(i.stats().icmp_error_suppressed, 2);
}

#[test]
fn no_icmp_error_from_unspecified_source() {
    let mut i = iface();
    i.handle_packet(t(0), &ip_packet(Ipv4Addr::UNSPECIFIED, US, 99, 1, b"x"));
    assert!(drain(&mut i).is_empty());
    assert_eq!(i.stats().icmp_error_suppressed, 1);
}

#[test]
fn icmp_errors_are_rate_limited() {
    let mut c = config();
    c.icmp_error_rate = 10;
    c.icmp_error_burst = 5;
    let mut i = Interface::new(c);
    for n in 0..20 {
        i.handle_packet(t(0), &ip_packet(HOST, US, 99, n, b"x"));
    }
    assert_eq!(drain(&mut i).len(), 5);
    assert_eq!(i.stats().icmp_rate_limited, 15);
    // 100 ms later one token has come back.
    i.handle_packet(t(100), &ip_packet(HOST, US, 99, 100, b"x"));
    i.handle_packet(t(100), &ip_packet(HOST, US, 99, 101, b"x"));
    assert_eq!(drain(&mut i).len(), 1);
}

/// A first fragment of datagram `ident` carrying `payload`, more to come.
fn first_fragment(protocol: u8, ident: u16, payload: &[u8]) -> Vec<u8> {
    ip_fragment(HOST, US, protocol, ident, payload, 0, true)
}

#[test]
fn reassembly_timeout_sends_time_exceeded_and_sets_the_deadline() {
    let mut i = iface();
    assert_eq!(i.poll_timeout(), None);
    let first = first_fragment(1, 500, &echo_request(1, 1, &[0xab; 1000])[..1000]);
    i.handle_packet(t(1000), &first);
    let deadline = t(1000) + Duration::from_secs(30);
    assert_eq!(i.poll_timeout(), Some(deadline));
    i.handle_timeout(deadline - Duration::from_millis(1));
    assert!(drain(&mut i).is_empty());
    i.handle_timeout(deadline);
    assert_eq!(i.poll_timeout(), None);
    let got = host_receive(&drain(&mut i));
    assert_eq!(got.len(), 1);
    let m = IcmpMessage::parse(&got[0].1).unwrap();
    assert_eq!((m.kind, m.code), (kind::TIME_EXCEEDED, time_exceeded::REASSEMBLY));
    assert_eq!(&m.data[..20], &first[..20], "quotes the first fragment's header");
    assert_eq!(&m.data[20..28], &first[20..28], "and 8 bytes of its payload");
}

#[test]
fn never_an_icmp_error_about_an_icmp_error() {
    let mut i = iface();
    // A fragmented ICMP error (destination unreachable) that never completes.
    let mut err = Vec::new();
    IcmpMessage {
        kind: kind::DEST_UNREACHABLE,
        code: 3,
        rest: [0; 4],
        data: &[0u8; 100],
    }
    .emit(&mut err);
    i.handle_packet(t(0), &first_fragment(1, 600, &err[..96]));
    i.handle_timeout(t(31_000));
    assert!(drain(&mut i).is_empty());
    assert_eq!(i.stats().icmp_error_suppressed, 1);
}

#[test]
fn no_route_means_no_send() {
    let mut c = config();
    c.gateway = None;
    let mut i = Interface::new(c);
    let from_afar = Ipv4Addr::new(192, 0, 2, 1);
    i.handle_packet(t(0), &ip_packet(from_afar, US, 1, 1, &echo_request(1, 1, b"x")));
    assert!(drain(&mut i).is_empty());
    assert_eq!(i.stats().ip_tx_no_route, 1);
    // With the default route through the host, it is answered.
    let mut i = iface();
    i.handle_packet(t(0), &ip_packet(from_afar, US, 1, 1, &echo_request(1, 1, b"x")));
    assert_eq!(drain(&mut i).len(), 1);
}

#[test]
fn ip_ids_differ_between_consecutive_replies() {
    let mut i = iface();
    i.handle_packet(t(0), &ping_packet(US, 1, b"a"));
    i.handle_packet(t(0), &ping_packet(US, 2, b"a"));
    let sent = drain(&mut i);
    let a = Ipv4Packet::parse(&sent[0]).unwrap().header.ident;
    let b = Ipv4Packet::parse(&sent[1]).unwrap().header.ident;
    assert_ne!(a, b);
}

/// Random and mutated packets: the interface never panics, and every packet
/// is accounted for (delivered, or dropped under some counter).
#[test]
fn random_and_mutated_packets_never_panic() {
    let mut i = iface();
    let mut rng = Rng::new(2024);
    // Sockets for ICMP errors to reach: their quotes are parsed by UDP and the echo sockets.
    let udp = i.udp(t(0)).bind(SocketAddrV4::new(US, 5353)).unwrap();
    i.udp(t(0)).connect(udp, SocketAddrV4::new(HOST, 53)).unwrap();
    i.udp(t(0)).set_recv_errors(udp, true);
    let echo = i.ping(t(0)).bind();
    let ident = i.ping_layer().ident(echo);
    let our_udp = udp_packet(US, 5353, HOST, 53, b"query");
    let our_echo = ip_packet(US, HOST, ip::protocol::ICMP, 9, &echo_request(ident, 4, b"probe"));
    let from_host = |icmp: Vec<u8>| ip_packet(HOST, US, ip::protocol::ICMP, 4, &icmp);
    let seeds = [
        ping_packet(US, 1, b"seed packet"),
        ip_packet(HOST, US, 99, 3, b"unknown protocol"),
        first_fragment(1, 700, &echo_request(1, 1, &[5; 64])[..64]),
        from_host(icmp_error(kind::DEST_UNREACHABLE, unreachable::PORT, &our_udp)),
        from_host(icmp_error(kind::TIME_EXCEEDED, time_exceeded::TTL, &our_echo)),
    ];
    let mut buf = vec![0u8; i.config().mtu];
    for round in 0..50_000u32 {
        let mut p = if round % 3 == 0 {
            let len = rng.below(80) as usize;
            (0..len).map(|_| rng.next_u32() as u8).collect::<Vec<u8>>()
        } else {
            seeds[rng.below(seeds.len() as u64) as usize].clone()
        };
        // Flip a few bytes, sometimes fixing the header checksum so deeper code is reached.
        for _ in 0..rng.below(4) {
            if !p.is_empty() {
                let at = rng.below(p.len() as u64) as usize;
                p[at] = rng.next_u32() as u8;
            }
        }
        if p.len() >= 20 && rng.chance(0.7) {
            let ihl = (usize::from(p[0] & 0xf) * 4).clamp(20, p.len());
            p[10] = 0;
            p[11] = 0;
            let c = checksum::checksum(&p[..ihl]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            // And the ICMP checksum, so mutated quotes reach the quote parsers.
            if p[9] == ip::protocol::ICMP && p.len() >= ihl + 4 && rng.chance(0.7) {
                p[ihl + 2] = 0;
                p[ihl + 3] = 0;
                let c = checksum::checksum(&p[ihl..]);
                p[ihl + 2..ihl + 4].copy_from_slice(&c.to_be_bytes());
            }
        }
        i.handle_packet(t(u64::from(round)), &p);
        i.handle_timeout(t(u64::from(round)));
        while i.poll_transmit(t(u64::from(round)), &mut buf).is_some() {}
        while i.udp(t(0)).recv_error(udp).is_some() {}
        while i.ping(t(0)).recv(echo).is_some() {}
        let _ = i.udp(t(0)).take_error(udp);
    }
    // The mutations reached every layer, so the test exercised more than the header check.
    let s = i.stats();
    assert_eq!(s.link_rx_packets, 50_000);
    for (name, min) in [
        ("ip_bad_checksum", 100),
        ("icmp_rx_messages", 1000),
        ("icmp_tx_echo_replies", 100),
        ("frag_rx_fragments", 1000),
        ("ip_unknown_protocol", 100),
        ("icmp_rx_errors", 1000),
        ("udp_icmp_errors", 100),
    ] {
        assert!(s.get(name).unwrap() >= min, "{name} below {min}: {s}");
    }
}

/// A reassembled datagram carries its first fragment's header (RFC 791
/// §3.2), whatever fragment completes it: here the TTL an echo socket reports.
#[test]
fn reassembled_datagram_has_the_first_fragments_header() {
    let mut i = iface();
    let echo = i.ping(t(0)).bind();
    let ident = i.ping_layer().ident(echo);
    let mut reply = Vec::new();
    IcmpMessage::echo(kind::ECHO_REPLY, ident, 3, &[9u8; 40]).emit(&mut reply);
    let fragment = |ttl: u8, offset: usize, more: bool| {
        let part = &reply[offset..if more { offset + 24 } else { reply.len() }];
        let mut h = crate::wire::ipv4::Ipv4Header::new(HOST, US, ip::protocol::ICMP, ttl, 77, part.len());
        h.frag_offset = offset;
        h.more_fragments = more;
        let mut p = vec![0u8; HEADER_LEN + part.len()];
        h.emit(&mut p);
        p[HEADER_LEN..].copy_from_slice(part);
        p
    };
    // The last fragment (TTL 20) arrives first; the first (TTL 10) completes the datagram.
    i.handle_packet(t(0), &fragment(20, 24, false));
    i.handle_packet(t(0), &fragment(10, 0, true));
    match i.ping(t(0)).recv(echo) {
        Some(crate::ping::IcmpEvent::Reply { ttl, seq, .. }) => assert_eq!((ttl, seq), (10, 3)),
        other => panic!("expected the reassembled reply, got {other:?}"),
    }
    // And the other way round.
    i.handle_packet(t(0), &fragment(10, 0, true));
    i.handle_packet(t(0), &fragment(20, 24, false));
    match i.ping(t(0)).recv(echo) {
        Some(crate::ping::IcmpEvent::Reply { ttl, .. }) => assert_eq!(ttl, 10),
        other => panic!("expected the reassembled reply, got {other:?}"),
    }
}
