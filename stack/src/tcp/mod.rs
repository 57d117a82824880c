//! TCP (RFC 9293): connections, listeners with real backlogs, and the
//! calls the runtime's `TcpListener` / `TcpStream` are built on.
//!
//! Files by concern: [`seq`] sequence numbers, [`tcb`] the connection block,
//! `input` segment arrival (RFC 9293 §3.10.7, RFC 5961), `output` what to
//! send and when (Nagle, silly-window avoidance, window updates), `timer`
//! retransmission, persist, delayed ACK, keepalive and TIME-WAIT,
//! [`buffer`] send/receive buffers with reassembly, [`rtt`] RFC 6298,
//! [`congestion`] NewReno behind a trait, [`isn`] RFC 6528.

#![forbid(unsafe_code)]

pub mod buffer;
pub mod congestion;
mod input;
pub mod isn;
mod output;
pub mod rtt;
pub mod seq;
pub mod tcb;
mod timer;

use crate::icmp::RateLimiter;
use crate::iface::{Interface, SocketEvent};
use crate::rand::{KeyedHasher, Rng, SeededState};
use crate::socket::{Handle, Slab};
use crate::time::{Duration, Instant};
use isn::IsnGenerator;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use tcb::{ConnError, State, Tcb, Timer};

/// TCP settings; defaults follow Linux.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Maximum segment lifetime; TIME-WAIT lasts twice this (Linux: 60 s TIME-WAIT).
    pub msl: Duration,
    /// RTO before any RTT sample (RFC 6298: 1 s).
    pub initial_rto: Duration,
    /// Smallest RTO (Linux: 200 ms).
    pub min_rto: Duration,
    /// Largest RTO (Linux: 120 s).
    pub max_rto: Duration,
    /// SYN retransmissions before a connect fails (Linux `tcp_syn_retries`: 6).
    pub syn_retries: u32,
    /// SYN-ACK retransmissions before a half-open connection is dropped (`tcp_synack_retries`: 5).
    pub synack_retries: u32,
    /// Data retransmissions before the connection aborts (`tcp_retries2`: 15).
    pub retries: u32,
    /// How long a closed socket may sit in FIN-WAIT-2 (`tcp_fin_timeout`: 60 s).
    pub fin_timeout: Duration,
    /// Delayed-ACK timeout (at most 500 ms per RFC 1122; Linux uses 40 ms).
    pub delayed_ack: Duration,
    /// Receive buffer limit per connection (grows with use up to this).
    pub recv_buffer: usize,
    /// Send buffer limit per connection (grows with use up to this).
    pub send_buffer: usize,
    /// Half-open (SYN-RECEIVED) connections per listener at most.
    pub syn_backlog: usize,
    /// Challenge ACKs per second for the whole stack (RFC 5961 §7).
    pub challenge_ack_limit: u32,
    /// Gap between keepalive probes (`tcp_keepalive_intvl`: 75 s).
    pub keepalive_interval: Duration,
    /// Unanswered keepalive probes before the connection aborts (`tcp_keepalive_probes`: 9).
    pub keepalive_probes: u32,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            msl: Duration::from_secs(30),
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            syn_retries: 6,
            synack_retries: 5,
            retries: 15,
            fin_timeout: Duration::from_secs(60),
            delayed_ack: Duration::from_millis(40),
            recv_buffer: 1 << 20,
            send_buffer: 1 << 20,
            syn_backlog: 256,
            challenge_ack_limit: 1000,
            keepalive_interval: Duration::from_secs(75),
            keepalive_probes: 9,
        }
    }
}

/// Refers to one TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpHandle(pub(crate) Handle);

/// Refers to one listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerHandle(pub(crate) Handle);

/// Why `listen` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenError {
    /// The port is taken.
    AddrInUse,
    /// Not one of our addresses.
    AddrNotAvailable,
}

/// Why `connect` failed at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// Port 0, address 0.0.0.0, or a broadcast address.
    InvalidAddress,
    /// No route to the peer.
    NetUnreachable,
    /// No free local port, or the 4-tuple is in use.
    AddrInUse,
    /// The local address is not ours.
    AddrNotAvailable,
}

/// Why a send or receive did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// Nothing can be done now; wait for an event.
    WouldBlock,
    /// Not connected (yet, or any more).
    NotConnected,
    /// Writing was shut down, or the connection is closing (EPIPE).
    BrokenPipe,
    /// The connection failed.
    Failed(ConnError),
}

