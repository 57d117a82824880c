//! The transfer application and the event loop that runs a scenario.

use super::*;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddrV4;
use tunstack::rand::Rng;
use tunstack::tcp::{CongestionAlgorithm, State};
use tunstack::{Duration, Instant};

/// One transfer scenario: everything that determines a run.
#[derive(Clone, Debug)]
pub struct TransferSpec {
    /// Seed of the run (the link's randomness, contents, application choices).
    pub seed: u64,
    /// The link.
    pub link: LinkConfig,
    /// Bytes A sends to B.
    pub a_to_b: usize,
    /// Bytes B sends to A.
    pub b_to_a: usize,
    /// Largest single write the applications make.
    pub write_max: usize,
    /// Slow reader `(bytes, interval)`: each application reads at most `bytes` per `interval`.
    pub read_limit: Option<(usize, Duration)>,
    /// The MSL the stacks use (TIME-WAIT lasts twice this).
    pub msl: Duration,
    /// Receive buffer per connection the endpoints should use (`None`: their default).
    pub recv_buffer: Option<usize>,
    /// Send buffer per connection the endpoints should use (`None`: their default).
    pub send_buffer: Option<usize>,
    /// Congestion control of the tunstack endpoints.
    pub congestion: CongestionAlgorithm,
    /// Whether tunstack endpoints offer timestamps (RFC 7323).
    pub timestamps: bool,
    /// Whether tunstack endpoints send as over a TUN with offloads (issue
    /// 16): TCP super-packets, cut into MSS-sized segments with complete
    /// checksums before the link, as the kernel cuts them.
    pub offloads: bool,
    /// Loop iterations before the run is declared hung.
    pub max_steps: u64,
    /// Virtual time before the run is declared hung.
    pub max_time: Duration,
    /// Print every packet.
    pub trace: bool,
}

impl TransferSpec {
    /// Defaults: 64 KiB each way over a clean 10 ms link, MSL 1 s.
    pub fn new(seed: u64) -> TransferSpec {
        TransferSpec {
            seed,
            link: LinkConfig::default(),
            a_to_b: 64 * 1024,
            b_to_a: 64 * 1024,
            write_max: 16 * 1024,
            read_limit: None,
            msl: Duration::from_secs(1),
            recv_buffer: None,
            send_buffer: None,
            congestion: CongestionAlgorithm::default(),
            timestamps: true,
            offloads: false,
            max_steps: 2_000_000,
            max_time: Duration::from_secs(3600),
            trace: false,
        }
    }
}

impl fmt::Display for TransferSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: A->B {} B, B->A {} B, writes <= {} B, buffers rx {} tx {}, {}{}, {}{}",
            self.seed,
            self.a_to_b,
            self.b_to_a,
            self.write_max,
            self.recv_buffer.map_or("default".into(), |n| n.to_string()),
            self.send_buffer.map_or("default".into(), |n| n.to_string()),
            self.congestion,
            if self.offloads { ", offloads" } else { "" },
            self.link,
            match self.read_limit {
                Some((n, every)) => format!(", slow reader {n} B per {every:?}"),
                None => String::new(),
            }
        )
    }
}

/// `len` bytes of content determined by `seed`.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The application on one side: send everything, shut down writing, read to EOF, close.
#[derive(Debug)]
pub(crate) struct TransferApp {
    side: Side,
    out: Vec<u8>,
    sent: usize,
    expect: Vec<u8>,
    got: Vec<u8>,
    shut: bool,
    eof: bool,
    closed: bool,
    ready: bool,
    rng: Rng,
    write_max: usize,
    read_limit: Option<(usize, Duration)>,
    /// Slow reader: the next time it may read, and what it may read then.
    next_read: Instant,
    read_budget: usize,
    /// The slow reader stopped with its budget spent (it wakes at `next_read`).
    throttled: bool,
    buf: Vec<u8>,
    /// When data last arrived (or the connection opened), and the longest
    /// wait for data so far, until EOF: how long a reader sat stalled.
    last_data: Instant,
    longest_gap: Duration,
}

impl TransferApp {
    pub(crate) fn done(&self) -> bool {
        self.closed
    }

