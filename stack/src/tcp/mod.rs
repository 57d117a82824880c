//! TCP (RFC 9293): connections, listeners with real backlogs, and the
//! socket calls `TcpListener` / `TcpStream` are built on.
//!
//! Files by concern: [`tcb`] the connection block and its states, `input`
//! segment arrival (RFC 9293 §3.10.7, RFC 5961), `ack` acknowledgments
//! (RTT, congestion, loss recovery), `sack` the scoreboard of segments in
//! flight, `rack` RACK-TLP loss detection, `undo` spurious-retransmission
//! detection, `output` what to send and
//! when (Nagle, silly-window avoidance, window updates), `timer`
//! retransmission, persist, delayed ACK, keepalive and TIME-WAIT, `icmp`
//! ICMP errors about our segments (RFC 5927), `api` the socket calls, `ports` ephemeral ports for active opens (RFC 6056), [`buffer`] send/receive buffers with reassembly,
//! `autotune` how big those buffers may grow (Linux's auto-tuning), [`rtt`]
//! RFC 6298, [`congestion`] CUBIC with HyStart++ and NewReno behind a trait, [`isn`] RFC 6528,
//! `syncookie` SYN cookies for listeners under a SYN flood (RFC 4987),
//! `timewait` the compact, capped TIME-WAIT table.
//! Sequence numbers ([`SeqNum`]) live with the wire format, in `wire::seq`.
//!
//! # The path of a segment
//!
//! In, from the TUN to `TcpStream::read`:
//!
//! 1. The runtime's stack thread (`runtime::stack_thread`) reads a batch of
//!    packets from the device and hands each to [`Interface::handle_packet`].
//! 2. IP (`ip::layer::IpLayer::input`) validates the header, checks the
//!    source and destination, reassembles fragments, and hands the whole
//!    datagram to the interface's protocol dispatch with a `Context`.
//! 3. [`TcpLayer::input`] (`input.rs`) parses the segment
//!    ([`TcpSegment::parse`](crate::wire::tcp::TcpSegment::parse): checksum,
//!    options), finds the connection by its 4-tuple (or a listener), and
//!    runs RFC 9293's "segment arrives" steps on its [`Tcb`](tcb::Tcb):
//!    acceptability, RST, SYN, ACK (`process_ack`), data (`receive_text`
//!    writes into the [`RecvBuffer`](buffer::RecvBuffer), in order or as an
//!    island), FIN.
//! 4. The connection answers at once if it must (`Tcb::output`) and raises
//!    a [`SocketEvent::Tcp`]; the runtime wakes the threads waiting on it.
//! 5. `net::TcpStream::read` (in `net/tcp.rs`) locks the stack, calls
//!    [`Sockets::recv`](Sockets), which copies from the receive buffer and
//!    may announce a window that opened.
//!
//! Out, from `TcpStream::write` to the TUN:
//!
//! 1. `net::TcpStream::write` calls [`Sockets::send`](Sockets), which
//!    appends to the connection's [`SendBuffer`](buffer::SendBuffer).
//! 2. `Tcb::output` (`output.rs`) asks `next_segment` what may leave now
//!    (flow and congestion windows, Nagle, sender SWS) and `transmit`
//!    writes each segment with
//!    [`TcpSegment::emit_with`](crate::wire::tcp::TcpSegment::emit_with),
//!    the payload copied once, straight from the send buffer.
//! 3. `Context::send_datagram` puts an IPv4 header on it and queues it
//!    (`ip::output::TxQueue`), fragmenting at the MTU if it must.
//! 4. The stack thread drains [`Interface::poll_transmit`] into a batch and
//!    writes the batch to the device, outside the lock.
//!
//! Timers (retransmission, delayed ACK, ...) fire from
//! [`Interface::handle_timeout`] through `TcpLayer::handle_timeouts` (`timer.rs`).
//!
//! [`Interface::handle_packet`]: crate::iface::Interface::handle_packet
//! [`Interface::handle_timeout`]: crate::iface::Interface::handle_timeout
//! [`Interface::poll_transmit`]: crate::iface::Interface::poll_transmit
//! [`SocketEvent::Tcp`]: crate::socket::SocketEvent::Tcp

