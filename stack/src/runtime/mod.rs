//! The runtime: one thread drives the sans-IO core over a device, and
//! [`Stack`] handles let any thread use it.
//!
//! The stack thread sleeps in `ppoll(2)` on three descriptors: the device,
//! an eventfd other threads signal, and a timerfd set to the core's next
//! deadline. It never ticks on a fixed sleep; after a turn that read only
//! small packets, or bulk segments of a sender streaming faster than a
//! spin, it keeps reading for a short while before it sleeps
//! ([`RuntimeConfig::busy_poll`], 25 µs). Each turn it reads the device
//! until it would block (or a batch is full), feeds the whole batch to the
//! core under one acquisition of the lock, runs due timers, wakes the
//! threads whose sockets can now progress, runs the event loop handed to
//! it (`net::Poll::run_on_stack_thread`), and writes what the core has to
//! send.
//!
//! Output does not always wait for the stack thread. While it sleeps, an
//! application thread returning from `write` sends what it queued itself
//! (one batch; more is left to the stack thread, which it then wakes): the
//! device has a lock of its own, held across the writes, and the core's
//! lock is released before them. Otherwise an application call wakes the
//! stack thread only when the core's next deadline moved earlier than the
//! timerfd, and then only by moving the timerfd: a request answered from
//! the application thread costs no wake-up at all. The core's lock is never
//! held across a syscall; the device's is held across the TUN writes of one
//! batch (that is what keeps packets in order between threads), so the
//! stack thread may wait for an application thread's batch before it reads.
//!
//! The task run on the stack thread must not call `Stack::shutdown` or
//! `run_on_stack_thread` (they wait for the stack thread), nor block.
//!
//! A stack thread that dies (a panic, in the core or in that task) is
//! never silent: every socket call then fails with the cause (`death.rs`).

mod death;
mod readiness;
mod tun;

pub(crate) use readiness::{PollId, bits as readiness_bits};
pub use tun::{AddressError, Side, SubnetConflict, TunConfig, TunLink};

use crate::device::impair::ImpairCounts;
use crate::device::{Device, sys};
use crate::iface::Interface;
use crate::socket::SocketEvent;
use crate::stats::Stats;
use crate::time::Instant;
use crate::wire::vnet::VnetHeader;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Packets read per turn before timers and transmit get their turn.
const RX_BATCH: usize = 64;
/// Packets taken from the core per device-lock acquisition.
const TX_BATCH: usize = 64;

/// Wakes the stack thread from another thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Waker {
    fd: Arc<sys::EventFd>,
}

impl Waker {
    /// Makes the stack thread's next (or current) wait return at once.
    pub fn wake(&self) {
        self.fd.signal();
    }
}

/// A condition variable that knows whether anyone waits on it, so the
/// stack thread never pays a futex call to notify nobody.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    cv: Condvar,
    waiting: AtomicUsize,
}

impl Waiter {
    /// Wakes the threads waiting, if any.
    pub(crate) fn notify(&self) {
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.cv.notify_all();
        }
    }
}

/// The state behind the lock: the core and who waits on what.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) iface: Interface,
    waiters: HashMap<SocketEvent, Arc<Waiter>>,
    /// Events taken from the core, waiting to be delivered (kept to reuse its allocation).
    events: Vec<SocketEvent>,
    /// The stack thread is (about to be) asleep in ppoll.
    sleeping: bool,
    /// When the timerfd fires (core time), `None` if disarmed.
    armed: Option<Instant>,
    /// The device's impairment counts and own next deadline (delayed
    /// packets of the impairment layer), as last seen by whoever used it.
    device: DeviceSnapshot,
    stopped: bool,
    /// Why the stack thread died, if it did not stop on request (a panic's
    /// message, or the error that ended it): every call reports it.
    death: Option<Arc<str>>,
    /// A panic the stack thread raises at its next turn (`Stack::inject_panic`).
    #[cfg(any(test, debug_assertions))]
    fault: Option<String>,
    /// Device errors seen while the lock was not held, to count.
    rx_errors: u64,
    /// Which sockets each `net::Poll` watches, and what it has to look at.
    readiness: readiness::Readiness,
    /// The Poll whose events the stack thread serves itself (`Stack::run_on_stack_thread`).
    inline_poll: Option<PollId>,
}

impl Core {
    /// The waiter API threads use for socket `s`.
    pub(crate) fn waiter(&mut self, s: SocketEvent) -> Arc<Waiter> {
        self.waiters.entry(s).or_default().clone()
    }

    /// Whether a thread ever waited on socket `s` (it has a waiter).
    #[cfg(test)]
    pub(crate) fn has_waiter(&self, s: SocketEvent) -> bool {
        self.waiters.contains_key(&s)
    }

    /// Forgets the waiters of a closed socket.
    pub(crate) fn forget(&mut self, s: SocketEvent) {
        self.waiters.remove(&s);
        self.readiness.forget(s);
    }

    /// Whether the stack has shut down.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    /// Why the stack thread died, if it did (not after a `shutdown`).
    pub(crate) fn death(&self) -> Option<&str> {
        self.death.as_deref()
    }

