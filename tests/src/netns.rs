//! Network-namespace sandboxes for live tests.
//!
//! A [`Sandbox`] is a fresh namespace named `tsbx-<pid>-<n>`. Everything a
//! live test runs goes inside it; dropping the sandbox (on success or during
//! a panic's unwinding) kills what runs there and deletes the namespace.
//! Namespaces left by a test process that was killed outright are removed by
//! the next sandbox created, once their creator's pid is gone.

use crate::process::{self, Finished, Lines};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

const PREFIX: &str = "tsbx-";

/// Whether live tests can run here. Without root they cannot: with
/// `CI=true` that is a failure (panic); otherwise the test is skipped with a
/// message and this returns false.
pub fn live_tests_possible(test: &str) -> bool {
    let problem = if euid() != 0 {
        Some("not root")
    } else if !Path::new("/dev/net/tun").exists() {
        Some("no /dev/net/tun")
    } else if Command::new("ip").arg("-V").output().is_err() {
        Some("no `ip` command (iproute2)")
    } else {
        None
    };
    match problem {
        None => true,
        Some(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: live test cannot run ({why}), and CI=true forbids skipping")
        }
        Some(why) => {
            eprintln!(
                "SKIPPED {test}: live tests need root, TUN and iproute2 ({why}); run scripts/test, which uses sudo"
            );
            false
        }
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// The PID in tunstackd's start-up line, `tunstackd[PID]: owns ...`, if `line` is that line.
pub fn startup_pid(line: &str) -> Option<u32> {
    let (pid, rest) = line.strip_prefix("tunstackd[")?.split_once(']')?;
    rest.starts_with(": owns ").then(|| pid.parse().ok()).flatten()
}

/// A network namespace that exists for the life of this value.
#[derive(Debug)]
pub struct Sandbox {
    name: String,
}

fn ip(args: &[&str]) -> Finished {
    let mut c = Command::new("ip");
    c.args(args);
    process::run(c, Duration::from_secs(20))
}

/// Deletes sandboxes whose creating process no longer exists.
fn remove_stale() {
    let list = ip(&["netns", "list"]);
    for line in list.stdout.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("removing stale sandbox {name}");
            destroy(name);
        }
    }
}

/// Kills every process in namespace `name`, then deletes it (and the
/// directories, with their control sockets, that daemons in it left in
/// /run/tunstack: once unprivileged, a daemon cannot remove its directory).
fn destroy(name: &str) {
    if let Ok(m) = std::fs::metadata(format!("/run/netns/{name}")) {
        let suffix = format!("-netns{}", std::os::unix::fs::MetadataExt::ino(&m));
        for entry in std::fs::read_dir("/run/tunstack").into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().ends_with(&suffix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    for _ in 0..50 {
        let pids = ip(&["netns", "pids", name]).stdout;
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = ip(&["netns", "del", name]);
    if !out.status.success() {
        eprintln!("warning: could not delete namespace {name}: {}", out.stderr.trim());
    }
}

impl Sandbox {
    /// Creates a fresh namespace with its loopback up.
    pub fn create() -> Sandbox {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        remove_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]).assert_success("ip netns add");
        let sb = Sandbox { name };
        ip(&["-n", &sb.name, "link", "set", "lo", "up"]).assert_success("ip link set lo up");
        sb
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `program args` inside the namespace to completion (bounded by `timeout`).
    pub fn run(&self, program: &str, args: &[&str], timeout: Duration) -> Finished {
        let mut c = self.command(program);
        c.args(args);
        process::run(c, timeout)
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it opens
    /// live in the namespace (and stay there, usable from any thread).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.name)).expect("open namespace");
        thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns(2) with a valid namespace fd; it changes only this thread.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("sandboxed closure panicked")
        })
    }

    /// Starts `tunstackd` (at `binary`) with `args` in the namespace and waits
    /// until it says it is ready.
    ///
    /// With `TUNSTACK_TEST_OFFLOAD` set (`on`, `off` or `auto`), every
    /// daemon gets `--offload` with that value unless `args` choose
    /// one, so CI runs the live tests with TUN offloads on and off.
    pub fn start_daemon(&self, binary: &str, args: &[&str]) -> Daemon {
        let mut c = self.command(binary);
        c.args(args);
        if let Some(mode) = offload_flag(std::env::var("TUNSTACK_TEST_OFFLOAD").ok(), args) {
            c.args(["--offload", &mode]);
        }
        c.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stdout = Arc::new(Lines::default());
        let stderr = Arc::new(Lines::default());
        Lines::collect(child.stdout.take().unwrap(), stdout.clone(), "tunstackd");
        Lines::collect(child.stderr.take().unwrap(), stderr.clone(), "tunstackd log");
        let mut d = Daemon {
            child: Some(child),
            stdout,
            stderr,
        };
        if d.stdout
            .wait_for(0, Duration::from_secs(20), |l| startup_pid(l).is_some())
            .is_none()
        {
            let status = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "tunstackd did not become ready (exit: {status:?})\nstdout: {:?}\nstderr: {:?}",
                d.stdout.snapshot(),
                d.stderr.snapshot()
            );
        }
        d
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        destroy(&self.name);
    }
}

