//! Live tests of the control socket and the `tunstack` CLI against a
//! running daemon in a namespace, with host tools on the other side; among
//! them the CLI behaving like the classic tools: `netstat -s` against
//! SIGUSR1's line through a lossy link, `netstat -t -i` counting a
//! connection's loss recovery, a closed stdout pipe, `nc -u` meeting a
//! closed port.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream as HostTcp, UdpSocket as HostUdp};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};
use tunstack_tests::process::{self, Lines};
use tunstack_tools::cli::statistics;

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
        ifc.starts_with("tun0: flags=211<UP,BROADCAST,POINTOPOINT,RUNNING,NOARP>  mtu 1500\n"),
        "{ifc}"
    );
    assert!(
        ifc.contains(
            "\n        inet 10.200.0.2  netmask 255.255.255.0  broadcast 10.200.0.255  destination 10.200.0.1\n"
        ),
        "{ifc}"
    );
    assert!(
        ifc.contains(" B)\n") || ifc.contains("iB)\n"),
        "bytes with units: {ifc}"
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
    let listen: Vec<&str> = ns
        .lines()
        .find(|l| l.contains("0.0.0.0:7") && l.contains("LISTEN"))
        .unwrap_or_else(|| panic!("{ns}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        listen,
        ["tcp", "0", "0", "0.0.0.0:7", "0.0.0.0:*", "LISTEN", "echo"],
        "Send-Q 0 as netstat -anp shows a listener"
    );
    assert!(
        ns.lines().any(|l| l.starts_with("udp") && l.contains("0.0.0.0:7")),
        "{ns}"
    );
    let info = cli(&sb, &control, &["netstat", "-t", "-i"]);
    let lines: Vec<&str> = info.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(&format!("10.200.0.1:{port}")))
        .unwrap_or_else(|| panic!("{info}"));
    let details = lines[at + 1];
    assert!(
        details.starts_with("        rtt ") && details.contains("ms  rto ") && details.contains("ms  cwnd 10 seg ("),
        "{details}"
    );
    assert!(
        details.contains(
            " B)  ssthresh ∞  mss 1460 B  retrans 0 seg  recovery 0 fast, 0 rack-marked, 0 probes, 0 undone, 0 timeouts  received 3 B  sent 3 B"
        ),
        "{details}"
    );
    // Auto-tuning's starting point: 64 KiB buffers each way, and no memory
    // once the echo is read and acknowledged and the service waits for
    // more (a connection idle for a second gives its ring pages back).
    let idle = "  rcvbuf 65536 B (0 allocated)  sndbuf 65536 B (0 allocated)";
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut now_details = details.to_string();
    while !now_details.contains(idle) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let info = cli(&sb, &control, &["netstat", "-t", "-i"]);
        let lines: Vec<&str> = info.lines().collect();
        let at = lines.iter().position(|l| l.contains(&format!("10.200.0.1:{port}")));
        now_details = at.map_or_else(|| info.clone(), |at| lines[at + 1].to_string());
    }
    assert!(now_details.contains(idle), "{now_details}");
    conn.shutdown(Shutdown::Write).unwrap();
    assert_eq!(conn.read(&mut buf).unwrap(), 0);
    drop(conn);

    // A connection the stack closes first waits in TIME_WAIT, nobody's any
    // more: the service closed it (netstat -p shows "-", as on Linux).
    let mut src = sb.enter(|| HostTcp::connect("10.200.0.2:1919").unwrap());
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
                assert!(row.trim_end().ends_with(" -"), "{row}");
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

/// `tunstack netstat -s`, taken between two SIGUSR1 lines that agree (so no
/// packet moved a counter meanwhile): its lines must be exactly those
/// counters. Returns them.
fn netstat_s_agrees_with_sigusr1(sb: &Sandbox, d: &Daemon, control: &str) -> HashMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = d.stats();
        let shown = cli(sb, control, &["netstat", "-s"]);
        let after = d.stats();
        if before == after {
            let lines: Vec<&str> = shown.lines().collect();
            assert_eq!(lines, statistics::render(&after), "netstat -s and SIGUSR1 disagree");
            // And in the words a netstat reader looks for:
            for (key, text) in [
                ("link_rx_packets", "total packets received"),
                ("tcp_rx_segments", "segments received"),
                ("tcp_tx_segments", "segments sent out"),
                ("tcp_fast_retransmits", "fast recoveries"),
                ("tcp_retransmitted_segments", "segments retransmitted"),
                ("tcp_sack_recoveries", "recoveries steered by SACK"),
                ("tcp_rack_marked", "segments RACK marked lost"),
                ("tcp_loss_probes", "tail loss probes sent"),
                (
                    "tcp_spurious_undone",
                    "window reductions undone as spurious (D-SACK or timestamps)",
                ),
                ("tcp_rto_retransmits", "retransmission timeouts"),
            ] {
                let line = format!("    {} {text}", after[key]);
                assert!(lines.contains(&line.as_str()), "no {line:?} in\n{shown}");
            }
            return after;
        }
        // Something arrived in between (the host kernel's own packets): again.
        assert!(Instant::now() < deadline, "the counters never held still");
    }
}

