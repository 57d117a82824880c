//! The daemon's control socket: a Unix stream socket through which other
//! processes (the `tunstack` CLI, anything that speaks the protocol in
//! docs/control-protocol.md) query the stack and borrow its sockets.

pub mod bridge;
pub mod client;
pub mod frame;
pub mod owner;
pub mod probe;
pub mod request;
pub mod server;

use std::path::PathBuf;

/// Where a daemon for interface `ifname` listens by default:
/// `/run/tunstack/<ifname>/control.sock` in the machine's own network
/// namespace, `/run/tunstack/<ifname>-netns<inode>/control.sock` in any
/// other. Interface names repeat across network namespaces while /run is
/// shared, so there the namespace's identity is part of the name. Each
/// daemon has a directory of its own, given to the user it runs as, so that
/// it can remove its socket at exit once it is no longer root, while only
/// root may add entries to /run/tunstack. The CLI, run in the same
/// namespace, computes the same path. The rule is in docs/control-protocol.md.
pub fn default_path(ifname: &str) -> PathBuf {
    let mine = inode("/proc/self/ns/net");
    socket_path(ifname, mine, mine.and_then(|_| in_initial_netns()))
}

/// The socket's name from our namespace's inode (None: no /proc to tell)
/// and whether it is the machine's own (None: cannot tell).
fn socket_path(ifname: &str, netns: Option<u64>, initial: Option<bool>) -> PathBuf {
    match (netns, initial) {
        // Without /proc there is no namespace inode to name: the plain name is the only one.
        (None, _) | (Some(_), Some(true)) => PathBuf::from(format!("/run/tunstack/{ifname}/control.sock")),
        // Undecided counts as another namespace: that name can never be another namespace's.
        (Some(ns), Some(false) | None) => PathBuf::from(format!("/run/tunstack/{ifname}-netns{ns}/control.sock")),
    }
}

/// Whether we share PID 1's network namespace: the machine's own, or a
/// container's, whose /run is its own too. `/proc/1/ns/net` answers only to
/// those allowed to ptrace PID 1 (not other users, and not always root: it
/// may be refused by a security module), so when it cannot be read the
/// namespaces are compared through `/proc/<pid>/net/dev`, which anyone may
/// stat: procfs gives each namespace's entry its own inode number, the
/// same whichever process it is reached through. `None` when neither can be
/// read (a /proc mounted with hidepid that hides PID 1).
fn in_initial_netns() -> Option<bool> {
    let same = |ours: &str, init: &str| Some(inode(ours)? == inode(init)?);
    same("/proc/self/ns/net", "/proc/1/ns/net").or_else(|| same("/proc/self/net/dev", "/proc/1/net/dev"))
}

/// The inode number of what `path` leads to.
fn inode(path: &str) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 1024;

/// Escapes a value for a `key=value` field: a space, `=`, `%`, every
/// control character (below 0x20, and 0x7f) and every byte of a non-ASCII
/// character are percent-encoded (`%20`, `%3D`, `%25`, `%1B`, `%C3%A9`),
/// so a field is one printable ASCII word whatever it holds (a program
/// name from /proc may hold anything).
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b <= b' ' || b == b'=' || b == b'%' || b >= 0x7f {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Undoes [`escape`]: every `%XX` becomes its byte (bytes that make no
/// UTF-8 come out as U+FFFD); a `%` not followed by two hex digits stays.
pub fn unescape(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) if bytes[i + 1].is_ascii_hexdigit() => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `v` made safe to print on a terminal: each control character
/// (C0, DEL, C1) shown as `?`, as `ls` does, so text from the daemon
/// cannot move the cursor or retitle the window.
pub fn printable(v: &str) -> String {
    v.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Parses a line of `key=value` fields.
pub fn fields(line: &str) -> Vec<(String, String)> {
    line.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), unescape(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_named_by_namespace_only_outside_the_machines_own() {
        let p = |ns, initial| socket_path("tun0", ns, initial).display().to_string();
        assert_eq!(p(Some(4026531833), Some(true)), "/run/tunstack/tun0/control.sock");
        assert_eq!(
            p(Some(4026532177), Some(false)),
            "/run/tunstack/tun0-netns4026532177/control.sock"
        );
        assert_eq!(
            p(Some(4026532177), None),
            "/run/tunstack/tun0-netns4026532177/control.sock"
        );
        assert_eq!(p(None, None), "/run/tunstack/tun0/control.sock");
    }

    #[test]
    fn our_namespace_is_compared_with_pid_1s_even_where_its_ns_link_is_unreadable() {
        // A process may always stat its own entries; PID 1's /proc/1/net is
        // open to all, so the answer is known here whatever the privileges.
        let initial = in_initial_netns().expect("a decision");
        // Both ways of comparing agree wherever both can be read.
        let by_nsfs = inode("/proc/1/ns/net").map(|init| Some(init) == inode("/proc/self/ns/net"));
        if let Some(by_nsfs) = by_nsfs {
            assert_eq!(by_nsfs, initial);
        }
        let by_procfs = inode("/proc/1/net/dev").unwrap() == inode("/proc/self/net/dev").unwrap();
        assert_eq!(by_procfs, initial);
    }

    #[test]
    fn control_characters_and_non_ascii_are_escaped_and_come_back() {
        let v = "evil\x1b]0;owned\x07\r\t\x7f\u{9b}2J caf\u{e9}";
        let e = escape(v);
        assert!(e.bytes().all(|b| b.is_ascii_graphic()), "{e}");
        assert!(e.starts_with("evil%1B]0;owned%07%0D%09%7F%C2%9B2J%20caf%C3%A9"), "{e}");
        assert_eq!(unescape(&e), v);
        assert_eq!(unescape("100%"), "100%", "a lone % stays");
        assert_eq!(unescape("%+1x"), "%+1x", "a sign is not a hex digit");
        assert_eq!(printable(&unescape(&e)), "evil?]0;owned?????2J caf\u{e9}");
    }

    #[test]
    fn escaping_round_trips() {
        let v = "my prog=1 100%\nx";
        assert!(!escape(v).contains(' '));
        assert_eq!(unescape(&escape(v)), v);
        assert_eq!(
            fields("a=1 b=x%20y"),
            [("a".into(), "1".into()), ("b".into(), "x y".into())]
        );
    }
}