    /// Whether a thread is blocked on socket `s` now.
    #[cfg(test)]
    pub(crate) fn blocked_on(&self, s: SocketEvent) -> bool {
        self.waiters
            .get(&s)
            .is_some_and(|w| w.waiting.load(Ordering::Acquire) > 0)
    }

    /// Wakes whoever waits on the sockets whose state changed.
    fn deliver_events(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        self.iface.take_events(&mut events);
        for e in events.drain(..) {
            self.deliver(e);
        }
        self.events = events;
    }

    /// Keeps a look at the device unless a newer one is kept already.
    fn publish(&mut self, snapshot: DeviceSnapshot) {
        if snapshot.uses > self.device.uses {
            self.device = snapshot;
        }
    }

    /// The earliest of the core's and the device's deadlines.
    fn next_deadline(&self) -> Option<Instant> {
        match (self.iface.poll_timeout(), self.device.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A task the stack thread runs between its turns (`Stack::run_on_stack_thread`).
struct InlineTask {
    task: Box<dyn FnMut() -> Option<std::time::Duration> + Send>,
    /// When the task asked to run again even without events.
    due: Option<std::time::Instant>,
}

/// Packets no longer than this (headers and a short request or answer)
/// make the stack thread busy-poll after its turn. A turn with a bulk
/// segment busy-polls only while the sender streams: the gap before it
/// was shorter than a spin, and no segment came out of order lately.
/// Spinning while a host sender recovered from loss cost it a third of
/// its rate (1% loss each way, 55 -> 35 MB/s).
const SMALL_PACKET: usize = 256;

/// How long after an out-of-order segment bulk turns do not busy-poll.
const CALM_AFTER_DISORDER: std::time::Duration = std::time::Duration::from_millis(200);

/// How the stack thread runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// How long the stack thread keeps reading the device after small
    /// packets came (no bulk segment among them), or after bulk segments
    /// that came closer together than this, before it sleeps (Linux's busy
    /// polling, in miniature): the
    /// packets of an exchange (a handshake's ACK and the request behind
    /// it, a FIN and the ACK after the reply) come microseconds apart, and
    /// on a virtual machine sleeping and being woken costs more than that.
    /// Zero: sleep at once. Default 25 µs.
    pub busy_poll: std::time::Duration,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            busy_poll: std::time::Duration::from_micros(25),
        }
    }
}

/// Rounds of the inline task per turn before the stack thread reads the device again.
const INLINE_ROUNDS: usize = 4;

/// The device and its transmit batch: whoever holds it may write.
struct Link {
    device: Box<dyn Device + Send>,
    tx: TxBatch,
    /// Counts the times the device was used, so an older look at it
    /// (taken before another thread's) never overwrites a newer one.
    uses: u64,
}

impl Link {
    /// What the device looks like now, for [`Core::publish`].
    fn snapshot(&mut self) -> DeviceSnapshot {
        self.uses += 1;
        DeviceSnapshot {
            uses: self.uses,
            impairment: self.device.impairment(),
            deadline: self.device.next_deadline(),
        }
    }
}

/// The device's counts and next deadline, as of its `uses`-th use.
#[derive(Clone, Copy, Debug, Default)]
struct DeviceSnapshot {
    uses: u64,
    impairment: Option<ImpairCounts>,
    deadline: Option<Instant>,
}

struct Shared {
    core: Mutex<Core>,
    link: Mutex<Link>,
    /// Notified when the transmit queue drained, for senders refused with a
    /// full queue (UDP); `tx_space.waiting` counts them.
    tx_space: Arc<Waiter>,
    wake: Arc<sys::EventFd>,
    /// Notified when the stack stops (`Stack::wait_stopped` waits on it with the core's lock).
    on_stop: Condvar,
    timer: sys::TimerFd,
    inline: Mutex<Option<InlineTask>>,
    epoch: std::time::Instant,
    thread: Mutex<Option<JoinHandle<io::Result<()>>>>,
    /// The stack thread's id: it alone decides what a poisoned lock means.
    stack_thread: std::sync::OnceLock<std::thread::ThreadId>,
    /// The stack thread has ended and is recording why (`finish`).
    finishing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

/// A running stack: a cheap, clonable handle shared by every socket and thread.
#[derive(Clone, Debug)]
pub struct Stack {
    shared: Arc<Shared>,
}

impl Stack {
    /// Starts a thread driving `iface` over `device`, with the default [`RuntimeConfig`].
    pub fn start<D: Device + Send + 'static>(iface: Interface, device: D) -> io::Result<Stack> {
        Stack::start_with(iface, device, RuntimeConfig::default())
    }

