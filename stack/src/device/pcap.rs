//! A device wrapper that records every packet in and out as a pcap file
//! (LINKTYPE_RAW: bare IPv4 packets, microsecond timestamps), readable by
//! `tcpdump -r` and Wireshark.
//!
//! With offloads on (issue 16) the capture shows the packets as they
//! crossed the TUN: a TCP super-packet is one record of up to 64 KiB (the
//! IPv4 total length allows 65535 bytes, which is the snap length, so
//! nothing is cut), not the MSS-sized segments the kernel makes of it.
//! A checksum left partial for the kernel (`NEEDS_CSUM`) is completed in
//! the recorded copy, so `tcpdump -vv` finds no bad checksum. The byte
//! counts therefore add up: the TCP payload recorded is the bytes
//! transferred, each once (retransmissions apart). The record is of what
//! was handed to the device inside, metadata and all: the core makes
//! super-packets only for a device that [offloads](Device::offloads).

#![forbid(unsafe_code)]

use super::Device;
use super::impair::ImpairCounts;
use super::vnet::{self, VnetHeader};
use crate::time::Instant;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::RawFd;
use std::path::Path;
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

/// LINKTYPE_RAW: packets start with the IP header.
const LINKTYPE_RAW: u32 = 101;
/// Largest packet recorded whole: the largest IPv4 packet, a super-packet
/// included. tcpdump takes records up to the file's snap length.
const SNAPLEN: u32 = 65535;

/// Writes the pcap format (the classic one, little-endian).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic: microsecond timestamps
        h.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out })
    }

    /// Records one packet seen at `when` (time since the Unix epoch).
    pub fn record(&mut self, when: StdDuration, packet: &[&[u8]]) -> io::Result<()> {
        let len: usize = packet.iter().map(|p| p.len()).sum();
        let caplen = len.min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(when.as_secs() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&when.subsec_micros().to_le_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(len as u32).to_le_bytes());
        self.out.write_all(&h)?;
        // The packet may come in parts (header, payload): the record joins them.
        let mut left = caplen;
        for part in packet {
            let n = part.len().min(left);
            self.out.write_all(&part[..n])?;
            left -= n;
        }
        Ok(())
    }

    /// Flushes buffered records.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A device whose traffic is also written to a pcap file.
#[derive(Debug)]
pub struct PcapDevice<D> {
    inner: D,
    pcap: PcapWriter<BufWriter<File>>,
    failed: bool,
    /// A `NEEDS_CSUM` packet's copy whose checksum is completed for the
    /// record; reused, so recording allocates nothing once it has grown.
    scratch: Vec<u8>,
}

impl<D: Device> PcapDevice<D> {
    /// Wraps `inner`, creating (or truncating) the regular file `path`.
    /// It is opened without following a link, and anything but a regular
    /// file is refused before it is touched: a FIFO at once (no waiting for
    /// a reader), a device, a link to one of root's files.
    pub fn create(inner: D, path: &Path) -> io::Result<PcapDevice<D>> {
        let file = create_regular(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))?;
        Ok(PcapDevice {
            inner,
            pcap: PcapWriter::new(BufWriter::with_capacity(256 * 1024, file))?,
            failed: false,
            scratch: Vec::new(),
        })
    }

    fn record(&mut self, packet: &[&[u8]]) {
        if self.failed {
            return;
        }
        // pcap files record wall-clock time, the one clock the stack does not own.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        if let Err(e) = self.pcap.record(now, packet) {
            // A full disk must not take the stack down: stop recording, say so once.
            log::error!("pcap: writing failed, capture stops: {e}");
            self.failed = true;
        }
    }

    /// Records a packet given with its offload metadata, its checksum
    /// completed if it was left partial.
    fn record_meta(&mut self, meta: &VnetHeader, packet: &[&[u8]]) {
        if self.failed || meta.flags & vnet::F_NEEDS_CSUM == 0 {
            return self.record(packet);
        }
        let mut copy = std::mem::take(&mut self.scratch);
        copy.clear();
        for part in packet {
            copy.extend_from_slice(part);
        }
        // A header the device will refuse anyway is recorded as it came.
        if let Err(e) = vnet::complete_checksum(&mut copy, meta) {
            log::debug!("pcap: recording a packet as it is: {e}");
        }
        self.record(&[&copy]);
        self.scratch = copy;
    }
}