/// The offload mode `TUNSTACK_TEST_OFFLOAD` asks of a stack a live test
/// starts in-process (`TunConfig::offload`): as for daemons, `auto` when unset.
pub fn test_offload() -> tunstack::device::tun::Offload {
    match std::env::var("TUNSTACK_TEST_OFFLOAD").ok().filter(|m| !m.is_empty()) {
        None => tunstack::device::tun::Offload::Auto,
        Some(m) => m.parse().unwrap_or_else(|e| panic!("TUNSTACK_TEST_OFFLOAD={m:?}: {e}")),
    }
}

/// The `--offload` mode `TUNSTACK_TEST_OFFLOAD` (`env`) asks of a daemon
/// started with `args`: none when it is unset or empty, or `args` have their own.
fn offload_flag(env: Option<String>, args: &[&str]) -> Option<String> {
    let mode = env.filter(|m| !m.is_empty())?;
    let own = args.iter().any(|a| *a == "--offload" || a.starts_with("--offload="));
    (!own).then_some(mode)
}

/// A running `tunstackd`. Dropping it kills it.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
}

impl Daemon {
    /// The daemon's process id (the `ip netns exec` wrapper execs it, so it is the daemon's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Lines the daemon printed on stdout.
    pub fn stdout(&self) -> &Lines {
        &self.stdout
    }

    /// Lines the daemon logged on stderr.
    pub fn log(&self) -> &Lines {
        &self.stderr
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }

    /// Asks for the counters (SIGUSR1) and returns them by name: the
    /// stack's, the impairment's (`impair_*`) and the census (`sockets_*`).
    pub fn stats(&self) -> HashMap<String, u64> {
        let from = self.stdout.len();
        self.signal("USR1");
        let (_, line) = self
            .stdout
            .wait_for(from, Duration::from_secs(10), |l| l.starts_with("stats: "))
            .unwrap_or_else(|| panic!("daemon printed no stats line after SIGUSR1"));
        line["stats: ".len()..]
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().expect("numeric counter")))
            .collect()
    }

    /// The socket census of [`stats`](Self::stats), without its `sockets_`
    /// prefix: `tcp`, `udp`, and `tcp_<state>` counts.
    pub fn sockets(&self) -> HashMap<String, u64> {
        self.stats()
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("sockets_")?.to_owned(), v)))
            .collect()
    }

    /// Waits up to `timeout` for the daemon to exit on its own and returns
    /// its exit status; `None` if it did not (it is killed then).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("running");
        process::wait_timeout(&mut child, timeout)
    }

    /// Stops the daemon with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        process::wait_timeout(&mut child, Duration::from_secs(10)).expect("daemon did not exit within 10 s of SIGTERM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first so the daemon cleans up (its control socket file), then SIGKILL.
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            if process::wait_timeout(&mut c, Duration::from_secs(5)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Runs `ip` with `args` in the caller's namespace, failing the test if it fails.
fn ip_ok(args: &[&str]) {
    let mut c = Command::new("ip");
    c.args(args);
    process::run(c, Duration::from_secs(20)).assert_success(&format!("ip {args:?}"));
}

/// Joins three sandboxes into a path beyond the daemon's host side:
///
/// stack 10.200.0.2 --tun-- `host` 10.201.1.1 --veth-- 10.201.1.2 `router`
/// 10.201.2.1 --veth-- 10.201.2.2 `far`
///
/// Host and router forward; no kernel on the way rate-limits its ICMP, so
/// every probe gets its answer. The router's link to the far host is
/// `tsv-rf` (its MTU may be lowered to test path MTU discovery).
pub fn router_chain(host: &Sandbox, router: &Sandbox, far: &Sandbox) {
    let (h, r, f) = (host.name(), router.name(), far.name());
    ip_ok(&[
        "-n", h, "link", "add", "tsv-hr", "type", "veth", "peer", "name", "tsv-rh", "netns", r,
    ]);
    ip_ok(&[
        "-n", r, "link", "add", "tsv-rf", "type", "veth", "peer", "name", "tsv-fr", "netns", f,
    ]);
    for (ns, dev, addr) in [
        (h, "tsv-hr", "10.201.1.1/30"),
        (r, "tsv-rh", "10.201.1.2/30"),
        (r, "tsv-rf", "10.201.2.1/30"),
        (f, "tsv-fr", "10.201.2.2/30"),
    ] {
        ip_ok(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip_ok(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip_ok(&["-n", h, "route", "add", "10.201.2.0/30", "via", "10.201.1.2"]);
    ip_ok(&["-n", r, "route", "add", "10.200.0.0/24", "via", "10.201.1.1"]);
    ip_ok(&["-n", f, "route", "add", "default", "via", "10.201.2.1"]);
    for sb in [host, router] {
        sb.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"], Duration::from_secs(10))
            .assert_success("ip_forward");
    }
    for sb in [host, router, far] {
        sb.run("sysctl", &["-qw", "net.ipv4.icmp_ratelimit=0"], Duration::from_secs(10))
            .assert_success("icmp_ratelimit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offload_variable_adds_a_flag_unless_the_test_chose_one() {
        let on = || Some("on".to_owned());
        assert_eq!(offload_flag(on(), &["--mtu", "9000"]).as_deref(), Some("on"));
        assert_eq!(offload_flag(on(), &["--offload", "off"]), None);
        assert_eq!(offload_flag(on(), &["--offload=off"]), None);
        assert_eq!(offload_flag(None, &["--mtu", "9000"]), None);
        assert_eq!(offload_flag(Some(String::new()), &[]), None);
    }
}