    /// Starts a thread driving `iface` over `device`, as `config` says.
    pub fn start_with<D: Device + Send + 'static>(
        iface: Interface,
        device: D,
        config: RuntimeConfig,
    ) -> io::Result<Stack> {
        let mut iface = iface;
        // TCP builds super-packets only for a device that takes them.
        iface.set_offloads(device.offloads());
        // A device with offloads hands over super-packets larger than the MTU.
        let rx_size = if device.offloads() {
            crate::ip::MAX_DATAGRAM
        } else {
            iface.config().mtu
        };
        let readable_fd = device.readable_fd();
        let stack = Stack {
            shared: Arc::new(Shared {
                core: Mutex::new(Core {
                    iface,
                    waiters: HashMap::new(),
                    events: Vec::new(),
                    sleeping: false,
                    armed: None,
                    device: DeviceSnapshot::default(),
                    stopped: false,
                    death: None,
                    #[cfg(any(test, debug_assertions))]
                    fault: None,
                    rx_errors: 0,
                    readiness: Default::default(),
                    inline_poll: None,
                }),
                link: Mutex::new(Link {
                    device: Box::new(device),
                    tx: TxBatch::new(TX_BATCH),
                    uses: 0,
                }),
                tx_space: Arc::default(),
                wake: Arc::new(sys::EventFd::new()?),
                on_stop: Condvar::new(),
                timer: sys::TimerFd::new()?,
                inline: Mutex::new(None),
                epoch: std::time::Instant::now(),
                thread: Mutex::new(None),
                stack_thread: std::sync::OnceLock::new(),
                finishing: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        let shared = stack.shared.clone();
        let handle = std::thread::Builder::new().name("tunstack".into()).spawn(move || {
            // However the thread ends (a panic in the core or in the inline
            // task included), every call then fails, with the cause.
            let _ = shared.stack_thread.set(std::thread::current().id());
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                stack_thread(&shared, readable_fd, rx_size, config.busy_poll)
            }));
            shared.finishing.store(true, std::sync::atomic::Ordering::SeqCst);
            shared.finish(run)
        })?;
        *stack.shared.thread.lock().expect("thread slot") = Some(handle);
        Ok(stack)
    }

    /// The core's notion of now: time since the stack started.
    pub fn now(&self) -> Instant {
        self.shared.now()
    }

    /// A handle that interrupts the stack thread's wait.
    pub fn waker(&self) -> Waker {
        Waker {
            fd: self.shared.wake.clone(),
        }
    }

    /// Locks the core.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.shared.lock_core()
    }

    /// Runs `f` on the interface under the lock (for counters, routes, ...),
    /// then sends whatever `f` queued.
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
        self.lock().device.impairment
    }

    /// Finishes an API call that may have changed the core: sends what it
    /// queued (from this thread), wakes the sockets it changed, and moves
    /// the stack thread's timer if a deadline came earlier. Releases the lock.
    pub(crate) fn kick<'a>(&'a self, core: MutexGuard<'a, Core>) {
        drop(self.kick_held(core).0);
    }

    /// As [`kick`](Self::kick), but gives the lock back, and says whether
    /// it was let go meanwhile (to send).
    pub(crate) fn kick_held<'a>(&'a self, mut core: MutexGuard<'a, Core>) -> (MutexGuard<'a, Core>, bool) {
        let sends = core.sleeping && core.iface.has_output();
        if sends {
            // The stack thread sleeps: this thread sends, one batch at
            // most (a reply goes out with no wake-up at all). More than
            // that is the stack thread's to send, so a bulk writer goes
            // back to filling its buffer while the stack thread writes.
            // (Awake, the stack thread sends it this turn.)
            core = self.shared.transmit(core, false, 1);
            if core.sleeping && core.iface.has_output() {
                core.sleeping = false;
                self.shared.wake.signal();
            }
        }
        if !core.events.is_empty() || core.iface.has_events() {
            core.deliver_events();
        }
        if core.sleeping && core.inline_poll.is_some_and(|id| core.poll_has_ready(id)) {
            // Events for the task the stack thread runs itself.
            core.sleeping = false;
            self.shared.wake.signal();
        }
        if core.sleeping {
            let next = core.next_deadline();
            if next.is_some_and(|n| core.armed.is_none_or(|a| n < a)) {
                self.shared.arm(&mut core, next);
            }
        }
        (core, sends)
    }

    /// Runs `task` on the stack thread whenever the Poll `poll` has events, or when the
    /// duration `task` last returned has passed: an event loop's
    /// non-blocking turn (`poll` with a zero timeout, then the work), with
    /// no thread of its own and no wake-up between the stack and the
    /// application, as in a single-threaded stack. The task must never
    /// block: no blocking socket call, no waiting on other threads. One
    /// task per stack; a second replaces the first. False, and the task
    /// dropped, if the stack has stopped: nothing would ever run it.
    pub(crate) fn run_on_stack_thread(
        &self,
        poll: PollId,
        task: impl FnMut() -> Option<std::time::Duration> + Send + 'static,
    ) -> bool {
        let task = InlineTask {
            task: Box::new(task),
            // A first turn at once: sockets registered before may be ready.
            due: Some(std::time::Instant::now()),
        };
        let mut core = self.lock();
        if core.stopped {
            drop(core);
            drop(task);
            return false;
        }
        core.inline_poll = Some(poll);
        core.sleeping = false;
        drop(core);
        let old = self
            .shared
            .inline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task);
        // Dropped with no lock held: its Poll and sockets take the core's.
        drop(old);
        // A stop in between took the slot before we filled it (`finish`
        // stops first, then empties the slot): empty it ourselves.
        if self.lock().stopped {
            let task = self.shared.inline.lock().unwrap_or_else(|p| p.into_inner()).take();
            drop(task);
            return false;
        }
        self.shared.wake.signal();
        true
    }

    /// Waits on `w` (with the lock) until `deadline`; false if it passed.
    pub(crate) fn wait<'a>(
        &self,
        w: &Waiter,
        core: MutexGuard<'a, Core>,
        deadline: Option<std::time::Instant>,
    ) -> (MutexGuard<'a, Core>, bool) {
        let now = std::time::Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return (core, false);
        }
        // Counted under the lock, which the notifier holds too: a notify
        // cannot fall between the count and the wait.
        w.waiting.fetch_add(1, Ordering::AcqRel);
        let (g, in_time) = match deadline {
            None => (w.cv.wait(core).unwrap_or_else(|p| p.into_inner()), true),
            Some(d) => {
                let (g, _) = w.cv.wait_timeout(core, d - now).unwrap_or_else(|p| p.into_inner());
                (g, std::time::Instant::now() < d)
            }
        };
        w.waiting.fetch_sub(1, Ordering::AcqRel);
        (g, in_time)
    }

    /// The waiter notified when transmit queues drain.
    pub(crate) fn tx_space(&self) -> Arc<Waiter> {
        self.shared.tx_space.clone()
    }

    /// Stops the stack thread (after it sends what is queued) and waits for
    /// it. Sockets then fail with `NetworkDown`. Calling it again is
    /// harmless. If the thread had died, the error (`NetworkDown`) says why.
    pub fn shutdown(&self) -> io::Result<()> {
        self.shared.stop(None);
        self.shared.wake.signal();
        let handle = self.shared.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            // Its outcome is kept as the death (`Shared::finish`), read below.
            let _ = h.join();
        }
        // The inline task's sockets hold the stack: let them go (no lock held).
        let task = self.shared.inline.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(task);
        match self.failure() {
            Some(cause) => Err(io::Error::new(io::ErrorKind::NetworkDown, cause)),
            None => Ok(()),
        }
    }
}

