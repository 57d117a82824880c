//! Starting a stack on a TUN interface: create, configure the host side, run.

use super::Stack;
use crate::device::Device;
use crate::device::impair::{Direction, ImpairConfig, ImpairedDevice};
use crate::device::pcap::PcapDevice;
use crate::device::sys;
use crate::device::tun::{Offload, TunDevice};
use crate::iface::{Config, Interface};
use crate::ip::{self, Ipv4Cidr};
use std::fmt;
use std::io;
use std::net::Ipv4Addr;

/// What to create: the defaults are tunstackd's (tun0, 10.200.0.2/24, host 10.200.0.1/24, MTU 1500).
#[derive(Clone, Debug, PartialEq)]
pub struct TunConfig {
    /// Interface name to create.
    pub name: String,
    /// The stack's address and subnet.
    pub address: Ipv4Cidr,
    /// The host side's address, also the stack's default gateway.
    pub host_address: Ipv4Cidr,
    /// Whether to assign `host_address` to the host side (false: leave it to the user).
    pub configure_host: bool,
    /// Link MTU.
    pub mtu: usize,
    /// Seed for the stack's randomness; `None` takes one from the OS.
    pub seed: Option<u64>,
    /// Whether echo requests to broadcast addresses are answered.
    pub answer_broadcast_echo: bool,
    /// TCP maximum segment lifetime (TIME-WAIT lasts twice this).
    pub msl: std::time::Duration,
    /// TCP congestion control of new connections.
    pub congestion: crate::tcp::CongestionAlgorithm,
    /// Largest TCP receive buffer per connection, in bytes (auto-tuning's cap; `TcpConfig::recv_buffer`).
    pub recv_buffer: usize,
    /// Largest TCP send buffer per connection, in bytes (`TcpConfig::send_buffer`).
    pub send_buffer: usize,
    /// When listeners answer SYNs with SYN cookies (`TcpConfig::syncookies`).
    pub syncookies: crate::tcp::SynCookies,
    /// How long an orphan may sit in FIN-WAIT-2 (`TcpConfig::fin_timeout`).
    pub fin_timeout: std::time::Duration,
    /// Retransmissions or probes an orphan gets (`TcpConfig::orphan_retries`).
    pub orphan_retries: u32,
    /// Orphans held at most (`TcpConfig::max_orphans`).
    pub max_orphans: usize,
    /// TIME-WAIT entries held at most (`TcpConfig::max_tw_buckets`).
    pub max_tw_buckets: usize,
    /// TCP connections the stack holds at most (`TcpConfig::max_connections`).
    pub max_connections: usize,
    /// The budget for TCP buffer memory (`TcpConfig::memory`).
    pub tcp_memory: crate::tcp::MemoryLimits,
    /// How long the stack thread keeps reading after packets came, before
    /// it sleeps ([`RuntimeConfig::busy_poll`](super::RuntimeConfig::busy_poll)).
    pub busy_poll: std::time::Duration,
    /// Record every packet in and out to this pcap file.
    pub pcap: Option<std::path::PathBuf>,
    /// Impair the link (loss, delay, ...) in the given direction(s).
    pub impair: Option<(ImpairConfig, Direction)>,
    /// Whether the TUN carries TCP super-packets and partial checksums (issue 16).
    pub offload: Offload,
}