#![forbid(unsafe_code)]

mod ack;
mod api;
mod autotune;
pub(crate) mod buffer;
pub(crate) mod congestion;
mod error;
mod icmp;
mod input;
pub(crate) mod isn;
mod memory;
mod output;
mod ports;
mod rack;
pub(crate) mod rtt;
mod sack;
mod syncookie;
pub(crate) mod tcb;
mod timer;
mod timewait;
mod undo;

use crate::ip::context::Context;
use crate::rand::{KeyedHasher, Rng, SeededState};
use crate::ratelimit::RateLimiter;
use crate::socket::{Handle, Slab, SocketEvent};
use crate::time::{Duration, Instant};
use crate::wire::seq::SeqNum;
use isn::IsnGenerator;
use ports::PortPicker;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use tcb::Tcb;
use timewait::TimeWaitTable;

pub use crate::socket::{ListenerHandle, TcpHandle};
pub use api::TcpReadiness;
pub use congestion::{CongestionAlgorithm, UnknownAlgorithm};
pub use error::{ConnError, ConnectError, IoError, ListenError};
pub use memory::{MemoryLimits, MemoryUsage};
pub use syncookie::SynCookies;
pub use tcb::{RecoveryCounts, State};

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
    /// Retransmissions or zero-window probes an orphan (a connection its
    /// application closed) gets before it is given up, in FIN-WAIT-1,
    /// CLOSING and LAST-ACK (Linux's `tcp_orphan_retries`, whose 0 means 8).
    /// Only progress (SND.UNA moving, the window opening) starts the count
    /// again: a peer that ACKs with a zero window forever does not.
    pub orphan_retries: u32,
    /// Orphans held at most; closing one more resets it at once (Linux's
    /// `tcp_max_orphans`, "too many orphaned sockets"). TIME-WAIT entries
    /// are not orphans: they have their own cap.
    pub max_orphans: usize,
    /// TIME-WAIT entries held at most; a connection that would enter
    /// TIME-WAIT beyond it is just freed (Linux's `tcp_max_tw_buckets`).
    pub max_tw_buckets: usize,
    /// Delayed-ACK timeout (at most 500 ms per RFC 1122; Linux uses 40 ms).
    pub delayed_ack: Duration,
    /// Largest receive buffer per connection (Linux's `tcp_rmem[2]`: 6 MiB):
    /// auto-tuning grows each connection's buffer towards twice what the
    /// path delivers per round trip, up to this; the window scale is chosen
    /// for it. Counts payload bytes, not memory with overhead as Linux does.
    pub recv_buffer: usize,
    /// Receive buffer a connection starts with, at most `recv_buffer` (64 KiB:
    /// the window Linux's `tcp_rmem[1]` of 128 KiB gives).
    pub recv_buffer_initial: usize,
    /// Largest send buffer per connection: auto-tuning keeps it at twice the
    /// congestion window, up to this. 1 MiB, not Linux's `tcp_wmem[2]` of
    /// 4 MiB: Linux keeps its own queues short (TCP small queues), while
    /// here what a larger buffer lets into flight on a TUN only queues in
    /// the host (a 0.1 ms round trip became 15 ms, and a bulk send lost a
    /// third of its speed). Raise it for long fat paths.
    pub send_buffer: usize,
    /// Send buffer a connection starts with, at most `send_buffer`: 64 KiB,
    /// as much as the receive buffer starts with (Linux starts at about two
    /// initial windows, 29 KiB of payload). Smaller, an application that
    /// writes back what it reads (an echo, a proxy) blocks in mid-write on a
    /// lossy path, stops reading, and closes its receive window: a 10 MB
    /// echo through 5% loss each way took 1.5 s at 16 KiB and 0.8-1.2 s at
    /// 64 KiB. Memory is still taken only as data arrives.
    pub send_buffer_initial: usize,
    /// Half-open (SYN-RECEIVED) connections per listener at most.
    pub syn_backlog: usize,
    /// When SYNs are answered with SYN cookies and no state (Linux's
    /// `tcp_syncookies`: on once the SYN queue is full).
    pub syncookies: SynCookies,
    /// Challenge ACKs per second for the whole stack (RFC 5961 §7).
    pub challenge_ack_limit: u32,
    /// Gap between keepalive probes (`tcp_keepalive_intvl`: 75 s).
    pub keepalive_interval: Duration,
    /// Unanswered keepalive probes before the connection aborts (`tcp_keepalive_probes`: 9).
    pub keepalive_probes: u32,
    /// Offer and use timestamps (RFC 7323; Linux's `tcp_timestamps`).
    pub timestamps: bool,
    /// Offer SACK and send SACK blocks (RFC 2018, 2883; Linux's `tcp_sack`).
    pub sack: bool,
    /// Congestion control of new connections (Linux's `tcp_congestion_control`: cubic).
    pub congestion: CongestionAlgorithm,
    /// Let an active open take a 4-tuple still in TIME-WAIT when timestamps
    /// make it safe: the old connection used them and its last one is over
    /// a second old, so the peer's PAWS tells old segments from new (Linux's
    /// `tcp_tw_reuse` = 1, whose default 2 allows it on loopback only).
    /// Without it, connects to one server are capped at the range's size
    /// per 2×MSL: about 270 a second.
    pub tw_reuse: bool,
    /// Connections (any state but LISTEN) the stack holds at most: past
    /// it, a SYN is dropped and `connect` fails (ENOBUFS). Linux has no one
    /// knob; file limits and `tcp_max_syn_backlog` play this part.
    pub max_connections: usize,
    /// The budget for all connections' buffer memory (Linux's `tcp_mem`).
    pub memory: MemoryLimits,
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
            orphan_retries: 8,
            max_orphans: 4096,
            max_tw_buckets: 16384,
            delayed_ack: Duration::from_millis(40),
            recv_buffer: 6 << 20,
            recv_buffer_initial: 64 << 10,
            send_buffer: 1 << 20,
            send_buffer_initial: 64 << 10,
            syn_backlog: 256,
            syncookies: SynCookies::On,
            challenge_ack_limit: 1000,
            keepalive_interval: Duration::from_secs(75),
            keepalive_probes: 9,
            timestamps: true,
            sack: true,
            congestion: CongestionAlgorithm::Cubic,
            tw_reuse: true,
            max_connections: 32_768,
            memory: MemoryLimits::default(),
        }
    }
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
    /// The receiver's RTT estimate, which receive buffer auto-tuning uses (`ss`'s rcv_rtt).
    pub rcv_rtt: Option<Duration>,
    /// Current RTO.
    pub rto: Duration,
    /// Congestion window in bytes.
    pub cwnd: usize,
    /// Slow-start threshold in bytes (`usize::MAX` until the first loss).
    pub ssthresh: usize,
    /// Largest segment we send, in bytes (0 for listeners).
    pub mss: usize,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent (first transmissions).
    pub bytes_out: u64,
    /// What loss recovery did (zero for listeners).
    pub recovery: RecoveryCounts,
    /// Receive buffer limit in bytes, as auto-tuning or the application set it (0 for listeners).
    pub recv_buffer: usize,
    /// Memory the receive buffer holds now, in bytes.
    pub recv_allocated: usize,
    /// Send buffer limit in bytes.
    pub send_buffer: usize,
    /// Memory the send buffer holds now, in bytes.
    pub send_allocated: usize,
}

