//! Sequence space (RFC 9293 §3.4): a connection carries any number of
//! bytes. After 2^32 − 1 acknowledged bytes SND.UNA is back at ISS (the SYN
//! took one number), which must not read as "the SYN is not acknowledged
//! yet": that took the send buffer's offsets one byte wrong and killed
//! the stack thread with "peek beyond the buffered data".
//!
//! The state is reached by real segments: 4 GiB written by the application,
//! sent at an MTU of 65535 and acknowledged by the scripted peer.

use super::*;
use crate::tcp::tcb::{Tcb, Timer};

/// Length of the pattern the application writes, over and over: a prime,
/// so a segment built from a wrong offset cannot match it by accident.
const PATTERN_LEN: usize = 65521;

/// Sequence numbers in all: after this many bytes SND.UNA is back at ISS.
const SPACE: u64 = 1 << 32;

/// The pattern, twice: any run of up to `PATTERN_LEN` bytes from any phase
/// is one slice of it.
fn pattern() -> Vec<u8> {
    (0..2 * PATTERN_LEN)
        .map(|i| ((i % PATTERN_LEN) as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect()
}

/// The pattern's bytes at stream offset `at`, `len` of them (`len <= PATTERN_LEN`).
fn expected(pat: &[u8], at: u64, len: usize) -> &[u8] {
    let phase = (at % PATTERN_LEN as u64) as usize;
    &pat[phase..phase + len]
}

/// One side of a bulk transfer from the stack to the scripted peer.
struct Bulk {
    h: TcpHandle,
    pat: Vec<u8>,
    /// Stream bytes the application has written, and will write at most.
    written: u64,
    total: u64,
    /// Stream bytes the peer holds in order (its RCV.NXT is `p.ack`).
    received: u64,
}

impl Bulk {
    /// A connection from a peer offering an MSS for a 65535-byte MTU,
    /// window scaling and, if `sack`, SACK; our ISS pinned to `iss`.
    fn open(p: &mut Peer, iss: SeqNum, sack: bool) -> Bulk {
        p.i.tcp_layer_mut().pin_isn(iss);
        let l = p.listen(8);
        let syn = TcpOptions {
            mss: Some(65495),
            window_scale: Some(7),
            sack_permitted: sack,
            ..TcpOptions::default()
        };
        let (seq, ack) = (p.seq, p.ack);
        p.send_opts(SYN, seq, ack, 65535, syn, b"");
        p.seq += 1;
        let synack = p.recv_one();
        assert_eq!(synack.seq, iss);
        p.ack = iss + 1;
        p.send_next(ACK, b"");
        let (h, _) = p.i.tcp(p.now).accept(l).expect("accepted");
        Bulk {
            h,
            pat: pattern(),
            written: 0,
            total: u64::MAX,
            received: 0,
        }
    }

    /// The application writes as much as the send buffer takes.
    fn write(&mut self, p: &mut Peer) {
        while self.written < self.total {
            let phase = (self.written % PATTERN_LEN as u64) as usize;
            let len = (self.total - self.written).min(PATTERN_LEN as u64) as usize;
            let chunk = &self.pat[phase..phase + len];
            let n = p.i.tcp(p.now).send(self.h, chunk).expect("writable");
            self.written += n as u64;
            if n < chunk.len() {
                break;
            }
        }
    }

    /// The peer takes what the stack sent, keeping stream bytes below
    /// `limit` only (the rest is lost on the way): data at or below its
    /// RCV.NXT (`p.ack`) is checked against the pattern, what is new is
    /// kept, and data beyond a hole is dropped. Returns the segments.
    fn take(&mut self, p: &mut Peer, limit: u64) -> Vec<Seg> {
        let segs = p.recv();
        for s in &segs {
            if s.payload.is_empty() || s.seq.gt(p.ack) {
                continue;
            }
            let behind = p.ack.wrapping_distance_from(s.seq) as u64;
            let at = self.received - behind;
            assert_eq!(
                s.payload,
                expected(&self.pat, at, s.payload.len()),
                "segment at {} (stream offset {at}) carries the wrong bytes",
                s.seq
            );
            let new = (s.payload.len() as u64)
                .saturating_sub(behind)
                .min(limit.saturating_sub(self.received));
            self.received += new;
            p.ack += new as u32;
        }
        segs
    }

    /// Runs the transfer until the peer holds and has acknowledged at
    /// least `upto` stream bytes, the application writing all along; if
    /// `lose_beyond`, exactly `upto`: what the stack sent beyond is lost.
    fn pump_until(&mut self, p: &mut Peer, upto: u64, lose_beyond: bool) {
        let limit = if lose_beyond { upto } else { u64::MAX };
        while self.received < upto {
            self.write(p);
            let before = self.received;
            self.take(p, limit);
            assert!(self.received > before, "the transfer stalled at {before}");
            let (seq, ack) = (p.seq, p.ack);
            p.send(ACK, seq, ack, b"");
        }
    }

    /// The application shuts down writing: the peer takes the rest and
    /// the FIN right after the last byte, sends its own, and the
    /// connection waits in TIME-WAIT with SYN, data and FIN acknowledged.
    /// Returns the bytes delivered.
    fn close(&mut self, p: &mut Peer) -> u64 {
        p.i.tcp(p.now).shutdown(self.h, Shutdown::Write).unwrap();
        let end = self.written;
        let fin = loop {
            let segs = self.take(p, u64::MAX);
            if let Some(fin) = segs.into_iter().find(|s| s.flags & FIN != 0) {
                break fin;
            }
            let (seq, ack) = (p.seq, p.ack);
            p.send(ACK, seq, ack, b"");
        };
        assert_eq!(self.received, end, "every byte written arrived");
        assert_eq!(
            fin.seq + fin.payload.len() as u32,
            p.ack,
            "the FIN follows the last byte"
        );
        p.ack += 1;
        p.send_next(FIN | ACK, b"");
        p.recv();
        assert_eq!(p.i.tcp_layer().time_wait_count(), 1, "in TIME-WAIT");
        let t = self.tcb(p);
        assert_eq!(
            t.snd_una.wrapping_distance_from(t.iss) as u64,
            (end + 2) % SPACE,
            "SYN, data and FIN acknowledged"
        );
        end
    }

    fn tcb<'a>(&self, p: &'a Peer) -> &'a Tcb {
        p.i.tcp_layer().conns.get(self.h.0).expect("live")
    }
}

