//! The layering check: every module of the `tunstack` crate imports only
//! the layers below its own (DESIGN rule 9), so the module graph stays
//! acyclic and a reader can learn the stack bottom-up.
//!
//! It reads the `crate::…` paths of every source file under `stack/src`
//! (comments and the test modules at the bottom of files left out: tests
//! may drive a layer through the whole interface) and fails when a module
//! names one of a higher layer, or one of its own level that is not itself
//! (peers, such as UDP and TCP, never import each other).

use std::collections::BTreeSet;
use std::path::Path;

/// The layers, bottom first: a module may use those of lower rank only.
const LAYERS: &[(&str, u8)] = &[
    // Leaves, used by all.
    ("time", 0),
    ("rand", 0),
    ("stats", 0),
    ("ratelimit", 1),
    ("socket", 1),
    // Wire formats: checksums, headers, sequence numbers.
    ("wire", 2),
    // IPv4 and the context the protocols get from it.
    ("ip", 3),
    // The protocols, side by side.
    ("icmp", 4),
    ("udp", 4),
    ("tcp", 4),
    ("ping", 4),
    // The interface composes them; devices move packets (neither knows the other).
    ("iface", 5),
    ("device", 5),
    // The stack thread drives an interface over a device.
    ("runtime", 6),
    // std::net-shaped sockets on a running stack.
    ("net", 7),
];

fn rank(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// The top-level modules a source text names through `crate::` (or through
/// `super::` chains that climb past its own top-level module, from a file
/// `depth` modules below it), outside comments and the trailing
/// `#[cfg(test)] mod tests`. `use` trees may span lines and nest.
fn imports(source: &str, depth: usize) -> BTreeSet<String> {
    let mut code = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.split("//").next().unwrap_or("");
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.trim_start().starts_with("mod tests")) {
            break;
        }
        code.push_str(line);
        code.push('\n');
    }
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some((at, len)) = next_root_path(rest, depth) {
        let after = &rest[at + len..];
        match after.strip_prefix('{') {
            Some(group) => top_level_names(group, &mut out),
            None => {
                let name = leading_ident(after);
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
        rest = after;
    }
    out
}

/// Where the next path from the crate root starts in `text`, and how long its
/// prefix (`crate::`, or enough `super::`s to leave the top-level module) is.
fn next_root_path(text: &str, depth: usize) -> Option<(usize, usize)> {
    let krate = text.find("crate::").map(|at| (at, "crate::".len()));
    let mut from = 0;
    let supers = loop {
        let Some(at) = text[from..].find("super::").map(|i| i + from) else {
            break None;
        };
        let mut n = 0;
        while text[at + n * 7..].starts_with("super::") {
            n += 1;
        }
        if n > depth {
            break Some((at, n * 7));
        }
        from = at + n * 7;
    };
    match (krate, supers) {
        (Some(k), Some(s)) => Some(if k.0 < s.0 { k } else { s }),
        (k, s) => k.or(s),
    }
}

fn leading_ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The first name of every item of a `{ a, b::{c, d}, e }` group (after its
/// opening brace), whatever its nesting and line breaks.
fn top_level_names(group: &str, out: &mut BTreeSet<String>) {
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && !c.is_whitespace() => {
                item_start = false;
                let name = leading_ident(&group[i..]);
                if !name.is_empty() && name != "self" {
                    out.insert(name);
                }
            }
            _ => {}
        }
    }
}

/// Every layering violation among `(module, source)` pairs.
fn violations(files: &[SourceFile]) -> Vec<String> {
    let mut out = Vec::new();
    for SourceFile { module, depth, source } in files {
        let Some(mine) = rank(module) else {
            out.push(format!("{module}: not in the layer table"));
            continue;
        };
        for used in imports(source, *depth) {
            if used == *module {
                continue;
            }
            match rank(&used) {
                None => out.push(format!("{module} uses crate::{used}, which is not in the layer table")),
                Some(r) if r > mine => {
                    out.push(format!("{module} (layer {mine}) imports {used}, a higher layer ({r})"))
                }
                Some(r) if r == mine => out.push(format!("{module} imports its peer {used} (both layer {r})")),
                Some(_) => {}
            }
        }
    }
    out
}

/// A source file: the top-level module it belongs to, how many modules
/// below that one it sits (`tcp/mod.rs` 0, `tcp/input.rs` 1), and its text.
struct SourceFile {
    module: String,
    depth: usize,
    source: String,
}

impl SourceFile {
    fn new(module: &str, depth: usize, source: &str) -> SourceFile {
        SourceFile {
            module: module.to_string(),
            depth,
            source: source.to_string(),
        }
    }
}

/// Every source file of the crate.
fn crate_sources() -> Vec<SourceFile> {
    fn walk(dir: &Path, module: Option<&str>, depth: usize, out: &mut Vec<SourceFile>) {
        for entry in std::fs::read_dir(dir).expect("readable source dir") {
            let path = entry.expect("dir entry").path();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name")
                .to_string();
            let top = module.map_or(name.clone(), str::to_string);
            if path.is_dir() {
                walk(&path, Some(&top), depth + usize::from(module.is_some()), out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                // The crate root only declares modules; test files and helpers are not layers.
                if module.is_none() && matches!(name.as_str(), "lib" | "testutil") || name == "tests" {
                    continue;
                }
                let depth = if module.is_none() || name == "mod" {
                    depth
                } else {
                    depth + 1
                };
                let source = std::fs::read_to_string(&path).expect("readable source");
                out.push(SourceFile::new(&top, depth, &source));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), None, 0, &mut out);
    out
}

#[test]
fn every_module_imports_only_layers_below_its_own() {
    let files = crate_sources();
    assert!(files.len() > 40, "found only {} source files", files.len());
    let bad = violations(&files);
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn every_module_is_in_the_table() {
    let modules: BTreeSet<String> = crate_sources().into_iter().map(|f| f.module).collect();
    for m in &modules {
        assert!(rank(m).is_some(), "{m} is missing from LAYERS");
    }
    for (m, _) in LAYERS {
        assert!(modules.contains(*m), "LAYERS names {m}, which does not exist");
    }
}

#[test]
fn an_inverted_import_is_caught() {
    let files = [
        SourceFile::new("wire", 0, "use crate::iface::Interface;\n"),
        SourceFile::new("udp", 0, "use crate::{ip, tcp::TcpLayer};\n"),
        SourceFile::new(
            "ping",
            1,
            "use crate::{\n    ip::{self, Sockets},\n    socket::Handle,\n    udp::UdpLayer,\n};\n",
        ),
        SourceFile::new("icmp", 1, "use super::super::tcp::TcpLayer;\nuse super::IcmpLayer;\n"),
        SourceFile::new("ip", 0, "fn f() -> crate::net::TcpStream { todo!() }\n"),
        SourceFile::new(
            "tcp",
            0,
            "use crate::ip::Context; // crate::net in a comment\n#[cfg(test)]\nmod tests {\n    use crate::iface::Interface;\n}\n",
        ),
    ];
    let bad = violations(&files);
    assert_eq!(
        bad,
        [
            "wire (layer 2) imports iface, a higher layer (5)",
            "udp imports its peer tcp (both layer 4)",
            "ping imports its peer udp (both layer 4)",
            "icmp imports its peer tcp (both layer 4)",
            "ip (layer 3) imports net, a higher layer (7)",
        ]
    );
}
