//! Packets for the targets to send: correct headers, checksums included,
//! around whatever fields a target chose, and the check that what the
//! stack sends back is valid.

use std::net::Ipv4Addr;
use tunstack::wire::checksum::{self, Checksum};
use tunstack::wire::icmp::IcmpMessage;
use tunstack::wire::ipv4::Ipv4Packet;
use tunstack::wire::tcp::TcpSegment;
use tunstack::wire::udp::UdpDatagram;
use tunstack::wire::{icmp as icmp_wire, tcp as tcp_wire, udp as udp_wire};

/// The IPv4 header fields a target sets.
#[derive(Clone, Copy, Debug)]
pub struct IpFields {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub ident: u16,
    pub dont_fragment: bool,
}

/// Most option bytes an IPv4 or TCP header holds.
const MAX_OPTIONS: usize = 40;

/// `options` cut to 40 bytes and padded with zeros (end of options) to a
/// multiple of 4, as both IPv4 and TCP headers need.
fn padded(options: &[u8]) -> Vec<u8> {
    let mut o = options[..options.len().min(MAX_OPTIONS)].to_vec();
    o.resize(o.len().next_multiple_of(4), 0);
    o
}

/// One IPv4 packet: the header with `options`, then `payload` (cut so the
/// packet stays within 65535 bytes) at fragment offset `offset` (bytes,
/// rounded down to a multiple of 8), with MF as `more` says.
pub fn ipv4(f: &IpFields, options: &[u8], payload: &[u8], offset: usize, more: bool) -> Vec<u8> {
    let options = padded(options);
    let header_len = 20 + options.len();
    let total = (header_len + payload.len()).min(usize::from(u16::MAX));
    let flags_offset = (u16::from(f.dont_fragment) << 14) | (u16::from(more) << 13) | ((offset / 8) as u16 & 0x1fff);
    let mut v = Vec::with_capacity(total);
    v.extend_from_slice(&[0x40 | (header_len / 4) as u8, 0]);
    v.extend_from_slice(&(total as u16).to_be_bytes());
    v.extend_from_slice(&f.ident.to_be_bytes());
    v.extend_from_slice(&flags_offset.to_be_bytes());
    v.extend_from_slice(&[f.ttl, f.protocol, 0, 0]);
    v.extend_from_slice(&f.src.octets());
    v.extend_from_slice(&f.dst.octets());
    v.extend_from_slice(&options);
    let sum = checksum::checksum(&v[..header_len]);
    v[10..12].copy_from_slice(&sum.to_be_bytes());
    v.extend_from_slice(&payload[..total - header_len]);
    v
}

/// `payload` as fragments cut at `cuts` (in 8-byte units, any order, out
/// of range ones ignored); the first carries the options. One packet,
/// not a fragment, when no cut falls inside the payload.
pub fn fragments(f: &IpFields, options: &[u8], payload: &[u8], cuts: &[u16]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) * 8)
        .filter(|c| *c > 0 && *c < payload.len())
        .collect();
    at.sort_unstable();
    at.dedup();
    at.push(payload.len());
    let mut out = Vec::new();
    let mut start = 0;
    for end in at {
        let opts = if start == 0 { options } else { &[] };
        let more = end < payload.len();
        out.push(ipv4(f, opts, &payload[start..end], start, more));
        start = end;
    }
    out
}

/// The fields of a TCP segment a target sets; options are raw bytes.
#[derive(Clone, Copy, Debug)]
pub struct TcpFields<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub options: &'a [u8],
}

/// A TCP segment (the IP payload) from `src` to `dst`, checksum included.
pub fn tcp(src: Ipv4Addr, dst: Ipv4Addr, f: &TcpFields<'_>, payload: &[u8]) -> Vec<u8> {
    let options = padded(f.options);
    let header_len = tcp_wire::HEADER_LEN + options.len();
    let mut v = Vec::with_capacity(header_len + payload.len());
    v.extend_from_slice(&f.src_port.to_be_bytes());
    v.extend_from_slice(&f.dst_port.to_be_bytes());
    v.extend_from_slice(&f.seq.to_be_bytes());
    v.extend_from_slice(&f.ack.to_be_bytes());
    v.extend_from_slice(&[((header_len / 4) as u8) << 4, f.flags]);
    v.extend_from_slice(&f.window.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(&options);
    v.extend_from_slice(payload);
    fix_tcp_checksum(&mut v, src, dst);
    v
}

/// TCP options in Linux's order, each present only if given.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpOptionFields<'a> {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: Option<(u32, u32)>,
    pub sack: &'a [(u32, u32)],
}

