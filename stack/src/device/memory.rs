//! An in-memory point-to-point link: two endpoints, a queue each way.

#![forbid(unsafe_code)]

use super::Device;
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// One end of an in-memory link; what one end sends the other receives.
#[derive(Debug)]
pub struct MemoryLink {
    rx: Queue,
    tx: Queue,
}

impl MemoryLink {
    /// Two connected endpoints.
    pub fn pair() -> (MemoryLink, MemoryLink) {
        let a: Queue = Arc::default();
        let b: Queue = Arc::default();
        (
            MemoryLink {
                rx: a.clone(),
                tx: b.clone(),
            },
            MemoryLink { rx: b, tx: a },
        )
    }

    /// Packets waiting to be received at this end.
    pub fn pending(&self) -> usize {
        self.rx.lock().expect("link lock").len()
    }
}

impl Device for MemoryLink {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let pkt = self.rx.lock().expect("link lock").pop_front();
        match pkt {
            Some(p) => {
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        self.tx.lock().expect("link lock").push_back(packet.to_vec());
        Ok(())
    }

    fn readable_fd(&self) -> Option<RawFd> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_end_sends_the_other_receives_in_order() {
        let (mut a, mut b) = MemoryLink::pair();
        a.send(b"one").unwrap();
        a.send(b"two").unwrap();
        b.send(b"back").unwrap();
        assert_eq!(b.pending(), 2);
        let mut buf = [0u8; 16];
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
        assert_eq!(b.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"back");
    }

    #[test]
    fn long_packets_are_truncated_to_the_buffer() {
        let (mut a, mut b) = MemoryLink::pair();
        a.send(&[7u8; 100]).unwrap();
        let mut buf = [0u8; 10];
        assert_eq!(b.recv(&mut buf).unwrap(), 10);
    }
}
