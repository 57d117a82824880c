//! A Linux TUN interface (layer 3: raw IPv4 packets, no link header),
//! with or without offloads (issue 16).
//!
//! With offloads, the TUN is opened with `IFF_VNET_HDR`: every packet
//! each way starts with a 10-byte virtio-net header ([`vnet`]), and
//! `TUNSETOFFLOAD` tells the kernel we take partial checksums and TCP
//! super-packets (`TUN_F_CSUM | TUN_F_TSO4`). The host then hands us its
//! TCP data in up to 64 KiB pieces, takes ours the same way, and does the
//! cutting into MSS-sized segments and the checksums itself (or skips
//! them: a packet that stays on the host is never cut or summed).

#![forbid(unsafe_code)]

use super::vnet::{self, HEADER_LEN, VnetHeader};
use super::{Device, sys};
use crate::ip::Ipv4Cidr;
use crate::time::Instant;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::str::FromStr;

/// Whether to open a TUN with offloads (the virtio-net header, TSO and checksum offload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Offload {
    /// With offloads if the kernel takes them, else without (and one log line says why).
    #[default]
    Auto,
    /// With offloads, or not at all: creating the TUN fails if the kernel refuses them.
    On,
    /// Without: plain packets of at most the MTU, checksums done in software.
    Off,
}

impl FromStr for Offload {
    type Err = String;

    fn from_str(s: &str) -> Result<Offload, String> {
        match s {
            "auto" => Ok(Offload::Auto),
            "on" => Ok(Offload::On),
            "off" => Ok(Offload::Off),
            _ => Err(format!("offload mode {s:?}: expected auto, on or off")),
        }
    }
}

impl fmt::Display for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Offload::Auto => "auto",
            Offload::On => "on",
            Offload::Off => "off",
        })
    }
}

/// The offloads asked of the kernel: partial checksums and IPv4 TCP
/// super-packets, both ways. (USO would be `TUN_F_USO4`, from Linux 6.2;
/// the stack does not build UDP super-packets, so it is not asked for.)
const OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4;

/// A TUN device opened through `/dev/net/tun`, without packet info headers.
pub struct TunDevice {
    fd: OwnedFd,
    name: String,
    /// Whether every packet carries a virtio-net header, offloads enabled.
    offloads: bool,
}

impl fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunDevice")
            .field("name", &self.name)
            .field("offloads", &self.offloads)
            .finish()
    }
}

impl TunDevice {
    /// Creates (or attaches to) the TUN interface `name`, non-blocking,
    /// with offloads as `offload` says. Needs CAP_NET_ADMIN.
    pub fn create(name: &str, offload: Offload) -> io::Result<TunDevice> {
        let open = |offloads: bool| {
            sys::open_tun(name, offloads).map(|(fd, real)| TunDevice {
                fd,
                name: real,
                offloads,
            })
        };
        if offload == Offload::Off {
            return open(false).map_err(|e| open_error(name, e));
        }
        // A kernel without IFF_VNET_HDR refuses the flag with EINVAL; other
        // errors (EBUSY, EPERM) would refuse a plain open just the same.
        let refusal = match open(true) {
            Ok(dev) => match enable_offloads(dev.fd.as_raw_fd()) {
                Ok(()) => {
                    log::info!(
                        "offloads on {}: TSO4 and checksum offload (virtio-net header)",
                        dev.name
                    );
                    return Ok(dev);
                }
                // Dropping it closes the fd: a new TUN goes with it, an existing one is free again.
                Err(e) => e,
            },
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => e,
            Err(e) => return Err(open_error(name, e)),
        };
        // EINVAL may not be about the offloads at all (a bad name, an
        // interface that is no TUN): a plain open says which.
        let dev = open(false).map_err(|e| open_error(name, e))?;
        if offload == Offload::On {
            return Err(refused(name, &refusal));
        }
        // At info, not warn: nothing is wrong that the user could mend (the
        // link works as with --offload off), so a default start stays one
        // line; `tunstack ifconfig` shows offloads off, RUST_LOG=info says why.
        log::info!("offloads off on {}: the kernel refuses them ({refusal})", dev.name);
        Ok(dev)
    }

    /// The interface's name as the kernel knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What is in effect: [`Offload::On`] or [`Offload::Off`] (never `Auto`).
    pub fn offload(&self) -> Offload {
        if self.offloads { Offload::On } else { Offload::Off }
    }

    /// Sets the interface MTU on the host side.
    pub fn set_mtu(&self, mtu: usize) -> io::Result<()> {
        sys::set_mtu(self.name(), mtu)
    }

    /// Gives the host side of the link an address, netmask and broadcast address.
    pub fn set_host_address(&self, host: Ipv4Cidr) -> io::Result<()> {
        sys::set_ipv4(self.name(), host)
    }

    /// Brings the interface up.
    pub fn set_up(&self) -> io::Result<()> {
        sys::set_up(self.name())
    }

    /// Writes `parts` as one packet, after an all-zero virtio-net header
    /// (a plain packet, checksums complete) when the TUN wants one.
    fn write_plain(&self, parts: &[&[u8]]) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        match (self.offloads, parts) {
            (false, _) => sys::writev(fd, parts),
            (true, [one]) => sys::writev(fd, &[&[0; HEADER_LEN], one]),
            (true, [header, payload]) => sys::writev(fd, &[&[0; HEADER_LEN], header, payload]),
            (true, _) => unreachable!("a packet is written in one or two parts"),
        }
    }
}

