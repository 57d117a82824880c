//! Target `vnet`: the virtio-net header a TUN puts before each packet, and
//! what is done with the packet behind it (issue 16).
//!
//! The input is the header and the packet, as read from the TUN. A header
//! that parses must write back to the same bytes; a packet that segments
//! must give valid IPv4/TCP segments (checksums verified by the crate's
//! parsers) whose payloads, in order and in sequence, are the input's; a
//! `NEEDS_CSUM` packet must complete. Input checksums are never checked by
//! these functions, so no control byte to fix them is needed.

use tunstack::wire::ipv4::{Ipv4Header, Ipv4Packet};
use tunstack::wire::seq::SeqNum;
use tunstack::wire::tcp::TcpSegment;
use tunstack::wire::vnet::{self, VnetHeader};

/// `VnetHeader::parse` and `emit`, `segment_tcpv4`, `complete_checksum`.
pub fn vnet(data: &[u8]) {
    let Ok((hdr, packet)) = VnetHeader::parse(data) else {
        return;
    };
    let mut raw = [0u8; vnet::HEADER_LEN];
    hdr.emit(&mut raw);
    assert_eq!(raw[..], data[..vnet::HEADER_LEN], "the header does not write back");
    assert_eq!(hdr.validate(packet.len()), Ok(()));

    let mut completed = packet.to_vec();
    vnet::complete_checksum(&mut completed, &hdr).expect("a valid header's checksum field lies in the packet");

    let mut segments = Vec::new();
    let Ok(count) = vnet::segment_tcpv4(packet, &hdr, |h, p| segments.push([h, p].concat())) else {
        return;
    };
    assert_eq!(count, segments.len());
    assert!(count >= 1);
    // What the segments must carry: the payload behind the packet's headers.
    let (ip, rest) = Ipv4Header::parse_quote(packet).expect("a segmented packet is IPv4");
    let transport = &rest[..ip.payload_len];
    let tcp_len = usize::from(transport[12] >> 4) * 4;
    let payload = &transport[tcp_len..];
    let first_seq = u32::from_be_bytes([transport[4], transport[5], transport[6], transport[7]]);
    let mut joined = Vec::with_capacity(payload.len());
    let mut next = SeqNum(first_seq);
    for (i, seg) in segments.iter().enumerate() {
        let p = Ipv4Packet::parse(seg).expect("a segment's IPv4 header is valid");
        assert_eq!(p.header.header_len + p.header.payload_len, seg.len());
        assert_eq!(p.header.ident, ip.ident.wrapping_add(i as u16));
        let t = TcpSegment::parse(p.payload(), ip.src, ip.dst).expect("a segment's TCP checksum verifies");
        if hdr.is_gso() {
            assert!(t.payload.len() <= usize::from(hdr.gso_size));
        }
        assert_eq!(t.seq, next, "segment {i} out of sequence");
        next = SeqNum(next.0.wrapping_add(t.payload.len() as u32));
        joined.extend_from_slice(t.payload);
    }
    assert_eq!(joined, payload, "the segments do not carry the payload");
}
