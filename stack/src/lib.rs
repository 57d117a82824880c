//! tunstack: a user-space TCP/IP stack that owns a Linux TUN interface.
//!
//! The crate is layered (see the README's picture). Each layer imports only
//! the ones below it; `tests/layering.rs` checks the order, written in one
//! table there:
//!
//! - Leaves, used by all: [`time`] (the stack's own clock type), [`rand`]
//!   (seeded RNG, keyed hashes), [`stats`] (one counter per drop reason),
//!   [`socket`] (handles, the socket slab, events, ephemeral ports),
//!   [`ratelimit`] (token buckets).
//! - [`wire`]: the Internet checksum and one representation per header
//!   (IPv4, ICMP, UDP, TCP, and TCP sequence numbers), parsed and written.
//! - [`ip`]: validation, reassembly, routing, IP IDs, the transmit queue
//!   with fragmentation, and the context the protocols above use.
//! - The protocols, which never import each other: [`icmp`] (echo replies,
//!   reading errors), [`udp`], [`tcp`], [`ping`] (ICMP echo sockets).
//! - [`iface`]: the [`Interface`] that composes them: the sans-IO core. It
//!   takes packets and the time from its caller and hands packets back; it
//!   never reads a clock, sleeps, spawns, or does I/O, so tests can drive
//!   it deterministically.
//! - [`device`]: where packets come from and go to: a TUN device, an
//!   in-memory link for tests, pcap and impairment wrappers. The only
//!   module with `unsafe` code.
//! - [`runtime`]: drives the core over a device on a real clock, on one thread.
//! - [`net`]: `TcpListener`, `TcpStream`, `UdpSocket`, `IcmpSocket`, shaped
//!   like `std::net` and usable from any thread, and [`net::Poll`], a
//!   readiness API like mio's for event-driven servers: one thread waits
//!   on many sockets.

/// Implements `Display` (one fixed message per variant) and
/// `std::error::Error` for a fieldless error enum.
macro_rules! error_messages {
    ($ty:ident { $($variant:ident => $msg:literal),* $(,)? }) => {
        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(match self {
                    $($ty::$variant => $msg,)*
                })
            }
        }

        impl std::error::Error for $ty {}
    };
}

pub mod device;
pub mod icmp;
pub mod iface;
pub mod ip;
pub mod net;
pub mod ping;
pub mod rand;
pub(crate) mod ratelimit;
pub mod runtime;
pub mod socket;
pub mod stats;
pub mod tcp;
pub mod time;
pub mod udp;
pub mod wire;

#[cfg(test)]
mod testutil;

pub use iface::{Config, Interface};
pub use ip::Ipv4Cidr;
pub use stats::Stats;
pub use time::{Duration, Instant};
