//! Tests with real separate processes: this test binary re-executes itself with
//! `EPHEMERAL_BUS_CHILD` naming a child role. (`harness = false`: `main` runs the scenarios.)
//!
//! Children find the bus through the `EPHEMERAL_BUS_DIR` environment variable while the
//! parent passes the same directory as an option, so every scenario also checks that both
//! ways lead to one bus.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_bus::{Buffer, Bus, BusOptions, Lagged, Overflow};
use futures::StreamExt;
use support::{eventually, files_in, open};

const ROLE: &str = "EPHEMERAL_BUS_CHILD";
const LONG: Duration = Duration::from_secs(20);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(role) = std::env::var(ROLE) {
        let code = runtime.block_on(child(&role));
        std::process::exit(code);
    }
    // A hung scenario fails the run instead of hanging it.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(240));
        eprintln!("processes: watchdog: a scenario hung for 240 s");
        std::process::exit(3);
    });
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    type Scenario = fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>;
    let scenarios: [(&str, Scenario); 12] = [
        (
            "one_publisher_four_subscriber_processes_100k_in_order",
            || Box::pin(fan_out()),
        ),
        (
            "sigkilled_subscriber_is_reclaimed_and_publishers_carry_on",
            || Box::pin(sigkill()),
        ),
        ("crashed_lone_peer_is_reclaimed_by_the_next_opener", || {
            Box::pin(lone_crash())
        }),
        (
            "sigstopped_subscriber_bounds_publishers_and_sees_lag",
            || Box::pin(sigstop()),
        ),
        (
            "a_sigstopped_peer_costs_one_handshake_wait_not_one_per_subscribe",
            || Box::pin(stopped_peer_handshake()),
        ),
        (
            "bridged_signal_from_another_process_expires_on_time",
            || Box::pin(bridge()),
        ),
        (
            "request_response_across_processes_with_a_dying_server",
            || Box::pin(request_response()),
        ),
        (
            "a_reply_stream_from_a_killed_server_process_ends_with_an_error",
            || Box::pin(stream_server_dies()),
        ),
        (
            "a_publisher_killed_mid_frame_costs_its_subscribers_nothing",
            || Box::pin(publisher_dies()),
        ),
        ("three_bridged_processes_see_one_raise_once_each", || {
            Box::pin(three_processes())
        }),
        (
            "a_mirrored_hold_ends_when_its_holder_process_is_killed",
            || Box::pin(holder_dies()),
        ),
        (
            "a_reader_out_of_file_descriptors_never_reclaims_a_live_owners_value",
            || Box::pin(starved_reader()),
        ),
    ];
    let mut ran = 0;
    for (name, scenario) in scenarios {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        print!("test {name} ... ");
        std::io::stdout().flush().ok();
        runtime.block_on(scenario());
        println!("ok");
        ran += 1;
    }
    println!("\ntest result: ok. {ran} passed (real child processes)");
}

// ---------------------------------------------------------------- children

