//! Devices: where the core's packets come from and go to.
//!
//! A [`Device`] moves whole IPv4 packets. [`tun::TunDevice`] is a Linux TUN
//! interface; [`memory::MemoryLink`] joins two endpoints in memory for tests.
//! Wrappers add behaviour to any device: [`pcap::PcapDevice`] records the
//! traffic, [`impair::ImpairedDevice`] loses, delays, reorders, duplicates,
//! corrupts and rate-limits it. [`vnet`] (a wire format, re-exported here)
//! reads and writes the virtio-net header of offloaded TUN packets, and
//! segments and checksums in software what the kernel would otherwise.
//! All `unsafe` code of the crate (a handful of ioctls and `poll(2)`) lives in
//! [`sys`].

pub mod impair;
pub mod memory;
pub mod pcap;
pub mod sys;
pub mod tun;

pub use crate::wire::vnet;

use crate::time::Instant;
use impair::ImpairCounts;
use std::io;
use std::os::fd::RawFd;
use vnet::VnetHeader;

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

    /// Whether the device takes offloaded packets as they are (issue 16):
    /// TCP super-packets larger than the MTU, cut into `gso_size` pieces
    /// on the way, and checksums left partial (`NEEDS_CSUM`). A TUN opened
    /// with the virtio-net header says yes. The core builds such packets
    /// only for a device that does; a device that does not is still handed
    /// them correctly by [`send_meta`](Self::send_meta)'s default, which
    /// does that work in software.
    fn offloads(&self) -> bool {
        false
    }

    /// As [`recv`](Self::recv), with the packet's offload metadata: whether
    /// it is a super-packet, and whether its checksum is partial
    /// (`NEEDS_CSUM`) or was verified (`DATA_VALID`). A device without
    /// offloads gives the empty header: a plain packet, checksums to verify.
    fn recv_meta(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<(usize, VnetHeader)> {
        self.recv(now, buf).map(|n| (n, VnetHeader::default()))
    }

    /// As [`send_parts`](Self::send_parts), with the packet's offload
    /// metadata. The default, for devices without offloads, does in
    /// software what the kernel does behind an offloading TUN: a
    /// super-packet leaves as its MSS-sized segments, and a partial
    /// checksum is completed ([`vnet::for_each_segment`]).
    fn send_meta(&mut self, now: Instant, meta: &VnetHeader, header: &[u8], payload: &[u8]) -> io::Result<()> {
        send_in_software(self, now, meta, header, payload)
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

/// What [`Device::send_meta`] does by default, for a device that sends
/// offloaded packets itself only sometimes: the work of the offloads in
/// software, each resulting packet through `device.send_parts`.
pub fn send_in_software<D: Device + ?Sized>(
    device: &mut D,
    now: Instant,
    meta: &VnetHeader,
    header: &[u8],
    payload: &[u8],
) -> io::Result<()> {
    if meta.is_plain() {
        return device.send_parts(now, header, payload);
    }
    let mut result = Ok(());
    vnet::for_each_segment(meta, header, payload, |h, p| {
        if let Err(e) = device.send_parts(now, h, p) {
            result = Err(e);
        }
    })?;
    result
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

    fn offloads(&self) -> bool {
        (**self).offloads()
    }

    fn recv_meta(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<(usize, VnetHeader)> {
        (**self).recv_meta(now, buf)
    }

    fn send_meta(&mut self, now: Instant, meta: &VnetHeader, header: &[u8], payload: &[u8]) -> io::Result<()> {
        (**self).send_meta(now, meta, header, payload)
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
