//! Soak test: a realistic mixed workload for a given time, then a report and the invariants.
//!
//! `cargo run --release -p ephemeral-benches --bin soak -- --duration 10m` (CI runs a debug
//! build for 40 seconds).
//! Items flow through a work coordinator and a keyed coordinator with injected errors, panics,
//! explicit cancellations and cancel signals; a storm task raises bursts of signals; a held
//! `maintenance.window` condition defers starts now and then; a bus peer process is killed
//! (SIGKILL) and restarted while messages are published to it. The report gives items
//! accepted versus terminal states (they must be equal), peak and final RSS (flat after
//! warm-up), p99 latency and lag counts; the exit code is 1 if an invariant failed.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use ephemeral::{
    EphemeralKeyedWorkCoordinator, EphemeralOptions, EphemeralWorkCoordinator, Lagged,
    OperationContext, OperationSnapshot, SignalSink, SinkOptions,
};
use ephemeral_bus::{Bus, BusOptions};
use futures::StreamExt;

const PEER_ROLE: &str = "EPHEMERAL_SOAK_PEER_DIR";

/// A realistic mixed workload, run for a while, checked at the end.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// How long to run (`90s`, `10m`).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Allowed RSS growth after warm-up (the first fifth of the run), in MiB.
    #[arg(long, default_value_t = 32)]
    max_growth_mib: u64,
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kib| kib.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Latencies (enqueue to finish) of a bounded sample of operations.
#[derive(Default)]
struct Latencies {
    sample: Mutex<Vec<Duration>>,
    seen: AtomicU64,
}

impl Latencies {
    fn record(&self, op: &OperationSnapshot) {
        // Relaxed: a counter choosing which operations to sample.
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(16)
            && let Some(finished) = op.finished
        {
            let mut s = self.sample.lock().unwrap_or_else(PoisonError::into_inner);
            if s.len() < 200_000 {
                s.push(finished.saturating_duration_since(op.enqueued));
            }
        }
    }

    fn p99(&self) -> Duration {
        let mut s = self
            .sample
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        s.sort_unstable();
        s.get(s.len().saturating_sub(1) * 99 / 100)
            .copied()
            .unwrap_or_default()
    }
}

async fn body(n: u64, ctx: OperationContext) -> Result<(), String> {
    match n % 100 {
        0..=2 => Err(format!("item {n}: injected error")),
        3 => panic!("item {n}: injected panic"),
        4 => {
            let _ = ctx.signal("soak.item.slow");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => Ok(()),
                () = ctx.token().cancelled() => Err("cancelled".to_owned()),
            }
        }
        5 => {
            let _ = ctx.signal("error.soak.injected");
            Ok(())
        }
        _ => {
            tokio::task::yield_now().await;
            Ok(())
        }
    }
}

