//! TCP with offloads (issue 16), packet by packet between two interfaces:
//! a sender whose device takes super-packets builds segments of up to 64
//! KiB with `gso_size` = MSS and a partial checksum; cut as the kernel cuts
//! them, every piece fits the MTU and carries a valid checksum. A receiver
//! takes a super-packet from the host as one large segment, trusts a
//! checksum the device vouches for, and still verifies one it does not.

use std::net::{Ipv4Addr, SocketAddrV4};
use tunstack::tcp::TcpHandle;
use tunstack::wire::icmp::{self, IcmpMessage};
use tunstack::wire::ipv4::{HEADER_LEN, Ipv4Header, Ipv4Packet};
use tunstack::wire::tcp::TcpSegment;
use tunstack::wire::vnet::{self, VnetHeader};
use tunstack::{Config, Duration, Instant, Interface, Ipv4Cidr};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 5001;
const MTU: usize = 1500;

fn iface(addr: Ipv4Addr, seed: u64, offloads: bool) -> Interface {
    let mut c = Config::new(Ipv4Cidr::new(addr, 24).unwrap());
    c.seed = seed;
    c.mtu = MTU;
    let mut i = Interface::new(c);
    i.set_offloads(offloads);
    i
}

/// What crossed the link from one side, in one direction.
#[derive(Default, Debug)]
struct Seen {
    /// Packets taken from the stack (super-packets count once).
    packets: usize,
    super_packets: usize,
    /// The largest packet the stack handed over.
    largest: usize,
    /// Segments after cutting: each at most the MTU, with valid checksums.
    segments: usize,
    /// The largest segment after cutting.
    largest_cut: usize,
    /// Every super-packet's `gso_size`, in order.
    gso_sizes: Vec<u16>,
    /// The first super-packet's IP header and first 8 bytes of TCP: what a router's ICMP error quotes.
    first_quote: Option<Vec<u8>>,
}

/// How packets from a stack reach the other one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Cut into MSS-sized segments with complete checksums (the kernel's software TSO).
    Cut,
    /// Whole, with the metadata (as a TUN hands a host's TSO/GRO super-packet to us).
    Whole,
}

/// Moves everything `from` has to send into `to`, as `how` says.
fn pump(now: Instant, from: &mut Interface, to: &mut Interface, how: Delivery, seen: &mut Seen) {
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    while let Some((len, meta)) = from.poll_transmit_parts(now, &mut header, &mut payload) {
        seen.packets += 1;
        seen.largest = seen.largest.max(len);
        if meta.is_gso() {
            seen.super_packets += 1;
            seen.gso_sizes.push(meta.gso_size);
            if seen.first_quote.is_none() {
                seen.first_quote = Some([&header[..], &payload[..8]].concat());
            }
        } else {
            assert!(len <= MTU, "only a super-packet may exceed the MTU ({len} bytes)");
        }
        match how {
            Delivery::Cut => {
                vnet::for_each_segment(&meta, &header, &payload, |h, p| {
                    let packet = [h, p].concat();
                    assert!(packet.len() <= MTU, "a cut segment fits the MTU");
                    seen.largest_cut = seen.largest_cut.max(packet.len());
                    let ip = Ipv4Packet::parse(&packet).expect("valid IPv4");
                    TcpSegment::parse(ip.payload(), ip.header.src, ip.header.dst).expect("valid TCP checksum");
                    seen.segments += 1;
                    to.handle_packet(now, &packet);
                })
                .unwrap();
            }
            Delivery::Whole => {
                let packet = [&header[..], &payload].concat();
                to.handle_packet_meta(now, &packet, &meta);
            }
        }
    }
}

/// Connects `a` (client) to `b` (server), then moves `data` from a to b;
/// returns what a sent as `Seen`.
fn transfer(a: &mut Interface, b: &mut Interface, how: Delivery, data: &[u8]) -> Seen {
    transfer_with(a, b, how, data, |_, _, _| {})
}

