//! The memory budget (Linux's `tcp_mem`) and the connection limit, segment
//! by segment: the account is exact and returns to zero; under pressure
//! windows clamp without their right edge moving back and buffers stop
//! growing; at the maximum a write finds no room past a page and received
//! data past a page is dropped and counted; past `max_connections` a SYN
//! is dropped and a connect fails.

use super::*;

/// The bytes every connection's rings hold, summed.
fn rings(p: &Peer) -> usize {
    p.i.tcp_layer()
        .conns
        .iter()
        .map(|(_, t)| t.recv.allocated() + t.send.allocated())
        .sum()
}

/// A second peer port and sequence space, for another connection to PORT.
fn next_client(p: &mut Peer, port: u16) {
    p.port = port;
    p.seq = SeqNum(500_000);
}

/// The right edge the last segment advertised (window unscaled: the peer offered no scaling).
fn right_edge(s: &Seg) -> SeqNum {
    s.ack + u32::from(s.window)
}

/// A peer of a stack whose budget comes under pressure past 16 KiB.
fn small_budget() -> Peer {
    Peer::with(|c| {
        c.tcp.memory = MemoryLimits {
            min: 8 << 10,
            pressure: 16 << 10,
            max: 1 << 20,
        }
    })
}

#[test]
fn the_account_is_every_ring_and_returns_to_zero() {
    let mut p = Peer::new();
    let (_l, h) = p.established_passive();
    assert_eq!(p.i.tcp_layer().memory().allocated, 0, "no data, no memory");
    p.send_next(ACK | PSH, &[1; 3000]);
    let _ = p.recv();
    p.i.tcp(p.now).send(h, &[2; 2000]).unwrap();
    let mut sent = p.recv();
    assert!(rings(&p) > 0);
    assert_eq!(p.i.tcp_layer().memory().allocated, rings(&p));
    // The peer acknowledges everything, the reader drains and waits: the
    // idle timer gives the pages back to the budget.
    while let Some(last) = sent.iter().rfind(|s| !s.payload.is_empty()) {
        p.ack = last.seq + last.payload.len() as u32;
        p.send_next(ACK, b"");
        sent = p.recv();
    }
    assert_eq!(p.read_all(h).len(), 3000);
    p.advance(IDLE_RELEASE);
    p.advance(IDLE_RELEASE);
    assert_eq!(p.i.tcp_layer().memory().allocated, 0, "idle rings went back");
    // Data again, then the application closes with it unread: reset, freed.
    p.send_next(ACK | PSH, &[3; 2000]);
    let _ = p.recv();
    assert!(p.i.tcp_layer().memory().allocated > 0);
    p.i.tcp(p.now).close(h, false);
    let _ = p.recv();
    assert!(!p.i.tcp_layer().exists(h));
    assert_eq!(p.i.tcp_layer().memory().allocated, 0, "a freed connection returns all");
}

#[test]
fn under_pressure_windows_clamp_never_moving_back_and_buffers_stop_growing() {
    let mut p = small_budget();
    let l = p.listen(8);
    let a = p.handshake_to(l);
    p.end_quick_acks(a);
    // A reader that does not read: its ring fills past the pressure mark.
    let mut last = None;
    for _ in 0..14 {
        p.send_next(ACK, &[7; 1460]);
        last = p.recv().pop().or(last);
    }
    let before = p.i.tcp_layer().memory();
    assert!(before.pressure, "{before:?}");
    assert_eq!(before.pressures, 1);
    p.advance(Duration::from_millis(200));
    let edge = p.recv().pop().or(last).map(|s| right_edge(&s)).expect("ACKed");
    // The window of a new connection clamps to 4 segments, not 64 KiB.
    next_client(&mut p, 40_001);
    p.send_next(SYN, b"");
    let synack = p.recv_one();
    assert!(synack.is(SYN | ACK));
    assert_eq!(usize::from(synack.window), 4 * 1460, "clamped under pressure");
    // The first connection's right edge never moves back: more data
    // within it is still taken.
    next_client(&mut p, PEER_PORT);
    let seq = p.i.tcp_layer().conns.get(a.0).unwrap().rcv_nxt;
    p.seq = seq;
    p.send_next(ACK, &[8; 1000]);
    p.advance(Duration::from_millis(200));
    let ack = p.recv().pop().expect("ACKed");
    assert_eq!(ack.ack, seq + 1000, "in the promised window: taken");
    assert!(right_edge(&ack).ge(edge), "right edge moved back");
    // Send buffers do not grow under pressure (they would to two initial windows).
    let t = p.i.tcp_layer_mut().conns.get_mut(a.0).unwrap();
    t.send.set_limit(4096);
    t.expand_send_buffer();
    assert_eq!(t.send.limit(), 4096);
    p.read_all(a);
    // Drained below min, pressure is over.
    p.advance(IDLE_RELEASE);
    p.advance(IDLE_RELEASE);
    assert!(!p.i.tcp_layer().memory().pressure);
}

