//! smoltcp, an independent stack, pings tunstack over the in-memory link:
//! echo requests small and large (fragmented both ways), byte-exact replies.
//! No root, no TUN, a virtual clock.

mod common;

use common::{MTU, SmolLink};
use smoltcp::iface::{Config as SmolConfig, Interface as SmolIface, SocketSet};
use smoltcp::phy;
use smoltcp::socket::icmp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr};
use tunstack::device::Device as _;
use tunstack::device::memory::MemoryLink;
use tunstack::{Config, Instant, Interface, Ipv4Cidr};

#[test]
fn smoltcp_pings_tunstack_with_small_and_fragmented_echoes() {
    let (ours, theirs) = MemoryLink::pair().unwrap();
    let mut ours = ours;
    let mut config = Config::new(Ipv4Cidr::new([10, 200, 0, 2].into(), 24).unwrap());
    config.seed = 42;
    let mut stack = Interface::new(config);

    let mut link = SmolLink(theirs);
    let mut smol = SmolIface::new(SmolConfig::new(HardwareAddress::Ip), &mut link, SmolInstant::ZERO);
    smol.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(10, 200, 0, 1), 24)).unwrap());
    let mut sockets = SocketSet::new(vec![]);
    let buf = || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 200_000]);
    let mut sock = icmp::Socket::new(buf(), buf());
    sock.bind(icmp::Endpoint::Ident(0x5151)).unwrap();
    let handle = sockets.add(sock);
    let caps = phy::Device::capabilities(&link);

    let sizes = [0usize, 56, 1472, 1473, 8000, 30_000, 60_000];
    let mut tx_buf = vec![0u8; MTU];
    let mut rx_buf = vec![0u8; 65536];
    for (seq, &size) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + seq) as u8).collect();
        let repr = Icmpv4Repr::EchoRequest {
            ident: 0x5151,
            seq_no: seq as u16,
            data: &data,
        };
        {
            let s = sockets.get_mut::<icmp::Socket>(handle);
            let out = s.send(repr.buffer_len(), IpAddress::v4(10, 200, 0, 2)).unwrap();
            repr.emit(&mut Icmpv4Packet::new_unchecked(out), &caps.checksum);
        }
        let mut reply = None;
        for ms in 0..1000u64 {
            let now = (seq as u64) * 10_000 + ms;
            smol.poll(SmolInstant::from_millis(now as i64), &mut link, &mut sockets);
            while let Ok(n) = ours.recv(Instant::from_millis(now), &mut rx_buf) {
                stack.handle_packet(Instant::from_millis(now), &rx_buf[..n]);
            }
            stack.handle_timeout(Instant::from_millis(now));
            while let Some(n) = stack.poll_transmit(Instant::from_millis(now), &mut tx_buf) {
                ours.send(Instant::from_millis(now), &tx_buf[..n]).unwrap();
            }
            smol.poll(SmolInstant::from_millis(now as i64), &mut link, &mut sockets);
            let s = sockets.get_mut::<icmp::Socket>(handle);
            if let Ok((bytes, from)) = s.recv() {
                assert_eq!(from, IpAddress::v4(10, 200, 0, 2));
                let pkt = Icmpv4Packet::new_checked(bytes).unwrap();
                let repr = Icmpv4Repr::parse(&pkt, &caps.checksum).expect("reply checksum verifies");
                reply = Some(match repr {
                    Icmpv4Repr::EchoReply { ident, seq_no, data } => (ident, seq_no, data.to_vec()),
                    other => panic!("unexpected {other:?}"),
                });
                break;
            }
        }
        let (ident, seq_no, got) = reply.unwrap_or_else(|| panic!("no reply to a {size}-byte echo"));
        assert_eq!((ident, seq_no), (0x5151, seq as u16));
        assert_eq!(got, data, "reply data of a {size}-byte echo");
    }
    let stats = stack.stats();
    assert_eq!(stats.icmp_tx_echo_replies, sizes.len() as u64);
    assert_eq!(
        stats.frag_reassembled, 4,
        "1473, 8000, 30000 and 60000 arrive fragmented"
    );
    assert_eq!(
        stats.drops() - stats.ip_not_ipv4,
        0,
        "nothing smoltcp sent was dropped: {stats}"
    );
}
