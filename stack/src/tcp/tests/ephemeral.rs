//! Ephemeral ports for active opens (RFC 6056): unique per 4-tuple, spread
//! and keyed, TIME-WAIT reused only as Linux's `tcp_twsk_unique`, and a
//! clear error when nothing is free. A scripted server answers our SYNs.

use super::*;
use crate::socket::{EPHEMERAL_FIRST, EPHEMERAL_LAST};
use std::collections::HashMap as Map;

const SPAN: usize = (EPHEMERAL_LAST - EPHEMERAL_FIRST) as usize + 1;

fn server(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(HOST, port)
}

/// Our stack as a client, and a server that answers whatever we send it.
struct Client {
    i: Interface,
    now: Instant,
    buf: Vec<u8>,
    /// The server's timestamp clock.
    tsval: u32,
}

/// One segment we sent, as the server saw it.
struct Out {
    dst: SocketAddrV4,
    src_port: u16,
    flags: u8,
    seq: SeqNum,
    tsval: u32,
}

impl Client {
    fn new(seed: u64) -> Client {
        let mut c = config();
        c.seed = seed;
        Client {
            i: Interface::new(c),
            now: Instant::from_secs(100),
            buf: vec![0; 2048],
            tsval: 1,
        }
    }

    fn sent(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        while let Some(n) = self.i.poll_transmit(self.now, &mut self.buf) {
            let p = Ipv4Packet::parse(&self.buf[..n]).expect("valid IP");
            let s = TcpSegment::parse(p.payload(), p.header.src, p.header.dst).expect("valid TCP");
            out.push(Out {
                dst: SocketAddrV4::new(p.header.dst, s.dst_port),
                src_port: s.src_port,
                flags: s.flags,
                seq: s.seq,
                tsval: s.options.timestamps.map_or(0, |(v, _)| v),
            });
        }
        out
    }

    fn reply(&mut self, to: &Out, f: u8, seq: SeqNum, ack: SeqNum, syn: bool) {
        self.tsval += 1;
        let options = TcpOptions {
            mss: syn.then_some(1460),
            timestamps: Some((self.tsval, to.tsval)),
            ..TcpOptions::default()
        };
        let seg = TcpSegment {
            src_port: to.dst.port(),
            dst_port: to.src_port,
            seq,
            ack,
            flags: f,
            window: 65535,
            options,
            payload: &[],
        };
        let mut tcp = Vec::new();
        seg.emit(&mut tcp, *to.dst.ip(), US);
        let pkt = ip_packet(*to.dst.ip(), US, crate::ip::protocol::TCP, 1, &tcp);
        self.i.handle_packet(self.now, &pkt);
    }

    /// Opens a connection to `remote`, leaving it in SYN-SENT.
    fn open(&mut self, remote: SocketAddrV4) -> Result<(TcpHandle, Out), ConnectError> {
        let h = self.i.tcp(self.now).connect(remote, 0)?;
        let mut syn = self.sent();
        assert_eq!(syn.len(), 1, "one SYN");
        Ok((h, syn.remove(0)))
    }

    /// Connects to `remote`, completes the handshake and closes first, so the
    /// connection sits in TIME-WAIT. Returns the port and our ISS.
    fn cycle(&mut self, remote: SocketAddrV4) -> Result<(u16, SeqNum), ConnectError> {
        let (h, syn) = self.open(remote)?;
        let server_isn = SeqNum(7_000_000);
        self.reply(&syn, SYN | ACK, server_isn, syn.seq + 1, true);
        assert!(self.sent().iter().all(|s| s.flags & SYN == 0), "handshake done");
        self.i.tcp(self.now).close(h, false);
        let fin = self.sent().pop().expect("our FIN");
        assert!(fin.flags & FIN != 0);
        self.reply(&fin, FIN | ACK, server_isn + 1, fin.seq + 1, false);
        self.sent();
        assert_eq!(self.state_of(syn.src_port, remote), Some(State::TimeWait));
        Ok((syn.src_port, syn.seq))
    }

    fn state_of(&self, port: u16, remote: SocketAddrV4) -> Option<State> {
        let local = SocketAddrV4::new(US, port);
        let tcp = self.i.tcp_layer();
        let tuple = FourTuple { local, remote };
        if tcp.time_wait.get(&tuple).is_some() {
            return Some(State::TimeWait);
        }
        let h = tcp.by_tuple.get(&tuple)?;
        tcp.conns.get(*h).map(|t| t.state)
    }
}

/// As Linux's `__inet_hash_connect`: a port is taken per 4-tuple, so one
/// local port serves connections to different servers at once; ports in
/// use towards one server do not block any other.
#[test]
fn one_local_port_serves_connections_to_different_remotes() {
    let mut c = Client::new(1);
    let a = server(80);
    for _ in 0..SPAN {
        c.open(a).expect("a free port towards the first server");
    }
    let (h, syn) = c
        .open(server(443))
        .expect("every port is still free towards another server");
    assert_eq!(
        c.state_of(syn.src_port, a),
        Some(State::SynSent),
        "the same port is open to the first"
    );
    assert_eq!(c.i.tcp_layer().state(h), State::SynSent);
    let (_, other_host) = c.open(SocketAddrV4::new(Ipv4Addr::new(10, 200, 0, 3), 80)).unwrap();
    assert_eq!(c.state_of(other_host.src_port, a), Some(State::SynSent));
    c.i.tcp_layer().assert_tables_consistent();
}

