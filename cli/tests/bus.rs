//! The `ephemeral` binary against a bus fed by the test process.
//!
//! Real processes and sockets, so these tests use real time, with generous bounds only
//! (`common::PATIENCE`, 20 s) for things that must happen: nothing here asserts a duration.

mod common;

use std::time::Duration;

use common::{bus, eventually, run, spawn_ready, spawn_ready_stdout};
use ephemeral::{Name, SignalBuilder, SignalSink};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

fn name(s: &str) -> Name {
    Name::new(s).expect("valid test name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_count_prints_raised_signals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "watch-text").await;
    let sink = SignalSink::default();
    let _bridge = bus.bridge(&sink, "error.*").await.expect("bridge");

    let (child, _stderr) = spawn_ready(
        dir.path(),
        &["watch", "--bus", "watch-text", "error.*", "--count", "2"],
        "watching",
    )
    .await;
    sink.raise_with(
        SignalBuilder::new(name("error.db"))
            .key("orders")
            .payload_str("disk full"),
    )
    .expect("raise");
    sink.raise("error.net").expect("raise");
    sink.raise("other.thing")
        .expect("raise (not bridged, not shown)");

    let output = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
        .await
        .expect("watch --count 2 exits after two lines")
        .expect("wait");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("signal   error.db key=orders") && lines[0].contains("\"disk full\""),
        "{stdout}"
    );
    assert!(
        lines[0].contains(" ttl="),
        "a bridged signal carries its ttl: {stdout}"
    );
    assert!(lines[1].contains("signal   error.net"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_json_is_one_object_per_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "watch-json").await;
    let (child, _stderr) = spawn_ready(
        dir.path(),
        &[
            "watch",
            "--bus",
            "watch-json",
            "orders.+",
            "--json",
            "--count",
            "1",
        ],
        "watching",
    )
    .await;
    bus.publish("orders.created.eu", b"not matched by orders.+")
        .await
        .expect("publish");
    bus.publish("orders.created", b"{\"id\":42}")
        .await
        .expect("publish");
    let output = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(value["kind"], "message");
    assert_eq!(value["topic"], "orders.created");
    assert_eq!(value["payload"], "{\"id\":42}");
    assert_eq!(value["payload_len"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raise_reaches_a_bridged_sink_and_a_subscriber() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "raise").await;
    let sink = SignalSink::default();
    let _bridge = bus.bridge(&sink, "alert.*").await.expect("bridge");
    let mut plain = bus.subscribe("alert.fire").await.expect("subscribe");

    let (code, stdout, stderr) = run(
        dir.path(),
        &[
            "raise",
            "--bus",
            "raise",
            "alert.fire",
            "--key",
            "zone-1",
            "--payload",
            "smoke",
            "--ttl",
            "30s",
            "--header",
            "floor=3",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("reached 2 subscribers"), "{stdout}");

    eventually("the bridged sink has alert.fire", || {
        sink.has_signal("alert.fire")
    })
    .await;
    let signal = sink.latest("alert.fire").expect("live");
    assert_eq!(signal.key(), Some("zone-1"));
    assert_eq!(signal.payload_str(), Some("smoke"));
    assert_eq!(
        signal.header("floor").map(ToString::to_string).as_deref(),
        Some("3")
    );

    let message = tokio::time::timeout(common::PATIENCE, plain.next())
        .await
        .expect("delivered")
        .expect("open")
        .expect("not lagged");
    assert_eq!(message.payload_str(), Some("smoke"));
    let ttl = message.ttl().expect("raise --ttl sends a ttl");
    assert!(
        ttl <= Duration::from_secs(30) && ttl > Duration::ZERO,
        "{ttl:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_keeps_a_condition_live_until_interrupted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "hold").await;
    let sink = SignalSink::default();
    let _bridge = bus.bridge(&sink, "circuit.*").await.expect("bridge");

    let (child, mut out) = spawn_ready_stdout(
        dir.path(),
        &[
            "hold",
            "--bus",
            "hold",
            "circuit.open",
            "--key",
            "payments",
            "--lease",
            "2s",
        ],
        "holding",
    )
    .await;
    eventually("the bridged sink holds circuit.open", || {
        sink.has_signal("circuit.open")
    })
    .await;
    let held = sink.latest("circuit.open").expect("live");
    assert!(held.is_held(), "mirrored as a hold, not an event");
    assert_eq!(held.key(), Some("payments"));

    // Past two leases (2 s each) it is still live: the command keeps refreshing it. (A lease
    // long against its refresh period, so a loaded machine does not let it lapse.)
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(
        sink.has_signal("circuit.open"),
        "the hold outlived its refreshes"
    );

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let output = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
        .await
        .expect("hold exits on SIGINT")
        .expect("wait");
    assert_eq!(
        output.status.code(),
        Some(0),
        "Ctrl-C is the normal way out"
    );
    let mut rest = String::new();
    out.read_to_string(&mut rest).await.expect("stdout");
    assert!(rest.contains("released circuit.open"), "{rest}");
    eventually("the hold is released", || !sink.has_signal("circuit.open")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_gets_a_reply_and_times_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "request").await;
    let _double = bus
        .serve("math.double", |request| async move {
            let n: u64 = request.payload_str().unwrap_or("0").parse().unwrap_or(0);
            (n * 2).to_string().into_bytes()
        })
        .await
        .expect("serve");
    let _slow = bus
        .serve("slow.op", |_| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            b"too late".to_vec()
        })
        .await
        .expect("serve");

    // A watcher of everything must not be taken for a server of every topic.
    let (_watcher, _w) =
        spawn_ready(dir.path(), &["watch", "--bus", "request", "*"], "watching").await;
    for _ in 0..3 {
        let (code, stdout, stderr) = run(
            dir.path(),
            &["request", "--bus", "request", "math.double", "21"],
        )
        .await;
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout, "42\n");
    }

    let (code, stdout, stderr) = run(
        dir.path(),
        &[
            "request",
            "--bus",
            "request",
            "slow.op",
            "x",
            "--timeout",
            "300ms",
        ],
    )
    .await;
    assert_eq!(code, 5, "a timeout exits 5: {stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("no reply within"), "{stderr}");

    let (code, _, stderr) = run(
        dir.path(),
        &[
            "request",
            "--bus",
            "request",
            "nobody.home",
            "x",
            "--timeout",
            "1s",
        ],
    )
    .await;
    assert_eq!(code, 6, "no server exits 6: {stderr}");
    assert!(stderr.contains("no peer serves `nobody.home`"), "{stderr}");
    assert!(
        !stderr.contains("Bus::serve"),
        "the library's API: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_lists_the_topic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "stats").await;
    let publisher = bus.clone();
    let feed = tokio::spawn(async move {
        loop {
            publisher
                .publish("orders.created", b"12345")
                .await
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    let (code, stdout, stderr) =
        run(dir.path(), &["stats", "--bus", "stats", "--interval", "1s"]).await;
    assert_eq!(code, 0, "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("orders.created"))
        .unwrap_or_else(|| panic!("no orders.created row: {stdout}"));
    let messages: u64 = row
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a message count");
    assert!(messages > 0, "{row}");
    assert!(stdout.contains("peers: 1"), "{stdout}");

    let (code, stdout, stderr) = run(
        dir.path(),
        &["stats", "--bus", "stats", "--interval", "500ms", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    let topics = value["topics"].as_array().expect("topics");
    let orders = topics
        .iter()
        .find(|t| t["topic"] == "orders.created")
        .expect("orders.created listed");
    assert_eq!(
        orders["bytes"].as_u64(),
        orders["messages"].as_u64().map(|m| m * 5)
    );
    feed.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_a_hold_once_and_its_release() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The test process is on the bus too, so the CLI processes do not need --create.
    let _bus = bus(dir.path(), "watch-hold").await;
    let (watcher, _w) = spawn_ready(
        dir.path(),
        &["watch", "--bus", "watch-hold", "circuit.*", "--count", "2"],
        "watching",
    )
    .await;
    let (holder, _h) = spawn_ready_stdout(
        dir.path(),
        &[
            "hold",
            "--bus",
            "watch-hold",
            "circuit.open",
            "--lease",
            "1s",
        ],
        "holding",
    )
    .await;
    // Refreshes go by (every third of the lease); the watcher shows the hold once.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pid = holder.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let output = tokio::time::timeout(common::PATIENCE, watcher.wait_with_output())
        .await
        .expect("the watcher saw two lines")
        .expect("wait");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains("held     circuit.open"), "{stdout}");
    assert!(lines[1].contains("released circuit.open"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_stats_watch_stop_cleanly_on_sigint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "sigint").await;
    let publisher = bus.clone();
    let feed = tokio::spawn(async move {
        loop {
            let _ = publisher.publish("ticks.one", b"t").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let (watcher, _w) = spawn_ready(
        dir.path(),
        &["watch", "--bus", "sigint", "ticks.*"],
        "watching",
    )
    .await;
    let mut stats = common::cli(dir.path())
        .args(["stats", "--bus", "sigint", "--watch", "--interval", "200ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn stats");
    // Wait until stats has printed two frames (not a terminal: frames one after another).
    let mut out = stats.stdout.take().expect("piped");
    let mut seen = String::new();
    tokio::time::timeout(common::PATIENCE, async {
        let mut buf = [0u8; 4096];
        while seen.matches("TOPIC").count() < 2 {
            let n = out.read(&mut buf).await.expect("read");
            assert!(n > 0, "stats --watch exited early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("two stats frames");
    assert!(seen.contains("ticks.one"), "{seen}");
    assert!(
        !seen.contains('\x1b'),
        "no escape codes when not a terminal"
    );

    for child in [&watcher, &stats] {
        let pid = child.id().expect("running").to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .expect("kill")
                .success()
        );
    }
    let watched = tokio::time::timeout(common::PATIENCE, watcher.wait_with_output())
        .await
        .expect("watch stops on SIGINT")
        .expect("wait");
    assert_eq!(watched.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&watched.stdout).contains("message  ticks.one \"t\""),
        "watch printed the messages before stopping"
    );
    let status = tokio::time::timeout(common::PATIENCE, stats.wait())
        .await
        .expect("stats stops on SIGINT")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    feed.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_topic_watchers_never_take_requests_and_one_shot_requests_spread() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "spread").await;
    let other = common::bus(dir.path(), "spread").await;
    let _b = bus
        .serve("who.am.i", |_| async { b"b".to_vec() })
        .await
        .expect("serve");
    let _c = other
        .serve("who.am.i", |_| async { b"c".to_vec() })
        .await
        .expect("serve");
    // Watchers of exactly the request topic, in the old spelling too: never servers.
    let (_w1, _) = spawn_ready(
        dir.path(),
        &["watch", "--bus", "spread", "who.am.i"],
        "watching",
    )
    .await;
    let (_w2, _) = spawn_ready(
        dir.path(),
        &["watch", "--bus", "spread", "_req.who.am.i", "--requests"],
        "watching",
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..16 {
        let (code, stdout, stderr) = run(
            dir.path(),
            &[
                "request",
                "--bus",
                "spread",
                "who.am.i",
                "?",
                "--timeout",
                "10s",
            ],
        )
        .await;
        assert_eq!(code, 0, "{stderr}");
        seen.push(stdout.trim().to_owned());
    }
    assert!(
        seen.iter().any(|s| s == "b") && seen.iter().any(|s| s == "c"),
        "one-shot requests all went to one server: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_requests_shows_copies_of_requests_and_replies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "copies").await;
    let _double = bus
        .serve("math.double", |request| async move {
            let n: u64 = request.payload_str().unwrap_or("0").parse().unwrap_or(0);
            (n * 2).to_string().into_bytes()
        })
        .await
        .expect("serve");
    let (watcher, _w) = spawn_ready(
        dir.path(),
        &[
            "watch",
            "--bus",
            "copies",
            "math.*",
            "--requests",
            "--count",
            "2",
        ],
        "watching",
    )
    .await;
    let (code, stdout, stderr) = run(
        dir.path(),
        &["request", "--bus", "copies", "math.double", "21"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "42\n", "the server answered, not the watcher");
    let output = tokio::time::timeout(common::PATIENCE, watcher.wait_with_output())
        .await
        .expect("the watcher saw two lines")
        .expect("wait");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let mut kinds: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["reply", "request"], "{stdout}");
    assert!(stdout.contains("math.double \"21\""), "{stdout}");
    assert!(stdout.contains("math.double \"42\""), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_requests_ids_pairs_each_reply_with_its_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = bus(dir.path(), "pairs").await;
    let _double = server
        .serve("math.double", |request| async move {
            let n: u64 = request.payload_str().unwrap_or("0").parse().unwrap_or(0);
            (n * 2).to_string().into_bytes()
        })
        .await
        .expect("serve");
    // Two requesters in one process: one origin, and each numbers its requests from the
    // same start, so neither the message id nor the correlation alone tells them apart.
    let first = bus(dir.path(), "pairs").await;
    let second = bus(dir.path(), "pairs").await;
    let watch = [
        "watch",
        "--bus",
        "pairs",
        "math.*",
        "--requests",
        "--count",
        "4",
    ];
    let (text, _t) = spawn_ready(dir.path(), &[&watch[..], &["--ids"]].concat(), "watching").await;
    let (json, _j) = spawn_ready(dir.path(), &[&watch[..], &["--json"]].concat(), "watching").await;
    let (one, two) = tokio::join!(
        first.request("math.double", b"10", common::PATIENCE),
        second.request("math.double", b"20", common::PATIENCE),
    );
    assert_eq!(one.expect("first reply").payload(), b"20");
    assert_eq!(two.expect("second reply").payload(), b"40");
    let request_of = |peer: u64| format!("{peer:016x}/");

    let output = tokio::time::timeout(common::PATIENCE, text.wait_with_output())
        .await
        .expect("the text watcher saw four lines")
        .expect("wait");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    // The `request=` value of the line of `kind` whose payload is `payload`.
    let key = |kind: &str, payload: &str| -> String {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("{kind:<8} math.double {payload:?}")))
            .unwrap_or_else(|| panic!("no {kind} {payload}: {stdout}"));
        let token = line
            .split_whitespace()
            .find_map(|t| t.strip_prefix("request="))
            .unwrap_or_else(|| panic!("no request= on {line:?}"));
        token.to_owned()
    };
    assert_eq!(key("request", "10"), key("reply", "20"), "{stdout}");
    assert_eq!(key("request", "20"), key("reply", "40"), "{stdout}");
    assert_ne!(key("request", "10"), key("request", "20"), "{stdout}");
    assert!(
        key("request", "10").starts_with(&request_of(first.peer_id())),
        "the requester is the first peer: {stdout}"
    );
    assert!(
        key("reply", "40").starts_with(&request_of(second.peer_id())),
        "a reply names its requester, not its server: {stdout}"
    );

    let output = tokio::time::timeout(common::PATIENCE, json.wait_with_output())
        .await
        .expect("the JSON watcher saw four lines")
        .expect("wait");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let pair = |kind: &str, payload: &str| -> (String, u64) {
        let line = lines
            .iter()
            .find(|l| l["kind"] == kind && l["payload"] == payload)
            .unwrap_or_else(|| panic!("no {kind} {payload}: {stdout}"));
        let requester = line["requester"].as_str().expect("a requester").to_owned();
        (
            requester,
            line["correlation"].as_u64().expect("a correlation"),
        )
    };
    assert_eq!(pair("request", "10"), pair("reply", "20"), "{stdout}");
    assert_eq!(pair("request", "20"), pair("reply", "40"), "{stdout}");
    assert_eq!(pair("reply", "20").0, format!("{:016x}", first.peer_id()));
    assert_eq!(pair("reply", "40").0, format!("{:016x}", second.peer_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_star_sees_every_user_topic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _bus = bus(dir.path(), "star").await;
    let mut watchers = Vec::new();
    for _ in 0..2 {
        watchers.push(
            spawn_ready(
                dir.path(),
                &["watch", "--bus", "star", "*", "--count", "2"],
                "watching",
            )
            .await
            .0,
        );
    }
    for topic in ["_private.x", "\u{fc}nicode.x"] {
        let (code, stdout, stderr) =
            run(dir.path(), &["publish", "--bus", "star", topic, "hello"]).await;
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("reached 2 subscribers"),
            "{topic}: {stdout}"
        );
    }
    for watcher in watchers {
        let output = tokio::time::timeout(common::PATIENCE, watcher.wait_with_output())
            .await
            .expect("each watcher saw both")
            .expect("wait");
        let stdout = String::from_utf8(output.stdout).expect("utf-8");
        assert!(stdout.contains("message  _private.x"), "{stdout}");
        assert!(stdout.contains("message  \u{fc}nicode.x"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_stream_prints_every_reply_then_the_error_that_ended_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "streams").await;
    let _count = bus
        .serve_stream("count.to", |m| {
            let n: u8 = m.payload_str().and_then(|s| s.parse().ok()).unwrap_or(0);
            futures::stream::iter((1..=n).map(|i| i.to_string().into_bytes()))
        })
        .await
        .expect("serve");
    let _boom = bus
        .serve_stream("boom", |_| {
            futures::stream::iter([b"first".to_vec()])
                .chain(futures::stream::once(async { panic!("on purpose") }))
        })
        .await
        .expect("serve");
    let (code, stdout, stderr) = run(
        dir.path(),
        &["request", "--bus", "streams", "count.to", "3", "--stream"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "1\n2\n3\n");
    let (code, stdout, stderr) = run(
        dir.path(),
        &["request", "--bus", "streams", "boom", "", "--stream"],
    )
    .await;
    assert_eq!(code, 6, "{stderr}");
    assert_eq!(stdout, "first\n");
    assert!(stderr.contains("on purpose"), "{stderr}");
}

/// `request --stream | head -1`: once the reader is gone the command stops, with exit 0 and
/// nothing on stderr, as `watch` does. It used to fail its next write and exit 7 with
/// `error: i/o error: Broken pipe`; a plain request into a closed pipe did the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_into_a_closed_pipe_stops_with_exit_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "piped").await;
    let _endless = bus
        .serve_stream("count.up", |_| {
            futures::stream::iter(0u64..).map(|i| i.to_string().into_bytes())
        })
        .await
        .expect("serve");
    let _double = bus
        .serve("math.double", |m| async move { m.payload().repeat(2) })
        .await
        .expect("serve");
    for args in [
        &["request", "--bus", "piped", "count.up", "", "--stream"][..],
        &["request", "--bus", "piped", "math.double", "21"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        // `spawn`, not `output`: tokio's `output` replaces stdout with a pipe of its own.
        let child = common::cli(dir.path())
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let output = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
            .await
            .expect("stops once its reader is gone")
            .expect("wait");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// A server's error text is another process's: it was printed as it came, so a line break
/// split the one-line error and an escape sequence reached the terminal. It is escaped now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_error_text_is_printed_as_one_escaped_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "failing").await;
    let _server = bus
        .try_serve("math.fail", |_| async {
            Err::<Vec<u8>, _>("first line\nsecond \u{1b}[31mred")
        })
        .await
        .expect("serve");
    let (code, stdout, stderr) = run(
        dir.path(),
        &["request", "--bus", "failing", "math.fail", "x"],
    )
    .await;
    assert_eq!(code, 6, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(r"failed: first line\nsecond \u{1b}[31mred") && !stderr.contains('\x1b'),
        "{stderr}"
    );
}

/// `watch --full` wrote a text payload as it came, escape sequences included, to the
/// terminal (where keys and headers were already made harmless): on a terminal its control
/// characters but line breaks and tabs are escaped now, as `request` does with a reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_full_escapes_control_characters_on_a_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "evil").await;
    let root = dir.path().to_path_buf();
    let watcher = tokio::spawn(async move {
        common::run_in_pty(
            &root,
            &["watch", "--bus", "evil", "evil.*", "--full", "--count", "1"],
        )
        .await
    });
    common::eventually("the watcher subscribes", || {
        bus.peer_list()
            .iter()
            .any(|p| p.subscriptions.iter().any(|s| s == "evil.*"))
    })
    .await;
    bus.publish("evil.payload", b"ok\x1b]0;pwned\x07".as_slice())
        .await
        .expect("publish");
    let (code, out) = watcher.await.expect("the watcher task");
    assert_eq!(code, 0, "{out:?}");
    let out = String::from_utf8_lossy(&out);
    assert!(
        !out.contains(['\x1b', '\x07']),
        "a control character reached the terminal raw: {out:?}"
    );
    assert!(
        out.contains(r"evil.payload ok\u{1b}]0;pwned\u{7}"),
        "{out:?}"
    );
}

/// `stats --peers` printed each peer's announced patterns as they came: a pattern is
/// another process's text, and one holding an escape sequence (or a line break) reached
/// the terminal raw. Control characters show as spaces in the table now, as keys do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_peers_shows_control_characters_of_a_pattern_as_spaces() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "peers-evil").await;
    let _sub = bus
        .subscribe("x.*,\x1b[31mred\nfake-line")
        .await
        .expect("a pattern with one valid alternative");
    let (code, stdout, stderr) =
        run(dir.path(), &["stats", "--bus", "peers-evil", "--peers"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    assert!(
        stdout.contains("subscribe  x.*, [31mred fake-line\n"),
        "{stdout:?}"
    );
}

/// `hold --lease 1ns` sent a lease of 1 ms refreshed every 1 ms, so the lease ran out
/// between refreshes and `watch` showed the live hold `lapsed` and `held` again every 100 ms
/// (and the status line said `lease 1ns`). The lease is at least 3 ms, as
/// `BridgeOptions::hold_lease` has it, and the status line says the lease used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_raises_a_lease_too_short_to_refresh_to_the_bridges_minimum() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "short").await;
    let mut holds = bus.subscribe("circuit.*").await.expect("subscribe");
    let mut child = common::cli(dir.path())
        .args(["hold", "--bus", "short", "circuit.open", "--lease", "1ns"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = tokio::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    tokio::time::timeout(common::PATIENCE, out.read_line(&mut line))
        .await
        .expect("a status line")
        .expect("read");
    assert!(line.contains("; lease 3ms;"), "{line}");
    let first = tokio::time::timeout(common::PATIENCE, holds.next())
        .await
        .expect("a refresh")
        .expect("open")
        .expect("no lag");
    match ephemeral_bus::Bridged::of(&first) {
        Some(ephemeral_bus::Bridged::Hold { lease, .. }) => {
            assert_eq!(lease, Duration::from_millis(3));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_full_shows_whole_payloads_and_ids_shows_message_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "full").await;
    let (child, _stderr) = spawn_ready(
        dir.path(),
        &[
            "watch", "--bus", "full", "data.*", "--full", "--ids", "--count", "2",
        ],
        "watching",
    )
    .await;
    let long = "y".repeat(100);
    bus.publish("data.text", &long).await.expect("publish");
    bus.publish("data.bin", [0xde, 0xad, 0xbe, 0xef, 0x00])
        .await
        .expect("publish");
    let output = tokio::time::timeout(common::PATIENCE, child.wait_with_output())
        .await
        .expect("exits")
        .expect("wait");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains(&format!("data.text {long}")), "{stdout}");
    assert!(lines[1].contains("data.bin deadbeef00"), "{stdout}");
    let origin = format!("{:016x}", ephemeral_bus::process_origin());
    assert!(lines[0].contains(&format!("id={origin}/")), "{stdout}");
    let seq = |line: &str| -> u64 {
        line.rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a sequence")
    };
    assert_eq!(
        seq(lines[1]),
        seq(lines[0]) + 1,
        "per-publisher sequence: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_shows_human_windows_byte_rates_and_peers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "peers").await;
    let _orders = bus.subscribe("orders.*").await.expect("subscribe");
    let _copies = bus.observe("math.*").await.expect("observe");
    let _double = bus
        .serve("math.double", |m| async move { m.payload().to_vec() })
        .await
        .expect("serve");
    let (code, stdout, stderr) = run(dir.path(), &["stats", "--bus", "peers", "--peers"]).await;
    assert_eq!(code, 0, "{stderr}");
    let me = format!("{:016x}", bus.peer_id());
    for (role, name) in [
        ("subscribe", "orders.*"),
        ("serve", "math.double"),
        ("observe", "math.*"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&me) && l.contains(role) && l.ends_with(name)),
            "{role} {name}: {stdout}"
        );
    }
    let (code, stdout, _) = run(
        dir.path(),
        &["stats", "--bus", "peers", "--peers", "--json"],
    )
    .await;
    assert_eq!(code, 0);
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(value["peers"][0]["serves"][0], "math.double");

    let (code, stdout, _) = run(dir.path(), &["stats", "--bus", "peers", "--interval", "1s"]).await;
    assert_eq!(code, 0);
    let window = stdout
        .lines()
        .next()
        .and_then(|l| l.split("window: ").nth(1))
        .expect("a window")
        .trim()
        .to_owned();
    assert!(
        !window.contains(' ') && window.ends_with('s'),
        "one human unit, no `1s 1ms`: {window}"
    );
    assert!(stdout.contains("BYTES/s"), "{stdout}");
}

/// `stats --watch --json` is one JSON object per window on a terminal too: the in-place
/// refresh (clearing the screen) is for the table only, as `top --json` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_watch_json_on_a_terminal_is_json_lines_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _bus = bus(dir.path(), "statsjson").await;
    let out = common::run_in_pty_for_lines(
        dir.path(),
        &[
            "stats",
            "--bus",
            "statsjson",
            "--watch",
            "--json",
            "--interval",
            "100ms",
        ],
        2,
    )
    .await;
    let out = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = out.lines().take(2).collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    for line in lines {
        let doc: serde_json::Value = serde_json::from_str(line.trim_end_matches('\r'))
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert_eq!(doc["bus"], "statsjson");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_escapes_control_characters_of_a_reply_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = bus(dir.path(), "request").await;
    let _server = bus
        .serve(
            "evil.reply",
            |_| async move { b"ok\x1b]0;pwned\x07".to_vec() },
        )
        .await
        .expect("serve");
    let (code, out) = common::run_in_pty(
        dir.path(),
        &["request", "--bus", "request", "evil.reply", "x"],
    )
    .await;
    assert_eq!(code, 0, "{out:?}");
    let out = String::from_utf8_lossy(&out);
    assert!(
        !out.contains(['\x1b', '\x07']),
        "a control character reached the terminal raw: {out:?}"
    );
    assert!(out.contains(r"ok\u{1b}]0;pwned\u{7}"), "{out:?}");

    // Into a pipe the reply stays exactly as sent.
    let (code, stdout, stderr) = run(
        dir.path(),
        &["request", "--bus", "request", "evil.reply", "x"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "ok\x1b]0;pwned\x07\n");
}
