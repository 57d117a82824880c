//! IPv4: addressing, validation on input, reassembly, routing, and output
//! with fragmentation; and the [`Context`](context::Context) through which
//! ICMP, UDP, TCP and echo sockets use it.

#![forbid(unsafe_code)]

pub(crate) mod context;
pub(crate) mod ident;
pub(crate) mod layer;
pub(crate) mod output;
pub(crate) mod reassembly;
pub mod route;
mod sockets;

pub use context::{Delivery, OutputError};
pub use reassembly::ReassemblyConfig;
/// Fragment reassembly on its own, for the fuzz targets; not a stable API.
#[doc(hidden)]
pub use reassembly::{Reassembled, Reassembler};
pub use sockets::Sockets;

use core::fmt;
use core::str::FromStr;
use std::net::Ipv4Addr;

/// IP protocol numbers the stack knows.
pub mod protocol {
    /// Internet Control Message Protocol.
    pub const ICMP: u8 = crate::wire::icmp::PROTOCOL;
    /// Transmission Control Protocol.
    pub const TCP: u8 = crate::wire::tcp::PROTOCOL;
    /// User Datagram Protocol.
    pub const UDP: u8 = crate::wire::udp::PROTOCOL;
}

/// Default TTL of datagrams we originate (as Linux's `ip_default_ttl`).
pub const DEFAULT_TTL: u8 = 64;

/// Largest IPv4 datagram, header included.
pub const MAX_DATAGRAM: usize = 65535;

/// An IPv4 address with a prefix length: an interface address and its subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix_len`; `None` if the prefix is longer than 32.
    pub const fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Cidr> {
        if prefix_len > 32 {
            None
        } else {
            Some(Ipv4Cidr { addr, prefix_len })
        }
    }

    /// The address part.
    pub const fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length in bits.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The mask as a number: `prefix_len` ones followed by zeros.
    pub const fn mask_bits(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len)
        }
    }

    /// The subnet mask, e.g. 255.255.255.0 for /24.
    pub const fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.mask_bits())
    }

    /// The network address: host bits all zero.
    pub const fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.addr.to_bits() & self.mask_bits())
    }

    /// The directed broadcast address: host bits all one. None for /31 and /32 (RFC 3021).
    pub const fn broadcast(&self) -> Option<Ipv4Addr> {
        if self.prefix_len >= 31 {
            None
        } else {
            Some(Ipv4Addr::from_bits(self.addr.to_bits() | !self.mask_bits()))
        }
    }

    /// Whether `ip` lies in this subnet.
    pub const fn contains(&self, ip: Ipv4Addr) -> bool {
        (ip.to_bits() & self.mask_bits()) == (self.addr.to_bits() & self.mask_bits())
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a string is not an `a.b.c.d/n` address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseCidrError(String);

impl fmt::Display for ParseCidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected an IPv4 address with prefix like 10.200.0.2/24: {}", self.0)
    }
}

impl std::error::Error for ParseCidrError {}

impl FromStr for Ipv4Cidr {
    type Err = ParseCidrError;
    fn from_str(s: &str) -> Result<Ipv4Cidr, ParseCidrError> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| ParseCidrError(format!("no '/' in {s:?}")))?;
        let addr: Ipv4Addr = a.parse().map_err(|e| ParseCidrError(format!("{a:?}: {e}")))?;
        let prefix_len: u8 = p.parse().map_err(|e| ParseCidrError(format!("{p:?}: {e}")))?;
        Ipv4Cidr::new(addr, prefix_len).ok_or_else(|| ParseCidrError(format!("prefix {prefix_len} > 32")))
    }
}

/// Whether no host may send from `ip` (RFC 1122 §3.2.1.3; Linux's martian sources).
/// 0.0.0.0 is allowed: a host without an address uses it (DHCP).
pub fn is_martian_source(ip: Ipv4Addr) -> bool {
    ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() || ip.octets()[0] >= 240
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parts() {
        let c: Ipv4Cidr = "10.1.1.7/24".parse().unwrap();
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.network(), Ipv4Addr::new(10, 1, 1, 0));
        assert_eq!(c.broadcast(), Some(Ipv4Addr::new(10, 1, 1, 255)));
        assert!(c.contains(Ipv4Addr::new(10, 1, 1, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 1, 2, 1)));
        let any: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(Ipv4Addr::new(8, 8, 8, 8)));
        assert_eq!(any.netmask(), Ipv4Addr::UNSPECIFIED);
        let host: Ipv4Cidr = "10.0.0.1/32".parse().unwrap();
        assert_eq!(host.broadcast(), None);
        assert_eq!(host.to_string(), "10.0.0.1/32");
    }

    #[test]
    fn cidr_rejects_garbage() {
        assert!("10.0.0.1".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.1/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0/8".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn martian_sources() {
        assert!(is_martian_source(Ipv4Addr::new(224, 0, 0, 1)));
        assert!(is_martian_source(Ipv4Addr::BROADCAST));
        assert!(is_martian_source(Ipv4Addr::LOCALHOST));
        assert!(is_martian_source(Ipv4Addr::new(250, 1, 1, 1)));
        assert!(!is_martian_source(Ipv4Addr::new(10, 200, 0, 1)));
        assert!(!is_martian_source(Ipv4Addr::UNSPECIFIED));
    }
}
