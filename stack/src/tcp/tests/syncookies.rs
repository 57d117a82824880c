//! SYN cookies (RFC 4987 §3.6, as Linux's `tcp_syncookies`), segment by
//! segment: a full SYN queue answers with a cookie and keeps nothing; the
//! ACK that returns it makes an ESTABLISHED connection with what the cookie
//! and the timestamps carried; anything else is reset and counted.

use super::*;

/// The options our SYN-ACK echoes a TSval in, and a Linux-like SYN's.
fn syn_options(mss: Option<u16>, wscale: Option<u8>, sack: bool, tsval: Option<u32>) -> TcpOptions {
    TcpOptions {
        mss,
        window_scale: wscale,
        sack_permitted: sack,
        timestamps: tsval.map(|v| (v, 0)),
        ..TcpOptions::default()
    }
}

fn cookies(mode: SynCookies, syn_backlog: usize) -> Peer {
    Peer::with(|c| {
        c.tcp.syncookies = mode;
        c.tcp.syn_backlog = syn_backlog;
    })
}

impl Peer {
    /// Sends a SYN with `options` from the peer's port at its seq; returns the reply.
    fn syn(&mut self, options: TcpOptions) -> Seg {
        let seq = self.seq;
        self.send_opts(SYN, seq, SeqNum(0), 65535, options, b"");
        let reply = self.recv_one();
        assert!(reply.is(SYN | ACK), "{reply:?}");
        assert_eq!(reply.ack, seq + 1);
        reply
    }

    /// The ACK that completes the handshake `synack` began, with `payload`;
    /// timestamps echo the SYN-ACK's when it had some.
    fn ack_cookie(&mut self, synack: &Seg, window: u16, payload: &[u8]) {
        let options = TcpOptions {
            timestamps: synack.options.timestamps.map(|(tsval, _)| (7000, tsval)),
            ..TcpOptions::default()
        };
        let seq = self.seq + 1;
        self.send_opts(ACK, seq, synack.seq + 1, window, options, payload);
    }

    fn tcb(&self, h: TcpHandle) -> &Tcb {
        self.i.tcp_layer().conns.get(h.0).expect("live")
    }

    /// Fills the SYN queue of `PORT` with one SYN from each of `n` other ports.
    fn fill_syn_queue(&mut self, n: u16) {
        let port = self.port;
        for i in 0..n {
            self.port = 50_000 + i;
            self.syn(TcpOptions::default());
        }
        self.port = port;
    }
}

#[test]
fn a_full_syn_queue_answers_with_a_cookie_and_keeps_nothing() {
    let mut p = cookies(SynCookies::On, 2);
    p.listen(8);
    p.fill_syn_queue(2);
    assert_eq!(p.i.tcp_layer().connection_count(), 2);
    assert_eq!(
        p.i.stats().tcp_syncookies_sent,
        0,
        "no cookies while the queue has room"
    );

    let synack = p.syn(syn_options(Some(1460), Some(7), true, Some(5000)));
    assert_eq!(p.i.tcp_layer().connection_count(), 2, "nothing kept for it");
    assert_eq!(p.i.stats().tcp_syncookies_sent, 1);
    assert_eq!(p.i.stats().tcp_syn_queue_full, 0, "answered, not dropped");
    let o = synack.options;
    assert_eq!(o.mss, Some(1460));
    assert_eq!(o.window_scale, Some(7), "our scale, for the 6 MiB buffer");
    assert!(o.sack_permitted);
    assert_eq!(o.timestamps.map(|(_, echo)| echo), Some(5000));
    assert_eq!(synack.window, 65535, "SYN windows are never scaled");

    // Nothing retransmits it (the half-open ones do): there is nothing to remember it by.
    p.advance(Duration::from_secs(10));
    let resent = p.recv();
    assert!(
        !resent.is_empty() && resent.iter().all(|s| s.seq != synack.seq),
        "{resent:?}"
    );
    // A retransmitted SYN gets the same cookie (in the same 64 s period).
    let again = p.syn(syn_options(Some(1460), Some(7), true, Some(5000)));
    assert_eq!(again.seq, synack.seq);
}

