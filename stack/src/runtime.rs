//! Drives the sans-IO core over a device on the OS clock.
//!
//! The loop sleeps in `ppoll(2)` until the device is readable, the core's
//! next deadline arrives, or a [`Waker`] is poked (by a signal handler or,
//! later, an API call). It never spins and never ticks on a fixed sleep.
//! When woken it reads the device in a batch until it would block, runs
//! due timers, then flushes everything the core wants to send.

use crate::device::{Device, sys};
use crate::iface::Interface;
use crate::time::{Duration, Instant};
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// Packets read per wake-up before timers and transmit get their turn.
const RX_BATCH: usize = 256;

/// Wakes a [`Driver`] from another thread or a signal handler. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Waker {
    tx: Arc<UnixStream>,
}

impl Waker {
    /// Makes the driver's next (or current) wait return at once.
    pub fn wake(&self) {
        // A full pipe already holds a pending wake-up: nothing is lost.
        let _ = (&*self.tx).write(&[1]);
    }

    /// A file descriptor whose write end wakes the driver, for
    /// `signal_hook::low_level::pipe::register`.
    pub fn to_fd(&self) -> io::Result<OwnedFd> {
        Ok(self.tx.try_clone()?.into())
    }
}

/// Runs an [`Interface`] over a [`Device`].
#[derive(Debug)]
pub struct Driver<D: Device> {
    iface: Interface,
    device: D,
    epoch: std::time::Instant,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    wake_rx: UnixStream,
    waker: Waker,
    ready: Vec<usize>,
}

impl<D: Device> Driver<D> {
    /// A driver whose clock starts now.
    pub fn new(iface: Interface, device: D) -> io::Result<Driver<D>> {
        let (tx, wake_rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let mtu = iface.config().mtu;
        Ok(Driver {
            iface,
            device,
            epoch: std::time::Instant::now(),
            rx_buf: vec![0; 65536],
            tx_buf: vec![0; mtu.max(68)],
            wake_rx,
            waker: Waker { tx: Arc::new(tx) },
            ready: Vec::with_capacity(sys::MAX_POLL_FDS),
        })
    }

    /// A handle that interrupts the driver's wait.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// The core's notion of now: time since the driver started.
    pub fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// The interface being driven.
    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// The interface being driven, mutably.
    pub fn interface_mut(&mut self) -> &mut Interface {
        &mut self.iface
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// Writes everything the core has queued to the device.
    fn flush(&mut self, now: Instant) {
        while let Some(len) = self.iface.poll_transmit(now, &mut self.tx_buf) {
            if let Err(e) = self.device.send(&self.tx_buf[..len]) {
                self.iface.stats.link_tx_errors += 1;
                log::debug!("device send failed: {e}");
            }
        }
    }

    /// Reads up to a batch of packets into the core.
    fn receive(&mut self) {
        for _ in 0..RX_BATCH {
            match self.device.recv(&mut self.rx_buf) {
                Ok(n) => {
                    let now = self.now();
                    self.iface.handle_packet(now, &self.rx_buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.iface.stats.link_rx_errors += 1;
                    log::warn!("device receive failed: {e}");
                    break;
                }
            }
        }
    }

    /// Empties the wake pipe; true if anything was in it.
    fn drain_wakes(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut woke = false;
        while let Ok(n) = self.wake_rx.read(&mut buf) {
            if n == 0 {
                break;
            }
            woke = true;
        }
        woke
    }

    /// One turn: wait (at most `max_wait`), take input, run timers, flush.
    /// Returns whether a [`Waker`] fired.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<bool> {
        let now = self.now();
        self.flush(now);
        let until_deadline = self.iface.poll_timeout().map(|d| d.saturating_duration_since(now));
        let wait = match (until_deadline, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut fds = [self.wake_rx.as_raw_fd(), -1];
        let nfds = match self.device.readable_fd() {
            Some(fd) => {
                fds[1] = fd;
                2
            }
            None => 1,
        };
        sys::wait_readable(&fds[..nfds], wait, &mut self.ready)?;
        let woke = self.drain_wakes();
        self.receive();
        let now = self.now();
        self.iface.handle_timeout(now);
        self.flush(now);
        Ok(woke)
    }

    /// Runs until `on_wake` breaks. `on_wake` is called after every wake-up
    /// by a [`Waker`], with the interface, to act on whatever the waker meant.
    pub fn run(&mut self, mut on_wake: impl FnMut(&mut Interface) -> ControlFlow<()>) -> io::Result<()> {
        loop {
            if self.turn(None)? && on_wake(&mut self.iface).is_break() {
                let now = self.now();
                self.flush(now);
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::memory::MemoryLink;
    use crate::iface::Config;

    #[test]
    fn waker_interrupts_an_endless_wait() {
        let (link, _peer) = MemoryLink::pair();
        let iface = Interface::new(Config::new("10.0.0.2/24".parse().unwrap()));
        let mut driver = Driver::new(iface, link).unwrap();
        let waker = driver.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            waker.wake();
        });
        let mut wakes = 0;
        driver
            .run(|_| {
                wakes += 1;
                ControlFlow::Break(())
            })
            .unwrap();
        t.join().unwrap();
        assert_eq!(wakes, 1);
    }
}
