//! Every error case exits with its documented code (see `ephemeral --help`).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::run;

#[tokio::test]
async fn a_missing_bus_exits_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["raise", "--bus", "nobody", "x"][..],
        &["watch", "--bus", "nobody", "*", "--count", "1"],
        &["publish", "--bus", "nobody", "t", "p"],
        &["request", "--bus", "nobody", "t", "p"],
        &["stats", "--bus", "nobody"],
        &["hold", "--bus", "nobody", "x"],
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
            &["watch", "--bus", bad, "--create", "*", "--count", "1"],
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
                .args(["raise", "--create", "x"])
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
    let (code, _, stderr) = run(&parent, &["raise", "--bus", "fresh", "--create", "x"]).await;
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
        .args(["watch", "--bus", &name, "--create", "*", "--count", "0"])
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
        run(dir.path(), &["raise", "--bus", "fresh", "--create", "x"]).await;
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
        &["stats", "--bus", "bad bus"],
        &["check-name", "x.+.y"],
        &["match", "*", "bad name"],
    ] {
        let (code, _, stderr) = run(dir.path(), args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{stderr}");
    }
}

#[tokio::test]
async fn a_bad_room_name_key_or_topic_says_which_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, says) in [
        (
            &["room", "--bus", "x", "send", "bad name", "hi"][..],
            "room name contains whitespace at byte 3",
        ),
        (&["room", "--bus", "x", "join", ""], "room name is empty"),
        (
            &["kv", "--bus", "x", "set", "a b", "v"],
            "key contains whitespace at byte 1",
        ),
        (
            &["kv", "--bus", "x", "get", "user.*"],
            "key contains the pattern character `*`",
        ),
        (&["kv", "--bus", "x", "del", "a\tb"], "key contains"),
        (
            &["kv", "--bus", "x", "--store", "my store", "ls"],
            "store name contains whitespace",
        ),
        (
            &["publish", "--bus", "x", "orders new", "{}"],
            "topic contains whitespace",
        ),
        (
            &["request", "--bus", "x", "prices.*", "p"],
            "topic contains the pattern character `*`",
        ),
    ] {
        let (code, _, stderr) = run(dir.path(), args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("signal name"), "{args:?}: {stderr}");
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
        (&["stats", "--interval=-1s"], "durations must be positive"),
        (
            &["raise", "x", "--ttl", "-1s"],
            "durations must be positive",
        ),
        (
            &["hold", "x", "--lease", "-5ms"],
            "durations must be positive",
        ),
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
    let (code, _, stderr) = run(dir.path(), &["raise", "--bus", "shared", "x"]).await;
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
    // Every subcommand, as README.md promises (a unit test in main.rs walks clap's tree and
    // parses each example; this checks what a person sees).
    for sub in [
        &["check-name"][..],
        &["match"],
        &["watch"],
        &["raise"],
        &["hold"],
        &["publish"],
        &["request"],
        &["stats"],
        &["top"],
        &["ops"],
        &["signals"],
        &["kv"],
        &["kv", "get"],
        &["kv", "set"],
        &["kv", "del"],
        &["kv", "ls"],
        &["kv", "watch"],
        &["room"],
        &["room", "send"],
        &["room", "join"],
        &["completions"],
    ] {
        let (code, stdout, _) = run(dir.path(), &[sub, &["--help"]].concat()).await;
        assert_eq!(code, 0);
        let example = format!("  ephemeral {}", sub.join(" "));
        assert!(
            stdout.contains("Examples:\n") && stdout.contains(&example),
            "{sub:?} --help has examples: {stdout}"
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

#[tokio::test]
async fn completions_into_a_closed_pipe_exit_0_without_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    for shell in ["bash", "zsh", "fish"] {
        // A pipe whose reader is gone before the script is written (`| head -1` that has
        // already exited): every write fails with a broken pipe, whatever the timing.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        // `spawn`, not `output`: tokio's `output` replaces stdout with a pipe of its own.
        let child = common::cli(dir.path())
            .args(["completions", shell])
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let output = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
            .await
            .expect("exits")
            .expect("wait");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{shell}: {stderr}");
        assert!(!stderr.contains("panicked"), "{shell}: {stderr}");
    }
}

/// `ops ''` looked for publishers, then exited 1 ("no coordinator named ``"): a pattern that
/// matches nothing is a usage mistake, refused with exit 2 as `watch ''` is.
#[tokio::test]
async fn an_empty_ops_pattern_exits_2_with_a_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    for pattern in ["", ","] {
        let (code, _, stderr) = run(dir.path(), &["ops", "--create", pattern]).await;
        assert_eq!(code, 2, "{pattern:?}: {stderr}");
        assert!(
            stderr.contains("matches no coordinator") && stderr.contains("'*'"),
            "{stderr}"
        );
    }
}

/// `signals ''`, `signals ','` and `signals 'a b'` printed an empty table with exit 0, and
/// `ops 'a b'` exit 1 ("no coordinator named `a b`"): patterns no published name can match
/// (names hold no whitespace), which are usage mistakes, refused with exit 2 as `watch ''`.
#[tokio::test]
async fn a_signals_or_ops_pattern_that_matches_no_name_exits_2_with_a_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    for pattern in ["", ",", "a b", "a b,c d"] {
        for (command, what) in [
            ("signals", "matches no signal"),
            ("ops", "matches no coordinator"),
        ] {
            let (code, stdout, stderr) = run(dir.path(), &[command, "--create", pattern]).await;
            assert_eq!(code, 2, "{command} {pattern:?}: {stderr}");
            assert!(stdout.is_empty(), "{command} {pattern:?}: {stdout}");
            assert!(
                stderr.contains(what) && stderr.contains("'*'"),
                "{command} {pattern:?}: {stderr}"
            );
        }
    }
}

