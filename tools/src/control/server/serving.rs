//! Serving clients of several uids on an in-memory stack: ownership,
//! privileged ports, the socket limit and the idle timeout, each client a
//! `serve` thread on one end of a socket pair, its uid given rather than
//! taken from SO_PEERCRED (so no privilege is needed to play other users).

use super::*;
use crate::control::owner::Limits;
use std::io::{BufRead, BufReader};
use tunstack::device::memory::MemoryLink;
use tunstack::iface::{Config, Interface};

const ALICE: u32 = 1000;
const BOB: u32 = 1001;

/// A stack on a memory link, shared as the daemon shares it.
fn served(limits: Limits, idle: Duration) -> (Served, MemoryLink) {
    let (link, peer) = MemoryLink::pair().unwrap();
    let stack = Stack::start(Interface::new(Config::new("10.200.0.2/24".parse().unwrap())), link).unwrap();
    let sv = Served {
        stack,
        ifname: "tun0".into(),
        offloads: false,
        pending: Arc::new(Pending::default()),
        accounts: Accounts::new(limits),
        idle,
    };
    (sv, peer)
}

/// A client of uid `uid`: our end of a pair whose other end is served.
struct Client(BufReader<UnixStream>);

impl Client {
    fn new(sv: &Served, uid: u32) -> Client {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let sv = sv.clone();
        let peer = Peer {
            uid,
            who: format!("{uid}/test"),
        };
        let slot = sv.accounts.admit(uid).unwrap();
        std::thread::spawn(move || {
            let _slot = slot;
            let _ = serve(&sv, &theirs, &peer);
        });
        ours.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client(BufReader::new(ours))
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.0.read_line(&mut l).unwrap();
        l.trim_end().to_owned()
    }

    fn request(&mut self, req: &str) -> String {
        writeln!(self.0.get_ref(), "{req}").unwrap();
        self.line()
    }
}

#[test]
fn a_pending_connection_is_attached_only_by_its_owner_or_root() {
    let (sv, _link) = served(Limits::default(), IDLE_TIMEOUT);
    let mut alice = Client::new(&sv, ALICE);
    assert_eq!(alice.request("LISTEN 5000"), "OK 0.0.0.0:5000");
    let dial = || tunstack::net::TcpStream::connect(&sv.stack, "10.200.0.2:5000").unwrap();
    let (_c1, _c2) = (dial(), dial());
    let id = |l: String| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap();
    let (id1, id2) = (id(alice.line()), id(alice.line()));

    let mut bob = Client::new(&sv, BOB);
    assert_eq!(
        bob.request(&format!("ATTACH {id1}")),
        format!("ERR attach {id1}: Operation not permitted")
    );
    // Refused, Bob's connection still takes requests; Alice's is still hers.
    assert!(bob.request("VERSION").starts_with("OK tunstackd "));
    assert!(
        Client::new(&sv, ALICE)
            .request(&format!("ATTACH {id1}"))
            .starts_with("OK 10.200.0.2:5000 ")
    );
    assert!(Client::new(&sv, 0).request(&format!("ATTACH {id2}")).starts_with("OK "));
    assert_eq!(
        bob.request(&format!("ATTACH {id2}")),
        format!("ERR attach {id2}: no such pending connection")
    );
}

#[test]
fn low_ports_are_roots_and_a_uids_sockets_are_bounded() {
    let limits = Limits {
        sockets_per_uid: 1,
        ..Limits::default()
    };
    let (sv, _link) = served(limits, IDLE_TIMEOUT);
    let mut bob = Client::new(&sv, BOB);
    assert_eq!(bob.request("LISTEN 80"), "ERR listen on 80: Permission denied");
    assert_eq!(bob.request("UDP 0.0.0.0 53"), "ERR bind 0.0.0.0:53: Permission denied");
    assert!(Client::new(&sv, 0).request("LISTEN 80").starts_with("OK "));
    let mut held = Client::new(&sv, BOB);
    assert!(held.request("UDP 0.0.0.0 5353").starts_with("OK "));
    assert_eq!(bob.request("UDP 0.0.0.0 0"), "ERR bind 0.0.0.0:0: Too many open files");
    // Another uid has its own count.
    assert!(Client::new(&sv, ALICE).request("UDP 0.0.0.0 0").starts_with("OK "));
    // Once Bob's socket is gone, he may have one again.
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !bob.request("UDP 0.0.0.0 0").starts_with("OK ") {
        assert!(std::time::Instant::now() < deadline, "the socket was never given back");
    }
}