impl Shared {
    /// Marks the stack stopped (its thread dead of `death`, if given) and
    /// wakes every waiting thread and Poll.
    fn stop(&self, death: Option<String>) {
        let mut core = self.lock_core();
        self.stop_locked(&mut core, death);
    }

    /// `stop`, with the core's lock held.
    fn stop_locked(&self, core: &mut Core, death: Option<String>) {
        core.stopped = true;
        if core.death.is_none() {
            core.death = death.map(Arc::from);
        }
        for w in core.waiters.values() {
            w.cv.notify_all();
        }
        core.readiness.stop();
        self.tx_space.cv.notify_all();
        self.on_stop.notify_all();
    }

    /// A thread panicked while it held the core's lock or the device's: a
    /// bug, and the core or the link may be half-updated. The stack dies
    /// of it, loudly, rather than carrying on (or, for the device, never
    /// sending again) in silence. The stack thread decides, so that its own
    /// panic is reported with its message: another thread that finds a
    /// lock poisoned leaves it so and wakes the stack thread; the stack
    /// thread, unless it is recording its own panic (`finish`), stops the
    /// stack. Whether to clear the poison (the lock is the core's).
    fn die_of_poison(&self, core: &mut Core, lock: &str) -> bool {
        if self.stack_thread.get() != Some(&std::thread::current().id()) {
            self.wake.signal();
            return false;
        }
        if !core.stopped && !self.finishing.load(std::sync::atomic::Ordering::SeqCst) {
            log::error!("a thread panicked while it held the {lock} lock: the stack stops");
            let death = format!("a thread panicked while it held the {lock} lock (see its panic message)");
            self.stop_locked(core, Some(death));
        }
        true
    }

    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn lock_core(&self) -> MutexGuard<'_, Core> {
        match self.core.lock() {
            Ok(core) => core,
            Err(poisoned) => {
                let mut core = poisoned.into_inner();
                if self.die_of_poison(&mut core, "core's") {
                    self.core.clear_poison();
                }
                core
            }
        }
    }

    /// Sets the timerfd to `deadline` (core time), if it is not set there already.
    fn arm(&self, core: &mut Core, deadline: Option<Instant>) {
        if core.armed != deadline {
            core.armed = deadline;
            self.timer
                .set(deadline.map(|d| d.saturating_duration_since(self.now())));
        }
    }

    /// Writes what the core has queued, batch by batch, unless another
    /// thread holds the device: that thread looks at the queue again, under
    /// the core's lock, before it lets the device go, so nothing is left
    /// behind and packets leave in the order the core made them (a holder
    /// that stops at its `batches` leaves the rest to the stack thread, and
    /// wakes it: see `kick`). `device_due` flushes the device even with
    /// nothing queued (delayed packets).
    fn transmit<'a>(
        &'a self,
        mut core: MutexGuard<'a, Core>,
        mut device_due: bool,
        mut batches: usize,
    ) -> MutexGuard<'a, Core> {
        loop {
            if batches == 0 || (!device_due && !core.iface.has_output()) {
                return core;
            }
            batches -= 1;
            let mut link = match self.link.try_lock() {
                Ok(link) => link,
                Err(std::sync::TryLockError::WouldBlock) => return core,
                Err(std::sync::TryLockError::Poisoned(_)) => {
                    self.die_of_poison(&mut core, "device's");
                    return core;
                }
            };
            device_due = false;
            let now = self.now();
            let link = &mut *link;
            let tx = &mut link.tx;
            tx.count = 0;
            while tx.count < tx.headers.len() {
                let i = tx.count;
                // The segment's own buffer comes over (no copy); ours goes back to the core.
                let Some((_, meta)) = core
                    .iface
                    .poll_transmit_parts(now, &mut tx.headers[i], &mut tx.payloads[i])
                else {
                    break;
                };
                tx.metas[i] = meta;
                tx.count += 1;
            }
            if tx.count > 0 {
                self.tx_space.notify();
                core.iface.note_tx_space(now);
            }
            drop(core);
            let mut tx_errors = 0;
            let tx = &link.tx;
            for ((header, payload), meta) in tx.headers.iter().zip(&tx.payloads).zip(&tx.metas).take(tx.count) {
                if let Err(e) = link.device.send_meta(now, meta, header, payload) {
                    tx_errors += 1;
                    log::debug!("device send failed: {e}");
                }
            }
            if let Err(e) = link.device.flush(now) {
                log::debug!("device flush failed: {e}");
            }
            let snapshot = link.snapshot();
            core = self.lock_core();
            core.iface.count_device_errors(0, tx_errors);
            core.publish(snapshot);
            // The device is let go under the core's lock (see above).
        }
    }
}

