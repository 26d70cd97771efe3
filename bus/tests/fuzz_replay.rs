//! Replays the committed corpus and every crash of the `frame` fuzz target
//! (`fuzz/corpus/frame`, `fuzz/artifacts/frame`) as an ordinary test.

#[path = "support/frame_check.rs"]
mod check;

use std::path::Path;

#[test]
fn frame_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join("frame")) else {
            continue;
        };
        for entry in entries {
            let data = std::fs::read(entry.expect("a readable fuzz directory").path())
                .expect("a readable fuzz input");
            check::frame(&data);
            replayed += 1;
        }
    }
    assert!(
        replayed >= 10,
        "the frame corpus is missing ({replayed} inputs)"
    );
}
