//! smoltcp as an endpoint of the simulated link (tunstack_tests::sim), shared
//! by the simulation tests (smoltcp is only a dev-dependency, so it cannot
//! live in the harness crate).

#![allow(dead_code)]

use smoltcp::iface::{Config as SmolConfig, Interface as SmolIface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp as smol_tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use tunstack::Instant;
use tunstack::tcp::State;
use tunstack_tests::sim::{Endpoint, Recv, TcpEndpoint, TransferSpec};

/// smoltcp's device: packets from the link wait in `rx`, packets to it in `tx`.
#[derive(Default)]
struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _t: SmolInstant) -> Option<(RxToken, TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((RxToken(p), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _t: SmolInstant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// A smoltcp interface with one TCP socket.
pub struct SmolEndpoint {
    iface: SmolIface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    sock: SocketHandle,
    opened: bool,
    shut: bool,
    closed: bool,
    /// The peer's initial sequence number, from its SYN or SYN-ACK.
    peer_isn: Option<u32>,
    /// Bytes the application has read.
    read_total: u64,
    /// Segments withheld from smoltcp because it would take their FIN
    /// wrongly (see `takes_fin_it_would_trim`).
    fin_trim_drops: u64,
}

fn smol_now(now: Instant) -> SmolInstant {
    SmolInstant::from_micros(now.total_micros() as i64)
}

thread_local! {
    /// The virtual time of the current smoltcp poll, in milliseconds: smoltcp
    /// takes its timestamp clock as a plain `fn() -> u32`, with no state.
    static TS_CLOCK_MS: Cell<u32> = const { Cell::new(0) };
}

/// smoltcp's TSval: the simulation's virtual clock in milliseconds (RFC
/// 7323 §5.4 wants a clock that ticks between 1 ms and 1 s).
fn sim_tsval() -> u32 {
    TS_CLOCK_MS.with(Cell::get)
}

impl SmolEndpoint {
    /// An interface at `addr/24` seeded with `seed`, its socket's buffers as
    /// `spec` says (64 KiB each by default: no window scaling of its own).
    pub fn new(addr: Ipv4Addr, seed: u64, spec: &TransferSpec) -> SmolEndpoint {
        let mut dev = QueueDevice::default();
        let mut cfg = SmolConfig::new(HardwareAddress::Ip);
        cfg.random_seed = seed;
        let mut iface = SmolIface::new(cfg, &mut dev, SmolInstant::ZERO);
        let o = addr.octets();
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(o[0], o[1], o[2], o[3]), 24)).unwrap());
        let rx = spec.recv_buffer.unwrap_or(64 * 1024);
        let tx = spec.send_buffer.unwrap_or(64 * 1024);
        let sock = smol_tcp::Socket::new(
            smol_tcp::SocketBuffer::new(vec![0u8; rx]),
            smol_tcp::SocketBuffer::new(vec![0u8; tx]),
        );
        let mut sockets = SocketSet::new(vec![]);
        let sock = sockets.add(sock);
        SmolEndpoint {
            iface,
            dev,
            sockets,
            sock,
            opened: false,
            shut: false,
            closed: false,
            peer_isn: None,
            read_total: 0,
            fin_trim_drops: 0,
        }
    }

    /// smoltcp 0.14 trims a segment to its receive window but still acts on
    /// its FIN (it ignores a FIN only after a hole, socket/tcp.rs "ignoring
    /// FIN because we don't have full data yet"), so a FIN on a segment that
    /// reaches past its window, which it may have shrunk since it last
    /// advertised it, ends the stream early and the trimmed bytes are lost
    /// (tunstack_client_smoltcp_server seed 12025 of 10,000). RFC 9293
    /// §3.10.7.4 trims the FIN with the tail. Such a segment is withheld, as
    /// if lost: the sender resends it once the window opens.
    fn takes_fin_it_would_trim(&mut self, packet: &[u8]) -> bool {
        let Ok(ip) = etherparse::Ipv4Slice::from_slice(packet) else {
            return false;
        };
        let Ok(tcp) = etherparse::TcpSlice::from_slice(ip.payload().payload) else {
            return false;
        };
        if tcp.syn() {
            self.peer_isn = Some(tcp.sequence_number());
        }
        let (Some(isn), true) = (self.peer_isn, tcp.fin() && !tcp.syn()) else {
            return false;
        };
        let sock = self.socket();
        let queued = sock.recv_queue() as u64;
        let rcv_nxt = isn.wrapping_add(1).wrapping_add((self.read_total + queued) as u32);
        let window_end = rcv_nxt.wrapping_add((sock.recv_capacity() as u64 - queued) as u32);
        let seg_end = tcp.sequence_number().wrapping_add(tcp.payload().len() as u32);
        let beyond = (seg_end.wrapping_sub(window_end) as i32) > 0;
        if beyond {
            self.fin_trim_drops += 1;
        }
        beyond
    }

    fn socket(&self) -> &smol_tcp::Socket<'static> {
        self.sockets.get::<smol_tcp::Socket>(self.sock)
    }

    /// The socket, for settings (before `listen`/`connect`).
    pub fn socket_mut(&mut self) -> &mut smol_tcp::Socket<'static> {
        self.sockets.get_mut::<smol_tcp::Socket>(self.sock)
    }

    /// Offers and uses timestamps (RFC 7323), on the simulation's clock.
    /// smoltcp 0.14 offers them only with a TSval generator set.
    pub fn enable_timestamps(&mut self) {
        self.socket_mut().set_tsval_generator(Some(sim_tsval));
    }

    fn poll(&mut self, now: Instant) {
        TS_CLOCK_MS.with(|c| c.set((now.total_micros() / 1000) as u32));
        self.iface.poll(smol_now(now), &mut self.dev, &mut self.sockets);
    }

    fn state(&self) -> State {
        use smol_tcp::State as S;
        match self.socket().state() {
            S::Closed => State::Closed,
            S::Listen => State::Listen,
            S::SynSent => State::SynSent,
            S::SynReceived => State::SynReceived,
            S::Established => State::Established,
            S::FinWait1 => State::FinWait1,
            S::FinWait2 => State::FinWait2,
            S::CloseWait => State::CloseWait,
            S::Closing => State::Closing,
            S::LastAck => State::LastAck,
            S::TimeWait => State::TimeWait,
        }
    }

    /// An error if the connection died before the application closed it.
    /// CLOSED is fine once both directions finished: after LAST-ACK the
    /// passive closer is CLOSED while its application may still have the
    /// peer's EOF (and data) to read.
    fn check_alive(&mut self) -> Result<(), String> {
        if self.opened && !self.closed && self.state() == State::Closed {
            let shut = self.shut;
            let fin_received = match self.socket_mut().peek_slice(&mut []) {
                Err(smol_tcp::RecvError::Finished) => true,
                // Data is still buffered; a FIN after it shows up once it is read.
                Ok(_) => true,
                Err(_) => false,
            };
            if !(shut && fin_received) {
                return Err("smoltcp connection went to CLOSED before both sides finished (reset or timed out)".into());
            }
        }
        Ok(())
    }
}

