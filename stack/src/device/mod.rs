//! Devices: where the core's packets come from and go to.
//!
//! A [`Device`] moves whole IPv4 packets. [`tun::TunDevice`] is a Linux TUN
//! interface; [`memory::MemoryLink`] joins two endpoints in memory for tests.
//! Wrappers add behaviour to any device: [`pcap::PcapDevice`] records the
//! traffic, [`impair::ImpairedDevice`] loses, delays, reorders, duplicates,
//! corrupts and rate-limits it. [`vnet`] reads and writes the virtio-net
//! header of offloaded TUN packets, and segments and checksums in software
//! what the kernel would otherwise.
//! All `unsafe` code of the crate (a handful of ioctls and `poll(2)`) lives in
//! [`sys`].

pub mod impair;
pub mod memory;
pub mod pcap;
pub mod sys;
pub mod tun;
pub mod vnet;

use crate::time::Instant;
use impair::ImpairCounts;
use std::io;
use std::os::fd::RawFd;

/// A link that carries raw IPv4 packets.
///
/// Devices keep the stack's clock: every call that may need the time is
/// handed the runtime's `now`, and deadlines are in the same [`Instant`]s,
/// so the core, the devices and the simulation all run on one clock that
/// only the runtime reads from the OS. (The pcap writer is the exception
/// that proves it: its file format records wall-clock time.)
pub trait Device {
    /// Reads one packet into `buf`; `Err(WouldBlock)` when none is waiting.
    /// A packet longer than `buf` is truncated.
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<usize>;

    /// Sends one packet. `Err(WouldBlock)` means the link is busy and the
    /// packet was not sent; the caller drops it, as a full NIC queue would.
    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()>;

    /// Sends one packet given as its IP header and the rest, as `send`
    /// does with the two joined. The runtime sends this way, handing over
    /// the buffer the transport built its segment in, so the payload is not
    /// copied again on its way out. A TUN writes both parts with one
    /// `writev(2)`; the default joins them.
    fn send_parts(&mut self, now: Instant, header: &[u8], payload: &[u8]) -> io::Result<()> {
        let mut packet = Vec::with_capacity(header.len() + payload.len());
        packet.extend_from_slice(header);
        packet.extend_from_slice(payload);
        self.send(now, &packet)
    }

    /// A file descriptor that becomes readable when a packet is waiting, for
    /// `poll(2)`; `None` for devices that are polled by other means.
    fn readable_fd(&self) -> Option<RawFd>;

    /// What an impairment wrapper in this device did so far; `None` if the
    /// device has none. The runtime copies it where `Stack::impairment` reads it.
    fn impairment(&self) -> Option<ImpairCounts> {
        None
    }

    /// When the device next needs [`flush`](Self::flush) or has a delayed
    /// packet for [`recv`](Self::recv) (impairment queues); `None`: never.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// Sends what is due and flushes buffered output (pcap); called every turn.
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        let _ = now;
        Ok(())
    }
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        (**self).recv(now, buf)
    }

    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        (**self).send(now, packet)
    }

    fn send_parts(&mut self, now: Instant, header: &[u8], payload: &[u8]) -> io::Result<()> {
        (**self).send_parts(now, header, payload)
    }

    fn readable_fd(&self) -> Option<RawFd> {
        (**self).readable_fd()
    }

    fn impairment(&self) -> Option<ImpairCounts> {
        (**self).impairment()
    }

    fn next_deadline(&self) -> Option<Instant> {
        (**self).next_deadline()
    }

    fn flush(&mut self, now: Instant) -> io::Result<()> {
        (**self).flush(now)
    }
}
