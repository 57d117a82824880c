//! Live: tunstackd runs unprivileged once started. Its every thread shows
//! a user and group other than root and no capability; ping, echo, the file
//! services and every `tunstack` command still work; each stop signal
//! (SIGINT, SIGTERM, SIGHUP, SIGQUIT) removes tun0 and the control socket;
//! `--user` takes a bare uid, and SUDO_UID names the default user; `nc -l`
//! works as the daemon's user; nothing planted in its directory survives.

use std::io::{Read, Write};
use std::net::TcpStream as HostTcp;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};
use tunstack_tests::process;
use tunstack_tools::privilege::{self, Identity};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
const CLI: &str = env!("CARGO_BIN_EXE_tunstack");

/// Long enough for anything here to happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// A scratch directory under /tmp, world-readable (the daemon's user reads
/// files from it), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str, mode: u32) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tunstack-privilege-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemon's control socket: the default one, from its log.
fn control_path(d: &Daemon) -> String {
    let (_, line) = d
        .log()
        .wait_for(0, PATIENCE, |l| l.contains("control socket at "))
        .expect("the daemon logs its control socket");
    line.rsplit("control socket at ").next().unwrap().trim().to_owned()
}

/// Asserts that every thread of process `pid` runs as `user` with no
/// capability (nor, `as_root`, any in its bounding set); returns how many
/// threads there are.
fn assert_unprivileged(pid: u32, user: &Identity, as_root: bool) -> usize {
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the daemon's threads")
        .map(|t| t.unwrap().path())
        .collect();
    for task in &tasks {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        assert_eq!(
            privilege::status_problems(&status, user),
            Vec::<String>::new(),
            "{}:\n{status}",
            task.display()
        );
        for line in status
            .lines()
            .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:"))
        {
            assert!(!line.split_whitespace().skip(1).any(|id| id == "0"), "{line}");
        }
        assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
        if as_root {
            assert_eq!(privilege::bounding_problem(&status), None, "{status}");
        }
    }
    tasks.len()
}

/// A user with no passwd entry, in group `gid` only.
fn stray(uid: u32, gid: u32) -> Identity {
    Identity {
        name: format!("uid {uid}"),
        uid,
        gid,
        groups: Vec::new(),
    }
}

/// `tunstack ARGS` in the sandbox, as root or, with `user`, as that user.
fn cli(sb: &Sandbox, user: Option<&Identity>, args: &[&str]) -> process::Finished {
    let mut c = match user {
        None => sb.command(CLI),
        Some(u) => {
            let mut c = sb.command("setpriv");
            c.args([
                "--reuid",
                &u.uid.to_string(),
                "--regid",
                &u.gid.to_string(),
                "--clear-groups",
                CLI,
            ]);
            c
        }
    };
    c.args(args);
    process::run(c, PATIENCE)
}

