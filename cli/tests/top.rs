//! `ephemeral top`, `ops` and `signals` against a live publisher: this test process runs a
//! coordinator and a sink publishing on a test bus, and the built binary watches them, as
//! JSON, as plain lines, and full screen in a real pseudo-terminal.

mod common;

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PATIENCE, run};
use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralOptions, OperationContext, SignalSink};
use ephemeral_bus::Bus;
use ephemeral_bus::inspect::{PublishOptions, PublishState, StatePublisher};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use serde_json::Value;
use tokio::sync::Semaphore;

/// A service with a keyed coordinator in a known state, publishing as `payments`, and its
/// sink publishing as `signals`: 5 completed, 2 failed, 3 running (until the gate opens),
/// 2 pending (deferred by the `circuit.open` hold); the sink has raised `error.payment`.
struct Service {
    _bus: Bus,
    coordinator: EphemeralKeyedWorkCoordinator<String, u32>,
    gate: Arc<Semaphore>,
    _publishers: Vec<StatePublisher>,
    _hold: ephemeral::Hold,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.gate.add_permits(100);
    }
}

async fn service(dir: &Path) -> Service {
    let bus = common::bus(dir, "svc").await;
    let sink = SignalSink::default();
    let gate = Arc::new(Semaphore::new(0));
    let coordinator = {
        let gate = Arc::clone(&gate);
        EphemeralKeyedWorkCoordinator::new(
            move |n: u32, _ctx: OperationContext| {
                let gate = Arc::clone(&gate);
                async move {
                    match n {
                        0..5 => Ok(()),
                        5..7 => Err(format!("card declined for {n}")),
                        // One permit lets exactly one item end.
                        _ => gate
                            .acquire()
                            .await
                            .map(tokio::sync::SemaphorePermit::forget)
                            .map_err(|e| e.to_string()),
                    }
                }
            },
            EphemeralOptions::default()
                .max_concurrency(3)
                .signals(sink.clone())
                .defer_on("circuit.*"),
        )
        .expect("a coordinator")
    };
    for n in 0..7 {
        coordinator.enqueue(format!("cust-{n}"), n).await.unwrap();
    }
    common::eventually("the first seven end", || {
        let s = coordinator.stats();
        s.completed + s.failed == 7
    })
    .await;
    // Three start and wait on the gate; two wait for a slot.
    for n in 7..12 {
        coordinator.enqueue(format!("cust-{n}"), n).await.unwrap();
    }
    common::eventually("three running", || coordinator.stats().running == 3).await;
    // Holding `circuit.open` now defers the two pending ones even once slots free up.
    let hold = sink.hold("circuit.open").unwrap();
    sink.raise_with(
        ephemeral::Signal::build("error.payment")
            .unwrap()
            .key("order-7")
            .payload_str("card declined"),
    )
    .unwrap();
    let publishers = vec![
        coordinator
            .publish_state_with(
                &bus,
                "payments",
                PublishOptions::default().deferred_by("circuit.*"),
            )
            .await
            .unwrap(),
        sink.publish_state(&bus, "signals").await.unwrap(),
    ];
    Service {
        _bus: bus,
        coordinator,
        gate,
        _publishers: publishers,
        _hold: hold,
    }
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}` is not JSON: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_once_json_returns_what_the_publisher_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let service = service(tmp.path()).await;
    let unix_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let before = unix_ms();
    let (code, out, err) = run(tmp.path(), &["top", "--bus", "svc", "--once", "--json"]).await;
    let after = unix_ms();
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["version"], 1);
    // When the snapshot was taken, in UNIX milliseconds.
    let at = doc["at_ms"].as_u64().expect("at_ms");
    assert!(
        (before..=after).contains(&at),
        "{before} <= {at} <= {after}"
    );
    assert_eq!(doc["bus"], "svc");
    let frames = doc["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 2, "{doc:#}");

    let payments = frames
        .iter()
        .find(|f| f["publisher"]["name"] == "payments")
        .expect("the coordinator's frame");
    assert_eq!(payments["publisher"]["process"]["pid"], std::process::id());
    let state = &payments["state"];
    let stats = service.coordinator.stats();
    assert_eq!(state["kind"], "coordinator");
    assert_eq!(state["type"], "keyed");
    assert_eq!(state["id"], service.coordinator.id());
    for (field, value) in [
        ("accepted", stats.accepted),
        ("completed", stats.completed),
        ("failed", stats.failed),
        ("running", stats.running),
        ("pending", stats.pending),
    ] {
        assert_eq!(state["counts"][field], value, "{field}");
    }
    assert_eq!(
        (
            stats.accepted,
            stats.completed,
            stats.failed,
            stats.running,
            stats.pending
        ),
        (12, 5, 2, 3, 2)
    );
    assert_eq!(state["max_concurrency"], 3);
    assert_eq!(state["deferred_by"], serde_json::json!(["circuit.open"]));
    let failures: Vec<&str> = state["recent_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["error"].as_str().unwrap())
        .collect();
    assert_eq!(failures.len(), 2);
    assert!(failures.contains(&"card declined for 5"), "{failures:?}");
    let pending: Vec<&str> = state["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["state"] == "pending")
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["cust-10", "cust-11"]);

    let signals = frames
        .iter()
        .find(|f| f["publisher"]["name"] == "signals")
        .expect("the sink's frame");
    let list = signals["state"]["signals"].as_array().unwrap();
    assert_eq!(list[0]["name"], "circuit.open");
    assert_eq!(list[0]["held"], true);
    assert_eq!(list[1]["name"], "error.payment");
    assert_eq!(list[1]["key"], "order-7");
    assert_eq!(list[1]["payload"], "card declined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_filters_by_state_and_key_and_signals_lists_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let _service = service(tmp.path()).await;

    let (code, out, err) = run(
        tmp.path(),
        &["ops", "--bus", "svc", "payments", "--state", "failed"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("PROCESS"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("card declined for 5") && out.contains("card declined for 6"));

    let (code, out, err) = run(
        tmp.path(),
        &[
            "ops",
            "--bus",
            "svc",
            "pay*",
            "--state",
            "pending,completed",
            "--key",
            "cust-1*",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let keys: Vec<String> = json_lines(&out)
        .iter()
        .map(|l| {
            assert_eq!(l["coordinator"], "payments");
            format!(
                "{}:{}",
                l["operation"]["state"].as_str().unwrap(),
                l["operation"]["key"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        keys,
        ["pending:cust-10", "pending:cust-11", "completed:cust-1"]
    );

    let (code, _, err) = run(tmp.path(), &["ops", "--bus", "svc", "nosuch"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("no coordinator named `nosuch`") && err.contains("payments"),
        "{err}"
    );
    let (code, _, err) = run(
        tmp.path(),
        &["ops", "--bus", "svc", "payments", "--state", "odd"],
    )
    .await;
    assert_eq!(code, 2, "{err}");

    let (code, out, err) = run(tmp.path(), &["signals", "--bus", "svc", "--held"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1].contains("circuit.open") && lines[1].contains("held"),
        "{out}"
    );

    let (code, out, err) = run(
        tmp.path(),
        &["signals", "--bus", "svc", "error.*", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["sink"], "signals");
    assert_eq!(lines[0]["signal"]["payload"], "card declined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_prints_plain_lines_when_stdout_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let _service = service(tmp.path()).await;
    let (code, out, err) = run(tmp.path(), &["top", "--bus", "svc", "--count", "3"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains('\x1b'),
        "no terminal control sequences: {out:?}"
    );
    let blocks: Vec<&str> = out.split("-- ").filter(|b| !b.is_empty()).collect();
    assert_eq!(blocks.len(), 3, "{out}");
    // The first block waits for every publisher's first answer.
    let first = blocks[0];
    assert!(first.contains("bus svc: 1 coordinator, 1 sink"), "{first}");
    let row = first
        .lines()
        .find(|l| l.contains("payments"))
        .unwrap_or_else(|| panic!("no payments row in {first}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // PROCESS NAME TYPE RUN PEND DONE/S FAIL/S P50 P99 LIMIT DEFERRED-BY
    assert_eq!(cells[1..5], ["payments", "keyed", "3", "2"], "{row}");
    assert_eq!(cells[9..], ["3", "circuit.open"], "{row}");
    assert!(
        first.contains("circuit.open") && first.contains("held"),
        "{first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_plain_stopped_by_sigterm_exits_0_like_the_other_watchers() {
    let tmp = tempfile::tempdir().unwrap();
    let _service = service(tmp.path()).await;
    let (child, _stdout) =
        common::spawn_ready_stdout(tmp.path(), &["top", "--bus", "svc"], "payments").await;
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("exits on SIGTERM")
        .expect("wait");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}

/// The binary in a pseudo-terminal, its screen kept by a terminal emulator.
struct Pty {
    screen: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    master: Box<dyn portable_pty::MasterPty + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

fn size(rows: u16, cols: u16) -> PtySize {
    PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

impl Pty {
    fn spawn(dir: &Path, args: &[&str], rows: u16, cols: u16) -> Self {
        let pair = native_pty_system()
            .openpty(size(rows, cols))
            .expect("a pty");
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_ephemeral"));
        command.args(args);
        command.env("EPHEMERAL_BUS_DIR", dir);
        command.env_remove("EPHEMERAL_BUS");
        command.env("TERM", "xterm-256color");
        let child = pair.slave.spawn_command(command).expect("spawn in the pty");
        drop(pair.slave);
        let nz = |n: u16| NonZeroU16::new(n).expect("a size");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(nz(rows), nz(cols), 0)));
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let feed = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                feed.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pair.master.take_writer().expect("pty writer");
        Self {
            screen,
            writer,
            master: pair.master,
            child,
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows a line satisfying `check`; returns that line.
    async fn line(&mut self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let check = |l: &str| check(l.trim_end());
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let contents = self.contents();
            if let Some(line) = contents.lines().find(|l| check(l)) {
                return line.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("top exited ({status:?}) before showing {what}:\n{contents}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the screen never showed {what}:\n{contents}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).expect("type");
        self.writer.flush().expect("flush");
    }

    fn resize(&mut self, rows: u16, cols: u16) {
        let nz = |n: u16| NonZeroU16::new(n).expect("a size");
        self.screen.lock().unwrap().set_size(nz(rows), nz(cols));
        self.master.resize(size(rows, cols)).expect("resize");
    }

    async fn exit_code(&mut self) -> u32 {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.exit_code();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "top did not exit:\n{}",
                self.contents()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn cells(line: &str) -> Vec<&str> {
    line.split(['│', ' ']).filter(|c| !c.is_empty()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_in_a_terminal_shows_the_publisher_reacts_to_keys_and_quits_on_q() {
    let tmp = tempfile::tempdir().unwrap();
    let service = service(tmp.path()).await;
    let mut top = Pty::spawn(tmp.path(), &["top", "--bus", "svc"], 30, 140);

    let row = top
        .line("the payments row", |l| {
            l.contains("payments") && l.contains("keyed")
        })
        .await;
    let c = cells(&row);
    let at = c.iter().position(|c| *c == "payments").unwrap();
    // NAME TYPE RUN PEND DONE/S FAIL/S P50 P99 LIMIT DEFERRED-BY
    assert_eq!(c[at..at + 4], ["payments", "keyed", "3", "2"], "{row}");
    assert_eq!(c[at + 8..], ["3", "circuit.open"], "{row}");
    top.line("the title with both publishers", |l| {
        l.contains("ephemeral top · bus svc · 1 coordinator · 1 sink")
    })
    .await;
    top.line("the hold", |l| {
        l.contains("circuit.open") && l.contains("held")
    })
    .await;
    top.line("a failure with its error", |l| {
        l.contains("failed") && l.contains("card declined for")
    })
    .await;
    top.line("the pending operations", |l| {
        l.contains("pending") && l.contains("cust-11")
    })
    .await;

    // The view follows the service: one running item ends; the pending ones stay deferred.
    service.gate.add_permits(1);
    top.line("the new counts", |l| {
        let c = cells(l);
        c.windows(4).any(|w| w == ["payments", "keyed", "2", "2"])
    })
    .await;

    // Keys: sort, filter, pause.
    top.press("s");
    top.line("the new sort", |l| l.contains("sort: process"))
        .await;
    top.press("/zzz\r");
    top.line("the filter in the title", |l| l.contains("filter: zzz"))
        .await;
    top.line("no row left", |l| l.contains("0 coordinators"))
        .await;
    top.line("why the table is empty", |l| {
        l.contains("no coordinator matches the filter")
    })
    .await;
    // `/` starts from the current filter: erase it to clear.
    top.press("/\x7f\x7f\x7f\r");
    top.line("the row back", |l| {
        l.contains("payments") && l.contains("keyed")
    })
    .await;
    top.press("p");
    top.line("paused", |l| l.contains("PAUSED")).await;
    top.press("p");

    // Resized, the view redraws to fit: the table's border spans the new width exactly
    // (what was drawn for the old width is cut off without its corner).
    for (rows, cols) in [(20, 100), (6, 24), (24, 120)] {
        top.resize(rows, cols);
        top.line(&format!("the table redrawn at {cols}x{rows}"), |l| {
            l.starts_with("┌ coordinators")
                && l.ends_with('┐')
                && l.chars().count() == usize::from(cols)
        })
        .await;
    }
    top.line("the row again", |l| {
        l.contains("payments") && l.contains("keyed")
    })
    .await;

    top.press("q");
    assert_eq!(top.exit_code().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_in_a_terminal_stopped_by_sigterm_gives_the_terminal_back() {
    let tmp = tempfile::tempdir().unwrap();
    let _service = service(tmp.path()).await;
    let mut top = Pty::spawn(tmp.path(), &["top", "--bus", "svc"], 30, 140);
    top.line("the payments row", |l| {
        l.contains("payments") && l.contains("keyed")
    })
    .await;
    assert!(
        top.screen.lock().unwrap().screen().alternate_screen(),
        "the full-screen view runs on the alternate screen"
    );
    let pid = top.child.process_id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    assert_eq!(top.exit_code().await, 0);
    // The reader thread may still be feeding the last bytes to the emulator.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while top.screen.lock().unwrap().screen().alternate_screen() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "top exited on SIGTERM without leaving the alternate screen:\n{}",
            top.contents()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keys are data from any process on the bus: the text views show their control
/// characters as spaces, so an escape sequence in a key cannot drive the terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_keys_never_reach_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = common::bus(tmp.path(), "esc").await;
    let sink = SignalSink::default();
    let key = "order\u{1b}[2J\u{7}-7";
    sink.raise_with(ephemeral::Signal::build("error.payment").unwrap().key(key))
        .unwrap();
    let coordinator = EphemeralKeyedWorkCoordinator::new(
        |_n: u32, _ctx: OperationContext| async { Err::<(), _>("declined".to_owned()) },
        EphemeralOptions::default(),
    )
    .unwrap();
    coordinator.enqueue(key.to_owned(), 1).await.unwrap();
    common::eventually("the item fails", || coordinator.stats().failed == 1).await;
    let _publishers = [
        sink.publish_state(&bus, "signals").await.unwrap(),
        coordinator.publish_state(&bus, "payments").await.unwrap(),
    ];
    for args in [
        &["signals", "--bus", "esc"][..],
        &["top", "--bus", "esc", "--once"],
        &["ops", "--bus", "esc", "payments"],
    ] {
        let (code, out, err) = run(tmp.path(), args).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("order [2J -7"), "{args:?}: {out:?}");
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?} printed control characters: {out:?}"
        );
    }
}

/// A sink publishes a bounded sample of its live signals (`max_signals`): the text views say
/// how many were left out. `signals` used to list the sample as if it were every live
/// signal, and `top --once` to say that `ephemeral signals` lists them all (5,000 live
/// signals, 128 published: `signals` printed 128 rows and no note, `top` "116 more live
/// signals: `ephemeral signals` lists them all").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_left_out_of_a_sinks_sample_are_counted_not_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = common::bus(tmp.path(), "many").await;
    let sink = SignalSink::default();
    for n in 0..20 {
        sink.raise(&format!("error.n{n}")).unwrap();
    }
    let _publisher = sink
        .publish_state_with(&bus, "signals", PublishOptions::default().max_signals(15))
        .await
        .unwrap();

    let (code, out, err) = run(tmp.path(), &["signals", "--bus", "many"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    // The header, the 15 published, and the note.
    assert_eq!(lines.len(), 17, "{out}");
    assert_eq!(
        lines[16], "(5 more live signals not in the published sample)",
        "{out}"
    );

    let (code, out, err) = run(tmp.path(), &["top", "--bus", "many", "--once"]).await;
    assert_eq!(code, 0, "{err}");
    let note = out.lines().last().unwrap_or_default();
    assert_eq!(
        note,
        "(8 more live signals: `ephemeral signals` lists 3 of them; 5 are not in the \
         sinks' published samples)",
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_count_0_shows_nothing_and_count_with_once_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _service = service(tmp.path()).await;
    // As `watch --count 0`: no refresh at all (it printed one).
    let (code, out, err) = run(tmp.path(), &["top", "--bus", "svc", "--count", "0"]).await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    // --once prints one snapshot: a --count beside it was silently ignored.
    let (code, _, err) = run(
        tmp.path(),
        &["top", "--bus", "svc", "--once", "--count", "3"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--count") && err.contains("--once"), "{err}");
}
