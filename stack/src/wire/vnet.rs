//! The virtio-net header that a Linux TUN opened with `IFF_VNET_HDR` puts
//! before every packet (issue 16: TSO and checksum offload), and the
//! software fallbacks for what it offloads: segmenting a TCP super-packet
//! and completing a partial checksum, as the kernel would.
//!
//! Sans-IO and allocation-free: the TUN device, the pcap writer and the
//! impairment layer call in here; nothing here knows a file descriptor.
//!
//! The header is the 10-byte `struct virtio_net_hdr` (virtio 1.x §5.1.6,
//! `include/uapi/linux/virtio_net.h`), TUN's default `TUNSETVNETHDRSZ`,
//! without `num_buffers`. Its 16-bit fields are little-endian here. TUN
//! uses the host's byte order unless told otherwise, which is little-endian
//! on every target we support (x86_64, aarch64); a big-endian host would
//! have to ask for little-endian with `TUNSETVNETLE`, which every kernel
//! since 4.2 accepts (only `TUNSETVNETBE` depends on a build option).

#![forbid(unsafe_code)]

use crate::wire::checksum::{self, Checksum};
use crate::wire::ipv4::Ipv4Header;
use crate::wire::tcp;
use std::net::Ipv4Addr;

/// Bytes of the header on the wire.
pub const HEADER_LEN: usize = 10;

/// `flags`: the checksum field holds only the pseudo-header sum; the sum
/// from `csum_start` to the end is still to be added.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the kernel has verified the checksums (receive only).
pub const F_DATA_VALID: u8 = 2;

/// `gso_type`: not a super-packet.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: an IPv4 TCP super-packet.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (UFO).
pub const GSO_UDP: u8 = 3;
/// `gso_type`: an IPv6 TCP super-packet.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (USO).
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the super-packet carries CWR (ECN, RFC 3168).
pub const GSO_ECN: u8 = 0x80;

/// Largest IPv4 and TCP headers, options included: what one segment's
/// headers need on the stack.
const MAX_HEADERS: usize = 60 + 60;

/// The TCP CWR flag (RFC 3168 §6.1), which `tcp::flags` does not name.
const CWR: u8 = 0x80;

/// Where the checksum lies in a TCP header (`csum_offset` for TCP).
const TCP_CHECKSUM_AT: usize = 16;

/// Why a virtio-net header or the packet behind it cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnetError {
    /// Fewer than 10 bytes.
    Truncated,
    /// Flag bits other than `NEEDS_CSUM` and `DATA_VALID`.
    UnknownFlags,
    /// A `gso_type` outside the virtio spec's list.
    UnknownGsoType,
    /// A super-packet with `gso_size` 0.
    ZeroGsoSize,
    /// A super-packet without `NEEDS_CSUM` (virtio 1.x §5.1.6.2.1 requires it).
    GsoWithoutNeedsCsum,
    /// `csum_start + csum_offset + 2` beyond the packet.
    CsumOutsidePacket,
    /// Segmenting a packet whose `gso_type` is not `TCPV4` (or none).
    NotTcpv4Gso,
    /// The packet is not a whole, well-formed IPv4/TCP packet.
    NotIpv4Tcp,
}

error_messages!(VnetError {
    Truncated => "virtio-net header shorter than 10 bytes",
    UnknownFlags => "unknown virtio-net header flags",
    UnknownGsoType => "unknown virtio-net GSO type",
    ZeroGsoSize => "virtio-net GSO packet with gso_size 0",
    GsoWithoutNeedsCsum => "virtio-net GSO packet without NEEDS_CSUM",
    CsumOutsidePacket => "virtio-net checksum field beyond the packet",
    NotTcpv4Gso => "not a TCPv4 GSO packet",
    NotIpv4Tcp => "not a well-formed IPv4/TCP packet",
});

