//! Targets `ipv4`, `icmp`, `udp`, `tcp`: each header parser on its own.
//!
//! The input's first byte is a control byte; bit 0 asks for the rest's
//! checksum to be made right before parsing, so that the fuzzer reaches
//! what lies behind it (TCP options, say). Each target checks what a
//! successful parse promises, that the same representation's writer
//! produces a header the parser reads back unchanged, and that the reader
//! of quotes (what an ICMP error carries) agrees with the full parser.

use crate::packet::{fix_icmp_checksum, fix_ipv4_checksum, fix_tcp_checksum, fix_udp_checksum};
use std::net::Ipv4Addr;
use tunstack::wire::checksum;
use tunstack::wire::icmp::{self as icmp_wire, IcmpMessage, kind};
use tunstack::wire::ipv4::{self as ipv4_wire, Ipv4Header, Ipv4Packet};
use tunstack::wire::seq::SeqNum;
use tunstack::wire::tcp::{self as tcp_wire, TcpSegment, flags};
use tunstack::wire::udp::{self as udp_wire, UdpDatagram};

/// The pseudo-header's addresses for UDP and TCP.
const SRC: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

/// The control byte and the bytes to parse, the checksum fixed if asked.
fn split(data: &[u8], fix: impl FnOnce(&mut Vec<u8>)) -> Option<Vec<u8>> {
    let (&control, rest) = data.split_first()?;
    let mut buf = rest.to_vec();
    if control & 1 != 0 {
        fix(&mut buf);
    }
    Some(buf)
}

/// IPv4: `Ipv4Packet::parse`, `Ipv4Header::parse_quote` and `emit`.
pub fn ipv4(data: &[u8]) {
    let Some(buf) = split(data, |b| fix_ipv4_checksum(b)) else {
        return;
    };
    let quote = Ipv4Header::parse_quote(&buf);
    if let Some((h, rest)) = quote {
        assert!(h.header_len >= ipv4_wire::HEADER_LEN && h.header_len <= 60 && h.header_len % 4 == 0);
        assert_eq!(h.header_len + rest.len(), buf.len());
    }
    let Ok(p) = Ipv4Packet::parse(&buf) else { return };
    let h = p.header;
    assert_eq!(p.header_bytes(), &buf[..h.header_len]);
    assert_eq!(p.payload().len(), h.payload_len);
    assert!(h.header_len + h.payload_len <= buf.len(), "payload beyond the buffer");
    assert_eq!(h.frag_offset % 8, 0);
    assert!(checksum::verify(p.header_bytes()));
    let (quoted, _) = quote.expect("a valid packet's header is a valid quote");
    assert_eq!(quoted, h, "the quote reader and the parser disagree");

    // Our writer's header (no options) for the same fields reads back the same.
    let ours = Ipv4Header {
        header_len: ipv4_wire::HEADER_LEN,
        ..h
    };
    let mut out = vec![0u8; ipv4_wire::HEADER_LEN + h.payload_len];
    ours.emit(&mut out);
    out[ipv4_wire::HEADER_LEN..].copy_from_slice(p.payload());
    let back = Ipv4Packet::parse(&out).expect("our own header parses");
    assert_eq!(back.header, ours);
    assert_eq!(back.payload(), p.payload());
}

/// ICMP: `IcmpMessage::parse`, `emit`, the echo reply written in place,
/// and the datagram an error quotes.
pub fn icmp(data: &[u8]) {
    let Some(buf) = split(data, |b| fix_icmp_checksum(b)) else {
        return;
    };
    // The quote readers take any bytes; so does a quote inside a quote.
    quoted_datagram(&buf);
    if let Some(m) = IcmpMessage::parse_quote(&buf) {
        assert_eq!(m.data, &buf[icmp_wire::HEADER_LEN..]);
    }
    let Ok(m) = IcmpMessage::parse(&buf) else { return };
    assert_eq!((m.kind, m.code), (buf[0], buf[1]));
    assert_eq!(m.data, &buf[icmp_wire::HEADER_LEN..]);
    // The writer reproduces the message; checksums 0 and 0xffff are one value.
    let mut out = Vec::new();
    m.emit(&mut out);
    assert_eq!(out.len(), buf.len());
    assert_eq!((&out[..2], &out[4..]), (&buf[..2], &buf[4..]));
    assert!(checksum::verify(&out), "our ICMP checksum does not verify");
    if m.kind == kind::ECHO_REQUEST {
        let mut reply = Vec::new();
        icmp_wire::write_echo_reply(&mut reply, &buf);
        let r = IcmpMessage::parse(&reply).expect("our echo reply's checksum verifies");
        assert_eq!(
            (r.kind, r.code, r.rest, r.data),
            (kind::ECHO_REPLY, m.code, m.rest, m.data)
        );
    }
    if icmp_wire::is_error(m.kind) {
        quoted_datagram(m.data);
    }
}

