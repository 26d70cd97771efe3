//! `ephemeral kv` and `ephemeral room` against a bus whose store and room the test process
//! also uses: values and messages cross processes both ways. Real time, generous bounds
//! only for what must happen.

mod common;

use std::time::Duration;

use common::{bus, run, spawn_ready};
use ephemeral_bus::retained::{RoomOptions, StoreOptions};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

/// A fresh parent directory for buses, in memory where possible (as buses are by default).
fn tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("temp dir")
    } else {
        tempfile::tempdir().expect("temp dir")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_set_get_ls_del_with_exit_codes() {
    let dir = tempdir();
    let bus = bus(dir.path(), "kv").await;
    let store = bus
        .store("app", StoreOptions::default())
        .await
        .expect("store");
    store.set("from.lib", b"library", None).await.expect("set");

    let (code, out, _) = run(
        dir.path(),
        &["kv", "--bus", "kv", "--store", "app", "get", "from.lib"],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "library\n"));
    let (code, _, err) = run(
        dir.path(),
        &[
            "kv", "--bus", "kv", "--store", "app", "set", "from.cli", "shell", "--ttl", "1h",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let entry = store
        .entry("from.cli")
        .await
        .expect("entry")
        .expect("set by the cli");
    assert_eq!(entry.value(), b"shell");
    assert!(entry.expires_at().is_some(), "--ttl reaches the store");

    let (code, out, _) = run(
        dir.path(),
        &["kv", "--bus", "kv", "--store", "app", "ls", "from.*"],
    )
    .await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("from.cli \"shell\" rev=") && lines[0].contains(" ttl="),
        "{out}"
    );
    assert!(lines[1].starts_with("from.lib \"library\""), "{out}");
    // What is left of the hour reads to a tenth of a second (`59m 59s 900ms` or `1h`), not to
    // the millisecond.
    let ttl = lines[0]
        .split_once(" ttl=")
        .map(|(_, rest)| rest.split(" owner=").next().unwrap_or(rest))
        .expect("a ttl");
    let millis = ttl
        .split_whitespace()
        .find_map(|part| part.strip_suffix("ms"))
        .unwrap_or("0");
    assert!(millis.ends_with("00") || millis == "0", "ttl={ttl}: {out}");
    let (code, out, _) = run(
        dir.path(),
        &["kv", "--bus", "kv", "--store", "app", "ls", "--json"],
    )
    .await;
    assert_eq!(code, 0);
    let first: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("a line")).expect("json");
    assert_eq!(
        (first["key"].as_str(), first["value"].as_str()),
        (Some("from.cli"), Some("shell"))
    );

    let (code, _, _) = run(
        dir.path(),
        &["kv", "--bus", "kv", "--store", "app", "del", "from.cli"],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(store.get("from.cli").await.expect("get"), None);
    // Not there: exit 1, with the reason.
    let (code, out, err) = run(
        dir.path(),
        &["kv", "--bus", "kv", "--store", "app", "del", "from.cli"],
    )
    .await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("has no value"), "{err}");
    let (code, _, _) = run(
        dir.path(),
        &["kv", "--bus", "kv", "--store", "app", "get", "nothing"],
    )
    .await;
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_and_room_refuse_bad_input() {
    let dir = tempdir();
    let _bus = bus(dir.path(), "bad").await;
    for args in [
        &["kv", "--bus", "bad", "get", "a b"][..],
        &["kv", "--bus", "bad", "set", "k*", "v"],
        &["kv", "--bus", "bad", "set", "k", "v", "--ttl", "0s"],
        &["kv", "--bus", "bad", "set", "k", "v", "--ttl", "soon"],
        &["kv", "--bus", "bad", "--store", "a,b", "ls"],
        &["room", "--bus", "bad", "send", "lob by", "hi"],
        &["room", "--bus", "bad", "join"],
    ] {
        let (code, _, err) = run(dir.path(), args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    let (code, _, err) = run(dir.path(), &["kv", "--bus", "absent", "get", "k"]).await;
    assert_eq!(code, 3, "{err}");
    // A value larger than the store allows (1 MiB), read from stdin: a typed refusal, exit 2.
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 1024 * 1024 + 1]).expect("write");
    let output = common::cli(dir.path())
        .args(["kv", "--bus", "bad", "set", "big", "-"])
        .stdin(std::fs::File::open(&big).expect("open"))
        .output()
        .await
        .expect("run");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("larger than the maximum"), "{err}");
}

