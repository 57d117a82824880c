//! The runtime: one thread drives the sans-IO core over a device, and
//! [`Stack`] handles let any thread use it.
//!
//! The stack thread sleeps in `ppoll(2)` until the device is readable, the
//! core's next deadline comes, or an API call wakes it; it never spins and
//! never ticks on a fixed sleep. Each turn it reads the device in a batch
//! until it would block, then (under the lock) feeds the packets to the
//! core, runs due timers, wakes API threads whose sockets changed, and takes
//! a batch of packets to send; then (with the lock released) writes them.
//! No lock is held across a syscall.

mod tun;

pub use tun::{AddressError, Side, SubnetConflict, TunConfig};

use crate::device::impair::ImpairCounts;
use crate::device::{Device, sys};
use crate::iface::Interface;
use crate::socket::SocketEvent;
use crate::stats::Stats;
use crate::time::{Duration, Instant};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Packets read per turn before timers and transmit get their turn.
const RX_BATCH: usize = 32;
/// Packets taken from the core per turn, written without the lock.
const TX_BATCH: usize = 32;

/// Wakes the stack thread from another thread or a signal handler. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Waker {
    tx: Arc<UnixStream>,
}

impl Waker {
    /// Makes the stack thread's next (or current) wait return at once.
    pub fn wake(&self) {
        // A full pipe already holds a pending wake-up: nothing is lost.
        let _ = (&*self.tx).write(&[1]);
    }

    /// A file descriptor whose writes wake the stack thread, for
    /// `signal_hook::low_level::pipe::register`.
    pub fn to_fd(&self) -> io::Result<OwnedFd> {
        Ok(self.tx.try_clone()?.into())
    }
}

/// The state behind the lock: the core and who waits on what.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) iface: Interface,
    waiters: HashMap<SocketEvent, Arc<Condvar>>,
    /// The stack thread is (about to be) asleep in ppoll: API calls that
    /// queue output must wake it.
    sleeping: bool,
    stopped: bool,
    /// The device's impairment counts, copied by the stack thread (which
    /// owns the device) whenever they change.
    impairment: Option<ImpairCounts>,
}

impl Core {
    /// The condition variable API threads wait on for socket `s`.
    pub(crate) fn waiter(&mut self, s: SocketEvent) -> Arc<Condvar> {
        self.waiters.entry(s).or_default().clone()
    }

    /// Forgets the waiters of a closed socket.
    pub(crate) fn forget(&mut self, s: SocketEvent) {
        self.waiters.remove(&s);
    }

    /// Whether the stack has shut down.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }
}

#[derive(Debug)]
struct Shared {
    core: Mutex<Core>,
    /// Notified whenever the stack thread took packets out of a transmit
    /// queue, so senders refused with a full queue can retry.
    tx_space: Condvar,
    waker: Waker,
    epoch: std::time::Instant,
    thread: Mutex<Option<JoinHandle<io::Result<()>>>>,
}

/// A running stack: a cheap, clonable handle shared by every socket and thread.
#[derive(Clone, Debug)]
pub struct Stack {
    shared: Arc<Shared>,
}

impl Stack {
    /// Starts a thread driving `iface` over `device`.
    pub fn start<D: Device + Send + 'static>(iface: Interface, device: D) -> io::Result<Stack> {
        let (tx, wake_rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let mtu = iface.config().mtu;
        let stack = Stack {
            shared: Arc::new(Shared {
                core: Mutex::new(Core {
                    iface,
                    waiters: HashMap::new(),
                    sleeping: false,
                    stopped: false,
                    impairment: None,
                }),
                tx_space: Condvar::new(),
                waker: Waker { tx: Arc::new(tx) },
                epoch: std::time::Instant::now(),
                thread: Mutex::new(None),
            }),
        };
        let shared = stack.shared.clone();
        let handle = std::thread::Builder::new()
            .name("tunstack".into())
            .spawn(move || stack_thread(&shared, device, wake_rx, mtu))?;
        *stack.shared.thread.lock().expect("thread slot") = Some(handle);
        Ok(stack)
    }

    /// The core's notion of now: time since the stack started.
    pub fn now(&self) -> Instant {
        self.shared.now()
    }

    /// A handle that interrupts the stack thread's wait.
    pub fn waker(&self) -> Waker {
        self.shared.waker.clone()
    }