/// Reads the datagram an ICMP error quotes, as `icmp.rs` and the layers do.
fn quoted_datagram(quote: &[u8]) {
    let Some((h, transport)) = Ipv4Header::parse_quote(quote) else {
        return;
    };
    assert_eq!(h.header_len + transport.len(), quote.len());
    match h.protocol {
        tcp_wire::PROTOCOL => {
            if let Some(s) = TcpSegment::parse_quote(transport) {
                assert_eq!(s.src_port, u16::from_be_bytes([transport[0], transport[1]]));
                assert_eq!(
                    s.seq,
                    SeqNum(u32::from_be_bytes([
                        transport[4],
                        transport[5],
                        transport[6],
                        transport[7]
                    ]))
                );
                assert!(s.payload.is_empty());
            }
        }
        udp_wire::PROTOCOL => {
            if let Some(d) = UdpDatagram::parse_quote(transport) {
                assert_eq!(d.dst_port, u16::from_be_bytes([transport[2], transport[3]]));
                assert_eq!(d.payload, &transport[udp_wire::HEADER_LEN..]);
            }
        }
        icmp_wire::PROTOCOL => {
            if let Some(m) = IcmpMessage::parse_quote(transport) {
                assert_eq!(m.data.len() + icmp_wire::HEADER_LEN, transport.len());
            }
        }
        _ => {}
    }
}

/// UDP: `UdpDatagram::parse`, `parse_quote` and `emit`.
pub fn udp(data: &[u8]) {
    let Some(buf) = split(data, |b| fix_udp_checksum(b, SRC, DST)) else {
        return;
    };
    let quote = UdpDatagram::parse_quote(&buf);
    let Ok(d) = UdpDatagram::parse(&buf, SRC, DST) else {
        return;
    };
    let len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    assert_eq!(
        d.payload,
        &buf[udp_wire::HEADER_LEN..len],
        "payload not trimmed to the length field"
    );
    let q = quote.expect("a valid datagram is a valid quote");
    assert_eq!((q.src_port, q.dst_port), (d.src_port, d.dst_port));
    let mut out = Vec::new();
    d.emit(&mut out, SRC, DST);
    assert_eq!(&out[..6], &buf[..6], "the writer changed ports or length");
    assert_ne!(&out[6..8], &[0, 0], "we always send a checksum");
    assert_eq!(UdpDatagram::parse(&out, SRC, DST), Ok(d));
}

/// TCP: `TcpSegment::parse` with its options, `parse_quote` and `emit`.
pub fn tcp(data: &[u8]) {
    let Some(buf) = split(data, |b| fix_tcp_checksum(b, SRC, DST)) else {
        return;
    };
    let quote = TcpSegment::parse_quote(&buf);
    let Ok(s) = TcpSegment::parse(&buf, SRC, DST) else {
        return;
    };
    let offset = usize::from(buf[12] >> 4) * 4;
    assert_eq!(s.payload, &buf[offset..]);
    assert_eq!(s.flags & !0x3f, 0);
    let syn_fin = u32::from(s.has(flags::SYN)) + u32::from(s.has(flags::FIN));
    assert_eq!(s.seg_len(), s.payload.len() as u32 + syn_fin);
    assert!(
        s.options.window_scale.is_none_or(|w| w <= 14),
        "RFC 7323: shifts above 14 read as 14"
    );
    assert!(s.options.sack.len() <= 4);
    let q = quote.expect("a valid segment is a valid quote");
    assert_eq!(
        (q.src_port, q.dst_port, q.seq, q.ack, q.flags, q.window),
        (s.src_port, s.dst_port, s.seq, s.ack, s.flags, s.window),
        "the quote reader and the parser disagree"
    );
    // What the writer makes of the segment reads back the same, when its
    // options fit a header (the parser can gather more SACK blocks than fit
    // beside timestamps; the stack never sends such a set).
    if s.options.len() <= 40 {
        let mut out = Vec::new();
        s.emit(&mut out, SRC, DST);
        let back = TcpSegment::parse(&out, SRC, DST).expect("our own segment parses");
        // The acknowledgment field is only sent with ACK.
        let ack = if s.has(flags::ACK) { s.ack } else { SeqNum(0) };
        assert_eq!(back, TcpSegment { ack, ..s });
    }
}
