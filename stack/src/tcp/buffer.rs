//! Send and receive buffers: rings that start empty and grow with use up to
//! a limit, so idle connections cost little and busy ones get big windows.
//! The limits themselves move with auto-tuning (`autotune.rs`); memory
//! follows only as data needs it, and goes back when the ring empties after
//! a use much smaller than its size, and altogether once the connection is
//! idle (an idle connection keeps none). Every ring's storage is counted
//! in the stack's memory budget (`memory.rs`), here and nowhere else.

#![forbid(unsafe_code)]

use super::memory::{FLOOR, MemoryAccount};

/// A byte ring whose capacity grows on demand up to `limit` (and as the
/// memory budget allows), and shrinks when it empties after a use much
/// smaller than its size. FLOOR is the smallest storage it allocates once
/// used, which it keeps while in use.
#[derive(Debug)]
struct Ring {
    buf: Vec<u8>,
    head: usize,
    /// The most positions from the head in use since the ring was last
    /// empty: what its latest use needed.
    peak: usize,
    account: MemoryAccount,
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.account.resized(self.buf.len(), 0);
    }
}

impl Ring {
    fn new(account: &MemoryAccount) -> Ring {
        Ring {
            buf: Vec::new(),
            head: 0,
            peak: 0,
            account: account.clone(),
        }
    }

    /// Replaces the storage, keeping the account exact (the ring's memory
    /// changes only here, in `emptied` and in `drop`).
    fn set_storage(&mut self, buf: Vec<u8>) {
        self.account.resized(self.buf.len(), buf.len());
        self.buf = buf;
    }

    fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Where position `at` from the head lies in `buf` (`at <= capacity`;
    /// the capacity itself maps to the head).
    fn index(&self, at: usize) -> usize {
        let i = self.head + at;
        if i >= self.buf.len() { i - self.buf.len() } else { i }
    }

    /// Makes room for positions `0..needed` from the head (at most `limit`),
    /// keeping the bytes at positions `0..keep`, as far as the memory
    /// budget allows. Returns the capacity now, which may fall short of
    /// `needed` once the budget is spent.
    fn reserve(&mut self, needed: usize, keep: usize, limit: usize) -> usize {
        self.peak = self.peak.max(needed);
        if needed <= self.buf.len() {
            return self.buf.len();
        }
        let step = needed.max(self.buf.len() * 2).max(FLOOR).min(limit.max(needed));
        let new_cap = self.account.grant(self.buf.len(), step, needed);
        if new_cap <= self.buf.len() {
            return self.buf.len();
        }
        // The kept bytes are at most two contiguous runs: from the head to
        // the end of the storage, then from its start.
        let keep = keep.min(self.buf.len());
        let first = keep.min(self.buf.len() - self.head);
        // Zeroed by the allocator (fresh pages from the OS cost no memset),
        // then the kept bytes: two memcpy calls.
        let mut new = vec![0u8; new_cap];
        new[..first].copy_from_slice(&self.buf[self.head..self.head + first]);
        new[first..keep].copy_from_slice(&self.buf[..keep - first]);
        self.set_storage(new);
        self.head = 0;
        new_cap
    }

    /// Copies `data` to positions `at..` from the head.
    fn write(&mut self, at: usize, data: &[u8]) {
        let start = self.index(at);
        let first = data.len().min(self.buf.len() - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// Copies positions `at..at + out.len()` from the head into `out`.
    fn read(&self, at: usize, out: &mut [u8]) {
        let start = self.index(at);
        let first = out.len().min(self.buf.len() - start);
        out[..first].copy_from_slice(&self.buf[start..start + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&self.buf[..rest]);
    }

    /// Appends positions `at..at + len` from the head to `out`.
    fn append(&self, at: usize, len: usize, out: &mut Vec<u8>) {
        if len == 0 {
            return;
        }
        let start = self.index(at);
        let first = len.min(self.buf.len() - start);
        out.extend_from_slice(&self.buf[start..start + first]);
        out.extend_from_slice(&self.buf[..len - first]);
    }

    /// Drops the `n` positions at the head (`n <= capacity`).
    fn advance(&mut self, n: usize) {
        self.head = self.index(n);
    }

    /// The ring holds nothing any more. If its latest use needed at most an
    /// eighth of it, it halves, down to one page, which it keeps: one whose
    /// uses fill it (a bulk transfer drains it between bursts) keeps its
    /// size, a ring left big by a burst shrinks step by step as smaller uses
    /// follow, and small messages back and forth cost no allocation each
    /// (the last page goes once the connection is idle: `release`, a
    /// second after its reader began to wait, `Timer::Idle`).
    fn emptied(&mut self) {
        self.head = 0;
        let cap = self.buf.len();
        if cap > FLOOR && self.peak <= cap / 8 {
            self.buf.truncate((cap / 2).max(FLOOR));
            self.buf.shrink_to_fit();
            self.account.resized(cap, self.buf.len());
        }
        self.peak = 0;
    }

    /// Gives all storage back (the ring must hold nothing).
    fn release(&mut self) {
        self.set_storage(Vec::new());
        self.head = 0;
        self.peak = 0;
    }

    /// The most storage it may use now for `limit` bytes: `limit`, but only
    /// what it has (at least one page) once the memory budget is spent.
    fn usable(&self, limit: usize) -> usize {
        if self.account.exhausted() {
            limit.min(self.buf.len().max(FLOOR))
        } else {
            limit
        }
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
    /// An empty buffer that may hold up to `limit` bytes, drawing memory from `account`.
    pub(crate) fn new(limit: usize, account: &MemoryAccount) -> SendBuffer {
        SendBuffer {
            ring: Ring::new(account),
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

    /// Room for more bytes (none while a lowered limit is below what is
    /// held): within the limit, and once the memory budget is spent, within
    /// the storage the ring has (at least a page).
    pub(crate) fn free(&self) -> usize {
        self.usable().saturating_sub(self.len)
    }

    /// The most bytes it may hold now: its limit, or less while the memory
    /// budget is spent (what writability is measured against).
    pub(crate) fn usable(&self) -> usize {
        self.ring.usable(self.limit)
    }

    /// The memory budget it draws from.
    pub(crate) fn memory(&self) -> &MemoryAccount {
        &self.ring.account
    }

    /// The most bytes it may hold.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the most bytes it may hold; bytes already held stay.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Gives the storage back if nothing is buffered (the connection went idle).
    pub(crate) fn release_if_empty(&mut self) {
        if self.len == 0 {
            self.ring.release();
        }
    }

    /// Bytes of storage allocated.
    pub(crate) fn allocated(&self) -> usize {
        self.ring.capacity()
    }

    /// Drops every byte held and gives the storage back: the connection
    /// ended and can send nothing more (Linux purges its write queue in
    /// `tcp_done`).
    pub(crate) fn discard_all(&mut self) {
        self.len = 0;
        self.ring.release();
    }

    /// Appends as much of `data` as fits; returns how much.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        // The budget may grant less than asked: what fits, then.
        let capacity = self.ring.reserve(self.len + n, self.len, self.limit);
        let n = n.min(capacity - self.len);
        if n == 0 {
            return 0;
        }
        self.ring.write(self.len, &data[..n]);
        self.len += n;
        n
    }

    /// Copies bytes starting `offset` bytes past the oldest unacknowledged one.
    /// Appends `len` bytes from `offset` to `out` (building a segment: one
    /// copy, straight from the ring into the packet).
    pub(crate) fn append_to(&self, offset: usize, len: usize, out: &mut Vec<u8>) {
        assert!(offset + len <= self.len, "peek beyond the buffered data");
        self.ring.append(offset, len, out);
    }

    /// Copies `out.len()` bytes from `offset` into `out`.
    #[cfg(test)]
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
        if self.len == 0 && n > 0 {
            self.ring.emptied();
        }
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

/// What became of a received segment's data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    /// How far the in-order part advanced (RCV.NXT moves by that).
    pub advanced: usize,
    /// Some of it was dropped because the memory budget is spent (Linux's `TCPRcvQDrop`).
    pub dropped: bool,
}

impl RecvBuffer {
    /// An empty buffer that may hold up to `limit` bytes, drawing memory from `account`.
    pub(crate) fn new(limit: usize, account: &MemoryAccount) -> RecvBuffer {
        RecvBuffer {
            ring: Ring::new(account),
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

    /// The window to offer under memory pressure: no more than the storage
    /// already held has free, or `small` bytes, whichever is more (Linux
    /// clamps to 4 segments); once the budget is spent, no more than one
    /// page holds. Never more than `window`.
    pub(crate) fn pressure_window(&self, small: usize) -> usize {
        let account = &self.ring.account;
        if !account.under_pressure() {
            return self.window();
        }
        let held = self.len + self.ooo.last().map_or(0, |r| r.1);
        let room = self
            .ring
            .usable(self.ring.capacity().max(held + small))
            .saturating_sub(self.len);
        self.window().min(room)
    }

    /// The memory budget it draws from.
    pub(crate) fn memory(&self) -> &MemoryAccount {
        &self.ring.account
    }

    /// Gives the storage back if nothing is buffered (the connection went idle).
    pub(crate) fn release_if_empty(&mut self) {
        if self.len == 0 && self.ooo.is_empty() {
            self.ring.release();
        }
    }

    /// Bytes of storage allocated.
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
        self.write_within(offset, data, 0).advanced
    }

    /// As `write_at`, but takes data up to `promised` bytes past RCV.NXT
    /// even beyond the limit: a scaled window rounds up (RFC 7323 §2.3),
    /// and what the advertised window let in is kept, as far as the memory
    /// budget allows: once it is spent, out-of-order data that needs more
    /// storage is dropped, and in-order data beyond what the ring holds.
    pub(crate) fn write_within(&mut self, offset: usize, data: &[u8], promised: usize) -> Stored {
        let room = self.window().max(promised);
        if offset >= room || data.is_empty() {
            return Stored::default();
        }
        let data = &data[..data.len().min(room - offset)];
        let end = offset + data.len();
        let joins = offset == 0 || self.ooo.iter().any(|r| r.0 <= end && r.1 >= offset);
        if !joins && self.ooo.len() >= MAX_HOLES {
            // Bounded work per segment: a peer cannot make us juggle
            // thousands of islands (Linux prunes its out-of-order queue too).
            return Stored::default();
        }
        let held = self.len + self.ooo.last().map_or(0, |r| r.1);
        let capacity = self.ring.reserve(self.len + end, held, self.limit);
        let fits = capacity.saturating_sub(self.len + offset).min(data.len());
        let dropped = fits < data.len();
        if dropped && offset > 0 {
            // Out of order first: it waits for a hole anyway, and the
            // sender repairs it once memory is back.
            return Stored { advanced: 0, dropped };
        }
        let data = &data[..fits];
        if data.is_empty() {
            return Stored { advanced: 0, dropped };
        }
        self.ring.write(self.len + offset, data);
        if offset == 0 && self.ooo.is_empty() {
            // In order with no islands waiting: the common case, no bookkeeping.
            self.len += data.len();
            return Stored {
                advanced: data.len(),
                dropped,
            };
        }
        self.add_range(offset, offset + data.len());
        let advanced = if self.ooo.first().is_some_and(|r| r.0 == 0) {
            let advance = self.ooo.remove(0).1;
            self.len += advance;
            for r in &mut self.ooo {
                r.0 -= advance;
                r.1 -= advance;
            }
            advance
        } else {
            0
        };
        Stored { advanced, dropped }
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
        }
        self.skip(n)
    }

    /// Throws away up to `max` in-order bytes unread, as `read` would take
    /// them (Linux's `MSG_TRUNC` on TCP); how many.
    pub(crate) fn skip(&mut self, max: usize) -> usize {
        let n = max.min(self.len);
        if n > 0 {
            self.ring.advance(n);
            self.len -= n;
            // Out-of-order islands sit past the in-order part: the ring is
            // empty only without them.
            if self.len == 0 && self.ooo.is_empty() {
                self.ring.emptied();
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;
    use std::collections::VecDeque;

    #[test]
    fn send_buffer_grows_wraps_and_consumes() {
        let mut b = SendBuffer::new(10_000, &MemoryAccount::unlimited());
        assert_eq!(b.allocated(), 0, "idle buffers allocate nothing");
        assert_eq!(
            RecvBuffer::new(10_000, &MemoryAccount::unlimited()).allocated(),
            0,
            "idle buffers allocate nothing"
        );
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
        let mut b = RecvBuffer::new(100, &MemoryAccount::unlimited());
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
        let mut b = RecvBuffer::new(10, &MemoryAccount::unlimited());
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
        let mut b = RecvBuffer::new(1 << 20, &MemoryAccount::unlimited());
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
        let mut b = RecvBuffer::new(5000, &MemoryAccount::unlimited());
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
    #[test]
    fn growth_across_the_wrap_point_keeps_the_data() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut b = SendBuffer::new(1 << 20, &MemoryAccount::unlimited());
        // Move the head to the middle of one page, then wrap the data.
        assert_eq!(b.push(&data[..3000]), 3000);
        b.consume(2000);
        assert_eq!(
            b.push(&data[3000..6000]),
            3000,
            "wraps: 4000 bytes from 2000 in one page"
        );
        assert_eq!(b.allocated(), 4096);
        assert_eq!(b.push(&data[6000..7000]), 1000);
        assert_eq!(b.allocated(), 8192, "grew across the wrap point");
        assert_eq!(b.push(&data[7000..]), 33_000);
        let mut out = vec![0u8; b.len()];
        b.peek(0, &mut out);
        assert_eq!(out, data[2000..]);
        // The receive side, with an island past the wrap point when it grows.
        let mut r = RecvBuffer::new(1 << 20, &MemoryAccount::unlimited());
        assert_eq!(r.write_at(0, &data[..3000]), 3000);
        let mut sink = vec![0u8; 2999];
        assert_eq!(r.read(&mut sink), 2999);
        assert_eq!(r.write_at(1500, &data[4500..5000]), 0, "an island that wraps");
        assert_eq!(r.write_at(6000, &data[9000..9100]), 0, "a write that grows the ring");
        assert_eq!(r.out_of_order(), [(1500, 2000), (6000, 6100)]);
        assert_eq!(r.write_at(0, &data[3000..9000]), 6100);
        let mut out = vec![0u8; 6101];
        assert_eq!(r.read(&mut out), 6101);
        assert_eq!(out, data[2999..9100]);
    }

    #[test]
    fn empty_rings_shrink_and_small_uses_release_them() {
        let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let mut b = SendBuffer::new(1 << 20, &MemoryAccount::unlimited());
        assert_eq!(b.push(&data), 100_000);
        let big = b.allocated();
        assert!(big >= 100_000);
        b.consume(100_000);
        assert_eq!(b.allocated(), big, "a ring its use filled stays for the next burst");
        // Small uses after a burst halve it, step by step, then release it.
        let mut sizes = Vec::new();
        for i in 0..10 {
            assert_eq!(b.push(&data[i..i + 10]), 10);
            let mut out = [0u8; 10];
            b.peek(0, &mut out);
            assert_eq!(out, data[i..i + 10], "data intact after a shrink");
            b.consume(10);
            sizes.push(b.allocated());
        }
        assert_eq!(sizes[..5], [big / 2, big / 4, big / 8, big / 16, FLOOR], "{sizes:?}");
        assert!(sizes[5..].iter().all(|&s| s == FLOOR), "one page stays: {sizes:?}");
        // An idle echo connection: a few bytes each way, then nothing held.
        let mut r = RecvBuffer::new(65536, &MemoryAccount::unlimited());
        assert_eq!(r.write_at(0, b"hello\n"), 6);
        assert_eq!(r.allocated(), 4096);
        let mut out = [0u8; 16];
        assert_eq!(r.read(&mut out[..3]), 3);
        assert_eq!(r.allocated(), 4096, "not empty yet");
        assert_eq!(r.read(&mut out), 3);
        assert_eq!(&out[..3], b"lo\n");
        assert_eq!(
            r.allocated(),
            FLOOR,
            "empty after a small use: one page stays, no allocation per message"
        );
        assert_eq!(r.write_at(0, b"again"), 5);
        assert_eq!(r.read(&mut out), 5);
        assert_eq!(&out[..5], b"again");
    }

    #[test]
    fn no_shrink_while_islands_are_pending() {
        let mut r = RecvBuffer::new(65536, &MemoryAccount::unlimited());
        assert_eq!(r.write_at(0, b"abc"), 3);
        assert_eq!(r.write_at(10, b"island"), 0);
        let mut out = [0u8; 16];
        assert_eq!(r.read(&mut out), 3);
        assert!(r.is_empty());
        assert_eq!(r.allocated(), 4096, "the island still lives in the ring");
        assert_eq!(r.write_at(0, b"0123456789"), 16);
        assert_eq!(r.read(&mut out), 16);
        assert_eq!(&out, b"0123456789island");
        assert_eq!(r.allocated(), FLOOR);
    }

    /// The byte at stream position `p`, so that any piece can be checked.
    fn stream(p: usize) -> u8 {
        (p.wrapping_mul(2_654_435_761) >> 13) as u8
    }

    #[test]
    fn send_buffer_matches_a_simple_model() {
        let mut rng = Rng::new(13);
        for round in 0..20 {
            let mut b = SendBuffer::new(1 + rng.below(20_000) as usize, &MemoryAccount::unlimited());
            let mut most_limit = b.limit();
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut written = 0usize;
            for _ in 0..3000 {
                match rng.below(10) {
                    0..=3 => {
                        let most = if rng.chance(0.3) { 9000 } else { 300 };
                        let len = rng.below(most) as usize;
                        let data: Vec<u8> = (written..written + len).map(stream).collect();
                        let n = b.push(&data);
                        assert_eq!(n, len.min(b.limit().saturating_sub(model.len())), "round {round}");
                        model.extend(&data[..n]);
                        written += n;
                    }
                    4..=6 => {
                        let n = rng.below(model.len() as u64 + 2) as usize;
                        b.consume(n);
                        model.drain(..n.min(model.len()));
                    }
                    7 | 8 => {
                        let offset = rng.below(model.len() as u64 + 1) as usize;
                        let len = rng.below((model.len() - offset) as u64 + 1) as usize;
                        let mut out = vec![0u8; len];
                        b.peek(offset, &mut out);
                        assert!(out.iter().eq(model.range(offset..offset + len)), "round {round}");
                    }
                    _ => {
                        b.set_limit(1 + rng.below(20_000) as usize);
                        most_limit = most_limit.max(b.limit());
                    }
                }
                assert_eq!(b.len(), model.len());
                assert!(b.allocated() >= b.len());
                assert!(b.allocated() <= most_limit.max(FLOOR));
            }
        }
    }

    #[test]
    fn recv_buffer_matches_a_simple_model() {
        let mut rng = Rng::new(11);
        for round in 0..20 {
            let mut b = RecvBuffer::new(1 + rng.below(10_000) as usize, &MemoryAccount::unlimited());
            // Readable bytes, and the positions past RCV.NXT received so far.
            let mut ready: VecDeque<u8> = VecDeque::new();
            let mut ahead: Vec<bool> = Vec::new();
            let mut nxt = 0usize;
            for step in 0..3000 {
                match rng.below(10) {
                    0..=5 => {
                        let room = b.window();
                        let offset = rng.below(room as u64 + 100) as usize;
                        let most = if rng.chance(0.2) { 5000 } else { 600 };
                        let len = rng.below(most) as usize;
                        let data: Vec<u8> = (nxt + offset..nxt + offset + len).map(stream).collect();
                        let end = (offset + len).min(room);
                        let joins = offset == 0 || b.out_of_order().iter().any(|r| r.0 <= end && r.1 >= offset);
                        let taken = offset < room && len > 0 && (joins || b.out_of_order().len() < MAX_HOLES);
                        let advanced = b.write_at(offset, &data);
                        if taken {
                            ahead.resize(ahead.len().max(end), false);
                            ahead[offset..end].iter_mut().for_each(|x| *x = true);
                        }
                        let expected = ahead.iter().take_while(|&&x| x).count();
                        assert_eq!(advanced, expected, "round {round}");
                        ready.extend((nxt..nxt + expected).map(stream));
                        ahead.drain(..expected);
                        nxt += expected;
                    }
                    6..=8 => {
                        let mut out = vec![0u8; rng.below(3000) as usize];
                        let n = b.read(&mut out);
                        assert_eq!(n, out.len().min(ready.len()));
                        assert!(ready.drain(..n).eq(out[..n].iter().copied()), "round {round}");
                    }
                    _ => b.set_limit(b.limit() + rng.below(2000) as usize),
                }
                assert_eq!(b.len(), ready.len());
                if step % 8 != 0 {
                    continue;
                }
                // The islands are the runs of received positions ahead.
                let mut islands = Vec::new();
                for (i, &x) in ahead.iter().enumerate() {
                    match (x, islands.last_mut()) {
                        (true, Some((_, e))) if *e == i => *e = i + 1,
                        (true, _) => islands.push((i, i + 1)),
                        _ => {}
                    }
                }
                assert_eq!(b.out_of_order(), islands, "round {round}");
                assert!(b.allocated() >= b.len() + islands.last().map_or(0, |r| r.1));
            }
        }
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use std::time::Instant;

    /// Growth and peek throughput, printed (run with `--ignored --nocapture`).
    #[test]
    #[ignore = "a timing, not a check"]
    fn ring_growth_and_peek_throughput() {
        let chunk = vec![7u8; 1448];
        // Growth: fill a 4 MiB buffer from empty after its head moved, so
        // every doubling copies a wrapped ring.
        let rounds = 50;
        let start = Instant::now();
        let mut grown = 0usize;
        for _ in 0..rounds {
            let mut b = SendBuffer::new(4 << 20, &MemoryAccount::unlimited());
            b.push(&chunk[..1000]);
            b.consume(1000);
            while b.push(&chunk) > 0 {}
            grown += b.len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!("growth to 4 MiB: {:.0} MB/s filled", grown as f64 / secs / 1e6);
        // Peek: segment-sized copies out of a full, wrapped ring.
        let mut b = SendBuffer::new(1 << 20, &MemoryAccount::unlimited());
        while b.push(&chunk) > 0 {}
        b.consume(100_000);
        while b.push(&chunk) > 0 {}
        let mut out = vec![0u8; 1448];
        let start = Instant::now();
        let mut copied = 0usize;
        for _ in 0..200 {
            let mut off = 0;
            while off + out.len() <= b.len() {
                b.peek(off, &mut out);
                off += out.len();
                copied += out.len();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!("peek 1448 B: {:.0} MB/s", copied as f64 / secs / 1e6);
        // Receive: segments in, application reads of 64 KiB out.
        let mut r = RecvBuffer::new(1 << 20, &MemoryAccount::unlimited());
        let mut sink = vec![0u8; 65536];
        let start = Instant::now();
        let mut moved = 0usize;
        for _ in 0..20_000 {
            for _ in 0..40 {
                moved += r.write_at(0, &chunk);
            }
            while r.read(&mut sink) > 0 {}
        }
        let secs = start.elapsed().as_secs_f64();
        println!("recv 1448 B in, 64 KiB reads: {:.0} MB/s", moved as f64 / secs / 1e6);
    }
}
