//! `--nats URL`: the bus subcommands against a real nats-server (each test starts its own).

mod common;

use std::time::Duration;

use common::{PATIENCE, eventually, run, spawn_ready, spawn_ready_stdout};
use ephemeral::{
    EphemeralOptions, EphemeralWorkCoordinator, Name, OperationContext, SignalBuilder, SignalSink,
};
use ephemeral_bus::inspect::PublishState;
use ephemeral_nats::testing::NatsServer;
use ephemeral_nats::{Nats, NatsOptions};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::AsyncReadExt;

async fn nats(server: &NatsServer) -> Nats {
    Nats::connect(&server.url()).await.expect("connect")
}

/// SIGINT by pid, then the exit code and stdout.
async fn interrupt(child: tokio::process::Child) -> (Option<i32>, String) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("exits on SIGINT")
        .expect("wait");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_raise_over_nats_reach_bridged_sinks() {
    let server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let nats = nats(&server).await;
    let sink = SignalSink::default();
    let _bridge = nats.bridge(&sink, "error.*").await.expect("bridge");

    let (watcher, _stderr) = spawn_ready(
        dir.path(),
        &["watch", "error.*", "--nats", &url, "--count", "2", "--json"],
        "watching",
    )
    .await;
    // A service's signal, bridged to NATS, shows in the watcher...
    sink.raise_with(
        SignalBuilder::new(Name::new("error.db").unwrap())
            .key("orders")
            .payload_str("disk full"),
    )
    .expect("raise");
    // ...and one raised from the command line reaches the service's sink.
    let (code, stdout, stderr) = run(
        dir.path(),
        &[
            "raise",
            "error.net",
            "--nats",
            &url,
            "--key",
            "edge",
            "--ttl",
            "30s",
            "--header",
            "region=eu",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "raised error.net on NATS {url} (prefix `ephemeral`)"
        )),
        "{stdout}"
    );
    eventually("the raise in the bridged sink", || {
        sink.has_signal("error.net")
    })
    .await;
    let got = sink.latest("error.net").unwrap();
    assert_eq!(got.key(), Some("edge"));
    assert_eq!(got.header("region"), Some(&"eu".into()));
    assert!(got.remaining(tokio::time::Instant::now(), sink.max_age()) <= Duration::from_secs(30));

    let output = tokio::time::timeout(PATIENCE, watcher.wait_with_output())
        .await
        .expect("watch --count 2 exits")
        .expect("wait");
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["topic"], "error.db");
    assert_eq!(lines[0]["key"], "orders");
    assert_eq!(lines[1]["topic"], "error.net");
    assert_eq!(lines[1]["key"], "edge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_over_nats_says_when_it_loses_and_regains_the_server() {
    let mut server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let (watcher, stderr) =
        spawn_ready(dir.path(), &["watch", "*", "--nats", &url], "watching").await;
    server.kill();
    let stderr = common::wait_for_line(stderr, &["watch"], "lost the connection to NATS").await;
    server.start_again().await;
    let _stderr = common::wait_for_line(stderr, &["watch"], "reconnected to NATS").await;
    let (code, _) = interrupt(watcher).await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_over_nats_is_mirrored_until_interrupted() {
    let server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let nats = nats(&server).await;
    let sink = SignalSink::default();
    let _bridge = nats.bridge(&sink, "circuit.*").await.expect("bridge");

    let (child, mut out) = spawn_ready_stdout(
        dir.path(),
        &["hold", "circuit.open", "--key", "payments", "--nats", &url],
        "holding",
    )
    .await;
    eventually("the mirror", || sink.has_signal("circuit.open")).await;
    let held = sink.latest("circuit.open").unwrap();
    assert!(held.is_held());
    assert_eq!(held.key(), Some("payments"));
    // Past the NATS lease (3 s by default; the command uses the same) it is still live.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert!(sink.has_signal("circuit.open"), "refreshed");
    let (code, _) = interrupt(child).await;
    assert_eq!(code, Some(0));
    let mut rest = String::new();
    out.read_to_string(&mut rest).await.expect("stdout");
    assert!(rest.contains("released circuit.open"), "{rest}");
    // Released at once, not after a lease.
    let released = tokio::time::Instant::now();
    eventually("the release", || !sink.has_signal("circuit.open")).await;
    assert!(released.elapsed() < Duration::from_secs(2));
}

/// Stderr lines until one contains `last` (at most `PATIENCE`), all of them.
async fn lines_until<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    last: &str,
) -> Vec<String> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).await.expect("read");
            assert!(n > 0, "ended before `{last}`: {lines:?}");
            let done = line.contains(last);
            lines.push(line);
            if done {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        let first: Vec<_> = lines.iter().take(3).collect();
        panic!(
            "no `{last}` line in {} lines, first: {first:?}",
            lines.len()
        )
    });
    lines
}