/// Which directions `shutdown` closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// No more reads.
    Read,
    /// No more writes: FIN after the queued data.
    Write,
    /// Both.
    Both,
}

/// What `netstat` shows of a TCP connection or listener.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpInfo {
    /// Who uses it: a service name or pid/program, if the application said.
    pub owner: Option<Arc<str>>,
    /// State (LISTEN for listeners).
    pub state: State,
    /// Local address.
    pub local: SocketAddrV4,
    /// Peer (0.0.0.0:0 for listeners).
    pub remote: SocketAddrV4,
    /// Bytes received and not yet read (listeners: connections awaiting accept).
    pub recv_queue: usize,
    /// Bytes not yet acknowledged (listeners: the backlog).
    pub send_queue: usize,
    /// Smoothed RTT.
    pub srtt: Option<Duration>,
    /// Current RTO.
    pub rto: Duration,
    /// Congestion window in bytes.
    pub cwnd: usize,
    /// Slow-start threshold in bytes.
    pub ssthresh: usize,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent (first transmissions).
    pub bytes_out: u64,
}

/// A listening socket with its queues.
#[derive(Debug)]
pub(crate) struct Listener {
    local: SocketAddrV4,
    backlog: usize,
    /// Established connections waiting for `accept`, oldest first.
    accept_queue: VecDeque<Handle>,
    /// Connections in SYN-RECEIVED.
    half_open: usize,
    event_pending: bool,
    owner: Option<Arc<str>>,
}

/// Connection lookup key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FourTuple {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
}

/// All TCP state of an interface.
#[derive(Debug)]
pub(crate) struct TcpLayer {
    pub config: TcpConfig,
    pub conns: Slab<Tcb>,
    pub by_tuple: HashMap<FourTuple, Handle, SeededState>,
    listeners: Slab<Listener>,
    listen_ports: HashMap<u16, Handle, SeededState>,
    pub isn: IsnGenerator,
    /// Tests pin our ISN to exercise sequence wrap-around on the send side.
    #[cfg(test)]
    pub isn_override: Option<seq::SeqNum>,
    pub challenge_limiter: RateLimiter,
    /// Connection deadlines, earliest first; entries that no longer match
    /// their connection's `scheduled` are stale and skipped.
    heap: BinaryHeap<Reverse<(Instant, Handle)>>,
}

impl TcpLayer {
    pub fn new(config: TcpConfig, rng: &mut Rng) -> TcpLayer {
        TcpLayer {
            config,
            conns: Slab::default(),
            by_tuple: HashMap::with_hasher(SeededState::from_rng(rng)),
            listeners: Slab::default(),
            listen_ports: HashMap::with_hasher(SeededState::from_rng(rng)),
            isn: IsnGenerator::new(KeyedHasher::from_rng(rng)),
            #[cfg(test)]
            isn_override: None,
            challenge_limiter: RateLimiter::new(config.challenge_ack_limit, config.challenge_ack_limit),
            heap: BinaryHeap::new(),
        }
    }

    /// Our initial sequence number for a new connection (RFC 6528).
    pub fn choose_isn(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> seq::SeqNum {
        #[cfg(test)]
        if let Some(iss) = self.isn_override {
            return iss;
        }
        self.isn.isn(now, local, remote)
    }

    /// Re-files `h`'s earliest deadline in the heap if it moved earlier.
    pub fn reschedule(&mut self, h: Handle) {
        let Some(t) = self.conns.get_mut(h) else { return };
        let Some(next) = t.next_deadline() else { return };
        if t.scheduled.is_none_or(|s| next < s) {
            t.scheduled = Some(next);
            self.heap.push(Reverse((next, h)));
        }
    }

    /// The earliest deadline of any connection.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The listener for a segment to `local`, if any.
    fn listener_for(&self, local: SocketAddrV4) -> Option<Handle> {
        let h = *self.listen_ports.get(&local.port())?;
        let l = self.listeners.get(h)?;
        (l.local.ip().is_unspecified() || l.local.ip() == local.ip()).then_some(h)
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.listen_ports.contains_key(&port) || self.conns.iter().any(|(_, t)| t.local.port() == port)
    }
}

impl Interface {
    fn tcb(&self, h: TcpHandle) -> &Tcb {
        self.tcp
            .conns
            .get(h.0)
            .expect("TCP handle is stale: the connection was released")
    }

