//! Buffer auto-tuning over the simulated link: a bulk transfer from A to B
//! on a path whose bandwidth-delay product is larger than the initial
//! window. B's receive window must grow to about twice the BDP, never move
//! its right edge back, stay under the cap, and let the transfer reach the
//! link's rate; an idle connection keeps small buffers, a slow reader keeps
//! its window, and a buffer size the application sets stays.

use std::net::SocketAddrV4;
use tunstack::tcp::{TcpConfig, TcpInfo};
use tunstack::wire::ipv4::Ipv4Packet;
use tunstack::wire::seq::SeqNum;
use tunstack::wire::tcp::{TcpSegment, flags};
use tunstack::{Duration, Instant};
use tunstack_tests::sim::{
    ADDR_A, ADDR_B, Endpoint, LinkConfig, Recv, SERVER_PORT, Side, SimLink, TcpEndpoint, TransferSpec, TunstackEndpoint,
};

/// 100 Mbit/s.
const RATE: u64 = 12_500_000;
/// 10 ms each way.
const LATENCY: Duration = Duration::from_millis(10);
/// The path's bandwidth-delay product: 250 kB, about four times the initial window.
const BDP: usize = (RATE as usize) * 2 * 10 / 1000;

/// What a bulk run saw.
#[derive(Debug, Default)]
struct Run {
    /// Window scale in A's SYN and in B's SYN-ACK.
    syn_wscale: Option<u8>,
    synack_wscale: Option<u8>,
    /// Window field of B's SYN-ACK (never scaled).
    synack_window: u16,
    /// Every window B advertised after the handshake, in bytes, with its time.
    windows: Vec<(Instant, usize)>,
    /// Right edges B advertised went back this many times (must be none).
    edge_retreats: Vec<String>,
    /// When A sent a segment that reached the right edge B had advertised
    /// (A was limited by B's window).
    window_limited: Vec<Instant>,
    /// The latest right edge of B's window A has seen.
    edge_at_a: Option<SeqNum>,
    /// (time, bytes B's application had read).
    progress: Vec<(Instant, usize)>,
    /// B's connection at the end, and its largest receive buffer seen.
    b_info: Option<TcpInfo>,
    b_recv_buffer_max: usize,
    /// A's connection at the end.
    a_info: Option<TcpInfo>,
    end: Instant,
}

impl Run {
    /// Bytes per second B's application read from `from` to the end.
    fn rate_after(&self, from: Instant) -> f64 {
        let start = self
            .progress
            .iter()
            .find(|(t, _)| *t >= from)
            .expect("progress after `from`");
        let (end_t, end_n) = *self.progress.last().expect("progress");
        (end_n - start.1) as f64 / (end_t - start.0).as_secs_f64()
    }

    /// The largest window B advertised.
    fn max_window(&self) -> usize {
        self.windows.iter().map(|w| w.1).max().unwrap_or(0)
    }

    /// The right edge of B's window never moved back (RFC 7323 §2.4, RFC 9293).
    fn assert_never_shrank(&self) {
        assert!(
            self.edge_retreats.is_empty(),
            "the window shrank: {:?}",
            self.edge_retreats
        );
    }

    /// B's window grew to twice the BDP at least, and not past what the
    /// growth rule allows: 4× what the path holds (3× the BDP, queue
    /// included). Returns the largest window.
    fn assert_grew_to_twice_the_bdp(&self) -> usize {
        let grown = self.max_window();
        let buffer = self.b_info.as_ref().map(|b| b.recv_buffer);
        assert!(
            (2 * BDP..=12 * BDP).contains(&grown),
            "largest window {grown} B, BDP {BDP} B; buffer {buffer:?} B"
        );
        grown
    }
}

/// Settings of a bulk run.
struct Bulk {
    bytes: usize,
    link: LinkConfig,
    /// Changes to both stacks' TCP settings.
    tcp: fn(&mut TcpConfig),
    /// B's application reads at most this many bytes per millisecond.
    read_per_ms: Option<usize>,
    /// B's application fixes its receive buffer at this size once it accepts.
    b_recv_buffer: Option<usize>,
}