/// A host-side HTTP server on 10.200.0.1:8000 serving `dir`, up once it accepts.
fn host_http_server(sb: &Sandbox, dir: &str) -> Child {
    let mut server = sb.command("python3");
    server
        .args(["-m", "http.server", "8000", "--bind", "10.200.0.1", "--directory", dir])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = server.spawn().expect("python3 -m http.server");
    let deadline = Instant::now() + PATIENCE;
    while sb.enter(|| HostTcp::connect("10.200.0.1:8000")).is_err() {
        assert!(Instant::now() < deadline, "the host's HTTP server never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn the_daemon_drops_to_an_unprivileged_user_and_everything_still_works() {
    if !live_tests_possible("the_daemon_drops_to_an_unprivileged_user_and_everything_still_works") {
        return;
    }
    // What the daemon picks by default: SUDO_UID's user, else nobody (CI).
    let user = privilege::default_user().unwrap();
    assert_ne!(user.uid, 0);
    let site = Scratch::new("site", 0o755);
    std::fs::write(site.path("hello.txt"), b"hello from the files\n").unwrap();
    let secret = site.path("root-only.txt");
    std::fs::write(&secret, b"root only\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pcap = Scratch::new("pcap", 0o755);

    let sb = Sandbox::create();
    let capture = pcap.path("c.pcap");
    let d = sb.start_daemon(DAEMON, &["--files", &site.0.to_string_lossy(), "--pcap", &capture]);
    let threads = assert_unprivileged(d.pid(), &user, true);
    let control = control_path(&d);
    // The socket, private to the daemon's user, in a directory of that
    // user's own; only root may add to /run/tunstack.
    {
        use std::os::unix::fs::MetadataExt;
        let socket = std::fs::symlink_metadata(&control).expect("the control socket");
        assert_eq!((socket.uid(), socket.mode() & 0o7777), (user.uid, 0o600));
        let dir = Path::new(&control).parent().unwrap();
        assert_eq!(std::fs::metadata(dir).unwrap().uid(), user.uid, "{}", dir.display());
        let run = std::fs::metadata(dir.parent().unwrap()).unwrap();
        assert_eq!((run.uid(), run.mode() & 0o7777), (0, 0o755));
    }

    // Ping and echo.
    sb.run("ping", &["-c", "2", "-i", "0.2", "-W", "5", "10.200.0.2"], PATIENCE)
        .assert_success("ping");
    let conn = sb.enter(|| HostTcp::connect("10.200.0.2:7").expect("connect to echo"));
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    (&conn).write_all(b"echo me\n").unwrap();
    let mut back = [0u8; 8];
    (&conn).read_exact(&mut back).unwrap();
    assert_eq!(&back, b"echo me\n");
    drop(conn);

    // Files, over HTTP and the downloader: what the user may read, and
    // nothing only root may.
    let got = sb.run(
        "curl",
        &["-sS", "--max-time", "10", "http://10.200.0.2/hello.txt"],
        PATIENCE,
    );
    assert_eq!(got.assert_success("curl").stdout, "hello from the files\n");
    let denied = sb.run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "http://10.200.0.2/root-only.txt",
        ],
        PATIENCE,
    );
    assert_ne!(denied.stdout, "200", "a file only root may read is not served");
    let mut down = sb.command("sh");
    down.args(["-c", "printf 'hello.txt\\n' | nc -N 10.200.0.2 2000"]);
    let down = process::run(down, PATIENCE);
    assert!(down.stdout.contains("hello from the files"), "{down:?}");

    // Every tunstack command, as root and as the daemon's user.
    let www = Scratch::new("www", 0o755);
    std::fs::write(www.path("page.txt"), b"from the host\n").unwrap();
    let mut server = host_http_server(&sb, &www.0.to_string_lossy());
    for who in [None, Some(&user)] {
        let ifconfig = cli(&sb, who, &["ifconfig"]);
        assert!(
            ifconfig.assert_success("ifconfig").stdout.contains("10.200.0.2"),
            "{ifconfig:?}"
        );
        let route = cli(&sb, who, &["route"]);
        assert!(route.assert_success("route").stdout.contains("10.200.0.1"), "{route:?}");
        let netstat = cli(&sb, who, &["netstat", "-a"]);
        assert!(netstat.assert_success("netstat").stdout.contains(":7"), "{netstat:?}");
        cli(&sb, who, &["netstat", "-s"]).assert_success("netstat -s");
        cli(&sb, who, &["ping", "-c", "1", "10.200.0.1"]).assert_success("tunstack ping");
        let trace = cli(&sb, who, &["traceroute", "-m", "2", "-q", "1", "10.200.0.1"]);
        assert!(
            trace.assert_success("traceroute").stdout.contains("10.200.0.1"),
            "{trace:?}"
        );
        let get = cli(&sb, who, &["get", "http://10.200.0.1:8000/page.txt", "-o", "-"]);
        assert_eq!(get.assert_success("get").stdout, "from the host\n");
        let mut nc = sb.command("sh");
        let as_user = who.map_or(String::new(), |u| {
            format!("setpriv --reuid {} --regid {} --clear-groups ", u.uid, u.gid)
        });
        let request = "printf 'GET /page.txt HTTP/1.0\\r\\n\\r\\n'";
        nc.args(["-c", &format!("{request} | {as_user}{CLI} nc 10.200.0.1 8000")]);
        let nc = process::run(nc, PATIENCE);
        assert!(
            nc.assert_success("tunstack nc").stdout.ends_with("from the host\n"),
            "{nc:?}"
        );
    }
    let _ = server.kill();
    let _ = server.wait();

    // Still unprivileged, threads started since included; the capture went on.
    assert!(assert_unprivileged(d.pid(), &user, true) >= threads);
    assert!(std::fs::metadata(&capture).unwrap().len() > 24, "packets captured");
    drop(d);
    assert!(!Path::new(&control).exists(), "the control socket is removed at exit");
}

#[test]
fn each_stop_signal_removes_tun0_and_the_control_socket() {
    if !live_tests_possible("each_stop_signal_removes_tun0_and_the_control_socket") {
        return;
    }
    let scratch = Scratch::new("signals", 0o755);
    for (i, sig) in ["INT", "TERM", "HUP", "QUIT"].into_iter().enumerate() {
        let sb = Sandbox::create();
        // The default socket, and one the test names in a directory of its own (sticky, like /tmp).
        let args: Vec<String> = if i % 2 == 0 {
            Vec::new()
        } else {
            let dir = scratch.path(sig);
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
            vec!["--control".into(), format!("{dir}/c.sock")]
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut d = sb.start_daemon(DAEMON, &args);
        let control = control_path(&d);
        assert!(Path::new(&control).exists(), "SIG{sig}: the socket is there");
        sb.run("ip", &["link", "show", "tun0"], PATIENCE)
            .assert_success("tun0 is there");
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &d.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig}");
        let status = d.wait_exit(PATIENCE).unwrap_or_else(|| panic!("SIG{sig}: no exit"));
        assert!(status.success(), "SIG{sig}: a clean exit: {status}");
        assert!(!Path::new(&control).exists(), "SIG{sig}: {control} removed");
        let link = sb.run("ip", &["link", "show", "tun0"], PATIENCE);
        assert!(!link.status.success(), "SIG{sig}: tun0 is gone: {}", link.stdout);
        assert!(
            !d.log().snapshot().iter().any(|l| l.contains("panicked")),
            "SIG{sig}: {:?}",
            d.log().snapshot()
        );
    }
}

#[test]
fn user_takes_a_bare_uid_and_sudo_uid_names_the_default() {
    if !live_tests_possible("user_takes_a_bare_uid_and_sudo_uid_names_the_default") {
        return;
    }
    let (bare, sudoer) = (stray(4242, 4242), stray(4343, 4344));
    for (user, args) in [
        (&bare, vec![DAEMON, "--user", "4242"]),
        // `env` execs the daemon: the PID is still the daemon's.
        (&sudoer, vec!["SUDO_UID=4343", "SUDO_GID=4344", DAEMON]),
    ] {
        let sb = Sandbox::create();
        let d = sb.start_daemon("env", &args);
        assert_unprivileged(d.pid(), user, true);
        let control = control_path(&d);
        cli(&sb, None, &["ifconfig"]).assert_success("ifconfig as root");
        cli(&sb, Some(user), &["ifconfig"]).assert_success("ifconfig as the daemon's user");
        sb.run("ping", &["-c", "1", "-W", "5", "10.200.0.2"], PATIENCE)
            .assert_success("ping");
        drop(d);
        assert!(!Path::new(&control).exists(), "{control} removed at exit");
    }
}

#[test]
fn a_control_socket_the_user_could_not_remove_is_refused_at_start() {
    if !live_tests_possible("a_control_socket_the_user_could_not_remove_is_refused_at_start") {
        return;
    }
    // Root's directory, 0755: the daemon's user could not remove its socket there.
    let dir = Scratch::new("blocked", 0o755);
    let sock = dir.path("c.sock");
    let sb = Sandbox::create();
    let out = sb.run(DAEMON, &["--user", "4242", "--control", &sock], PATIENCE);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("could not remove it") && out.stderr.contains("uid 4242"),
        "{}",
        out.stderr
    );
    assert!(!Path::new(&sock).exists(), "nothing left behind");
    let link = sb.run("ip", &["link", "show", "tun0"], PATIENCE);
    assert!(!link.status.success(), "tun0 is gone: {}", link.stdout);
    // As root, it may (with a warning): root keeps its privileges.
    let sb = Sandbox::create();
    let d = sb.start_daemon(DAEMON, &["--user", "root", "--control", &sock]);
    d.log()
        .wait_for(0, PATIENCE, |l| l.contains("running as root"))
        .expect("a warning");
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    assert!(status.contains("Uid:\t0\t0\t0\t0"), "{status}");
    drop(d);
    assert!(!Path::new(&sock).exists(), "removed at exit");
}

