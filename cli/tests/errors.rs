//! Every error case exits with its documented code (see `ephemeral --help`).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::run;

#[tokio::test]
async fn a_missing_bus_exits_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["--bus", "nobody", "raise", "x"][..],
        &["--bus", "nobody", "watch", "*", "--count", "1"],
        &["--bus", "nobody", "publish", "t", "p"],
        &["--bus", "nobody", "request", "t", "p"],
        &["--bus", "nobody", "stats"],
        &["--bus", "nobody", "hold", "x"],
    ] {
        let (code, stdout, stderr) = run(dir.path(), args).await;
        assert_eq!(code, 3, "{args:?}: {stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains("no bus named `nobody`"), "{stderr}");
        assert!(stderr.contains("--create"), "says what to do: {stderr}");
    }
    assert!(
        !dir.path().join("ephemeral-nobody").exists(),
        "a failed command creates nothing"
    );
}

#[tokio::test]
async fn a_bus_name_that_is_not_one_word_exits_2_and_creates_nothing() {
    let root = tempfile::tempdir().expect("temp dir");
    // The parent does not exist: `--create` would make it, so nothing may happen before the
    // name is checked.
    let parent = root.path().join("buses");
    for bad in [
        "x/../../elsewhere",
        "a/b",
        "../escape",
        "..",
        "",
        "a.b",
        "\u{fc}nicode",
    ] {
        let (code, stdout, stderr) = run(
            &parent,
            &["--bus", bad, "--create", "watch", "*", "--count", "1"],
        )
        .await;
        assert_eq!(code, 2, "--bus {bad:?}: {stderr}");
        assert!(stdout.is_empty());
        assert!(
            stderr.contains("letters, digits, `-` and `_`"),
            "names the rule: {stderr}"
        );
        if !bad.is_empty() {
            let output = common::cli(&parent)
                .env("EPHEMERAL_BUS", bad)
                .args(["--create", "raise", "x"])
                .output()
                .await
                .expect("run");
            assert_eq!(output.status.code(), Some(2), "EPHEMERAL_BUS={bad:?}");
        }
    }
    let left: Vec<_> = std::fs::read_dir(root.path())
        .expect("read")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "created {left:?}");
}

#[tokio::test]
async fn create_makes_a_missing_parent_private() {
    let root = tempfile::tempdir().expect("temp dir");
    let parent = root.path().join("not").join("yet");
    let (code, _, stderr) = run(&parent, &["--bus", "fresh", "--create", "raise", "x"]).await;
    assert_eq!(code, 0, "{stderr}");
    for dir in [root.path().join("not"), parent] {
        let mode = std::fs::metadata(&dir)
            .expect("created")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

#[tokio::test]
async fn an_empty_bus_dir_variable_means_the_default_parent() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let name = format!("cli-empty-env-{}", std::process::id());
    let output = common::cli(cwd.path())
        .env("EPHEMERAL_BUS_DIR", "")
        .current_dir(cwd.path())
        .args(["--bus", &name, "--create", "watch", "*", "--count", "0"])
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("(/dev/shm/ephemeral-{name})")),
        "{stderr}"
    );
    let here: Vec<_> = std::fs::read_dir(cwd.path()).expect("read").collect();
    assert!(here.is_empty(), "nothing in the current directory");
}

#[tokio::test]
async fn create_opens_a_missing_bus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) =
        run(dir.path(), &["--bus", "fresh", "--create", "raise", "x"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("reached no subscriber"), "{stdout}");
}

#[tokio::test]
async fn a_bad_name_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["raise", "bad name"][..],
        &["hold", "a,b"],
        &["publish", "", "p"],
        &["request", "a.*", "p"],
        &["--bus", "bad bus", "stats"],
        &["check-name", "x.+.y"],
        &["match", "*", "bad name"],
    ] {
        let (code, _, stderr) = run(dir.path(), args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{stderr}");
    }
}

#[tokio::test]
async fn a_bad_duration_or_header_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, says) in [
        (&["raise", "x", "--ttl", "3x"][..], "is not a duration"),
        (&["raise", "x", "--ttl", "0s"], "is zero"),
        (
            &["request", "t", "p", "--timeout", "soon"],
            "is not a duration",
        ),
        (&["stats", "--interval=-1s"], "is not a duration"),
        (
            &["hold", "x", "--lease", "1 fortnight"],
            "is not a duration",
        ),
        (&["publish", "t", "p", "--header", "novalue"], "key=value"),
    ] {
        let (code, _, stderr) = run(dir.path(), args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_refused_bus_exits_4() {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = dir.path().join("ephemeral-shared");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (code, _, stderr) = run(dir.path(), &["--bus", "shared", "raise", "x"]).await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("chmod 700"), "says what to do: {stderr}");
}

#[tokio::test]
async fn no_match_exits_1_and_a_match_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, _) = run(dir.path(), &["match", "news.+", "news.sports.eu"]).await;
    assert_eq!((code, stdout.as_str()), (1, "no match\n"));
    let (code, stdout, _) = run(dir.path(), &["match", "news.*", "news.sports.eu"]).await;
    assert_eq!((code, stdout.as_str()), (0, "match\n"));
}

#[tokio::test]
async fn help_documents_exit_codes_and_examples() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, _) = run(dir.path(), &["--help"]).await;
    assert_eq!(code, 0);
    for line in [
        "Exit codes:",
        "3  no such bus",
        "4  bus refused",
        "5  request timed out",
    ] {
        assert!(stdout.contains(line), "missing `{line}`: {stdout}");
    }
    for sub in [
        "watch",
        "raise",
        "hold",
        "publish",
        "request",
        "stats",
        "completions",
    ] {
        let (code, stdout, _) = run(dir.path(), &[sub, "--help"]).await;
        assert_eq!(code, 0);
        assert!(
            stdout.contains("Example") && stdout.contains("ephemeral "),
            "{sub} --help has examples: {stdout}"
        );
    }
}

#[tokio::test]
async fn completions_are_generated() {
    let dir = tempfile::tempdir().expect("temp dir");
    for shell in ["bash", "zsh", "fish"] {
        let (code, stdout, stderr) = run(dir.path(), &["completions", shell]).await;
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("ephemeral"), "{shell}");
        assert!(
            stdout.contains("watch") && stdout.contains("raise"),
            "{shell}"
        );
    }
    let (code, _, _) = run(dir.path(), &["completions", "cmd.exe"]).await;
    assert_eq!(code, 2);
}
