//! Bus names: one path-safe word, so nothing can place a bus outside its parent directory.

mod support;

use std::path::Path;

use ephemeral_bus::{Bus, BusError, BusOptions};
use proptest::prelude::*;
use support::files_in;

/// Everything under `root`, as paths relative to it.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_one_word_are_refused_and_nothing_is_created() {
    let root = tempfile::tempdir().unwrap();
    // The parent does not exist yet: a refused name must not create it either.
    let parent = root.path().join("buses");
    for bad in [
        "x/../../elsewhere",
        "a/b",
        "../escape",
        "..",
        ".",
        "",
        "a\0b",
        "ünicode",
        "with space",
        "dotted.name",
        &"long".repeat(40),
    ] {
        let err = Bus::open_with(bad, BusOptions::default().dir(&parent))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::BusName(_)), "{bad:?}: {err}");
        assert!(
            err.to_string().contains("letters, digits"),
            "the message names the rule: {err}"
        );
        assert_eq!(tree(root.path()), Vec::<String>::new(), "{bad:?}");
    }
}

/// A bus directory too long for the Unix sockets it would hold is refused before anything is
/// created, with what to shorten; one that just fits opens.
#[tokio::test]
async fn a_bus_directory_too_long_for_its_sockets_is_refused_and_nothing_is_created() {
    let root = tempfile::tempdir().unwrap();
    let base = root.path().as_os_str().len();
    // `<parent>/ephemeral-<name>` at 86 bytes: one past the longest that fits (85).
    let name = "n".repeat(32);
    let fill = 86 - base - "/".len() - "/ephemeral-".len() - name.len();
    let parent = root.path().join("p".repeat(fill));
    let err = Bus::open_with(&name, BusOptions::default().dir(&parent))
        .await
        .unwrap_err();
    match &err {
        BusError::PathTooLong { len, max, .. } => assert_eq!((*len, *max), (86, 85)),
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains("shorter parent directory"),
        "{err}"
    );
    assert_eq!(tree(root.path()), Vec::<String>::new());
    let fits = Bus::open_with(&name[1..], BusOptions::default().dir(&parent))
        .await
        .unwrap();
    assert_eq!(fits.dir().as_os_str().len(), 85);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whatever the name, opening a bus creates nothing outside `<parent>`, and an accepted
    /// name lives exactly in `<parent>/ephemeral-<name>`.
    #[test]
    fn no_name_places_anything_outside_the_parent(
        name in prop_oneof![
            "[a-zA-Z0-9_-]{1,40}",
            "[a-z./\\\\-]{0,12}",
            "(\\.\\./|/|x|\\.|\u{0}|é|😀| ){0,8}",
            any::<String>(),
        ]
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        let parent = root.path().join("p").join("buses");
        std::fs::create_dir_all(&parent).unwrap();
        let opened = runtime.block_on(Bus::open_with(&name, BusOptions::default().dir(&parent)));
        let outside: Vec<String> = tree(root.path())
            .into_iter()
            .filter(|p| !p.starts_with("p/buses/") && p != "p" && p != "p/buses")
            .collect();
        prop_assert!(outside.is_empty(), "{name:?} created {outside:?}");
        match opened {
            Ok(bus) => {
                prop_assert_eq!(bus.dir().parent(), Some(parent.as_path()));
                let expected = format!("ephemeral-{name}");
                prop_assert_eq!(
                    bus.dir().file_name().and_then(|f| f.to_str()),
                    Some(expected.as_str())
                );
                prop_assert_eq!(files_in(&parent).len(), 1);
                drop(bus);
                prop_assert!(files_in(&parent).is_empty(), "the last peer out tidies up");
            }
            Err(err) => {
                prop_assert!(matches!(err, BusError::BusName(_)), "{}", err);
                prop_assert!(files_in(&parent).is_empty());
            }
        }
    }
}
