//! Helpers shared by the core's unit tests: crafted packets in, captured packets out.

use crate::iface::{Config, Interface};
use crate::ip::reassembly::{Reassembler, ReassemblyConfig};
use crate::ip::{self, Ipv4Cidr};
use crate::rand::{Rng, SeededState};
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::icmp::{IcmpMessage, kind};
use crate::wire::ipv4::{HEADER_LEN, Ipv4Header, Ipv4Packet};
use std::net::Ipv4Addr;

pub const US: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
pub const HOST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
pub const BCAST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 255);

pub fn config() -> Config {
    let mut c = Config::new(Ipv4Cidr::new(US, 24).unwrap());
    c.gateway = Some(HOST);
    c.seed = 1;
    c
}

pub fn iface() -> Interface {
    Interface::new(config())
}

pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// An IPv4 packet from `src` to `dst` with a correct header.
pub fn ip_packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, ident: u16, payload: &[u8]) -> Vec<u8> {
    ip_fragment(src, dst, protocol, ident, payload, 0, false)
}

/// One fragment: `payload` at byte `offset` of datagram `ident`.
pub fn ip_fragment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
    payload: &[u8],
    offset: usize,
    more: bool,
) -> Vec<u8> {
    let mut h = Ipv4Header::new(src, dst, protocol, 64, ident, payload.len());
    h.frag_offset = offset;
    h.more_fragments = more;
    let mut v = vec![0u8; HEADER_LEN + payload.len()];
    h.emit(&mut v);
    v[HEADER_LEN..].copy_from_slice(payload);
    v
}

pub fn echo_request(ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    IcmpMessage::echo(kind::ECHO_REQUEST, ident, seq, data).emit(&mut v);
    v
}

pub fn ping_packet(dst: Ipv4Addr, seq: u16, data: &[u8]) -> Vec<u8> {
    ip_packet(HOST, dst, ip::protocol::ICMP, seq, &echo_request(0x77, seq, data))
}

/// Everything the interface wants to send right now.
pub fn drain(i: &mut Interface) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; i.config().mtu];
    let mut out = Vec::new();
    while let Some(n) = i.poll_transmit(Instant::ZERO, &mut buf) {
        assert!(n <= i.config().mtu, "packet larger than the MTU");
        out.push(buf[..n].to_vec());
    }
    out
}

/// Reassembles what the interface sent, as the host kernel would.
pub fn host_receive(pkts: &[Vec<u8>]) -> Vec<(Ipv4Packet<'static>, Vec<u8>)> {
    let mut r = Reassembler::new(ReassemblyConfig::default(), SeededState::from_rng(&mut Rng::new(9)));
    let mut s = Stats::default();
    let mut out = Vec::new();
    for p in pkts {
        let leaked: &'static [u8] = Box::leak(p.clone().into_boxed_slice());
        let pkt = Ipv4Packet::parse(leaked).expect("we send valid IPv4");
        if pkt.header.is_fragment() {
            if let Some(whole) = r.insert(Instant::ZERO, &pkt, &mut s) {
                out.push((pkt, whole.payload));
            }
        } else {
            out.push((pkt, pkt.payload().to_vec()));
        }
    }
    out
}

/// A UDP datagram from `src:sport` to `dst:dport`, checksum included, in an IPv4 packet.
pub fn udp_packet(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::new();
    let d = crate::wire::udp::UdpDatagram {
        src_port: sport,
        dst_port: dport,
        payload,
    };
    d.emit(&mut udp, src, dst);
    ip_packet(src, dst, ip::protocol::UDP, sport, &udp)
}

/// An ICMP error message quoting `offending` (an IPv4 packet), as a router would send it.
pub fn icmp_error(kind: u8, code: u8, offending: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    IcmpMessage {
        kind,
        code,
        rest: [0; 4],
        data: &offending[..offending.len().min(crate::wire::icmp::MAX_QUOTE)],
    }
    .emit(&mut v);
    v
}