impl Default for TunConfig {
    fn default() -> TunConfig {
        TunConfig {
            name: "tun0".into(),
            address: Ipv4Cidr::new([10, 200, 0, 2].into(), 24).expect("valid"),
            host_address: Ipv4Cidr::new([10, 200, 0, 1].into(), 24).expect("valid"),
            configure_host: true,
            mtu: 1500,
            seed: None,
            answer_broadcast_echo: true,
            msl: std::time::Duration::from_secs(30),
            congestion: crate::tcp::CongestionAlgorithm::Cubic,
            recv_buffer: crate::tcp::TcpConfig::default().recv_buffer,
            send_buffer: crate::tcp::TcpConfig::default().send_buffer,
            syncookies: crate::tcp::TcpConfig::default().syncookies,
            fin_timeout: crate::tcp::TcpConfig::default().fin_timeout,
            orphan_retries: crate::tcp::TcpConfig::default().orphan_retries,
            max_orphans: crate::tcp::TcpConfig::default().max_orphans,
            max_tw_buckets: crate::tcp::TcpConfig::default().max_tw_buckets,
            max_connections: crate::tcp::TcpConfig::default().max_connections,
            tcp_memory: crate::tcp::TcpConfig::default().memory,
            busy_poll: super::RuntimeConfig::default().busy_poll,
            pcap: None,
            impair: None,
            offload: Offload::default(),
        }
    }
}

impl TunConfig {
    /// The examples' link: interface `name`, the stack at 10.`net`.0.2/24 and
    /// the host at 10.`net`.0.1/24, clear of a tunstackd on the defaults
    /// (the servers use 10.201, the clients 10.203, so both can run at once).
    pub fn example(name: &str, net: u8) -> TunConfig {
        TunConfig {
            name: name.into(),
            address: Ipv4Cidr::new([10, net, 0, 2].into(), 24).expect("valid"),
            host_address: Ipv4Cidr::new([10, net, 0, 1].into(), 24).expect("valid"),
            ..TunConfig::default()
        }
    }
}

/// Which end of the TUN link an address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The stack's own address (`TunConfig::address`).
    Stack,
    /// The host side's address (`TunConfig::host_address`).
    Host,
}

/// Why a [`TunConfig`]'s addresses cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// Not an address a host can have: 0.0.0.0, loopback, multicast, class E or 255.255.255.255.
    NotUnicast(Side, Ipv4Addr),
    /// The network or broadcast address of `subnet` (which has both: /30 or shorter).
    Reserved {
        /// Whose address it is.
        side: Side,
        /// The address.
        addr: Ipv4Addr,
        /// The subnet it is reserved in.
        subnet: Ipv4Cidr,
        /// True for the broadcast address, false for the network address.
        broadcast: bool,
    },
    /// The stack and the host side have the same address.
    Same(Ipv4Addr),
    /// The host side's subnet (which the host is given) leaves out the stack's
    /// address, so the host would have no route to the stack.
    StackOutsideHostSubnet {
        /// The stack's address.
        stack: Ipv4Addr,
        /// The host side's subnet.
        host_subnet: Ipv4Cidr,
    },
}

impl AddressError {
    /// The ends whose addresses are at fault.
    pub fn sides(&self) -> &'static [Side] {
        match self {
            AddressError::NotUnicast(Side::Stack, _) | AddressError::Reserved { side: Side::Stack, .. } => {
                &[Side::Stack]
            }
            AddressError::NotUnicast(Side::Host, _) | AddressError::Reserved { side: Side::Host, .. } => &[Side::Host],
            AddressError::Same(_) | AddressError::StackOutsideHostSubnet { .. } => &[Side::Stack, Side::Host],
        }
    }

    /// The addresses at fault in `cfg`, each after its label (`stack`,
    /// `host`): "stack address 10.200.0.255/24", or, from the daemon,
    /// "--address 10.200.0.255/24 and --host-address 10.200.0.1/24".
    pub fn subject(&self, cfg: &TunConfig, stack: &str, host: &str) -> String {
        let one = |side| match side {
            Side::Stack => format!("{stack} {}", cfg.address),
            Side::Host => format!("{host} {}", cfg.host_address),
        };
        self.sides().iter().map(|&s| one(s)).collect::<Vec<_>>().join(" and ")
    }
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::NotUnicast(_, addr) => {
                let kind = if addr.is_unspecified() {
                    "the unspecified address"
                } else if addr.is_broadcast() {
                    "the limited broadcast address"
                } else if addr.is_loopback() {
                    "a loopback address"
                } else if addr.is_multicast() {
                    "a multicast address"
                } else {
                    "a reserved (class E) address"
                };
                write!(f, "{addr} is {kind}, not one a host can have")
            }
            AddressError::Reserved {
                addr,
                subnet,
                broadcast,
                ..
            } => {
                let net = network_of(*subnet);
                let what = if *broadcast { "broadcast" } else { "network" };
                let first = Ipv4Addr::from_bits(subnet.network().to_bits() + 1);
                let last = subnet
                    .broadcast()
                    .map_or(first, |b| Ipv4Addr::from_bits(b.to_bits() - 1));
                write!(
                    f,
                    "{addr} is the {what} address of {net}; its hosts are {first} to {last}"
                )
            }
            AddressError::Same(addr) => write!(f, "the stack and the host side would both be {addr}"),
            AddressError::StackOutsideHostSubnet { stack, host_subnet } => {
                let net = network_of(*host_subnet);
                write!(
                    f,
                    "the stack's {stack} is outside the host side's subnet {net}, so the host would have no route to it"
                )
            }
        }
    }
}