impl Endpoint for SmolEndpoint {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        if !self.takes_fin_it_would_trim(packet) {
            self.dev.rx.push_back(packet.to_vec());
        }
        self.poll(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.poll(now);
    }

    fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        self.iface
            .poll_at(smol_now(now), &self.sockets)
            .map(|t| Instant::from_micros(t.total_micros().max(0) as u64))
    }

    fn poll_transmit(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.poll(now);
        out.append(&mut self.dev.tx);
    }
}

impl TcpEndpoint for SmolEndpoint {
    fn listen(&mut self, _now: Instant, port: u16) -> Result<(), String> {
        self.socket_mut()
            .listen(port)
            .map_err(|e| format!("smoltcp listen: {e}"))
    }

    fn connect(&mut self, now: Instant, remote: SocketAddrV4, local_port: u16) -> Result<(), String> {
        let o = remote.ip().octets();
        let cx = self.iface.context();
        let sock = self.sockets.get_mut::<smol_tcp::Socket>(self.sock);
        sock.connect(cx, (IpAddress::v4(o[0], o[1], o[2], o[3]), remote.port()), local_port)
            .map_err(|e| format!("smoltcp connect: {e}"))?;
        self.poll(now);
        Ok(())
    }

    fn ready(&mut self, _now: Instant) -> Result<bool, String> {
        let s = self.state();
        if !self.opened && !matches!(s, State::Closed | State::Listen | State::SynSent | State::SynReceived) {
            self.opened = true;
        }
        if !self.opened && s == State::Closed {
            return Err("smoltcp connection failed during the handshake".into());
        }
        self.check_alive()?;
        Ok(self.opened)
    }

    fn send(&mut self, _now: Instant, data: &[u8]) -> Result<usize, String> {
        self.check_alive()?;
        self.socket_mut()
            .send_slice(data)
            .map_err(|e| format!("smoltcp send: {e} (state {})", self.socket().state()))
    }

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> Result<Recv, String> {
        match self.socket_mut().recv_slice(buf) {
            Ok(0) => {
                self.check_alive()?;
                Ok(Recv::WouldBlock)
            }
            Ok(n) => {
                self.read_total += n as u64;
                Ok(Recv::Data(n))
            }
            Err(smol_tcp::RecvError::Finished) => Ok(Recv::Eof),
            Err(e) => Err(format!("smoltcp recv: {e} (state {})", self.socket().state())),
        }
    }

    fn shutdown_write(&mut self, now: Instant) -> Result<(), String> {
        self.check_alive()?;
        self.socket_mut().close();
        self.shut = true;
        self.poll(now);
        Ok(())
    }

    fn close(&mut self, _now: Instant) -> Result<(), String> {
        // The write half is already shut; smoltcp finishes the close on its own.
        self.check_alive()?;
        self.closed = true;
        Ok(())
    }

    fn states(&self) -> Vec<State> {
        match self.state() {
            State::Closed => vec![],
            s => vec![s],
        }
    }

    fn connections(&self) -> usize {
        usize::from(self.state() != State::Closed)
    }

    fn describe(&self) -> String {
        let s = self.socket();
        format!(
            "smoltcp: state {}, send queue {}, recv queue {}, local {:?}, remote {:?}, FIN segments withheld {}",
            s.state(),
            s.send_queue(),
            s.recv_queue(),
            s.local_endpoint(),
            s.remote_endpoint(),
            self.fin_trim_drops
        )
    }
}
