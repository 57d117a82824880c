//! Live tests of the file services: the downloader protocol with nc, HTTP
//! with curl, the safety rules, per-client limits and idle timeouts.

use std::io::{Read, Write};
use std::net::TcpStream as HostTcp;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tunstack_tests::netns::{Daemon, Sandbox, live_tests_possible};
use tunstack_tests::process;

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");

/// A served directory with a few files, a link out, and a secret outside; removed on drop.
struct Site {
    base: PathBuf,
}

impl Site {
    fn new(tag: &str, big: usize) -> Site {
        let base = std::env::temp_dir().join(format!("tunstack-site-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("www");
        std::fs::create_dir_all(root.join("small")).unwrap();
        let mut rng = tunstack::rand::Rng::new(big as u64);
        let data: Vec<u8> = (0..big).map(|_| rng.next_u32() as u8).collect();
        std::fs::write(root.join("big.bin"), &data).unwrap();
        for i in 0..100 {
            std::fs::write(root.join(format!("small/f{i}.txt")), format!("small file {i}\n")).unwrap();
        }
        std::fs::write(base.join("secret.txt"), b"TOP SECRET CONTENT\n").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("escape")).unwrap();
        Site { base }
    }
    fn root(&self) -> String {
        self.base.join("www").to_string_lossy().into_owned()
    }
    fn path(&self, name: &str) -> String {
        self.base.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn start(site: &Site, extra: &[&str]) -> (Sandbox, Daemon) {
    let sb = Sandbox::create();
    let root = site.root();
    let mut args = vec!["--files", root.as_str()];
    args.extend_from_slice(extra);
    let d = sb.start_daemon(DAEMON, &args);
    (sb, d)
}

fn sha256(path: &str) -> String {
    let mut c = std::process::Command::new("sha256sum");
    c.arg(path);
    let out = process::run(c, Duration::from_secs(60));
    out.assert_success("sha256sum");
    out.stdout.split_whitespace().next().unwrap().to_owned()
}

fn sh(sb: &Sandbox, script: &str) -> process::Finished {
    let mut c = sb.command("sh");
    c.args(["-c", script]);
    process::run(c, Duration::from_secs(300))
}

#[test]
fn a_64mib_file_comes_down_intact_by_nc_and_by_curl_and_keep_alive_reuses_one_connection() {
    if !live_tests_possible("a_64mib_file_comes_down_intact_by_nc_and_by_curl_and_keep_alive_reuses_one_connection") {
        return;
    }
    let site = Site::new("big", 64 << 20);
    let (sb, _d) = start(&site, &[]);
    let want = sha256(&format!("{}/big.bin", site.root()));
    let by_nc = site.path("by-nc.bin");
    sh(&sb, &format!("echo big.bin | nc -N 10.200.0.2 2000 > {by_nc}")).assert_success("nc download");
    assert_eq!(sha256(&by_nc), want, "downloader protocol");
    let by_curl = site.path("by-curl.bin");
    sh(&sb, &format!("curl -sf -o {by_curl} http://10.200.0.2/big.bin")).assert_success("curl download");
    assert_eq!(sha256(&by_curl), want, "HTTP");
    // 100 small files over one keep-alive connection.
    let urls: Vec<String> = (0..100).map(|i| format!("http://10.200.0.2/small/f{i}.txt")).collect();
    let out = sh(&sb, &format!("curl -sfv {} 2>&1", urls.join(" ")));
    out.assert_success("curl 100 files");
    assert_eq!(
        out.stdout.matches("Connected to 10.200.0.2").count(),
        1,
        "one TCP connection"
    );
    assert_eq!(out.stdout.matches("Re-using existing connection").count(), 99);
    for i in [0, 42, 99] {
        assert!(out.stdout.contains(&format!("small file {i}\n")));
    }
}

#[test]
fn missing_and_forbidden_paths_get_404_403_or_a_reset_and_leak_nothing() {
    if !live_tests_possible("missing_and_forbidden_paths_get_404_403_or_a_reset_and_leak_nothing") {
        return;
    }
    let site = Site::new("safety", 1000);
    let (sb, _d) = start(&site, &[]);
    for (path, code) in [
        ("/missing.txt", "404"),
        ("/../etc/passwd", "403"),
        ("/%2e%2e/etc/passwd", "403"),
        ("/small/..%2f..%2fsecret.txt", "403"),
        ("/escape", "403"),
    ] {
        let out = sh(
            &sb,
            &format!("curl -s --path-as-is -w '\\n%{{http_code}}' http://10.200.0.2{path}"),
        );
        let status = out.stdout.lines().last().unwrap_or("");
        assert_eq!(status, code, "{path}: {}", out.stdout);
        assert!(
            !out.stdout.contains("root:") && !out.stdout.contains("SECRET"),
            "{path} leaked:\n{}",
            out.stdout
        );
    }
    // The downloader answers with one line saying why, then a reset, and never a byte of the file.
    for (name, why) in [
        ("../etc/passwd", "forbidden"),
        ("/etc/passwd", "no such file"), // taken as relative to the root
        ("escape", "forbidden"),
        ("missing.txt", "no such file"),
        ("small", "is a directory"),
    ] {
        let mut c = sb.enter(|| HostTcp::connect("10.200.0.2:2000").unwrap());
        c.write_all(format!("{name}\n").as_bytes()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let r = c.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("tunstack-downloader: error: ") && text.contains(why) && text.ends_with('\n'),
            "{name}: {text:?}"
        );
        assert_eq!(text.lines().count(), 1, "{name}: one line only: {text:?}");
        assert!(
            !text.contains("root:") && !text.contains("SECRET"),
            "{name} leaked: {text:?}"
        );
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset, "{name}");
    }
    // A plain nc user reads the reason.
    let out = sh(&sb, "echo missing.txt | nc -N -w 5 10.200.0.2 2000");
    assert!(
        out.stdout
            .contains("tunstack-downloader: error: no such file: \"missing.txt\""),
        "{}",
        out.stdout
    );
}

#[test]
fn per_client_limit_refuses_the_fifth_and_serves_another_address_and_idle_connections_close() {
    if !live_tests_possible("per_client_limit_refuses_the_fifth_and_serves_another_address_and_idle_connections_close")
    {
        return;
    }
    let site = Site::new("limits", 1000);
    let (sb, _d) = start(&site, &["--max-per-client", "4", "--idle-timeout", "2"]);
    sb.run(
        "ip",
        &["addr", "add", "10.200.0.3/24", "dev", "tun0"],
        Duration::from_secs(10),
    )
    .assert_success("second host address");
    let held: Vec<HostTcp> = sb.enter(|| (0..4).map(|_| HostTcp::connect("10.200.0.2:80").unwrap()).collect());
    // The fifth from 10.200.0.1: refused with 503.
    let out = sh(
        &sb,
        "curl -s --interface 10.200.0.1 -w '\\n%{http_code}' http://10.200.0.2/big.bin",
    );
    assert_eq!(out.stdout.lines().last(), Some("503"), "{}", out.stdout);
    // The downloader shares the limit and refuses by reset.
    // The reset may beat connect's return, our request, or neither: then
    // the connect, the write or the read reports it.
    match sb.enter(|| HostTcp::connect("10.200.0.2:2000")) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(mut c) => {
            let wrote = c.write_all(b"big.bin\n");
            let mut buf = Vec::new();
            let read = c.read_to_end(&mut buf);
            assert!(buf.is_empty(), "downloader over the limit sent data");
            assert!(
                wrote.is_err() || read.is_err(),
                "downloader over the limit must reset ({wrote:?}, {read:?})"
            );
        }
    }
    // A sixth from another address is served.
    let out = sh(
        &sb,
        "curl -sf --interface 10.200.0.3 -o /dev/null -w '%{http_code}' http://10.200.0.2/big.bin",
    );
    assert_eq!(out.stdout, "200");
    // Idle connections are closed after the idle timeout, freeing the slots.
    let t = Instant::now();
    for mut c in held {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut b = [0u8; 16];
        assert_eq!(c.read(&mut b).unwrap(), 0, "closed by the server");
    }
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    let out = sh(
        &sb,
        "curl -sf --interface 10.200.0.1 -o /dev/null -w '%{http_code}' http://10.200.0.2/big.bin",
    );
    assert_eq!(out.stdout, "200", "slots freed");
}

#[test]
fn two_hundred_concurrent_curl_downloads_of_a_1mib_file_are_all_intact() {
    if !live_tests_possible("two_hundred_concurrent_curl_downloads_of_a_1mib_file_are_all_intact") {
        return;
    }
    let site = Site::new("many", 1 << 20);
    let (sb, _d) = start(&site, &["--max-per-client", "256"]);
    let dir = site.path("many");
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!(
        "for i in $(seq 1 200); do curl -sf -o {dir}/$i.bin http://10.200.0.2/big.bin & done; fail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail"
    );
    sh(&sb, &script).assert_success("200 concurrent curls");
    let want = sha256(&format!("{}/big.bin", site.root()));
    let mut c = std::process::Command::new("sh");
    c.args(["-c", &format!("sha256sum {dir}/*.bin | cut -d' ' -f1 | sort | uniq -c")]);
    let out = process::run(c, Duration::from_secs(120));
    assert_eq!(out.stdout.trim(), format!("200 {want}"), "{}", out.stdout);
}

const CLI: &str = env!("CARGO_BIN_EXE_tunstack");

#[test]
fn tunstack_get_downloads_from_a_host_http_server_and_resumes() {
    if !live_tests_possible("tunstack_get_downloads_from_a_host_http_server_and_resumes") {
        return;
    }
    let site = Site::new("get", 64 << 20);
    let (sb, d) = start(&site, &[]);
    // The host serves the same directory with Python's http.server.
    let mut py = sb
        .command("/usr/bin/python3")
        .args([
            "-m",
            "http.server",
            "8000",
            "--bind",
            "10.200.0.1",
            "--directory",
            &site.root(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let want = sha256(&format!("{}/big.bin", site.root()));
    let out = site.path("got.bin");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = sb.run(
            CLI,
            &["get", "http://10.200.0.1:8000/big.bin", "-o", &out],
            Duration::from_secs(300),
        );
        if r.status.success() {
            break;
        }
        // Python may not be listening yet.
        assert!(
            r.stderr.contains("refused") && Instant::now() < deadline,
            "{}",
            r.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sha256(&out), want, "64 MiB from the host's http.server");
    // A truncated file resumes: from http.server (which ignores Range) and from ours (206).
    for url in ["http://10.200.0.1:8000/big.bin", "http://10.200.0.2/big.bin"] {
        let data = std::fs::read(&out).unwrap();
        std::fs::write(&out, &data[..10_000_000]).unwrap();
        sb.run(CLI, &["get", "-C", url, "-o", &out], Duration::from_secs(300))
            .assert_success("get -C");
        assert_eq!(sha256(&out), want, "resumed from {url}");
    }
    // Clear failures: a 404, and the downloader's refusal with its reason.
    let r = sb.run(
        CLI,
        &["get", "http://10.200.0.2/missing", "-o", &site.path("x")],
        Duration::from_secs(60),
    );
    assert!(!r.status.success() && r.stderr.contains("404"), "{}", r.stderr);
    let r = sb.run(
        CLI,
        &["get", "tcp://10.200.0.2:2000/../secret.txt", "-o", &site.path("y")],
        Duration::from_secs(60),
    );
    assert!(
        !r.status.success() && r.stderr.contains("the server refused: forbidden"),
        "{}",
        r.stderr
    );
    let _ = py.kill();
    let _ = py.wait();
    drop(d);
}

/// On a lossy path the refusal's line still arrives before the reset: the
/// reset waits for the line's acknowledgment.
#[test]
fn the_refusal_line_survives_loss() {
    if !live_tests_possible("the_refusal_line_survives_loss") {
        return;
    }
    let site = Site::new("lossy-refusal", 1000);
    let (sb, _d) = start(&site, &["--loss", "0.3", "--impair-direction", "out", "--seed", "7"]);
    for i in 0..5 {
        let out = sh(&sb, "echo missing.txt | nc -N -w 15 10.200.0.2 2000");
        assert!(
            out.stdout.contains("tunstack-downloader: error: no such file"),
            "run {i}: {:?}",
            out.stdout
        );
    }
}

/// Hundreds of connections held open at once cost the daemon no thread
/// each: the file services are event-driven. The limit proves every held
/// connection was taken on: the next one is refused.
#[test]
fn three_hundred_held_connections_cost_no_thread_each_and_are_all_served() {
    if !live_tests_possible("three_hundred_held_connections_cost_no_thread_each_and_are_all_served") {
        return;
    }
    let site = Site::new("held", 1000);
    let (sb, d) = start(&site, &["--max-per-client", "300"]);
    let (mut web, mut down): (Vec<HostTcp>, Vec<HostTcp>) = sb.enter(|| {
        let web = (0..200).map(|_| HostTcp::connect("10.200.0.2:80").unwrap()).collect();
        let down = (0..100).map(|_| HostTcp::connect("10.200.0.2:2000").unwrap()).collect();
        (web, down)
    });
    // Each has sent part of its request: its server side waits for the rest.
    for (i, c) in web.iter_mut().enumerate() {
        write!(c, "GET /small/f{}.txt HTTP/1.1\r\n", i % 100).unwrap();
    }
    for (i, c) in down.iter_mut().enumerate() {
        write!(c, "small/f{}", i % 100).unwrap();
    }
    let out = sh(&sb, "curl -s -w '\\n%{http_code}' http://10.200.0.2/small/f0.txt");
    assert_eq!(out.stdout.lines().last(), Some("503"), "all 300 held: {}", out.stdout);
    let threads = std::fs::read_dir(format!("/proc/{}/task", d.pid())).unwrap().count();
    assert!(threads < 32, "the daemon runs {threads} threads for 300 connections");
    // Every one is answered once its request is complete.
    for (i, c) in web.iter_mut().enumerate() {
        c.write_all(b"Host: x\r\nConnection: close\r\n\r\n").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert!(
            got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with(&format!("\r\n\r\nsmall file {}\n", i % 100)),
            "{got:?}"
        );
    }
    for (i, c) in down.iter_mut().enumerate() {
        c.write_all(b".txt\n").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, format!("small file {}\n", i % 100));
    }
}
