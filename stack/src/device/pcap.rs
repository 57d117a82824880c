//! A device wrapper that records every packet in and out as a pcap file
//! (LINKTYPE_RAW: bare IPv4 packets, microsecond timestamps), readable by
//! `tcpdump -r` and Wireshark.

#![forbid(unsafe_code)]

use super::Device;
use super::impair::ImpairCounts;
use crate::time::Instant;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::RawFd;
use std::path::Path;
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

/// LINKTYPE_RAW: packets start with the IP header.
const LINKTYPE_RAW: u32 = 101;
/// Largest packet recorded whole.
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
}