/// As `transfer`; `hook` sees the sender, the time and what it sent so far after each round.
fn transfer_with(
    a: &mut Interface,
    b: &mut Interface,
    how: Delivery,
    data: &[u8],
    mut hook: impl FnMut(&mut Interface, Instant, &mut Seen),
) -> Seen {
    let mut now = Instant::ZERO;
    let listener = b.tcp(now).listen(SocketAddrV4::new(B, PORT), 4).unwrap();
    let client = a.tcp(now).connect(SocketAddrV4::new(B, PORT), 40_000).unwrap();
    let mut server: Option<TcpHandle> = None;
    let (mut sent, mut received) = (0, Vec::with_capacity(data.len()));
    let mut seen = Seen::default();
    let mut ignored = Seen::default();
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..100_000 {
        if sent < data.len() {
            sent += a.tcp(now).send(client, &data[sent..]).unwrap_or(0);
        }
        pump(now, a, b, how, &mut seen);
        hook(a, now, &mut seen);
        if server.is_none() {
            server = b.tcp(now).accept(listener).map(|(h, _)| h);
        }
        if let Some(s) = server {
            while let Ok(n @ 1..) = b.tcp(now).recv(s, &mut buf) {
                received.extend_from_slice(&buf[..n]);
            }
        }
        pump(now, b, a, Delivery::Cut, &mut ignored);
        if received.len() == data.len() {
            assert!(received == data, "the data arrived intact");
            return seen;
        }
        now += Duration::from_micros(100);
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    panic!("transfer stalled at {} of {} bytes", received.len(), data.len());
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 257) as u8).collect()
}

#[test]
fn a_sender_with_offloads_builds_super_packets_that_cut_into_valid_mss_segments() {
    let (mut a, mut b) = (iface(A, 1, true), iface(B, 2, false));
    let data = content(4 << 20);
    let seen = transfer(&mut a, &mut b, Delivery::Cut, &data);
    assert!(seen.super_packets > 0, "super-packets were sent: {seen:?}");
    assert!(seen.largest > 32 * 1024, "some near 64 KiB: {seen:?}");
    assert!(seen.largest <= 65535);
    assert!(
        seen.segments > 2 * seen.packets,
        "each super-packet stood for many segments: {seen:?}"
    );
    assert!(
        seen.gso_sizes.iter().all(|&g| usize::from(g) == MTU - 40 - 12),
        "gso_size is the MSS less the timestamps: {:?}",
        seen.gso_sizes
    );
    assert_eq!(seen.largest_cut, MTU, "full-sized segments fill the MTU");
    let stats = a.stats();
    assert_eq!(stats.link_tx_super_packets, seen.super_packets as u64);
    // TCP counts what leaves the device, as Linux counts TSO segments.
    assert!(
        stats.tcp_tx_segments >= seen.segments as u64 - 1,
        "{} vs {seen:?}",
        stats.tcp_tx_segments
    );
}

#[test]
fn without_offloads_every_packet_fits_the_mtu() {
    let (mut a, mut b) = (iface(A, 1, false), iface(B, 2, false));
    let seen = transfer(&mut a, &mut b, Delivery::Cut, &content(1 << 20));
    assert_eq!(seen.super_packets, 0);
    assert!(seen.largest <= MTU);
    assert_eq!(seen.segments, seen.packets);
}

#[test]
fn a_receiver_takes_super_packets_whole_with_partial_checksums() {
    let (mut a, mut b) = (iface(A, 3, true), iface(B, 4, false));
    let data = content(4 << 20);
    let seen = transfer(&mut a, &mut b, Delivery::Whole, &data);
    assert!(seen.super_packets > 0, "{seen:?}");
    let stats = b.stats();
    assert_eq!(stats.link_rx_super_packets, seen.super_packets as u64);
    assert_eq!(
        stats.tcp_bad_checksum, 0,
        "partial checksums were trusted, not verified"
    );
}