    fn tcb_mut(&mut self, h: TcpHandle) -> &mut Tcb {
        self.tcp
            .conns
            .get_mut(h.0)
            .expect("TCP handle is stale: the connection was released")
    }

    /// Queues an event for connection `h`.
    pub(crate) fn tcp_event(&mut self, h: Handle) {
        if let Some(t) = self.tcp.conns.get_mut(h) {
            if !t.event_pending {
                t.event_pending = true;
                self.events.push(SocketEvent::Tcp(TcpHandle(h)));
            }
        }
    }

    fn listener_event(&mut self, h: Handle) {
        if let Some(l) = self.tcp.listeners.get_mut(h) {
            if !l.event_pending {
                l.event_pending = true;
                self.events.push(SocketEvent::Listener(ListenerHandle(h)));
            }
        }
    }

    /// Marks a taken TCP event as seen.
    pub(crate) fn tcp_event_taken(&mut self, e: SocketEvent) {
        match e {
            SocketEvent::Tcp(h) => {
                if let Some(t) = self.tcp.conns.get_mut(h.0) {
                    t.event_pending = false;
                }
            }
            SocketEvent::Listener(h) => {
                if let Some(l) = self.tcp.listeners.get_mut(h.0) {
                    l.event_pending = false;
                }
            }
            SocketEvent::Udp(_) | SocketEvent::Icmp(_) => {}
        }
    }

    /// Starts listening on `local` (port 0: an ephemeral port); `backlog`
    /// bounds established connections waiting for `accept` (as Linux, up to
    /// `backlog + 1` may wait).
    pub fn tcp_listen(&mut self, local: SocketAddrV4, backlog: usize) -> Result<ListenerHandle, ListenError> {
        let ip = *local.ip();
        if !(ip.is_unspecified() || ip == self.config.address.addr()) {
            return Err(ListenError::AddrNotAvailable);
        }
        let port = if local.port() == 0 {
            self.tcp_ephemeral_port().ok_or(ListenError::AddrInUse)?
        } else {
            local.port()
        };
        if self.tcp.port_in_use(port) {
            return Err(ListenError::AddrInUse);
        }
        let local = SocketAddrV4::new(ip, port);
        let h = self.tcp.listeners.insert(Listener {
            local,
            backlog,
            accept_queue: VecDeque::new(),
            half_open: 0,
            event_pending: false,
            owner: None,
        });
        self.tcp.listen_ports.insert(port, h);
        log::debug!("tcp {local}: LISTEN (backlog {backlog})");
        Ok(ListenerHandle(h))
    }

    fn tcp_ephemeral_port(&mut self) -> Option<u16> {
        let (first, last) = (crate::udp::EPHEMERAL_FIRST, crate::udp::EPHEMERAL_LAST);
        let span = u32::from(last - first) + 1;
        let start = self.rng.below(u64::from(span)) as u32;
        let used: std::collections::HashSet<u16> = self
            .tcp
            .conns
            .iter()
            .map(|(_, t)| t.local.port())
            .chain(self.tcp.listen_ports.keys().copied())
            .collect();
        (0..span)
            .map(|i| first + ((start + i) % span) as u16)
            .find(|p| !used.contains(p))
    }

    /// The listener's local address.
    pub fn tcp_listener_addr(&self, h: ListenerHandle) -> SocketAddrV4 {
        self.tcp.listeners.get(h.0).expect("listener handle is stale").local
    }

    /// Takes the oldest established connection from the accept queue.
    pub fn tcp_accept(&mut self, h: ListenerHandle) -> Option<(TcpHandle, SocketAddrV4)> {
        let l = self.tcp.listeners.get_mut(h.0).expect("listener handle is stale");
        let c = l.accept_queue.pop_front()?;
        let t = self.tcp.conns.get_mut(c).expect("queued connections live");
        t.listener = None;
        t.queued = false;
        Some((TcpHandle(c), t.remote))
    }

    /// Whether `accept` would return a connection now.
    pub fn tcp_can_accept(&self, h: ListenerHandle) -> bool {
        self.tcp.listeners.get(h.0).is_some_and(|l| !l.accept_queue.is_empty())
    }