#[test]
fn at_the_max_writes_find_a_page_and_received_data_past_a_page_is_dropped() {
    let mut p = Peer::with(|c| c.tcp.memory = MemoryLimits::with_max(64 << 10));
    let l = p.listen(8);
    let b = p.handshake_to(l);
    let (b_seq, b_ack) = (p.seq, p.ack);
    // Another client fills the budget with data nobody reads.
    next_client(&mut p, 40_001);
    let a = p.handshake_to(l);
    p.end_quick_acks(a);
    while p.i.tcp_layer().memory().allocated < 64 << 10 {
        p.send_next(ACK, &[7; 1460]);
        let _ = p.recv();
        assert!(p.i.tcp_layer().recv_queue(a) < 70_000, "window overrun");
    }
    // The first client's window was promised before: in-order data is
    // taken up to a page, the rest dropped and counted.
    next_client(&mut p, PEER_PORT);
    (p.seq, p.ack) = (b_seq, b_ack);
    p.send_next(ACK, &[1; 3000]);
    p.send_next(ACK, &[2; 3000]);
    let acks = p.recv();
    let last = acks.last().expect("ACKed at once");
    assert_eq!(last.ack, b_seq + 4096, "a page taken, the rest dropped");
    assert_eq!(p.i.stats().tcp_rcvq_drops, 1);
    // A write finds a page of room, then none (WouldBlock, not writable).
    assert_eq!(p.i.tcp(p.now).send(b, &[3; 10_000]), Ok(4096));
    assert_eq!(p.i.tcp(p.now).send(b, &[3; 10]), Err(IoError::WouldBlock));
    assert!(!p.i.tcp(p.now).readiness(b).writable);
    assert_eq!(p.i.tcp_layer().memory().allocated, rings(&p));
}

#[test]
fn past_max_connections_syns_are_dropped_and_connects_fail() {
    let mut p = Peer::with(|c| c.tcp.max_connections = 2);
    let l = p.listen(8);
    p.handshake_to(l);
    next_client(&mut p, 40_001);
    p.handshake_to(l);
    next_client(&mut p, 40_002);
    p.send_next(SYN, b"");
    assert!(p.recv().is_empty(), "dropped, no answer");
    assert_eq!(p.i.stats().tcp_conn_limit_drops, 1);
    assert_eq!(
        p.i.tcp(p.now).connect(SocketAddrV4::new(HOST, 9999), 0),
        Err(ConnectError::TooManyConnections)
    );
    assert_eq!(p.i.stats().tcp_conn_limit_drops, 2);
    assert_eq!(p.i.tcp_layer().connection_count(), 2);
}

/// RFC 9293 §3.8.6.2.2: a retransmitted SYN-ACK offers no less than the
/// first did, though memory pressure set in between (a peer may already
/// be sending into the first offer).
#[test]
fn a_retransmitted_syn_ack_keeps_its_window_under_pressure() {
    let mut p = small_budget();
    let l = p.listen(8);
    next_client(&mut p, 40_002);
    p.send_next(SYN, b"");
    let first = p.recv_one();
    assert!(first.is(SYN | ACK));
    assert!(usize::from(first.window) > 4 * 1460, "no pressure yet: {first:?}");
    // Another connection's unread data brings pressure.
    next_client(&mut p, PEER_PORT);
    let a = p.handshake_to(l);
    p.end_quick_acks(a);
    for _ in 0..14 {
        p.send_next(ACK, &[7; 1460]);
        p.recv();
    }
    assert!(p.i.tcp_layer().memory().pressure);
    // The half-open connection's SYN-ACK times out and goes again.
    let mut again = Vec::new();
    for _ in 0..30 {
        p.advance(Duration::from_millis(100));
        again.extend(p.recv().into_iter().filter(|s| s.is(SYN | ACK)));
        if !again.is_empty() {
            break;
        }
    }
    let again = again.first().expect("the SYN-ACK was retransmitted");
    assert_eq!(again.seq, first.seq);
    assert_eq!(again.window, first.window, "the offer was taken back");
}
