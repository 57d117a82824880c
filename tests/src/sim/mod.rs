//! A deterministic network simulation: two endpoints on a simulated
//! point-to-point link, a virtual clock, and seeded impairments. No root, no
//! TUN, no wall clock, no sleeping: time jumps to the next event.
//!
//! - [`SimLink`]: latency, bandwidth (serialisation delay, optional drop-tail
//!   queue), loss, duplication, reordering and corruption, all drawn from one
//!   [`Rng`]. Packets in flight sit in a priority queue ordered by delivery
//!   time, ties broken by a send counter, so a seed fixes the whole run.
//! - [`Endpoint`] / [`TcpEndpoint`]: what the harness needs from a stack.
//!   [`TunstackEndpoint`] wraps a tunstack [`Interface`]; the smoltcp
//!   endpoint lives with the tests (smoltcp is only a dev-dependency).
//! - [`run_transfer`]: A connects to B, each sends N bytes of seeded content
//!   while receiving the other's, shuts down writing, reads to EOF, closes.
//!   It checks byte-exact delivery, that the active closer goes through
//!   TIME-WAIT, and that both connection tables drain.
//!
//! Debugging one run: [`TransferSpec::trace`] prints every packet as it is
//! delivered or dropped, with the virtual time.

use std::net::Ipv4Addr;

/// A's address on the simulated link (the client in [`run_transfer`]).
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// B's address on the simulated link (the server in [`run_transfer`]).
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The port B listens on.
pub const SERVER_PORT: u16 = 5001;

mod endpoint;
mod link;
mod transfer;

pub use endpoint::*;
pub use link::*;
pub use transfer::*;
