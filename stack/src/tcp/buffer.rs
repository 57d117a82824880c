//! Send and receive buffers: rings that start empty and grow with use up to
//! a limit, so idle connections cost little and busy ones get big windows.
//! The limits themselves move with auto-tuning (`autotune.rs`); memory
//! follows only as data needs it.

#![forbid(unsafe_code)]

/// A byte ring whose capacity grows on demand up to `limit`.
#[derive(Debug, Default)]
struct Ring {
    buf: Vec<u8>,
    head: usize,
}

impl Ring {
    fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Makes room for positions `0..needed` from the head (at most `limit`).
    fn reserve(&mut self, needed: usize, limit: usize) {
        if needed <= self.buf.len() {
            return;
        }
        let new_cap = needed.max(self.buf.len() * 2).max(4096).min(limit.max(needed));
        let mut new = vec![0u8; new_cap];
        let cap = self.buf.len();
        for (i, b) in new.iter_mut().enumerate().take(cap) {
            *b = self.buf[(self.head + i) % cap];
        }
        self.buf = new;
        self.head = 0;
    }

    /// Copies `data` to positions `at..` from the head.
    fn write(&mut self, at: usize, data: &[u8]) {
        let cap = self.buf.len();
        let start = (self.head + at) % cap;
        let first = data.len().min(cap - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// Copies positions `at..at + out.len()` from the head into `out`.
    fn read(&self, at: usize, out: &mut [u8]) {
        let cap = self.buf.len();
        let start = (self.head + at) % cap;
        let first = out.len().min(cap - start);
        out[..first].copy_from_slice(&self.buf[start..start + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&self.buf[..rest]);
    }

    fn advance(&mut self, n: usize) {
        if self.buf.is_empty() {
            return;
        }
        self.head = (self.head + n) % self.buf.len();
    }
}

/// Bytes the application wrote that the peer has not acknowledged yet.
#[derive(Debug)]
pub(crate) struct SendBuffer {
    ring: Ring,
    len: usize,
    limit: usize,
}

impl SendBuffer {
    /// An empty buffer that may hold up to `limit` bytes.
    pub(crate) fn new(limit: usize) -> SendBuffer {
        SendBuffer {
            ring: Ring::default(),
            len: 0,
            limit,
        }
    }

    /// Bytes held (sent-but-unacknowledged and not yet sent).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for more bytes (none while a lowered limit is below what is held).
    pub(crate) fn free(&self) -> usize {
        self.limit.saturating_sub(self.len)
    }

    /// The most bytes it may hold.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the most bytes it may hold; bytes already held stay.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Bytes of memory allocated.
    pub(crate) fn allocated(&self) -> usize {
        self.ring.capacity()
    }

    /// Appends as much of `data` as fits; returns how much.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        self.ring.reserve(self.len + n, self.limit);
        self.ring.write(self.len, &data[..n]);
        self.len += n;
        n
    }

    /// Copies bytes starting `offset` bytes past the oldest unacknowledged one.
    pub(crate) fn peek(&self, offset: usize, out: &mut [u8]) {
        assert!(offset + out.len() <= self.len, "peek beyond the buffered data");
        if !out.is_empty() {
            self.ring.read(offset, out);
        }
    }

    /// Forgets the oldest `n` bytes (they were acknowledged).
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ring.advance(n);
        self.len -= n;
    }
}

/// Out-of-order islands kept at most; a segment that would start one more
/// is dropped (and acknowledged, so the sender learns what is missing).
pub(crate) const MAX_HOLES: usize = 64;

/// Received bytes: an in-order part the application can read, and
/// out-of-order pieces beyond it, kept until the holes fill.
#[derive(Debug)]
pub(crate) struct RecvBuffer {
    ring: Ring,
    /// In-order bytes ready to read.
    len: usize,
    /// Out-of-order ranges, as offsets from the end of the in-order part
    /// (RCV.NXT): sorted, disjoint, never touching offset 0.
    ooo: Vec<(usize, usize)>,
    limit: usize,
}

impl RecvBuffer {
    /// An empty buffer that may hold up to `limit` bytes.
    pub(crate) fn new(limit: usize) -> RecvBuffer {
        RecvBuffer {
            ring: Ring::default(),
            len: 0,
            ooo: Vec::new(),
            limit,
        }
    }

    /// In-order bytes ready to read.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is ready to read.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the most bytes it may hold. The caller keeps it at or above
    /// what the advertised window promised (the window never shrinks).
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Room past RCV.NXT: the receive window this buffer can back.
    pub(crate) fn window(&self) -> usize {
        self.limit.saturating_sub(self.len)
    }

    /// Bytes of memory allocated.
    pub(crate) fn allocated(&self) -> usize {
        self.ring.capacity()
    }

    /// Out-of-order ranges held, as offsets from RCV.NXT.
    pub(crate) fn out_of_order(&self) -> &[(usize, usize)] {
        &self.ooo
    }

    /// Stores `data` that starts `offset` bytes past RCV.NXT (clipped to the
    /// window). Returns how far the in-order part advanced (RCV.NXT moves by that).
    #[cfg(test)]
    pub(crate) fn write_at(&mut self, offset: usize, data: &[u8]) -> usize {
        self.write_within(offset, data, 0)
    }