impl TcpInfo {
    /// A row with nothing in it but its state (listeners and TIME-WAIT fill in the rest).
    fn idle() -> TcpInfo {
        TcpInfo {
            owner: None,
            state: State::Closed,
            local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            remote: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            recv_queue: 0,
            send_queue: 0,
            srtt: None,
            rcv_rtt: None,
            rto: Duration::ZERO,
            cwnd: 0,
            ssthresh: 0,
            mss: 0,
            retransmits: 0,
            bytes_in: 0,
            bytes_out: 0,
            recovery: RecoveryCounts::default(),
            recv_buffer: 0,
            recv_allocated: 0,
            send_buffer: 0,
            send_allocated: 0,
        }
    }
}

/// One connection's sequence-space variables (RFC 9293 §3.3.1), as
/// [`TcpLayer::seq_space`] reads them for the fuzz targets.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqSpace {
    /// Our initial sequence number.
    pub iss: SeqNum,
    /// Oldest unacknowledged sequence number.
    pub snd_una: SeqNum,
    /// Next sequence number to send.
    pub snd_nxt: SeqNum,
    /// Highest sequence number sent.
    pub snd_max: SeqNum,
    /// The peer's initial sequence number (0 before its SYN).
    pub irs: SeqNum,
    /// Next sequence number expected.
    pub rcv_nxt: SeqNum,
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
    /// When it last sent a SYN cookie.
    cookies: syncookie::ListenerCookies,
}

