//! The command-line flags the benchmark's TUN programs share
//! (`examples/smoltcp_tun.rs`, `examples/tun_ceiling.rs`): which interface,
//! the two ends' addresses and the MTU.

use std::fmt::Display;
use tunstack::Ipv4Cidr;

/// The link a TUN program creates.
#[derive(Debug)]
pub struct TunFlags {
    /// `--interface`: the TUN interface's name.
    pub interface: String,
    /// `--address`: the program's own address and subnet.
    pub address: Ipv4Cidr,
    /// `--host-address`: the host side's address and subnet.
    pub host_address: Ipv4Cidr,
    /// `--mtu`: 68 to 65535.
    pub mtu: usize,
}

impl Default for TunFlags {
    fn default() -> TunFlags {
        TunFlags {
            interface: "tun0".into(),
            address: "10.200.0.2/24".parse().expect("valid default"),
            host_address: "10.200.0.1/24".parse().expect("valid default"),
            mtu: 1500,
        }
    }
}

/// The message for a flag whose value did not parse.
pub fn bad_value(flag: &str, value: &str, e: impl Display) -> String {
    format!("{flag} {value}: {e}")
}

/// Reads `--flag value` pairs: the link's flags into `tun`, every other one
/// through `other(flag, value)`, which says what is wrong with it (an
/// unknown flag included).
pub fn parse(
    args: impl Iterator<Item = String>,
    tun: &mut TunFlags,
    mut other: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), String> {
    let mut it = args;
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn Display| bad_value(&flag, &value, e);
        match flag.as_str() {
            "--interface" => tun.interface = value.clone(),
            "--address" => tun.address = value.parse().map_err(|e| bad(&e))?,
            "--host-address" => tun.host_address = value.parse().map_err(|e| bad(&e))?,
            "--mtu" => tun.mtu = value.parse().map_err(|e| bad(&e))?,
            _ => other(&flag, &value)?,
        }
    }
    if !(68..=65535).contains(&tun.mtu) {
        return Err("--mtu wants 68..=65535".into());
    }
    Ok(())
}