#[test]
fn the_cookie_ack_establishes_with_the_options_the_cookie_carries() {
    // (SYN's MSS, window scale, SACK, timestamps) -> (MSS, scale, SACK).
    let cases = [
        ((Some(1460), Some(7), true, true), (1460, Some(7), true)),
        ((Some(1400), Some(2), false, true), (1300, Some(2), false)),
        ((Some(9000), None, true, true), (1460, None, true)),
        ((Some(1440), Some(14), true, true), (1440, Some(14), true)),
        // Without timestamps the cookie holds the MSS only (as Linux).
        ((Some(1460), Some(7), true, false), (1460, None, false)),
        ((None, Some(5), true, false), (536, None, false)),
    ];
    for ((mss, wscale, sack, ts), (want_mss, want_scale, want_sack)) in cases {
        let what = format!("SYN with mss {mss:?}, wscale {wscale:?}, sack {sack}, timestamps {ts}");
        let mut p = cookies(SynCookies::Always, 256);
        let l = p.listen(8);
        let synack = p.syn(syn_options(mss, wscale, sack, ts.then_some(5000)));
        assert_eq!(p.i.tcp_layer().connection_count(), 0, "{what}: always: nothing kept");
        if !ts {
            let o = synack.options;
            assert_eq!(
                (o.window_scale, o.sack_permitted, o.timestamps),
                (None, false, None),
                "{what}: the SYN-ACK offers what the cookie can keep: the MSS alone"
            );
        }
        p.ack_cookie(&synack, 1000, b"");
        assert!(p.recv().is_empty(), "{what}: no reply to the handshake's ACK");
        let (h, remote) = p.i.tcp(p.now).accept(l).expect("the cookie made a connection");
        assert_eq!(remote, SocketAddrV4::new(HOST, PEER_PORT));
        let t = p.tcb(h);
        assert_eq!(t.state, State::Established, "{what}");
        assert_eq!(t.snd_mss, want_mss, "{what}");
        assert_eq!(t.wscale_ok.then_some(t.snd_wscale), want_scale, "{what}");
        assert_eq!(t.rcv_wscale, if want_scale.is_some() { 7 } else { 0 }, "{what}");
        assert_eq!(
            t.snd_wnd,
            1000 << want_scale.unwrap_or(0),
            "{what}: the ACK's window, scaled"
        );
        assert_eq!(t.sack_ok, want_sack, "{what}");
        assert_eq!(t.ts_ok, ts, "{what}");
        if ts {
            assert_eq!(t.ts_recent, 7000, "{what}: TS.Recent from the ACK");
        }
        assert_eq!(
            (t.iss + 1, t.snd_una, t.rcv_nxt),
            (synack.seq + 1, synack.seq + 1, p.seq + 1)
        );
        let s = p.i.stats();
        assert_eq!(
            (s.tcp_syncookies_recv, s.tcp_syncookies_failed, s.tcp_passive_opens),
            (1, 0, 1)
        );
    }
}

#[test]
fn a_forged_stale_or_misaddressed_cookie_ack_is_reset_and_counted() {
    let mut p = cookies(SynCookies::Always, 256);
    p.listen(8);
    let synack = p.syn(syn_options(Some(1460), Some(7), true, Some(5000)));
    let cookie = synack.seq;
    let mut failed = 0;
    let mut expect_reset = |p: &mut Peer, port: u16, seq: SeqNum, ack: SeqNum, what: &str| {
        p.port = port;
        p.send(ACK, seq, ack, b"");
        let rst = p.recv_one();
        assert!(rst.is(RST), "{what}: {rst:?}");
        assert_eq!(rst.seq, ack, "{what}: the RST takes the ACK's number");
        failed += 1;
        assert_eq!(p.i.stats().tcp_syncookies_failed, failed, "{what}");
        assert_eq!(p.i.tcp_layer().connection_count(), 0, "{what}");
    };
    let seq = p.seq + 1;
    expect_reset(&mut p, PEER_PORT + 1, seq, cookie + 1, "another port");
    // (Off by a few, a cookie reads as another MSS index: 4 of 2^24 pass.)
    expect_reset(
        &mut p,
        PEER_PORT,
        seq + 4,
        cookie + 1,
        "another initial sequence number",
    );
    expect_reset(&mut p, PEER_PORT, seq, cookie + 5, "a forged cookie");
    expect_reset(
        &mut p,
        PEER_PORT,
        seq,
        cookie + (1 << 24),
        "the cookie of another period",
    );
    // Two periods later the cookie is stale, while the flood goes on.
    p.advance(Duration::from_secs(200));
    p.port = PEER_PORT + 2;
    p.syn(TcpOptions::default());
    expect_reset(&mut p, PEER_PORT, seq, cookie + 1, "a stale cookie");
    assert_eq!(p.i.stats().tcp_syncookies_recv, 0);
}

#[test]
fn a_cookie_from_the_period_before_still_counts() {
    let mut p = cookies(SynCookies::Always, 256);
    let l = p.listen(8);
    let synack = p.syn(syn_options(Some(1460), None, false, None));
    // The peer took its time: 70 s is at least one period boundary on.
    p.advance(Duration::from_secs(70));
    p.ack_cookie(&synack, 1000, b"");
    assert!(p.i.tcp(p.now).accept(l).is_some());
    assert_eq!(p.i.stats().tcp_syncookies_recv, 1);
}

/// As Linux's `tcp_synq_no_recent_overflow`: a listener that sent no
/// cookie lately checks none; the ACK is reset as any other.
#[test]
fn an_ack_to_a_listener_that_sent_no_cookie_lately_is_reset_unchecked() {
    let mut p = cookies(SynCookies::On, 2);
    p.listen(8);
    p.send(ACK, SeqNum(1), SeqNum(12345), b"");
    assert!(p.recv_one().is(RST));
    p.fill_syn_queue(2);
    let synack = p.syn(TcpOptions::default());
    // After a cookie's whole life the listener no longer looks.
    p.advance(Duration::from_secs(129));
    p.recv(); // the half-open ones' SYN-ACKs, resent
    p.ack_cookie(&synack, 1000, b"");
    assert!(p.recv_one().is(RST));
    let s = p.i.stats();
    assert_eq!((s.tcp_syncookies_recv, s.tcp_syncookies_failed), (0, 0));
}

