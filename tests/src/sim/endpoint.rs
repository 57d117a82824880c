//! What the harness needs from a stack, and tunstack as one.

use super::*;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use tunstack::tcp::State;
use tunstack::tcp::{IoError, ListenerHandle, Shutdown, TcpHandle};
use tunstack::wire::vnet;
use tunstack::{Config, Instant, Interface, Ipv4Cidr};

/// A network stack the simulation can drive: packets in, packets out, timers.
pub trait Endpoint {
    /// A packet arrives from the link.
    fn handle_packet(&mut self, now: Instant, packet: &[u8]);
    /// Runs whatever timers are due by `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// When `handle_timeout` next has work, if ever.
    fn poll_timeout(&mut self, now: Instant) -> Option<Instant>;
    /// Moves every packet the stack wants to send into `out`.
    fn poll_transmit(&mut self, now: Instant, out: &mut Vec<Vec<u8>>);

    /// Runs the timers due by `now`, if any.
    fn run_due_timers(&mut self, now: Instant) {
        if self.poll_timeout(now).is_some_and(|t| t <= now) {
            self.handle_timeout(now);
        }
    }
}

/// What a receive returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// This many bytes were read.
    Data(usize),
    /// Nothing now.
    WouldBlock,
    /// End of stream.
    Eof,
}

/// An [`Endpoint`] with one TCP connection the harness's application drives.
/// Errors are descriptions for the failure report.
pub trait TcpEndpoint: Endpoint {
    /// Starts listening on `port`.
    fn listen(&mut self, now: Instant, port: u16) -> Result<(), String>;
    /// Starts connecting to `remote`.
    fn connect(&mut self, now: Instant, remote: SocketAddrV4, local_port: u16) -> Result<(), String>;
    /// Whether the connection exists and is open for data (accepting it if needed).
    fn ready(&mut self, now: Instant) -> Result<bool, String>;
    /// Queues data; `Ok(0)` when nothing fits now.
    fn send(&mut self, now: Instant, data: &[u8]) -> Result<usize, String>;
    /// Reads data.
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Recv, String>;
    /// No more writes: FIN after the queued data.
    fn shutdown_write(&mut self, now: Instant) -> Result<(), String>;
    /// The application is done with the connection.
    fn close(&mut self, now: Instant) -> Result<(), String>;
    /// States of all connections this endpoint holds.
    fn states(&self) -> Vec<State>;
    /// Connections still in the table (any state but gone).
    fn connections(&self) -> usize;
    /// Everything useful for a failure report.
    fn describe(&self) -> String;
}

/// A tunstack [`Interface`] as an endpoint.
#[derive(Debug)]
pub struct TunstackEndpoint {
    /// The stack under test.
    pub iface: Interface,
    listener: Option<ListenerHandle>,
    conn: Option<TcpHandle>,
    closed: bool,
    buf: Vec<u8>,
}

impl TunstackEndpoint {
    /// Wraps an interface.
    pub fn new(iface: Interface) -> TunstackEndpoint {
        TunstackEndpoint {
            iface,
            listener: None,
            conn: None,
            closed: false,
            buf: vec![0u8; 65536],
        }
    }

    /// A config for `addr/24` with `seed`, and the MSL and buffers of `spec`.
    pub fn config(addr: Ipv4Addr, seed: u64, spec: &TransferSpec) -> Config {
        let mut c = Config::new(Ipv4Cidr::new(addr, 24).expect("valid /24"));
        c.seed = seed;
        c.tcp.msl = spec.msl;
        c.tcp.congestion = spec.congestion;
        c.tcp.timestamps = spec.timestamps;
        if let Some(n) = spec.recv_buffer {
            c.tcp.recv_buffer = n;
        }
        if let Some(n) = spec.send_buffer {
            c.tcp.send_buffer = n;
        }
        c
    }

    /// An endpoint at `addr` for `spec`, its stack seeded with `seed`.
    pub fn for_spec(addr: Ipv4Addr, seed: u64, spec: &TransferSpec) -> TunstackEndpoint {
        let mut iface = Interface::new(TunstackEndpoint::config(addr, seed, spec));
        iface.set_offloads(spec.offloads);
        TunstackEndpoint::new(iface)
    }

    /// The connection the application holds, once connected or accepted.
    pub fn handle(&self) -> Option<TcpHandle> {
        self.conn
    }

    pub(crate) fn conn(&self) -> Result<TcpHandle, String> {
        self.conn.ok_or_else(|| "no connection".to_string())
    }
}

pub(crate) fn io_error(what: &str, e: IoError) -> String {
    format!("{what} failed: {e:?}")
}