impl std::error::Error for AddressError {}

/// An address the host has already that the host side's subnet would overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetConflict {
    /// The host side's subnet as configured.
    pub subnet: Ipv4Cidr,
    /// The address (and prefix) already there.
    pub existing: Ipv4Cidr,
    /// The interface that has it.
    pub ifname: String,
}

impl fmt::Display for SubnetConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = network_of(self.subnet);
        write!(f, "host subnet {net} overlaps {} on {}", self.existing, self.ifname)
    }
}

/// The subnet `cidr` lies in, written with its network address (10.200.0.0/24).
fn network_of(cidr: Ipv4Cidr) -> Ipv4Cidr {
    Ipv4Cidr::new(cidr.network(), cidr.prefix_len()).expect("valid prefix")
}

/// Whether `addr` is the network address (`Some(false)`) or the broadcast
/// address (`Some(true)`) of `subnet`. /31 and /32 have neither (RFC 3021).
fn reserved_in(addr: Ipv4Addr, subnet: Ipv4Cidr) -> Option<bool> {
    if !subnet.contains(addr) {
        return None;
    }
    if subnet.broadcast() == Some(addr) {
        Some(true)
    } else if subnet.prefix_len() < 31 && subnet.network() == addr {
        Some(false)
    } else {
        None
    }
}

/// Whether two subnets share an address.
/// Whether an existing address's connected route would take (part of) the
/// host side's subnet from it: one at least as specific, inside it. A less
/// specific one (10.0.0.0/8 on eth0 around our /24) is fine: the longest
/// prefix wins, as Linux routes it.
fn shadows(existing: Ipv4Cidr, ours: Ipv4Cidr) -> bool {
    existing.prefix_len() >= ours.prefix_len() && ours.contains(existing.network())
}

impl TunConfig {
    /// Checks that the addresses can work, without touching the system: each
    /// a unicast host address, neither the network or broadcast address of
    /// the stack's subnet (or of the host side's, when it is configured),
    /// distinct, and the stack inside the host side's subnet when the host
    /// side is configured (the host reaches the stack through that connected
    /// route; the stack reaches the host through its default route whatever
    /// the subnets, the link being point to point).
    pub fn check_addresses(&self) -> Result<(), AddressError> {
        let (stack, host) = (self.address.addr(), self.host_address.addr());
        for (side, addr) in [(Side::Stack, stack), (Side::Host, host)] {
            if addr.is_unspecified() || ip::is_martian_source(addr) {
                return Err(AddressError::NotUnicast(side, addr));
            }
        }
        let mut subnets = vec![self.address];
        if self.configure_host {
            subnets.push(self.host_address);
        }
        for (side, addr) in [(Side::Stack, stack), (Side::Host, host)] {
            for &subnet in &subnets {
                if let Some(broadcast) = reserved_in(addr, subnet) {
                    return Err(AddressError::Reserved {
                        side,
                        addr,
                        subnet,
                        broadcast,
                    });
                }
            }
        }
        if stack == host {
            return Err(AddressError::Same(stack));
        }
        if self.configure_host && !self.host_address.contains(stack) {
            return Err(AddressError::StackOutsideHostSubnet {
                stack,
                host_subnet: self.host_address,
            });
        }
        Ok(())
    }

