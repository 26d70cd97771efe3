//! Replays the committed fuzz corpora and every crash the fuzzer found (`fuzz/corpus/<target>`
//! and `fuzz/artifacts/<target>`) through the same checks the fuzz targets run, so they are
//! ordinary tests that run everywhere, without cargo-fuzz or a nightly toolchain.

#[path = "support/fuzz_checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable fuzz directory").path();
            let data = std::fs::read(&path).expect("a readable fuzz input");
            check(&data);
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn name_corpus() {
    assert!(
        replay("name", checks::name) >= 10,
        "the name corpus is missing"
    );
}

#[test]
fn pattern_corpus() {
    assert!(
        replay("pattern", checks::pattern) >= 10,
        "the pattern corpus is missing"
    );
}

#[test]
fn command_corpus() {
    assert!(
        replay("command", checks::command) >= 10,
        "the command corpus is missing"
    );
}
