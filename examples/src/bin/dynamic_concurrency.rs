//! Dynamic concurrency: scale a worker pool on load signals.
//!
//! A monitor says `load.high` (the downstream has headroom) for the first 600 ms and
//! `load.low` (it struggles) after that. The pool starts at 2, doubles every 100 ms cooldown
//! up to 32 while `load.high` holds, then halves down to 1 — and stops as soon as the signal
//! is gone. Runs about 1.5 seconds.

use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, SignalSink};
use ephemeral_patterns::dynamic_concurrency::{DynamicConcurrency, DynamicConcurrencyOptions};
use tokio::time::{Instant, sleep};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    let pool = EphemeralWorkCoordinator::new(
        |_job: u32, _ctx| async {
            sleep(Duration::from_millis(5)).await;
            Ok::<_, String>(())
        },
        EphemeralOptions::default()
            .max_concurrency(2)
            .max_pending(10_000)
            .signals(sink.clone()),
    )?;
    let scaler = DynamicConcurrency::start(
        &pool,
        DynamicConcurrencyOptions::new(1, 32).cooldown(Duration::from_millis(100)),
    )?;
    for job in 0..5_000 {
        pool.enqueue(job).await?;
    }

    let start = Instant::now();
    let report = |label: &str| {
        println!(
            "{:>5} ms  {label:<10} concurrency {:>2}  done {:>4}",
            start.elapsed().as_millis(),
            pool.max_concurrency(),
            pool.stats().completed
        );
    };
    // The scaler steps when a signal changes and then once per 100 ms cooldown, so each phase
    // is read halfway between two steps (at 50, 150, ... ms into it): a reading taken on a step
    // would race it and show two steps at once, or none.
    let phase = async |label: &str| {
        sleep(Duration::from_millis(50)).await;
        report(label);
        for _ in 1..6 {
            sleep(Duration::from_millis(100)).await;
            report(label);
        }
        sleep(Duration::from_millis(50)).await;
    };
    let high = sink.hold("load.high")?;
    phase("load.high").await;
    drop(high);
    let low = sink.hold("load.low")?;
    phase("load.low").await;
    drop(low);
    sleep(Duration::from_millis(200)).await;
    report("no signal");

    println!("{} changes; the limit now stays put", scaler.changes());
    pool.cancel();
    Ok(())
}
