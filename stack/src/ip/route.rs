//! The route table: longest-prefix match over connected subnets and gateways.

#![forbid(unsafe_code)]

use super::Ipv4Cidr;
use core::fmt;
use std::net::Ipv4Addr;

/// One route: where datagrams for `destination` go next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination network (its address is normalised to the network address).
    pub destination: Ipv4Cidr,
    /// The next hop, or `None` for a directly connected subnet.
    pub gateway: Option<Ipv4Addr>,
}

impl Route {
    /// `route -n` flags: U (up) and G (via a gateway), H (host route).
    pub fn flags(&self) -> String {
        let mut f = String::from("U");
        if self.gateway.is_some() {
            f.push('G');
        }
        if self.destination.prefix_len() == 32 {
            f.push('H');
        }
        f
    }
}

/// Routes kept sorted by prefix length, longest first, so the first match wins.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Why a route could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// A route for exactly this destination exists.
    Exists,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a route for that destination exists")
    }
}

impl std::error::Error for RouteError {}

impl RouteTable {
    /// An empty table.
    pub fn new() -> RouteTable {
        RouteTable::default()
    }

    /// Adds a route; the destination is normalised to its network address.
    pub fn add(&mut self, destination: Ipv4Cidr, gateway: Option<Ipv4Addr>) -> Result<(), RouteError> {
        let destination = Ipv4Cidr::new(destination.network(), destination.prefix_len()).expect("valid prefix");
        if self.routes.iter().any(|r| r.destination == destination) {
            return Err(RouteError::Exists);
        }
        // Insert after every route with a longer or equal prefix: stable, longest first.
        let at = self
            .routes
            .iter()
            .position(|r| r.destination.prefix_len() < destination.prefix_len())
            .unwrap_or(self.routes.len());
        self.routes.insert(at, Route { destination, gateway });
        Ok(())
    }

    /// Removes the route for exactly `destination`; true if there was one.
    pub fn remove(&mut self, destination: Ipv4Cidr) -> bool {
        let before = self.routes.len();
        self.routes.retain(|r| {
            !(r.destination.network() == destination.network()
                && r.destination.prefix_len() == destination.prefix_len())
        });
        self.routes.len() != before
    }

    /// The most specific route covering `dst`.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&Route> {
        self.routes.iter().find(|r| r.destination.contains(dst))
    }

    /// The routes, most specific first (the order `route -n` reads them).
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_regardless_of_insert_order() {
        let mut t = RouteTable::new();
        t.add(cidr("0.0.0.0/0"), Some(ip("10.200.0.1"))).unwrap();
        t.add(cidr("10.200.0.2/24"), None).unwrap();
        t.add(cidr("10.0.0.0/8"), Some(ip("10.200.0.254"))).unwrap();
        t.add(cidr("10.200.0.128/25"), Some(ip("10.200.0.3"))).unwrap();
        assert_eq!(t.lookup(ip("10.200.0.9")).unwrap().gateway, None);
        assert_eq!(t.lookup(ip("10.200.0.200")).unwrap().gateway, Some(ip("10.200.0.3")));
        assert_eq!(t.lookup(ip("10.9.9.9")).unwrap().gateway, Some(ip("10.200.0.254")));
        assert_eq!(t.lookup(ip("8.8.8.8")).unwrap().gateway, Some(ip("10.200.0.1")));
        let prefixes: Vec<u8> = t.iter().map(|r| r.destination.prefix_len()).collect();
        assert_eq!(prefixes, [25, 24, 8, 0]);
    }

    #[test]
    fn destinations_are_normalised_and_unique() {
        let mut t = RouteTable::new();
        t.add(cidr("10.200.0.2/24"), None).unwrap();
        assert_eq!(t.iter().next().unwrap().destination.addr(), ip("10.200.0.0"));
        assert_eq!(t.add(cidr("10.200.0.77/24"), None), Err(RouteError::Exists));
    }

    #[test]
    fn no_route_without_default() {
        let mut t = RouteTable::new();
        t.add(cidr("10.200.0.0/24"), None).unwrap();
        assert!(t.lookup(ip("192.168.1.1")).is_none());
        assert!(t.remove(cidr("10.200.0.0/24")));
        assert!(t.lookup(ip("10.200.0.1")).is_none());
        assert!(!t.remove(cidr("10.200.0.0/24")));
    }

    #[test]
    fn host_route_beats_subnet_and_flags_read_like_route_n() {
        let mut t = RouteTable::new();
        t.add(cidr("10.200.0.0/24"), None).unwrap();
        t.add(cidr("10.200.0.5/32"), Some(ip("10.200.0.1"))).unwrap();
        t.add(cidr("0.0.0.0/0"), Some(ip("10.200.0.1"))).unwrap();
        let r = t.lookup(ip("10.200.0.5")).unwrap();
        assert_eq!(r.flags(), "UGH");
        assert_eq!(t.lookup(ip("10.200.0.6")).unwrap().flags(), "U");
        assert_eq!(t.lookup(ip("1.1.1.1")).unwrap().flags(), "UG");
    }
}
