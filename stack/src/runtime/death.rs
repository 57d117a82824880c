//! A stack thread that dies (a panic in the core or in the task run on
//! it, or an error): the cause is kept, and every socket call, blocked ones
//! included, fails with it (`NetworkDown`) instead of waiting for ever on a
//! stack nobody drives; waiting for the stack to stop; and the test-only
//! fault injection that makes it die.

use super::{Shared, Stack};
use std::io;

impl Stack {
    /// Why the stack thread died, if it did: its panic's message, or the
    /// error that ended it. `None` while it runs, and after a `shutdown`.
    pub fn failure(&self) -> Option<String> {
        self.lock().death().map(str::to_owned)
    }

    /// Waits until the stack has stopped (a `shutdown`, or its thread
    /// died), at most `timeout` (`None`: for as long as it takes); whether
    /// it has.
    pub fn wait_stopped(&self, timeout: Option<std::time::Duration>) -> bool {
        let core = self.lock();
        let core = match timeout {
            None => self
                .shared
                .on_stop
                .wait_while(core, |c| !c.stopped)
                .unwrap_or_else(|p| p.into_inner()),
            Some(t) => {
                self.shared
                    .on_stop
                    .wait_timeout_while(core, t, |c| !c.stopped)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
        core.stopped
    }

    /// Test-only fault injection (debug builds only): the stack thread
    /// panics with `message` at its next turn, holding the core's lock, as
    /// a bug in the core would. For the tests of what a dead stack thread
    /// does; tunstackd's SIGUSR2 (debug builds) calls it.
    #[doc(hidden)]
    #[cfg(any(test, debug_assertions))]
    pub fn inject_panic(&self, message: &str) {
        self.lock().fault = Some(message.to_owned());
        self.shared.wake.signal();
    }
}

impl Shared {
    /// The stack thread ended, as `run` says: the stack is stopped, and if
    /// the thread died (a panic, an error), every blocked call wakes and
    /// every later one fails with `NetworkDown` and the cause, instead of
    /// waiting for ever on a stack nobody drives.
    pub(super) fn finish(&self, run: std::thread::Result<io::Result<()>>) -> io::Result<()> {
        let result = match run {
            Ok(result) => result.map_err(|e| io::Error::new(e.kind(), format!("stack thread failed: {e}"))),
            Err(payload) => Err(io::Error::new(
                io::ErrorKind::NetworkDown,
                format!("stack thread panicked: {}", panic_message(&*payload)),
            )),
        };
        self.stop(result.as_ref().err().map(ToString::to_string));
        // The inline task's sockets hold the stack (a cycle through
        // `Shared`): let them go, with no lock held.
        let task = self.inline.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(task);
        result
    }
}

/// The text of a panic's payload (`panic!` makes a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}