/// A packet the device does not vouch for is verified: a SYN with only the
/// partial checksum is dropped as bad without a mark, and taken with
/// `DATA_VALID` (the kernel verified it: Linux's CHECKSUM_UNNECESSARY).
#[test]
fn an_unmarked_packet_is_still_verified() {
    let (mut a, mut b) = (iface(A, 5, true), iface(B, 6, false));
    let now = Instant::ZERO;
    b.tcp(now).listen(SocketAddrV4::new(B, PORT), 4).unwrap();
    a.tcp(now).connect(SocketAddrV4::new(B, PORT), 40_001).unwrap();
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    let (_, meta) = a.poll_transmit_parts(now, &mut header, &mut payload).expect("a SYN");
    assert_eq!(
        meta.flags,
        vnet::F_NEEDS_CSUM,
        "with offloads even a SYN leaves its checksum to the device"
    );
    let syn = [&header[..], &payload].concat();
    b.handle_packet(now, &syn);
    assert_eq!(
        b.stats().tcp_bad_checksum,
        1,
        "a partial checksum without the mark is bad"
    );
    let marked = VnetHeader {
        flags: vnet::F_DATA_VALID,
        ..VnetHeader::default()
    };
    b.handle_packet_meta(now, &syn, &marked);
    assert_eq!(b.stats().tcp_bad_checksum, 1);
    assert_eq!(b.stats().tcp_rx_segments, 1, "the vouched-for SYN was taken");
    assert!(b.has_output(), "and answered");
}

/// The runtime end to end: two stacks over an in-memory link that carries
/// the virtio-net header, as two TUNs with offloads would. Megabytes go
/// both ways at once through the socket API, as super-packets each way.
#[test]
fn two_stacks_exchange_super_packets_through_the_runtime() {
    use std::io::{Read, Write};
    use tunstack::device::memory::MemoryLink;
    use tunstack::net::{TcpListener, TcpStream};
    use tunstack::runtime::Stack;

    let (link_a, link_b) = MemoryLink::pair_offloading().unwrap();
    let a = Stack::start(iface(A, 7, false), link_a).unwrap();
    let b = Stack::start(iface(B, 8, false), link_b).unwrap();
    assert!(
        a.with_interface(|i| i.offloads()),
        "the runtime took the device's offloads"
    );
    let listener = TcpListener::bind(&b, (B, PORT)).unwrap();
    let data = content(8 << 20);
    let client = {
        let (a_stack, data) = (a.clone(), data.clone());
        std::thread::spawn(move || {
            let s = std::sync::Arc::new(TcpStream::connect(&a_stack, (B, PORT)).unwrap());
            let reader = s.clone();
            let echo = std::thread::spawn(move || {
                let mut back = Vec::new();
                (&*reader).read_to_end(&mut back).unwrap();
                back
            });
            (&*s).write_all(&data).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            echo.join().unwrap()
        })
    };
    let (server, _) = listener.accept().unwrap();
    // Echo as it arrives, so both directions carry bulk data at once.
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = (&server).read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        (&server).write_all(&buf[..n]).unwrap();
    }
    server.shutdown(std::net::Shutdown::Write).unwrap();
    let back = client.join().unwrap();
    assert!(back == data, "the echo came back intact");
    for (name, stack) in [("a", &a), ("b", &b)] {
        let s = stack.stats();
        assert!(s.link_tx_super_packets > 0, "{name} sent super-packets: {s:?}");
        assert!(s.link_rx_super_packets > 0, "{name} received super-packets: {s:?}");
        assert_eq!(s.tcp_bad_checksum, 0);
    }
}

/// RFC 1191 with super-packets: a router's fragmentation-needed, quoting
/// one segment the kernel cut from a super-packet, lowers the MSS, and the
/// super-packets after it carry the new `gso_size`, so every cut segment
/// fits the smaller path MTU.
#[test]
fn a_smaller_path_mtu_shrinks_the_gso_size() {
    const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
    const PATH_MTU: u16 = 1000;
    let (mut a, mut b) = (iface(A, 9, true), iface(B, 10, false));
    let mut reported_at = None;
    let seen = transfer_with(&mut a, &mut b, Delivery::Cut, &content(2 << 20), |a, now, seen| {
        let Some(quote) = seen.first_quote.clone().filter(|_| reported_at.is_none()) else {
            return;
        };
        let [m0, m1] = PATH_MTU.to_be_bytes();
        let mut msg = Vec::new();
        IcmpMessage {
            kind: icmp::kind::DEST_UNREACHABLE,
            code: icmp::unreachable::FRAG_NEEDED,
            rest: [0, 0, m0, m1],
            data: &quote,
        }
        .emit(&mut msg);
        let mut packet = vec![0u8; HEADER_LEN];
        Ipv4Header::new(ROUTER, A, 1, 64, 7, msg.len()).emit(&mut packet);
        packet.extend_from_slice(&msg);
        a.handle_packet(now, &packet);
        reported_at = Some(seen.gso_sizes.len());
        seen.largest_cut = 0;
    });
    let after = &seen.gso_sizes[reported_at.expect("a super-packet was sent")..];
    assert!(!after.is_empty(), "super-packets after the report: {seen:?}");
    assert!(
        after.iter().all(|&g| usize::from(g) == usize::from(PATH_MTU) - 40 - 12),
        "the new gso_size: {after:?}"
    );
    assert_eq!(
        seen.largest_cut,
        usize::from(PATH_MTU),
        "cut segments fill the new path MTU"
    );
    assert_eq!(a.stats().tcp_pmtu_reductions, 1);
}

