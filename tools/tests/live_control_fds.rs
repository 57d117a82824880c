//! Live: a daemon short of descriptors (started under `prlimit
//! --nofile=64:64`) neither spins nor floods its log when clients keep
//! coming: it bounds its clients by the descriptors it has, refuses the
//! rest, stays idle while they wait, and serves a new client once they go.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use tunstack_tests::netns::{Sandbox, live_tests_possible};

const DAEMON: &str = env!("CARGO_BIN_EXE_tunstackd");

/// Long enough for anything here to happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// User plus system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the ")" closing the name: state is field 3, utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_daemon_out_of_descriptors_neither_spins_nor_floods_its_log() {
    if !live_tests_possible("a_daemon_out_of_descriptors_neither_spins_nor_floods_its_log") {
        return;
    }
    let sb = Sandbox::create();
    let control = std::env::temp_dir()
        .join(format!("tunstack-{}-fds.sock", std::process::id()))
        .to_string_lossy()
        .into_owned();
    // prlimit execs the daemon: the PID is the daemon's.
    let d = sb.start_daemon("prlimit", &["--nofile=64:64", DAEMON, "--control", &control]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("64")),
        "{limits}"
    );
    // More clients than it has descriptors for: some are refused at once.
    let mut clients = Vec::new();
    let mut refused = 0;
    // (100: within the listen backlog, so a connect never blocks even if accepting stops.)
    for _ in 0..100 {
        let c = UnixStream::connect(&control).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut line = String::new();
        if BufReader::new(&c).read_line(&mut line).is_ok() {
            assert!(line.starts_with("ERR too many control connections"), "{line}");
            refused += 1;
        } else {
            clients.push(c);
        }
    }
    assert!(
        refused > 0 && !clients.is_empty(),
        "{refused} refused, {} held",
        clients.len()
    );
    // While they wait, the daemon rests.
    let (lines, ticks) = (d.log().len(), cpu_ticks(d.pid()));
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: sysconf(3) takes a plain name.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    let used = cpu_ticks(d.pid()) - ticks;
    assert!(used < hz, "{used} ticks of CPU in 3 s of waiting");
    let logged = d.log().len() - lines;
    assert!(logged < 100, "{logged} log lines in 3 s of waiting");
    // Once they go, a new client is served.
    drop(clients);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut c = UnixStream::connect(&control).unwrap();
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c.write_all(b"VERSION\n").unwrap();
        let mut line = String::new();
        BufReader::new(&c).read_line(&mut line).unwrap();
        if line.starts_with("OK tunstackd ") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {line}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !d.log().snapshot().iter().any(|l| l.contains("panicked")),
        "{:?}",
        d.log().snapshot()
    );
}
