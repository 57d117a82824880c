//! Live tests of TUN offloads (`--offload`, issue 16): the daemon on a
//! real TUN opened with and without the virtio-net header, in a fresh
//! network namespace each, as the host kernel sees it (`ip -d link`,
//! `ethtool -k`) and with ping and TCP echo through it. They need root;
//! see `live_tests_possible`.
//!
//! A kernel that refuses the offloads cannot be made here, so what
//! `--offload on` says then is unit-tested in `tunstack::device::tun`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream as HostTcp};
use std::time::Duration;
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
const CLI: &str = env!("CARGO_BIN_EXE_tunstack");
const PATIENCE: Duration = Duration::from_secs(30);

/// A sandbox with a daemon started with `--offload mode`, and its control socket.
fn start(mode: &str) -> (Sandbox, Daemon, String) {
    let sb = Sandbox::create();
    let control = std::env::temp_dir()
        .join(format!("tunstack-offload-{mode}-{}.sock", std::process::id()))
        .to_string_lossy()
        .into_owned();
    let d = sb.start_daemon(DAEMON, &["--offload", mode, "--control", &control]);
    (sb, d, control)
}

/// Runs `program args` in the sandbox, which must succeed; its output.
fn run(sb: &Sandbox, program: &str, args: &[&str]) -> String {
    let out = sb.run(program, args, PATIENCE);
    out.assert_success(&format!("{program} {args:?}"));
    out.stdout.clone()
}

/// The value `ethtool -k tun0` gives `feature` ("on", "off", "off [fixed]", ...).
fn feature(sb: &Sandbox, feature: &str) -> String {
    let out = run(sb, "ethtool", &["-k", "tun0"]);
    let prefix = format!("{feature}: ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {feature} in ethtool -k:\n{out}"))
        .to_owned()
}

/// Whether the host's `ip -d link show tun0` says the TUN carries the virtio-net header.
fn vnet_hdr(sb: &Sandbox) -> bool {
    let out = run(sb, "ip", &["-d", "link", "show", "tun0"]);
    match (out.contains("vnet_hdr on"), out.contains("vnet_hdr off")) {
        (true, false) => true,
        (false, true) => false,
        _ => panic!("no vnet_hdr on/off in ip -d link:\n{out}"),
    }
}

/// Pings the stack: every request answered.
fn ping_is_answered(sb: &Sandbox) {
    let out = run(sb, "ping", &["-c", "3", "-i", "0.2", "-W", "2", "10.200.0.2"]);
    assert!(
        out.contains("3 packets transmitted, 3 received, 0% packet loss"),
        "{out}"
    );
}