// Loss recovery with offloads over a 10 ms link: the sender's super-packets
// are cut as the kernel cuts them, and one cut segment is lost. The
// scoreboard must know each cut segment (RFC 6675 §3 keeps it per octet;
// Linux's `tcp_sacktag_walk` splits a TSO skb at MSS boundaries).

/// Takes what `from` sends, cut into MTU segments (software TSO), into
/// `line` for delivery at `at`, dropping each cut data segment for which
/// `drop(index, seq, len)` says so; returns the data bytes put on the wire.
fn pump_lossy(
    now: Instant,
    at: u64,
    from: &mut Interface,
    line: &mut std::collections::VecDeque<(u64, Vec<u8>)>,
    index: &mut usize,
    drop: &mut impl FnMut(usize, u32, usize) -> bool,
) -> usize {
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    let mut wire = 0;
    while let Some((_, meta)) = from.poll_transmit_parts(now, &mut header, &mut payload) {
        vnet::for_each_segment(&meta, &header, &payload, |h, p| {
            let packet = [h, p].concat();
            assert!(
                packet.len() <= MTU,
                "a cut segment fits the MTU: {} bytes",
                packet.len()
            );
            let ip = Ipv4Packet::parse(&packet).expect("valid IPv4");
            let seg = TcpSegment::parse(ip.payload(), ip.header.src, ip.header.dst).expect("valid TCP checksum");
            if !seg.payload.is_empty() {
                wire += seg.payload.len();
                let i = *index;
                *index += 1;
                if drop(i, seg.seq.0, seg.payload.len()) {
                    return;
                }
            }
            line.push_back((at, packet));
        })
        .unwrap();
    }
    wire
}

fn deliver_due(now: Instant, tick: u64, to: &mut Interface, line: &mut std::collections::VecDeque<(u64, Vec<u8>)>) {
    while line.front().is_some_and(|(at, _)| *at <= tick) {
        let (_, p) = line.pop_front().unwrap();
        to.handle_packet(now, &p);
    }
}