/// One batch of packets to send, each as its IP header and a buffer
/// swapped with the one the core built the rest in.
struct TxBatch {
    headers: Vec<[u8; crate::wire::ipv4::HEADER_LEN]>,
    payloads: Vec<Vec<u8>>,
    /// Each packet's offload metadata, for `Device::send_meta`.
    metas: Vec<VnetHeader>,
    count: usize,
}

impl TxBatch {
    fn new(n: usize) -> TxBatch {
        TxBatch {
            headers: vec![[0; crate::wire::ipv4::HEADER_LEN]; n],
            payloads: (0..n).map(|_| Vec::new()).collect(),
            metas: vec![VnetHeader::default(); n],
            count: 0,
        }
    }
}

/// Fixed buffers for one batch of packets.
struct Batch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    /// Each packet's offload metadata, from `Device::recv_meta`.
    metas: Vec<VnetHeader>,
    count: usize,
}

impl Batch {
    fn new(n: usize, size: usize) -> Batch {
        Batch {
            bufs: (0..n).map(|_| vec![0u8; size]).collect(),
            lens: vec![0; n],
            metas: vec![VnetHeader::default(); n],
            count: 0,
        }
    }

    fn full(&self) -> bool {
        self.count == self.bufs.len()
    }

    fn packets(&self) -> impl Iterator<Item = (&[u8], &VnetHeader)> {
        self.bufs
            .iter()
            .zip(&self.lens)
            .zip(&self.metas)
            .take(self.count)
            .map(|((b, l), m)| (&b[..*l], m))
    }
}

/// When the stack thread hands freed heap back to the OS: as TCP memory
/// pressure ends, and once the buffers it had are all gone, so that the
/// daemon's RSS comes back down after a crowd of connections (glibc
/// keeps freed memory otherwise). Only after pressure: rarely, and never
/// in a steady state.
#[derive(Debug, Default)]
struct HeapTrim {
    pressure: bool,
    since_pressure: bool,
}

impl HeapTrim {
    /// Whether to trim now, given the memory budget's state.
    fn due(&mut self, memory: crate::tcp::MemoryUsage) -> bool {
        let ended = self.pressure && !memory.pressure;
        self.pressure = memory.pressure;
        self.since_pressure |= memory.pressure;
        let drained = self.since_pressure && memory.allocated == 0;
        if drained {
            self.since_pressure = false;
        }
        ended || drained
    }
}

