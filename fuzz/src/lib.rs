//! Fuzz targets for tunstack. Each target is a function of the fuzzer's
//! bytes that panics on a finding; the cargo-fuzz harness in `harness/`
//! (nightly, libFuzzer) calls them, and `tests/replay.rs` (stable, `cargo
//! test`) runs every file of `corpus/<target>/` through the same function.
//!
//! The targets:
//!
//! - [`ipv4`], [`icmp`], [`udp`], [`tcp`]: each header parser on its own,
//!   with round trips through the same representation's writer, and (ICMP)
//!   the datagram an error quotes;
//! - [`reassembly`]: fragments of a datagram in any order, duplicated,
//!   mixed with strangers, against a memory cap and the clock;
//! - [`iface`]: a program of packets (IPv4 with fragments and options,
//!   ICMP, UDP, TCP to a listener and to established connections), socket
//!   calls and clock steps into one `Interface`; everything it sends must
//!   be valid;
//! - [`tcp_conn`]: one established connection driven by fuzzed segments,
//!   application calls and clock steps, its invariants checked after every
//!   step;
//! - [`vnet`]: the virtio-net header of an offloading TUN, and the
//!   software segmentation and checksum completion behind it;
//! - [`control`]: a client's bytes on the daemon's control socket, request
//!   lines then frames, through the daemon's own readers and parser.
//! - [`http_head`], [`downloader_name`], [`file_path`]: the daemon's file
//!   services' request readers and the path checks behind them (pure: no
//!   file is opened).
//!
//! Checksums would stop a fuzzer at the first header, so the structured
//! targets build correct headers around the fields they choose (corrupting
//! one only when the input says so); the parser targets let the input ask
//! for its checksum to be fixed before parsing.

#![forbid(unsafe_code)]

/// Prints the decoded program of an input, when `TUNSTACK_FUZZ_TRACE` is
/// set: what a crash needs to be understood (see the README's "Fuzzing").
macro_rules! trace {
    ($($arg:tt)*) => {
        if crate::tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// Whether `TUNSTACK_FUZZ_TRACE` is set (read once).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TUNSTACK_FUZZ_TRACE").is_some())
}

mod conn;
mod control;
mod files;
mod iface;
mod packet;
mod parsers;
mod reassembly;
mod stack;
mod vnet;

pub use conn::tcp_conn;
pub use control::control;
pub use files::{downloader_name, file_path, http_head};
pub use iface::iface;
pub use parsers::{icmp, ipv4, tcp, udp};
pub use reassembly::reassembly;
pub use vnet::vnet;

/// A target: the fuzzer's bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// Every target by name: the harness's binary names and the corpus directories.
pub const TARGETS: &[(&str, Target)] = &[
    ("ipv4", ipv4),
    ("icmp", icmp),
    ("udp", udp),
    ("tcp", tcp),
    ("reassembly", reassembly),
    ("iface", iface),
    ("tcp_conn", tcp_conn),
    ("vnet", vnet),
    ("control", control),
    ("http_head", http_head),
    ("downloader_name", downloader_name),
    ("file_path", file_path),
];
