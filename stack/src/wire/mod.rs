//! Wire formats: the Internet checksum and one representation per header
//! (IPv4, ICMP, UDP, TCP, and the virtio-net header of an offloading TUN),
//! each used both to parse what arrives and to write what leaves, in the
//! manner of smoltcp's `Repr` types.
//!
//! The backend is our own code for all four headers, for three reasons:
//! every packet crosses these functions, and writing a 20-byte header in
//! place beats building a general-purpose header struct and serialising it;
//! validation follows Linux's order exactly (the layer above maps each
//! error to its own drop counter); and a TCP segment's payload is written
//! straight from the send buffer into the packet (`emit_with`). etherparse,
//! an independent implementation, checks every representation in the
//! round-trip tests. Nothing here knows the layers above: parse errors are
//! plain enums, and which counter they bump is decided where they are counted.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod icmp;
pub mod ipv4;
pub mod seq;
pub mod tcp;
pub mod udp;
pub mod vnet;
