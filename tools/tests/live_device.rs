//! Live tests of the device wrappers: pcap capture read back by tcpdump,
//! and TCP through the daemon's own impairment layer.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream as HostTcp};
use std::time::Duration;
use tunstack_tests::netns::{Sandbox, live_tests_possible};
use tunstack_tests::process;

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");

#[test]
fn pcap_capture_shows_handshake_data_and_fin_to_tcpdump() {
    if !live_tests_possible("pcap_capture_shows_handshake_data_and_fin_to_tcpdump") {
        return;
    }
    let path = std::env::temp_dir().join(format!("tunstack-{}-capture.pcap", std::process::id()));
    let sb = Sandbox::create();
    let mut d = sb.start_daemon(DAEMON, &["--pcap", path.to_str().unwrap()]);
    let mut c = sb.enter(|| HostTcp::connect("10.200.0.2:7").unwrap());
    c.write_all(b"captured payload\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = String::new();
    c.read_to_string(&mut back).unwrap();
    assert_eq!(back, "captured payload\n");
    drop(c);
    assert!(d.stop().success());
    let mut cmd = std::process::Command::new("tcpdump");
    cmd.args(["-n", "-r", path.to_str().unwrap(), "tcp port 7"]);
    let out = process::run(cmd, Duration::from_secs(30));
    let _ = std::fs::remove_file(&path);
    out.assert_success("tcpdump -r");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(
        has("10.200.0.1.") && has("> 10.200.0.2.7: Flags [S]"),
        "SYN:\n{}",
        out.stdout
    );
    assert!(has("10.200.0.2.7 >") && has("Flags [S.]"), "SYN-ACK:\n{}", out.stdout);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Flags [P.]") && l.contains("length 17")),
        "data:\n{}",
        out.stdout
    );
    assert!(
        lines.iter().filter(|l| l.contains("Flags [F.]")).count() >= 2,
        "FINs:\n{}",
        out.stdout
    );
}

#[test]
fn echo_10mb_is_intact_through_loss_reordering_and_duplication() {
    if !live_tests_possible("echo_10mb_is_intact_through_loss_reordering_and_duplication") {
        return;
    }
    let sb = Sandbox::create();
    let d = sb.start_daemon(
        DAEMON,
        &[
            "--loss",
            "0.05",
            "--reorder",
            "0.05",
            "--duplicate",
            "0.02",
            "--seed",
            "9",
        ],
    );
    let mut rng = tunstack::rand::Rng::new(4);
    let data: Vec<u8> = (0..10_000_000).map(|_| rng.next_u32() as u8).collect();
    let c = sb.enter(|| HostTcp::connect("10.200.0.2:7").unwrap());
    // Correctness, not speed (the echo takes seconds; see the README's
    // benchmarks): the timeout only bounds a hang.
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let got = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            (&c).write_all(&data).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        (&c).read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        got
    });
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");
    let stats = d.stats();
    eprintln!(
        "impaired echo: fast retransmits {}, RTOs {}, out-of-order {}",
        stats["tcp_fast_retransmits"], stats["tcp_rto_retransmits"], stats["tcp_rx_out_of_order"]
    );
    assert!(stats["tcp_rx_out_of_order"] > 0 && stats["tcp_fast_retransmits"] + stats["tcp_rto_retransmits"] > 0);
}

