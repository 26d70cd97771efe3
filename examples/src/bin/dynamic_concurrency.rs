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
    // Every reading, kept for the check at the end.
    let readings = std::cell::RefCell::new(Vec::new());
    let report = |label: &'static str| {
        let concurrency = pool.max_concurrency();
        readings.borrow_mut().push((label, concurrency));
        println!(
            "{:>5} ms  {label:<10} concurrency {concurrency:>2}  done {:>4}",
            start.elapsed().as_millis(),
            pool.stats().completed
        );
    };
    // The scaler steps when a signal changes and then once per 100 ms cooldown, so each phase
    // is read halfway between two steps (at 50, 150, ... ms into it): a reading taken on a step
    // would race it and show two steps at once, or none.
    let phase = async |label: &'static str| {
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

    // What this example shows, checked (CI runs it with its output discarded), without
    // timing the steps, which a busy machine may delay: the pool grew while `load.high` held,
    // shrank below that peak while `load.low` held, never left 1..=32, and with no signal
    // left it no longer changes (checked over one more cooldown and a half).
    let (changes, limit) = (scaler.changes(), pool.max_concurrency());
    sleep(Duration::from_millis(150)).await;
    let still = (scaler.changes(), pool.max_concurrency());
    pool.cancel();
    let readings = readings.into_inner();
    let during = |phase: &str| -> Vec<usize> {
        readings
            .iter()
            .filter(|(label, _)| *label == phase)
            .map(|(_, c)| *c)
            .collect()
    };
    let (high, low) = (during("load.high"), during("load.low"));
    let peak = high.iter().copied().max().unwrap_or(0);
    let trough = low.iter().copied().min().unwrap_or(usize::MAX);
    let in_bounds = readings.iter().all(|(_, c)| (1..=32).contains(c));
    if peak <= 2 || trough >= peak || !in_bounds || still != (changes, limit) {
        return Err(format!(
            "expected growth under load.high, shrinking under load.low, limits within 1..=32 \
             and no change without a signal; saw {high:?} under load.high, {low:?} under \
             load.low, {changes} changes at limit {limit} then {} at {}",
            still.0, still.1
        )
        .into());
    }
    Ok(())
}
