//! tunstack: a user-space TCP/IP stack that owns a Linux TUN interface.
//!
//! The crate is layered (see the README's picture):
//!
//! - [`iface`], [`ip`], [`icmp`], [`wire`]: the sans-IO core. It takes packets
//!   and the time from its caller and hands packets back; it never reads a
//!   clock, sleeps, spawns, or does I/O, so tests can drive it
//!   deterministically.
//! - [`device`]: where packets come from and go to: a TUN device, or an
//!   in-memory link for tests. The only module with `unsafe` code.
//! - [`runtime`]: drives the core over a device on a real clock.

pub mod device;
pub mod icmp;
pub mod iface;
pub mod ip;
pub mod net;
pub mod ping;
pub mod rand;
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