#[tokio::test]
async fn an_empty_watch_pattern_exits_2_with_a_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    for pattern in ["", ",", ",,"] {
        for args in [
            &["watch", "--create", pattern][..],
            &["kv", "--create", "watch", pattern],
        ] {
            let (code, _, stderr) = run(dir.path(), args).await;
            assert_eq!(code, 2, "{args:?}: {stderr}");
            assert!(
                stderr.contains("matches nothing") && stderr.contains("'*'"),
                "{stderr}"
            );
        }
    }
    assert!(
        std::fs::read_dir(dir.path())
            .expect("read")
            .next()
            .is_none(),
        "refused before opening the bus"
    );
}

#[tokio::test]
async fn bus_options_belong_to_the_subcommands_that_use_a_bus() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["check-name", "--bus", "x", "a.b"][..],
        &["match", "--create", "*", "a"],
        &["completions", "--bus", "x", "bash"],
        &["--bus", "x", "raise", "a"],
    ] {
        let (code, _, stderr) = run(dir.path(), args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
    for sub in ["check-name", "match", "completions"] {
        let (_, stdout, _) = run(dir.path(), &[sub, "--help"]).await;
        assert!(!stdout.contains("--bus"), "{sub}: {stdout}");
    }
    for sub in ["", "watch", "raise", "hold", "publish", "request", "stats"] {
        let args: Vec<&str> = [sub, "--help"]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let (_, stdout, _) = run(dir.path(), &args).await;
        assert!(
            !stdout.contains("[env:"),
            "{sub}: no empty env value shown: {stdout}"
        );
        if !sub.is_empty() {
            assert!(stdout.contains("--bus <BUS>"), "{sub}: {stdout}");
        }
    }
}

#[tokio::test]
async fn an_empty_bus_variable_means_the_default_bus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = common::cli(dir.path())
        .env("EPHEMERAL_BUS", "")
        .args(["raise", "--create", "x"])
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout.contains("on bus `default`"), "{stdout}");
}

#[tokio::test]
async fn a_ttl_past_the_sinks_max_age_gets_one_note() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run(dir.path(), &["raise", "--create", "x", "--ttl", "1h"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr.matches("max age").count(), 1, "{stderr}");
    let (code, _, stderr) = run(dir.path(), &["raise", "--create", "x", "--ttl", "30s"]).await;
    assert_eq!(code, 0);
    assert!(!stderr.contains("max age"), "{stderr}");
    let (_, help, _) = run(dir.path(), &["raise", "--help"]).await;
    assert!(
        help.contains("at most each bridged sink's max age"),
        "{help}"
    );
}

#[tokio::test]
async fn check_name_explains_empty_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) = run(dir.path(), &["check-name", "a..b"]).await;
    assert_eq!((code, stdout.as_str()), (0, "valid: a..b\n"));
    assert!(stderr.contains("empty segment"), "{stderr}");
    let (_, _, stderr) = run(dir.path(), &["check-name", "a.b"]).await;
    assert!(stderr.is_empty(), "{stderr}");
}