async fn child(role: &str) -> i32 {
    let name = std::env::var("BUS_NAME").expect("BUS_NAME");
    // The parent directory comes from EPHEMERAL_BUS_DIR: no `dir` option here.
    let bus = Bus::open_with(
        &name,
        BusOptions::default().send_timeout(Duration::from_millis(200)),
    )
    .await
    .expect("child opens bus");
    let count: u64 = std::env::var("COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    match role {
        "subscriber" => {
            let mut sub = bus.subscribe("load.*").await.expect("subscribe");
            println!("ready {}", bus.peer_id());
            for expected in 0..count {
                match sub.next().await {
                    Some(Ok(m)) => {
                        let got = u64::from_le_bytes(m.payload()[..8].try_into().unwrap());
                        if got != expected {
                            println!("bad: expected {expected}, got {got}");
                            return 1;
                        }
                    }
                    Some(Err(Lagged(n))) => {
                        println!("bad: lagged {n} at {expected}");
                        return 1;
                    }
                    None => {
                        println!("bad: stream ended at {expected}");
                        return 1;
                    }
                }
            }
            println!("ok {count}");
            0
        }
        "slow" => {
            let mut sub = bus
                .subscribe_with("load.*,done", Buffer::bounded(16).unwrap(), Overflow::Wait)
                .await
                .expect("subscribe");
            println!("ready {}", bus.peer_id());
            let (mut got, mut lagged) = (0u64, 0u64);
            while let Some(item) = sub.next().await {
                match item {
                    Ok(m) if m.topic().as_str() == "done" => break,
                    Ok(_) => got += 1,
                    Err(Lagged(n)) => lagged += n,
                }
            }
            println!("got {got} lagged {lagged}");
            0
        }
        "server" => {
            let _echo = bus
                .serve("work.echo", |m| async move { m.payload().to_vec() })
                .await
                .expect("serve");
            let _stuck = bus
                .serve("work.stuck", |_| std::future::pending::<Vec<u8>>())
                .await
                .expect("serve");
            let _ticks = bus
                .serve_stream("work.ticks", |_| {
                    futures::stream::unfold(0u64, |i| async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Some((i.to_le_bytes().to_vec(), i + 1))
                    })
                })
                .await
                .expect("serve");
            println!("ready {}", bus.peer_id());
            std::future::pending::<()>().await;
            0
        }
        "listener" => {
            let sink = SignalSink::default();
            let _bridge = bus.bridge(&sink, "alarm.*").await.expect("bridge");
            println!("ready {}", bus.peer_id());
            let _ = tokio::task::spawn_blocking(|| {
                let mut s = String::new();
                std::io::stdin().read_line(&mut s)
            })
            .await;
            println!("count {}", sink.count("alarm.*"));
            0
        }
        "starved-reader" => {
            use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
            let store = bus
                .store("owned", ephemeral_bus::retained::StoreOptions::default())
                .await
                .expect("store");
            println!("ready {}", bus.peer_id());
            // Out of file descriptors: no new one can be opened (0, 1 and 2 are taken), so
            // the owner's lock file cannot be opened to tell whether it is alive.
            let limit = getrlimit(Resource::Nofile);
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(3),
                    maximum: limit.maximum,
                },
            )
            .expect("lower the descriptor limit");
            let got = store.get("k").await;
            setrlimit(Resource::Nofile, limit).expect("restore the descriptor limit");
            match got {
                Ok(Some(v)) => println!("got {}", String::from_utf8_lossy(&v)),
                other => println!("got {other:?}"),
            }
            0
        }
        "holder" => {
            let sink = SignalSink::default();
            let _bridge = bus
                .bridge_with(
                    &sink,
                    "circuit.*",
                    ephemeral_bus::BridgeOptions::default().hold_lease(Duration::from_millis(300)),
                )
                .await
                .expect("bridge");
            let _hold = sink.hold("circuit.open").expect("hold");
            println!("ready {}", bus.peer_id());
            std::future::pending::<()>().await;
            0
        }
        "flooder" => {
            // Waits until the parent subscribes (it says so on stdin), then publishes
            // 256 KiB messages as fast as it can until killed: frames are being written
            // most of the time, so the kill lands in the middle of one.
            println!("ready {}", bus.peer_id());
            let _ = tokio::task::spawn_blocking(|| {
                let mut s = String::new();
                std::io::stdin().read_line(&mut s)
            })
            .await;
            let mut payload = vec![0u8; 256 * 1024];
            for i in 0u64.. {
                payload[..8].copy_from_slice(&i.to_le_bytes());
                bus.publish("load.flood", payload.as_slice())
                    .await
                    .expect("publish");
            }
            0
        }
        "idle" => {
            println!("ready {}", bus.peer_id());
            std::future::pending::<()>().await;
            0
        }
        "raiser" => {
            let sink = SignalSink::default();
            let _bridge = bus.bridge(&sink, "alarm.*").await.expect("bridge");
            println!("ready {}", bus.peer_id());
            let mut line = String::new();
            let stdin = tokio::task::spawn_blocking(move || {
                std::io::stdin().read_line(&mut line).map(|_| line)
            });
            let _ = stdin.await;
            sink.raise_with(
                ephemeral::Signal::build("alarm.fire")
                    .unwrap()
                    .expires_in(Duration::from_millis(2000)),
            )
            .expect("raise");
            // Stay on the bus until the parent closes our stdin.
            let _ = tokio::task::spawn_blocking(|| {
                let mut s = String::new();
                std::io::stdin().read_line(&mut s)
            })
            .await;
            0
        }
        other => {
            eprintln!("unknown role {other}");
            2
        }
    }
}

// ---------------------------------------------------------------- parent helpers

struct Kid {
    child: Child,
    out: BufReader<ChildStdout>,
    peer: u64,
}

impl Kid {
    fn spawn(role: &str, parent: &Path, name: &str, count: u64) -> Kid {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, role)
            .env("EPHEMERAL_BUS_DIR", parent)
            .env("BUS_NAME", name)
            .env("COUNT", count.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let line = read_line(&mut out);
        let peer = line
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("child said {line:?} instead of ready"));
        Kid { child, out, peer }
    }

    fn line(&mut self) -> String {
        read_line(&mut self.out)
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} failed");
    }

    fn wait_ok(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child exited with {status}");
    }
}

fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).expect("read child stdout");
    line.trim_end().to_owned()
}

fn peer_files(dir: &Path, peer: u64) -> Vec<String> {
    let prefix = format!("{peer:016x}.");
    files_in(dir)
        .into_iter()
        .filter(|f| f.starts_with(&prefix))
        .collect()
}

// ---------------------------------------------------------------- scenarios

async fn fan_out() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 100_000u64;
    let kids: Vec<Kid> = (0..4)
        .map(|_| Kid::spawn("subscriber", tmp.path(), "fan", n))
        .collect();
    let bus = open(tmp.path(), "fan").await;
    assert_eq!(bus.peers(), 4);
    let mut reached = 0;
    for i in 0..n {
        reached += bus.publish("load.data", i.to_le_bytes()).await.unwrap();
    }
    assert_eq!(
        reached as u64,
        4 * n,
        "every publish reached all four subscribers"
    );
    for mut kid in kids {
        assert_eq!(kid.line(), format!("ok {n}"));
        kid.wait_ok();
    }
    let dir = bus.dir().to_path_buf();
    assert!(eventually(LONG, || bus.peers() == 0).await);
    drop(bus);
    assert!(!dir.exists(), "left behind: {:?}", files_in(&dir));
}

async fn sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 20_000u64;
    let survivor = Kid::spawn("subscriber", tmp.path(), "kill", n);
    let victim = Kid::spawn("subscriber", tmp.path(), "kill", n);
    let bus = open(tmp.path(), "kill").await;
    let dir = bus.dir().to_path_buf();
    assert_eq!(peer_files(&dir, victim.peer).len(), 2);
    for i in 0..n {
        if i == n / 4 {
            victim.signal("-KILL");
        }
        tokio::time::timeout(LONG, bus.publish("load.data", i.to_le_bytes()))
            .await
            .expect("a publish is never blocked by the dead subscriber")
            .unwrap();
    }
    let mut survivor = survivor;
    assert_eq!(survivor.line(), format!("ok {n}"));
    survivor.wait_ok();
    let mut victim = victim;
    let _ = victim.child.wait();
    // Its connection dropped when it died; the next peer to notice reclaimed its files.
    assert!(eventually(LONG, || peer_files(&dir, victim.peer).is_empty()).await);
    drop(bus);
    assert!(!dir.exists(), "left behind: {:?}", files_in(&dir));
}

async fn lone_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let kid = Kid::spawn("idle", tmp.path(), "lone", 0);
    let dir = tmp.path().join("ephemeral-lone");
    assert_eq!(peer_files(&dir, kid.peer).len(), 2);
    kid.signal("-KILL");
    let mut kid = kid;
    let _ = kid.child.wait();
    // Nobody was there to notice: the files stay until the next peer opens the bus.
    assert_eq!(peer_files(&dir, kid.peer).len(), 2);
    let bus = open(tmp.path(), "lone").await;
    assert!(peer_files(&dir, kid.peer).is_empty());
    assert_eq!(bus.peers(), 0);
    drop(bus);
    assert!(!dir.exists());
}

async fn sigstop() {
    let tmp = tempfile::tempdir().unwrap();
    let kid = Kid::spawn("slow", tmp.path(), "stop", 0);
    let bus = Bus::open_with(
        "stop",
        BusOptions::default()
            .dir(tmp.path())
            .peer_queue_bytes(16 * 1024)
            .send_timeout(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    kid.signal("-STOP");
    let total = 5_000u64;
    let mut reached = 0;
    for i in 0..total {
        // 1 KiB each: 5 MiB, far more than the socket and queue hold.
        let mut payload = vec![0u8; 1024];
        payload[..8].copy_from_slice(&i.to_le_bytes());
        reached += tokio::time::timeout(LONG, bus.publish("load.data", payload))
            .await
            .expect("a stopped subscriber never blocks a publisher past the bound")
            .unwrap();
    }
    assert!((reached as u64) < total, "the pipe never filled");
    assert_eq!(bus.stats().dropped_sends, total - reached as u64);
    kid.signal("-CONT");
    // The queue for the resumed subscriber may still be stalled for a moment: a `done` that
    // is dropped is counted (and reported to it as lag) like any other message.
    while bus.publish("done", b"").await.unwrap() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dropped = bus.stats().dropped_sends;
    assert!(dropped >= total - reached as u64);
    let mut kid = kid;
    let report = kid.line();
    assert_eq!(report, format!("got {reached} lagged {dropped}"));
    kid.wait_ok();
}

async fn stopped_peer_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let kid = Kid::spawn("slow", tmp.path(), "late", 0);
    let handshake = Duration::from_millis(500);
    let bus = Bus::open_with(
        "late",
        BusOptions::default()
            .dir(tmp.path())
            .handshake_timeout(handshake),
    )
    .await
    .unwrap();
    kid.signal("-STOP");
    let rounds = 6u32;
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        drop(bus.subscribe("x.*").await.unwrap());
        bus.flush().await;
    }
    // Waiting for the stopped peer at every subscribe and flush takes at least
    // 2 × rounds handshakes; once, one handshake and the (generous) rest of the bound.
    let took = started.elapsed();
    // Resumed before asserting: a stopped child would hold the test's stderr open.
    kid.signal("-CONT");
    assert!(
        took < handshake * rounds,
        "{rounds} subscribes and flushes took {took:?}: the stopped peer was waited for again"
    );
    assert_eq!(bus.peers(), 1);
    // Resumed, it reads what was sent meanwhile and takes part again.
    while bus.publish("done", b"").await.unwrap() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut kid = kid;
    assert_eq!(kid.line(), "got 0 lagged 0");
    kid.wait_ok();
}