/// Started as an ordinary user holding capabilities (ambient CAP_NET_ADMIN
/// and CAP_DAC_OVERRIDE, enough for /dev/net/tun), it stays that user and
/// gives every capability up, in every thread.
#[test]
fn a_user_started_with_capabilities_keeps_none() {
    if !live_tests_possible("a_user_started_with_capabilities_keeps_none") {
        return;
    }
    let dir = Scratch::new("capabilities", 0o1777);
    let sock = dir.path("c.sock");
    let sb = Sandbox::create();
    let caps = "+net_admin,+dac_override";
    let d = sb.start_daemon(
        "setpriv",
        &[
            "--reuid=4242",
            "--regid=4242",
            "--clear-groups",
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
            DAEMON,
            "--control",
            &sock,
        ],
    );
    assert_unprivileged(d.pid(), &stray(4242, 4242), false);
    sb.run("ping", &["-c", "1", "-W", "5", "10.200.0.2"], PATIENCE)
        .assert_success("ping");
    let mut c = sb.command(CLI);
    c.args(["--control", &sock, "ifconfig"]);
    process::run(c, PATIENCE).assert_success("ifconfig");
    drop(d);
    assert!(!Path::new(&sock).exists(), "removed at exit");
}

/// The daemon's own directory is its user's while it runs; what that user
/// (or anyone sharing it, like `nobody`) leaves there, a FIFO in the
/// socket's place say, does not survive the next start.
#[test]
fn what_is_planted_in_the_daemons_own_directory_does_not_survive_a_restart() {
    if !live_tests_possible("what_is_planted_in_the_daemons_own_directory_does_not_survive_a_restart") {
        return;
    }
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let sb = Sandbox::create();
    let d = sb.start_daemon(DAEMON, &["--user", "4242"]);
    let control = control_path(&d);
    drop(d);
    let dir = Path::new(&control).parent().unwrap().to_owned();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().uid(),
        4242,
        "the directory stays, its user's"
    );
    let _ = std::fs::remove_file(&control);
    let as_user = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=4242", "--regid=4242", "--clear-groups"]).args(args);
        assert!(c.status().unwrap().success(), "{args:?}");
    };
    as_user(&["mkfifo", &control]);
    as_user(&["touch", &dir.join("planted").to_string_lossy()]);
    let d = sb.start_daemon(DAEMON, &["--user", "4242"]);
    assert_eq!(control_path(&d), control);
    let socket = std::fs::symlink_metadata(&control).unwrap();
    assert!(socket.file_type().is_socket(), "a socket again, not the FIFO");
    assert!(!dir.join("planted").exists(), "nothing planted survives");
    sb.run(CLI, &["ifconfig"], PATIENCE)
        .assert_success("the CLI reaches it");
    drop(d);
}

/// `tunstack nc -l`, run as the daemon's own user on its default socket,
/// takes a connection from the host and prints what it sends.
#[test]
fn nc_listens_as_the_daemons_user() {
    if !live_tests_possible("nc_listens_as_the_daemons_user") {
        return;
    }
    let user = stray(4242, 4242);
    let sb = Sandbox::create();
    let _d = sb.start_daemon(DAEMON, &["--user", "4242"]);
    std::thread::scope(|s| {
        let listener = s.spawn(|| cli(&sb, Some(&user), &["nc", "-l", "5000"]));
        // Refused (reset) until nc listens.
        let deadline = Instant::now() + PATIENCE;
        let mut host = loop {
            match sb.enter(|| HostTcp::connect("10.200.0.2:5000")) {
                Ok(c) => break c,
                Err(e) => assert!(Instant::now() < deadline, "nc -l never listened: {e}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        host.write_all(b"hello from the host\n").unwrap();
        host.shutdown(std::net::Shutdown::Write).unwrap();
        host.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut rest = Vec::new();
        host.read_to_end(&mut rest).unwrap();
        let out = listener.join().unwrap();
        out.assert_success("nc -l as the daemon's user");
        assert_eq!(out.stdout, "hello from the host\n");
    });
}
