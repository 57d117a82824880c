//! The transmit queue: datagrams waiting to leave, fragmented on the way out.
//!
//! A datagram is queued once, whole; `pop_packet` writes its next packet
//! (the datagram itself, or its next fragment) straight into the caller's
//! buffer. Payload buffers are recycled through a free list, so steady-state
//! sending allocates nothing.

#![forbid(unsafe_code)]

use crate::wire::ipv4::{HEADER_LEN, Ipv4Header};
use crate::wire::vnet::{self, VnetHeader};
use std::collections::VecDeque;

/// A datagram waiting to be sent.
#[derive(Debug)]
struct Queued {
    /// The datagram's header; each packet's length, offset and MF flag are set as it leaves.
    header: Ipv4Header,
    payload: Vec<u8>,
    /// Payload bytes already sent as fragments.
    sent: usize,
    /// Offload metadata (issue 16): a TCP super-packet, or a partial checksum.
    meta: VnetHeader,
    /// The packets it leaves the device as: 1, or a super-packet's segments.
    segments: usize,
}

/// Why a datagram was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue holds its limit in bytes already.
    Full,
    /// Larger than 65515 bytes of payload, or DF set and larger than the MTU.
    TooBig,
}

/// A packet written by [`TxQueue::pop_packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Bytes written into the buffer.
    pub len: usize,
    /// Whether the packet is a fragment of a larger datagram.
    pub fragment: bool,
    /// Its offload metadata, for the device (plain but for TCP with offloads on).
    pub meta: VnetHeader,
}

/// FIFO of outgoing datagrams with a byte limit.
#[derive(Debug)]
pub struct TxQueue {
    queue: VecDeque<Queued>,
    free: Vec<Vec<u8>>,
    bytes: usize,
    /// Packets the queue holds, a super-packet's segments each counted.
    segments: usize,
    limit: usize,
    mtu: usize,
}

/// Buffers kept for reuse; more than this are freed.
const POOL: usize = 64;

impl TxQueue {
    /// A queue for a link of `mtu` bytes holding at most `limit` payload bytes.
    pub fn new(mtu: usize, limit: usize) -> TxQueue {
        assert!(mtu >= 68, "RFC 791: every IPv4 link carries 68-byte datagrams");
        TxQueue {
            queue: VecDeque::new(),
            free: Vec::new(),
            bytes: 0,
            segments: 0,
            limit,
            mtu,
        }
    }

    /// The link MTU this queue fragments for.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// An empty buffer to build a payload in (recycled when possible).
    pub fn buffer(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_default()
    }

    /// Gives back a buffer that was not queued.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.free.len() < POOL {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Queues a datagram; on error the buffer is recycled.
    #[cfg(test)]
    pub fn push(&mut self, header: Ipv4Header, payload: Vec<u8>) -> Result<(), QueueError> {
        self.push_meta(header, payload, VnetHeader::default())
    }

    /// Queues a datagram with offload metadata (issue 16). A super-packet
    /// may exceed the MTU (the device cuts it into segments that fit); a
    /// partial checksum is completed here if the datagram must be
    /// fragmented, since the device could not complete it across fragments.
    pub fn push_meta(
        &mut self,
        header: Ipv4Header,
        mut payload: Vec<u8>,
        mut meta: VnetHeader,
    ) -> Result<(), QueueError> {
        let fits = payload.len() + HEADER_LEN <= self.mtu;
        debug_assert!(
            !meta.is_gso() || usize::from(meta.hdr_len) + usize::from(meta.gso_size) <= self.mtu,
            "a super-packet's segments fit the MTU"
        );
        let too_big =
            payload.len() + HEADER_LEN > crate::ip::MAX_DATAGRAM || (header.dont_fragment && !fits && !meta.is_gso());
        if !fits && !meta.is_gso() && !meta.is_plain() {
            complete_in_payload(&mut payload, &meta);
            meta = VnetHeader::default();
        }
        let err = if too_big {
            Some(QueueError::TooBig)
        } else if self.bytes + payload.len() > self.limit && !self.queue.is_empty() {
            Some(QueueError::Full)
        } else {
            None
        };
        if let Some(e) = err {
            self.recycle(payload);
            return Err(e);
        }
        let segments = if meta.is_gso() {
            let data = payload.len().saturating_sub(usize::from(meta.hdr_len) - HEADER_LEN);
            data.div_ceil(usize::from(meta.gso_size)).max(1)
        } else {
            1
        };
        self.bytes += payload.len();
        self.segments += segments;
        self.queue.push_back(Queued {
            header,
            payload,
            sent: 0,
            meta,
            segments,
        });
        Ok(())
    }