    /// Locks the core.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock is a bug in the core; carry on
        // with the state as it is rather than poisoning every socket.
        self.shared.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the interface under the lock (for counters, routes, ...),
    /// then lets the stack thread send whatever `f` queued.
    pub fn with_interface<R>(&self, f: impl FnOnce(&mut Interface) -> R) -> R {
        let mut core = self.lock();
        let r = f(&mut core.iface);
        self.kick(core);
        r
    }

    /// A copy of the interface's counters.
    pub fn stats(&self) -> Stats {
        self.lock().iface.stats().clone()
    }

    /// What the device's impairment (`--loss`, `--delay`, ...) did so far,
    /// each way; `None` if the device is not impaired.
    pub fn impairment(&self) -> Option<ImpairCounts> {
        self.lock().impairment
    }

    /// Releases the lock, waking the stack thread if it sleeps: the caller
    /// may have queued packets for it to send.
    pub(crate) fn kick(&self, mut core: MutexGuard<'_, Core>) {
        let wake = std::mem::replace(&mut core.sleeping, false);
        drop(core);
        if wake {
            self.shared.waker.wake();
        }
    }

    /// Waits on `cv` (with the lock) until `deadline`; false if it passed.
    pub(crate) fn wait<'a>(
        &self,
        cv: &Condvar,
        core: MutexGuard<'a, Core>,
        deadline: Option<std::time::Instant>,
    ) -> (MutexGuard<'a, Core>, bool) {
        match deadline {
            None => (cv.wait(core).unwrap_or_else(|p| p.into_inner()), true),
            Some(d) => {
                let now = std::time::Instant::now();
                if now >= d {
                    return (core, false);
                }
                let (g, _) = cv.wait_timeout(core, d - now).unwrap_or_else(|p| p.into_inner());
                (g, std::time::Instant::now() < d)
            }
        }
    }

    /// The condition notified when transmit queues drain.
    pub(crate) fn tx_space(&self) -> &Condvar {
        &self.shared.tx_space
    }

    /// Stops the stack thread (after it sends what is queued) and waits for
    /// it. Sockets then fail with `NetworkDown`. Calling it again is harmless.
    pub fn shutdown(&self) -> io::Result<()> {
        {
            let mut core = self.lock();
            core.stopped = true;
            for cv in core.waiters.values() {
                cv.notify_all();
            }
        }
        self.shared.tx_space.notify_all();
        self.shared.waker.wake();
        let handle = self.shared.thread.lock().expect("thread slot").take();
        match handle {
            Some(h) => h.join().map_err(|_| io::Error::other("stack thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Shared {
    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

/// Fixed buffers for one batch of packets.
struct Batch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    count: usize,
}

impl Batch {
    fn new(n: usize, size: usize) -> Batch {
        Batch {
            bufs: (0..n).map(|_| vec![0u8; size]).collect(),
            lens: vec![0; n],
            count: 0,
        }
    }

    fn full(&self) -> bool {
        self.count == self.bufs.len()
    }

    fn packets(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs.iter().zip(&self.lens).take(self.count).map(|(b, l)| &b[..*l])
    }
}

fn stack_thread<D: Device>(shared: &Shared, mut device: D, mut wake_rx: UnixStream, mtu: usize) -> io::Result<()> {
    // TUN reads never exceed the MTU; 64 KiB covers any IPv4 packet.
    let mut rx = Batch::new(RX_BATCH, mtu.max(68));
    let mut tx = Batch::new(TX_BATCH, mtu.max(68));
    let mut events = Vec::new();
    let mut ready = Vec::with_capacity(sys::MAX_POLL_FDS);
    let (mut rx_errors, mut tx_errors) = (0u64, 0u64);
    let mut impairment;
    loop {
        let (wait, stop) = {
            let mut core = shared.core.lock().unwrap_or_else(|p| p.into_inner());
            let core = &mut *core;
            core.sleeping = false;
            core.iface
                .count_device_errors(std::mem::take(&mut rx_errors), std::mem::take(&mut tx_errors));
            // What the last reads did to the counts (the lock is held anyway).
            impairment = device.impairment();
            core.impairment = impairment;
            let now = shared.now();
            for p in rx.packets() {
                core.iface.handle_packet(now, p);
            }
            core.iface.handle_timeout(now);
            core.iface.take_events(&mut events);
            for e in events.drain(..) {
                if let Some(cv) = core.waiters.get(&e) {
                    cv.notify_all();
                }
            }
            tx.count = 0;
            while !tx.full() {
                match core.iface.poll_transmit(now, &mut tx.bufs[tx.count]) {
                    Some(len) => {
                        tx.lens[tx.count] = len;
                        tx.count += 1;
                    }
                    None => break,
                }
            }
            if tx.count > 0 {
                shared.tx_space.notify_all();
            }
            let busy = tx.full() || rx.full();
            let wait = if busy {
                Some(Duration::ZERO)
            } else {
                core.iface.poll_timeout().map(|d| d.saturating_duration_since(now))
            };
            core.sleeping = !busy;
            (wait, core.stopped)
        };
        let now = shared.now();
        for p in tx.packets() {
            if let Err(e) = device.send(now, p) {
                tx_errors += 1;
                log::debug!("device send failed: {e}");
            }
        }
        if let Err(e) = device.flush(now) {
            log::debug!("device flush failed: {e}");
        }
        // The writes changed the counts too: publish them before sleeping, so
        // a reader never sees the idle stack's counts lag behind.
        let now_impaired = device.impairment();
        if now_impaired != impairment {
            impairment = now_impaired;
            shared.core.lock().unwrap_or_else(|p| p.into_inner()).impairment = impairment;
        }
        if stop {
            return Ok(());
        }
        // The device may hold delayed packets (impairment) that are due sooner.
        let wait = match (wait, device.next_deadline()) {
            (w, Some(d)) => {
                let until = d.saturating_duration_since(now);
                Some(w.map_or(until, |w| w.min(until)))
            }
            (w, None) => w,
        };
        let mut fds = [wake_rx.as_raw_fd(), -1];
        let nfds = match device.readable_fd() {
            Some(fd) => {
                fds[1] = fd;
                2
            }
            None => 1,
        };
        sys::wait_readable(&fds[..nfds], wait, &mut ready)?;
        if ready.contains(&0) {
            let mut sink = [0u8; 64];
            while matches!(wake_rx.read(&mut sink), Ok(n) if n > 0) {}
        }
        rx.count = 0;
        let now = shared.now();
        while !rx.full() {
            match device.recv(now, &mut rx.bufs[rx.count]) {
                Ok(n) => {
                    rx.lens[rx.count] = n;
                    rx.count += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    rx_errors += 1;
                    log::warn!("device receive failed: {e}");
                    break;
                }
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
    fn shutdown_stops_the_thread_and_is_idempotent() {
        let (link, _peer) = MemoryLink::pair().unwrap();
        let stack = Stack::start(Interface::new(Config::new("10.0.0.2/24".parse().unwrap())), link).unwrap();
        assert!(stack.now() < Instant::from_secs(60));
        stack.shutdown().unwrap();
        stack.shutdown().unwrap();
    }

    #[test]
    fn stack_thread_answers_pings_over_the_link() {
        let (link, mut peer) = MemoryLink::pair().unwrap();
        let mut config = Config::new("10.200.0.2/24".parse().unwrap());
        config.seed = 3;
        let stack = Stack::start(Interface::new(config), link).unwrap();
        let ping = crate::testutil::ping_packet(crate::testutil::US, 1, b"over the link");
        peer.send(Instant::ZERO, &ping).unwrap();
        let mut buf = vec![0u8; 2000];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let n = loop {
            let mut ready = Vec::new();
            sys::wait_readable(
                &[peer.readable_fd().unwrap()],
                Some(std::time::Duration::from_secs(10)),
                &mut ready,
            )
            .unwrap();
            match peer.recv(Instant::ZERO, &mut buf) {
                Ok(n) => break n,
                Err(_) => assert!(std::time::Instant::now() < deadline, "no reply"),
            }
        };
        let reply = crate::wire::ipv4::Ipv4Packet::parse(&buf[..n]).unwrap();
        assert_eq!(reply.header.dst, crate::testutil::HOST);
        assert_eq!(stack.stats().icmp_tx_echo_replies, 1);
        stack.shutdown().unwrap();
    }
}
