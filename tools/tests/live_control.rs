//! Live tests of the control socket and the `tunstack` CLI against a
//! running daemon in a namespace, with host tools on the other side.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream as HostTcp};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};
use tunstack_tests::process;

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
const CLI: &str = env!("CARGO_BIN_EXE_tunstack");

/// A sandbox with a daemon whose control socket is private to this test.
fn start(tag: &str, extra: &[&str]) -> (Sandbox, Daemon, String) {
    let sb = Sandbox::create();
    let control = std::env::temp_dir()
        .join(format!("tunstack-{}-{tag}.sock", std::process::id()))
        .to_string_lossy()
        .into_owned();
    let mut args = vec!["--control", control.as_str()];
    args.extend_from_slice(extra);
    let d = sb.start_daemon(DAEMON, &args);
    (sb, d, control)
}

/// Runs the CLI (inside the sandbox, as a user would) and returns its output.
fn cli(sb: &Sandbox, control: &str, args: &[&str]) -> String {
    let mut all = vec!["--control", control];
    all.extend_from_slice(args);
    let out = sb.run(CLI, &all, Duration::from_secs(30));
    out.assert_success(&format!("tunstack {args:?}"));
    out.stdout
}

#[test]
fn ifconfig_route_and_netstat_show_the_stack() {
    if !live_tests_possible("ifconfig_route_and_netstat_show_the_stack") {
        return;
    }
    let (sb, _d, control) = start("tables", &["--msl", "2"]);
    let mode = std::fs::metadata(&control).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket only for its owner");

    let ifc = cli(&sb, &control, &["ifconfig"]);
    assert!(
        ifc.contains("inet 10.200.0.2  netmask 255.255.255.0  broadcast 10.200.0.255"),
        "{ifc}"
    );
    assert!(
        ifc.contains("mtu 1500") && ifc.contains("RX packets") && ifc.contains("TX errors"),
        "{ifc}"
    );

    let route = cli(&sb, &control, &["route"]);
    let lines: Vec<&str> = route.lines().collect();
    assert!(
        lines[1].starts_with("Destination     Gateway         Genmask         Flags"),
        "{route}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("10.200.0.0      0.0.0.0         255.255.255.0   U ")),
        "{route}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("0.0.0.0         10.200.0.1      0.0.0.0         UG")),
        "{route}"
    );

    // The host holds a connection to the echo service.
    let mut conn = sb.enter(|| HostTcp::connect("10.200.0.2:7").unwrap());
    conn.write_all(b"hi\n").unwrap();
    let mut buf = [0u8; 3];
    conn.read_exact(&mut buf).unwrap();
    let port = conn.local_addr().unwrap().port();
    let ns = cli(&sb, &control, &["netstat", "-a", "-p"]);
    let row = ns
        .lines()
        .find(|l| l.contains(&format!("10.200.0.1:{port}")))
        .unwrap_or_else(|| panic!("{ns}"));
    assert!(
        row.starts_with("tcp") && row.contains("10.200.0.2:7") && row.contains("ESTABLISHED"),
        "{row}"
    );
    assert!(row.trim_end().ends_with("echo"), "owner: {row}");
    assert!(
        ns.lines()
            .any(|l| l.contains("0.0.0.0:7") && l.contains("LISTEN") && l.ends_with("echo")),
        "{ns}"
    );
    assert!(
        ns.lines().any(|l| l.starts_with("udp") && l.contains("0.0.0.0:7")),
        "{ns}"
    );
    let info = cli(&sb, &control, &["netstat", "-t", "-i"]);
    assert!(info.contains("RTT(ms)") && info.contains("cwnd"), "{info}");
    conn.shutdown(Shutdown::Write).unwrap();
    assert_eq!(conn.read(&mut buf).unwrap(), 0);
    drop(conn);

    // A connection the stack closes first waits in TIME_WAIT, still labelled.
    let mut src = sb.enter(|| HostTcp::connect("10.200.0.2:19").unwrap());
    src.write_all(b"10\n").unwrap();
    let mut got = Vec::new();
    src.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 10);
    let port = src.local_addr().unwrap().port();
    drop(src);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ns = cli(&sb, &control, &["netstat", "-a", "-p"]);
        if let Some(row) = ns.lines().find(|l| l.contains(&format!("10.200.0.1:{port}"))) {
            if row.contains("TIME_WAIT") {
                assert!(row.trim_end().ends_with("source"), "{row}");
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no TIME_WAIT row:\n{ns}");
    }
}