    /// Stops listening. Connections never accepted are reset (RFC 9293 §3.10.4).
    pub fn tcp_close_listener(&mut self, now: Instant, h: ListenerHandle) {
        let l = self.tcp.listeners.remove(h.0).expect("listener handle is stale");
        self.tcp.listen_ports.remove(&l.local.port());
        let orphans: Vec<Handle> = self
            .tcp
            .conns
            .iter()
            .filter(|(_, t)| t.listener == Some(h.0))
            .map(|(c, _)| c)
            .collect();
        for c in orphans {
            self.tcp_send_rst_for(c);
            self.tcp_release(now, c, None);
        }
        log::debug!("tcp {}: listener closed", l.local);
    }

    /// Opens a connection to `remote` (SYN now); `local_port` 0 picks an ephemeral port.
    pub fn tcp_connect(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        local_port: u16,
    ) -> Result<TcpHandle, ConnectError> {
        let rip = *remote.ip();
        if rip.is_unspecified()
            || remote.port() == 0
            || rip.is_broadcast()
            || rip.is_multicast()
            || Some(rip) == self.config.address.broadcast()
        {
            return Err(ConnectError::InvalidAddress);
        }
        if self.routes.lookup(rip).is_none() {
            return Err(ConnectError::NetUnreachable);
        }
        let port = if local_port == 0 {
            self.tcp_ephemeral_port().ok_or(ConnectError::AddrInUse)?
        } else {
            local_port
        };
        let local = SocketAddrV4::new(self.config.address.addr(), port);
        if self.tcp.by_tuple.contains_key(&FourTuple { local, remote }) {
            return Err(ConnectError::AddrInUse);
        }
        let iss = self.tcp.choose_isn(now, local, remote);
        let mut t = Tcb::new(&self.tcp.config, local, remote, iss, now, self.config.mtu);
        t.set_state(State::SynSent);
        let h = self.tcp.conns.insert(t);
        self.tcp.by_tuple.insert(FourTuple { local, remote }, h);
        self.tcp_output(now, h);
        Ok(TcpHandle(h))
    }

    /// The connection's state.
    pub fn tcp_state(&self, h: TcpHandle) -> State {
        self.tcb(h).state
    }

    /// Local and remote addresses.
    pub fn tcp_addrs(&self, h: TcpHandle) -> (SocketAddrV4, SocketAddrV4) {
        let t = self.tcb(h);
        (t.local, t.remote)
    }

    /// The error that ended the connection, if one did.
    pub fn tcp_error(&self, h: TcpHandle) -> Option<ConnError> {
        self.tcb(h).error
    }

    /// Whether a connect has finished (either way): not in SYN-SENT / SYN-RECEIVED.
    pub fn tcp_connect_done(&self, h: TcpHandle) -> bool {
        !matches!(self.tcb(h).state, State::SynSent | State::SynReceived)
    }

    /// Queues `data` for sending; returns how much fit in the send buffer.
    pub fn tcp_send(&mut self, now: Instant, h: TcpHandle, data: &[u8]) -> Result<usize, IoError> {
        let t = self.tcb_mut(h);
        if let Some(e) = t.error {
            return Err(IoError::Failed(e));
        }
        match t.state {
            State::SynSent | State::SynReceived => return Err(IoError::WouldBlock),
            State::Established | State::CloseWait => {}
            State::Closed | State::Listen => return Err(IoError::NotConnected),
            _ => return Err(IoError::BrokenPipe),
        }
        if t.fin_queued() {
            return Err(IoError::BrokenPipe);
        }
        let n = t.send.push(data);
        if n == 0 && !data.is_empty() {
            return Err(IoError::WouldBlock);
        }
        self.tcp_output(now, h.0);
        Ok(n)
    }

    /// Bytes the send buffer can take now.
    pub fn tcp_send_space(&self, h: TcpHandle) -> usize {
        self.tcb(h).send.free()
    }

    /// Bytes queued but not yet acknowledged.
    pub fn tcp_send_queue(&self, h: TcpHandle) -> usize {
        self.tcb(h).send.len()
    }

    /// Reads received bytes; `Ok(0)` is end of stream (FIN, or shut down for reading).
    pub fn tcp_recv(&mut self, now: Instant, h: TcpHandle, buf: &mut [u8]) -> Result<usize, IoError> {
        let t = self.tcb_mut(h);
        if !t.recv.is_empty() && !buf.is_empty() {
            let old_window = t.rcv_wnd();
            let n = t.recv.read(buf);
            // Announce a window that opened by a useful amount (receiver SWS avoidance).
            let threshold = (t.recv.limit() / 2).min(t.rcv_mss);
            if t.state.synchronized() && t.free_window() >= old_window as usize + threshold {
                t.ack_now = true;
                self.tcp_output(now, h.0);
            }
            return Ok(n);
        }
        if let Some(e) = t.error {
            return Err(IoError::Failed(e));
        }
        if t.rcv_closed || t.shut_rd || buf.is_empty() {
            return Ok(0);
        }
        match t.state {
            State::Closed | State::Listen => Err(IoError::NotConnected),
            _ => Err(IoError::WouldBlock),
        }
    }