/// Connection lookup key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FourTuple {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
}

/// The TCP connections and listeners of an interface. Read-only queries
/// are here; socket calls that change state are on
/// [`Sockets<TcpLayer>`](Sockets), from [`Interface::tcp`](crate::iface::Interface::tcp).
#[derive(Debug)]
pub struct TcpLayer {
    config: TcpConfig,
    conns: Slab<Tcb>,
    by_tuple: HashMap<FourTuple, Handle, SeededState>,
    listeners: Slab<Listener>,
    listen_ports: HashMap<u16, Handle, SeededState>,
    isn: IsnGenerator,
    /// SYN cookies, keyed with the ISN secret.
    cookies: syncookie::CookieJar,
    ports: PortPicker,
    /// Tests pin our ISN to exercise sequence wrap-around on the send side.
    #[cfg(test)]
    isn_override: Option<SeqNum>,
    challenge_limiter: RateLimiter,
    /// Connection deadlines, earliest first; entries that no longer match
    /// their connection's `scheduled` are stale and skipped.
    heap: BinaryHeap<Reverse<(Instant, Handle)>>,
    /// Connections owing an ACK at the end of the batch (`Tcb::ack_deferred`).
    deferred_acks: Vec<Handle>,
    /// Connections with more to send once the link's queue drains (`Tcb::tx_pending`), in turn.
    tx_ready: VecDeque<Handle>,
    /// Closed connections waiting out 2×MSL, compact (`timewait`).
    time_wait: TimeWaitTable,
    /// Connections the application closed that the core still finishes
    /// (`Tcb::orphaned`, not yet released), against `TcpConfig::max_orphans`.
    orphans: usize,
    /// The budget every connection's buffers draw from.
    memory: memory::MemoryAccount,
}

