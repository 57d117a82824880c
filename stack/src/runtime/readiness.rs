//! Readiness for event-driven programs: which sockets each `Poll` watches,
//! and which of them may have changed since it last looked.
//!
//! The stack thread hands every socket event to [`Core::deliver`]. That
//! wakes the threads blocked on the socket, as before, and if a `Poll`
//! watches the socket and it is ready for something the Poll asked about,
//! queues it on that Poll's ready list (once, however many events come
//! before the Poll looks) and wakes the Poll if, and only if, it is
//! waiting. What the socket is ready for is read again, under the same
//! lock, when the Poll reports it: a report is never stale, and a socket is
//! reported only when it is ready for something the Poll asked about. Registering queues the socket too, as `epoll_ctl(ADD)`
//! checks readiness at once, so a socket that became ready before it was
//! registered is not missed.

use super::{Core, Waiter};
use crate::iface::Interface;
use crate::socket::SocketEvent;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;

/// Interest and readiness bits, shared with `net::poll`.
pub(crate) mod bits {
    /// Readable (interest or readiness).
    pub const READABLE: u8 = 1;
    /// Writable (interest or readiness).
    pub const WRITABLE: u8 = 2;
    /// The socket has an error (readiness only).
    pub const ERROR: u8 = 4;
    /// Nothing more will be read (readiness only).
    pub const READ_CLOSED: u8 = 8;
    /// Nothing more can be written (readiness only).
    pub const WRITE_CLOSED: u8 = 16;
}

use bits::{ERROR, READ_CLOSED, READABLE, WRITABLE, WRITE_CLOSED};

/// Names one `Poll` of a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PollId(u64);

/// One socket's registration.
#[derive(Debug)]
struct Registration {
    poll: PollId,
    token: usize,
    interest: u8,
    /// On its Poll's ready list and not reported since.
    queued: bool,
}

/// One Poll's side: what to look at, and how to wake it.
#[derive(Debug, Default)]
struct PollState {
    ready: VecDeque<SocketEvent>,
    /// Tokens of `PollWaker`s woken since the last report (few: a Vec).
    woken: Vec<usize>,
    /// The Poll's thread waits (or is about to): events must notify `cv`.
    waiting: bool,
    cv: Arc<Waiter>,
}

/// Every registration of a stack, and every Poll's ready list.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    registrations: HashMap<SocketEvent, Registration>,
    polls: HashMap<PollId, PollState>,
    next_poll: u64,
}

impl Readiness {
    /// Queues `key` for its Poll's next look, waking the Poll if it waits.
    fn queue(&mut self, key: SocketEvent) {
        let Some(r) = self.registrations.get_mut(&key) else {
            return;
        };
        if r.queued {
            return;
        }
        let Some(p) = self.polls.get_mut(&r.poll) else {
            return;
        };
        r.queued = true;
        p.ready.push_back(key);
        p.wake();
    }

    /// Wakes every Poll: the stack is shutting down.
    pub(crate) fn stop(&mut self) {
        for p in self.polls.values() {
            p.cv.cv.notify_all();
        }
    }

    /// Forgets a closed socket's registration.
    pub(crate) fn forget(&mut self, key: SocketEvent) {
        // Its key may stay on a ready list: without a registration it is skipped.
        self.registrations.remove(&key);
    }
}

impl PollState {
    fn wake(&mut self) {
        // Once per wait: the Poll's thread cannot stop waiting while the
        // events of one batch are delivered (they hold the lock).
        if std::mem::replace(&mut self.waiting, false) {
            self.cv.notify();
        }
    }
}

/// The error `epoll_ctl` gives for a socket registered twice.
fn already_exists() -> io::Error {
    io::Error::from_raw_os_error(libc::EEXIST)
}

/// The error `epoll_ctl` gives for a socket that is not registered.
fn not_found() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

/// What the socket behind `key` is ready for now.
fn readiness_of(iface: &Interface, key: SocketEvent) -> u8 {
    let flag = |on: bool, bit: u8| if on { bit } else { 0 };
    match key {
        SocketEvent::Tcp(h) => {
            let tcp = iface.tcp_layer();
            if !tcp.exists(h) {
                return READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED;
            }
            let r = tcp.readiness(h);
            flag(r.readable, READABLE)
                | flag(r.writable, WRITABLE)
                | flag(r.read_closed, READ_CLOSED)
                | flag(r.write_closed, WRITE_CLOSED)
                | flag(r.error, ERROR)
        }
        SocketEvent::Listener(h) => flag(iface.tcp_layer().can_accept(h), READABLE),
        // A datagram (or its error) waits; sending never waits long: the
        // transmit queue drains every turn of the stack thread.
        SocketEvent::Udp(h) => flag(iface.udp_layer().can_recv(h), READABLE) | WRITABLE,
        SocketEvent::Icmp(_) => 0,
    }
}

/// What of `ready` a registration with `interest` reports, as `epoll` masks
/// events: readable and writable only when asked for, errors and hang-ups
/// always; 0 means nothing to report.
fn reported(ready: u8, interest: u8) -> u8 {
    let mut out = 0;
    if interest & READABLE != 0 {
        out |= ready & (READABLE | READ_CLOSED);
    }
    if interest & WRITABLE != 0 {
        out |= ready & (WRITABLE | WRITE_CLOSED);
    }
    let hung_up = ready & (READ_CLOSED | WRITE_CLOSED) == READ_CLOSED | WRITE_CLOSED;
    if hung_up || ready & ERROR != 0 {
        out |= ready & (ERROR | READ_CLOSED | WRITE_CLOSED);
    }
    out
}