/// Sends `len` bytes from a to b with b's one-way latency `rtt/2` modelled
/// crudely by pumping once per tick; returns (data bytes on the wire from a, ticks).
fn run_with_loss(
    offloads: bool,
    len: usize,
    mut drop: impl FnMut(usize, u32, usize) -> bool,
) -> (usize, u64, tunstack::Stats) {
    let (mut a, mut b) = (iface(A, 11, offloads), iface(B, 12, false));
    let mut now = Instant::ZERO;
    let listener = b.tcp(now).listen(SocketAddrV4::new(B, PORT), 4).unwrap();
    let client = a.tcp(now).connect(SocketAddrV4::new(B, PORT), 40_000).unwrap();
    let mut server: Option<TcpHandle> = None;
    let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
    let (mut sent, mut received) = (0, 0usize);
    let mut buf = vec![0u8; 1 << 16];
    let mut wire = 0;
    let (mut ia, mut ib) = (0, 0);
    const DELAY: u64 = 50; // 5 ms each way
    let (mut ab, mut ba) = Default::default();
    for tick in 0..200_000u64 {
        if sent < data.len() {
            sent += a.tcp(now).send(client, &data[sent..]).unwrap_or(0);
        }
        wire += pump_lossy(now, tick + DELAY, &mut a, &mut ab, &mut ia, &mut drop);
        deliver_due(now, tick, &mut b, &mut ab);
        if server.is_none() {
            server = b.tcp(now).accept(listener).map(|(h, _)| h);
        }
        if let Some(s) = server {
            while let Ok(n @ 1..) = b.tcp(now).recv(s, &mut buf) {
                received += n;
            }
        }
        pump_lossy(now, tick + DELAY, &mut b, &mut ba, &mut ib, &mut |_, _, _| false);
        deliver_due(now, tick, &mut a, &mut ba);
        if received == data.len() {
            return (wire, tick, a.stats().clone());
        }
        now += Duration::from_micros(100);
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    panic!("stalled at {received}");
}

/// One segment lost in the middle of a flight: only it goes again, with
/// offloads as without. (Before the scoreboard held each cut segment, a
/// SACK block covering all of a super-packet but one MSS marked none of it,
/// and RACK later resent all of it: 24 segments for one.)
#[test]
fn one_lost_segment_inside_a_super_packet_is_resent_alone() {
    const LEN: usize = 4 << 20;
    // Drop the 1500th data segment once (deep in slow start, many super-packets in flight).
    let lose = |target: usize| {
        let mut done = false;
        move |i: usize, _seq: u32, _len: usize| {
            if !done && i == target {
                done = true;
                return true;
            }
            false
        }
    };
    let (wire_off, ticks_off, s_off) = run_with_loss(false, LEN, lose(1500));
    let (wire_on, ticks_on, s_on) = run_with_loss(true, LEN, lose(1500));
    let extra_off = wire_off - LEN;
    let extra_on = wire_on - LEN;
    eprintln!(
        "without offloads: {extra_off} bytes resent, {ticks_off} ticks, retx segs {}; with: {extra_on} bytes resent, {ticks_on} ticks, retx segs {}",
        s_off.tcp_retransmitted_segments, s_on.tcp_retransmitted_segments
    );
    assert!(extra_off <= 2 * 1448, "baseline: one segment resent ({extra_off})");
    assert!(
        extra_on <= 2 * 1448,
        "with offloads only the lost segment should go again, not {extra_on} bytes"
    );
}

/// The segments the kernel cuts from a super-packet take IDs id, id + 1,
/// ... (Linux's inet_gso_segment), so the stack reserves one ID per
/// segment (Linux's ip_select_ident_segs): no two segments to one
/// destination share an ID within a wrap, as without offloads.
#[test]
fn cut_segments_of_consecutive_super_packets_never_share_an_ip_id() {
    let (mut a, mut b) = (iface(A, 1, true), iface(B, 2, false));
    let data = content(4 << 20);
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    let mut ids = std::collections::HashMap::<u16, usize>::new();
    let mut now = Instant::ZERO;
    let listener = b.tcp(now).listen(SocketAddrV4::new(B, PORT), 4).unwrap();
    let client = a.tcp(now).connect(SocketAddrV4::new(B, PORT), 40_000).unwrap();
    let (mut sent, mut received, mut server) = (0, 0, None);
    let mut buf = vec![0u8; 1 << 16];
    let mut ignored = Seen::default();
    for _ in 0..100_000 {
        if sent < data.len() {
            sent += a.tcp(now).send(client, &data[sent..]).unwrap_or(0);
        }
        while let Some((_, meta)) = a.poll_transmit_parts(now, &mut header, &mut payload) {
            vnet::for_each_segment(&meta, &header, &payload, |h, p| {
                let packet = [h, p].concat();
                let ip = Ipv4Packet::parse(&packet).unwrap();
                *ids.entry(ip.header.ident).or_default() += 1;
                b.handle_packet(now, &packet);
            })
            .unwrap();
        }
        if server.is_none() {
            server = b.tcp(now).accept(listener).map(|(h, _)| h);
        }
        if let Some(s) = server {
            while let Ok(n @ 1..) = b.tcp(now).recv(s, &mut buf) {
                received += n;
            }
        }
        pump(now, &mut b, &mut a, Delivery::Cut, &mut ignored);
        if received == data.len() {
            break;
        }
        now += Duration::from_micros(100);
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    assert_eq!(received, data.len());
    let total: usize = ids.values().sum();
    assert!(total < 65536, "no wrap in this run ({total} segments)");
    let repeated = ids.values().filter(|&&n| n > 1).count();
    assert_eq!(
        repeated, 0,
        "{repeated} IP IDs used twice among {total} segments to one destination"
    );
}