#[test]
fn netstat_s_matches_sigusr1_and_counts_recovery_through_a_lossy_link() {
    if !live_tests_possible("netstat_s_matches_sigusr1_and_counts_recovery_through_a_lossy_link") {
        return;
    }
    let (sb, d, control) = start("stats", &["--loss", "0.02", "--seed", "11"]);
    let before = netstat_s_agrees_with_sigusr1(&sb, &d, &control);
    for name in [
        "impair_in_lost",
        "impair_out_delayed",
        "sockets_tcp",
        "sockets_tcp_listen",
        "ip_delivered",
    ] {
        assert!(before.contains_key(name), "SIGUSR1's one line lacks {name}: {before:?}");
    }
    assert_eq!(
        before["sockets_tcp_listen"], 4,
        "echo, discard, chargen and the sized source listen"
    );

    // A megabyte from the sized source, through 2% loss each way.
    let mut host = sb.command("sh");
    host.args(["-c", "echo 1000000 | nc -N 10.200.0.2 1919 | wc -c"]);
    let out = process::run(host, Duration::from_secs(120));
    out.assert_success("nc from the sized source");
    assert_eq!(out.stdout.trim(), "1000000", "every byte came through the loss");

    let after = netstat_s_agrees_with_sigusr1(&sb, &d, &control);
    let grew = |k: &str| after[k] - before[k];
    assert!(grew("tcp_tx_segments") >= 1_000_000 / 1460, "{after:?}");
    assert!(grew("tcp_rx_segments") > 0);
    assert!(
        grew("tcp_fast_retransmits") + grew("tcp_rto_retransmits") > 0,
        "lost segments were retransmitted"
    );
    assert!(grew("impair_out_lost") > 0 && grew("impair_in_lost") > 0, "{after:?}");
    assert_eq!(
        after["impair_out_duplicated"] + after["impair_in_reordered"],
        0,
        "only loss asked for"
    );
    // Every packet the stack sent met the impairment; every one it read had
    // passed it. With offloads, the impairment cut each super-packet into
    // its MSS-sized segments first (at most 44 at MTU 1500).
    let supers = after["link_tx_super_packets"];
    let plain = after["link_tx_packets"] - supers;
    if supers == 0 {
        assert_eq!(after["impair_out_packets"], after["link_tx_packets"]);
    } else {
        let cut = after["impair_out_packets"] - plain;
        assert!(
            (2 * supers..=44 * supers).contains(&cut),
            "{supers} super-packets became {cut} segments"
        );
    }
    assert_eq!(
        after["impair_in_packets"] - after["impair_in_lost"],
        after["link_rx_packets"]
    );
    // One line per SIGUSR1, never the old second `sockets:` line.
    assert!(!d.stdout().snapshot().iter().any(|l| l.starts_with("sockets:")));
}

/// The five figures of `netstat -t -i`'s `recovery 3 fast, 12 rack-marked,
/// 2 probes, 1 undone, 0 timeouts`, by their words.
fn recovery_shown(details: &str) -> HashMap<String, u64> {
    let (_, rest) = details
        .split_once("  recovery ")
        .unwrap_or_else(|| panic!("no recovery counts: {details}"));
    let list = rest.split("  ").next().unwrap();
    list.split(", ")
        .map(|c| {
            let (n, what) = c.split_once(' ').unwrap_or_else(|| panic!("{c:?} in {details}"));
            (
                what.to_owned(),
                n.parse().unwrap_or_else(|_| panic!("{c:?} in {details}")),
            )
        })
        .collect()
}

