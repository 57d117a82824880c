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
    tunstack_tests::netns::router_chain(&host, &router, &far);
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
