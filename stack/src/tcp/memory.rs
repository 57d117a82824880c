//! The stack's budget for TCP buffer memory, as Linux's `tcp_mem`: every
//! connection's send and receive rings draw from one account.
//!
//! - Below `min`, nothing is rationed.
//! - Above `pressure`, the stack is under memory pressure until it falls
//!   below `min` again: receive windows clamp to what the rings already
//!   hold plus a little, and auto-tuning grows no buffer (Linux's
//!   `tcp_enter_memory_pressure`).
//! - At `max`, a ring grows no further than one page (`FLOOR`, which every
//!   ring is granted so that every connection can still make progress, as
//!   Linux grants `tcp_rmem[0]`/`tcp_wmem[0]`): a write finds no room, and
//!   received data that needs more is dropped, out-of-order data first.
//!
//! The account changes in one place, where a ring's storage is replaced or
//! dropped (`buffer.rs`), so it is exact: it returns to zero when every
//! ring is empty and released.

#![forbid(unsafe_code)]

use super::{FourTuple, TcpLayer};
use crate::ip::context::Context;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Storage every ring may hold whatever the budget says: one page.
pub(crate) const FLOOR: usize = 4096;

/// Limits on the memory all TCP buffers together may hold, in bytes
/// (Linux's `tcp_mem`, which counts pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Below this, pressure ends.
    pub min: usize,
    /// Above this, pressure begins.
    pub pressure: usize,
    /// Rings grow no further than one page past this.
    pub max: usize,
}

impl MemoryLimits {
    /// Limits for a budget of `max` bytes: pressure from three quarters of
    /// it until usage falls below half (Linux's defaults keep a similar spread).
    pub const fn with_max(max: usize) -> MemoryLimits {
        MemoryLimits {
            min: max / 2,
            pressure: max / 4 * 3,
            max,
        }
    }

    /// No limit at all.
    pub const fn unlimited() -> MemoryLimits {
        MemoryLimits {
            min: usize::MAX,
            pressure: usize::MAX,
            max: usize::MAX,
        }
    }
}

impl Default for MemoryLimits {
    /// 64 MiB: thousands of stalled connections stay well within a few
    /// hundred MiB of RSS, while a handful of bulk transfers still get
    /// their multi-megabyte windows.
    fn default() -> MemoryLimits {
        MemoryLimits::with_max(64 << 20)
    }
}

/// What the budget looks like now, for `netstat -s` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes all TCP rings hold.
    pub allocated: usize,
    /// Whether the stack is under memory pressure.
    pub pressure: bool,
    /// Times the stack entered memory pressure (Linux's `TCPMemoryPressures`).
    pub pressures: u64,
}

#[derive(Debug)]
struct Shared {
    limits: MemoryLimits,
    allocated: AtomicUsize,
    pressure: AtomicBool,
    pressures: AtomicU64,
}

/// A handle on the stack's one account; every ring holds a clone.
/// (Atomics only because the interface moves between threads; one thread
/// changes it at a time.)
#[derive(Clone, Debug)]
pub(crate) struct MemoryAccount(Arc<Shared>);

impl MemoryAccount {
    /// An empty account under `limits`.
    pub(crate) fn new(limits: MemoryLimits) -> MemoryAccount {
        MemoryAccount(Arc::new(Shared {
            limits,
            allocated: AtomicUsize::new(0),
            pressure: AtomicBool::new(false),
            pressures: AtomicU64::new(0),
        }))
    }

    /// An account of its own with no limit (unit tests of the buffers).
    #[cfg(test)]
    pub(crate) fn unlimited() -> MemoryAccount {
        MemoryAccount::new(MemoryLimits::unlimited())
    }

    /// Bytes held.
    pub(crate) fn allocated(&self) -> usize {
        self.0.allocated.load(Relaxed)
    }

    /// Whether the stack is under memory pressure.
    pub(crate) fn under_pressure(&self) -> bool {
        self.0.pressure.load(Relaxed)
    }

    /// Whether the hard limit is reached: rings grow no further than `FLOOR`.
    pub(crate) fn exhausted(&self) -> bool {
        self.allocated() >= self.0.limits.max
    }

    /// The state of the budget.
    pub(crate) fn usage(&self) -> MemoryUsage {
        MemoryUsage {
            allocated: self.allocated(),
            pressure: self.under_pressure(),
            pressures: self.0.pressures.load(Relaxed),
        }
    }