impl TcpLayer {
    pub(crate) fn new(config: TcpConfig, rng: &mut Rng) -> TcpLayer {
        let by_tuple = HashMap::with_hasher(SeededState::from_rng(rng));
        let listen_ports = HashMap::with_hasher(SeededState::from_rng(rng));
        // One secret for ISNs, timestamp offsets, SYN cookies and ports, each hashing
        // its own kind of input (draws from `rng` as before).
        let secret = KeyedHasher::from_rng(rng);
        let time_wait = TimeWaitTable::new(*by_tuple.hasher());
        TcpLayer {
            config,
            conns: Slab::default(),
            by_tuple,
            listeners: Slab::default(),
            listen_ports,
            isn: IsnGenerator::new(secret),
            cookies: syncookie::CookieJar::new(secret),
            ports: PortPicker::new(secret),
            #[cfg(test)]
            isn_override: None,
            challenge_limiter: RateLimiter::new(config.challenge_ack_limit, config.challenge_ack_limit),
            heap: BinaryHeap::new(),
            deferred_acks: Vec::new(),
            tx_ready: VecDeque::new(),
            time_wait,
            orphans: 0,
            memory: memory::MemoryAccount::new(config.memory),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }

    fn tcb(&self, h: TcpHandle) -> &Tcb {
        self.conns
            .get(h.0)
            .expect("TCP handle is stale: the connection was released")
    }

    fn tcb_mut(&mut self, h: TcpHandle) -> &mut Tcb {
        self.conns
            .get_mut(h.0)
            .expect("TCP handle is stale: the connection was released")
    }

    /// Our initial sequence number for a new connection (RFC 6528).
    fn choose_isn(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> SeqNum {
        #[cfg(test)]
        if let Some(iss) = self.isn_override {
            return iss;
        }
        self.isn.isn(now, local, remote)
    }

    /// Pins our ISN for every new connection (tests of sequence wrap-around).
    #[cfg(test)]
    pub(crate) fn pin_isn(&mut self, iss: SeqNum) {
        self.isn_override = Some(iss);
    }

    /// Re-files `h`'s earliest deadline in the heap if it moved earlier,
    /// and lists it if it has output waiting for room in the link's queue.
    fn reschedule(&mut self, h: Handle) {
        let Some(t) = self.conns.get_mut(h) else { return };
        if t.tx_pending && !t.tx_listed {
            t.tx_listed = true;
            self.tx_ready.push_back(h);
        }
        let Some(next) = t.next_deadline() else { return };
        if t.scheduled.is_none_or(|s| next < s) {
            t.scheduled = Some(next);
            self.heap.push(Reverse((next, h)));
        }
    }

    /// Sends whatever connection `h` has to send now, and files its timers.
    fn output(&mut self, cx: &mut Context<'_>, h: Handle) {
        if let Some(t) = self.conns.get_mut(h) {
            t.output(cx);
        }
        self.reschedule(h);
    }

    /// Whether ACKs wait for [`flush_deferred_acks`](Self::flush_deferred_acks)
    /// or segments for [`pull_output`](Self::pull_output).
    pub(crate) fn has_output(&self) -> bool {
        !self.deferred_acks.is_empty() || !self.tx_ready.is_empty()
    }

    /// Builds the next segments of connections that stopped for room in
    /// the link's queue, each in turn, until the queue holds enough again.
    pub(crate) fn pull_output(&mut self, cx: &mut Context<'_>) {
        while cx.tx_backlog() < tcb::BUILD_AHEAD {
            let Some(h) = self.tx_ready.pop_front() else { break };
            let Some(t) = self.conns.get_mut(h) else { continue };
            t.tx_listed = false;
            if std::mem::take(&mut t.tx_pending) {
                self.output(cx, h);
            }
        }
    }

    /// Owes an ACK for `h` that the next output sends, unless data carries it first.
    pub(crate) fn defer_ack(&mut self, h: Handle) {
        if let Some(t) = self.conns.get_mut(h) {
            t.ack_deferred = true;
            if !t.ack_listed {
                t.ack_listed = true;
                self.deferred_acks.push(h);
            }
        }
    }

    /// Sends the ACKs deferred to the end of the batch of received packets,
    /// one per connection, unless data carried them meanwhile.
    pub(crate) fn flush_deferred_acks(&mut self, cx: &mut Context<'_>) {
        let mut list = std::mem::take(&mut self.deferred_acks);
        for h in list.drain(..) {
            let Some(t) = self.conns.get_mut(h) else { continue };
            t.ack_listed = false;
            if std::mem::take(&mut t.ack_deferred) {
                t.ack_now = true;
                self.output(cx, h);
            }
        }
        self.deferred_acks = list;
    }

    /// The earliest deadline of any connection.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let conns = self.heap.peek().map(|Reverse((t, _))| *t);
        match (conns, self.time_wait.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The listener for a segment to `local`, if any.
    fn listener_for(&self, local: SocketAddrV4) -> Option<Handle> {
        let h = *self.listen_ports.get(&local.port())?;
        let l = self.listeners.get(h)?;
        (l.local.ip().is_unspecified() || l.local.ip() == local.ip()).then_some(h)
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.listen_ports.contains_key(&port)
            || self.conns.iter().any(|(_, t)| t.local.port() == port)
            || self.time_wait.iter().any(|(k, _)| k.local.port() == port)
    }

    /// Queues an event for connection `h`.
    fn notify(&mut self, cx: &mut Context<'_>, h: Handle) {
        if let Some(t) = self.conns.get_mut(h) {
            if !t.event_pending {
                t.event_pending = true;
                cx.notify(SocketEvent::Tcp(TcpHandle(h)));
            }
        }
    }

    fn notify_listener(&mut self, cx: &mut Context<'_>, h: Handle) {
        if let Some(l) = self.listeners.get_mut(h) {
            if !l.event_pending {
                l.event_pending = true;
                cx.notify(SocketEvent::Listener(ListenerHandle(h)));
            }
        }
    }

    /// Marks a taken TCP event as seen.
    pub(crate) fn event_taken(&mut self, e: SocketEvent) {
        match e {
            SocketEvent::Tcp(h) => {
                if let Some(t) = self.conns.get_mut(h.0) {
                    t.event_pending = false;
                }
            }
            SocketEvent::Listener(h) => {
                if let Some(l) = self.listeners.get_mut(h.0) {
                    l.event_pending = false;
                }
            }
            SocketEvent::Udp(_) | SocketEvent::Icmp(_) => {}
        }
    }

    /// Moves a connection to CLOSED: it leaves the lookup table, its timers
    /// stop, `error` is recorded for the application, and the block is freed
    /// once nobody holds it.
    fn release(&mut self, cx: &mut Context<'_>, h: Handle, error: Option<ConnError>) {
        let Some(t) = self.conns.get_mut(h) else { return };
        let was_half_open = t.state == State::SynReceived;
        if t.orphaned && t.state != State::Closed {
            self.orphans -= 1;
        }
        t.set_state(State::Closed);
        t.timers = [None; tcb::TIMERS];
        // Nothing can be sent any more; what was received stays readable.
        t.send.discard_all();
        t.release_unusable_buffers();
        if error.is_some() && t.error.is_none() {
            t.error = error;
        }
        let (local, remote, listener, queued, orphaned) = (t.local, t.remote, t.listener, t.queued, t.orphaned);
        if self.by_tuple.get(&FourTuple { local, remote }) == Some(&h) {
            self.by_tuple.remove(&FourTuple { local, remote });
        }
        if let Some(l) = listener.and_then(|l| self.listeners.get_mut(l)) {
            if was_half_open {
                l.half_open = l.half_open.saturating_sub(1);
            }
            if queued {
                l.accept_queue.retain(|c| *c != h);
            }
        }
        if orphaned || listener.is_some() {
            self.conns.remove(h);
        } else {
            self.notify(cx, h);
        }
    }

    /// A connection finished its handshake: it joins its listener's accept queue.
    fn enqueue_accept(&mut self, cx: &mut Context<'_>, h: Handle) {
        let Some(lh) = self.conns.get(h).and_then(|t| t.listener) else {
            return;
        };
        let Some(l) = self.listeners.get_mut(lh) else {
            return;
        };
        l.half_open = l.half_open.saturating_sub(1);
        l.accept_queue.push_back(h);
        cx.stats().tcp_passive_opens += 1;
        self.conns.get_mut(h).expect("live").queued = true;
        self.notify_listener(cx, lh);
    }

    /// Whether the listener's accept queue is full (Linux: more than `backlog` waiting).
    fn accept_queue_full(&self, lh: Handle) -> bool {
        self.listeners.get(lh).is_none_or(|l| l.accept_queue.len() > l.backlog)
    }

    /// The connection's state.
    pub fn state(&self, h: TcpHandle) -> State {
        self.tcb(h).state
    }

    /// Local and remote addresses.
    pub fn addrs(&self, h: TcpHandle) -> (SocketAddrV4, SocketAddrV4) {
        let t = self.tcb(h);
        (t.local, t.remote)
    }

    /// The error that ended the connection, if one did.
    pub fn error(&self, h: TcpHandle) -> Option<ConnError> {
        self.tcb(h).error
    }

    /// Whether a connect has finished (either way): not in SYN-SENT / SYN-RECEIVED.
    pub fn connect_done(&self, h: TcpHandle) -> bool {
        !matches!(self.tcb(h).state, State::SynSent | State::SynReceived)
    }

    /// Bytes the send buffer can take now.
    pub fn send_space(&self, h: TcpHandle) -> usize {
        self.tcb(h).send.free()
    }

    /// The receive buffer's limit in bytes (`SO_RCVBUF`), as auto-tuning or the application set it.
    pub fn recv_buffer_size(&self, h: TcpHandle) -> usize {
        self.tcb(h).recv.limit()
    }

    /// The send buffer's limit in bytes (`SO_SNDBUF`).
    pub fn send_buffer_size(&self, h: TcpHandle) -> usize {
        self.tcb(h).send.limit()
    }

    /// Bytes queued but not yet acknowledged.
    pub fn send_queue(&self, h: TcpHandle) -> usize {
        self.tcb(h).send.len()
    }

    /// Bytes ready to read.
    pub fn recv_queue(&self, h: TcpHandle) -> usize {
        self.tcb(h).recv.len()
    }

    /// Whether a receive would return at once (data, end of stream, or an error).
    pub fn can_recv(&self, h: TcpHandle) -> bool {
        let t = self.tcb(h);
        !t.recv.is_empty() || t.rcv_closed || t.shut_rd || t.error.is_some() || t.state == State::Closed
    }

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self, h: TcpHandle) -> bool {
        self.tcb(h).nodelay
    }

    /// The connection's congestion control.
    pub fn congestion(&self, h: TcpHandle) -> CongestionAlgorithm {
        self.tcb(h).cc.algorithm()
    }

    /// The listener's local address.
    pub fn listener_addr(&self, h: ListenerHandle) -> SocketAddrV4 {
        self.listeners.get(h.0).expect("listener handle is stale").local
    }

    /// Whether `accept` would return a connection now.
    pub fn can_accept(&self, h: ListenerHandle) -> bool {
        self.listeners.get(h.0).is_some_and(|l| !l.accept_queue.is_empty())
    }

    /// Connections in the tables (any state but released, TIME-WAIT
    /// included), for tests and tools.
    pub fn connection_count(&self) -> usize {
        self.conns.len() + self.time_wait.len()
    }

    /// Connections in TIME-WAIT.
    pub fn time_wait_count(&self) -> usize {
        self.time_wait.len()
    }

    /// Connections the application closed that are still finishing
    /// (FIN-WAIT, CLOSING, LAST-ACK), against `TcpConfig::max_orphans`.
    pub fn orphan_count(&self) -> usize {
        self.orphans
    }

    /// Whether the connection's block still exists (it goes once the
    /// application closed it and the core finished with it).
    pub fn exists(&self, h: TcpHandle) -> bool {
        self.conns.get(h.0).is_some()
    }

    /// The connection's sequence-space variables, or `None` once its block
    /// is gone. For the fuzz targets' invariant checks; not a stable API.
    #[doc(hidden)]
    pub fn seq_space(&self, h: TcpHandle) -> Option<SeqSpace> {
        let t = self.conns.get(h.0)?;
        Some(SeqSpace {
            iss: t.iss,
            snd_una: t.snd_una,
            snd_nxt: t.snd_nxt,
            snd_max: t.snd_max,
            irs: t.irs,
            rcv_nxt: t.rcv_nxt,
        })
    }

    /// Every connection and listener, for `netstat`.
    pub fn sockets(&self) -> Vec<TcpInfo> {
        let mut out: Vec<TcpInfo> = self
            .listeners
            .iter()
            .map(|(_, l)| TcpInfo {
                owner: l.owner.clone(),
                state: State::Listen,
                local: l.local,
                recv_queue: l.accept_queue.len(),
                send_queue: l.backlog,
                ..TcpInfo::idle()
            })
            .collect();
        out.extend(
            self.conns
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
                    rcv_rtt: t.tune.rcv_rtt(),
                    rto: t.rtt.backed_off(t.backoff),
                    cwnd: t.cc.cwnd(),
                    ssthresh: t.cc.ssthresh(),
                    mss: t.snd_mss,
                    retransmits: t.retransmits,
                    bytes_in: t.bytes_in,
                    bytes_out: t.bytes_out,
                    recovery: t.recovery,
                    recv_buffer: t.recv.limit(),
                    recv_allocated: t.recv.allocated(),
                    send_buffer: t.send.limit(),
                    send_allocated: t.send.allocated(),
                }),
        );
        out.extend(self.time_wait.iter().map(|(k, _)| TcpInfo {
            state: State::TimeWait,
            local: k.local,
            remote: k.remote,
            ..TcpInfo::idle()
        }));
        out
    }

    /// Checks that every live connection can be found by its 4-tuple.
    #[cfg(test)]
    pub(crate) fn assert_tables_consistent(&self) {
        for (h, t) in self.conns.iter() {
            if t.state != State::Closed {
                let key = FourTuple {
                    local: t.local,
                    remote: t.remote,
                };
                assert_eq!(
                    self.by_tuple.get(&key),
                    Some(&h),
                    "{} -> {} missing from the lookup table",
                    t.local,
                    t.remote
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