    /// Bytes ready to read.
    pub fn tcp_recv_queue(&self, h: TcpHandle) -> usize {
        self.tcb(h).recv.len()
    }

    /// Whether a receive would return at once (data, end of stream, or an error).
    pub fn tcp_can_recv(&self, h: TcpHandle) -> bool {
        let t = self.tcb(h);
        !t.recv.is_empty() || t.rcv_closed || t.shut_rd || t.error.is_some() || t.state == State::Closed
    }

    /// Shuts down one or both directions. Shutting down writing sends FIN
    /// after the queued data; shutting down reading discards what arrives.
    pub fn tcp_shutdown(&mut self, now: Instant, h: TcpHandle, how: Shutdown) -> Result<(), IoError> {
        let t = self.tcb_mut(h);
        if matches!(t.state, State::Closed | State::Listen | State::SynSent) && t.error.is_none() {
            return Err(IoError::NotConnected);
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            t.shut_rd = true;
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.tcp_queue_fin(now, h.0);
        }
        self.tcp_event(h.0);
        Ok(())
    }

    /// Queues FIN after the data and moves to FIN-WAIT-1 or LAST-ACK.
    fn tcp_queue_fin(&mut self, now: Instant, h: Handle) {
        let t = self.tcp.conns.get_mut(h).expect("live");
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
        self.tcp_output(now, h);
    }

    /// The application is done with the connection. With unread data (or
    /// `abort`), the connection is reset (RFC 2525 §2.17, as Linux);
    /// otherwise FIN goes after the queued data and the core finishes the
    /// close on its own (FIN-WAIT, TIME-WAIT).
    pub fn tcp_close(&mut self, now: Instant, h: TcpHandle, abort: bool) {
        let t = self.tcb_mut(h);
        t.orphaned = true;
        let unread = !t.recv.is_empty();
        match t.state {
            State::Closed => self.tcp_release(now, h.0, None),
            State::SynSent => self.tcp_release(now, h.0, None),
            _ if abort || unread => {
                if t.state != State::TimeWait {
                    log::debug!(
                        "tcp {} -> {}: reset on close ({})",
                        t.local,
                        t.remote,
                        if abort { "abort" } else { "unread data" }
                    );
                    self.tcp_send_rst_for(h.0);
                }
                self.tcp_release(now, h.0, None);
            }
            _ => {
                t.shut_rd = true;
                self.tcp_queue_fin(now, h.0);
                let fin_timeout = self.tcp.config.fin_timeout;
                let t = self.tcb_mut(h);
                if t.state == State::FinWait2 {
                    t.set_timer(Timer::Linger, Some(now + fin_timeout));
                    self.tcp.reschedule(h.0);
                }
            }
        }
    }

    /// Resets the connection now (RST to the peer); later calls see `NotConnected`.
    pub fn tcp_abort(&mut self, now: Instant, h: TcpHandle) {
        self.tcp_send_rst_for(h.0);
        self.tcp_release(now, h.0, None);
    }

    /// Labels the connection with its user, for netstat.
    pub fn tcp_set_owner(&mut self, h: TcpHandle, owner: Option<Arc<str>>) {
        self.tcb_mut(h).owner = owner;
    }

    /// Labels the listener (and the connections it will accept) with its user.
    pub fn tcp_listener_set_owner(&mut self, h: ListenerHandle, owner: Option<Arc<str>>) {
        if let Some(l) = self.tcp.listeners.get_mut(h.0) {
            l.owner = owner;
        }
    }

    /// Turns Nagle's algorithm off (`TCP_NODELAY`) or on.
    pub fn tcp_set_nodelay(&mut self, h: TcpHandle, on: bool) {
        self.tcb_mut(h).nodelay = on;
    }

    /// Whether Nagle's algorithm is off.
    pub fn tcp_nodelay(&self, h: TcpHandle) -> bool {
        self.tcb(h).nodelay
    }