/// A `struct virtio_net_hdr`: offload metadata for one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHeader {
    /// `F_NEEDS_CSUM` and/or `F_DATA_VALID`.
    pub flags: u8,
    /// One of the `GSO_*` types, possibly with `GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers before the payload (a hint, per the spec).
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS) when `gso_type` is not `NONE`.
    pub gso_size: u16,
    /// Where the checksummed range starts (the transport header).
    pub csum_start: u16,
    /// Where the checksum field lies, counted from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHeader {
    /// Reads and validates the header at the start of `buf`; returns it and the packet after it.
    pub fn parse(buf: &[u8]) -> Result<(VnetHeader, &[u8]), VnetError> {
        let (raw, packet) = buf.split_first_chunk::<HEADER_LEN>().ok_or(VnetError::Truncated)?;
        let hdr = VnetHeader::decode(raw);
        hdr.validate(packet.len())?;
        Ok((hdr, packet))
    }

    /// Reads the header's fields without checking them: for a header read
    /// apart from its packet (the TUN's `readv`), to [`validate`](Self::validate) then.
    pub fn decode(raw: &[u8; HEADER_LEN]) -> VnetHeader {
        let le16 = |i: usize| u16::from_le_bytes([raw[i], raw[i + 1]]);
        VnetHeader {
            flags: raw[0],
            gso_type: raw[1],
            hdr_len: le16(2),
            gso_size: le16(4),
            csum_start: le16(6),
            csum_offset: le16(8),
        }
    }

    /// Writes the header in its wire form.
    pub fn emit(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// Whether the packet is a super-packet to be cut into `gso_size` pieces.
    pub fn is_gso(&self) -> bool {
        self.gso_type != GSO_NONE
    }

    /// Whether the header asks nothing of anyone: a plain packet whose
    /// checksums are all there (and are to be verified on receipt).
    pub fn is_plain(&self) -> bool {
        self.flags & F_NEEDS_CSUM == 0 && !self.is_gso()
    }

    /// Whether the transport checksum need not be verified on receipt:
    /// the sender left it partial for the kernel (`NEEDS_CSUM`, a packet
    /// that never left the host), or the kernel verified it (`DATA_VALID`).
    pub fn checksum_trusted(&self) -> bool {
        self.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0
    }

    /// The header of an outgoing IPv4/TCP packet whose TCP checksum field
    /// holds only the pseudo-header sum: a super-packet to be cut into
    /// segments of `gso_size` payload bytes if `gso_size` is given, else
    /// one segment whose checksum is left to the kernel.
    pub fn tcpv4(ip_header_len: usize, tcp_header_len: usize, gso_size: Option<u16>) -> VnetHeader {
        VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: if gso_size.is_some() { GSO_TCPV4 } else { GSO_NONE },
            hdr_len: (ip_header_len + tcp_header_len) as u16,
            gso_size: gso_size.unwrap_or(0),
            csum_start: ip_header_len as u16,
            csum_offset: TCP_CHECKSUM_AT as u16,
        }
    }

    /// Checks the fields against each other and a packet of `packet_len`
    /// bytes, rejecting what Linux's `virtio_net_hdr_to_skb` rejects. Unknown
    /// flags are refused too: TUN sets only the two known ones, so other
    /// bits mean a misconfigured header size or byte order.
    pub fn validate(&self, packet_len: usize) -> Result<(), VnetError> {
        if self.flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
            return Err(VnetError::UnknownFlags);
        }
        if self.is_gso() {
            // ECN alone (0x80) is as unknown as any other type: Linux switches
            // on the type without the ECN bit and refuses NONE there.
            match self.gso_type & !GSO_ECN {
                GSO_TCPV4 | GSO_UDP | GSO_TCPV6 | GSO_UDP_L4 => {}
                _ => return Err(VnetError::UnknownGsoType),
            }
            if self.gso_size == 0 {
                return Err(VnetError::ZeroGsoSize);
            }
            if self.flags & F_NEEDS_CSUM == 0 {
                return Err(VnetError::GsoWithoutNeedsCsum);
            }
        }
        if self.flags & F_NEEDS_CSUM != 0 {
            self.csum_field(packet_len)?;
        }
        Ok(())
    }

    /// The checksum field's offset in a packet of `packet_len` bytes.
    fn csum_field(&self, packet_len: usize) -> Result<usize, VnetError> {
        let at = usize::from(self.csum_start) + usize::from(self.csum_offset);
        if at + 2 > packet_len {
            return Err(VnetError::CsumOutsidePacket);
        }
        Ok(at)
    }
}

