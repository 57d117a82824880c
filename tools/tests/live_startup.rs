//! Live tests of the daemon's start-up: a default start says one line with
//! its PID and nothing else; a start it must refuse says why in one line on
//! stderr, exits non-zero, and leaves no interface, socket file or process
//! behind; and the control socket's default name follows the namespace rule.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tunstack_tests::netns::{Sandbox, live_tests_possible, startup_pid};
use tunstack_tests::process::{self, Lines};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
const CLI: &str = env!("CARGO_BIN_EXE_tunstack");

/// A directory of this test's own for control sockets, removed at the end.
/// Sticky and open to all, like /tmp: the daemon, whichever user it drops
/// to, can remove the socket it made there, and only its own.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tunstack-startup-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("temp dir mode");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .expect("temp dir")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sandbox and a directory of this test's own with a control socket path
/// in it; `None` when live tests cannot run here.
fn setup(test: &str) -> Option<(Sandbox, TempDir, String)> {
    if !live_tests_possible(test) {
        return None;
    }
    let dir = TempDir::new(test);
    let sock = dir.path("c.sock");
    Some((Sandbox::create(), dir, sock))
}

/// One ping from the sandbox's host side to `ip`, which must be answered.
fn ping_once(sb: &Sandbox, ip: &str, what: &str) {
    sb.run("ping", &["-c", "1", "-W", "5", ip], Duration::from_secs(20))
        .assert_success(what);
}

