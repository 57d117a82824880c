//! Test harnesses for tunstack.
//!
//! - [`netns`]: live-test sandboxes. Each test gets its own network namespace
//!   (unique name, always removed, panics included), runs the real daemon in
//!   it, and drives it with real host tools (`ping`, `nc`, ...). Never the
//!   machine's own namespace.
//! - [`inject`]: crafted packets written onto a TUN's host side with an
//!   AF_PACKET socket, for inputs no host tool will produce (bad checksums,
//!   truncated headers).
//! - [`stream`]: deterministic content made from its position, for
//!   transfers too large to hold in memory.

pub mod inject;
pub mod netns;
pub mod process;
pub mod sim;
pub mod sockopt;
pub mod stream;
pub mod tunflags;