/// Sends `len` bytes to the TCP echo service from the host's kernel TCP
/// and checks that the same bytes come back.
fn echo_comes_back(sb: &Sandbox, len: usize) {
    let sent: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let got = sb.enter(|| {
        let mut s = HostTcp::connect_timeout(&"10.200.0.2:7".parse().unwrap(), PATIENCE).expect("connect to echo");
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.set_write_timeout(Some(PATIENCE)).unwrap();
        let mut writer = s.try_clone().unwrap();
        let data = sent.clone();
        let w = std::thread::spawn(move || {
            writer.write_all(&data).expect("write to echo");
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::with_capacity(len);
        s.read_to_end(&mut got).expect("read the echo");
        w.join().unwrap();
        got
    });
    assert_eq!(got.len(), sent.len(), "echoed bytes");
    assert!(got == sent, "the echo differs from what was sent");
}

/// `tunstack ifconfig`'s offloads line.
fn ifconfig_offloads(sb: &Sandbox, control: &str) -> String {
    let out = run(sb, CLI, &["--control", control, "ifconfig"]);
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix("offloads "))
        .unwrap_or_else(|| panic!("no offloads line in ifconfig:\n{out}"))
        .to_owned()
}

#[test]
fn with_offload_on_the_host_sees_tso_and_checksum_offload_and_traffic_flows() {
    if !live_tests_possible("with_offload_on_the_host_sees_tso_and_checksum_offload_and_traffic_flows") {
        return;
    }
    let (sb, mut d, control) = start("on");
    assert!(vnet_hdr(&sb), "the TUN carries the virtio-net header");
    // TUNSETOFFLOAD's TUN_F_TSO4 and TUN_F_CSUM, as the host's features.
    assert_eq!(feature(&sb, "tcp-segmentation-offload"), "on");
    assert_eq!(feature(&sb, "tx-checksumming"), "on");
    assert_eq!(ifconfig_offloads(&sb, &control), "on");
    ping_is_answered(&sb);
    echo_comes_back(&sb, 100);
    echo_comes_back(&sb, 1 << 20);
    let stats = d.stats();
    assert_eq!(stats["link_rx_errors"], 0, "{stats:?}");
    assert!(d.stop().success(), "clean exit on SIGTERM");
}

#[test]
fn with_offload_off_the_tun_carries_plain_packets_and_traffic_flows() {
    if !live_tests_possible("with_offload_off_the_tun_carries_plain_packets_and_traffic_flows") {
        return;
    }
    let (sb, mut d, control) = start("off");
    assert!(!vnet_hdr(&sb), "no virtio-net header");
    assert!(
        feature(&sb, "tcp-segmentation-offload").starts_with("off"),
        "no TSO without the header"
    );
    assert_eq!(ifconfig_offloads(&sb, &control), "off");
    ping_is_answered(&sb);
    echo_comes_back(&sb, 100);
    echo_comes_back(&sb, 1 << 20);
    assert!(d.stop().success(), "clean exit on SIGTERM");
}

#[test]
fn offload_auto_turns_them_on_where_the_kernel_takes_them() {
    if !live_tests_possible("offload_auto_turns_them_on_where_the_kernel_takes_them") {
        return;
    }
    // Any Linux of the last decade takes IFF_VNET_HDR with TSO4 and CSUM.
    let (sb, d, control) = start("auto");
    assert!(vnet_hdr(&sb));
    assert_eq!(ifconfig_offloads(&sb, &control), "on");
    assert!(
        d.log()
            .wait_for(0, PATIENCE, |l| l
                .contains("offloads on tun0: TSO4 and checksum offload"))
            .is_some(),
        "the log says offloads are on: {:?}",
        d.log().snapshot()
    );
    ping_is_answered(&sb);
}

#[test]
fn a_tun_held_by_another_daemon_is_busy_not_refused_offloads() {
    if !live_tests_possible("a_tun_held_by_another_daemon_is_busy_not_refused_offloads") {
        return;
    }
    let (sb, _d, control) = start("on");
    // The same interface, a control socket of its own: only the TUN is in the way.
    let other = format!("{control}.second");
    let out = sb.run(DAEMON, &["--offload", "on", "--control", &other], PATIENCE);
    assert!(!out.status.success(), "a second daemon on tun0 started");
    assert!(
        out.stderr
            .starts_with("tunstackd: cannot create TUN interface \"tun0\": ")
            && out.stderr.trim_end().ends_with("(another tunstackd on it?)"),
        "{}",
        out.stderr
    );
    assert!(
        !std::path::Path::new(&other).exists(),
        "the second control socket is gone"
    );
}

/// `--offload on` names the real cause when the TUN cannot be opened at
/// all: a bad name, or an interface that is no TUN, fails with EINVAL
/// with or without the virtio-net header, and is no refusal of offloads.
#[test]
fn offload_on_does_not_blame_the_offloads_for_a_bad_interface() {
    if !live_tests_possible("offload_on_does_not_blame_the_offloads_for_a_bad_interface") {
        return;
    }
    let sb = Sandbox::create();
    for name in ["lo", "tun:x"] {
        let args = [
            "--interface",
            name,
            "--offload",
            "on",
            "--address",
            "10.210.0.2/24",
            "--host-address",
            "10.210.0.1/24",
        ];
        let out = sb.run(DAEMON, &args, Duration::from_secs(10));
        assert!(!out.status.success(), "{name}: {out:?}");
        assert!(
            out.stderr.contains("cannot create TUN interface"),
            "{name}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("refuses offloads"),
            "{name}: the offloads are blamed for what fails without them too: {}",
            out.stderr
        );
    }
}
