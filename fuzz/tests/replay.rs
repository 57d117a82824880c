//! Replays every committed corpus file through its target on stable, so
//! `cargo test` covers what the fuzzers found without nightly.

use std::fs;
use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0;
    for (name, target) in tunstack_fuzz::TARGETS {
        let dir = root.join(name);
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut files: Vec<_> = entries.map(|e| e.expect("readable entry").path()).collect();
        files.sort();
        assert!(!files.is_empty(), "{} holds no corpus", dir.display());
        for file in files {
            let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            eprintln!("{}", file.display());
            target(&data);
            total += 1;
        }
    }
    eprintln!("replayed {total} files");
}

#[test]
fn every_target_has_a_corpus_directory_and_a_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in tunstack_fuzz::TARGETS {
        assert!(root.join("corpus").join(name).is_dir(), "no corpus/{name}");
        let harness = root.join("harness/fuzz_targets").join(format!("{name}.rs"));
        assert!(harness.is_file(), "no {}", harness.display());
    }
}