/// What a `kv watch --json --count N` printed until it exited: its output, and each line as
/// `<kind> <key>`.
async fn watched(watcher: &mut tokio::process::Child, what: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut stdout = watcher.stdout.take().expect("stdout");
    tokio::time::timeout(common::PATIENCE, stdout.read_to_string(&mut out))
        .await
        .expect(what)
        .expect("read");
    let kinds = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            format!(
                "{} {}",
                v["kind"].as_str().unwrap_or("?"),
                v["key"].as_str().unwrap_or("?")
            )
        })
        .collect();
    (out, kinds)
}

/// A one-shot `kv set` waits until the bus's other processes have read its change notice
/// before it exits (as `kv del` and `room send` do): without that, a `kv watch` elsewhere saw
/// the change only at its once-a-second re-read, and a value with a short time to live
/// expired unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_set_reaches_watchers_before_a_short_ttl_runs_out() {
    let dir = tempdir();
    let _bus = bus(dir.path(), "kvn").await;
    let (mut watcher, _stderr) = spawn_ready(
        dir.path(),
        &[
            "kv", "--bus", "kvn", "watch", "brief.*", "--count", "6", "--json",
        ],
        "watching",
    )
    .await;
    // Well under the watcher's one-second re-read, well over what a notice takes.
    for n in 0..3 {
        let key = format!("brief.{n}");
        let (code, _, err) = run(
            dir.path(),
            &["kv", "--bus", "kvn", "set", &key, "v", "--ttl", "700ms"],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let (out, kinds) = watched(&mut watcher, "watch --count 6 exits").await;
    assert_eq!(
        kinds,
        [
            "set brief.0",
            "expired brief.0",
            "set brief.1",
            "expired brief.1",
            "set brief.2",
            "expired brief.2"
        ],
        "{out}"
    );

    assert_eq!(watcher.wait().await.expect("wait").code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_watch_prints_changes_made_elsewhere() {
    let dir = tempdir();
    let bus = bus(dir.path(), "kvw").await;
    let store = bus
        .store("default", StoreOptions::default())
        .await
        .expect("store");
    let (mut child, _stderr) = spawn_ready(
        dir.path(),
        &[
            "kv", "--bus", "kvw", "watch", "job.*", "--count", "3", "--json",
        ],
        "watching",
    )
    .await;
    store.set("job.1", b"queued", None).await.expect("set");
    store.set("other", b"not shown", None).await.expect("set");
    store
        .set("job.2", b"short", Duration::from_millis(300))
        .await
        .expect("set");
    store.delete("job.1").await.expect("delete");
    let (out, kinds) = watched(&mut child, "watch --count 3 exits").await;
    assert_eq!(kinds, ["set job.1", "set job.2", "deleted job.1"], "{out}");
    assert_eq!(child.wait().await.expect("wait").code(), Some(0));
}

/// The room `lobby` of the bus `chat` in `dir` (the bus is returned to keep it open).
async fn lobby(dir: &std::path::Path) -> (ephemeral_bus::Bus, ephemeral_bus::retained::Room) {
    let bus = bus(dir, "chat").await;
    let room = bus
        .room("lobby", RoomOptions::default())
        .await
        .expect("room");
    (bus, room)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_join_prints_the_history_then_live_messages() {
    let dir = tempdir();
    let (_bus, room) = lobby(dir.path()).await;
    room.send(b"before").await.expect("send");
    let (code, _, err) = run(
        dir.path(),
        &["room", "--bus", "chat", "send", "lobby", "from the shell"],
    )
    .await;
    assert_eq!(code, 0, "{err}");

    let (mut child, _stderr) = spawn_ready(
        dir.path(),
        &["room", "--bus", "chat", "join", "lobby", "--count", "3"],
        "joined",
    )
    .await;
    room.send(b"after").await.expect("send");
    let mut out = String::new();
    let mut stdout = child.stdout.take().expect("stdout");
    tokio::time::timeout(common::PATIENCE, stdout.read_to_string(&mut out))
        .await
        .expect("join --count 3 exits")
        .expect("read");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains(" #1 ") && lines[0].ends_with(": before"),
        "{out}"
    );
    assert!(
        lines[1].contains(" #2 ") && lines[1].ends_with(": from the shell"),
        "{out}"
    );
    assert!(
        lines[2].contains(" #3 ") && lines[2].ends_with(": after"),
        "{out}"
    );
    assert_eq!(child.wait().await.expect("wait").code(), Some(0));
}

/// `room clear` empties a room another process keeps; its numbers carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_clear_removes_the_history_and_numbers_carry_on() {
    let dir = tempdir();
    let (_bus, room) = lobby(dir.path()).await;
    room.send(b"one").await.expect("send");
    room.send(b"two").await.expect("send");
    let (code, _, err) = run(dir.path(), &["room", "--bus", "chat", "clear", "lobby"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 message(s) removed"), "{err}");
    assert_eq!(room.send(b"three").await.expect("send"), 3);
    let mut joined = room.join().await.expect("join");
    let first = joined.next().await.expect("a message").expect("no loss");
    assert_eq!((first.sequence(), first.payload()), (3, &b"three"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_join_escapes_control_characters_in_text_lines() {
    let dir = tempdir();
    let (_bus, room) = lobby(dir.path()).await;
    room.send(b"hi\x1b[2J\x07").await.expect("send");
    let (code, out, err) = run(
        dir.path(),
        &["room", "--bus", "chat", "join", "lobby", "--count", "1"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains(['\x1b', '\x07']),
        "a control character reached the output raw: {out:?}"
    );
    assert!(
        out.trim_end().ends_with(r#": "hi\u{1b}[2J\u{7}""#),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_get_escapes_control_characters_on_a_terminal_only() {
    let dir = tempdir();
    let bus = bus(dir.path(), "kv").await;
    let store = bus
        .store("default", StoreOptions::default())
        .await
        .expect("store");
    store.set("k", b"v\x1b[2J\x07", None).await.expect("set");
    store.set("bin", [0xff_u8, 0x00], None).await.expect("set");

    let (code, out) = common::run_in_pty(dir.path(), &["kv", "--bus", "kv", "get", "k"]).await;
    assert_eq!(code, 0, "{out:?}");
    let out = String::from_utf8_lossy(&out);
    assert!(
        !out.contains(['\x1b', '\x07']),
        "a control character reached the terminal raw: {out:?}"
    );
    assert!(out.contains(r"v\u{1b}[2J\u{7}"), "{out:?}");
    let (code, out) = common::run_in_pty(dir.path(), &["kv", "--bus", "kv", "get", "bin"]).await;
    assert_eq!(code, 0, "{out:?}");
    assert!(
        String::from_utf8_lossy(&out).contains("<2 bytes: ff00>"),
        "{out:?}"
    );

    // Into a pipe the value stays exactly as stored, for scripts.
    let output = common::cli(dir.path())
        .args(["kv", "--bus", "kv", "get", "k"])
        .output()
        .await
        .expect("run");
    assert_eq!(output.stdout, b"v\x1b[2J\x07\n");
    // A value that ends its own line is not given a second line break (it was: a file set
    // with `kv set k - < f` came back from `kv get k > g` with its last newline doubled).
    store.set("line", b"one\ntwo\n", None).await.expect("set");
    let output = common::cli(dir.path())
        .args(["kv", "--bus", "kv", "get", "line"])
        .output()
        .await
        .expect("run");
    assert_eq!(output.stdout, b"one\ntwo\n");
}