/// The option bytes for `o` (SACK blocks beyond what fits are left out).
pub fn tcp_options(o: &TcpOptionFields<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(mss) = o.mss {
        v.extend_from_slice(&[2, 4]);
        v.extend_from_slice(&mss.to_be_bytes());
    }
    if o.sack_permitted {
        v.extend_from_slice(&[1, 1, 4, 2]);
    }
    if let Some((val, ecr)) = o.timestamps {
        v.extend_from_slice(&[1, 1, 8, 10]);
        v.extend_from_slice(&val.to_be_bytes());
        v.extend_from_slice(&ecr.to_be_bytes());
    }
    if let Some(shift) = o.window_scale {
        v.extend_from_slice(&[1, 3, 3, shift]);
    }
    let room = (MAX_OPTIONS - v.len()).saturating_sub(4) / 8;
    let blocks = &o.sack[..o.sack.len().min(room)];
    if !blocks.is_empty() {
        v.extend_from_slice(&[1, 1, 5, (2 + 8 * blocks.len()) as u8]);
        for (l, r) in blocks {
            v.extend_from_slice(&l.to_be_bytes());
            v.extend_from_slice(&r.to_be_bytes());
        }
    }
    v
}

/// A UDP datagram (the IP payload), with its checksum or with none (zero).
pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, ports: (u16, u16), payload: &[u8], with_checksum: bool) -> Vec<u8> {
    let payload = &payload[..payload.len().min(udp_wire::MAX_PAYLOAD)];
    let mut v = Vec::new();
    UdpDatagram {
        src_port: ports.0,
        dst_port: ports.1,
        payload,
    }
    .emit(&mut v, src, dst);
    if !with_checksum {
        v[6..8].copy_from_slice(&[0, 0]);
    }
    v
}

/// An ICMP message, checksum included.
pub fn icmp(kind: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    IcmpMessage { kind, code, rest, data }.emit(&mut v);
    v
}

/// Rewrites the checksum of the TCP segment `v` (at least a header long).
pub fn fix_tcp_checksum(v: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    if v.len() < tcp_wire::HEADER_LEN || v.len() > usize::from(u16::MAX) {
        return;
    }
    v[16..18].copy_from_slice(&[0, 0]);
    let sum = Checksum::new()
        .add_pseudo_header(src, dst, tcp_wire::PROTOCOL, v.len() as u16)
        .add_bytes(v)
        .finish();
    v[16..18].copy_from_slice(&sum.to_be_bytes());
}

/// Rewrites the checksum of the UDP datagram `v`, if its length field is usable.
pub fn fix_udp_checksum(v: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    if v.len() < udp_wire::HEADER_LEN {
        return;
    }
    let len = usize::from(u16::from_be_bytes([v[4], v[5]]));
    if len < udp_wire::HEADER_LEN || len > v.len() {
        return;
    }
    v[6..8].copy_from_slice(&[0, 0]);
    let sum = Checksum::new()
        .add_pseudo_header(src, dst, udp_wire::PROTOCOL, len as u16)
        .add_bytes(&v[..len])
        .finish();
    v[6..8].copy_from_slice(&if sum == 0 { 0xffff } else { sum }.to_be_bytes());
}

/// Rewrites the checksum of the ICMP message `v`.
pub fn fix_icmp_checksum(v: &mut [u8]) {
    if v.len() < icmp_wire::HEADER_LEN {
        return;
    }
    v[2..4].copy_from_slice(&[0, 0]);
    let sum = checksum::checksum(v);
    v[2..4].copy_from_slice(&sum.to_be_bytes());
}

/// Rewrites the header checksum of the IPv4 packet `v`, if its IHL fits.
pub fn fix_ipv4_checksum(v: &mut [u8]) {
    let Some(&first) = v.first() else { return };
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || v.len() < header_len {
        return;
    }
    v[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum::checksum(&v[..header_len]);
    v[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// Checks a packet the stack sent: valid IPv4 from `src` within the MTU
/// and, unless a fragment, a valid TCP, UDP or ICMP message inside.
/// Returns it parsed.
pub fn check_sent(pkt: &[u8], src: Ipv4Addr, mtu: usize) -> Ipv4Packet<'_> {
    assert!(pkt.len() <= mtu, "sent {} bytes over an MTU of {mtu}", pkt.len());
    let p = Ipv4Packet::parse(pkt).unwrap_or_else(|e| panic!("sent invalid IPv4 ({e}): {pkt:02x?}"));
    assert_eq!(p.header.src, src, "sent from an address not ours");
    assert_eq!(
        p.payload().len() + p.header.header_len,
        pkt.len(),
        "sent trailing bytes"
    );
    if p.header.is_fragment() {
        return p;
    }
    let (s, d, payload) = (p.header.src, p.header.dst, p.payload());
    match p.header.protocol {
        tcp_wire::PROTOCOL => {
            TcpSegment::parse(payload, s, d).unwrap_or_else(|e| panic!("sent invalid TCP ({e})"));
        }
        udp_wire::PROTOCOL => {
            UdpDatagram::parse(payload, s, d).unwrap_or_else(|e| panic!("sent invalid UDP ({e})"));
        }
        icmp_wire::PROTOCOL => {
            IcmpMessage::parse(payload).unwrap_or_else(|e| panic!("sent invalid ICMP ({e})"));
        }
        other => panic!("sent protocol {other}"),
    }
    p
}
