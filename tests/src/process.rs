//! Child processes with captured output and bounded waits.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Output lines collected from a child, with a condition to wait on.
#[derive(Debug, Default)]
pub struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

impl Lines {
    /// Collects every line `reader` produces, on a background thread.
    pub fn collect(reader: impl Read + Send + 'static, into: Arc<Lines>, tag: &'static str) {
        thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{tag}] {line}");
                into.lines.lock().unwrap().push(line);
                into.changed.notify_all();
            }
        });
    }

    /// All lines so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a line at index >= `from` matching `pred`.
    pub fn wait_for(&self, from: usize, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<(usize, String)> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock().unwrap();
        loop {
            if let Some((i, l)) = lines.iter().enumerate().skip(from).find(|(_, l)| pred(l)) {
                return Some((i, l.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = self.changed.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Number of lines so far.
    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Whether no line has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A finished command: status and everything it printed.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Finished {
    /// Panics with the output unless the command succeeded.
    pub fn assert_success(&self, what: &str) -> &Finished {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Waits for `child` to exit, up to `timeout`; kills it if it does not.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` to completion with a bounded wait, capturing its output.
/// Panics if it has not finished after `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> Finished {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_timeout(&mut child, timeout);
    let stdout = out_t.join().unwrap();
    let stderr = err_t.join().unwrap();
    let Some(status) = status else {
        panic!("{shown} did not finish within {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    };
    Finished { status, stdout, stderr }
}
