//! `tunstack route`: the stack's route table, in `route -n`'s layout.

use crate::control::client::{Client, get};
use std::io;
use std::path::Path;

/// Prints the route table.
pub fn run(control: &Path) -> io::Result<()> {
    let rows = Client::connect(control)?.table("ROUTES")?;
    outln!("tunstack IP routing table")?;
    outln!(
        "{:<16}{:<16}{:<16}{:<6}{:<7}{:<4}{:>5} Iface",
        "Destination",
        "Gateway",
        "Genmask",
        "Flags",
        "Metric",
        "Ref",
        "Use"
    )?;
    for r in &rows {
        outln!(
            "{:<16}{:<16}{:<16}{:<6}{:<7}{:<4}{:>5} {}",
            get(r, "dest"),
            get(r, "gateway"),
            get(r, "genmask"),
            get(r, "flags"),
            0,
            0,
            0,
            get(r, "iface")
        )?;
    }
    Ok(())
}