    /// Packets waiting, as the device will send them: a super-packet counts
    /// as its segments (what a transport that builds ahead should count).
    pub fn packets(&self) -> usize {
        self.segments
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes the next packet as its IP header (into `header`) and the rest
    /// (into `payload`). A datagram that leaves whole swaps its buffer with
    /// `payload`, so its bytes are not copied: the caller's old buffer
    /// joins the free list. A fragment is copied into `payload`.
    pub fn pop_parts(&mut self, header: &mut [u8; HEADER_LEN], payload: &mut Vec<u8>) -> Option<Written> {
        let q = self.queue.front_mut()?;
        let remaining = q.payload.len() - q.sent;
        if q.sent == 0 && (remaining + HEADER_LEN <= self.mtu || q.meta.is_gso()) {
            let q = self.queue.pop_front().expect("front exists");
            self.bytes -= q.payload.len();
            self.segments -= q.segments;
            let mut h = q.header;
            h.payload_len = remaining;
            h.frag_offset = 0;
            h.more_fragments = false;
            h.emit(header);
            let old = std::mem::replace(payload, q.payload);
            self.recycle(old);
            return Some(Written {
                len: HEADER_LEN + remaining,
                fragment: false,
                meta: q.meta,
            });
        }
        payload.clear();
        payload.resize(self.mtu, 0);
        let mut packet = std::mem::take(payload);
        let written = self.pop_packet(&mut packet);
        if let Some(w) = written {
            header.copy_from_slice(&packet[..HEADER_LEN]);
            packet.copy_within(HEADER_LEN..w.len, 0);
            packet.truncate(w.len - HEADER_LEN);
        }
        *payload = packet;
        written
    }

    /// Writes the next packet into `buf` (at least the MTU long; with
    /// offloads on, at least 65535 bytes): whole, checksums complete, so
    /// the returned metadata is always plain. A super-packet is written
    /// as one large segment, as a device without offloads could not send
    /// it (`Device::send_meta` cuts it instead).
    pub fn pop_packet(&mut self, buf: &mut [u8]) -> Option<Written> {
        let q = self.queue.front_mut()?;
        let remaining = q.payload.len() - q.sent;
        if q.sent == 0 && !q.meta.is_plain() {
            let len = HEADER_LEN + remaining;
            assert!(buf.len() >= len, "a buffer for a super-packet");
            let q = self.queue.pop_front().expect("front exists");
            self.bytes -= q.payload.len();
            self.segments -= q.segments;
            let mut h = q.header;
            h.payload_len = remaining;
            h.emit(buf);
            buf[HEADER_LEN..len].copy_from_slice(&q.payload);
            vnet::complete_checksum(&mut buf[..len], &q.meta).expect("our own metadata fits the packet");
            self.recycle(q.payload);
            return Some(Written {
                len,
                fragment: false,
                meta: VnetHeader::default(),
            });
        }
        let room = self.mtu.min(buf.len()) - HEADER_LEN;
        let (chunk, more) = if remaining <= room {
            (remaining, false)
        } else {
            // RFC 791: every fragment but the last carries a multiple of 8 bytes.
            (room & !7, true)
        };
        let fragment = more || q.sent > 0;
        let mut h = q.header;
        h.payload_len = chunk;
        h.frag_offset = q.sent;
        h.more_fragments = more;
        h.emit(buf);
        buf[HEADER_LEN..HEADER_LEN + chunk].copy_from_slice(&q.payload[q.sent..q.sent + chunk]);
        q.sent += chunk;
        if !more {
            let q = self.queue.pop_front().expect("front exists");
            self.bytes -= q.payload.len();
            self.segments -= q.segments;
            self.recycle(q.payload);
        }
        Some(Written {
            len: HEADER_LEN + chunk,
            fragment,
            meta: VnetHeader::default(),
        })
    }
}

/// Completes the partial checksum of a transport segment held without its
/// IP header (`meta` counts offsets from the start of the IP header).
fn complete_in_payload(payload: &mut [u8], meta: &VnetHeader) {
    let mut m = *meta;
    m.csum_start = m.csum_start.saturating_sub(HEADER_LEN as u16);
    vnet::complete_checksum(payload, &m).expect("our own metadata fits the segment");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Packet;
    use std::net::Ipv4Addr;

    fn fields(df: bool) -> Ipv4Header {
        let mut h = Ipv4Header::new(Ipv4Addr::new(10, 200, 0, 2), Ipv4Addr::new(10, 200, 0, 1), 1, 64, 42, 0);
        h.dont_fragment = df;
        h
    }

    fn drain(q: &mut TxQueue) -> Vec<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        let mut out = Vec::new();
        while let Some(w) = q.pop_packet(&mut buf) {
            out.push(buf[..w.len].to_vec());
        }
        out
    }