    /// As `write_at`, but takes data up to `promised` bytes past RCV.NXT
    /// even beyond the limit: a scaled window rounds up (RFC 7323 §2.3),
    /// and what the advertised window let in is kept.
    pub(crate) fn write_within(&mut self, offset: usize, data: &[u8], promised: usize) -> usize {
        let room = self.window().max(promised);
        if offset >= room || data.is_empty() {
            return 0;
        }
        let data = &data[..data.len().min(room - offset)];
        let end = offset + data.len();
        let joins = offset == 0 || self.ooo.iter().any(|r| r.0 <= end && r.1 >= offset);
        if !joins && self.ooo.len() >= MAX_HOLES {
            // Bounded work per segment: a peer cannot make us juggle
            // thousands of islands (Linux prunes its out-of-order queue too).
            return 0;
        }
        self.ring.reserve(self.len + offset + data.len(), self.limit);
        self.ring.write(self.len + offset, data);
        self.add_range(offset, offset + data.len());
        if self.ooo.first().is_some_and(|r| r.0 == 0) {
            let advance = self.ooo.remove(0).1;
            self.len += advance;
            for r in &mut self.ooo {
                r.0 -= advance;
                r.1 -= advance;
            }
            advance
        } else {
            0
        }
    }

    /// Merges `[start, end)` into the range list.
    fn add_range(&mut self, start: usize, end: usize) {
        let (mut s, mut e) = (start, end);
        // Ranges that overlap or touch the new one merge into it.
        let first = self.ooo.partition_point(|r| r.1 < s);
        let mut last = first;
        while last < self.ooo.len() && self.ooo[last].0 <= e {
            s = s.min(self.ooo[last].0);
            e = e.max(self.ooo[last].1);
            last += 1;
        }
        self.ooo.splice(first..last, [(s, e)]);
    }

    /// Reads in-order bytes into `out`; returns how many.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        if n > 0 {
            self.ring.read(0, &mut out[..n]);
            self.ring.advance(n);
            self.len -= n;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_buffer_grows_wraps_and_consumes() {
        let mut b = SendBuffer::new(10_000);
        assert_eq!(b.allocated(), 0, "idle buffers allocate nothing");
        assert_eq!(RecvBuffer::new(10_000).allocated(), 0, "idle buffers allocate nothing");
        let data: Vec<u8> = (0..=255u8).cycle().take(9000).collect();
        assert_eq!(b.push(&data), 9000);
        assert_eq!(b.push(&data), 1000, "limited");
        assert_eq!(b.free(), 0);
        b.consume(8000);
        assert_eq!(b.push(&data[..5000]), 5000, "wraps around");
        let mut out = vec![0u8; 1000];
        b.peek(0, &mut out);
        assert_eq!(out, data[8000..9000]);
        b.peek(2000, &mut out);
        assert_eq!(out, data[..1000]);
        assert_eq!(b.len(), 7000);
    }

    #[test]
    fn recv_buffer_in_order_and_holes() {
        let mut b = RecvBuffer::new(100);
        assert_eq!(b.write_at(10, b"klmno"), 0, "out of order");
        assert_eq!(b.out_of_order(), [(10, 15)]);
        assert_eq!(b.write_at(20, b"uv"), 0);
        assert_eq!(b.write_at(0, b"abcdefghij"), 15, "hole filled: in order to 15");
        assert_eq!(b.out_of_order(), [(5, 7)]);
        assert_eq!(b.write_at(0, b"pqrst"), 7);
        let mut out = [0u8; 64];
        let n = b.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghijklmnopqrstuv");
        assert!(b.is_empty());
    }

    #[test]
    fn recv_buffer_overlaps_duplicates_and_window_clip() {
        let mut b = RecvBuffer::new(10);
        assert_eq!(b.write_at(2, b"cdef"), 0);
        assert_eq!(b.write_at(4, b"efgh"), 0, "overlap merges");
        assert_eq!(b.out_of_order(), [(2, 8)]);
        assert_eq!(b.write_at(0, b"abcdefghijXYZ"), 10, "clipped to the window");
        assert_eq!(b.window(), 0);
        assert_eq!(b.write_at(0, b"more"), 0);
        let mut out = [0u8; 4];
        assert_eq!(b.read(&mut out), 4);
        assert_eq!(&out, b"abcd");
        assert_eq!(b.window(), 4);
    }

    #[test]
    fn out_of_order_islands_are_bounded() {
        let mut b = RecvBuffer::new(1 << 20);
        for i in 0..200 {
            b.write_at(10 + i * 2, b"x");
        }
        assert_eq!(b.out_of_order().len(), MAX_HOLES);
        // Data that joins an existing island is still taken, and so is in-order data.
        assert_eq!(b.write_at(11, b"y"), 0);
        assert_eq!(b.out_of_order().len(), MAX_HOLES - 1);
        assert_eq!(b.write_at(0, &[7u8; 10]), 13, "up to the first gap");
    }

    #[test]
    fn recv_buffer_many_holes_wrapping() {
        let mut b = RecvBuffer::new(5000);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 241) as u8).collect();
        let mut delivered = Vec::new();
        let mut pos = 0;
        let mut out = vec![0u8; 700];
        while pos < data.len() {
            // Write 10 chunks of 100 in reverse order, then read some.
            let end = (pos + 1000).min(data.len()).min(pos + b.window());
            let mut off = end - pos;
            while off > 0 {
                let s = off.saturating_sub(100);
                pos += b.write_at(s, &data[pos + s..pos + off]);
                off = s;
            }
            let n = b.read(&mut out);
            delivered.extend_from_slice(&out[..n]);
        }
        while !b.is_empty() {
            let n = b.read(&mut out);
            delivered.extend_from_slice(&out[..n]);
        }
        assert_eq!(delivered, data);
    }
}