#[test]
fn netstat_i_and_the_stats_line_show_what_recovery_did_through_loss() {
    if !live_tests_possible("netstat_i_and_the_stats_line_show_what_recovery_did_through_loss") {
        return;
    }
    let (sb, d, control) = start("recovery", &["--loss", "0.05", "--seed", "12"]);
    let before = d.stats();
    // Two megabytes echoed through 5% loss each way, the host writing and
    // reading at once; the connection stays open for netstat -t -i.
    const LEN: usize = 2_000_000;
    let sent: Arc<Vec<u8>> = Arc::new((0..LEN).map(|i| (i % 251) as u8).collect());
    let conn = sb.enter(|| HostTcp::connect("10.200.0.2:7").unwrap());
    conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let port = conn.local_addr().unwrap().port();
    let mut writer = conn.try_clone().unwrap();
    let data = Arc::clone(&sent);
    let writing = std::thread::spawn(move || writer.write_all(&data).unwrap());
    let mut got = vec![0u8; LEN];
    (&conn)
        .read_exact(&mut got)
        .expect("the echo came back within the timeouts");
    writing.join().unwrap();
    assert!(got == *sent, "the echo differs from what was sent");

    // Read both between two SIGUSR1 lines that agree: no retransmission
    // (of a lost last ACK, say) moved a counter meanwhile.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (details, after) = loop {
        let first = d.stats();
        let info = cli(&sb, &control, &["netstat", "-t", "-i"]);
        let after = netstat_s_agrees_with_sigusr1(&sb, &d, &control);
        if first == after {
            let lines: Vec<&str> = info.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.contains(&format!("10.200.0.1:{port}")) && l.contains("ESTABLISHED"))
                .unwrap_or_else(|| panic!("no row for the connection:\n{info}"));
            break (lines[at + 1].to_owned(), after);
        }
        assert!(Instant::now() < deadline, "the counters never held still");
    };
    let shown = recovery_shown(&details);
    let mut words: Vec<&str> = shown.keys().map(String::as_str).collect();
    words.sort_unstable();
    assert_eq!(
        words,
        ["fast", "probes", "rack-marked", "timeouts", "undone"],
        "{details}"
    );
    assert!(shown["fast"] > 0, "no fast recovery through 5% loss: {details}");
    assert!(shown["rack-marked"] > 0, "RACK marked nothing lost: {details}");
    // The only connection: its counts are the stack's, which the stats
    // line (SIGUSR1's, and netstat -s above) shows under its own names.
    let grew = |k: &str| after[k] - before[k];
    assert_eq!(shown["fast"], grew("tcp_fast_retransmits"), "{details}\n{after:?}");
    assert_eq!(
        grew("tcp_sack_recoveries"),
        shown["fast"],
        "the host offers SACK, so every recovery is steered by it"
    );
    assert_eq!(shown["rack-marked"], grew("tcp_rack_marked"));
    assert_eq!(shown["probes"], grew("tcp_loss_probes"));
    assert_eq!(shown["undone"], grew("tcp_spurious_undone"));
    // A timeout counts once per connection however often it backs off.
    assert!(shown["timeouts"] <= grew("tcp_rto_retransmits"), "{details}\n{after:?}");
    assert!(grew("impair_in_lost") > 0 && grew("impair_out_lost") > 0, "{after:?}");
    eprintln!("{details}");
}

#[test]
fn a_closed_stdout_ends_the_cli_silently_as_sigpipe_does() {
    if !live_tests_possible("a_closed_stdout_ends_the_cli_silently_as_sigpipe_does") {
        return;
    }
    let (sb, _d, control) = start("pipe", &[]);
    for args in [&["netstat", "-a"][..], &["netstat", "-s"], &["ifconfig"], &["route"]] {
        // A stdout whose reader is gone: the first write meets EPIPE.
        let (reader, writer) = UnixStream::pair().unwrap();
        drop(reader);
        let mut c = sb.command(CLI);
        c.args(["--control", &control])
            .args(args)
            .stdin(Stdio::null())
            .stdout(OwnedFd::from(writer))
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(c);
        let status = process::wait_timeout(&mut child, Duration::from_secs(30)).expect("tunstack exits");
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "tunstack {args:?}: {status}, {err}"
        );
        assert_eq!(err, "", "tunstack {args:?} said something");
    }
    // As the README's readers will write it.
    let mut c = sb.command("bash");
    c.args([
        "-c",
        &format!("set -o pipefail; {CLI} --control {control} netstat -s | head -1; echo \"status ${{PIPESTATUS[0]}}\""),
    ]);
    let out = process::run(c, Duration::from_secs(30));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "Ip:");
    assert!(lines[1] == "status 0" || lines[1] == "status 141", "{lines:?}");
    assert_eq!(out.stderr, "", "no panic, no message");
}

#[test]
fn nc_u_talks_to_its_peer_and_a_closed_port_is_connection_refused() {
    if !live_tests_possible("nc_u_talks_to_its_peer_and_a_closed_port_is_connection_refused") {
        return;
    }
    let (sb, d, control) = start("udp", &[]);
    let host = sb.enter(|| HostUdp::bind("10.200.0.1:5353").unwrap());
    host.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut nc = sb
        .command(CLI)
        .args(["--control", &control, "nc", "-u", "10.200.0.1", "5353"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr) = (Arc::new(Lines::default()), Arc::new(Lines::default()));
    Lines::collect(nc.stdout.take().unwrap(), stdout.clone(), "nc -u");
    Lines::collect(nc.stderr.take().unwrap(), stderr.clone(), "nc -u stderr");
    let mut stdin = nc.stdin.take().unwrap();

    // The peer hears a line and answers it.
    stdin.write_all(b"hello\n").unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = host.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello\n");
    host.send_to(b"back\n", from).unwrap();
    assert!(stdout.wait_for(0, Duration::from_secs(10), |l| l == "back").is_some());

    // The peer's port closes: the next line draws a port unreachable, and
    // nc ends as Linux's does on a connected socket.
    drop(host);
    stdin.write_all(b"anyone?\n").unwrap();
    let status = process::wait_timeout(&mut nc, Duration::from_secs(10)).expect("nc -u exits on the refusal");
    assert!(!status.success(), "{status}");
    assert!(
        stderr
            .wait_for(0, Duration::from_secs(5), |l| l == "tunstack: Connection refused")
            .is_some(),
        "{:?}",
        stderr.snapshot()
    );
    assert!(d.stats()["udp_icmp_errors"] >= 1);
}