/// A hold across a server restart says once that its refreshes cannot go out and once that
/// they do again: no warning per refresh, no library API in what it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_over_nats_says_once_when_it_loses_and_regains_the_server() {
    let mut server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, _out) = spawn_ready_stdout(
        dir.path(),
        // Refreshes every 100 ms: many refresh ticks fall in the outage.
        &["hold", "circuit.open", "--nats", &url, "--lease", "300ms"],
        "holding",
    )
    .await;
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("piped"));
    server.kill();
    let mut lines = lines_until(&mut stderr, "lost the connection to NATS").await;
    server.start_again().await;
    lines.extend(lines_until(&mut stderr, "reconnected to NATS").await);
    assert_eq!(lines.len(), 2, "one line each: {lines:?}");
    assert!(lines.iter().all(|l| !l.contains("Nats::")), "{lines:?}");
    let (code, _) = interrupt(child).await;
    assert_eq!(code, Some(0));
}

/// `kv watch` and `room join` over NATS say when the server is lost and when it is back,
/// as `watch` does, rather than look like a quiet store or room meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_watch_and_room_join_say_when_they_lose_and_regain_the_server() {
    let mut server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let (kv, kv_err) = spawn_ready(dir.path(), &["kv", "--nats", &url, "watch"], "watching").await;
    let (room, room_err) = spawn_ready(
        dir.path(),
        &["room", "--nats", &url, "join", "lobby"],
        "joined",
    )
    .await;
    server.kill();
    let kv_err = common::wait_for_line(kv_err, &["kv watch"], "lost the connection to NATS").await;
    let room_err =
        common::wait_for_line(room_err, &["room join"], "lost the connection to NATS").await;
    server.start_again().await;
    let _kv_err = common::wait_for_line(kv_err, &["kv watch"], "reconnected to NATS").await;
    let _room_err = common::wait_for_line(room_err, &["room join"], "reconnected to NATS").await;
    for child in [kv, room] {
        let (code, _) = interrupt(child).await;
        assert_eq!(code, Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_request_and_stats_over_nats() {
    let server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let nats = nats(&server).await;

    // publish: payload and headers arrive.
    let mut orders = nats.subscribe("orders.*").await.expect("subscribe");
    let (code, stdout, stderr) = run(
        dir.path(),
        &[
            "publish",
            "orders.created",
            "{\"id\":1}",
            "--header",
            "tenant=acme",
            "--nats",
            &url,
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("sent to the server"), "{stdout}");
    let m = tokio::time::timeout(PATIENCE, orders.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.payload(), b"{\"id\":1}");
    assert_eq!(m.header("tenant"), Some(&"acme".into()));

    // request: a reply, no server (exit 6), a failing handler (exit 6), --stream refused.
    let _double = nats
        .serve("math.double", |m| async move {
            let n: u64 = m
                .payload_str()
                .unwrap_or("")
                .parse()
                .map_err(|_| "not a number")?;
            Ok::<_, &str>((n * 2).to_string())
        })
        .await
        .expect("serve");
    let (code, stdout, stderr) = run(
        dir.path(),
        &["request", "math.double", "21", "--nats", &url],
    )
    .await;
    assert_eq!((code, stdout.as_str()), (0, "42\n"), "{stderr}");
    let (code, _, stderr) = run(dir.path(), &["request", "math.double", "x", "--nats", &url]).await;
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("not a number"), "{stderr}");
    let (code, _, stderr) = run(dir.path(), &["request", "math.none", "1", "--nats", &url]).await;
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("no server for `math.none`"), "{stderr}");
    let (code, _, stderr) = run(
        dir.path(),
        &["request", "math.double", "1", "--stream", "--nats", &url],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not available over NATS"), "{stderr}");

    // stats: the monitor counts what is published while it runs.
    let publisher = nats.clone();
    let ticker = tokio::spawn(async move {
        loop {
            let _ = publisher.publish("load.tick", "0123456789").await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let (code, stdout, stderr) = run(
        dir.path(),
        &["stats", "--nats", &url, "--interval", "1s", "--json"],
    )
    .await;
    ticker.abort();
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(doc["nats"], url.as_str());
    assert_eq!(doc["prefix"], "ephemeral");
    let tick = doc["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "load.tick")
        .unwrap_or_else(|| panic!("load.tick counted: {doc}"));
    assert!(tick["messages"].as_u64().unwrap() > 10, "{doc}");
    assert_eq!(tick["bytes"].as_u64().unwrap() % 10, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_ops_and_signals_over_nats_and_watch_star_sees_none_of_it() {
    let server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let service = nats(&server).await;
    let payments = EphemeralWorkCoordinator::new(
        |n: u32, _: OperationContext| async move {
            if n == 3 {
                Err("card declined")
            } else {
                Ok::<_, &str>(())
            }
        },
        EphemeralOptions::default(),
    )
    .unwrap();
    for i in 0..5 {
        payments.enqueue(i).await.unwrap();
    }
    payments.drain().await.unwrap();
    let _top = payments.publish_state(&service, "payments").await.unwrap();
    let sink = SignalSink::default();
    let _held = sink.hold("circuit.open").unwrap();
    let _signals = sink.publish_state(&service, "signals").await.unwrap();

    // Everything on the user topics, while top polls and the services answer.
    let (star, _stderr) = spawn_ready(
        dir.path(),
        &["watch", "*", "--nats", &url, "--json"],
        "watching",
    )
    .await;

    let (code, stdout, stderr) = run(
        dir.path(),
        &["top", "--nats", &url, "--once", "--json", "--wait", "1s"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(doc["nats"], url.as_str());
    let frames = doc["frames"].as_array().unwrap();
    let names: Vec<&str> = frames
        .iter()
        .map(|f| f["publisher"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["payments", "signals"], "{doc}");
    assert_eq!(frames[0]["state"]["counts"]["failed"], 1);

    let (code, stdout, stderr) = run(
        dir.path(),
        &[
            "ops", "payments", "--state", "failed", "--nats", &url, "--wait", "1s",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("card declined"), "{stdout}");
    let (code, _, stderr) = run(
        dir.path(),
        &["ops", "nobody", "--nats", &url, "--wait", "500ms"],
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("on NATS {url}")), "{stderr}");
    let (code, stdout, stderr) = run(
        dir.path(),
        &[
            "signals",
            "circuit.*",
            "--held",
            "--nats",
            &url,
            "--wait",
            "1s",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("circuit.open"), "{stdout}");

    // The watcher saw none of that exchange: its first line is the marker published now.
    service.publish("marker", "end").await.unwrap();
    let (_, out) = interrupt_after_line(star).await;
    let first: Value = serde_json::from_str(out.lines().next().unwrap_or("{}")).expect("json");
    assert_eq!(first["topic"], "marker", "{out}");
}

/// Waits for the child's first stdout line, then interrupts it.
async fn interrupt_after_line(mut child: tokio::process::Child) -> (Option<i32>, String) {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("a line within the patience")
        .expect("read")
        .unwrap_or_default();
    let (code, _) = interrupt(child).await;
    (code, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_choices_and_errors_are_clear() {
    let server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");

    // --bus and --nats together: a usage error naming both.
    let (code, _, stderr) = run(dir.path(), &["raise", "x", "--bus", "b", "--nats", &url]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--bus") && stderr.contains("--nats"),
        "{stderr}"
    );
    let (code, _, stderr) = run(dir.path(), &["raise", "x", "--create", "--nats", &url]).await;
    assert_eq!(code, 2, "{stderr}");

    // Both variables set and no flag: ambiguous, said so.
    let output = common::cli(dir.path())
        .env("EPHEMERAL_BUS", "b")
        .env("EPHEMERAL_NATS", &url)
        .args(["raise", "x"])
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("both EPHEMERAL_BUS and EPHEMERAL_NATS"),
        "{stderr}"
    );
    // EPHEMERAL_NATS alone chooses NATS; a --bus flag beats it.
    let output = common::cli(dir.path())
        .env("EPHEMERAL_NATS", &url)
        .args(["raise", "x"])
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("on NATS"));
    let output = common::cli(dir.path())
        .env("EPHEMERAL_NATS", &url)
        .args(["raise", "x", "--bus", "b", "--create"])
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("on bus `b`"));

    // NATS options without NATS.
    let (code, _, stderr) = run(
        dir.path(),
        &["raise", "x", "--nats-prefix", "app", "--create"],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = run(dir.path(), &["raise", "x", "--nats-prefix", "app"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("only apply to NATS"), "{stderr}");

    // Nothing listens: exit 3, saying what to do; a malformed URL or prefix: exit 2.
    let (code, _, stderr) = run(dir.path(), &["raise", "x", "--nats", "nats://127.0.0.1:1"]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("start a nats-server"), "{stderr}");
    let (code, _, stderr) = run(dir.path(), &["raise", "x", "--nats", "nats://:x"]).await;
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = run(
        dir.path(),
        &["raise", "x", "--nats", &url, "--nats-prefix", "a..b"],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid subject prefix"), "{stderr}");
    assert!(
        !stderr.contains("EPHEMERAL_NATS"),
        "a flag's fault: {stderr}"
    );

    // The same faults in the variables name the variable to fix.
    for (vars, code_wanted, says) in [
        (
            vec![("EPHEMERAL_NATS", "nats://:x")],
            2,
            "the URL comes from EPHEMERAL_NATS",
        ),
        (vec![("EPHEMERAL_NATS", "  ")], 2, "EPHEMERAL_NATS is blank"),
        (
            vec![("EPHEMERAL_NATS", "nats://127.0.0.1:1")],
            3,
            "the URL comes from EPHEMERAL_NATS",
        ),
        (
            vec![
                ("EPHEMERAL_NATS", url.as_str()),
                ("EPHEMERAL_NATS_PREFIX", "a..b"),
            ],
            2,
            "the prefix comes from EPHEMERAL_NATS_PREFIX",
        ),
    ] {
        let output = common::cli(dir.path())
            .envs(vars.clone())
            .args(["raise", "x"])
            .output()
            .await
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(code_wanted),
            "{vars:?}: {stderr}"
        );
        assert!(stderr.contains(says), "{vars:?}: {stderr}");
    }

    // A request nobody serves: what to do with the command, not with the library's API.
    let (code, _, stderr) = run(
        dir.path(),
        &["request", "nobody.home", "hi", "--nats", &url],
    )
    .await;
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("no server for `nobody.home`")
            && stderr.contains("--nats-prefix")
            && !stderr.contains("Nats::"),
        "{stderr}"
    );

    // What only a bus has.
    for args in [vec!["watch", "*", "--requests"], vec!["stats", "--peers"]] {
        let mut args = args.clone();
        args.extend(["--nats", &url]);
        let (code, _, stderr) = run(dir.path(), &args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("not available over NATS"), "{stderr}");
    }
}

/// Connect errors say what to do in the command's terms (flags, URLs), never with the
/// library's `NatsOptions` setters, which a shell user cannot call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_name_the_flags_that_fix_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A peer that accepts connections and never says a word: no server's INFO comes.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!("nats://{}", silent.local_addr().expect("addr"));
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let (code, _, stderr) = run(
        dir.path(),
        &[
            "raise",
            "x",
            "--nats",
            &silent_url,
            "--nats-connect-timeout",
            "300ms",
        ],
    )
    .await;
    accepting.abort();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("did not answer within 300ms") && stderr.contains("--nats-connect-timeout"),
        "{stderr}"
    );
    assert!(!stderr.contains("NatsOptions"), "{stderr}");
    let (code, _, stderr) = run(dir.path(), &["raise", "x", "--nats-connect-timeout", "1s"]).await;
    assert_eq!(code, 2, "only with NATS: {stderr}");

    // A server that wants a password: the message says where credentials go.
    let server = NatsServer::start_with(&["--user", "u", "--pass", "right"]).await;
    let (code, _, stderr) = run(dir.path(), &["raise", "x", "--nats", &server.url()]).await;
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("nats://user:pass@host") && stderr.contains("--nats-creds"),
        "{stderr}"
    );
    let (code, _, stderr) = run(
        dir.path(),
        &[
            "raise",
            "x",
            "--nats",
            &server.url(),
            "--nats-creds",
            "/no/such.creds",
        ],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--nats-creds") && !stderr.contains("NatsOptions"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_separates_applications() {
    let server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let shop = Nats::connect_with(&url, NatsOptions::default().prefix("shop"))
        .await
        .unwrap();
    let sink = SignalSink::default();
    let _bridge = shop.bridge(&sink, "*").await.unwrap();
    let (code, _, stderr) = run(dir.path(), &["raise", "elsewhere", "--nats", &url]).await;
    assert_eq!(code, 0, "{stderr}");
    let output = common::cli(dir.path())
        .env("EPHEMERAL_NATS", &url)
        .env("EPHEMERAL_NATS_PREFIX", "shop")
        .args(["raise", "here"])
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    eventually("the shop's raise", || sink.has_signal("here")).await;
    assert!(
        !sink.has_signal("elsewhere"),
        "another prefix, another application"
    );

    // Where nothing publishes, the views name the prefix they looked under (a wrong prefix
    // is the likely cause), and the JSON snapshot carries it, as `stats --json` does.
    let (code, _, stderr) = run(
        dir.path(),
        &[
            "ops",
            "payments",
            "--nats",
            &url,
            "--nats-prefix",
            "shop",
            "--wait",
            "300ms",
        ],
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("(prefix `shop`)"), "{stderr}");
    let (code, stdout, stderr) = run(
        dir.path(),
        &[
            "top",
            "--once",
            "--json",
            "--nats",
            &url,
            "--nats-prefix",
            "shop",
            "--wait",
            "300ms",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        (doc["nats"].as_str(), doc["prefix"].as_str()),
        (Some(url.as_str()), Some("shop"))
    );
}

/// `kv` and `room` with `--nats`: the same store and room as `Nats::store` / `Nats::room`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_and_room_work_over_nats() {
    use ephemeral_bus::retained::{Retained, RoomOptions, StoreOptions};

    let server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let nats = nats(&server).await;
    let store = nats
        .store("app", StoreOptions::default())
        .await
        .expect("store");
    store.set("from.lib", b"library", None).await.expect("set");
    let kv = |args: &[&str]| {
        let mut all = vec!["kv", "--nats", url.as_str(), "--store", "app"];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let call = |args: Vec<String>| {
        let dir = dir.path().to_owned();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&dir, &refs).await
        }
    };

    let (code, out, err) = call(kv(&["get", "from.lib"])).await;
    assert_eq!((code, out.as_str()), (0, "library\n"), "{err}");
    // The connection options also go after the subcommand, as on every other command.
    let after: Vec<String> = [
        "kv",
        "get",
        "from.lib",
        "--nats",
        url.as_str(),
        "--store",
        "app",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let (code, out, err) = call(after).await;
    assert_eq!((code, out.as_str()), (0, "library\n"), "{err}");
    let (code, _, err) = call(kv(&["set", "from.cli", "shell", "--ttl", "1h"])).await;
    assert_eq!(code, 0, "{err}");
    let entry = store
        .entry("from.cli")
        .await
        .expect("entry")
        .expect("set by the CLI");
    assert_eq!(entry.value(), b"shell");
    assert!(entry.expires_at().is_some(), "--ttl travels");
    // A key NATS cannot hold as it is (`:` and `é`): escaped, and back.
    let (code, _, err) = call(kv(&["set", "conf.é:x", "v"])).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        store.get("conf.é:x").await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    let (code, out, err) = call(kv(&["ls", "from.*", "--json"])).await;
    assert_eq!(code, 0, "{err}");
    let keys: Vec<String> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            v["key"].as_str().unwrap_or("?").to_owned()
        })
        .collect();
    assert_eq!(keys, ["from.cli", "from.lib"], "{out}");
    let (code, _, err) = call(kv(&["del", "from.cli"])).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(store.get("from.cli").await.expect("get"), None);
    let (code, _, _) = call(kv(&["del", "from.cli"])).await;
    assert_eq!(code, 1, "nothing to delete: exit 1");
    let (code, _, _) = call(kv(&["get", "nothing"])).await;
    assert_eq!(code, 1, "no value: exit 1");
    // A TTL below the server's one-second floor is accepted and honoured by reads.
    let (code, _, err) = call(kv(&["set", "brief", "x", "--ttl", "200ms"])).await;
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, _, _) = call(kv(&["get", "brief"])).await;
    assert_eq!(code, 1, "expired after 200 ms, not after the server's 1 s");

    // watch: changes made by the library show in the CLI.
    let (mut watcher, _stderr) = spawn_ready(
        dir.path(),
        &[
            "kv", "--nats", &url, "--store", "app", "watch", "job.*", "--count", "2", "--json",
        ],
        "watching",
    )
    .await;
    store.set("job.1", b"queued", None).await.expect("set");
    store.set("other", b"not shown", None).await.expect("set");
    store.delete("job.1").await.expect("delete");
    let mut out = String::new();
    let mut stdout = watcher.stdout.take().expect("stdout");
    tokio::time::timeout(PATIENCE, stdout.read_to_string(&mut out))
        .await
        .expect("watch --count 2 exits")
        .expect("read");
    let kinds: Vec<String> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            format!(
                "{} {}",
                v["kind"].as_str().unwrap_or("?"),
                v["key"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(kinds, ["set job.1", "deleted job.1"], "{out}");
    assert_eq!(watcher.wait().await.expect("wait").code(), Some(0));

    // room: send from the CLI, join from the CLI (history, then live).
    let room = nats
        .room("lobby", RoomOptions::default())
        .await
        .expect("room");
    room.send(b"before").await.expect("send");
    let (code, _, err) = run(
        dir.path(),
        &["room", "--nats", &url, "send", "lobby", "from the shell"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (mut joiner, _stderr) = spawn_ready(
        dir.path(),
        &[
            "room", "--nats", &url, "join", "lobby", "--count", "3", "--json",
        ],
        "joined",
    )
    .await;
    room.send(b"after").await.expect("send");
    let mut out = String::new();
    let mut stdout = joiner.stdout.take().expect("stdout");
    tokio::time::timeout(PATIENCE, stdout.read_to_string(&mut out))
        .await
        .expect("join --count 3 exits")
        .expect("read");
    let payloads: Vec<(u64, String)> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            (
                v["sequence"].as_u64().unwrap_or(0),
                v["payload"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        payloads,
        [
            (1, "before".to_owned()),
            (2, "from the shell".to_owned()),
            (3, "after".to_owned())
        ],
        "{out}"
    );
    assert_eq!(joiner.wait().await.expect("wait").code(), Some(0));

    // An unreachable server: the connection error's exit code, not a silent bus.
    let (code, _, err) = run(
        dir.path(),
        &["kv", "--nats", "nats://127.0.0.1:1", "get", "k"],
    )
    .await;
    assert_eq!(code, 3, "{err}");
}

/// A server with a private certificate authority that verifies its clients: reached with
/// --nats-tls-ca, --nats-tls-cert and --nats-tls-key (or their variables); without the
/// authority the error says which flag gives it; a certificate without its key is a usage
/// error; the TLS flags without NATS are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_and_a_client_certificate_are_given_by_flags_or_variables() {
    use ephemeral_nats::testing::TestPki;

    let dir = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::write(dir.path());
    let args = pki.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = NatsServer::start_with(&args).await;
    let url = format!("tls://127.0.0.1:{}", server.port());
    let path = |p: &std::path::PathBuf| p.to_str().expect("UTF-8 path").to_owned();
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client_cert), path(&pki.client_key));
    let flags = [
        "--nats-tls-ca",
        &ca,
        "--nats-tls-cert",
        &cert,
        "--nats-tls-key",
        &key,
    ];

    let mut raise = vec!["raise", "--nats", &url, "deploy.done"];
    raise.extend(flags);
    let (code, _, stderr) = run(dir.path(), &raise).await;
    assert_eq!(code, 0, "with the three flags: {stderr}");

    let output = common::cli(dir.path())
        .args(["raise", "--nats", &url, "deploy.done"])
        .env("EPHEMERAL_NATS_TLS_CA", &ca)
        .env("EPHEMERAL_NATS_TLS_CERT", &cert)
        .env("EPHEMERAL_NATS_TLS_KEY", &key)
        .output()
        .await
        .expect("run");
    assert!(
        output.status.success(),
        "with the variables: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let (code, _, stderr) = run(
        dir.path(),
        &[
            "raise",
            "--nats",
            &url,
            "deploy.done",
            "--nats-tls-cert",
            &cert,
            "--nats-tls-key",
            &key,
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("TLS") && stderr.contains("--nats-tls-ca"),
        "without the authority: {stderr}"
    );

    let (code, _, stderr) = run(
        dir.path(),
        &[
            "raise",
            "--nats",
            &url,
            "deploy.done",
            "--nats-tls-ca",
            &ca,
            "--nats-tls-cert",
            &cert,
        ],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--nats-tls-key"), "{stderr}");

    let (code, _, stderr) = run(
        dir.path(),
        &["raise", "--bus", "b", "x", "--nats-tls-ca", &ca],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");

    // A file that is not there is named, and the flags that give it.
    let missing = dir.path().join("no-such-ca.pem");
    let missing = missing.to_str().unwrap();
    let (code, _, stderr) = run(
        dir.path(),
        &[
            "raise",
            "--nats",
            &url,
            "deploy.done",
            "--nats-tls-ca",
            missing,
        ],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no-such-ca.pem") && stderr.contains("--nats-tls-ca"),
        "{stderr}"
    );
}