    /// When the application wants to run next on its own (not prompted by the stack).
    pub(crate) fn wake(&self, now: Instant) -> Option<Instant> {
        (self.throttled && !self.closed && self.next_read > now).then_some(self.next_read)
    }

    pub(crate) fn step(&mut self, now: Instant, ep: &mut dyn TcpEndpoint) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        if !self.ready {
            self.ready = ep.ready(now)?;
            if !self.ready {
                return Ok(());
            }
            self.last_data = now;
        }
        // Write.
        while self.sent < self.out.len() {
            let n = (1 + self.rng.below(self.write_max as u64) as usize).min(self.out.len() - self.sent);
            let k = ep.send(now, &self.out[self.sent..self.sent + n])?;
            self.sent += k;
            if k < n {
                break;
            }
        }
        if self.sent == self.out.len() && !self.shut {
            ep.shutdown_write(now)?;
            self.shut = true;
        }
        // Read.
        if let Some((limit, every)) = self.read_limit {
            if now >= self.next_read {
                self.read_budget = limit;
                self.next_read = now + every;
            }
        }
        self.throttled = false;
        while !self.eof {
            let room = match self.read_limit {
                Some(_) => self.read_budget.min(self.buf.len()),
                None => self.buf.len(),
            };
            if room == 0 {
                self.throttled = true;
                break;
            }
            let mut buf = std::mem::take(&mut self.buf);
            let r = ep.recv(now, &mut buf[..room]);
            match r {
                Ok(Recv::Data(n)) => {
                    self.got.extend_from_slice(&buf[..n]);
                    self.longest_gap = self.longest_gap.max(now - self.last_data);
                    self.last_data = now;
                    if self.read_limit.is_some() {
                        self.read_budget -= n;
                    }
                }
                Ok(Recv::WouldBlock) => {}
                Ok(Recv::Eof) => self.eof = true,
                Err(_) => {}
            }
            self.buf = buf;
            match r {
                Ok(Recv::Data(_)) => {}
                Ok(_) => break,
                Err(e) => return Err(e),
            }
            if self.got.len() > self.expect.len() {
                return Err(format!(
                    "{:?} received {} bytes, more than the {} sent",
                    self.side,
                    self.got.len(),
                    self.expect.len()
                ));
            }
        }
        if self.eof {
            if self.got != self.expect {
                return Err(format!("{:?} at EOF: {}", self.side, mismatch(&self.got, &self.expect)));
            }
            if self.shut {
                ep.close(now)?;
                self.closed = true;
            }
        }
        Ok(())
    }

    pub(crate) fn progress(&self) -> String {
        format!(
            "{:?} app: sent {}/{}{}, received {}/{}{}{}",
            self.side,
            self.sent,
            self.out.len(),
            if self.shut { " +shutdown" } else { "" },
            self.got.len(),
            self.expect.len(),
            if self.eof { " +EOF" } else { "" },
            if self.closed { " closed" } else { "" }
        )
    }
}

/// Where two byte strings first differ.
pub(crate) fn mismatch(got: &[u8], want: &[u8]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => format!(
            "content differs at byte {i} of {} (got {:#04x}, want {:#04x})",
            got.len(),
            got[i],
            want[i]
        ),
        None => format!("got {} bytes, want {}", got.len(), want.len()),
    }
}

/// What one side's connection went through.
#[derive(Clone, Debug, Default)]
pub struct SideReport {
    /// When each state was first seen.
    pub first_seen: BTreeMap<StateKey, Instant>,
    /// When the connection table first became empty after the application closed.
    pub drained_at: Option<Instant>,
    /// When valid RSTs were delivered to this side.
    pub resets_at: Vec<Instant>,
    /// The longest time its application waited for data, from the
    /// connection's opening to EOF (a stalled transfer shows here).
    pub longest_read_gap: Duration,
}

/// A [`State`] usable as a map key, by name.
pub type StateKey = &'static str;

impl SideReport {
    pub(crate) fn saw(&self, s: State) -> Option<Instant> {
        self.first_seen.get(s.name()).copied()
    }
}

/// The outcome of a successful run.
#[derive(Clone, Debug)]
pub struct TransferReport {
    /// Virtual time when the run finished (both tables drained).
    pub sim_time: Instant,
    /// Loop iterations.
    pub steps: u64,
    /// A hash of every delivered packet with its time and direction.
    pub trace_hash: u64,
    /// What the link did.
    pub link: LinkStats,
    /// Per side (index 0: A).
    pub sides: [SideReport; 2],
}

