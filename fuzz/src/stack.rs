//! What the stateful targets share: the interface under test, built from
//! the settings an input picks, and the clock steps that drive its timers.

use arbitrary::Arbitrary;
use std::net::Ipv4Addr;
use tunstack::iface::{Config, Interface};
use tunstack::ip::Ipv4Cidr;
use tunstack::tcp::CongestionAlgorithm;
use tunstack::time::{Duration, Instant};

/// The interface's address.
pub const US: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// The host: the interface's gateway, and the usual peer.
pub const HOST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

/// The TCP settings an input picks.
#[derive(Arbitrary, Debug)]
pub struct Tuning {
    /// 8 KiB buffers (2 KiB at first): full windows and zero windows soon.
    pub small_buffers: bool,
    pub timestamps: bool,
    pub sack: bool,
    pub newreno: bool,
}

/// An interface at 10.200.0.2/24 behind the host, as `tuning` says.
pub fn interface(tuning: &Tuning, mtu: usize, seed: u64, syn_backlog: usize) -> Interface {
    let mut c = Config::new(Ipv4Cidr::new(US, 24).expect("valid prefix"));
    c.gateway = Some(HOST);
    c.mtu = mtu;
    c.seed = seed;
    c.tcp.timestamps = tuning.timestamps;
    c.tcp.sack = tuning.sack;
    c.tcp.syn_backlog = syn_backlog;
    if tuning.newreno {
        c.tcp.congestion = CongestionAlgorithm::NewReno;
    }
    if tuning.small_buffers {
        c.tcp.recv_buffer = 8 << 10;
        c.tcp.recv_buffer_initial = 2 << 10;
        c.tcp.send_buffer = 8 << 10;
        c.tcp.send_buffer_initial = 2 << 10;
    }
    Interface::new(c)
}

/// A clock step.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Wait {
    Millis(u16),
    Seconds(u8),
    /// Until the interface's next deadline.
    Deadline,
}

impl Wait {
    /// Moves `now` on and runs the timers that came due.
    pub fn run(self, i: &mut Interface, now: &mut Instant) {
        *now += match self {
            Wait::Millis(ms) => Duration::from_millis(u64::from(ms)),
            Wait::Seconds(s) => Duration::from_secs(u64::from(s)),
            Wait::Deadline => i.poll_timeout().unwrap_or(*now).saturating_duration_since(*now),
        };
        i.handle_timeout(*now);
        // The runtime sleeps until `poll_timeout`: a deadline left in the
        // past would spin it. Datagrams sent to ourselves wait a turn each
        // (an echo request and its reply: two).
        for _ in 0..4 {
            if i.poll_timeout().is_none_or(|at| at > *now) {
                return;
            }
            i.handle_timeout(*now);
        }
        panic!(
            "handle_timeout leaves a deadline at {:?}, now {now:?}",
            i.poll_timeout()
        );
    }
}

/// No connection's buffers outgrow the configured ceilings (twice them: a
/// ring rounds its capacity up), whatever the peers sent.
pub fn check_buffers(i: &Interface) {
    let cfg = *i.tcp_layer().config();
    for info in i.tcp_layer().sockets() {
        assert!(info.recv_allocated <= 2 * cfg.recv_buffer, "{info:?}");
        assert!(info.send_allocated <= 2 * cfg.send_buffer, "{info:?}");
    }
}