/// RFC 9293 §3.4: SND.UNA passes ISS again after 2^32 − 1 acknowledged
/// bytes, with data in flight; everything in flight is lost and the
/// retransmission timeout resends it from ISS, byte for byte; the transfer
/// goes on and the connection closes cleanly.
fn una_passes_iss_with_data_in_flight_and_an_rto(sack: bool) {
    let mut p = Peer::with(|c| c.mtu = 65535);
    // The sequence numbers also wrap past zero early on.
    let iss = SeqNum(u32::MAX - 100_000);
    let mut b = Bulk::open(&mut p, iss, sack);
    b.pump_until(&mut p, SPACE - 1, true);
    let t = b.tcb(&p);
    assert_eq!(t.snd_una, iss, "2^32 - 1 bytes acknowledged: SND.UNA is ISS again");
    assert!(t.flight() > 0, "data in flight: {} bytes", t.flight());
    // All that is in flight is lost, and so is what goes out before the
    // retransmission timeout (with SACK, a loss probe first).
    b.write(&mut p);
    b.take(&mut p, SPACE - 1);
    while p.i.stats().tcp_rto_retransmits == 0 {
        assert!(
            b.tcb(&p).timer(Timer::Retransmit).is_some(),
            "the retransmission timer runs"
        );
        p.now = p.i.poll_timeout().expect("a timer");
        p.i.handle_timeout(p.now);
        if p.i.stats().tcp_rto_retransmits == 0 {
            b.take(&mut p, SPACE - 1);
        }
    }
    let resent = b.take(&mut p, u64::MAX);
    let first = resent.iter().find(|s| !s.payload.is_empty()).expect("a retransmission");
    assert_eq!(first.seq, iss, "the timeout resends from SND.UNA = ISS");
    assert!(p.ack.gt(iss), "and the peer took it");
    assert_eq!(p.i.stats().tcp_rto_retransmits, 1);
    let (seq, ack) = (p.seq, p.ack);
    p.send(ACK, seq, ack, b"");
    // Slow start from one segment resends the rest and goes on past it.
    b.pump_until(&mut p, SPACE + (16 << 20), false);
    assert_eq!(p.i.stats().tcp_rto_retransmits, 1, "no further timeout");
    let end = b.close(&mut p);
    assert!(end > SPACE, "{end} bytes delivered");
}

/// The echo of exactly 2^32 − 1 bytes: everything acknowledged,
/// SND.UNA is ISS, and the application closes. The FIN takes the number
/// of ISS (2^32 on), not one past it, and the connection closes cleanly.
#[test]
fn a_fin_after_2_pow_32_minus_1_bytes_takes_the_number_of_iss() {
    let mut p = Peer::with(|c| c.mtu = 65535);
    let iss = SeqNum(7);
    let mut b = Bulk::open(&mut p, iss, false);
    b.total = SPACE - 1;
    b.pump_until(&mut p, SPACE - 1, false);
    let t = b.tcb(&p);
    assert_eq!((t.snd_una, t.flight()), (iss, 0), "all acknowledged: SND.UNA is ISS");
    assert_eq!(b.close(&mut p), SPACE - 1);
}

#[test]
fn snd_una_passes_iss_after_2_pow_32_minus_1_bytes_with_an_rto() {
    una_passes_iss_with_data_in_flight_and_an_rto(false);
}

#[test]
fn snd_una_passes_iss_after_2_pow_32_minus_1_bytes_with_an_rto_and_sack() {
    una_passes_iss_with_data_in_flight_and_an_rto(true);
}