fn spawn_peer(dir: &std::path::Path) -> Option<Child> {
    Command::new(std::env::current_exe().ok()?)
        .env(PEER_ROLE, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// The bus peer: subscribes and reads until killed.
async fn peer(dir: String) {
    let Ok(bus) = Bus::open_with("soak", BusOptions::default().dir(&dir)).await else {
        return;
    };
    let Ok(mut sub) = bus.subscribe("soak.*").await else {
        return;
    };
    while sub.next().await.is_some() {}
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(dir) = std::env::var(PEER_ROLE) {
        peer(dir).await;
        return;
    }
    let args = Args::parse();
    // Injected panics are expected (they are counted in the report); anything else is shown.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.ends_with("injected panic"));
        if !injected {
            default_hook(info);
        }
    }));
    let started = Instant::now();
    let deadline = started + args.duration;
    let warm_up = started + args.duration / 5;

    let sink = SignalSink::new(SinkOptions::default().capacity(5_000))
        .expect("the soak's sink options are valid");
    let latencies = Arc::new(Latencies::default());
    let work = {
        let latencies = latencies.clone();
        EphemeralWorkCoordinator::new(
            body,
            EphemeralOptions::default()
                .max_concurrency(8)
                .signals(sink.clone())
                .cancel_on("storm.cancel")
                .defer_on("maintenance.*")
                .resume_on("maintenance.over")
                .on_finalized(move |op| latencies.record(op)),
        )
        .expect("inside a runtime")
    };
    let keyed = EphemeralKeyedWorkCoordinator::new(
        |n: u64, _ctx| async move {
            tokio::task::yield_now().await;
            if n.is_multiple_of(50) {
                Err("keyed: injected error")
            } else {
                Ok(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone()),
    )
    .expect("inside a runtime");

    // Lag observed by a deliberately small subscription.
    let lagged = Arc::new(AtomicU64::new(0));
    let lag_task = {
        let mut sub = sink.subscribe_with("*", ephemeral::Buffer::bounded(64).expect("not zero"));
        let lagged = lagged.clone();
        tokio::spawn(async move {
            while let Some(item) = sub.next().await {
                if let Err(Lagged(n)) = item {
                    // Relaxed: a plain counter read after the run.
                    lagged.fetch_add(n, Ordering::Relaxed);
                }
                if lagged.load(Ordering::Relaxed).is_multiple_of(7) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };

    // Signal storms, cancel signals and held maintenance windows.
    let storms = {
        let sink = sink.clone();
        tokio::spawn(async move {
            let mut round = 0u64;
            while Instant::now() < deadline {
                round += 1;
                for i in 0..2_000 {
                    let _ = sink.raise(&format!("storm.burst.n{}", i % 300));
                }
                if round.is_multiple_of(3)
                    && let Ok(cancel) = ephemeral::Signal::build("storm.cancel")
                {
                    // Short-lived: cancels what reaches admission in the next 20 ms.
                    let _ = sink.raise_with(cancel.expires_in(Duration::from_millis(20)));
                }
                if round.is_multiple_of(5)
                    && let Ok(hold) = sink.hold("maintenance.window")
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    drop(hold);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    // A bus peer killed and restarted while we publish to it.
    let bus_dir = std::env::temp_dir().join(format!("ephemeral-soak-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&bus_dir);
    let bus = Bus::open_with("soak", BusOptions::default().dir(&bus_dir))
        .await
        .ok();
    let mut child = spawn_peer(&bus_dir);
    let mut kills = 0u32;
    let mut last_kill = Instant::now();
    let mut slowest_publish = Duration::ZERO;

    let (mut accepted, mut cancelled_explicitly) = (0u64, 0u64);
    let mut peak_rss = 0;
    let mut warm_rss = None;
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        if let Ok(id) = work.enqueue(n).await {
            accepted += 1;
            if n.is_multiple_of(97) && work.cancel_operation(id) {
                cancelled_explicitly += 1;
            }
        }
        if keyed.enqueue(n % 64, n).await.is_ok() {
            accepted += 1;
        }
        if n.is_multiple_of(256) {
            if let Some(bus) = &bus {
                let t = Instant::now();
                let _ = bus.publish("soak.tick", [0u8; 64]).await;
                slowest_publish = slowest_publish.max(t.elapsed());
            }
            if last_kill.elapsed() > Duration::from_secs(10) {
                if let Some(mut c) = child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                    kills += 1;
                }
                child = spawn_peer(&bus_dir);
                last_kill = Instant::now();
            }
            peak_rss = peak_rss.max(rss_kib("VmRSS:"));
            if warm_rss.is_none() && Instant::now() >= warm_up {
                warm_rss = Some(rss_kib("VmRSS:"));
            }
        }
    }
    let _ = storms.await;
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        let a = work.drain().await;
        let b = keyed.drain().await;
        a.is_ok() && b.is_ok()
    })
    .await
    .unwrap_or(false);
    drop(bus);
    let _ = std::fs::remove_dir_all(&bus_dir);

    let (w, k) = (work.stats(), keyed.stats());
    let terminal = w.completed + w.failed + w.cancelled + k.completed + k.failed + k.cancelled;
    let final_rss = rss_kib("VmRSS:");
    let warm = warm_rss.unwrap_or(final_rss);
    let growth_mib = final_rss.saturating_sub(warm) / 1024;
    let sink_stats = sink.stats();
    drop(sink);
    lag_task.abort();

    println!("soak report after {:.1?}", started.elapsed());
    println!("  items accepted        {accepted}");
    println!(
        "  terminal              {terminal} (completed {}, failed {} incl. {} panics, cancelled {}; {} cancelled explicitly)",
        w.completed + k.completed,
        w.failed + k.failed,
        w.panicked + k.panicked,
        w.cancelled + k.cancelled,
        cancelled_explicitly
    );
    println!(
        "  window                tracked {} / evicted {}",
        w.tracked + k.tracked,
        w.evicted + k.evicted
    );
    println!(
        "  rss                   peak {} MiB, after warm-up {} MiB, final {} MiB (peak HWM {} MiB)",
        peak_rss / 1024,
        warm / 1024,
        final_rss / 1024,
        rss_kib("VmHWM:") / 1024
    );
    println!("  p99 latency           {:.2?}", latencies.p99());
    println!(
        "  sink                  raised {}, live {}, lag reported to the small subscriber {}",
        sink_stats.raised,
        sink_stats.live,
        lagged.load(Ordering::Relaxed)
    );
    println!(
        "  bus peer              killed and restarted {kills} times; slowest publish {slowest_publish:.2?}"
    );

    let mut failures = Vec::new();
    if !drained {
        failures.push("the coordinators did not drain within 60 s".to_owned());
    }
    if accepted != terminal {
        failures.push(format!("{accepted} accepted but {terminal} terminal"));
    }
    if w.accepted + k.accepted != accepted {
        failures.push("the coordinators' accepted counts disagree with ours".to_owned());
    }
    if growth_mib > args.max_growth_mib {
        failures.push(format!(
            "RSS grew {growth_mib} MiB after warm-up (allowed {})",
            args.max_growth_mib
        ));
    }
    if slowest_publish > Duration::from_secs(10) {
        failures.push(format!("a publish blocked for {slowest_publish:.2?}"));
    }
    if failures.is_empty() {
        println!("all invariants held");
    } else {
        for f in &failures {
            eprintln!("invariant failed: {f}");
        }
        std::process::exit(1);
    }
}
