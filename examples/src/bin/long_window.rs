//! A long-window configuration: a sink that remembers an hour of signals and a coordinator
//! that keeps thousands of finished operations for a day, and proof that both stay bounded.
//!
//! Long windows are for audit-style questions ("how many payment errors in the last hour?",
//! "what did operation 1234 do this morning?"). The bounds are what keep them safe: the sink
//! never holds more than its capacity, the coordinator never more than `max_tracked` finished
//! operations, whatever the age limits say. The run uses tokio's paused clock, so an hour
//! passes instantly.
//!
//! `cargo run -p ephemeral-examples --bin long_window`; it finishes at once.

use std::convert::Infallible;
use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, Signal, SignalSink, SinkOptions};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hour = Duration::from_secs(3600);
    let sink = SignalSink::new(
        SinkOptions::default()
            .capacity(50_000)
            .max_age(hour)
            .max_idle_names(2_000),
    )?;
    let coordinator = EphemeralWorkCoordinator::new(
        |n: u64, ctx| async move {
            if n.is_multiple_of(10) {
                let _ = ctx.signal("error.payment.declined");
            }
            Ok::<_, Infallible>(())
        },
        EphemeralOptions::default()
            .max_concurrency(8)
            .max_tracked(5_000)
            .max_lifetime(Duration::from_secs(24 * 3600))
            .signals(sink.clone()),
    )?;

    // Two hours of traffic: 100 operations and a few hundred signals per simulated minute.
    for minute in 0..120u64 {
        for i in 0..100 {
            coordinator.enqueue(minute * 100 + i).await?;
        }
        for i in 0..300 {
            sink.raise_with(Signal::build("request.served")?.key(format!("customer-{}", i % 40)))?;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        if minute % 30 == 29 {
            let stats = sink.stats();
            println!(
                "after {:>3} min: sink live {:>6} (cap 50,000), errors in the last hour {:>4}; coordinator tracked {:>5} (cap 5,000), evicted {:>5}",
                minute + 1,
                stats.live,
                sink.count("error.*"),
                coordinator.stats().tracked,
                coordinator.stats().evicted
            );
        }
    }
    coordinator.drain().await?;

    let stats = sink.stats();
    println!(
        "done: {} signals raised, {} live, {} evicted by capacity, {} expired by age",
        stats.raised, stats.live, stats.evicted, stats.expired
    );
    // What this example shows, checked (CI runs it with its output discarded): both windows
    // stayed within their bounds after two hours of traffic, the hour limit really dropped
    // old signals (so "errors in the last hour" counts at most an hour's 600), and the
    // coordinator evicted its oldest finished operations.
    let (tracked, evicted) = (coordinator.stats().tracked, coordinator.stats().evicted);
    let errors = sink.count("error.*");
    if stats.live > 50_000 || tracked > 5_000 || stats.expired == 0 || errors > 600 || evicted == 0
    {
        return Err(format!(
            "expected at most 50,000 live signals, at most 5,000 tracked operations, signals \
             expired by age, at most 600 errors in the last hour and operations evicted; saw \
             {} live, {tracked} tracked, {} expired, {errors} errors, {evicted} evicted",
            stats.live, stats.expired
        )
        .into());
    }
    Ok(())
}