impl<D: Device> Device for PcapDevice<D> {
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.recv(now, buf)?;
        self.record(&[&buf[..n]]);
        Ok(n)
    }

    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        self.record(&[packet]);
        self.inner.send(now, packet)
    }

    fn send_parts(&mut self, now: Instant, header: &[u8], payload: &[u8]) -> io::Result<()> {
        self.record(&[header, payload]);
        self.inner.send_parts(now, header, payload)
    }

    fn offloads(&self) -> bool {
        self.inner.offloads()
    }

    fn recv_meta(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<(usize, VnetHeader)> {
        let (n, meta) = self.inner.recv_meta(now, buf)?;
        self.record_meta(&meta, &[&buf[..n]]);
        Ok((n, meta))
    }

    fn send_meta(&mut self, now: Instant, meta: &VnetHeader, header: &[u8], payload: &[u8]) -> io::Result<()> {
        self.record_meta(meta, &[header, payload]);
        self.inner.send_meta(now, meta, header, payload)
    }

    fn readable_fd(&self) -> Option<RawFd> {
        self.inner.readable_fd()
    }

    fn impairment(&self) -> Option<ImpairCounts> {
        self.inner.impairment()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.inner.next_deadline()
    }

    fn flush(&mut self, now: Instant) -> io::Result<()> {
        if !self.failed {
            if let Err(e) = self.pcap.flush() {
                log::error!("pcap: flushing failed, capture stops: {e}");
                self.failed = true;
            }
        }
        self.inner.flush(now)
    }
}

impl<D> Drop for PcapDevice<D> {
    fn drop(&mut self) {
        let _ = self.pcap.flush();
    }
}