/// The value a `NEEDS_CSUM` sender puts in the checksum field: the folded
/// pseudo-header sum for a transport segment of `len` bytes, not complemented.
pub fn pseudo_header_partial(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u16 {
    Checksum::new().add_pseudo_header(src, dst, protocol, len).sum()
}

/// Completes the checksum of a `NEEDS_CSUM` packet in place, as Linux's
/// `skb_checksum_help` does; does nothing for other packets.
pub fn complete_checksum(packet: &mut [u8], hdr: &VnetHeader) -> Result<(), VnetError> {
    if hdr.flags & F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    let at = hdr.csum_field(packet.len())?;
    // The field already holds the pseudo-header sum, so summing over it adds that in.
    let sum = Checksum::new()
        .add_bytes(&packet[usize::from(hdr.csum_start)..])
        .finish();
    // A computed 0 is sent as 0xffff (the same in ones' complement), because
    // 0 means "no checksum" to UDP (RFC 768); Linux does the same (CSUM_MANGLED_0).
    let sum = if sum == 0 { 0xffff } else { sum };
    packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Cuts an IPv4/TCP super-packet into segments of `hdr.gso_size` payload
/// bytes with complete checksums, as Linux's software TSO does; returns how
/// many. Each segment is handed to `out` as its headers and its payload
/// (the shape of `Device::send_parts`): the headers are built on the stack
/// and the payload borrowed from `packet`, so nothing is allocated or copied.
///
/// A packet that is no super-packet, or whose payload fits in one segment,
/// gives one segment: the input with its checksums made whole. Per segment,
/// as Linux's `inet_gso_segment` and `tcp_gso_segment`: the IPv4 total
/// length, header checksum and ID (the first keeps the packet's, each next
/// one adds 1; Linux keeps it fixed only for `SKB_GSO_TCP_FIXEDID`, which a
/// TUN never sets) and the TCP sequence number change; CWR stays only on the
/// first segment, FIN and PSH only on the last. `hdr_len` is not trusted:
/// the header lengths are read from the packet.
pub fn segment_tcpv4(packet: &[u8], hdr: &VnetHeader, mut out: impl FnMut(&[u8], &[u8])) -> Result<usize, VnetError> {
    if hdr.is_gso() && hdr.gso_type & !GSO_ECN != GSO_TCPV4 {
        return Err(VnetError::NotTcpv4Gso);
    }
    let (ip, rest) = Ipv4Header::parse_quote(packet).ok_or(VnetError::NotIpv4Tcp)?;
    if ip.protocol != tcp::PROTOCOL || ip.is_fragment() || ip.payload_len > rest.len() {
        return Err(VnetError::NotIpv4Tcp);
    }
    let transport = &rest[..ip.payload_len];
    let tcp_len = usize::from(transport.get(12).ok_or(VnetError::NotIpv4Tcp)? >> 4) * 4;
    if tcp_len < tcp::HEADER_LEN || tcp_len > transport.len() {
        return Err(VnetError::NotIpv4Tcp);
    }
    let (tcp_header, payload) = transport.split_at(tcp_len);
    let mss = if hdr.is_gso() {
        usize::from(hdr.gso_size)
    } else {
        payload.len().max(1)
    };

    let mut headers = [0u8; MAX_HEADERS];
    let headers_len = ip.header_len + tcp_len;
    headers[..ip.header_len].copy_from_slice(&packet[..ip.header_len]);
    headers[ip.header_len..headers_len].copy_from_slice(tcp_header);
    let seq = u32::from_be_bytes([tcp_header[4], tcp_header[5], tcp_header[6], tcp_header[7]]);
    let last_only = tcp::flags::FIN | tcp::flags::PSH;

    // An empty payload still makes one (header-only) segment.
    let count = payload.len().div_ceil(mss).max(1);
    for i in 0..count {
        let chunk = &payload[i * mss..payload.len().min((i + 1) * mss)];
        let mut flags = tcp_header[13];
        if i != 0 {
            flags &= !CWR;
        }
        if i + 1 != count {
            flags &= !last_only;
        }
        let h = &mut headers[..headers_len];
        let total = (headers_len + chunk.len()) as u16;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&ip.ident.wrapping_add(i as u16).to_be_bytes());
        h[10..12].fill(0);
        let ip_sum = checksum::checksum(&h[..ip.header_len]);
        h[10..12].copy_from_slice(&ip_sum.to_be_bytes());

        let t = &mut h[ip.header_len..];
        t[4..8].copy_from_slice(&seq.wrapping_add((i * mss) as u32).to_be_bytes());
        t[13] = flags;
        t[16..18].fill(0);
        let tcp_seg_len = (tcp_len + chunk.len()) as u16;
        let tcp_sum = Checksum::new()
            .add_pseudo_header(ip.src, ip.dst, tcp::PROTOCOL, tcp_seg_len)
            .add_bytes(t)
            .add_bytes(chunk)
            .finish();
        t[16..18].copy_from_slice(&tcp_sum.to_be_bytes());
        out(h, chunk);
    }
    Ok(count)
}

/// Does in software what an offloading device would do with a packet
/// given as its IP header and the rest: a TCP super-packet is cut into
/// segments ([`segment_tcpv4`]), and a partial checksum is completed
/// ([`complete_checksum`]). Each resulting packet goes to `out` as headers
/// and payload; returns how many. A plain packet goes through untouched.
/// The fallback path of devices without offloads: it copies the packet once.
pub fn for_each_segment(
    meta: &VnetHeader,
    header: &[u8],
    payload: &[u8],
    mut out: impl FnMut(&[u8], &[u8]),
) -> Result<usize, VnetError> {
    if meta.is_plain() {
        out(header, payload);
        return Ok(1);
    }
    let mut packet = Vec::with_capacity(header.len() + payload.len());
    packet.extend_from_slice(header);
    packet.extend_from_slice(payload);
    meta.validate(packet.len())?;
    if meta.is_gso() {
        return segment_tcpv4(&packet, meta, out);
    }
    complete_checksum(&mut packet, meta)?;
    out(&packet, &[]);
    Ok(1)
}

impl From<VnetError> for std::io::Error {
    fn from(e: VnetError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::ipv4::{self, Ipv4Packet};
    use crate::wire::seq::SeqNum;
    use crate::wire::tcp::{TcpOptions, TcpSegment, flags};

    /// The super-packets' source and destination.
    pub(crate) const SRC: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    pub(crate) const DST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

    /// A TCP super-packet of `payload_len` bytes as a `NEEDS_CSUM` sender
    /// builds it: valid IPv4 header (DF set), only the pseudo-header sum in
    /// the TCP checksum field. The TCP header carries timestamps (32 bytes).
    pub(crate) fn super_packet(payload_len: usize, tcp_flags: u8, seq: u32, ident: u16) -> (Vec<u8>, VnetHeader) {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 + i / 251) as u8).collect();
        let options = TcpOptions {
            timestamps: Some((0x0102_0304, 0x0506_0708)),
            ..TcpOptions::default()
        };
        let segment = TcpSegment {
            src_port: 40_000,
            dst_port: 7,
            seq: SeqNum(seq),
            ack: SeqNum(0xdead_beef),
            flags: flags::ACK | (tcp_flags & 0x3f),
            window: 512,
            options,
            payload: &payload,
        };
        let mut tcp_bytes = Vec::new();
        segment.emit(&mut tcp_bytes, SRC, DST);
        tcp_bytes[13] |= tcp_flags & CWR;
        let partial = pseudo_header_partial(SRC, DST, tcp::PROTOCOL, tcp_bytes.len() as u16);
        tcp_bytes[16..18].copy_from_slice(&partial.to_be_bytes());
        let mut ip = Ipv4Header::new(SRC, DST, tcp::PROTOCOL, 64, ident, tcp_bytes.len());
        ip.dont_fragment = true;
        let mut packet = vec![0; ipv4::HEADER_LEN];
        ip.emit(&mut packet);
        packet.extend_from_slice(&tcp_bytes);
        let hdr = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1000,
            csum_start: 20,
            csum_offset: 16,
        };
        (packet, hdr)
    }

    /// Segments `packet`, returning each segment joined.
    fn segments(packet: &[u8], hdr: &VnetHeader) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let n = segment_tcpv4(packet, hdr, |h, p| out.push([h, p].concat())).unwrap();
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn header_emits_the_linux_struct_layout() {
        // flags, gso_type, then hdr_len 66, gso_size 1448, csum_start 20, csum_offset 16, little-endian.
        let hdr = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut raw = [0u8; HEADER_LEN];
        hdr.emit(&mut raw);
        assert_eq!(raw, [0x01, 0x81, 0x42, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00]);
    }

    #[test]
    fn header_parses_the_linux_struct_layout() {
        let mut buf = vec![0x01, 0x01, 0x34, 0x00, 0xb4, 0x05, 0x14, 0x00, 0x10, 0x00];
        buf.extend_from_slice(&[0xaa; 40]);
        let (hdr, packet) = VnetHeader::parse(&buf).unwrap();
        let want = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1460,
            csum_start: 20,
            csum_offset: 16,
        };
        assert_eq!(hdr, want);
        assert_eq!(packet, &[0xaa; 40][..]);
        // What TUN puts before a received packet it has verified.
        let (hdr, packet) = VnetHeader::parse(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x45]).unwrap();
        assert_eq!((hdr.flags, hdr.is_gso(), packet), (F_DATA_VALID, false, &[0x45][..]));
        let mut raw = [0u8; HEADER_LEN];
        want.emit(&mut raw);
        assert_eq!(raw[..], buf[..HEADER_LEN]);
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let good = [0x01, 0x01, 0x34, 0x00, 0xb4, 0x05, 0x14, 0x00, 0x10, 0x00];
        let with = |i: usize, v: u8, packet_len: usize| {
            let mut buf = good.to_vec();
            buf[i] = v;
            buf.resize(HEADER_LEN + packet_len, 0);
            VnetHeader::parse(&buf).map(|(h, _)| h)
        };
        assert_eq!(VnetHeader::parse(&good[..9]), Err(VnetError::Truncated));
        assert!(with(0, 0x01, 38).is_ok());
        assert_eq!(with(0, 0x05, 38), Err(VnetError::UnknownFlags));
        assert_eq!(with(1, 2, 38), Err(VnetError::UnknownGsoType));
        assert_eq!(with(1, 6, 38), Err(VnetError::UnknownGsoType));
        assert_eq!(with(1, GSO_ECN, 38), Err(VnetError::UnknownGsoType));
        for t in [GSO_UDP, GSO_TCPV6, GSO_UDP_L4, GSO_TCPV4 | GSO_ECN] {
            assert!(with(1, t, 38).is_ok(), "type {t:#x}");
        }
        let mut zero_size = good;
        zero_size[4..6].fill(0);
        assert_eq!(
            VnetHeader::parse(&[&zero_size[..], &[0; 38]].concat()),
            Err(VnetError::ZeroGsoSize)
        );
        assert_eq!(with(0, F_DATA_VALID, 38), Err(VnetError::GsoWithoutNeedsCsum));
        assert_eq!(with(0, 0, 38), Err(VnetError::GsoWithoutNeedsCsum));
        // The field (20 + 16, 2 bytes) must end inside the packet: 38 bytes is just enough.
        assert_eq!(with(0, 0x01, 37), Err(VnetError::CsumOutsidePacket));
        assert_eq!(with(6, 0xff, 38), Err(VnetError::CsumOutsidePacket));
        // Without NEEDS_CSUM the checksum fields mean nothing and are not checked.
        let plain = [0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(VnetHeader::parse(&plain).is_ok());
    }

    #[test]
    fn three_and_a_bit_mss_cut_into_four_segments() {
        let seq = 0xffff_f000; // wraps across 2^32 in the third segment
        let all = flags::FIN | flags::PSH | CWR;
        let (packet, hdr) = super_packet(3123, all, seq, 0xfffe);
        let segs = segments(&packet, &hdr);
        assert_eq!(segs.len(), 4);
        let whole = &packet[20 + 32..];
        for (i, seg) in segs.iter().enumerate() {
            let ip = Ipv4Packet::parse(seg).unwrap();
            let size = if i == 3 { 123 } else { 1000 };
            assert_eq!(ip.header.payload_len, 32 + size, "segment {i}");
            assert_eq!(seg.len(), 20 + 32 + size);
            assert_eq!(ip.header.ident, 0xfffeu16.wrapping_add(i as u16));
            assert!(ip.header.dont_fragment);
            let tcp = TcpSegment::parse(ip.payload(), SRC, DST).unwrap();
            assert_eq!(tcp.seq, SeqNum(seq.wrapping_add(i as u32 * 1000)));
            assert_eq!(tcp.ack, SeqNum(0xdead_beef));
            assert_eq!(tcp.options.timestamps, Some((0x0102_0304, 0x0506_0708)));
            assert_eq!(tcp.payload, &whole[i * 1000..i * 1000 + size]);
            let raw_flags = ip.payload()[13];
            assert_eq!(raw_flags & CWR != 0, i == 0, "CWR on segment {i}");
            assert_eq!(tcp.has(flags::FIN), i == 3, "FIN on segment {i}");
            assert_eq!(tcp.has(flags::PSH), i == 3, "PSH on segment {i}");
            assert!(tcp.has(flags::ACK));
        }
    }

    #[test]
    fn completed_checksum_parses() {
        let (mut packet, hdr) = super_packet(3123, flags::PSH, 1, 9);
        let ip_payload = Ipv4Packet::parse(&packet).unwrap().payload();
        assert_eq!(TcpSegment::parse(ip_payload, SRC, DST), Err(tcp::TcpError::BadChecksum));
        complete_checksum(&mut packet, &hdr).unwrap();
        let ip = Ipv4Packet::parse(&packet).unwrap();
        assert_eq!(TcpSegment::parse(ip.payload(), SRC, DST).unwrap().payload.len(), 3123);
        // Packets without NEEDS_CSUM are left alone; a field outside the packet is refused.
        let before = packet.clone();
        complete_checksum(&mut packet, &VnetHeader::default()).unwrap();
        assert_eq!(packet, before);
        let outside = VnetHeader {
            csum_start: packet.len() as u16 - 17,
            ..hdr
        };
        assert_eq!(
            complete_checksum(&mut packet, &outside),
            Err(VnetError::CsumOutsidePacket)
        );
    }

    #[test]
    fn one_segment_when_gso_size_exceeds_the_payload() {
        let (packet, hdr) = super_packet(1200, flags::FIN | flags::PSH | CWR, 77, 5);
        let mut fixed = packet.clone();
        complete_checksum(&mut fixed, &hdr).unwrap();
        for h in [
            VnetHeader { gso_size: 1200, ..hdr },
            VnetHeader { gso_size: 65535, ..hdr },
        ] {
            assert_eq!(segments(&packet, &h), vec![fixed.clone()]);
        }
        // Not a super-packet at all: the same.
        let plain = VnetHeader {
            gso_type: GSO_NONE,
            gso_size: 0,
            ..hdr
        };
        assert_eq!(segments(&packet, &plain), vec![fixed]);
    }

    #[test]
    fn every_size_reassembles_to_the_input() {
        for mss in [1u16, 7, 536, 1000, 1448] {
            for len in [0usize, 1, 2, 535, 536, 537, 1447, 1448, 1449, 4000, 8192] {
                let (packet, hdr) = super_packet(len, flags::FIN | flags::PSH, 0xffff_ff00, 65_000);
                let hdr = VnetHeader { gso_size: mss, ..hdr };
                let segs = segments(&packet, &hdr);
                assert_eq!(segs.len(), len.div_ceil(usize::from(mss)).max(1), "mss {mss} len {len}");
                let mut data = Vec::new();
                let mut next = SeqNum(0xffff_ff00);
                for seg in &segs {
                    let ip = Ipv4Packet::parse(seg).unwrap();
                    let tcp = TcpSegment::parse(ip.payload(), SRC, DST).unwrap();
                    assert!(tcp.payload.len() <= usize::from(mss));
                    assert_eq!(tcp.seq, next, "mss {mss} len {len}");
                    next = SeqNum(next.0.wrapping_add(tcp.payload.len() as u32));
                    data.extend_from_slice(tcp.payload);
                }
                assert_eq!(data, packet[52..], "mss {mss} len {len}");
            }
        }
    }

    #[test]
    fn segmenting_refuses_what_is_not_ipv4_tcp_gso() {
        let (packet, hdr) = super_packet(100, 0, 1, 1);
        let ignore = |_: &[u8], _: &[u8]| {};
        let udp = VnetHeader {
            gso_type: GSO_UDP_L4,
            ..hdr
        };
        assert_eq!(segment_tcpv4(&packet, &udp, ignore), Err(VnetError::NotTcpv4Gso));
        assert_eq!(segment_tcpv4(&packet[..30], &hdr, ignore), Err(VnetError::NotIpv4Tcp));
        let mut not_tcp = packet.clone();
        not_tcp[9] = 17;
        assert_eq!(segment_tcpv4(&not_tcp, &hdr, ignore), Err(VnetError::NotIpv4Tcp));
        let mut fragment = packet.clone();
        fragment[6] |= 0x20; // more fragments
        assert_eq!(segment_tcpv4(&fragment, &hdr, ignore), Err(VnetError::NotIpv4Tcp));
        let mut bad_offset = packet;
        bad_offset[20 + 12] = 0x40; // data offset 16 bytes
        assert_eq!(segment_tcpv4(&bad_offset, &hdr, ignore), Err(VnetError::NotIpv4Tcp));
    }

    #[test]
    fn for_each_segment_passes_plain_completes_partial_and_cuts_gso() {
        let (packet, hdr) = super_packet(3123, flags::PSH, 500, 3);
        let (header, payload) = packet.split_at(20);
        // Plain: the very slices given, once, untouched.
        let mut seen = Vec::new();
        let n = for_each_segment(&VnetHeader::default(), header, payload, |h, p| {
            seen.push((h.as_ptr(), h.len(), p.as_ptr(), p.len()));
        });
        assert_eq!(n, Ok(1));
        assert_eq!(seen, [(header.as_ptr(), 20, payload.as_ptr(), payload.len())]);

        // NEEDS_CSUM without GSO: one packet, its checksum completed.
        let partial = VnetHeader {
            gso_type: GSO_NONE,
            gso_size: 0,
            ..hdr
        };
        let mut out = Vec::new();
        let n = for_each_segment(&partial, header, payload, |h, p| out.push([h, p].concat()));
        assert_eq!(n, Ok(1));
        let mut fixed = packet.clone();
        complete_checksum(&mut fixed, &hdr).unwrap();
        assert_eq!(out, [fixed.clone()]);
        let ip = Ipv4Packet::parse(&out[0]).unwrap();
        assert_eq!(TcpSegment::parse(ip.payload(), SRC, DST).unwrap().payload.len(), 3123);

        // GSO: the segments segment_tcpv4 makes of the joined packet.
        let mut out = Vec::new();
        let n = for_each_segment(&hdr, header, payload, |h, p| out.push([h, p].concat()));
        assert_eq!(n, Ok(4));
        assert_eq!(out, segments(&packet, &hdr));
        let mut data = Vec::new();
        for seg in &out {
            let ip = Ipv4Packet::parse(seg).unwrap();
            data.extend_from_slice(TcpSegment::parse(ip.payload(), SRC, DST).unwrap().payload);
        }
        assert_eq!(data, packet[52..]);

        // A header that does not fit the packet is refused before anything goes out.
        let outside = VnetHeader {
            csum_start: packet.len() as u16,
            ..partial
        };
        let mut called = false;
        let n = for_each_segment(&outside, header, payload, |_, _| called = true);
        assert_eq!((n, called), (Err(VnetError::CsumOutsidePacket), false));
        let udp = VnetHeader {
            gso_type: GSO_UDP_L4,
            ..hdr
        };
        let n = for_each_segment(&udp, header, payload, |_, _| called = true);
        assert_eq!((n, called), (Err(VnetError::NotTcpv4Gso), false));
    }
}