/// Issue 12, against the real Linux host, as tcpdump on tun0 sees it: the
/// SYN-ACK answers the host's SYN with SACK-permitted, timestamps and window
/// scale (RFC 2018 §2, RFC 7323 §2-3), and when segments to the stack are
/// lost (the daemon's impairment, inbound only) tunstack's ACKs carry SACK
/// blocks. The host's SACK recovery then repairs the upload.
#[test]
fn tcpdump_shows_negotiated_options_and_sack_blocks_from_the_stack() {
    if !live_tests_possible("tcpdump_shows_negotiated_options_and_sack_blocks_from_the_stack") {
        return;
    }
    let path = std::env::temp_dir().join(format!("tunstack-{}-sack.pcap", std::process::id()));
    let sb = Sandbox::create();
    let d = sb.start_daemon(DAEMON, &["--loss", "0.03", "--impair-direction", "in", "--seed", "5"]);
    let mut dump = sb.command("tcpdump");
    dump.args([
        "-i",
        "tun0",
        "-nn",
        "-U",
        "-s",
        "128",
        "-w",
        path.to_str().unwrap(),
        "tcp port 9",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut dump = dump.spawn().expect("tcpdump runs");
    let said = std::sync::Arc::new(process::Lines::default());
    process::Lines::collect(dump.stderr.take().unwrap(), said.clone(), "tcpdump");
    assert!(
        said.wait_for(0, Duration::from_secs(10), |l| l.contains("listening on"))
            .is_some(),
        "tcpdump did not start"
    );
    let data = vec![0x5au8; 3_000_000];
    sb.enter(|| {
        let mut c = HostTcp::connect("10.200.0.2:9").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        c.write_all(&data).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        // The discard service closes after the host's FIN: EOF when all arrived.
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
    });
    // SIGINT flushes and ends tcpdump.
    unsafe { libc::kill(dump.id() as i32, libc::SIGINT) };
    assert!(process::wait_timeout(&mut dump, Duration::from_secs(10)).is_some_and(|s| s.success()));
    assert!(
        d.stats()["tcp_rx_out_of_order"] > 0,
        "the impairment dropped nothing on the way in"
    );
    let mut read = std::process::Command::new("tcpdump");
    read.args(["-nn", "-v", "-r", path.to_str().unwrap()]);
    let out = process::run(read, Duration::from_secs(30));
    let _ = std::fs::remove_file(&path);
    out.assert_success("tcpdump -r");
    let text = out.stdout.replace("\n    ", " ");
    let from_stack: Vec<&str> = text.lines().filter(|l| l.contains("10.200.0.2.9 > ")).collect();
    let syn_ack = from_stack
        .iter()
        .find(|l| l.contains("Flags [S.]"))
        .unwrap_or_else(|| panic!("no SYN-ACK:\n{}", out.stdout));
    for option in ["sackOK", "TS val", "wscale"] {
        assert!(syn_ack.contains(option), "the SYN-ACK lacks {option}: {syn_ack}");
    }
    assert!(
        from_stack.iter().any(|l| l.contains(",sack ")),
        "no SACK blocks from the stack in {} segments",
        from_stack.len()
    );
}

/// `sha256sum` of what a shell pipeline in the sandbox prints: the digest alone.
fn sha256_of(sb: &Sandbox, pipeline: &str, timeout: Duration) -> String {
    let mut cmd = sb.command("bash");
    cmd.args(["-c", &format!("set -o pipefail; {pipeline} | sha256sum")]);
    let out = process::run(cmd, timeout);
    out.assert_success(pipeline);
    out.stdout.split_whitespace().next().unwrap_or_default().to_string()
}

/// Issue 16: 20 MB echoed through the daemon's impairment (2% loss and 2%
/// reordering each way) come back with the same sha256, with TUN offloads
/// on and off. With offloads, the core hands the device super-packets and
/// the impairment cuts them into the MSS-sized segments it loses and reorders.
#[test]
fn echo_20mb_keeps_its_sha256_through_loss_and_reordering_with_offloads_on_and_off() {
    if !live_tests_possible("echo_20mb_keeps_its_sha256_through_loss_and_reordering_with_offloads_on_and_off") {
        return;
    }
    let file = std::env::temp_dir().join(format!("tunstack-{}-echo20.bin", std::process::id()));
    let mut rng = tunstack::rand::Rng::new(16);
    let data: Vec<u8> = (0..20_000_000).map(|_| rng.next_u32() as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let path = file.to_str().unwrap();
    for mode in ["on", "off"] {
        let sb = Sandbox::create();
        let d = sb.start_daemon(
            DAEMON,
            &["--offload", mode, "--loss", "0.02", "--reorder", "0.02", "--seed", "16"],
        );
        let want = sha256_of(&sb, &format!("cat {path}"), Duration::from_secs(30));
        let got = sha256_of(&sb, &format!("nc -N 10.200.0.2 7 < {path}"), Duration::from_secs(240));
        assert_eq!(got, want, "--offload {mode}: the echo's sha256");
        let s = d.stats();
        assert!(
            s["tcp_rx_out_of_order"] > 0,
            "--offload {mode}: the impairment reordered or lost nothing"
        );
        assert!(
            s["tcp_retransmitted_segments"] > 0,
            "--offload {mode}: nothing was repaired"
        );
        if mode == "on" {
            assert!(
                s["link_tx_super_packets"] > 0,
                "offloads on, but no super-packet was sent"
            );
        } else {
            assert_eq!(
                s["link_tx_super_packets"], 0,
                "offloads off, but super-packets were sent"
            );
        }
        eprintln!(
            "--offload {mode}: super-packets out {}, retransmitted {}, out-of-order {}",
            s["link_tx_super_packets"], s["tcp_retransmitted_segments"], s["tcp_rx_out_of_order"]
        );
    }
    let _ = std::fs::remove_file(&file);
}

/// Issue 16: with offloads on, the pcap records the super-packets that
/// crossed the TUN with their checksums completed, so `tcpdump -r` finds no
/// bad checksum, and the TCP payload it lists adds up to the bytes moved:
/// a 5 MB download from the sized source and a 5 MB upload to discard.
#[test]
fn pcap_with_offloads_has_valid_checksums_and_byte_counts_that_add_up() {
    if !live_tests_possible("pcap_with_offloads_has_valid_checksums_and_byte_counts_that_add_up") {
        return;
    }
    const SIZE: usize = 5_000_000;
    let path = std::env::temp_dir().join(format!("tunstack-{}-offload.pcap", std::process::id()));
    let sb = Sandbox::create();
    let mut d = sb.start_daemon(DAEMON, &["--offload", "on", "--pcap", path.to_str().unwrap()]);
    sb.enter(|| {
        let mut c = HostTcp::connect("10.200.0.2:1919").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        c.write_all(format!("{SIZE}\n").as_bytes()).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), SIZE, "the download");
        let mut c = HostTcp::connect("10.200.0.2:9").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        c.write_all(&vec![0x5a; SIZE]).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        c.read_to_end(&mut Vec::new()).unwrap();
    });
    let stats = d.stats();
    assert!(stats["link_tx_super_packets"] > 0, "no super-packet was sent");
    assert!(d.stop().success());
    let mut read = std::process::Command::new("tcpdump");
    read.args(["-nn", "-vv", "-r", path.to_str().unwrap()]);
    let out = process::run(read, Duration::from_secs(60));
    let _ = std::fs::remove_file(&path);
    out.assert_success("tcpdump -r");
    // -v puts each packet's TCP line under its IP line: join them.
    let text = out.stdout.replace("\n    ", " ");
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("bad cksum") || l.contains("incorrect"))
        .take(3)
        .collect();
    assert!(bad.is_empty(), "bad checksums in the capture: {bad:#?}");
    // "length N)" closes the IP part; the TCP part ends "length N" (its payload).
    let tcp_payload = |l: &str| -> usize {
        l.rsplit("length ")
            .next()
            .and_then(|n| n.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let sum = |from: &str| -> usize { text.lines().filter(|l| l.contains(from)).map(tcp_payload).sum() };
    let down = sum("10.200.0.2.1919 > ");
    let up: usize = text
        .lines()
        .filter(|l| l.contains(" > 10.200.0.2.9: "))
        .map(tcp_payload)
        .sum();
    assert_eq!(down, SIZE, "the download's TCP payload in the capture");
    assert_eq!(up, SIZE, "the upload's TCP payload in the capture");
    let largest_ip = text
        .lines()
        .filter_map(|l| l.split(", length ").nth(1))
        .filter_map(|n| n.split(')').next()?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        largest_ip > 1500,
        "super-packets recorded whole (largest IP packet {largest_ip})"
    );
}
