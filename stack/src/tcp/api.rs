//! The socket calls: what `TcpListener` and `TcpStream` do to the core.

#![forbid(unsafe_code)]

use super::congestion::{self, CongestionAlgorithm};
use super::tcb::{IDLE_RELEASE, State, Tcb, Timer};
use super::{ConnError, ConnectError};
use super::{FourTuple, IoError, ListenError, Listener, ListenerHandle, Shutdown, TcpHandle, TcpLayer};
use crate::ip::Sockets;
use crate::socket::{self as sock, Handle};
use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;
use std::collections::{HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

/// Who holds a 4-tuple an active open wants.
enum Holder {
    Nobody,
    /// A closed connection in TIME-WAIT that may be replaced: the ISS the
    /// new connection must start from.
    ReusableTimeWait(SeqNum),
    Taken,
}

/// What a connection is ready for, as Linux's `tcp_poll` reports it to
/// `epoll`: read when the event is reported, so it is never stale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpReadiness {
    /// A read returns at once: data, end of stream, or an error.
    pub readable: bool,
    /// A write would take bytes (or fail at once): established with at
    /// least a third of the send buffer free, a connect that finished
    /// either way, or sending already shut down.
    pub writable: bool,
    /// No more bytes will arrive: the peer's FIN came, reading was shut
    /// down, or the connection is gone (`EPOLLRDHUP`).
    pub read_closed: bool,
    /// Both directions are closed, or the connection ended (`EPOLLHUP`).
    pub write_closed: bool,
    /// The connection ended with an error (`EPOLLERR`).
    pub error: bool,
}

impl TcpLayer {
    /// What connection `h` is ready for now. Writable is the rule that
    /// wakes blocked writers (Linux's `sk_stream_is_writeable`): a third of
    /// the send buffer free, so a writer woken by it can write that much,
    /// not a few bytes at a time.
    pub fn readiness(&self, h: TcpHandle) -> TcpReadiness {
        let t = self.tcb(h);
        let closed = t.state == State::Closed;
        let connecting = matches!(t.state, State::SynSent | State::SynReceived);
        let read_closed = closed || t.rcv_closed || t.shut_rd;
        let send_shut = closed || t.fin_queued();
        TcpReadiness {
            readable: read_closed || t.error.is_some() || (!connecting && !t.recv.is_empty()),
            writable: !connecting && (send_shut || (t.send.free() > 0 && super::input::writable(t))),
            read_closed,
            write_closed: closed || (read_closed && send_shut),
            error: t.error.is_some(),
        }
    }

    /// A free port from the ephemeral range for a listener: not used by any
    /// connection or listener.
    fn listen_port(&self, rng: &mut crate::rand::Rng) -> Option<u16> {
        let used: HashSet<u16> = self
            .conns
            .iter()
            .map(|(_, t)| t.local.port())
            .chain(self.time_wait.iter().map(|(k, _)| k.local.port()))
            .chain(self.listen_ports.keys().copied())
            .collect();
        sock::ephemeral_port(rng, |p| used.contains(&p))
    }

    /// Who holds `tuple`, for our active open. As Linux's
    /// `tcp_twsk_unique`, a TIME-WAIT connection gives way if timestamps
    /// were on and its last one came over a second ago: PAWS at the peer
    /// then rejects the old connection's segments, and the new ISS starts
    /// past its sequence space.
    fn holder(&self, tuple: &FourTuple, now: Instant) -> Holder {
        if self.by_tuple.contains_key(tuple) {
            return Holder::Taken;
        }
        let Some(tw) = self.time_wait.get(tuple) else {
            return Holder::Nobody;
        };
        let reusable = tw.ts.is_some_and(|ts| now >= ts.recent_at + Duration::from_secs(1));
        if self.config.tw_reuse && reusable {
            return Holder::ReusableTimeWait(tw.snd_nxt + super::timewait::REOPEN_ISN_GAP);
        }
        Holder::Taken
    }