/// Opens `path` for writing, made if missing (0666 less the umask), no
/// link followed, O_NONBLOCK so a FIFO is not waited on; refuses all but
/// a regular file, then truncates it.
fn create_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    file.set_len(0)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::memory::MemoryLink;
    use crate::wire::ipv4::Ipv4Packet;
    use crate::wire::tcp::{self, TcpSegment};
    use crate::wire::vnet::tests::{DST, SRC, super_packet};

    #[test]
    fn only_a_regular_file_is_written_and_no_link_is_followed() {
        let dir = std::env::temp_dir().join(format!("tunstack-pcap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let old = dir.join("old.pcap");
        std::fs::write(&old, b"left from before").unwrap();
        assert_eq!(create_regular(&old).unwrap().metadata().unwrap().len(), 0, "truncated");
        assert!(create_regular(&dir.join("new.pcap")).is_ok(), "made");
        let link = dir.join("link.pcap");
        std::os::unix::fs::symlink(&old, &link).unwrap();
        std::fs::write(&old, b"kept").unwrap();
        assert!(create_regular(&link).is_err(), "a link is not followed");
        assert_eq!(std::fs::read(&old).unwrap(), b"kept");
        let made = std::process::Command::new("mkfifo").arg(dir.join("fifo")).status();
        assert!(made.unwrap().success(), "mkfifo");
        // No reader: refused at once (ENXIO), not waited on.
        assert!(create_regular(&dir.join("fifo")).is_err());
        assert_eq!(
            create_regular(Path::new("/dev/null")).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn header_and_records_follow_the_pcap_format() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.record(StdDuration::new(1_700_000_000, 123_456_000), &[&[0x45, 0, 0, 20]])
            .unwrap();
        let b = w.into_inner();
        assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 101);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 1_700_000_000);
        assert_eq!(u32::from_le_bytes(b[28..32].try_into().unwrap()), 123_456);
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 4);
        assert_eq!(u32::from_le_bytes(b[36..40].try_into().unwrap()), 4);
        assert_eq!(&b[40..], &[0x45, 0, 0, 20]);
    }

    /// Payload of the largest super-packet: 65,535 bytes with its headers (20 + 32).
    const LARGEST: usize = 65_535 - 52;

    /// A file named for the test, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str) -> TempFile {
            // tcpdump's AppArmor profile lets it read only files named *.pcap.
            let name = format!("tunstack-{name}-{}.pcap", std::process::id());
            TempFile(std::env::temp_dir().join(name))
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Records, through an offloading memory link, the largest super-packet
    /// out and in with its checksum partial, then a plain packet out;
    /// checks the peer and the stack see the packets and metadata untouched.
    /// Returns the file, the super-packet and the plain packet.
    fn capture_offloaded(file: &TempFile) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (link, mut peer) = MemoryLink::pair_offloading().unwrap();
        let mut dev = PcapDevice::create(link, &file.0).unwrap();
        assert!(dev.offloads(), "forwarded from the device inside");
        let (packet, meta) = super_packet(LARGEST, tcp::flags::PSH, 1, 3);
        assert_eq!(packet.len(), 65_535);
        let mut buf = vec![0u8; 65_536 + 64];

        dev.send_meta(Instant::ZERO, &meta, &packet[..20], &packet[20..])
            .unwrap();
        assert_eq!(peer.recv_meta(Instant::ZERO, &mut buf).unwrap(), (packet.len(), meta));
        assert_eq!(buf[..packet.len()], packet[..], "sent as given, checksum partial");

        peer.send_meta(Instant::ZERO, &meta, &packet[..20], &packet[20..])
            .unwrap();
        assert_eq!(dev.recv_meta(Instant::ZERO, &mut buf).unwrap(), (packet.len(), meta));
        assert_eq!(buf[..packet.len()], packet[..], "received as it came, checksum partial");

        // A plain packet is recorded as it is (completing its whole checksum would make it 0xffff).
        let (mut plain, small) = super_packet(100, tcp::flags::FIN, 65_484, 4);
        vnet::complete_checksum(&mut plain, &small).unwrap();
        dev.send_parts(Instant::ZERO, &plain[..20], &plain[20..]).unwrap();
        assert_eq!(peer.recv(Instant::ZERO, &mut buf).unwrap(), plain.len());
        dev.flush(Instant::ZERO).unwrap();
        drop(dev);
        (std::fs::read(&file.0).unwrap(), packet, plain)
    }

    /// The records of a pcap file: (captured length, original length, bytes).
    fn records(file: &[u8]) -> Vec<(u32, u32, &[u8])> {
        let le32 = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
        let mut out = Vec::new();
        let mut at = 24;
        while at < file.len() {
            let (caplen, len) = (le32(at + 8), le32(at + 12));
            let start = at + 16;
            at = start + caplen as usize;
            out.push((caplen, len, &file[start..at]));
        }
        out
    }

    #[test]
    fn super_packets_are_recorded_whole_with_checksums_completed() {
        let file = TempFile::new("offload");
        let (bytes, packet, plain) = capture_offloaded(&file);
        assert_eq!(u32::from_le_bytes(bytes[16..20].try_into().unwrap()), 65_535, "snaplen");
        let recs = records(&bytes);
        assert_eq!(recs.len(), 3);
        for (i, (caplen, len, rec)) in recs[..2].iter().enumerate() {
            assert_eq!((*caplen, *len), (65_535, 65_535), "record {i} is whole");
            let ip = Ipv4Packet::parse(rec).unwrap();
            let seg = TcpSegment::parse(ip.payload(), SRC, DST).expect("a valid checksum");
            assert_eq!(seg.payload, &packet[52..], "record {i}");
            // Only the checksum differs from what crossed.
            assert_eq!(rec[..36], packet[..36]);
            assert_eq!(rec[38..], packet[38..]);
        }
        assert_eq!(recs[2], (152, 152, &plain[..]));
    }

    #[test]
    fn tcpdump_reads_the_offloaded_capture_without_bad_checksums() {
        let file = TempFile::new("tcpdump");
        capture_offloaded(&file);
        let run = std::process::Command::new("tcpdump")
            .args(["-r", &file.0.to_string_lossy(), "-vv", "-n"])
            .output();
        let out = match run {
            Err(e) if e.kind() == io::ErrorKind::NotFound && std::env::var_os("CI").is_none() => {
                eprintln!("skipped: tcpdump is not on PATH (CI would fail here)");
                return;
            }
            run => run.expect("tcpdump runs"),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("bad cksum") && !text.contains("incorrect"), "{text}");
        assert_eq!(text.matches("length 65535").count(), 2, "IPv4 length: {text}");
        assert_eq!(
            text.matches(&format!("length {LARGEST}")).count(),
            2,
            "TCP payload: {text}"
        );
        assert_eq!(text.matches("(correct)").count(), 3, "{text}");
        assert_eq!(text.matches("length 100").count(), 1, "{text}");
    }
}