/// A payload larger than the bus takes, and a bus directory too long for its sockets, exit
/// 2 with what to do in the command's terms: the library's own messages name
/// `BusOptions::max_payload` and `BusOptions::dir`, which a shell user cannot set.
#[tokio::test]
async fn payload_and_path_limits_say_what_to_do_in_the_commands_terms() {
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = common::cli(dir.path())
        .args(["publish", "--bus", "big", "--create", "t", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&vec![b'x'; (1 << 20) + 1])
        .await
        .expect("write the payload");
    drop(stdin);
    let output = child.wait_with_output().await.expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("larger than the bus maximum") && stderr.contains("send a smaller one"),
        "{stderr}"
    );
    assert!(!stderr.contains("BusOptions"), "{stderr}");

    let long = dir.path().join("d".repeat(120));
    std::fs::create_dir_all(&long).expect("a long parent");
    let (code, _, stderr) = run(&long, &["raise", "--bus", "b", "--create", "x"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("too long") && stderr.contains("EPHEMERAL_BUS_DIR"),
        "{stderr}"
    );
    assert!(!stderr.contains("BusOptions"), "{stderr}");
}

/// `ops --state deferred` is refused with why and what to use: a published frame shows a
/// deferred operation as pending (a library snapshot says `Deferred`).
#[tokio::test]
async fn ops_state_deferred_says_deferred_operations_show_as_pending() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run(dir.path(), &["ops", "--create", "*", "--state", "deferred"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("shown as pending") && stderr.contains("--state pending"),
        "{stderr}"
    );
}

/// Runs `args` with stdout a pipe whose reader is already gone (`| head -0`, or a `| head -1`
/// that has exited): exit code and stderr.
async fn run_into_a_closed_pipe(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    // `spawn`, not `output`: tokio's `output` replaces stdout with a pipe of its own.
    let child = common::cli(dir)
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let output = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`ephemeral {}` did not finish", args.join(" ")))
        .expect("wait");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `publish`, `raise`, `check-name` and `match` wrote their line with `println!`, which
/// panicked on a closed stdout (exit 101 and a backtrace, after the message was sent). Their
/// work is done and the exit code says the answer: a closed stdout changes neither.
#[tokio::test]
async fn one_shot_commands_into_a_closed_pipe_keep_their_exit_code_without_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = common::bus(dir.path(), "piped").await;
    let mut seen = bus.subscribe("x.*").await.expect("subscribe");
    for (args, code) in [
        (&["publish", "--bus", "piped", "x.published", "p"][..], 0),
        (&["raise", "--bus", "piped", "x.raised"], 0),
        (&["check-name", "a.b"], 0),
        (&["match", "a.*", "a.b"], 0),
        (&["match", "a.*", "b.c"], 1),
    ] {
        let (got, stderr) = run_into_a_closed_pipe(dir.path(), args).await;
        assert_eq!(got, Some(code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    for topic in ["x.published", "x.raised"] {
        let message = tokio::time::timeout(common::PATIENCE, futures::StreamExt::next(&mut seen))
            .await
            .expect("delivered")
            .expect("open")
            .expect("not lagged");
        assert_eq!(
            message.topic().as_str(),
            topic,
            "sent despite the closed stdout"
        );
    }
}

/// A bus directory this user may not create or look at (its parent is another user's):
/// exit 4 with what to do. It said only `Permission denied (os error 13)`.
#[tokio::test]
async fn a_bus_this_user_may_not_use_exits_4_saying_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Root may write anywhere: then the command runs as `nobody`, for whom a parent of
    // root's with mode 755 is read-only and one with mode 700 is closed.
    let root = effective_uid() == 0;
    let (read_only, closed) = if root { (0o755, 0o700) } else { (0o555, 0o000) };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (args, mode) in [
        // Creating the bus directory is denied.
        (&["raise", "--bus", "shop", "--create", "x"][..], read_only),
        // Looking whether it exists is denied.
        (&["raise", "--bus", "shop", "x"], closed),
    ] {
        let parent = dir.path().join(format!("theirs-{mode:o}"));
        std::fs::create_dir(&parent).expect("mkdir");
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let mut command = common::cli(&parent);
        if root {
            command.uid(65534).gid(65534);
        }
        let output = tokio::time::timeout(common::PATIENCE, command.args(args).output())
            .await
            .expect("finishes")
            .expect("run");
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(
            stderr.contains("Permission denied")
                && stderr.contains("as the user who owns the bus")
                && stderr.contains("EPHEMERAL_BUS_DIR")
                && !stderr.contains("BusOptions"),
            "{args:?}: {stderr}"
        );
    }
}

/// This process's effective uid, from the owner of a file it creates (no extra dependency).
fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    file.as_file().metadata().expect("metadata").uid()
}

/// Whether process `pid` catches SIGINT (`Some(true)`), not yet (`Some(false)`), or has
/// exited (`None`). Linux: `SigCgt` and `State` in /proc/PID/status.
fn catches_sigint(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    if field("State:")?.starts_with('Z') {
        return None;
    }
    let mask = u64::from_str_radix(field("SigCgt:")?, 16).ok()?;
    Some(mask & (1 << (2 - 1)) != 0)
}

/// `stats --interval 500000000000years` panicked ("overflow when adding duration to
/// instant", exit 101) as soon as its monitor was subscribed: a window the clock cannot
/// count is one that does not end before Ctrl-C, which ends it with exit 0 as usual.
#[tokio::test]
async fn a_stats_interval_past_the_clock_waits_for_ctrl_c_without_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _bus = common::bus(dir.path(), "forever").await;
    let child = common::cli(dir.path())
        .args([
            "stats",
            "--bus",
            "forever",
            "--interval",
            "500000000000years",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("running");
    // Waiting in its window: Ctrl-C is caught (the old code never got there: it panicked
    // first and exited, which ends this wait too).
    let waiting = tokio::time::timeout(common::PATIENCE, async {
        while catches_sigint(pid) == Some(false) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    waiting.await.expect("stats starts its window or exits");
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let output = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
        .await
        .expect("stops on Ctrl-C")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// `EPHEMERAL_BUS_DIR` naming a file: exit 7 saying what is wrong and what to do, with or
/// without `--create`. It said only `Not a directory (os error 20)` or `File exists (os
/// error 17)`.
#[tokio::test]
async fn a_bus_parent_that_is_a_file_says_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").expect("write");
    for (parent, args) in [
        (file.clone(), &["raise", "x"][..]),
        (file.clone(), &["raise", "--create", "x"]),
        (file.join("below"), &["raise", "--create", "x"]),
    ] {
        let (code, _, stderr) = run(&parent, args).await;
        assert_eq!(code, 7, "{parent:?} {args:?}: {stderr}");
        assert!(
            stderr.contains("a file stands where a directory should be")
                && stderr.contains("EPHEMERAL_BUS_DIR")
                && !stderr.contains("BusOptions"),
            "{parent:?} {args:?}: {stderr}"
        );
    }
}

/// Runs `args` with stderr a pipe whose reader is already gone: the exit code.
async fn code_with_a_closed_stderr(dir: &std::path::Path, args: &[&str]) -> Option<i32> {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let child = common::cli(dir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .spawn()
        .expect("spawn");
    tokio::time::timeout(common::PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`ephemeral {}` did not finish", args.join(" ")))
        .expect("wait")
        .status
        .code()
}

/// The error line went out with `eprintln!`, which panics on a closed stderr: `ephemeral
/// raise --bus nowhere x 2>&1 | head -0` exited 101 instead of 3. The exit code is what a
/// script reads; it holds whatever stderr is.
#[tokio::test]
async fn errors_into_a_closed_stderr_keep_their_exit_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, code) in [
        (&["raise", "--bus", "nowhere", "x"][..], 3),
        (&["publish", "--bus", "nowhere", "t", "p"], 3),
        (&["check-name", "a b"], 2),
        (&["match", "*", "a b"], 2),
        (&["check-name", "a..b"], 0),
        (
            &["raise", "--bus", "made", "--create", "x", "--ttl", "1h"],
            0,
        ),
        // The notes of `kv` and `room` (what was set, sent or cleared) go to stderr too.
        (
            &[
                "kv", "--bus", "kept", "--create", "--store", "app", "set", "k", "v",
            ],
            0,
        ),
        (
            &[
                "kv", "--bus", "kept", "--create", "--store", "app", "del", "k",
            ],
            0,
        ),
        (
            &["room", "--bus", "kept", "--create", "send", "chat", "hello"],
            0,
        ),
        (&["room", "--bus", "kept", "--create", "clear", "chat"], 0),
    ] {
        assert_eq!(
            code_with_a_closed_stderr(dir.path(), args).await,
            Some(code),
            "{args:?}"
        );
    }
}