    /// A port for an active open from `local` to `remote` (RFC 6056
    /// §3.3.4, see `ports`): free for this 4-tuple, never a listener's.
    fn connect_port(
        &mut self,
        rng: &mut crate::rand::Rng,
        now: Instant,
        local: Ipv4Addr,
        remote: SocketAddrV4,
    ) -> Option<(u16, Holder)> {
        let probe = self
            .ports
            .probe(sock::EPHEMERAL_FIRST..=sock::EPHEMERAL_LAST, local, remote);
        for (i, port) in probe.ports() {
            if self.listen_ports.contains_key(&port) {
                continue;
            }
            let holder = self.holder(
                &FourTuple {
                    local: SocketAddrV4::new(local, port),
                    remote,
                },
                now,
            );
            if !matches!(holder, Holder::Taken) {
                self.ports.taken(&probe, i, rng);
                return Some((port, holder));
            }
        }
        None
    }
}

impl Sockets<'_, TcpLayer> {
    /// Starts listening on `local` (port 0: an ephemeral port); `backlog`
    /// bounds established connections waiting for `accept` (as Linux, up to
    /// `backlog + 1` may wait).
    pub fn listen(&mut self, local: SocketAddrV4, backlog: usize) -> Result<ListenerHandle, ListenError> {
        let ip = *local.ip();
        if !(ip.is_unspecified() || ip == self.cx.addr()) {
            return Err(ListenError::AddrNotAvailable);
        }
        let port = if local.port() == 0 {
            self.layer.listen_port(self.cx.rng()).ok_or(ListenError::AddrInUse)?
        } else {
            local.port()
        };
        if self.layer.port_in_use(port) {
            return Err(ListenError::AddrInUse);
        }
        let local = SocketAddrV4::new(ip, port);
        let h = self.layer.listeners.insert(Listener {
            local,
            backlog,
            accept_queue: VecDeque::new(),
            half_open: 0,
            event_pending: false,
            owner: None,
            cookies: Default::default(),
        });
        self.layer.listen_ports.insert(port, h);
        log::debug!("tcp {local}: LISTEN (backlog {backlog})");
        Ok(ListenerHandle(h))
    }

    /// Takes the oldest established connection from the accept queue.
    pub fn accept(&mut self, h: ListenerHandle) -> Option<(TcpHandle, SocketAddrV4)> {
        let l = self.layer.listeners.get_mut(h.0).expect("listener handle is stale");
        let c = l.accept_queue.pop_front()?;
        let t = self.layer.conns.get_mut(c).expect("queued connections live");
        t.listener = None;
        t.queued = false;
        Some((TcpHandle(c), t.remote))
    }

    /// Stops listening. Connections never accepted are reset (RFC 9293 §3.10.4).
    pub fn close_listener(&mut self, h: ListenerHandle) {
        let tcp = &mut *self.layer;
        let l = tcp.listeners.remove(h.0).expect("listener handle is stale");
        tcp.listen_ports.remove(&l.local.port());
        let orphans: Vec<Handle> = tcp
            .conns
            .iter()
            .filter(|(_, t)| t.listener == Some(h.0))
            .map(|(c, _)| c)
            .collect();
        for c in orphans {
            if let Some(t) = tcp.conns.get(c) {
                t.send_rst(&mut self.cx);
            }
            tcp.release(&mut self.cx, c, None);
        }
        log::debug!("tcp {}: listener closed", l.local);
    }

    /// Opens a connection to `remote` (SYN now); `local_port` 0 picks an ephemeral port.
    pub fn connect(&mut self, remote: SocketAddrV4, local_port: u16) -> Result<TcpHandle, ConnectError> {
        let rip = *remote.ip();
        if rip.is_unspecified() || remote.port() == 0 || rip.is_multicast() || self.cx.is_broadcast(rip) {
            return Err(ConnectError::InvalidAddress);
        }
        if !self.cx.has_route(rip) {
            return Err(ConnectError::NetUnreachable);
        }
        if self.layer.conns.len() >= self.layer.config.max_connections {
            self.cx.stats().tcp_conn_limit_drops += 1;
            log::debug!(
                "tcp: connect to {remote} refused: {} connections, the limit",
                self.layer.conns.len()
            );
            return Err(ConnectError::TooManyConnections);
        }
        let now = self.cx.now();
        let ip = self.cx.addr();
        let (port, holder) = if local_port == 0 {
            let rng = self.cx.rng();
            self.layer
                .connect_port(rng, now, ip, remote)
                .ok_or(ConnectError::AddrNotAvailable)?
        } else {
            let local = SocketAddrV4::new(ip, local_port);
            (local_port, self.layer.holder(&FourTuple { local, remote }, now))
        };
        let local = SocketAddrV4::new(ip, port);
        let iss = match holder {
            Holder::Taken => return Err(ConnectError::AddrInUse),
            Holder::Nobody => self.layer.choose_isn(now, local, remote),
            Holder::ReusableTimeWait(iss) => {
                log::debug!("tcp {local} -> {remote}: new connection replaces TIME-WAIT");
                self.layer.time_wait.remove(&FourTuple { local, remote });
                iss
            }
        };
        let tcp = &mut *self.layer;
        let mut t = Tcb::new(&tcp.config, local, remote, iss, now, self.cx.mtu(), &tcp.memory);
        t.ts_offset = tcp.isn.ts_offset(local, remote);
        t.set_state(State::SynSent);
        let h = tcp.conns.insert(t);
        tcp.by_tuple.insert(FourTuple { local, remote }, h);
        self.cx.stats().tcp_active_opens += 1;
        tcp.output(&mut self.cx, h);
        Ok(TcpHandle(h))
    }

    /// Queues `data` for sending; returns how much fit in the send buffer.
    pub fn send(&mut self, h: TcpHandle, data: &[u8]) -> Result<usize, IoError> {
        let t = self.layer.tcb_mut(h);
        if let Some(e) = t.error {
            return Err(IoError::Failed(e));
        }
        match t.state {
            State::SynSent | State::SynReceived => return Err(IoError::WouldBlock),
            State::Established | State::CloseWait => {}
            // Past TIME-WAIT (the compact table has it): writing was shut down (EPIPE, as Linux).
            State::Closed if t.fin_queued() => return Err(IoError::BrokenPipe),
            State::Closed | State::Listen => return Err(IoError::NotConnected),
            _ => return Err(IoError::BrokenPipe),
        }
        if t.fin_queued() {
            return Err(IoError::BrokenPipe);
        }
        let n = t.send.push(data);
        t.note_send_space(n < data.len());
        if n == 0 && !data.is_empty() {
            return Err(IoError::WouldBlock);
        }
        self.layer.output(&mut self.cx, h.0);
        Ok(n)
    }

    /// Reads received bytes; `Ok(0)` is end of stream (FIN, or shut down for reading).
    pub fn recv(&mut self, h: TcpHandle, buf: &mut [u8]) -> Result<usize, IoError> {
        let len = buf.len();
        self.take(h, len, |recv| recv.read(buf))
    }

    /// As [`recv`](Self::recv), but up to `max` bytes are thrown away
    /// without being copied anywhere: Linux's `recv(MSG_TRUNC)` on TCP, for
    /// a reader that only counts (the daemon's discard service).
    pub fn recv_discard(&mut self, h: TcpHandle, max: usize) -> Result<usize, IoError> {
        self.take(h, max, |recv| recv.skip(max))
    }

    /// Takes up to `len` received bytes with `consume` (which returns how
    /// many it took), and does what a read does to the window and the ACKs.
    fn take(
        &mut self,
        h: TcpHandle,
        len: usize,
        consume: impl FnOnce(&mut super::buffer::RecvBuffer) -> usize,
    ) -> Result<usize, IoError> {
        let now = self.cx.now();
        let t = self.layer.tcb_mut(h);
        if !t.recv.is_empty() && len > 0 {
            let old_window = t.rcv_wnd() as usize;
            let n = consume(&mut t.recv);
            t.rcv_space_adjust(now, n);
            t.release_unusable_buffers();
            // As Linux (tcp_cleanup_rbuf), a read sends an ACK only when it
            // matters: when the window the peer has is down to half the
            // buffer or less and this read at least doubles it (a window
            // update on every read would double the ACKs of a bulk
            // transfer; receiver SWS avoidance, RFC 9293 §3.8.6.2.2); or
            // once the application has read all of a pushed burst, whose
            // delayed ACK then goes now unless a reply is likely to carry it
            // (pingpong), else a sender's tail waits 40 ms and its loss
            // probe fires.
            let reopens = 2 * old_window <= t.recv.limit() && {
                let new_window = t.free_window();
                new_window > 0 && new_window >= 2 * old_window
            };
            let pushed_and_read = t.ack_pushed && !t.pingpong && t.bytes_unacked > 0 && t.recv.is_empty();
            if t.state.synchronized() && reopens {
                t.ack_now = true;
                self.layer.output(&mut self.cx, h.0);
            } else if t.state.synchronized() && pushed_and_read {
                // Sent with the next output, so a reply written before it
                // carries it (an event loop reads, then writes).
                self.layer.defer_ack(h.0);
            }
            return Ok(n);
        }
        if let Some(e) = t.error {
            return Err(IoError::Failed(e));
        }
        if t.rcv_closed || t.shut_rd || len == 0 {
            return Ok(0);
        }
        match t.state {
            State::Closed | State::Listen => Err(IoError::NotConnected),
            _ => {
                // The reader will wait. If nothing comes for a while, the
                // empty rings give their pages back (not at once: a bulk
                // reader waits between bursts, and would reallocate its
                // ring each time).
                if t.recv.allocated() + t.send.allocated() > 0 && t.timer(Timer::Idle).is_none() {
                    t.idle_mark = t.bytes_in + t.bytes_out;
                    t.set_timer(Timer::Idle, Some(now + IDLE_RELEASE));
                    self.layer.reschedule(h.0);
                }
                Err(IoError::WouldBlock)
            }
        }
    }

    /// Shuts down one or both directions. Shutting down writing sends FIN
    /// after the queued data; shutting down reading discards what arrives.
    pub fn shutdown(&mut self, h: TcpHandle, how: Shutdown) -> Result<(), IoError> {
        let t = self.layer.tcb_mut(h);
        if matches!(t.state, State::Closed | State::Listen | State::SynSent) && t.error.is_none() {
            return Err(IoError::NotConnected);
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            t.shut_rd = true;
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.queue_fin(h.0);
        }
        if let Some(t) = self.layer.conns.get_mut(h.0) {
            t.release_unusable_buffers();
        }
        self.layer.notify(&mut self.cx, h.0);
        Ok(())
    }

    /// Queues FIN after the data and moves to FIN-WAIT-1 or LAST-ACK.
    fn queue_fin(&mut self, h: Handle) {
        let t = self.layer.conns.get_mut(h).expect("live");
        if t.fin_queued() {
            return;
        }
        match t.state {
            // RFC 9293 §3.10.4: in SYN-RECEIVED the FIN waits for ESTABLISHED;
            // the SYN-ACK must stay retransmittable until then.
            State::SynReceived => t.queue_fin(),
            State::Established => {
                t.queue_fin();
                t.set_state(State::FinWait1);
            }
            State::CloseWait => {
                t.queue_fin();
                t.set_state(State::LastAck);
            }
            _ => return,
        }
        self.layer.output(&mut self.cx, h);
    }

    /// The application is done with the connection. With unread data (or
    /// `abort`), the connection is reset (RFC 2525 §2.17, as Linux);
    /// otherwise FIN goes after the queued data and the core finishes the
    /// close on its own (FIN-WAIT, TIME-WAIT).
    pub fn close(&mut self, h: TcpHandle, abort: bool) {
        let t = self.layer.tcb_mut(h);
        if t.state != State::Closed {
            self.layer.orphans += 1;
        }
        let t = self.layer.tcb_mut(h);
        t.orphaned = true;
        t.owner = None; // as on Linux, what lingers (FIN_WAIT, TIME_WAIT) belongs to no process
        let unread = !t.recv.is_empty();
        match t.state {
            State::Closed | State::SynSent => self.layer.release(&mut self.cx, h.0, None),
            _ if abort || unread => {
                if t.state != State::TimeWait {
                    log::debug!(
                        "tcp {} -> {}: reset on close ({})",
                        t.local,
                        t.remote,
                        if abort { "abort" } else { "unread data" }
                    );
                    t.send_rst(&mut self.cx);
                }
                self.layer.release(&mut self.cx, h.0, None);
            }
            _ => {
                t.shut_rd = true;
                self.queue_fin(h.0);
                let (fin_timeout, max_orphans) = (self.layer.config.fin_timeout, self.layer.config.max_orphans);
                let now = self.cx.now();
                let too_many = self.layer.orphans > max_orphans;
                let Some(t) = self.layer.conns.get_mut(h.0) else { return };
                if too_many {
                    // As Linux's tcp_close under tcp_check_oom: "too many orphaned sockets".
                    log::debug!(
                        "tcp {} -> {}: too many orphans ({max_orphans}), reset",
                        t.local,
                        t.remote
                    );
                    self.cx.stats().tcp_orphan_overflows += 1;
                    t.send_rst(&mut self.cx);
                    self.layer.release(&mut self.cx, h.0, None);
                    return;
                }
                t.release_unusable_buffers();
                if t.state == State::FinWait2 {
                    t.set_timer(Timer::Linger, Some(now + fin_timeout));
                    self.layer.reschedule(h.0);
                }
            }
        }
    }

    /// Resets the connection now (RST to the peer); later calls see `NotConnected`.
    pub fn abort(&mut self, h: TcpHandle) {
        if let Some(t) = self.layer.conns.get(h.0) {
            t.send_rst(&mut self.cx);
        }
        self.layer.release(&mut self.cx, h.0, None);
    }

    /// Labels the connection with its user, for netstat.
    pub fn set_owner(&mut self, h: TcpHandle, owner: Option<Arc<str>>) {
        self.layer.tcb_mut(h).owner = owner;
    }

    /// Labels the listener (and the connections it will accept) with its user.
    pub fn set_listener_owner(&mut self, h: ListenerHandle, owner: Option<Arc<str>>) {
        if let Some(l) = self.layer.listeners.get_mut(h.0) {
            l.owner = owner;
        }
    }

    /// Turns Nagle's algorithm off (`TCP_NODELAY`) or on.
    pub fn set_nodelay(&mut self, h: TcpHandle, on: bool) {
        self.layer.tcb_mut(h).nodelay = on;
    }

    /// Switches the connection's congestion control (`TCP_CONGESTION`). As
    /// on Linux, the new algorithm starts from the current cwnd and
    /// ssthresh; choosing the one in use changes nothing.
    pub fn set_congestion(&mut self, h: TcpHandle, algorithm: CongestionAlgorithm) {
        let t = self.layer.tcb_mut(h);
        if t.cc.algorithm() != algorithm {
            log::debug!("tcp {} -> {}: congestion control {algorithm}", t.local, t.remote);
            t.cc = congestion::controller(algorithm, t.cc.window());
        }
    }

    /// Fixes the receive buffer at `bytes` (`SO_RCVBUF`, at least 2 KiB, at
    /// most the stack's cap): auto-tuning stops for this connection, as on
    /// Linux. The window scale stays as the SYN chose it; a smaller buffer
    /// takes effect as the application reads what the window already let in.
    pub fn set_recv_buffer_size(&mut self, h: TcpHandle, bytes: usize) {
        let t = self.layer.tcb_mut(h);
        let before = t.free_window();
        t.lock_recv_buffer(bytes);
        if t.state.synchronized() && t.free_window() > before {
            // A larger buffer opens the window: say so now.
            t.ack_now = true;
            self.layer.output(&mut self.cx, h.0);
        }
    }

    /// Takes the pending error, as Linux's `SO_ERROR`: the error that ended
    /// the connection (a reset, a timeout), once; else the latest soft
    /// error, an ICMP error about the connection's segments that did not end
    /// it (`sk_err_soft`). `recv` and `send` go on reporting an error that
    /// ended the connection.
    pub fn take_error(&mut self, h: TcpHandle) -> Option<ConnError> {
        let t = self.layer.tcb_mut(h);
        match t.error {
            Some(e) if !t.error_taken => {
                t.error_taken = true;
                Some(e)
            }
            _ => t.soft_error.take(),
        }
    }

    /// Fixes the send buffer at `bytes` (`SO_SNDBUF`, at least 2 KiB, at
    /// most the stack's cap): auto-tuning stops for this connection; what
    /// is queued stays.
    pub fn set_send_buffer_size(&mut self, h: TcpHandle, bytes: usize) {
        self.layer.tcb_mut(h).lock_send_buffer(bytes);
    }

    /// Turns keepalive on after `idle` without traffic, or off.
    pub fn set_keepalive(&mut self, h: TcpHandle, idle: Option<Duration>) {
        let now = self.cx.now();
        let t = self.layer.tcb_mut(h);
        t.keepalive = idle;
        t.keepalive_probes = 0;
        t.set_timer(
            Timer::Keepalive,
            idle.filter(|_| t.state.synchronized()).map(|i| now + i),
        );
        self.layer.reschedule(h.0);
    }
}