#[test]
fn nc_listens_and_connects_through_the_stack_with_eof_both_ways() {
    if !live_tests_possible("nc_listens_and_connects_through_the_stack_with_eof_both_ways") {
        return;
    }
    let (sb, _d, control) = start("nc", &[]);
    // tunstack nc -l 5000 on the stack; the host's nc connects.
    let mut listener = sb
        .command(CLI)
        .args(["--control", &control, "nc", "-l", "5000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cli(&sb, &control, &["netstat", "-l"]).contains("0.0.0.0:5000") {
        assert!(std::time::Instant::now() < deadline, "tunstack nc -l never listened");
    }
    let mut stdin = listener.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(b"from the stack side\n").unwrap(); // then EOF: a half-close
    });
    let mut host = sb.command("sh");
    host.args(["-c", "printf 'from the host side\\n' | nc -N 10.200.0.2 5000"]);
    let host_out = process::run(host, Duration::from_secs(30));
    host_out.assert_success("host nc");
    writer.join().unwrap();
    assert_eq!(
        host_out.stdout, "from the stack side\n",
        "the stack's side reached the host, then EOF"
    );
    let status = process::wait_timeout(&mut listener, Duration::from_secs(10)).expect("tunstack nc -l exits on EOF");
    let mut got = String::new();
    listener.stdout.take().unwrap().read_to_string(&mut got).unwrap();
    assert!(status.success());
    assert_eq!(got, "from the host side\n");

    // tunstack nc 10.200.0.1 6000 against the host's nc -l.
    let mut host = sb.command("sh");
    host.args(["-c", "printf 'hello from the host\\n' | nc -N -l 10.200.0.1 6000"]);
    let host_l = std::thread::spawn(move || process::run(host, Duration::from_secs(30)));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let out = loop {
        let mut c = sb.command("sh");
        c.args([
            "-c",
            &format!("printf 'hello from the stack\\n' | {CLI} --control {control} nc 10.200.0.1 6000"),
        ]);
        let out = process::run(c, Duration::from_secs(30));
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        assert!(out.stderr.contains("refused"), "{}", out.stderr); // the host's nc is not up yet
    };
    out.assert_success("tunstack nc");
    assert_eq!(out.stdout, "hello from the host\n");
    let host_out = host_l.join().unwrap();
    host_out.assert_success("host nc -l");
    assert_eq!(host_out.stdout, "hello from the stack\n");
}

#[test]
fn garbage_on_the_control_socket_gets_an_error_and_the_daemon_keeps_serving() {
    if !live_tests_possible("garbage_on_the_control_socket_gets_an_error_and_the_daemon_keeps_serving") {
        return;
    }
    let (sb, _d, control) = start("garbage", &[]);
    for junk in [
        &b"\xff\xfe\x00\x01 not a request\n"[..],
        b"FROBNICATE now\n",
        &[b'A'; 5000][..],
    ] {
        let mut s = UnixStream::connect(&control).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(junk);
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(
            reply.starts_with("ERR "),
            "reply to {:?}: {reply:?}",
            &junk[..junk.len().min(20)]
        );
    }
    // A client that vanishes mid-request disturbs nothing either.
    drop(UnixStream::connect(&control).unwrap());
    let mut s = UnixStream::connect(&control).unwrap();
    s.write_all(b"VERSION\n").unwrap();
    let mut line = [0u8; 64];
    let n = s.read(&mut line).unwrap();
    assert!(String::from_utf8_lossy(&line[..n]).starts_with("OK tunstackd"));
    assert!(cli(&sb, &control, &["ifconfig"]).contains("10.200.0.2"));
}

#[test]
fn the_default_control_socket_is_found_by_interface_name() {
    if !live_tests_possible("the_default_control_socket_is_found_by_interface_name") {
        return;
    }
    let sb = Sandbox::create();
    let _d = sb.start_daemon(DAEMON, &["--interface", "tsctl0"]);
    // No --control on either side: both derive the path from the interface and namespace.
    let out = sb.run(CLI, &["-I", "tsctl0", "ifconfig"], Duration::from_secs(30));
    out.assert_success("tunstack -I tsctl0 ifconfig");
    assert!(out.stdout.starts_with("tsctl0:"), "{}", out.stdout);
}