impl super::Stack {
    /// Whether `other` is a handle to the same stack.
    pub(crate) fn same_as(&self, other: &super::Stack) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Core {
    /// Hands a socket event on: wakes the threads blocked on the socket and
    /// queues it for the Poll that watches it, if any.
    pub(crate) fn deliver(&mut self, e: SocketEvent) {
        if let Some(w) = self.waiters.get(&e) {
            w.notify();
        }
        // Most events change nothing the Poll asked about (an ACK while
        // the send buffer is still two-thirds full, for a writer): looking
        // now, with the core at hand, spares its thread a futile wakeup.
        let Some(reg) = self.readiness.registrations.get(&e) else {
            return;
        };
        if !reg.queued && reported(readiness_of(&self.iface, e), reg.interest) != 0 {
            self.readiness.queue(e);
        }
    }

    /// Whether Poll `id` has events to report.
    pub(crate) fn poll_has_ready(&self, id: PollId) -> bool {
        self.readiness
            .polls
            .get(&id)
            .is_some_and(|p| !p.ready.is_empty() || !p.woken.is_empty())
    }

    /// A new Poll, and the waiter it sleeps on.
    pub(crate) fn new_poll(&mut self) -> (PollId, Arc<Waiter>) {
        let r = &mut self.readiness;
        let id = PollId(r.next_poll);
        r.next_poll += 1;
        let state = PollState::default();
        let cv = state.cv.clone();
        r.polls.insert(id, state);
        (id, cv)
    }

    /// Drops a Poll and every registration with it.
    pub(crate) fn drop_poll(&mut self, id: PollId) {
        let r = &mut self.readiness;
        if r.polls.remove(&id).is_some() {
            r.registrations.retain(|_, reg| reg.poll != id);
        }
    }

    /// Registers `key` with Poll `id`; it is reported at the next look if it is ready already.
    pub(crate) fn register(&mut self, id: PollId, key: SocketEvent, token: usize, interest: u8) -> io::Result<()> {
        let r = &mut self.readiness;
        if r.registrations.contains_key(&key) {
            return Err(already_exists());
        }
        r.registrations.insert(
            key,
            Registration {
                poll: id,
                token,
                interest,
                queued: false,
            },
        );
        r.queue(key);
        Ok(())
    }

    /// Changes the token and interest of `key`, registered with Poll `id`.
    pub(crate) fn reregister(&mut self, id: PollId, key: SocketEvent, token: usize, interest: u8) -> io::Result<()> {
        let r = &mut self.readiness;
        match r.registrations.get_mut(&key) {
            Some(reg) if reg.poll == id => {
                reg.token = token;
                reg.interest = interest;
            }
            _ => return Err(not_found()),
        }
        r.queue(key);
        Ok(())
    }

    /// Removes the registration of `key` with Poll `id`.
    pub(crate) fn deregister(&mut self, id: PollId, key: SocketEvent) -> io::Result<()> {
        let r = &mut self.readiness;
        match r.registrations.get(&key) {
            Some(reg) if reg.poll == id => {
                r.registrations.remove(&key);
                Ok(())
            }
            _ => Err(not_found()),
        }
    }

    /// Marks the token of a `PollWaker` of Poll `id` as woken and wakes the Poll.
    pub(crate) fn wake_poll(&mut self, id: PollId, token: usize) {
        if let Some(p) = self.readiness.polls.get_mut(&id) {
            if !p.woken.contains(&token) {
                p.woken.push(token);
            }
            p.wake();
        }
    }

    /// Reports what is ready for Poll `id`, at most `max` events, each as
    /// `emit(token, bits)`; what does not fit stays queued. Returns how many.
    pub(crate) fn take_ready(&mut self, id: PollId, max: usize, mut emit: impl FnMut(usize, u8)) -> usize {
        let Core { iface, readiness, .. } = self;
        let Some(p) = readiness.polls.get_mut(&id) else {
            return 0;
        };
        let mut n = 0;
        while n < max {
            let Some(token) = p.woken.pop() else { break };
            emit(token, READABLE);
            n += 1;
        }
        while n < max {
            let Some(key) = p.ready.pop_front() else { break };
            let Some(reg) = readiness.registrations.get_mut(&key) else {
                continue; // deregistered or closed since
            };
            if reg.poll != id || !reg.queued {
                continue; // moved to another Poll, or a duplicate entry
            }
            reg.queued = false;
            let bits = reported(readiness_of(iface, key), reg.interest);
            if bits != 0 {
                emit(reg.token, bits);
                n += 1;
            }
        }
        n
    }

    /// How many sockets are registered, with any Poll.
    #[cfg(test)]
    pub(crate) fn registrations(&self) -> usize {
        self.readiness.registrations.len()
    }

    /// Records whether Poll `id`'s thread is about to wait (or has stopped waiting).
    pub(crate) fn set_poll_waiting(&mut self, id: PollId, waiting: bool) {
        if let Some(p) = self.readiness.polls.get_mut(&id) {
            p.waiting = waiting;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_masks_readiness_but_not_errors_or_hang_ups() {
        assert_eq!(reported(READABLE | WRITABLE, READABLE), READABLE);
        assert_eq!(
            reported(READABLE | READ_CLOSED, WRITABLE),
            0,
            "a half-close is not for writers"
        );
        assert_eq!(reported(WRITABLE, READABLE), 0);
        let reset = READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED | ERROR;
        assert_eq!(reported(reset, WRITABLE), WRITABLE | READ_CLOSED | WRITE_CLOSED | ERROR);
        assert_eq!(reported(reset, READABLE), READABLE | READ_CLOSED | WRITE_CLOSED | ERROR);
    }
}