    /// The first IPv4 address the host already has, in this network
    /// namespace, that the host side's subnet would overlap (two connected
    /// routes for one subnet: the host's packets for the stack could leave
    /// by the other interface). `None` when the host side is left alone, or
    /// when the address is on an interface of our own name (an existing
    /// persistent TUN we attach to, whose address is then replaced).
    pub fn host_subnet_conflict(&self) -> io::Result<Option<SubnetConflict>> {
        if !self.configure_host {
            return Ok(None);
        }
        Ok(sys::ipv4_addresses()?
            .into_iter()
            .find(|(ifname, existing)| *ifname != self.name && shadows(*existing, self.host_address))
            .map(|(ifname, existing)| SubnetConflict {
                subnet: self.host_address,
                existing,
                ifname,
            }))
    }
}

/// A seed from the OS's random source.
pub fn os_seed() -> io::Result<u64> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut b))?;
    Ok(u64::from_ne_bytes(b))
}

/// A TUN interface created and configured, with its stack ready to start
/// on it but no thread running yet: everything that needs privileges
/// (CAP_NET_ADMIN, the capture file) is done, so a daemon can drop them
/// before any thread exists. Dropping it closes the TUN (the interface goes).
pub struct TunLink {
    name: String,
    offload: Offload,
    iface: Interface,
    device: Box<dyn Device + Send>,
    runtime: super::RuntimeConfig,
}

impl fmt::Debug for TunLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunLink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TunLink {
    /// The interface's real name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the TUN has offloads: [`Offload::On`] or [`Offload::Off`],
    /// whatever [`TunConfig::offload`] asked.
    pub fn offload(&self) -> Offload {
        self.offload
    }

    /// Starts the stack's thread on the link.
    pub fn start(self) -> io::Result<Stack> {
        Stack::start_with(self.iface, self.device, self.runtime)
    }
}

impl Stack {
    /// Creates and configures a TUN interface as `cfg` says and starts a
    /// stack on it. Returns the stack and the interface's real name. Needs
    /// CAP_NET_ADMIN. The interface disappears when the process exits.
    /// Refuses, before creating anything, addresses that cannot work
    /// ([`TunConfig::check_addresses`]) and a host subnet the host has
    /// already ([`TunConfig::host_subnet_conflict`]).
    pub fn on_tun(cfg: &TunConfig) -> io::Result<(Stack, String)> {
        let link = cfg.open()?;
        let name = link.name.clone();
        Ok((link.start()?, name))
    }
}

