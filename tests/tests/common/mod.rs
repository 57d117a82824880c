//! Shared by the interop tests: smoltcp's view of tunstack's in-memory link.

#![allow(dead_code)]

use smoltcp::iface::{Config as SmolConfig, Interface as SmolIface};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use tunstack::device::Device as _;
use tunstack::device::memory::MemoryLink;

/// Link MTU used by the interop tests.
pub const MTU: usize = 1500;

/// smoltcp's view of our in-memory link.
pub struct SmolLink(pub MemoryLink);

pub struct Rx(Vec<u8>);
pub struct Tx<'a>(&'a mut MemoryLink);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        // A memory link ignores the time; smoltcp hands none to a TxToken.
        self.0.send(tunstack::Instant::ZERO, &buf).unwrap();
        r
    }
}

impl phy::Device for SmolLink {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, t: SmolInstant) -> Option<(Rx, Tx<'_>)> {
        let mut buf = vec![0u8; 65536];
        let now = tunstack::Instant::from_micros(t.total_micros().max(0) as u64);
        let n = self.0.recv(now, &mut buf).ok()?;
        buf.truncate(n);
        Some((Rx(buf), Tx(&mut self.0)))
    }

    fn transmit(&mut self, _t: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.0))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// A smoltcp interface at `ip/24` on `link`.
pub fn smol_iface(link: &mut SmolLink, ip: [u8; 4]) -> SmolIface {
    let mut iface = SmolIface::new(SmolConfig::new(HardwareAddress::Ip), link, SmolInstant::ZERO);
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), 24))
            .unwrap()
    });
    iface
}