/// FNV-1a, for the packet-trace hash (stable across runs and builds).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Runs the transfer of `spec`: A (the client) connects to B (listening on
/// [`SERVER_PORT`]), both send and receive at once, shut down, read to EOF
/// and close. On failure, the error says what was going on, with the seed.
pub fn run_transfer(
    spec: &TransferSpec,
    a: &mut dyn TcpEndpoint,
    b: &mut dyn TcpEndpoint,
) -> Result<TransferReport, String> {
    let mut sim = Sim::new(spec);
    match sim.run(spec, a, b) {
        Ok(()) => Ok(TransferReport {
            sim_time: sim.now,
            steps: sim.steps,
            trace_hash: sim.hash.0,
            link: sim.link.stats.clone(),
            sides: sim.reports.clone(),
        }),
        Err(why) => Err(sim.failure(spec, &why, a, b)),
    }
}

pub(crate) struct Sim {
    now: Instant,
    steps: u64,
    link: SimLink,
    hash: Fnv,
    apps: [TransferApp; 2],
    reports: [SideReport; 2],
}

impl Sim {
    pub(crate) fn new(spec: &TransferSpec) -> Sim {
        let a_data = content(spec.seed.wrapping_mul(3).wrapping_add(1), spec.a_to_b);
        let b_data = content(spec.seed.wrapping_mul(3).wrapping_add(2), spec.b_to_a);
        let app = |side: Side, out: Vec<u8>, expect: Vec<u8>, salt: u64| TransferApp {
            side,
            out,
            sent: 0,
            expect,
            got: Vec::new(),
            shut: false,
            eof: false,
            closed: false,
            ready: false,
            rng: Rng::new(spec.seed ^ salt),
            write_max: spec.write_max.max(1),
            read_limit: spec.read_limit,
            next_read: Instant::ZERO,
            read_budget: 0,
            throttled: false,
            buf: vec![0u8; 8192],
            last_data: Instant::ZERO,
            longest_gap: Duration::ZERO,
        };
        let mut link = SimLink::new(spec.link.clone(), spec.seed ^ 0x11AC_0000_0000_0001);
        link.trace = spec.trace;
        Sim {
            now: Instant::ZERO,
            steps: 0,
            link,
            hash: Fnv::new(),
            apps: [
                app(Side::A, a_data.clone(), b_data.clone(), 0xA),
                app(Side::B, b_data, a_data, 0xB),
            ],
            reports: Default::default(),
        }
    }

