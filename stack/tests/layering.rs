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

/// The top-level modules a source text names through `crate::`, outside
/// comments and the trailing `#[cfg(test)] mod tests`.
fn imports(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let code = line.split("//").next().unwrap_or("").trim();
        if code == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.trim_start().starts_with("mod tests")) {
            break;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                // `use crate::{a, b}`: every name in the braces.
                if let Some(group) = after.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    for item in group.split(',') {
                        let n: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !n.is_empty() {
                            out.insert(n);
                        }
                    }
                }
            } else {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

/// Every layering violation among `(module, source)` pairs.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (module, source) in files {
        let Some(mine) = rank(module) else {
            out.push(format!("{module}: not in the layer table"));
            continue;
        };
        for used in imports(source) {
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

/// Every source file of the crate, with the top-level module it belongs to.
fn crate_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, module: Option<&str>, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("readable source dir") {
            let path = entry.expect("dir entry").path();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name")
                .to_string();
            let top = module.map_or(name.clone(), str::to_string);
            if path.is_dir() {
                walk(&path, Some(&top), out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                // The crate root only declares modules; test files and helpers are not layers.
                if module.is_none() && matches!(name.as_str(), "lib" | "testutil") || name == "tests" {
                    continue;
                }
                out.push((top, std::fs::read_to_string(&path).expect("readable source")));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), None, &mut out);
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
    let modules: BTreeSet<String> = crate_sources().into_iter().map(|(m, _)| m).collect();
    for m in &modules {
        assert!(rank(m).is_some(), "{m} is missing from LAYERS");
    }
    for (m, _) in LAYERS {
        assert!(modules.contains(*m), "LAYERS names {m}, which does not exist");
    }
}

#[test]
fn an_inverted_import_is_caught() {
    let files = vec![
        ("wire".to_string(), "use crate::iface::Interface;\n".to_string()),
        ("udp".to_string(), "use crate::{ip, tcp::TcpLayer};\n".to_string()),
        (
            "tcp".to_string(),
            "use crate::ip::Context; // crate::net in a comment\n#[cfg(test)]\nmod tests {\n    use crate::iface::Interface;\n}\n"
                .to_string(),
        ),
    ];
    let bad = violations(&files);
    assert_eq!(
        bad,
        [
            "wire (layer 2) imports iface, a higher layer (5)",
            "udp imports its peer tcp (both layer 4)",
        ]
    );
}