#[test]
fn a_client_idle_between_requests_is_told_and_disconnected() {
    let (sv, _link) = served(Limits::default(), Duration::from_millis(300));
    let mut c = Client::new(&sv, ALICE);
    assert!(c.request("VERSION").starts_with("OK "));
    let started = std::time::Instant::now();
    assert_eq!(c.line(), "ERR idle for 0.3 s");
    assert_eq!(c.line(), "", "then closed");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn every_socket_is_listed_but_only_root_and_the_owner_see_whose() {
    let (sv, _link) = served(Limits::default(), IDLE_TIMEOUT);
    let mut alice = Client::new(&sv, ALICE);
    assert!(alice.request("UDP 0.0.0.0 5353").starts_with("OK "));
    let owner_at = |uid: u32, port: u16| {
        let mut c = Client::new(&sv, uid);
        let n: usize = c.request("SOCKETS").strip_prefix("OK ").unwrap().parse().unwrap();
        let rows: Vec<String> = (0..n).map(|_| c.line()).collect();
        let at = format!("local=0.0.0.0:{port} ");
        let row = rows.iter().find(|r| r.contains(&at)).expect("listed");
        let owner = row.split(' ').find_map(|f| f.strip_prefix("owner="));
        owner.unwrap().to_owned()
    };
    let owner = |uid| owner_at(uid, 5353);
    assert_eq!(owner(BOB), "-");
    assert_eq!(owner(0), format!("{ALICE}/test"));
    assert_eq!(owner(ALICE), format!("{ALICE}/test"), "her own");
    // A built-in service's socket is the daemon's, so its uid's (ours here).
    let service = tunstack::net::UdpSocket::bind(&sv.stack, "0.0.0.0:7").unwrap();
    service.set_owner("echo");
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let daemon = unsafe { libc::geteuid() };
    assert_eq!(owner_at(daemon, 7), "echo");
    let stranger = if daemon == BOB { ALICE } else { BOB };
    assert_eq!(owner_at(stranger, 7), "-");
}

#[test]
fn a_client_trickling_a_request_is_cut_off_after_one_idle_timeout() {
    let (sv, _link) = served(Limits::default(), Duration::from_millis(300));
    let mut c = Client::new(&sv, ALICE);
    let w = c.0.get_ref().try_clone().unwrap();
    let started = std::time::Instant::now();
    // A byte every 50 ms for 2 s: each read is quick, the line never ends.
    std::thread::spawn(move || {
        let mut w = w;
        for _ in 0..40 {
            if w.write_all(b"V").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert_eq!(c.line(), "ERR idle for 0.3 s");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn a_reply_taken_a_trickle_at_a_time_is_given_up_after_one_idle_timeout() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    // Far more than the socket's buffer: most must wait for the reader.
    let reply = vec![b'x'; 8 << 20];
    // A reader taking a byte every 50 ms: each write goes through in time,
    // the whole never does.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = std::thread::spawn({
        let stop = stop.clone();
        move || {
            use std::io::Read;
            let mut b = [0u8; 1];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && (&ours).read(&mut b).is_ok_and(|n| n == 1) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let started = std::time::Instant::now();
    let e = send_within(&theirs, &reply, Duration::from_millis(300)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
}

#[test]
fn a_client_that_does_not_take_its_reply_is_dropped_without_another_word() {
    let (sv, _link) = served(Limits::default(), Duration::from_millis(300));
    // Enough sockets that SOCKETS outgrows the control socket's buffer.
    let _udp: Vec<_> = (0..4000)
        .map(|_| tunstack::net::UdpSocket::bind(&sv.stack, "0.0.0.0:0").unwrap())
        .collect();
    let c = Client::new(&sv, ALICE);
    writeln!(c.0.get_ref(), "SOCKETS").unwrap();
    let started = std::time::Instant::now();
    // Not reading for a while: the daemon gives up and closes.
    std::thread::sleep(Duration::from_millis(600));
    let mut all = Vec::new();
    let mut reader = c.0;
    io::Read::read_to_end(&mut reader, &mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("OK 4000"), "{}", &text[..text.len().min(40)]);
    assert!(!text.contains("ERR"), "no ERR written into the stalled socket");
    assert_eq!(text.lines().count(), 1 + text.matches("proto=udp").count());
    assert!(text.matches("proto=udp").count() < 4000, "cut short");
    assert!(started.elapsed() < Duration::from_secs(10));
}