async fn bridge() {
    let tmp = tempfile::tempdir().unwrap();
    let mut kid = Kid::spawn("raiser", tmp.path(), "bridge", 0);
    let bus = open(tmp.path(), "bridge").await;
    let sink = SignalSink::default();
    let bridge = bus.bridge(&sink, "alarm.*").await.unwrap();
    writeln!(kid.child.stdin.as_mut().unwrap(), "go").unwrap();
    assert!(eventually(LONG, || sink.has_signal("alarm.fire")).await);
    let signal = sink.latest("alarm.fire").unwrap();
    assert!(
        signal.remaining(tokio::time::Instant::now(), sink.max_age())
            <= Duration::from_millis(2000)
    );
    assert!(
        eventually(LONG, || !sink.has_signal("alarm.fire")).await,
        "it expires in A too"
    );
    assert_eq!(bridge.raised(), 1);
    drop(kid.child.stdin.take());
    kid.wait_ok();
}

async fn request_response() {
    let tmp = tempfile::tempdir().unwrap();
    let kid = Kid::spawn("server", tmp.path(), "rr", 0);
    let bus = open(tmp.path(), "rr").await;
    let reply = bus.request("work.echo", b"ping", LONG).await.unwrap();
    assert_eq!(reply.payload(), b"ping");
    let err = bus
        .request("work.stuck", b"", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ephemeral_bus::BusError::Timeout { .. }),
        "{err}"
    );

    // The server dies while handling: the request fails with PeerGone well before its
    // (long) timeout.
    let pending = {
        let bus = bus.clone();
        tokio::spawn(async move {
            bus.request("work.stuck", b"", Duration::from_secs(60))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    kid.signal("-KILL");
    let result = tokio::time::timeout(LONG, pending)
        .await
        .expect("PeerGone comes before the request's own timeout")
        .unwrap();
    assert!(
        matches!(result, Err(ephemeral_bus::BusError::PeerGone { .. })),
        "{result:?}"
    );
    let mut kid = kid;
    let _ = kid.child.wait();
}

async fn stream_server_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let kid = Kid::spawn("server", tmp.path(), "stream", 0);
    let bus = open(tmp.path(), "stream").await;
    // A long timeout: only the server's death can end this stream early.
    let mut ticks = bus
        .request_stream("work.ticks", b"", Duration::from_secs(600))
        .await
        .unwrap();
    for expected in 0..3u64 {
        let tick = tokio::time::timeout(LONG, ticks.next())
            .await
            .expect("a tick")
            .expect("the stream goes on")
            .expect("a reply");
        assert_eq!(tick.payload(), expected.to_le_bytes());
    }
    kid.signal("-KILL");
    let mut kid = kid;
    let _ = kid.child.wait();
    // Ticks already on their way may still come; then the stream ends with an error.
    let ended = tokio::time::timeout(LONG, async {
        loop {
            match ticks.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("the stream ends well before its own timeout");
    assert!(
        matches!(ended, Some(Err(ephemeral_bus::BusError::PeerGone { .. }))),
        "{ended:?}"
    );
    assert!(ticks.next().await.is_none());
}

async fn holder_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let kid = Kid::spawn("holder", tmp.path(), "hold", 0);
    let bus = open(tmp.path(), "hold").await;
    let sink = SignalSink::default();
    let _bridge = bus
        .bridge_with(
            &sink,
            "circuit.*",
            ephemeral_bus::BridgeOptions::default().hold_lease(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert!(eventually(LONG, || sink.has_signal("circuit.open")).await);
    assert!(sink.latest("circuit.open").unwrap().is_held());
    kid.signal("-KILL");
    let mut kid = kid;
    let _ = kid.child.wait();
    assert!(
        eventually(LONG, || !sink.has_signal("circuit.open")).await,
        "the mirrored hold ends once the dead holder's lease runs out"
    );
}

/// Whether a value's owner is alive is told by its lock; a reader that cannot open the lock
/// file (out of descriptors here) cannot tell, and must not take the owner for dead: it
/// used to, and removed the live owner's value for every process (`got Ok(None)`, then
/// gone for the owner too).
async fn starved_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = open(tmp.path(), "starved").await;
    let store = bus
        .store("owned", ephemeral_bus::retained::StoreOptions::default())
        .await
        .unwrap();
    store.set_owned("k", "v", None).await.unwrap();
    let mut kid = Kid::spawn("starved-reader", tmp.path(), "starved", 0);
    assert_eq!(kid.line(), "got v", "a live owner's value is returned");
    kid.wait_ok();
    // Give a wrongly started reclaim time to land (it would within milliseconds).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// A publisher SIGKILLed while writing a frame: the partly written frame is the end of its
/// connection, not corruption; its subscribers' streams go on, in step, with what others
/// publish, and its files are reclaimed.
async fn publisher_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let mut kid = Kid::spawn("flooder", tmp.path(), "flood", 0);
    let bus = open(tmp.path(), "flood").await;
    let dir = bus.dir().to_path_buf();
    // Lag is allowed (the flood outpaces this reader while it is not reading); a stall,
    // an end of the stream, a cut message or a corrupt frame is not.
    let mut sub = bus
        .subscribe_with("load.*", Buffer::bounded(64).unwrap(), Overflow::Wait)
        .await
        .unwrap();
    writeln!(kid.child.stdin.as_mut().unwrap(), "go").unwrap();
    let mut flood = 0;
    while flood < 20 {
        let item = tokio::time::timeout(LONG, sub.next())
            .await
            .expect("the flood arrives")
            .expect("open");
        if let Ok(m) = item {
            assert_eq!(m.topic().as_str(), "load.flood");
            flood += 1;
        }
    }
    kid.signal("-KILL");
    let _ = kid.child.wait();
    assert!(
        eventually(LONG, || peer_files(&dir, kid.peer).is_empty()).await,
        "the dead publisher's files are reclaimed"
    );
    // Whatever it had written whole is still delivered, then the stream goes on with the
    // next publisher, whose message is intact, here and in a process that joins now.
    let mut listener = Kid::spawn("subscriber", tmp.path(), "flood", 1);
    let publisher = open(tmp.path(), "flood").await;
    assert_eq!(
        publisher
            .publish("load.data", 0u64.to_le_bytes())
            .await
            .unwrap(),
        2,
        "the subscription here and the listener process"
    );
    let after = tokio::time::timeout(LONG, async {
        loop {
            match sub.next().await {
                Some(Ok(m)) if m.topic().as_str() == "load.flood" => {
                    assert_eq!(m.payload().len(), 256 * 1024, "only whole frames");
                }
                Some(Err(Lagged(_))) => {}
                other => break other,
            }
        }
    })
    .await
    .expect("the stream goes on after the publisher's death");
    let after = after.expect("open").expect("a message");
    assert_eq!(
        (after.topic().as_str(), after.payload()),
        ("load.data", &0u64.to_le_bytes()[..])
    );
    assert_eq!(listener.line(), "ok 1");
    listener.wait_ok();
    assert_eq!(
        bus.stats().corrupt_frames,
        0,
        "a cut frame is an end, not corruption"
    );
}

async fn three_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut raiser = Kid::spawn("raiser", tmp.path(), "three", 0);
    let mut listener = Kid::spawn("listener", tmp.path(), "three", 0);
    let bus = open(tmp.path(), "three").await;
    let sink = SignalSink::default();
    let _bridge = bus.bridge(&sink, "alarm.*").await.unwrap();
    writeln!(raiser.child.stdin.as_mut().unwrap(), "go").unwrap();
    assert!(eventually(LONG, || sink.has_signal("alarm.fire")).await);
    // Give any echo or loop time to show up (it would within milliseconds).
    tokio::time::sleep(Duration::from_millis(200)).await;
    writeln!(listener.child.stdin.as_mut().unwrap(), "count").unwrap();
    assert_eq!(listener.line(), "count 1");
    assert_eq!(sink.count("alarm.*"), 1);
    listener.wait_ok();
    drop(raiser.child.stdin.take());
    raiser.wait_ok();
}