    /// The storage a ring holding `current` bytes may grow to: `wanted`
    /// (its usual growth step) if the budget has room, else `needed` (what
    /// the data at hand takes), else its step up to `FLOOR`, which every
    /// ring is granted. Never less than `current`.
    pub(crate) fn grant(&self, current: usize, wanted: usize, needed: usize) -> usize {
        let others = self.allocated().saturating_sub(current);
        let max = self.0.limits.max;
        if others.saturating_add(wanted) <= max {
            wanted
        } else if others.saturating_add(needed) <= max {
            needed
        } else {
            current.max(wanted.min(FLOOR))
        }
    }

    /// A ring's storage went from `old` to `new` bytes: the one place the
    /// account moves, and where pressure begins and ends.
    pub(crate) fn resized(&self, old: usize, new: usize) {
        let s = &self.0;
        let total = if new >= old {
            s.allocated.fetch_add(new - old, Relaxed) + (new - old)
        } else {
            s.allocated.fetch_sub(old - new, Relaxed) - (old - new)
        };
        if total > s.limits.pressure {
            if !s.pressure.swap(true, Relaxed) {
                s.pressures.fetch_add(1, Relaxed);
                log::debug!("tcp: memory pressure: {total} bytes in buffers");
            }
        } else if total < s.limits.min && s.pressure.swap(false, Relaxed) {
            log::debug!("tcp: memory pressure over: {total} bytes in buffers");
        }
    }
}

impl TcpLayer {
    /// The memory budget's state, and connections held (any state but
    /// LISTEN), for `netstat -s`.
    pub fn memory(&self) -> MemoryUsage {
        self.memory.usage()
    }

    /// Whether a new connection from `tuple` must be refused because the
    /// stack holds `max_connections` already (counted, and logged once per
    /// thousand, as a flood would otherwise fill the log).
    pub(super) fn at_connection_limit(&self, cx: &mut Context<'_>, tuple: FourTuple) -> bool {
        if self.conns.len() < self.config.max_connections {
            return false;
        }
        let stats = cx.stats();
        stats.tcp_conn_limit_drops += 1;
        if stats.tcp_conn_limit_drops % 1000 == 1 {
            log::warn!(
                "tcp: {} connections, the limit (--max-connections): new connection from {} to {} dropped",
                self.conns.len(),
                tuple.remote,
                tuple.local
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(max: usize) -> MemoryAccount {
        MemoryAccount::new(MemoryLimits::with_max(max))
    }

    #[test]
    fn a_single_max_sets_pressure_at_three_quarters_and_relief_at_half() {
        assert_eq!(
            MemoryLimits::with_max(1000),
            MemoryLimits {
                min: 500,
                pressure: 750,
                max: 1000
            }
        );
        assert_eq!(MemoryLimits::default().max, 64 << 20);
    }

    #[test]
    fn pressure_begins_above_pressure_and_ends_below_min_counted_once() {
        let a = account(100_000);
        a.resized(0, 75_000);
        assert!(!a.under_pressure(), "at the pressure mark, not above it");
        a.resized(0, 1);
        assert!(a.under_pressure());
        a.resized(0, 10_000);
        a.resized(10_000, 0);
        a.resized(1, 0);
        assert!(a.under_pressure(), "hysteresis: still above min");
        a.resized(75_000, 49_999);
        assert!(!a.under_pressure(), "below min");
        assert_eq!(a.usage().pressures, 1, "one entry");
        a.resized(0, 40_000);
        assert_eq!(
            a.usage(),
            MemoryUsage {
                allocated: 89_999,
                pressure: true,
                pressures: 2
            }
        );
    }

    #[test]
    fn grants_take_the_step_then_what_is_needed_then_only_the_floor() {
        let a = account(64 * 1024);
        assert_eq!(a.grant(0, 32 * 1024, 10_000), 32 * 1024, "room for the step");
        a.resized(0, 50 * 1024);
        assert_eq!(a.grant(0, 32 * 1024, 10_000), 10_000, "room for what is needed only");
        a.resized(0, 14 * 1024);
        assert!(a.exhausted());
        assert_eq!(a.grant(0, 32 * 1024, 10_000), FLOOR, "every ring gets a page");
        assert_eq!(a.grant(0, 2048, 100), 2048, "no more than its step");
        assert_eq!(a.grant(8192, 16_384, 9000), 8192, "never less than it has");
        assert_eq!(
            a.grant(14 * 1024, 15 * 1024, 15 * 1024),
            14 * 1024,
            "at the limit a ring keeps what it has"
        );
        // What a ring gives back, it (or another) may take again.
        a.resized(14 * 1024, 4 * 1024);
        assert!(!a.exhausted());
        assert_eq!(a.grant(4 * 1024, 14 * 1024, 14 * 1024), 14 * 1024);
    }
}