impl Endpoint for TunstackEndpoint {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.iface.handle_packet(now, packet);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.iface.handle_timeout(now);
    }

    fn poll_timeout(&mut self, _now: Instant) -> Option<Instant> {
        self.iface.poll_timeout()
    }

    fn poll_transmit(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        if !self.iface.offloads() {
            while let Some(n) = self.iface.poll_transmit(now, &mut self.buf) {
                out.push(self.buf[..n].to_vec());
            }
            return;
        }
        // As a TUN with offloads: the kernel cuts super-packets and completes checksums.
        let mut header = [0u8; tunstack::wire::ipv4::HEADER_LEN];
        let mut payload = Vec::new();
        while let Some((_, meta)) = self.iface.poll_transmit_parts(now, &mut header, &mut payload) {
            vnet::for_each_segment(&meta, &header, &payload, |h, p| out.push([h, p].concat()))
                .expect("the stack's offload metadata is valid");
        }
    }
}

impl TcpEndpoint for TunstackEndpoint {
    fn listen(&mut self, now: Instant, port: u16) -> Result<(), String> {
        let l = self
            .iface
            .tcp(now)
            .listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port), 8)
            .map_err(|e| format!("listen: {e:?}"))?;
        self.listener = Some(l);
        Ok(())
    }

    fn connect(&mut self, now: Instant, remote: SocketAddrV4, local_port: u16) -> Result<(), String> {
        let h = self
            .iface
            .tcp(now)
            .connect(remote, local_port)
            .map_err(|e| format!("connect: {e:?}"))?;
        self.conn = Some(h);
        Ok(())
    }

    fn ready(&mut self, now: Instant) -> Result<bool, String> {
        if self.conn.is_none() {
            let Some(l) = self.listener else { return Ok(false) };
            let Some((h, _peer)) = self.iface.tcp(now).accept(l) else {
                return Ok(false);
            };
            self.conn = Some(h);
            // One connection is all this application serves: stop listening,
            // so a late duplicate SYN cannot open a second one.
            self.iface.tcp(now).close_listener(l);
            self.listener = None;
        }
        let h = self.conn()?;
        if let Some(e) = self.iface.tcp_layer().error(h) {
            return Err(format!("connection failed: {e:?}"));
        }
        Ok(self.iface.tcp_layer().connect_done(h))
    }

    fn send(&mut self, now: Instant, data: &[u8]) -> Result<usize, String> {
        let h = self.conn()?;
        match self.iface.tcp(now).send(h, data) {
            Ok(n) => Ok(n),
            Err(IoError::WouldBlock) => Ok(0),
            Err(e) => Err(io_error("send", e)),
        }
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Result<Recv, String> {
        let h = self.conn()?;
        match self.iface.tcp(now).recv(h, buf) {
            Ok(0) => Ok(Recv::Eof),
            Ok(n) => Ok(Recv::Data(n)),
            Err(IoError::WouldBlock) => Ok(Recv::WouldBlock),
            Err(e) => Err(io_error("recv", e)),
        }
    }

    fn shutdown_write(&mut self, now: Instant) -> Result<(), String> {
        let h = self.conn()?;
        self.iface
            .tcp(now)
            .shutdown(h, Shutdown::Write)
            .map_err(|e| io_error("shutdown", e))
    }

    fn close(&mut self, now: Instant) -> Result<(), String> {
        let h = self.conn()?;
        if let Some(e) = self.iface.tcp_layer().error(h) {
            return Err(format!("connection failed before close: {e:?}"));
        }
        self.iface.tcp(now).close(h, false);
        self.closed = true;
        Ok(())
    }

    fn states(&self) -> Vec<State> {
        self.iface.tcp_layer().sockets().iter().map(|i| i.state).collect()
    }

    fn connections(&self) -> usize {
        self.iface.tcp_layer().connection_count()
    }

    fn describe(&self) -> String {
        let mut s = String::from("tunstack");
        if let Some(h) = self.conn.filter(|_| !self.closed) {
            let _ = write!(
                s,
                " (app handle: state {}, error {:?}, send queue {}, recv queue {})",
                self.iface.tcp_layer().state(h),
                self.iface.tcp_layer().error(h),
                self.iface.tcp_layer().send_queue(h),
                self.iface.tcp_layer().recv_queue(h)
            );
        }
        let infos = self.iface.tcp_layer().sockets();
        if infos.is_empty() {
            s.push_str("; no TCP sockets");
        }
        for i in infos {
            let _ = write!(
                s,
                "; {} {}->{} recvq {} sendq {} srtt {:?} rto {:?} cwnd {} ssthresh {} rexmits {} in {} out {}",
                i.state,
                i.local,
                i.remote,
                i.recv_queue,
                i.send_queue,
                i.srtt,
                i.rto,
                i.cwnd,
                i.ssthresh,
                i.retransmits,
                i.bytes_in,
                i.bytes_out
            );
        }
        let tcp_stats: Vec<String> = self
            .iface
            .stats()
            .iter()
            .filter(|(n, v)| *v != 0 && n.starts_with("tcp_"))
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let _ = write!(s, "; stats: {}", tcp_stats.join(" "));
        s
    }
}