    /// Turns keepalive on after `idle` without traffic, or off.
    pub fn tcp_set_keepalive(&mut self, now: Instant, h: TcpHandle, idle: Option<Duration>) {
        let t = self.tcb_mut(h);
        t.keepalive = idle;
        t.keepalive_probes = 0;
        t.set_timer(
            Timer::Keepalive,
            idle.filter(|_| t.state.synchronized()).map(|i| now + i),
        );
        self.tcp.reschedule(h.0);
    }

    /// Every connection and listener, for `netstat`.
    pub fn tcp_sockets(&self) -> Vec<TcpInfo> {
        let mut out: Vec<TcpInfo> = self
            .tcp
            .listeners
            .iter()
            .map(|(_, l)| TcpInfo {
                owner: l.owner.clone(),
                state: State::Listen,
                local: l.local,
                remote: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                recv_queue: l.accept_queue.len(),
                send_queue: l.backlog,
                srtt: None,
                rto: Duration::ZERO,
                cwnd: 0,
                ssthresh: 0,
                retransmits: 0,
                bytes_in: 0,
                bytes_out: 0,
            })
            .collect();
        out.extend(
            self.tcp
                .conns
                .iter()
                .filter(|(_, t)| t.state != State::Closed)
                .map(|(_, t)| TcpInfo {
                    owner: t.owner.clone(),
                    state: t.state,
                    local: t.local,
                    remote: t.remote,
                    recv_queue: t.recv.len(),
                    send_queue: t.send.len(),
                    srtt: t.rtt.srtt(),
                    rto: t.rtt.backed_off(t.backoff),
                    cwnd: t.cc.cwnd(),
                    ssthresh: t.cc.ssthresh(),
                    retransmits: t.retransmits,
                    bytes_in: t.bytes_in,
                    bytes_out: t.bytes_out,
                }),
        );
        out
    }

    /// Connections in the table (any state but released), for tests and tools.
    pub fn tcp_connection_count(&self) -> usize {
        self.tcp.conns.len()
    }

    /// Moves a connection to CLOSED: it leaves the lookup table, its timers
    /// stop, `error` is recorded for the application, and the block is freed
    /// once nobody holds it.
    pub(crate) fn tcp_release(&mut self, _now: Instant, h: Handle, error: Option<ConnError>) {
        let Some(t) = self.tcp.conns.get_mut(h) else { return };
        let was_half_open = t.state == State::SynReceived;
        t.set_state(State::Closed);
        t.timers = [None; tcb::TIMERS];
        if error.is_some() && t.error.is_none() {
            t.error = error;
        }
        let (local, remote, listener, queued, orphaned) = (t.local, t.remote, t.listener, t.queued, t.orphaned);
        if self.tcp.by_tuple.get(&FourTuple { local, remote }) == Some(&h) {
            self.tcp.by_tuple.remove(&FourTuple { local, remote });
        }
        if let Some(l) = listener.and_then(|l| self.tcp.listeners.get_mut(l)) {
            if was_half_open {
                l.half_open = l.half_open.saturating_sub(1);
            }
            if queued {
                l.accept_queue.retain(|c| *c != h);
            }
        }
        if orphaned || listener.is_some() {
            self.tcp.conns.remove(h);
        } else {
            self.tcp_event(h);
        }
    }

    /// Frees a connection the application has closed and that reached CLOSED.
    pub(crate) fn tcp_reap_if_done(&mut self, h: Handle) {
        if let Some(t) = self.tcp.conns.get(h) {
            if t.state == State::Closed && (t.orphaned || t.listener.is_some()) {
                self.tcp.conns.remove(h);
            }
        }
    }

    /// A connection finished its handshake: it joins its listener's accept queue.
    fn tcp_enqueue_accept(&mut self, h: Handle) {
        let Some(lh) = self.tcp.conns.get(h).and_then(|t| t.listener) else {
            return;
        };
        let Some(l) = self.tcp.listeners.get_mut(lh) else {
            return;
        };
        l.half_open = l.half_open.saturating_sub(1);
        l.accept_queue.push_back(h);
        self.tcp.conns.get_mut(h).expect("live").queued = true;
        self.listener_event(lh);
    }

    /// Whether the listener's accept queue is full (Linux: more than `backlog` waiting).
    fn tcp_accept_queue_full(&self, lh: Handle) -> bool {
        self.tcp
            .listeners
            .get(lh)
            .is_none_or(|l| l.accept_queue.len() > l.backlog)
    }
}

#[cfg(test)]
mod tests;