fn stack_thread(
    shared: &Shared,
    device_fd: Option<std::os::fd::RawFd>,
    rx_size: usize,
    busy_poll: std::time::Duration,
) -> io::Result<()> {
    // A TUN read never exceeds the MTU, or 64 KiB with offloads.
    let mut rx = Batch::new(RX_BATCH, rx_size.max(68));
    let mut ready = Vec::with_capacity(sys::MAX_POLL_FDS);
    let mut fds = vec![shared.wake.raw(), shared.timer.raw()];
    fds.extend(device_fd);
    // Until when to keep reading instead of sleeping (`RuntimeConfig::busy_poll`).
    let mut busy_until = std::time::Instant::now();
    let mut spin = SpinPolicy::new(busy_poll, std::time::Instant::now());
    let mut heap = HeapTrim::default();
    loop {
        // Read until the device would block, or the batch is full.
        rx.count = 0;
        let mut rx_errors = 0;
        let snapshot = {
            let mut link = shared.link.lock().unwrap_or_else(|p| p.into_inner());
            let now = shared.now();
            while !rx.full() {
                match link.device.recv_meta(now, &mut rx.bufs[rx.count]) {
                    Ok((n, meta)) => {
                        rx.lens[rx.count] = n;
                        rx.metas[rx.count] = meta;
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
            // What the reads did to the counts, and packets they delayed.
            link.snapshot()
        };
        // (Spin turns that read nothing skip the clock.)
        let turn_start = (rx.count > 0).then(std::time::Instant::now);
        let mut core = shared.lock_core();
        core.sleeping = false;
        core.publish(snapshot);
        core.rx_errors += rx_errors;
        let errors = std::mem::take(&mut core.rx_errors);
        core.iface.count_device_errors(errors, 0);
        let now = shared.now();
        for (p, meta) in rx.packets() {
            core.iface.handle_packet_meta(now, p, meta);
        }
        core.iface.handle_timeout(now);
        #[cfg(any(test, debug_assertions))]
        if let Some(message) = core.fault.take() {
            panic!("{message}");
        }
        core.deliver_events();
        // The inline task answers before the batch's ACKs go: its replies carry them.
        let (core, inline_busy, inline_due) = run_inline(shared, core);
        let device_due = core.device.deadline.is_some_and(|d| d <= now);
        let mut core = shared.transmit(core, device_due, usize::MAX);
        // Packets the core made while we sent (loopback replies) are due at once.
        core.deliver_events();
        if core.stopped {
            drop(core);
            // Whatever the last turn queued still goes out, even if an
            // application thread holds the device now (it sends one batch).
            for _ in 0..1000 {
                let core = shared.transmit(shared.lock_core(), true, usize::MAX);
                if !core.iface.has_output() {
                    break;
                }
                drop(core);
                // Wait for the thread that holds the device (it takes the
                // core only while holding the device: no deadlock).
                drop(shared.link.lock().unwrap_or_else(|p| p.into_inner()));
            }
            return Ok(());
        }
        // The inline Poll may have been made ready while `transmit` wrote
        // with the lock released (an API call's kick saw us awake and left
        // it to us): serve it before sleeping. From here to `sleeping =
        // true` the lock is held.
        // Every turn with packets, full ones too, tells the spin policy
        // how close together they come.
        let now_std = std::time::Instant::now();
        let out_of_order = core.iface.stats().tcp_rx_out_of_order;
        if spin.after_turn(
            turn_start.unwrap_or(now_std),
            now_std,
            &rx.lens[..rx.count],
            out_of_order,
        ) {
            busy_until = now_std + busy_poll;
        }
        if rx.full() || inline_busy || core.inline_poll.is_some_and(|id| core.poll_has_ready(id)) {
            continue;
        }
        if now_std < busy_until {
            drop(core);
            std::hint::spin_loop();
            continue;
        }
        let mut next = match (core.next_deadline(), inline_due) {
            (n, None) => n,
            (n, Some(d)) => {
                let d = Instant::from_micros(
                    u64::try_from(d.saturating_duration_since(shared.epoch).as_micros()).unwrap_or(u64::MAX),
                );
                Some(n.map_or(d, |n| n.min(d)))
            }
        };
        // Lazily: a later deadline (a timer restarted or stopped) leaves the
        // earlier one armed, which then wakes us once for nothing; moving
        // the timer at every turn would cost a syscall per exchange.
        if core.armed.is_some_and(|a| next.is_none_or(|n| n > a)) {
            next = core.armed;
        }
        shared.arm(&mut core, next);
        core.sleeping = true;
        let trim = heap.due(core.iface.tcp_layer().memory());
        drop(core);
        if trim {
            sys::trim_heap();
        }
        sys::wait_readable(&fds, None, &mut ready)?;
        if ready.contains(&0) {
            shared.wake.drain();
        }
        if ready.contains(&1) {
            shared.timer.drain();
            // The timer is spent: the next turn arms it again.
            shared.lock_core().armed = None;
        }
    }
}

/// When the stack thread busy-polls after a turn (`RuntimeConfig::busy_poll`).
#[derive(Debug)]
struct SpinPolicy {
    busy_poll: std::time::Duration,
    /// When the last turn with packets ended.
    idle_since: std::time::Instant,
    /// The out-of-order count when last seen, and when it last moved: a
    /// sender recovering from loss is no steady stream.
    disorder: (u64, Option<std::time::Instant>),
}

impl SpinPolicy {
    fn new(busy_poll: std::time::Duration, now: std::time::Instant) -> SpinPolicy {
        SpinPolicy {
            busy_poll,
            idle_since: now,
            disorder: (0, None),
        }
    }

    /// Whether to keep reading after a turn that started at `start`, ended
    /// at `end`, read packets of `lens` bytes, and left the stack's
    /// out-of-order count at `out_of_order`.
    fn after_turn(
        &mut self,
        start: std::time::Instant,
        end: std::time::Instant,
        lens: &[usize],
        out_of_order: u64,
    ) -> bool {
        if out_of_order != self.disorder.0 {
            self.disorder = (out_of_order, Some(end));
        }
        if lens.is_empty() {
            return false;
        }
        // A gap shorter than a spin: a fast sender's next segment is that
        // close. A longer one: a sender held back by its window, sending
        // in bursts an RTT apart.
        let gap_short = start.saturating_duration_since(self.idle_since) < self.busy_poll;
        self.idle_since = end;
        let calm = self
            .disorder
            .1
            .is_none_or(|at| end.saturating_duration_since(at) > CALM_AFTER_DISORDER);
        let streaming = gap_short && calm;
        streaming || lens.iter().all(|&n| n <= SMALL_PACKET)
    }
}

/// Runs the inline task (if any) while its Poll has events or its time
/// came, a few rounds at most, sending what each round queued. Returns the
/// lock, whether the task still has work (then the thread must not sleep),
/// and when it asked to run next.
fn run_inline<'a>(
    shared: &'a Shared,
    mut core: MutexGuard<'a, Core>,
) -> (MutexGuard<'a, Core>, bool, Option<std::time::Instant>) {
    let Some(poll) = core.inline_poll else {
        return (core, false, None);
    };
    let mut slot = shared.inline.lock().unwrap_or_else(|p| p.into_inner());
    let Some(inline) = slot.as_mut() else {
        return (core, false, None);
    };
    for _ in 0..INLINE_ROUNDS {
        let due = inline.due.is_some_and(|d| d <= std::time::Instant::now());
        if !due && !core.poll_has_ready(poll) {
            return (core, false, inline.due);
        }
        drop(core);
        // Its socket calls take the core's lock themselves; what they
        // queue is left for this thread, which is awake.
        let after = (inline.task)();
        inline.due = after.map(|d| std::time::Instant::now() + d);
        core = shared.transmit(shared.lock_core(), false, usize::MAX);
        core.deliver_events();
    }
    let busy = core.poll_has_ready(poll) || inline.due.is_some_and(|d| d <= std::time::Instant::now());
    (core, busy, inline.due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::memory::MemoryLink;
    use crate::iface::Config;

    #[test]
    fn the_heap_is_trimmed_as_pressure_ends_and_once_drained_never_without_pressure() {
        let usage = |allocated: usize, pressure: bool| crate::tcp::MemoryUsage {
            allocated,
            pressure,
            pressures: 0,
        };
        let mut h = HeapTrim::default();
        assert!(!h.due(usage(10, false)), "no pressure yet");
        assert!(!h.due(usage(0, false)), "drained, but there was no pressure");
        assert!(!h.due(usage(100, true)));
        assert!(!h.due(usage(90, true)));
        assert!(h.due(usage(40, false)), "pressure ended");
        assert!(!h.due(usage(20, false)));
        assert!(h.due(usage(0, false)), "the last buffer went");
        assert!(!h.due(usage(0, false)), "once");
    }

    #[test]
    fn shutdown_stops_the_thread_and_is_idempotent() {
        let (link, _peer) = MemoryLink::pair().unwrap();
        let stack = Stack::start(Interface::new(Config::new("10.0.0.2/24".parse().unwrap())), link).unwrap();
        assert!(stack.now() < Instant::from_secs(60));
        stack.shutdown().unwrap();
        stack.shutdown().unwrap();
    }

    /// The inline task's sockets hold the stack: shutting down lets the
    /// task go, so nothing keeps the stack (its device, its sockets) alive.
    #[test]
    fn shutdown_frees_a_stack_that_ran_a_task_on_its_thread() {
        let (link, _peer) = MemoryLink::pair().unwrap();
        let stack = Stack::start(Interface::new(Config::new("10.0.0.2/24".parse().unwrap())), link).unwrap();
        let weak = Arc::downgrade(&stack.shared);
        crate::net::Poll::new(&stack)
            .unwrap()
            .run_on_stack_thread(|_, _| None)
            .unwrap();
        stack.shutdown().unwrap();
        drop(stack);
        assert!(weak.upgrade().is_none(), "freed");
    }

    /// A second task replaces the first: the old one (its Poll takes the
    /// core's lock when dropped) is dropped with no lock held, while the
    /// stack thread keeps running tasks (lock order core -> task slot).
    #[test]
    fn replacing_the_stack_thread_task_while_it_runs_does_not_deadlock() {
        let (link, _peer) = MemoryLink::pair().unwrap();
        let stack = Stack::start(Interface::new(Config::new("10.0.0.2/24".parse().unwrap())), link).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..200 {
            let poll = crate::net::Poll::new(&stack).unwrap();
            let waker = crate::net::PollWaker::new(&poll, crate::net::Token(i)).unwrap();
            let tx = tx.clone();
            poll.run_on_stack_thread(move |_, events| {
                for e in events.iter() {
                    let _ = tx.send(e.token().0);
                }
                None
            })
            .unwrap();
            waker.wake().unwrap();
        }
        // The last task is served: nothing is stuck.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match rx.recv_timeout(std::time::Duration::from_secs(20)) {
                Ok(199) => break,
                Ok(_) => assert!(std::time::Instant::now() < deadline),
                Err(e) => panic!("the last task never ran: {e}"),
            }
        }
        stack.shutdown().unwrap();
    }

    #[test]
    fn stack_thread_answers_pings_over_the_link() {
        answers_pings(RuntimeConfig::default());
    }

    #[test]
    fn busy_polling_follows_small_packets_and_streams_but_not_bursts_or_recovery() {
        let t0 = std::time::Instant::now();
        let us = |n| t0 + std::time::Duration::from_micros(n);
        let mut p = SpinPolicy::new(std::time::Duration::from_micros(25), t0);
        // A request and an ACK: spin, whatever the gap.
        assert!(p.after_turn(us(1_000), us(1_010), &[60, 100], 0));
        // The first bulk segment after a long gap: a burst, sleep.
        assert!(!p.after_turn(us(2_000), us(2_020), &[1500], 0));
        // The next one 10 µs after: a stream, spin.
        assert!(p.after_turn(us(2_030), us(2_050), &[1500, 1500], 0));
        // An empty spin turn changes nothing; the gap counts from the last packets.
        assert!(!p.after_turn(us(2_060), us(2_061), &[], 0));
        assert!(!p.after_turn(us(2_200), us(2_220), &[1500], 0), "a gap of 150 µs");
        assert!(p.after_turn(us(2_230), us(2_250), &[1500], 0));
        // A segment out of order: no bulk spinning for a while, small packets still spin.
        assert!(!p.after_turn(us(2_260), us(2_280), &[1500], 1));
        assert!(!p.after_turn(us(2_290), us(2_300), &[1500], 1));
        assert!(p.after_turn(us(2_310), us(2_320), &[52], 1));
        let calm = 2_300 + u64::try_from(CALM_AFTER_DISORDER.as_micros()).unwrap();
        assert!(
            !p.after_turn(us(calm), us(calm + 1), &[1500], 1),
            "calm, but after a long gap"
        );
        assert!(
            p.after_turn(us(calm + 10), us(calm + 20), &[1500], 1),
            "calm again, and streaming"
        );
    }

    #[test]
    fn stack_thread_answers_pings_without_busy_polling() {
        answers_pings(RuntimeConfig {
            busy_poll: std::time::Duration::ZERO,
        });
    }

    /// A panic on a thread that holds the device's lock (an application
    /// thread sending what the core built) must not leave a stack that
    /// never sends again and says nothing: it dies of it, with a cause.
    #[test]
    fn a_poisoned_device_lock_kills_the_stack_loudly() {
        let (link, mut peer) = MemoryLink::pair().unwrap();
        let stack = Stack::start(Interface::new(crate::testutil::config()), link).unwrap();
        let shared = stack.shared.clone();
        let _ = std::thread::spawn(move || {
            let _link = shared.link.lock().unwrap();
            panic!("a core bug hit while an application thread sends");
        })
        .join();
        // The reply to this ping finds the device's lock poisoned.
        let ping = crate::testutil::ping_packet(crate::testutil::US, 1, b"over the link");
        peer.send(Instant::ZERO, &ping).unwrap();
        assert!(stack.wait_stopped(Some(std::time::Duration::from_secs(10))));
        let failure = stack.failure().expect("a cause");
        assert!(failure.contains("device's lock"), "{failure}");
    }

    #[test]
    fn a_panic_under_the_cores_lock_on_an_application_thread_kills_the_stack_loudly() {
        let (link, _peer) = MemoryLink::pair().unwrap();
        let stack = Stack::start(Interface::new(crate::testutil::config()), link).unwrap();
        let s2 = stack.clone();
        let _ = std::thread::spawn(move || s2.with_interface(|_| panic!("a core bug on an application thread"))).join();
        // The next to take the lock wakes the stack thread, which stops the stack.
        assert!(stack.wait_stopped(Some(std::time::Duration::from_secs(10))));
        let e = crate::net::UdpSocket::bind(&stack, "10.200.0.2:9".parse::<std::net::SocketAddr>().unwrap())
            .expect_err("no socket on a dead stack");
        assert_eq!(e.kind(), io::ErrorKind::NetworkDown);
        assert!(e.to_string().contains("core's lock"), "{e}");
    }

    fn answers_pings(runtime: RuntimeConfig) {
        let (link, mut peer) = MemoryLink::pair().unwrap();
        let mut config = Config::new("10.200.0.2/24".parse().unwrap());
        config.seed = 3;
        let stack = Stack::start_with(Interface::new(config), link, runtime).unwrap();
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