#[test]
fn data_on_the_cookie_ack_is_taken() {
    let mut p = cookies(SynCookies::Always, 256);
    let l = p.listen(8);
    let synack = p.syn(syn_options(Some(1460), Some(7), true, Some(5000)));
    p.ack_cookie(&synack, 1000, b"hello");
    let (h, _) = p.i.tcp(p.now).accept(l).unwrap();
    assert_eq!(p.read_all(h), b"hello");
    assert_eq!(p.tcb(h).rcv_nxt, p.seq + 1 + 5);
    // And the connection answers: our data goes out after the handshake's.
    p.i.tcp(p.now).send(h, b"world").unwrap();
    let segs = p.recv();
    let data: Vec<&Seg> = segs.iter().filter(|s| !s.payload.is_empty()).collect();
    assert_eq!(data.len(), 1, "{segs:?}");
    assert_eq!((data[0].seq, data[0].ack), (synack.seq + 1, p.seq + 6));
    assert_eq!(data[0].payload, b"world");
}

/// As Linux: a valid cookie ACK that finds the accept queue full is
/// dropped without a reset; the peer's next segment tries again.
#[test]
fn a_cookie_ack_finding_the_accept_queue_full_is_dropped_quietly() {
    let mut p = cookies(SynCookies::Always, 256);
    let l = p.listen(0);
    p.port = PEER_PORT + 1;
    let late = p.syn(TcpOptions::default());
    p.port = PEER_PORT;
    let first = p.syn(TcpOptions::default());
    p.ack_cookie(&first, 1000, b"");
    p.port = PEER_PORT + 1;
    p.ack_cookie(&late, 1000, b"");
    assert!(p.recv().is_empty(), "no reset");
    let s = p.i.stats();
    assert_eq!((s.tcp_listen_overflows, s.tcp_syncookies_recv), (1, 2));
    assert_eq!(p.i.tcp_layer().connection_count(), 1);
    p.i.tcp(p.now).accept(l).unwrap();
    p.ack_cookie(&late, 1000, b"x");
    let (h, _) = p.i.tcp(p.now).accept(l).expect("room again");
    assert_eq!(p.read_all(h), b"x");
}

#[test]
fn with_cookies_off_a_full_syn_queue_drops_syns() {
    let mut p = cookies(SynCookies::Off, 2);
    p.listen(8);
    p.fill_syn_queue(2);
    p.send_opts(SYN, SeqNum(1), SeqNum(0), 65535, TcpOptions::default(), b"");
    assert!(p.recv().is_empty());
    let s = p.i.stats();
    assert_eq!((s.tcp_syn_queue_full, s.tcp_syncookies_sent), (1, 0));
}

#[test]
fn a_half_open_connection_still_completes_while_cookies_go_out() {
    let mut p = cookies(SynCookies::On, 1);
    let l = p.listen(8);
    let queued = p.syn(TcpOptions::default());
    p.port = PEER_PORT + 1;
    let cookie = p.syn(TcpOptions::default());
    assert_eq!(p.i.stats().tcp_syncookies_sent, 1);
    p.port = PEER_PORT;
    p.ack_cookie(&queued, 1000, b"");
    p.port = PEER_PORT + 1;
    p.ack_cookie(&cookie, 1000, b"");
    assert!(p.recv().is_empty());
    assert!(p.i.tcp(p.now).accept(l).is_some() && p.i.tcp(p.now).accept(l).is_some());
    assert_eq!(p.i.stats().tcp_syncookies_recv, 1, "the queued one needed no cookie");
    // Both left the SYN queue: there is room for a real half-open one again.
    p.port = PEER_PORT + 2;
    p.syn(TcpOptions::default());
    assert_eq!(p.i.stats().tcp_syncookies_sent, 1);
    p.i.tcp_layer().assert_tables_consistent();
}

/// Linux never checks a SYN for a cookie (`tcp_v4_cookie_check`
/// runs only `if (!th->syn)`): a SYN-ACK to a listener is reset as any
/// ACK would be, and is no SyncookiesFailed.
#[test]
fn a_syn_ack_to_a_listener_is_not_checked_as_a_cookie() {
    let mut p = cookies(SynCookies::Always, 256);
    p.listen(8);
    let synack = p.syn(syn_options(Some(1460), None, false, None));
    p.port = PEER_PORT + 1;
    p.send(SYN | ACK, SeqNum(1000), synack.seq + 1, b"");
    assert!(p.recv_one().is(RST));
    assert_eq!(p.i.stats().tcp_syncookies_failed, 0, "a SYN-ACK is no cookie ACK");
}