    /// Popping in parts hands a whole datagram's own buffer over (no copy)
    /// and takes the caller's in exchange; fragments come out as `pop_packet` makes them.
    #[test]
    fn parts_swap_a_whole_datagrams_buffer_and_copy_fragments() {
        let mut q = TxQueue::new(1500, 1 << 20);
        let mut b = q.buffer();
        b.extend_from_slice(&[1u8; 1480]);
        let built_at = b.as_ptr();
        q.push(fields(false), b).unwrap();
        let mut header = [0u8; HEADER_LEN];
        let mut payload = vec![9u8; 10];
        let w = q.pop_parts(&mut header, &mut payload).unwrap();
        assert_eq!(
            w,
            Written {
                len: 1500,
                fragment: false,
                meta: VnetHeader::default(),
            }
        );
        assert_eq!(payload.as_ptr(), built_at, "the segment's own buffer, not a copy");
        assert_eq!(payload, [1u8; 1480]);
        let whole = [&header[..], &payload[..]].concat();
        assert_eq!(Ipv4Packet::parse(&whole).unwrap().payload(), &[1u8; 1480][..]);
        assert_eq!(q.buffer().capacity(), 10, "the caller's old buffer was kept for reuse");

        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut b = q.buffer();
        b.extend_from_slice(&data);
        q.push(fields(false), b.clone()).unwrap();
        let mut reference = TxQueue::new(1500, 1 << 20);
        reference.push(fields(false), b).unwrap();
        let expected = drain(&mut reference);
        let mut got = Vec::new();
        while q.pop_parts(&mut header, &mut payload).is_some() {
            got.push([&header[..], &payload[..]].concat());
        }
        assert_eq!(got, expected, "fragments as pop_packet makes them");
    }

    #[test]
    fn small_datagram_leaves_whole() {
        let mut q = TxQueue::new(1500, 1 << 20);
        let mut b = q.buffer();
        b.extend_from_slice(&[1u8; 1480]);
        q.push(fields(false), b).unwrap();
        let pkts = drain(&mut q);
        assert_eq!(pkts.len(), 1);
        let p = Ipv4Packet::parse(&pkts[0]).unwrap();
        assert!(!p.header.is_fragment());
        assert_eq!(p.payload().len(), 1480);
    }

    #[test]
    fn large_datagram_is_fragmented_at_the_mtu() {
        let mut q = TxQueue::new(1500, 1 << 20);
        let data: Vec<u8> = (0..60_008u32).map(|i| (i % 251) as u8).collect();
        q.push(fields(false), data.clone()).unwrap();
        let pkts = drain(&mut q);
        assert_eq!(pkts.len(), 41); // 40 × 1480 + 808
        let mut rebuilt = vec![0u8; data.len()];
        for (i, raw) in pkts.iter().enumerate() {
            assert!(raw.len() <= 1500);
            let p = Ipv4Packet::parse(raw).unwrap();
            assert_eq!(p.header.ident, 42);
            assert_eq!(p.header.more_fragments, i + 1 < pkts.len());
            assert_eq!(p.header.frag_offset % 8, 0);
            rebuilt[p.header.frag_offset..p.header.frag_offset + p.payload().len()].copy_from_slice(p.payload());
        }
        assert_eq!(rebuilt, data);
        assert!(q.is_empty());
    }

    #[test]
    fn df_datagram_over_mtu_and_oversized_are_refused() {
        let mut q = TxQueue::new(1500, 1 << 20);
        assert_eq!(q.push(fields(true), vec![0; 1481]), Err(QueueError::TooBig));
        assert_eq!(q.push(fields(false), vec![0; 65_516]), Err(QueueError::TooBig));
        assert!(q.push(fields(false), vec![0; 65_515]).is_ok());
    }

    #[test]
    fn byte_limit_applies_but_never_blocks_an_empty_queue() {
        let mut q = TxQueue::new(1500, 1000);
        assert!(q.push(fields(false), vec![0; 3000]).is_ok());
        assert_eq!(q.push(fields(false), vec![0; 10]), Err(QueueError::Full));
        drain(&mut q);
        assert!(q.push(fields(false), vec![0; 500]).is_ok());
        assert!(q.push(fields(false), vec![0; 500]).is_ok());
        assert_eq!(q.push(fields(false), vec![0; 1]), Err(QueueError::Full));
    }
}
