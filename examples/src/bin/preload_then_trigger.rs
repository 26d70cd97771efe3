//! Preload, then trigger: queue work while a defer signal says "not yet", then start all of
//! it at once with a resume signal, with no polling in between. Then the same with a held
//! condition (a maintenance window) that defers work until it is released.
//!
//! `cargo run -p ephemeral-examples --bin preload_then_trigger` (finishes in about a second).

use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    // Each row reports the instant it started, so we can see when the trigger took effect.
    let (started_tx, mut started) = mpsc::unbounded_channel::<Instant>();
    let coordinator = EphemeralWorkCoordinator::new(
        move |_row: (&'static str, u32), ctx: OperationContext| {
            let started_tx = started_tx.clone();
            async move {
                // The receiver lives until the end of main; a failed send changes nothing.
                let _ = started_tx.send(Instant::now());
                sleep(Duration::from_millis(20)).await;
                // A record of the work, readable by anyone with the sink.
                ctx.signal("import.row.done").map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(8)
            .signals(sink.clone())
            // Nothing starts while a signal matching `import.loading` or `maintenance` is live...
            .defer_on("import.loading,maintenance")
            // ...unless an `import.go` newer than the latest of them says go.
            .resume_on("import.go"),
    )?;

    // 1. Preload: announce the load, queue the rows; nothing runs yet.
    sink.raise("import.loading")?;
    for n in 0..16 {
        coordinator.enqueue(("import", n)).await?;
    }
    sleep(Duration::from_millis(200)).await;
    let preloaded = coordinator.stats();
    println!(
        "preloaded: {} waiting, {} running, {} done after 200 ms",
        preloaded.pending, preloaded.running, preloaded.completed
    );

    // 2. Trigger: one signal, and the whole batch starts at once.
    let trigger = Instant::now();
    sink.raise("import.go")?;
    let mut starts = Vec::new();
    while starts.len() < 16 {
        match started.recv().await {
            Some(at) => starts.push(at.saturating_duration_since(trigger)),
            None => return Err("the coordinator stopped early".into()),
        }
    }
    println!(
        "triggered: first row started {} µs after `import.go`, the 16th after {} ms (8 at a time, 20 ms each)",
        starts[0].as_micros(),
        starts[15].as_millis()
    );

    // 3. A condition instead of an event: a held signal stays live until it is released.
    let maintenance = sink.hold("maintenance")?;
    for n in 0..4 {
        coordinator.enqueue(("nightly", n)).await?;
    }
    sleep(Duration::from_millis(150)).await;
    let during = coordinator.stats();
    // No nightly row may have started yet: the channel of start instants is still empty.
    let started_during_maintenance = started.try_recv().is_ok();
    println!(
        "during maintenance: {} waiting, {} running",
        during.pending, during.running
    );
    let release = Instant::now();
    drop(maintenance); // released: the deferred items start at once
    let first = started
        .recv()
        .await
        .ok_or("the coordinator stopped early")?;
    println!(
        "maintenance released: the first nightly row started {} µs later",
        first.saturating_duration_since(release).as_micros()
    );
    coordinator.drain().await?;
    let stats = coordinator.stats();
    println!(
        "after maintenance: {} completed in all, {} `import.row.done` signals in the window",
        stats.completed,
        sink.count("import.row.done")
    );
    // What this example shows, checked (CI runs it with its output discarded): nothing
    // started while `import.loading` was the latest word, all 16 rows started after
    // `import.go` (the loop above waited for them), nothing started while `maintenance` was
    // held, and in the end all 20 rows ran and signalled.
    let deferred = preloaded.pending == 16 && preloaded.running == 0 && preloaded.completed == 0;
    let held = during.pending == 4 && during.running == 0 && !started_during_maintenance;
    if !deferred || !held || stats.completed != 20 || sink.count("import.row.done") != 20 {
        return Err(format!(
            "expected 16 rows waiting before `import.go`, 4 waiting during maintenance and 20 \
             completed with 20 signals; saw {} waiting and {} running or done before the \
             trigger, {} waiting and {} running during maintenance (a start seen: {}), \
             {} completed, {} `import.row.done`",
            preloaded.pending,
            preloaded.running + preloaded.completed,
            during.pending,
            during.running,
            started_during_maintenance,
            stats.completed,
            sink.count("import.row.done")
        )
        .into());
    }
    Ok(())
}
