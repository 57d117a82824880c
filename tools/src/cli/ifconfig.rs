//! `tunstack ifconfig`: the stack's interface, in ifconfig's layout.

use crate::control::client::{Client, get};
use std::io;
use std::path::Path;

/// Prints the interface: address, mask, broadcast, MTU and counters.
pub fn run(control: &Path) -> io::Result<()> {
    let rows = Client::connect(control)?.table("IFCONFIG")?;
    for r in &rows {
        println!(
            "{}: flags=<UP,POINTOPOINT,RUNNING,NOARP>  mtu {}",
            get(r, "name"),
            get(r, "mtu")
        );
        println!(
            "        inet {}  netmask {}  broadcast {}",
            get(r, "addr"),
            get(r, "netmask"),
            get(r, "broadcast")
        );
        println!(
            "        RX packets {}  bytes {}",
            get(r, "rx_packets"),
            human(get(r, "rx_bytes"))
        );
        println!(
            "        RX errors {}  dropped {}",
            get(r, "rx_errors"),
            get(r, "rx_dropped")
        );
        println!(
            "        TX packets {}  bytes {}",
            get(r, "tx_packets"),
            human(get(r, "tx_bytes"))
        );
        println!(
            "        TX errors {}  dropped {}",
            get(r, "tx_errors"),
            get(r, "tx_dropped")
        );
    }
    Ok(())
}

/// Bytes in the style of ifconfig: "12345 (12.0 KB)".
fn human(bytes: &str) -> String {
    let b: f64 = bytes.parse().unwrap_or(0.0);
    let (v, unit) = if b >= 1e9 {
        (b / 1e9, "GB")
    } else if b >= 1e6 {
        (b / 1e6, "MB")
    } else if b >= 1e3 {
        (b / 1e3, "KB")
    } else {
        (b, "B")
    };
    format!("{bytes} ({v:.1} {unit})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_like_ifconfig() {
        assert_eq!(human("0"), "0 (0.0 B)");
        assert_eq!(human("12345"), "12345 (12.3 KB)");
        assert_eq!(human("2500000"), "2500000 (2.5 MB)");
        assert_eq!(human("3000000000"), "3000000000 (3.0 GB)");
    }
}