/// RFC 6056 §3.3.4 with Linux's EADDRNOTAVAIL: with every 4-tuple towards
/// one server live, the next connect fails at once with `AddrNotAvailable`,
/// and a port frees again when its connection goes.
#[test]
fn exhaustion_is_addr_not_available() {
    let mut c = Client::new(2);
    let a = server(80);
    let mut ports = Map::new();
    for _ in 0..SPAN {
        let (h, syn) = c.open(a).unwrap();
        assert!(ports.insert(syn.src_port, h).is_none(), "port {} twice", syn.src_port);
    }
    assert_eq!(c.i.tcp(c.now).connect(a, 0), Err(ConnectError::AddrNotAvailable));
    let (&port, &h) = ports.iter().next().unwrap();
    c.i.tcp(c.now).close(h, true);
    c.sent();
    let (_, syn) = c.open(a).expect("the freed port");
    assert_eq!(syn.src_port, port);
}

/// 60,000 connections to one server at 1,000 a second, each closed by us:
/// with 2×MSL = 60 s of TIME-WAIT only ~16k ports exist, so ports must be
/// reused from TIME-WAIT, and only as Linux's `tcp_twsk_unique` allows
/// (timestamps, the last one at least a second old, a new ISS beyond the
/// old connection's sequence space). A live connection's tuple is never
/// taken.
#[test]
fn sixty_thousand_connects_to_one_server_reuse_time_wait_safely() {
    let mut c = Client::new(3);
    let a = server(80);
    let (live, syn) = c.open(a).unwrap();
    let live_port = syn.src_port;
    let mut last: Map<u16, (Instant, SeqNum)> = Map::new();
    let mut reused = 0;
    for _ in 0..60_000 {
        c.now += Duration::from_millis(1);
        c.i.handle_timeout(c.now);
        c.sent();
        let (port, iss) = c.cycle(a).expect("a free or reusable port");
        assert_ne!(port, live_port, "a live 4-tuple was taken");
        if let Some((at, old_iss)) = last.insert(port, (c.now, iss)) {
            if c.now < at + c.i.tcp_layer().config().msl * 2 {
                reused += 1;
                assert!(c.now >= at + Duration::from_secs(1), "TIME-WAIT reused within a second");
                assert!(iss.gt(old_iss + 65535), "new ISS beyond the old connection");
            }
        }
    }
    assert!(reused > 30_000, "only {reused} TIME-WAIT reuses");
    assert_eq!(
        c.i.tcp_layer().state(live),
        State::SynSent,
        "the live connection is untouched"
    );
    c.i.tcp_layer().assert_tables_consistent();
}

/// RFC 6056 §3.3.4: the first port towards each server is keyed by the
/// 4-tuple and a secret, so it is spread over the range rather than
/// counting from its start, differs from server to server, and differs
/// between stacks with different secrets.
#[test]
fn ports_are_spread_per_remote_and_keyed() {
    let first_port = |seed: u64, remote: SocketAddrV4| {
        let mut c = Client::new(seed);
        c.open(remote).unwrap().1.src_port
    };
    let ports: Vec<u16> = (1..=64).map(|p| first_port(5, server(p))).collect();
    let distinct: std::collections::HashSet<_> = ports.iter().collect();
    assert!(distinct.len() >= 60, "ports per server: {ports:?}");
    let quarter = (SPAN / 4) as u16;
    assert!(ports.iter().any(|&p| p < EPHEMERAL_FIRST + quarter), "{ports:?}");
    assert!(ports.iter().any(|&p| p > EPHEMERAL_LAST - quarter), "{ports:?}");
    let keyed = (1..=8)
        .filter(|&p| first_port(6, server(p)) != ports[p as usize - 1])
        .count();
    assert!(keyed >= 7, "another secret, other ports");
    // Successive connects to one server do not simply count up.
    let mut c = Client::new(7);
    let seq: Vec<u16> = (0..32).map(|_| c.open(server(80)).unwrap().1.src_port).collect();
    let steps_of_one = seq.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
    assert!(steps_of_one < 16, "{seq:?}");
}

/// Not a check: how fast active opens go, printed (`--nocapture`).
/// Wall-clock connects per second with 10,000 connections open, and how
/// many 1,000-a-second connect-close cycles to one server succeed.
#[test]
fn measure_connect_rate() {
    let mut c = Client::new(8);
    for i in 0..10_000u32 {
        let remote = SocketAddrV4::new(HOST, 1 + (i % 5000) as u16);
        c.open(remote).unwrap();
    }
    let start = std::time::Instant::now();
    let n = 2_000;
    for _ in 0..n {
        let (h, _) = c.open(server(9)).unwrap();
        c.i.tcp(c.now).close(h, true);
        c.sent();
    }
    let per_sec = f64::from(n) / start.elapsed().as_secs_f64();
    let mut c = Client::new(9);
    let start = std::time::Instant::now();
    let mut ok = 0u32;
    let mut first_failure = None;
    for i in 0..30_000 {
        c.now += Duration::from_millis(1);
        c.i.handle_timeout(c.now);
        c.sent();
        match c.cycle(server(80)) {
            Ok(_) => ok += 1,
            Err(_) => {
                first_failure.get_or_insert(i);
            }
        }
    }
    let cycles = f64::from(ok) / start.elapsed().as_secs_f64();
    println!(
        "ephemeral ports: {per_sec:.0} connects/s with 10,000 open; \
         {ok}/30000 cycles at 1000/s to one server (first failure: {first_failure:?}), {cycles:.0} cycles/s wall"
    );
}
