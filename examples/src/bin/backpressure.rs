//! Backpressure: a fast importer feeding a slow database writer.
//!
//! The writer handles 2 rows at a time, 20 ms each. While more than 20 rows wait for it, it
//! holds `backpressure.db`; the importer (with `defer_on("backpressure.db")`) stops starting
//! new rows until fewer than 5 wait, then resumes the moment the hold is released. The
//! writer's backlog stays bounded instead of growing with the input. Runs about two seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, SignalSink};
use ephemeral_patterns::backpressure::Backpressure;
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    const HIGH: usize = 20;
    const IMPORTERS: usize = 4;
    let pressure = Backpressure::new(&sink, "db", HIGH, 5)?;
    let start = Instant::now();
    let _log = sink.on_signal("backpressure.*", move |signal| {
        println!(
            "{:>5} ms  {} held",
            start.elapsed().as_millis(),
            signal.name()
        );
    });

    let writer = EphemeralWorkCoordinator::with_admission(
        |_row: u32, _ctx| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, String>(())
        },
        EphemeralOptions::default()
            .max_concurrency(2)
            .signals(sink.clone()),
        vec![pressure.admission()],
    )?;
    let monitor = pressure.monitor(&writer)?;

    let peak = Arc::new(AtomicUsize::new(0));
    let (w, p, pk) = (writer.clone(), pressure.clone(), peak.clone());
    let importer = EphemeralWorkCoordinator::new(
        move |row: u32, _ctx| {
            let (writer, pressure, peak) = (w.clone(), p.clone(), pk.clone());
            async move {
                writer.enqueue(row).await.map_err(|e| e.to_string())?;
                pressure.report(&writer);
                peak.fetch_max(writer.pending_count(), Ordering::Relaxed);
                Ok::<_, String>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(IMPORTERS)
            .signals(sink.clone())
            .defer_on("backpressure.db"),
    )?;

    for row in 0..200 {
        importer.enqueue(row).await?;
    }
    importer.drain().await?;
    writer.drain().await?;
    drop(monitor);

    println!(
        "imported {} rows; the writer's backlog peaked at {} (high watermark 20); \
         the hold was taken {} times",
        writer.stats().completed,
        peak.load(Ordering::Relaxed),
        pressure.times_held()
    );
    // What this example shows, checked (CI runs it with its output discarded): all 200 rows
    // were written, the hold was taken, and the writer's backlog stayed bounded: above the
    // high watermark by at most the importer rows already running when the hold was taken
    // (each enqueues one row, then reports; no new one starts while the hold is live).
    let peak = peak.load(Ordering::Relaxed);
    let written = writer.stats().completed;
    if written != 200 || pressure.times_held() == 0 || peak > HIGH + IMPORTERS {
        return Err(format!(
            "expected 200 rows written, the hold taken, a backlog of at most {}; saw {written} \
             written, the hold taken {} times, a backlog of {peak}",
            HIGH + IMPORTERS,
            pressure.times_held()
        )
        .into());
    }
    Ok(())
}
