//! `tunstack ifconfig`: the stack's interface, in the layout of net-tools'
//! ifconfig: the flags line, the address line, and the counters with byte
//! counts scaled as net-tools scales them.

use crate::control::client::{Client, get};
use std::io;
use std::path::Path;

/// Interface flags by name, with their values from `<net/if.h>` (the
/// number ifconfig prints is their sum).
const FLAGS: [(&str, u32); 13] = [
    ("UP", 0x1),
    ("BROADCAST", 0x2),
    ("DEBUG", 0x4),
    ("LOOPBACK", 0x8),
    ("POINTOPOINT", 0x10),
    ("NOTRAILERS", 0x20),
    ("RUNNING", 0x40),
    ("NOARP", 0x80),
    ("PROMISC", 0x100),
    ("ALLMULTI", 0x200),
    ("MASTER", 0x400),
    ("SLAVE", 0x800),
    ("MULTICAST", 0x1000),
];

/// Prints the interface: flags, address, mask, broadcast, peer, MTU, counters and offloads.
pub fn run(control: &Path) -> io::Result<()> {
    let rows = Client::connect(control)?.table("IFCONFIG")?;
    for r in &rows {
        let flags = get(r, "flags");
        outln!(
            "{}: flags={}<{flags}>  mtu {}",
            get(r, "name"),
            flag_value(flags),
            get(r, "mtu")
        )?;
        let mut inet = format!("        inet {}  netmask {}", get(r, "addr"), get(r, "netmask"));
        for (key, word) in [("broadcast", "broadcast"), ("destination", "destination")] {
            match get(r, key) {
                "" | "-" => {}
                v => inet.push_str(&format!("  {word} {v}")),
            }
        }
        outln!("{inet}")?;
        outln!(
            "        RX packets {}  bytes {}",
            get(r, "rx_packets"),
            bytes(get(r, "rx_bytes"))
        )?;
        outln!(
            "        RX errors {}  dropped {}  overruns 0  frame 0",
            get(r, "rx_errors"),
            get(r, "rx_dropped")
        )?;
        outln!(
            "        TX packets {}  bytes {}",
            get(r, "tx_packets"),
            bytes(get(r, "tx_bytes"))
        )?;
        // net-tools' own spacing, one space before "overruns".
        outln!(
            "        TX errors {}  dropped {} overruns 0  carrier 0  collisions 0",
            get(r, "tx_errors"),
            get(r, "tx_dropped")
        )?;
        // Not net-tools' (ethtool -k shows a NIC's offloads): whether the
        // TUN carries super-packets. Daemons from before offloads say nothing.
        match get(r, "offloads") {
            "" => {}
            on_off => outln!("        offloads {on_off}")?,
        }
        outln!()?;
    }
    Ok(())
}

/// The number ifconfig prints before the flag names: their values summed.
fn flag_value(names: &str) -> u32 {
    names
        .split(',')
        .filter_map(|n| FLAGS.iter().find(|(f, _)| *f == n))
        .map(|(_, v)| v)
        .sum()
}

/// A byte count as net-tools prints it: `83862 (81.8 KiB)`. The unit is
/// the largest power of 1024 the count exceeds (strictly: 1024 bytes are
/// still `1024.0 B`), with one decimal, truncated rather than rounded.
fn bytes(count: &str) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let n: u64 = count.parse().unwrap_or(0);
    let mut unit = 0;
    while unit + 1 < UNITS.len() && u128::from(n) > 1u128 << (10 * (unit + 1)) {
        unit += 1;
    }
    let tenths = (u128::from(n) * 10) >> (10 * unit);
    format!("{n} ({}.{} {})", tenths / 10, tenths % 10, UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_scale_in_binary_units_as_net_tools_does() {
        // Figures from a real `ifconfig` (net-tools 2.10).
        assert_eq!(bytes("34875866"), "34875866 (33.2 MiB)");
        assert_eq!(bytes("83862"), "83862 (81.8 KiB)", "truncated, not rounded");
        assert_eq!(bytes("3193"), "3193 (3.1 KiB)");
        assert_eq!(bytes("0"), "0 (0.0 B)");
        assert_eq!(bytes("1024"), "1024 (1024.0 B)", "a unit starts above its size");
        assert_eq!(bytes("1025"), "1025 (1.0 KiB)");
        assert_eq!(bytes("1048577"), "1048577 (1.0 MiB)");
        assert_eq!(bytes("3000000000"), "3000000000 (2.7 GiB)");
        assert_eq!(bytes(&u64::MAX.to_string()), "18446744073709551615 (15.9 EiB)");
    }

    #[test]
    fn the_flags_number_is_the_sum_of_the_named_flags() {
        // A kernel TUN: flags=4305<UP,POINTOPOINT,RUNNING,NOARP,MULTICAST>.
        assert_eq!(flag_value("UP,POINTOPOINT,RUNNING,NOARP,MULTICAST"), 4305);
        assert_eq!(flag_value("UP,BROADCAST,RUNNING,MULTICAST"), 4163);
        assert_eq!(flag_value("UP,BROADCAST,POINTOPOINT,RUNNING,NOARP"), 211);
        assert_eq!(flag_value(""), 0);
    }
}
