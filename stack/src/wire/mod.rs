//! Wire formats: checksums and the IPv4 and ICMP headers.
//!
//! Field access and header writing go through etherparse; the rules about
//! what to accept (and which counter a bad packet bumps) are ours.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;
