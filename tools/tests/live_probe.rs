//! Live tests of `tunstack ping` and `tunstack traceroute`: probes sent by
//! tunstack's stack, answered by real kernels in a chain of namespaces.

use std::time::Duration;
use tunstack_tests::netns::{Sandbox, live_tests_possible};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");
const CLI: &str = env!("CARGO_BIN_EXE_tunstack");

#[test]
fn ping_reaches_the_host_kernel_with_iputils_output() {
    if !live_tests_possible("ping_reaches_the_host_kernel_with_iputils_output") {
        return;
    }
    let sb = Sandbox::create();
    let _d = sb.start_daemon(DAEMON, &[]);
    let out = sb.run(
        CLI,
        &["ping", "-c", "5", "-i", "0.2", "10.200.0.1"],
        Duration::from_secs(30),
    );
    out.assert_success("tunstack ping");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "PING 10.200.0.1 (10.200.0.1) 56(84) bytes of data.");
    for seq in 1..=5 {
        let prefix = format!("64 bytes from 10.200.0.1: icmp_seq={seq} ttl=64 time=");
        assert!(
            lines.iter().any(|l| l.starts_with(&prefix) && l.ends_with(" ms")),
            "{}",
            out.stdout
        );
    }
    assert!(lines.contains(&"--- 10.200.0.1 ping statistics ---"), "{}", out.stdout);
    let summary = lines.iter().find(|l| l.contains("packets transmitted")).unwrap();
    assert!(
        summary.starts_with("5 packets transmitted, 5 received, 0% packet loss, time "),
        "{summary}"
    );
    assert!(summary.ends_with("ms"));
    let rtt = lines.last().unwrap();
    assert!(
        rtt.starts_with("rtt min/avg/max/mdev = ") && rtt.ends_with(" ms"),
        "{rtt}"
    );
    let nums: Vec<f64> = rtt["rtt min/avg/max/mdev = ".len()..rtt.len() - 3]
        .split('/')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 4);
    assert!(nums[0] <= nums[1] && nums[1] <= nums[2], "{rtt}");
}

/// Runs `ip` with `args`, failing the test if it fails.
fn ip(args: &[&str]) {
    let mut c = std::process::Command::new("ip");
    c.args(args);
    tunstack_tests::process::run(c, Duration::from_secs(20)).assert_success(&format!("ip {args:?}"));
}

#[test]
fn traceroute_through_a_chain_of_namespaces_names_every_hop() {
    if !live_tests_possible("traceroute_through_a_chain_of_namespaces_names_every_hop") {
        return;
    }
    // stack --tun-- host --veth-- router --veth-- far
    let host = Sandbox::create();
    let router = Sandbox::create();
    let far = Sandbox::create();
    let _d = host.start_daemon(DAEMON, &[]);
    let (h, r, f) = (host.name(), router.name(), far.name());
    ip(&[
        "-n", h, "link", "add", "tsv-hr", "type", "veth", "peer", "name", "tsv-rh", "netns", r,
    ]);
    ip(&[
        "-n", r, "link", "add", "tsv-rf", "type", "veth", "peer", "name", "tsv-fr", "netns", f,
    ]);
    for (ns, dev, addr) in [
        (h, "tsv-hr", "10.201.1.1/30"),
        (r, "tsv-rh", "10.201.1.2/30"),
        (r, "tsv-rf", "10.201.2.1/30"),
        (f, "tsv-fr", "10.201.2.2/30"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip(&["-n", h, "route", "add", "10.201.2.0/30", "via", "10.201.1.2"]);
    ip(&["-n", r, "route", "add", "10.200.0.0/24", "via", "10.201.1.1"]);
    ip(&["-n", f, "route", "add", "default", "via", "10.201.2.1"]);
    for sb in [&host, &router] {
        sb.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"], Duration::from_secs(10))
            .assert_success("ip_forward");
    }
    for sb in [&host, &router, &far] {
        // Each kernel answers every probe (no ICMP rate limit in these namespaces).
        sb.run("sysctl", &["-qw", "net.ipv4.icmp_ratelimit=0"], Duration::from_secs(10))
            .assert_success("ratelimit");
    }
    let out = host.run(CLI, &["traceroute", "-w", "3", "10.201.2.2"], Duration::from_secs(120));
    out.assert_success("tunstack traceroute");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0], "traceroute to 10.201.2.2 (10.201.2.2), 30 hops max, 60 byte packets",
        "{}",
        out.stdout
    );
    let hops: Vec<&str> = lines[1..].iter().copied().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(hops.len(), 3, "three hops:\n{}", out.stdout);
    for (n, (hop, addr)) in hops.iter().zip(["10.200.0.1", "10.201.1.2", "10.201.2.2"]).enumerate() {
        assert!(
            hop.starts_with(&format!("{:>2}  {addr}  ", n + 1)),
            "hop {}: {hop:?}\n{}",
            n + 1,
            out.stdout
        );
        assert_eq!(hop.matches(" ms").count(), 3, "three answered probes: {hop}");
    }
}
