//! The daemon's control socket: a Unix stream socket through which other
//! processes (the `tunstack` CLI, anything that speaks the protocol in
//! docs/control-protocol.md) query the stack and borrow its sockets.

pub mod bridge;
pub mod client;
pub mod frame;
pub mod probe;
pub mod server;

use std::path::PathBuf;

/// Where a daemon for interface `ifname` listens by default:
/// `/run/tunstack/<ifname>.sock`. Interface names repeat across network
/// namespaces while /run is shared, so outside the machine's own namespace
/// the namespace's identity is part of the name; the CLI, run in the same
/// namespace, computes the same path.
pub fn default_path(ifname: &str) -> PathBuf {
    let ns = |p: &str| {
        std::fs::metadata(p)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
    };
    // In a namespace /proc/1/ns/net may not even be readable: then assume we are in one.
    match (ns("/proc/self/ns/net"), ns("/proc/1/ns/net")) {
        (Some(mine), Some(init)) if mine == init => PathBuf::from(format!("/run/tunstack/{ifname}.sock")),
        (Some(mine), _) => PathBuf::from(format!("/run/tunstack/{ifname}-netns{mine}.sock")),
        (None, _) => PathBuf::from(format!("/run/tunstack/{ifname}.sock")),
    }
}

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 1024;

/// Escapes a value for a `key=value` field: no spaces, `=` or `%` raw.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '=' => out.push_str("%3D"),
            '%' => out.push_str("%25"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// Undoes [`escape`].
pub fn unescape(v: &str) -> String {
    v.replace("%20", " ")
        .replace("%3D", "=")
        .replace("%0A", "\n")
        .replace("%25", "%")
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
