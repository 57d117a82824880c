//! Starting a stack on a TUN interface: create, configure the host side, run.

use super::Stack;
use crate::device::Device;
use crate::device::impair::{Direction, ImpairConfig, ImpairedDevice};
use crate::device::pcap::PcapDevice;
use crate::device::tun::TunDevice;
use crate::iface::{Config, Interface};
use crate::ip::Ipv4Cidr;
use std::io;

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
    /// Record every packet in and out to this pcap file.
    pub pcap: Option<std::path::PathBuf>,
    /// Impair the link (loss, delay, ...) in the given direction(s).
    pub impair: Option<(ImpairConfig, Direction)>,
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
            pcap: None,
            impair: None,
        }
    }
}

impl TunConfig {
    /// The examples' link: interface `name`, the stack at 10.201.0.2/24 and
    /// the host at 10.201.0.1/24, clear of a tunstackd on the defaults.
    pub fn example(name: &str) -> TunConfig {
        TunConfig {
            name: name.into(),
            address: Ipv4Cidr::new([10, 201, 0, 2].into(), 24).expect("valid"),
            host_address: Ipv4Cidr::new([10, 201, 0, 1].into(), 24).expect("valid"),
            ..TunConfig::default()
        }
    }
}

/// A seed from the OS's random source.
pub fn os_seed() -> io::Result<u64> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut b))?;
    Ok(u64::from_ne_bytes(b))
}

impl Stack {
    /// Creates and configures a TUN interface as `cfg` says and starts a
    /// stack on it. Returns the stack and the interface's real name. Needs
    /// CAP_NET_ADMIN. The interface disappears when the process exits.
    pub fn on_tun(cfg: &TunConfig) -> io::Result<(Stack, String)> {
        if cfg.host_address.addr() == cfg.address.addr() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "stack and host addresses must differ",
            ));
        }
        if !(68..=65535).contains(&cfg.mtu) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "MTU must be 68 to 65535"));
        }
        let device = TunDevice::create(&cfg.name)?;
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
        let name = device.name().to_owned();
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
        Ok((Stack::start(Interface::new(config), dev)?, name))
    }
}
