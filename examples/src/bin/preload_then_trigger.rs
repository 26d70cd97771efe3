//! Preload, then trigger: queue work while a defer signal says "not yet", then start all of
//! it at once with a resume signal, with no polling in between. Then the same with a held
//! condition (a maintenance window) that defers work until it is released.
//!
//! `cargo run -p ephemeral-examples --bin preload_then_trigger` (finishes in about a second).

use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
use tokio::time::{Instant, sleep};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    let coordinator = EphemeralWorkCoordinator::new(
        |(batch, n): (&'static str, u32), ctx: OperationContext| async move {
            sleep(Duration::from_millis(20)).await;
            // A record of which operation did what, readable by anyone with the sink.
            ctx.signal("import.row.done").map_err(|e| e.to_string())?;
            let _ = (batch, n);
            Ok::<_, String>(())
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
    let stats = coordinator.stats();
    println!(
        "preloaded: {} waiting, {} running, {} done after 200 ms",
        stats.pending, stats.running, stats.completed
    );

    // 2. Trigger: one signal, and the whole batch starts at once.
    let trigger = Instant::now();
    sink.raise("import.go")?;
    while coordinator.stats().completed < 16 {
        sleep(Duration::from_millis(5)).await;
    }
    println!(
        "triggered: all 16 rows done {} ms after `import.go` (8 at a time, 20 ms each)",
        trigger.elapsed().as_millis()
    );

    // 3. A condition instead of an event: a held signal stays live until it is released.
    let maintenance = sink.hold("maintenance")?;
    for n in 0..4 {
        coordinator.enqueue(("nightly", n)).await?;
    }
    sleep(Duration::from_millis(150)).await;
    println!(
        "during maintenance: {} waiting, {} running",
        coordinator.stats().pending,
        coordinator.stats().running
    );
    drop(maintenance); // released: the deferred items start at once
    coordinator.drain().await?;
    let stats = coordinator.stats();
    println!(
        "after maintenance: {} completed in all, {} `import.row.done` signals in the window",
        stats.completed,
        sink.count("import.row.done")
    );
    Ok(())
}