/// Gives the TUN `fd` 10-byte virtio-net headers (the default, asked for
/// so a changed default cannot shift every packet) and enables the offloads.
fn enable_offloads(fd: RawFd) -> io::Result<()> {
    let size = sys::set_vnet_header_size(fd, HEADER_LEN)?;
    if size != HEADER_LEN {
        return Err(io::Error::other(format!(
            "virtio-net header of {size} bytes, not {HEADER_LEN}"
        )));
    }
    sys::set_tun_offload(fd, OFFLOADS)
}

/// The error of a TUN that could not be opened, naming it.
fn open_error(name: &str, e: io::Error) -> io::Error {
    // EBUSY: the interface exists and something holds it open.
    let hint = if e.raw_os_error() == Some(libc::EBUSY) {
        " (another tunstackd on it?)"
    } else {
        ""
    };
    io::Error::new(e.kind(), format!("cannot create TUN interface {name:?}: {e}{hint}"))
}

/// The error of [`Offload::On`] when the kernel refuses the offloads.
fn refused(name: &str, e: &io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "TUN interface {name:?}: the kernel refuses offloads (virtio-net header, TSO4, checksum offload): {e}; \
             --offload auto or off runs without them"
        ),
    )
}

impl Device for TunDevice {
    /// A packet; with offloads, one whose checksum was left partial
    /// (`NEEDS_CSUM`) is completed here, but a TCP super-packet stays one
    /// (callers that cannot take those use [`recv_meta`](Device::recv_meta)).
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        let (n, meta) = self.recv_meta(now, buf)?;
        vnet::complete_checksum(&mut buf[..n], &meta)?;
        Ok(n)
    }

    fn send(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        self.write_plain(&[packet])
    }

    fn send_parts(&mut self, _now: Instant, header: &[u8], payload: &[u8]) -> io::Result<()> {
        self.write_plain(&[header, payload])
    }

    fn offloads(&self) -> bool {
        self.offloads
    }

    /// A packet and its header. With offloads, a packet longer than `buf`
    /// (a super-packet needs 64 KiB whatever the MTU) or with a header the
    /// kernel should never send is an `InvalidData` error, and dropped;
    /// without, the header is empty and a longer packet cut.
    fn recv_meta(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<(usize, VnetHeader)> {
        let fd = self.fd.as_raw_fd();
        if !self.offloads {
            let n = sys::readv(fd, &mut [buf])?;
            return Ok((n.min(buf.len()), VnetHeader::default()));
        }
        let mut raw = [0u8; HEADER_LEN];
        // A byte past `buf`: the TUN cuts a longer packet to the buffers.
        // Current kernels return the whole length anyway (`tun_put_user`),
        // older ones what they copied: either way a read past `buf` shows the cut.
        let mut spare = [0u8; 1];
        let room = buf.len();
        let n = sys::readv(fd, &mut [&mut raw, buf, &mut spare])?;
        let len = n.checked_sub(HEADER_LEN).ok_or(vnet::VnetError::Truncated)?;
        if len > room {
            // A super-packet in a buffer sized for the MTU: a caller's bug, not the network's.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a packet from the TUN does not fit a {room}-byte buffer"),
            ));
        }
        let meta = VnetHeader::decode(&raw);
        meta.validate(len)?;
        Ok((len, meta))
    }

    fn send_meta(&mut self, now: Instant, meta: &VnetHeader, header: &[u8], payload: &[u8]) -> io::Result<()> {
        if self.offloads {
            let mut raw = [0u8; HEADER_LEN];
            meta.emit(&mut raw);
            return sys::writev(self.fd.as_raw_fd(), &[&raw, header, payload]);
        }
        // Without offloads the kernel takes plain packets only: do its work here.
        super::send_in_software(self, now, meta, header, payload)
    }

    fn readable_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_modes_parse_and_print_as_the_flag_spells_them() {
        for (text, mode) in [("auto", Offload::Auto), ("on", Offload::On), ("off", Offload::Off)] {
            assert_eq!(text.parse::<Offload>(), Ok(mode));
            assert_eq!(mode.to_string(), text);
        }
        assert_eq!(Offload::default(), Offload::Auto);
        for bad in ["", "yes", "ON", "auto "] {
            let e = bad.parse::<Offload>().unwrap_err();
            assert!(e.ends_with("expected auto, on or off"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_refusal_under_offload_on_names_the_interface_the_offloads_and_the_cause() {
        let e = refused("tun0", &io::Error::from_raw_os_error(libc::EINVAL));
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "TUN interface \"tun0\": the kernel refuses offloads (virtio-net header, TSO4, checksum offload): Invalid argument"
            ),
            "{text}"
        );
        assert!(text.ends_with("--offload auto or off runs without them"), "{text}");
    }

    #[test]
    fn a_busy_interface_hints_at_another_daemon() {
        let e = open_error("tun0", io::Error::from_raw_os_error(libc::EBUSY));
        assert!(
            e.to_string().starts_with("cannot create TUN interface \"tun0\": "),
            "{e}"
        );
        assert!(e.to_string().ends_with(" (another tunstackd on it?)"), "{e}");
        let e = open_error("tun0", io::Error::from_raw_os_error(libc::EPERM));
        assert!(!e.to_string().contains("another tunstackd"), "{e}");
    }
}
