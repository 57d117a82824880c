//! Target `control`: what a client sends on the daemon's control socket.
//!
//! The input is the client's byte stream, read as the daemon reads it:
//! request lines (bounded, text) until one asks for a bridge, then frames
//! (type, 32-bit length, payload). Every line must read within its bound
//! and parse or be refused without a panic; every frame must respect the
//! payload limit (a length prefix beyond it is refused before anything of
//! that size is allocated), read back unchanged through the writer, and a
//! datagram frame's address and data must rebuild its payload.

use tunstack_tools::control::MAX_REQUEST;
use tunstack_tools::control::frame::{self, MAX_PAYLOAD};
use tunstack_tools::control::request::{self, MAX_BACKLOG, Request};

/// The daemon's reading of one client connection.
pub fn control(data: &[u8]) {
    let mut r = data;
    loop {
        let line = match request::read_line(&mut r) {
            // The daemon answers ERR to a line it cannot read, and hangs up.
            Ok(None) | Err(_) => return,
            Ok(Some(line)) => line,
        };
        assert!(line.len() < MAX_REQUEST + 1 && !line.contains('\n'), "{line:?}");
        match request::parse(&line) {
            Err(msg) => {
                trace!("{line:?}: ERR {msg}");
                assert!(!msg.is_empty());
            }
            Ok(req) => {
                trace!("{line:?}: {req:?}");
                check(&req);
                if req.is_lasting() {
                    return frames(r);
                }
            }
        }
    }
}

/// What a parsed request promises.
fn check(req: &Request) {
    match *req {
        Request::Listen { backlog, .. } => assert!(backlog <= MAX_BACKLOG),
        Request::Ping(p) => assert!(p.size <= 65507 && p.ttl > 0 && !p.interval.is_zero()),
        Request::Trace(t) => assert!(t.max_hops > 0 && (1..=10).contains(&t.probes) && !t.wait.is_zero()),
        _ => {}
    }
}

/// The frames after a bridging request, until the stream ends or breaks.
fn frames(mut r: &[u8]) {
    let mut buf = Vec::new();
    while let Ok(Some(kind)) = frame::read(&mut r, &mut buf) {
        trace!("frame {:?}, {} bytes", kind as char, buf.len());
        assert!(buf.len() <= MAX_PAYLOAD);
        assert!(buf.capacity() <= 2 * MAX_PAYLOAD, "{} bytes held", buf.capacity());
        let mut wire = Vec::new();
        frame::write(&mut wire, kind, &buf).expect("writes to a Vec");
        let mut back = Vec::new();
        assert_eq!(
            frame::read(&mut &wire[..], &mut back).expect("our own frame"),
            Some(kind)
        );
        assert_eq!(back, buf);
        if kind == frame::DATAGRAM {
            match frame::parse_datagram(&buf) {
                Ok((addr, data)) => assert_eq!(frame::datagram(addr, data), buf),
                Err(_) => assert!(buf.len() < 6),
            }
        }
    }
}