    pub(crate) fn run(
        &mut self,
        spec: &TransferSpec,
        a: &mut dyn TcpEndpoint,
        b: &mut dyn TcpEndpoint,
    ) -> Result<(), String> {
        let client_port = 40000 + (spec.seed % 20000) as u16;
        b.listen(self.now, SERVER_PORT)?;
        a.connect(self.now, SocketAddrV4::new(ADDR_B, SERVER_PORT), client_port)?;
        let mut out = Vec::new();
        let mut last_now = self.now;
        let mut same_time_steps = 0u32;
        loop {
            self.steps += 1;
            if self.steps > spec.max_steps {
                return Err(format!("no finish after {} steps (hung?)", spec.max_steps));
            }
            if self.now == last_now {
                same_time_steps += 1;
                if same_time_steps > 10_000 {
                    return Err("livelock: 10000 steps without time advancing".into());
                }
            } else {
                same_time_steps = 0;
                last_now = self.now;
            }
            let now = self.now;
            // Deliveries due now.
            while let Some((to, pkt)) = self.link.pop_due(now) {
                self.hash.write(&now.total_micros().to_le_bytes());
                self.hash.write(&[to.index() as u8]);
                self.hash.write(&pkt);
                if spec.trace {
                    println!("{now} {:?}->{to:?} {}", to.peer(), describe_packet(&pkt));
                }
                if is_valid_rst(&pkt) {
                    self.reports[to.index()].resets_at.push(now);
                }
                match to {
                    Side::A => a.handle_packet(now, &pkt),
                    Side::B => b.handle_packet(now, &pkt),
                }
            }
            // Timers due now.
            a.run_due_timers(now);
            b.run_due_timers(now);
            // Applications.
            self.apps[0].step(now, a)?;
            self.apps[1].step(now, b)?;
            // Transmissions.
            a.poll_transmit(now, &mut out);
            for p in out.drain(..) {
                self.link.send(now, Side::A, p);
            }
            b.poll_transmit(now, &mut out);
            for p in out.drain(..) {
                self.link.send(now, Side::B, p);
            }
            // Observe states.
            for (i, ep) in [&*a, &*b].into_iter().enumerate() {
                let r = &mut self.reports[i];
                r.longest_read_gap = self.apps[i].longest_gap;
                for s in ep.states() {
                    r.first_seen.entry(s.name()).or_insert(now);
                }
                if self.apps[i].done() && r.drained_at.is_none() && ep.connections() == 0 {
                    r.drained_at = Some(now);
                }
            }
            if self.apps.iter().all(TransferApp::done) && self.reports.iter().all(|r| r.drained_at.is_some()) {
                return self.check_close(spec);
            }
            // Advance to the next event.
            let next = [
                self.link.next_delivery(),
                a.poll_timeout(now),
                b.poll_timeout(now),
                self.apps[0].wake(now),
                self.apps[1].wake(now),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else {
                return Err("stalled: nothing in flight and no timer armed".into());
            };
            self.now = self.now.max(next);
            if self.now - Instant::ZERO > spec.max_time {
                return Err(format!("no finish within {:?} of virtual time", spec.max_time));
            }
        }
    }

    /// The close was clean: whoever sent FIN first went through TIME-WAIT and
    /// stayed there 2×MSL. The one excuse is an RST (RFC 9293 §3.10.7.4 lets
    /// it end TIME-WAIT, and a peer that has forgotten the connection answers
    /// a late retransmission with one, §3.10.7.1), and then only an RST that
    /// came while the peer no longer had the connection.
    pub(crate) fn check_close(&self, spec: &TransferSpec) -> Result<(), String> {
        let mut time_waits = 0;
        for side in [Side::A, Side::B] {
            let r = &self.reports[side.index()];
            let peer_gone = self.reports[side.peer().index()].drained_at;
            let excused = |from: Instant, to: Option<Instant>| {
                r.resets_at
                    .iter()
                    .any(|&t| t >= from && to.is_none_or(|to| t <= to) && peer_gone.is_some_and(|gone| gone <= t))
            };
            let Some(fin_wait) = r.saw(State::FinWait1) else {
                continue;
            };
            let Some(tw) = r.saw(State::TimeWait) else {
                if excused(fin_wait, r.drained_at) {
                    continue;
                }
                return Err(format!(
                    "{side:?} closed first (FIN-WAIT-1) but never entered TIME-WAIT; states seen: {:?}; RSTs received at {:?}",
                    r.first_seen.keys().collect::<Vec<_>>(),
                    r.resets_at
                ));
            };
            time_waits += 1;
            let drained = r.drained_at.expect("checked by the caller");
            if drained - tw < spec.msl * 2 && !r.resets_at.iter().any(|&t| t >= tw && t <= drained) {
                return Err(format!(
                    "{side:?} left TIME-WAIT after {:?}, before 2*MSL = {:?}, with no RST",
                    drained - tw,
                    spec.msl * 2
                ));
            }
        }
        if time_waits == 0 && self.reports.iter().all(|r| r.resets_at.is_empty()) {
            return Err("neither side went through TIME-WAIT".into());
        }
        Ok(())
    }

    pub(crate) fn failure(&self, spec: &TransferSpec, why: &str, a: &dyn TcpEndpoint, b: &dyn TcpEndpoint) -> String {
        format!(
            "FAILED {spec}\n  why: {why}\n  at {} after {} steps; {} packets in flight; link {:?}\n  {}\n  {}\n  A: {}\n  B: {}\n  reproduce: SIM_SEED={} (SIM_TRACE=1 prints every packet)",
            self.now,
            self.steps,
            self.link.in_flight(),
            self.link.stats,
            self.apps[0].progress(),
            self.apps[1].progress(),
            a.describe(),
            b.describe(),
            spec.seed
        )
    }
}