impl TunConfig {
    /// Does all of [`Stack::on_tun`] but start the stack: creates and
    /// configures the interface (and the capture file) and returns them,
    /// ready to [`start`](TunLink::start).
    pub fn open(&self) -> io::Result<TunLink> {
        let cfg = self;
        cfg.check_addresses().map_err(|e| {
            let what = e.subject(cfg, "stack address", "host address");
            io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
        })?;
        if let Some(conflict) = cfg.host_subnet_conflict()? {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, conflict.to_string()));
        }
        if !(68..=65535).contains(&cfg.mtu) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "MTU must be 68 to 65535"));
        }
        let device = TunDevice::create(&cfg.name, cfg.offload)?;
        device.set_mtu(cfg.mtu)?;
        if cfg.configure_host {
            device.set_host_address(cfg.host_address)?;
        }
        device.set_up()?;
        let mut config = Config::new(cfg.address);
        config.gateway = Some(cfg.host_address.addr());
        config.mtu = cfg.mtu;
        config.seed = match cfg.seed {
            Some(s) => s,
            None => os_seed()?,
        };
        config.answer_broadcast_echo = cfg.answer_broadcast_echo;
        config.tcp.msl = cfg.msl;
        config.tcp.congestion = cfg.congestion;
        config.tcp.recv_buffer = cfg.recv_buffer;
        config.tcp.send_buffer = cfg.send_buffer;
        config.tcp.syncookies = cfg.syncookies;
        config.tcp.fin_timeout = cfg.fin_timeout;
        config.tcp.orphan_retries = cfg.orphan_retries;
        config.tcp.max_orphans = cfg.max_orphans;
        config.tcp.max_tw_buckets = cfg.max_tw_buckets;
        config.tcp.max_connections = cfg.max_connections;
        config.tcp.memory = cfg.tcp_memory;
        let name = device.name().to_owned();
        let offload = device.offload();
        // The capture sees what crosses the TUN: inside the impairment, so a
        // lost packet appears once (as sent by the host) and never again.
        let mut dev: Box<dyn Device + Send> = Box::new(device);
        if let Some(path) = &cfg.pcap {
            dev = Box::new(PcapDevice::create(dev, path)?);
        }
        if let Some((imp, dir)) = cfg.impair.filter(|(i, _)| i.is_active()) {
            log::info!("impairing {name} ({dir:?}): {imp:?}");
            dev = Box::new(ImpairedDevice::new(dev, imp, dir, config.seed ^ 0x1312_d00d));
        }
        let runtime = super::RuntimeConfig {
            busy_poll: cfg.busy_poll,
        };
        Ok(TunLink {
            name,
            offload,
            iface: Interface::new(config),
            device: dev,
            runtime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(stack: &str, host: &str) -> TunConfig {
        TunConfig {
            address: stack.parse().unwrap(),
            host_address: host.parse().unwrap(),
            ..TunConfig::default()
        }
    }

    fn check(stack: &str, host: &str) -> Result<(), AddressError> {
        cfg(stack, host).check_addresses()
    }

    #[test]
    fn the_defaults_and_the_examples_pass() {
        assert_eq!(TunConfig::default().check_addresses(), Ok(()));
        assert_eq!(TunConfig::example("tunex0", 201).check_addresses(), Ok(()));
    }

    #[test]
    fn network_and_broadcast_addresses_are_refused_with_the_usable_range() {
        let e = check("10.200.0.255/24", "10.200.0.1/24").unwrap_err();
        assert_eq!(e.sides(), [Side::Stack]);
        assert_eq!(
            e.to_string(),
            "10.200.0.255 is the broadcast address of 10.200.0.0/24; its hosts are 10.200.0.1 to 10.200.0.254"
        );
        let e = check("10.200.0.0/24", "10.200.0.1/24").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("10.200.0.0 is the network address of 10.200.0.0/24"),
            "{e}"
        );
        let e = check("10.200.0.2/24", "10.200.0.0/24").unwrap_err();
        assert_eq!(e.sides(), [Side::Host]);
        // The host's broadcast in the stack's (shorter) view is refused too...
        let e = check("10.200.0.2/24", "10.200.0.255/16").unwrap_err();
        assert!(
            matches!(
                e,
                AddressError::Reserved {
                    side: Side::Host,
                    broadcast: true,
                    ..
                }
            ),
            "{e:?}"
        );
        // ...but only a configured host side's subnet counts.
        let mut c = cfg("10.200.1.255/16", "10.200.1.1/24");
        assert!(matches!(
            c.check_addresses(),
            Err(AddressError::Reserved { side: Side::Stack, .. })
        ));
        c.configure_host = false;
        assert_eq!(c.check_addresses(), Ok(()));
    }

    #[test]
    fn point_to_point_prefixes_have_no_network_or_broadcast() {
        // RFC 3021: both addresses of a /31 are hosts'.
        assert_eq!(check("10.0.0.0/31", "10.0.0.1/31"), Ok(()));
        assert_eq!(check("10.0.0.1/31", "10.0.0.0/31"), Ok(()));
        // A /32 stack reached through a host side that has the /24.
        assert_eq!(check("10.200.0.2/32", "10.200.0.1/24"), Ok(()));
    }

    #[test]
    fn the_two_ends_need_distinct_unicast_addresses() {
        let c = cfg("10.200.0.1/24", "10.200.0.1/24");
        let e = c.check_addresses().unwrap_err();
        assert_eq!(e, AddressError::Same("10.200.0.1".parse().unwrap()));
        assert_eq!(
            e.subject(&c, "--address", "--host-address"),
            "--address 10.200.0.1/24 and --host-address 10.200.0.1/24"
        );
        for bad in [
            "0.0.0.0/24",
            "127.0.0.2/8",
            "224.0.0.1/24",
            "255.255.255.255/32",
            "240.0.0.1/24",
        ] {
            let e = check(bad, "10.200.0.1/24").unwrap_err();
            assert!(matches!(e, AddressError::NotUnicast(Side::Stack, _)), "{bad}: {e:?}");
        }
        let e = check("10.200.0.2/24", "127.0.0.1/8").unwrap_err();
        assert_eq!(
            e.to_string(),
            "127.0.0.1 is a loopback address, not one a host can have"
        );
    }

    #[test]
    fn the_host_must_have_a_route_to_the_stack_when_configured() {
        let e = check("10.9.0.2/24", "10.200.0.1/24").unwrap_err();
        assert_eq!(e.sides(), [Side::Stack, Side::Host]);
        assert_eq!(
            e.to_string(),
            "the stack's 10.9.0.2 is outside the host side's subnet 10.200.0.0/24, so the host would have no route to it"
        );
        // The other way round is fine: the stack reaches the host by its default route.
        assert_eq!(check("10.200.0.2/24", "10.200.1.1/16"), Ok(()));
        let mut c = cfg("10.9.0.2/24", "10.200.0.1/24");
        c.configure_host = false;
        assert_eq!(c.check_addresses(), Ok(()));
    }

    #[test]
    fn an_existing_subnet_conflicts_only_if_at_least_as_specific() {
        let c = |s: &str| s.parse::<Ipv4Cidr>().unwrap();
        assert!(shadows(c("10.200.0.1/24"), c("10.200.0.7/24")), "the same subnet");
        assert!(
            shadows(c("10.200.0.5/32"), c("10.200.0.1/24")),
            "a more specific one inside"
        );
        assert!(
            !shadows(c("10.0.0.1/8"), c("10.200.0.1/24")),
            "a wider one around: ours is more specific"
        );
        assert!(!shadows(c("10.201.0.1/24"), c("10.200.0.1/24")));
        assert!(!shadows(c("10.200.0.129/25"), c("10.200.0.1/25")));
    }

    #[test]
    fn a_host_subnet_over_an_existing_address_conflicts_unless_left_alone() {
        // lo's 127.0.0.1/8 is there in any namespace with lo up (where tests run).
        let mut c = cfg("127.0.0.2/8", "127.0.0.3/8");
        let conflict = c.host_subnet_conflict().unwrap().expect("lo's subnet");
        assert_eq!(conflict.ifname, "lo");
        assert_eq!(
            conflict.to_string(),
            "host subnet 127.0.0.0/8 overlaps 127.0.0.1/8 on lo"
        );
        c.name = "lo".into();
        assert_eq!(c.host_subnet_conflict().unwrap(), None, "our own interface's address");
        c.name = "tun0".into();
        c.configure_host = false;
        assert_eq!(c.host_subnet_conflict().unwrap(), None);
    }
}