impl Bulk {
    fn new(bytes: usize) -> Bulk {
        Bulk {
            bytes,
            link: LinkConfig {
                latency: LATENCY,
                bandwidth: Some(RATE),
                // A queue of twice the BDP: the RTT grows to 60 ms at most,
                // and the path holds up to 3× the BDP.
                queue_limit: Some(2 * BDP),
                ..LinkConfig::default()
            },
            tcp: |_| {},
            read_per_ms: None,
            b_recv_buffer: None,
        }
    }

    fn endpoint(&self, addr: std::net::Ipv4Addr, seed: u64) -> TunstackEndpoint {
        let mut c = TunstackEndpoint::config(addr, seed, &TransferSpec::new(seed));
        (self.tcp)(&mut c.tcp);
        TunstackEndpoint::new(tunstack::Interface::new(c))
    }

    /// A sends `bytes` to B, which reads as it may; returns what was seen.
    fn run(&self) -> Run {
        let mut a = self.endpoint(ADDR_A, 1);
        let mut b = self.endpoint(ADDR_B, 2);
        let mut link = SimLink::new(self.link.clone(), 3);
        let mut now = Instant::ZERO;
        b.listen(now, SERVER_PORT).unwrap();
        a.connect(now, SocketAddrV4::new(ADDR_B, SERVER_PORT), 40_000).unwrap();
        let data = vec![0x5au8; 64 * 1024];
        let (mut sent, mut read) = (0usize, 0usize);
        let mut buf = vec![0u8; 64 * 1024];
        let mut run = Run::default();
        let mut scale_b = 0u8;
        let mut edge: Option<SeqNum> = None;
        let mut locked = false;
        let mut out = Vec::new();
        let mut next_read = now;
        while read < self.bytes {
            assert!(
                now < Instant::from_secs(120),
                "transfer did not finish: {read} of {} read",
                self.bytes
            );
            while let Some((to, pkt)) = link.pop_due(now) {
                if to == Side::A {
                    self.watch_b(now, &pkt, &mut run, &mut scale_b, &mut edge);
                } else {
                    watch_a(now, &pkt, &mut run);
                }
                match to {
                    Side::A => a.handle_packet(now, &pkt),
                    Side::B => b.handle_packet(now, &pkt),
                }
            }
            a.run_due_timers(now);
            b.run_due_timers(now);
            if a.ready(now).unwrap() {
                while sent < self.bytes {
                    let n = a.send(now, &data[..(self.bytes - sent).min(data.len())]).unwrap();
                    if n == 0 {
                        break;
                    }
                    sent += n;
                }
            }
            if b.ready(now).unwrap() {
                if let (Some(size), false) = (self.b_recv_buffer, locked) {
                    let h = b.handle().expect("accepted");
                    b.iface.tcp(now).set_recv_buffer_size(h, size);
                    locked = true;
                }
                if now >= next_read {
                    let budget = self.read_per_ms.unwrap_or(usize::MAX);
                    let mut got = 0;
                    while got < budget {
                        let room = buf.len().min(budget - got);
                        match b.recv(now, &mut buf[..room]).unwrap() {
                            Recv::Data(n) => got += n,
                            Recv::WouldBlock | Recv::Eof => break,
                        }
                    }
                    if got > 0 {
                        read += got;
                        run.progress.push((now, read));
                    }
                    if self.read_per_ms.is_some() {
                        next_read = now + Duration::from_millis(1);
                    }
                }
                let info = conn_info(&b);
                run.b_recv_buffer_max = run.b_recv_buffer_max.max(info.recv_buffer);
            }
            a.poll_transmit(now, &mut out);
            for p in out.drain(..) {
                link.send(now, Side::A, p);
            }
            b.poll_transmit(now, &mut out);
            for p in out.drain(..) {
                link.send(now, Side::B, p);
            }
            let reader_wakes = (self.read_per_ms.is_some() && next_read > now).then_some(next_read);
            let next = [
                link.next_delivery(),
                a.poll_timeout(now),
                b.poll_timeout(now),
                reader_wakes,
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("something is pending while the transfer runs");
            now = now.max(next);
        }
        run.b_info = Some(conn_info(&b));
        run.a_info = Some(conn_info(&a));
        run.end = now;
        run
    }

    /// A segment from B to A: the window scale B offered, and each window it advertises.
    fn watch_b(&self, now: Instant, pkt: &[u8], run: &mut Run, scale: &mut u8, edge: &mut Option<SeqNum>) {
        let Some(seg) = tcp(pkt, |s| (s.flags, s.ack, s.window, s.options.window_scale)) else {
            return;
        };
        let (f, ack, window, wscale) = seg;
        if f & flags::SYN != 0 {
            run.synack_wscale = wscale;
            run.synack_window = window;
            *scale = if run.syn_wscale.is_some() {
                wscale.unwrap_or(0)
            } else {
                0
            };
            return;
        }
        if f & flags::ACK == 0 {
            return;
        }
        let bytes = usize::from(window) << *scale;
        let right = ack + bytes as u32;
        if let Some(prev) = *edge {
            if right.lt(prev) {
                run.edge_retreats
                    .push(format!("at {now}: right edge {} after {}", right.0, prev.0));
            }
        }
        if edge.is_none_or(|prev| right.gt(prev)) {
            *edge = Some(right);
        }
        run.edge_at_a = *edge;
        run.windows.push((now, bytes));
    }
}

/// A segment from A to B: the window scale of A's SYN, and whether a data
/// segment went up to the edge of B's window.
fn watch_a(now: Instant, pkt: &[u8], run: &mut Run) {
    let Some((f, ws, end)) = tcp(pkt, |s| {
        (s.flags, s.options.window_scale, s.seq + s.payload.len() as u32)
    }) else {
        return;
    };
    if f & flags::SYN != 0 {
        run.syn_wscale = ws;
    } else if run.edge_at_a.is_some_and(|edge| (end + 1448).gt(edge)) {
        run.window_limited.push(now);
    }
}

/// Applies `f` to the TCP segment in `pkt`.
fn tcp<T>(pkt: &[u8], f: impl FnOnce(&TcpSegment<'_>) -> T) -> Option<T> {
    let ip = Ipv4Packet::parse(pkt).ok()?;
    let seg = TcpSegment::parse(ip.payload(), ip.header.src, ip.header.dst).ok()?;
    Some(f(&seg))
}

/// The endpoint's one connection.
fn conn_info(ep: &TunstackEndpoint) -> TcpInfo {
    let infos = ep.iface.tcp_layer().sockets();
    infos
        .into_iter()
        .find(|i| i.state != tunstack::tcp::State::Listen)
        .expect("a connection")
}

#[test]
fn receive_window_grows_to_twice_the_bdp_and_the_transfer_reaches_the_link_rate() {
    let run = Bulk::new(20_000_000).run();
    let b = run.b_info.as_ref().unwrap();
    // The handshake: the scale is chosen for the 6 MiB cap (7, as Linux),
    // and the SYN-ACK's window is the initial 64 KiB, less than the BDP.
    assert_eq!(run.syn_wscale, Some(7));
    assert_eq!(run.synack_wscale, Some(7));
    assert_eq!(usize::from(run.synack_window), 65535);
    const { assert!(65535 < BDP) };
    run.assert_never_shrank();
    let grown = run.assert_grew_to_twice_the_bdp();
    assert!(b.recv_buffer <= TcpConfig::default().recv_buffer);
    // Once grown, the window is not what limits the transfer: in the second
    // half A never sends up to the edge of B's window, and the transfer
    // runs at the link's rate (1448 payload bytes of every 1500 on the wire).
    let half = Instant::from_micros(run.end.total_micros() / 2);
    let late: Vec<&Instant> = run.window_limited.iter().filter(|t| **t >= half).collect();
    assert!(late.is_empty(), "A was limited by B's window at {late:?}");
    // Without growth the initial window would have been the limit
    // throughout, at a quarter of the rate.
    let mut fixed = Bulk::new(5_000_000);
    fixed.tcp = |c| c.recv_buffer = 64 * 1024;
    let fixed = fixed.run();
    let fixed_half = Instant::from_micros(fixed.end.total_micros() / 2);
    // (once a round trip: A sends a window's worth and waits).
    let limited = fixed.window_limited.iter().filter(|t| **t >= fixed_half).count();
    assert!(limited > 20, "{limited} times limited by the window");
    let rate = run.rate_after(half);
    println!(
        "largest window {grown} B ({:.1}× BDP), receiver RTT {:?}, rate {rate:.0} B/s after {half}, 64 KiB fixed: {:.0} B/s",
        grown as f64 / BDP as f64,
        b.rcv_rtt,
        fixed.rate_after(fixed_half)
    );
    assert!(rate > 3.0 * fixed.rate_after(fixed_half));
    assert!(
        rate >= 0.9 * 1448.0 / 1500.0 * RATE as f64,
        "{rate:.0} B/s after {half}, link {RATE} B/s; windows {}..{}",
        run.windows.first().unwrap().1,
        grown
    );
    // The sender's buffer followed its congestion window.
    let a = run.a_info.as_ref().unwrap();
    assert!(
        a.send_buffer >= 2 * BDP.min(a.cwnd),
        "send buffer {} B, cwnd {} B",
        a.send_buffer,
        a.cwnd
    );
}

#[test]
fn receive_window_grows_without_timestamps_too() {
    let mut bulk = Bulk::new(20_000_000);
    bulk.tcp = |c| c.timestamps = false;
    let run = bulk.run();
    run.assert_never_shrank();
    run.assert_grew_to_twice_the_bdp();
    let b = run.b_info.as_ref().unwrap();
    assert!(
        b.rcv_rtt
            .is_some_and(|r| r >= Duration::from_millis(20) && r <= Duration::from_millis(60)),
        "{:?}",
        b.rcv_rtt
    );
}

#[test]
fn the_cap_bounds_the_window_and_chooses_the_scale() {
    let mut bulk = Bulk::new(5_000_000);
    bulk.tcp = |c| c.recv_buffer = 128 * 1024;
    let run = bulk.run();
    // 128 KiB needs a shift of 2 (65535 << 1 is just short of it).
    assert_eq!(run.syn_wscale, Some(2));
    assert_eq!(run.synack_wscale, Some(2));
    run.assert_never_shrank();
    assert!(run.b_recv_buffer_max <= 128 * 1024, "{}", run.b_recv_buffer_max);
    // Rounded up to the scale's unit (4 bytes) at most.
    assert!(run.max_window() <= 128 * 1024 + 3, "{}", run.max_window());
    assert!(
        run.max_window() > 100 * 1024,
        "the window grew to the cap: {}",
        run.max_window()
    );
}

#[test]
fn a_slow_reader_keeps_its_initial_window() {
    let mut bulk = Bulk::new(300_000);
    // 200 kB/s: 4 kB per 20 ms round trip, less than the 10 segments DRS starts from.
    bulk.read_per_ms = Some(200);
    let run = bulk.run();
    assert_eq!(
        run.b_recv_buffer_max,
        64 * 1024,
        "the buffer grew for a reader that reads little"
    );
    assert!(run.max_window() <= 64 * 1024 + 127);
}

#[test]
fn a_buffer_size_the_application_sets_stops_auto_tuning() {
    let mut bulk = Bulk::new(5_000_000);
    bulk.b_recv_buffer = Some(32 * 1024);
    let run = bulk.run();
    let b = run.b_info.as_ref().unwrap();
    assert_eq!(b.recv_buffer, 32 * 1024);
    run.assert_never_shrank();
    // After the first 64 KiB window drained, the window stays within the set size.
    let late: Vec<usize> = run.windows.iter().rev().take(100).map(|w| w.1).collect();
    assert!(late.iter().all(|&w| w <= 32 * 1024 + 127), "{late:?}");
}

#[test]
fn an_idle_connection_keeps_small_buffers() {
    let bulk = Bulk::new(100);
    let run = bulk.run();
    for info in [run.a_info.as_ref().unwrap(), run.b_info.as_ref().unwrap()] {
        assert_eq!(info.recv_buffer, 64 * 1024, "{info:?}");
        assert_eq!(info.send_buffer, 64 * 1024, "the starting limit: {info:?}");
        assert!(info.recv_allocated <= 4096, "{info:?}");
        assert!(info.send_allocated <= 4096, "{info:?}");
    }
}