/// The interfaces in the sandbox, by name.
fn links(sb: &Sandbox) -> BTreeSet<String> {
    let out = sb.run("ip", &["-o", "link", "show"], Duration::from_secs(10));
    out.assert_success("ip -o link show");
    out.stdout
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// The processes in the sandbox.
fn pids(sb: &Sandbox) -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["netns", "pids", sb.name()])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Starts tunstackd with `args` as a user would (no RUST_LOG: the default
/// log level) and expects it to refuse with exactly `message` as its only
/// output, a failing exit, and nothing left: no new interface, no file in
/// `dir` (where `args` put the control socket), no new process.
fn assert_refused(sb: &Sandbox, dir: &TempDir, args: &[&str], message: &str) {
    let (links_before, pids_before, files_before) = (links(sb), pids(sb), dir.entries());
    let mut cmd = sb.command(DAEMON);
    cmd.args(args).env_remove("RUST_LOG");
    // Panics unless the daemon has ended by itself within the time.
    let out = process::run(cmd, Duration::from_secs(20));
    assert!(!out.status.success(), "{args:?}: exit {}", out.status);
    assert_eq!(out.stderr, format!("{message}\n"), "{args:?}: stderr");
    assert_eq!(out.stdout, "", "{args:?}: stdout");
    assert_eq!(links(sb), links_before, "{args:?}: an interface was left behind");
    assert_eq!(dir.entries(), files_before, "{args:?}: a file was left behind");
    assert_eq!(pids(sb), pids_before, "{args:?}: a process was left behind");
}

#[test]
fn a_port_wanted_by_two_services_is_refused_naming_both() {
    let Some((sb, dir, sock)) = setup("a_port_wanted_by_two_services_is_refused_naming_both") else {
        return;
    };
    let files = std::env::temp_dir().to_string_lossy().into_owned();
    assert_refused(
        &sb,
        &dir,
        &["--control", &sock, "--files", &files, "--http-port", "7"],
        "tunstackd: --http-port 7: port 7/tcp is already taken by the tcp echo service (--tcp-echo 7)",
    );
    assert_refused(
        &sb,
        &dir,
        &["--control", &sock, "--udp-echo", "9", "--source", "9"],
        "tunstackd: --source 9: port 9/tcp is already taken by the discard service (--discard 9)",
    );
    // The same flags without the clash start (and stop) normally: the refusal was the clash's.
    let d = sb.start_daemon(
        DAEMON,
        &[
            "--control",
            &sock,
            "--files",
            &files,
            "--http-port",
            "8080",
            "--udp-echo",
            "9",
        ],
    );
    assert!(
        d.stdout().snapshot()[0].contains("udp echo :9"),
        "{:?}",
        d.stdout().snapshot()
    );
}

#[test]
fn network_and_broadcast_addresses_are_refused() {
    let Some((sb, dir, sock)) = setup("network_and_broadcast_addresses_are_refused") else {
        return;
    };
    let hosts = "its hosts are 10.200.0.1 to 10.200.0.254";
    for (flag, addr, what) in [
        ("--address", "10.200.0.255/24", "broadcast"),
        ("--address", "10.200.0.0/24", "network"),
        ("--host-address", "10.200.0.255/24", "broadcast"),
        ("--host-address", "10.200.0.0/24", "network"),
    ] {
        let ip = addr.split('/').next().unwrap();
        assert_refused(
            &sb,
            &dir,
            &["--control", &sock, flag, addr],
            &format!("tunstackd: {flag} {addr}: {ip} is the {what} address of 10.200.0.0/24; {hosts}"),
        );
    }
    // A /31 has neither (RFC 3021): both its addresses are hosts'.
    let mut d = sb.start_daemon(
        DAEMON,
        &[
            "--control",
            &sock,
            "--address",
            "10.200.0.0/31",
            "--host-address",
            "10.200.0.1/31",
        ],
    );
    ping_once(&sb, "10.200.0.0", "ping the stack at 10.200.0.0/31");
    assert!(d.stop().success());
}

#[test]
fn the_stack_and_the_host_need_their_own_addresses_in_one_subnet() {
    let Some((sb, dir, sock)) = setup("the_stack_and_the_host_need_their_own_addresses_in_one_subnet") else {
        return;
    };
    assert_refused(
        &sb,
        &dir,
        &["--control", &sock, "--host-address", "10.200.0.2/24"],
        "tunstackd: --address 10.200.0.2/24 and --host-address 10.200.0.2/24: \
         the stack and the host side would both be 10.200.0.2",
    );
    assert_refused(
        &sb,
        &dir,
        &["--control", &sock, "--address", "10.9.0.2/24"],
        "tunstackd: --address 10.9.0.2/24 and --host-address 10.200.0.1/24: the stack's 10.9.0.2 is \
         outside the host side's subnet 10.200.0.0/24, so the host would have no route to it",
    );
}

#[test]
fn a_second_daemon_may_not_take_a_host_subnet_in_use() {
    let Some((sb, dir, first)) = setup("a_second_daemon_may_not_take_a_host_subnet_in_use") else {
        return;
    };
    let second = dir.path("tun1.sock");
    let _d = sb.start_daemon(DAEMON, &["--control", &first]);
    assert_refused(
        &sb,
        &dir,
        &["--control", &second, "--interface", "tun1"],
        "tunstackd: host subnet 10.200.0.0/24 overlaps 10.200.0.1/24 on tun0; choose another --address/--host-address",
    );
    // A wider subnet that holds tun0's is refused as well.
    assert_refused(
        &sb,
        &dir,
        &[
            "--control",
            &second,
            "--interface",
            "tun1",
            "--address",
            "10.200.1.2/16",
            "--host-address",
            "10.200.1.1/16",
        ],
        "tunstackd: host subnet 10.200.0.0/16 overlaps 10.200.0.1/24 on tun0; choose another --address/--host-address",
    );
    // The first daemon still answers, and a subnet of its own is fine for the second.
    ping_once(&sb, "10.200.0.2", "ping the first daemon");
    let _d2 = sb.start_daemon(
        DAEMON,
        &[
            "--control",
            &second,
            "--interface",
            "tun1",
            "--address",
            "10.201.0.2/24",
            "--host-address",
            "10.201.0.1/24",
        ],
    );
    ping_once(&sb, "10.201.0.2", "ping the second daemon");
}

#[test]
fn an_unknown_control_group_leaves_no_socket_behind() {
    let Some((sb, dir, sock)) = setup("an_unknown_control_group_leaves_no_socket_behind") else {
        return;
    };
    assert_refused(
        &sb,
        &dir,
        &["--control", &sock, "--control-group", "nosuchgroup"],
        "tunstackd: --control-group nosuchgroup: no group named \"nosuchgroup\"",
    );
    // A real group makes it 0660 for that group.
    let _d = sb.start_daemon(DAEMON, &["--control", &sock, "--control-group", "root"]);
    let meta = std::fs::metadata(&sock).expect("control socket");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((meta.permissions().mode() & 0o777, meta.gid()), (0o660, 0));
}

#[test]
fn a_failure_after_the_tun_exists_takes_it_down_again() {
    let Some((sb, dir, sock)) = setup("a_failure_after_the_tun_exists_takes_it_down_again") else {
        return;
    };
    // The control socket is made after the TUN: when it cannot be, the
    // daemon must undo the TUN (and everything else) on its way out.
    std::fs::write(dir.0.join("file"), b"").unwrap();
    let blocked = dir.path("file/c.sock");
    // The capture file it made goes too.
    let capture = dir.path("capture.pcap");
    assert_refused(
        &sb,
        &dir,
        &["--control", &blocked, "--pcap", &capture],
        &format!(
            "tunstackd: control socket {blocked}: {} is not a directory",
            dir.path("file")
        ),
    );
    // A socket another daemon is serving is not taken, nor removed.
    let first = sb.start_daemon(DAEMON, &["--control", &sock]);
    assert_refused(
        &sb,
        &dir,
        &[
            "--control",
            &sock,
            "--interface",
            "tun1",
            "--address",
            "10.201.0.2/24",
            "--host-address",
            "10.201.0.1/24",
        ],
        &format!(
            "tunstackd: control socket {sock} is in use (by {}/tunstackd): is another tunstackd running?",
            first.pid()
        ),
    );
    let out = sb.run(CLI, &["--control", &sock, "ifconfig"], Duration::from_secs(20));
    out.assert_success("the first daemon still serves its socket");
}

#[test]
fn a_default_start_prints_one_line_with_its_pid_and_nothing_on_stderr() {
    if !live_tests_possible("a_default_start_prints_one_line_with_its_pid_and_nothing_on_stderr") {
        return;
    }
    let sb = Sandbox::create();
    let mut cmd = sb.command(DAEMON);
    cmd.env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start tunstackd");
    // `ip netns exec` execs the daemon: this is its PID.
    let pid = child.id();
    let stdout = Arc::new(Lines::default());
    Lines::collect(child.stdout.take().unwrap(), stdout.clone(), "tunstackd");
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let started = stdout.wait_for(0, Duration::from_secs(20), |l| startup_pid(l).is_some());
    let Some((_, line)) = started else {
        let _ = child.kill();
        panic!("no start-up line; stdout {:?}", stdout.snapshot());
    };
    assert_eq!(startup_pid(&line), Some(pid), "{line}");
    assert!(
        line.starts_with(&format!(
            "tunstackd[{pid}]: owns tun0 (stack 10.200.0.2/24, host side 10.200.0.1/24, MTU 1500, offloads "
        )),
        "{line}"
    );
    // It is fully up: the CLI finds it by the default socket name and it answers.
    let out = sb.run(CLI, &["ifconfig"], Duration::from_secs(20));
    out.assert_success("tunstack ifconfig");
    assert_eq!(stdout.snapshot(), [line], "the start-up line is all it printed");

    let killed = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let status = process::wait_timeout(&mut child, Duration::from_secs(10)).expect("exit on SIGTERM");
    assert!(status.success(), "{status}");
    assert_eq!(stderr.join().unwrap(), "", "nothing on stderr, from start to stop");
    let ns = std::fs::metadata(format!("/run/netns/{}", sb.name())).expect("namespace");
    let sock = format!(
        "/run/tunstack/tun0-netns{}/control.sock",
        std::os::unix::fs::MetadataExt::ino(&ns)
    );
    assert!(!Path::new(&sock).exists(), "{sock} outlived the daemon");
}

/// The socket path the CLI reports when no daemon answers there.
fn cli_socket_path(cmd: Command) -> String {
    let out = process::run(cmd, Duration::from_secs(20));
    assert!(!out.status.success(), "no daemon should answer: {}", out.stdout);
    let at = out
        .stderr
        .find("/run/tunstack/")
        .unwrap_or_else(|| panic!("{}", out.stderr));
    out.stderr[at..]
        .split(|c: char| c.is_whitespace() || c == ':')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn the_control_socket_is_named_by_namespace_only_outside_the_machines_own() {
    if !live_tests_possible("the_control_socket_is_named_by_namespace_only_outside_the_machines_own") {
        return;
    }
    // No daemon runs on this interface anywhere: the CLI only says where it looked.
    let ifname = format!("tsnm{}", std::process::id() % 100_000);
    let sb = Sandbox::create();
    let ns = std::fs::metadata(format!("/run/netns/{}", sb.name())).expect("namespace");
    let ino = std::os::unix::fs::MetadataExt::ino(&ns);
    let mut cmd = sb.command(CLI);
    cmd.args(["-I", &ifname, "ifconfig"]);
    assert_eq!(
        cli_socket_path(cmd),
        format!("/run/tunstack/{ifname}-netns{ino}/control.sock")
    );

    // Here, in the test's own namespace (PID 1's where tests run), the plain
    // name, even where /proc/1/ns/net cannot be read. PID 1's namespace is
    // told apart by `stat`, a process of its own.
    let stat = Command::new("stat")
        .args(["-L", "-c", "%i", "/proc/1/net/dev", "/proc/self/net/dev"])
        .output()
        .expect("stat");
    let inodes = String::from_utf8_lossy(&stat.stdout).into_owned();
    let inodes: Vec<&str> = inodes.lines().collect();
    assert_eq!(inodes.len(), 2, "{inodes:?}");
    let mut cmd = Command::new(CLI);
    cmd.args(["-I", &ifname, "ifconfig"]);
    let expected = if inodes[0] == inodes[1] {
        format!("/run/tunstack/{ifname}/control.sock")
    } else {
        let ours = std::fs::metadata("/proc/self/ns/net").expect("own namespace");
        format!(
            "/run/tunstack/{ifname}-netns{}/control.sock",
            std::os::unix::fs::MetadataExt::ino(&ours)
        )
    };
    assert_eq!(cli_socket_path(cmd), expected);
    assert!(!Path::new(&expected).exists());
}

/// `--control PATH` replaces only a socket nobody answers on: any other
/// file there is refused, and left as it was.
#[test]
fn a_control_path_holding_another_file_is_refused_and_kept() {
    let Some((sb, dir, _)) = setup("a_control_path_holding_another_file_is_refused_and_kept") else {
        return;
    };
    let precious = dir.path("precious");
    std::fs::write(&precious, "keep me\n").unwrap();
    let (links_before, pids_before) = (links(&sb), pids(&sb));
    let mut cmd = sb.command(DAEMON);
    cmd.args(["--control", &precious]).env_remove("RUST_LOG");
    let out = process::run(cmd, Duration::from_secs(20));
    assert!(!out.status.success());
    assert_eq!(
        out.stderr,
        format!("tunstackd: control socket {precious}: a file that is not a socket is there\n")
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
    assert_eq!(links(&sb), links_before, "an interface was left behind");
    assert_eq!(pids(&sb), pids_before, "a process was left behind");
}
