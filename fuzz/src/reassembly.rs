//! Target `reassembly`: the fragments of one datagram, in any order,
//! duplicated, mixed with fragments of strangers and with lies about the
//! same datagram, under a memory cap and a clock.
//!
//! Checked: whatever completes from honest fragments is the datagram, byte
//! for byte, under its first fragment's header; the memory charged never
//! passes the cap; everything is released once all has expired; and,
//! when no lie was told, the honest fragments alone, in the input's order,
//! complete the datagram exactly once, on the last of them.

use crate::packet::{IpFields, ipv4};
use arbitrary::{Arbitrary, Unstructured};
use std::net::Ipv4Addr;
use tunstack::Stats;
use tunstack::ip::{Reassembler, ReassemblyConfig};
use tunstack::rand::{Rng, SeededState};
use tunstack::time::{Duration, Instant};
use tunstack::wire::ipv4::Ipv4Packet;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const IDENT: u16 = 0x5151;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// The memory cap, in 64-byte units.
    cap: u16,
    /// Payload length of the datagram.
    len: u16,
    /// Where it is cut, in 8-byte units.
    cuts: Vec<u16>,
    /// Options of its first fragment.
    options: &'a [u8],
    ops: Vec<Op<'a>>,
    /// The order of the clean final round: sort keys per fragment.
    order: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Op<'a> {
    /// One of the datagram's fragments (index modulo their number).
    Piece(u8),
    /// A fragment of another datagram (`ident` differs).
    Stranger {
        ident: u8,
        offset: u16,
        more: bool,
        payload: &'a [u8],
    },
    /// A fragment claiming to be part of our datagram that is not.
    Lie { offset: u16, more: bool, payload: &'a [u8] },
    /// Time passes, in seconds.
    Wait(u8),
    /// Datagrams whose time is up are dropped.
    Expire,
}

/// The byte at `i` of the datagram.
fn byte(i: usize) -> u8 {
    (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1]
}

/// Runs the target on one input.
pub fn reassembly(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    trace!("{input:?}");
    let max_memory = usize::from(input.cap) * 64;
    let options = &input.options[..input.options.len().min(40)];
    let header_len = 20 + options.len().next_multiple_of(4);
    let len = usize::from(input.len).min(65535 - header_len);
    let payload: Vec<u8> = (0..len).map(byte).collect();
    let ours = IpFields {
        src: SRC,
        dst: DST,
        protocol: 17,
        ttl: 64,
        ident: IDENT,
        dont_fragment: false,
    };
    let mut cuts = input.cuts;
    cuts.truncate(64);
    let pieces = crate::packet::fragments(&ours, options, &payload, &cuts);
    let first_header = pieces[0][..header_len].to_vec();

    let config = ReassemblyConfig {
        timeout: TIMEOUT,
        max_memory,
    };
    let mut r = Reassembler::new(config, SeededState::from_rng(&mut Rng::new(1)));
    let mut stats = Stats::default();
    let mut now = Instant::from_secs(1);
    let mut lied = false;
    let check = |got: Option<tunstack::ip::Reassembled>, lied: bool| {
        let Some(whole) = got else { return };
        let Some((h, _)) = tunstack::wire::ipv4::Ipv4Header::parse_quote(&whole.header) else {
            panic!("the reassembled header is no IPv4 header");
        };
        assert!(
            whole.header.len() + whole.payload.len() <= 65535,
            "reassembled beyond 65535 bytes"
        );
        if h.ident == IDENT && !lied {
            assert_eq!(whole.header, first_header, "not the first fragment's header");
            assert!(whole.payload == payload, "reassembled bytes differ from the datagram's");
        }
    };
    for op in input.ops.iter().take(256) {
        let got = match op {
            Op::Piece(i) => insert(&mut r, now, &pieces[usize::from(*i) % pieces.len()], &mut stats),
            Op::Stranger {
                ident,
                offset,
                more,
                payload,
            } => {
                let f = IpFields {
                    ident: IDENT.wrapping_add(u16::from(*ident) + 1),
                    ..ours
                };
                insert(
                    &mut r,
                    now,
                    &ipv4(&f, &[], payload, usize::from(*offset) * 8, *more),
                    &mut stats,
                )
            }
            Op::Lie { offset, more, payload } => {
                lied = true;
                insert(
                    &mut r,
                    now,
                    &ipv4(&ours, &[], payload, usize::from(*offset) * 8, *more),
                    &mut stats,
                )
            }
            Op::Wait(secs) => {
                now += Duration::from_secs(u64::from(*secs));
                None
            }
            Op::Expire => {
                for t in r.expire(now, &mut stats) {
                    assert!(t.quote.len() >= 20, "a time-exceeded quote without its header");
                }
                None
            }
        };
        check(got, lied);
        assert!(
            r.memory() <= max_memory,
            "{} bytes held over a cap of {max_memory}",
            r.memory()
        );
    }

    // Everything expires, and nothing stays charged.
    now += TIMEOUT;
    r.expire(now, &mut stats);
    assert!(
        r.is_empty() && r.memory() == 0,
        "{} bytes still charged after expiry",
        r.memory()
    );

    // A clean round: every fragment once, in the input's order, completes
    // the datagram on the last one, if the cap lets the datagram be held
    // (memory is charged by capacity, which may grow to twice the payload).
    let needed = 2 * payload.len() + header_len + 128 + 32 * pieces.len() + 1024;
    if lied || max_memory < needed {
        return;
    }
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    let key = |i: usize| input.order.get(i).copied().unwrap_or(0);
    order.sort_by_key(|&i| (key(i), i));
    for (n, &i) in order.iter().enumerate() {
        let got = insert(&mut r, now, &pieces[i], &mut stats);
        if n + 1 < order.len() {
            assert!(got.is_none(), "completed before the last fragment");
        } else {
            assert!(got.is_some(), "all fragments arrived, and nothing completed");
            check(got, false);
        }
    }
    assert!(
        r.is_empty() && r.memory() == 0,
        "a completed datagram left {} bytes charged",
        r.memory()
    );
}

fn insert(r: &mut Reassembler, now: Instant, pkt: &[u8], stats: &mut Stats) -> Option<tunstack::ip::Reassembled> {
    let p = Ipv4Packet::parse(pkt).expect("the target builds valid packets");
    r.insert(now, &p, stats)
}
