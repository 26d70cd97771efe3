//! Circuit breaker: a flaky payment service behind a breaker.
//!
//! The payment service is down from 200 ms to 900 ms. Each failed charge raises `failure`;
//! after 5 failures within a second the breaker opens and holds `circuit.open`, so the
//! coordinator (with `cancel_on("circuit.open")`) cancels new orders at once instead of
//! hammering the service. Every 250 ms (growing ×2 on each reopening) the breaker lets one
//! probe through; once a probe succeeds it closes. Runs about two seconds.

use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions, CircuitState};
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .failures_within(5, Duration::from_secs(1))
            .open_for(Duration::from_millis(250))
            .backoff(2.0, Duration::from_secs(1))
            .probes(1, 1),
    )?;
    let start = Instant::now();
    let _transitions = sink.on_signal("circuit.*", move |signal| {
        println!(
            "{:>5} ms  breaker: {}",
            start.elapsed().as_millis(),
            signal.name()
        );
    });

    let payments = EphemeralWorkCoordinator::with_admission(
        move |order: u32, ctx: OperationContext| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let t = start.elapsed();
            if t > Duration::from_millis(200) && t < Duration::from_millis(900) {
                ctx.signal("failure").map_err(|e| e.to_string())?;
                return Err(format!("order {order}: payment service unavailable"));
            }
            Ok(())
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone())
            .cancel_on("circuit.open")
            .on_finalized(breaker.observer()),
        vec![breaker.admission()],
    )?;

    for order in 0..100 {
        payments.enqueue(order).await?;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    payments.drain().await?;

    let stats = payments.stats();
    println!(
        "orders: {} charged, {} failed against the service, {} cancelled while the breaker was open",
        stats.completed, stats.failed, stats.cancelled
    );
    println!(
        "breaker opened {} times; without it, every order during the outage would have failed",
        breaker.times_opened()
    );
    // What this example shows, checked (CI runs it with its output discarded): every order
    // ended charged, failed or cancelled; the outage opened the breaker (after at least 5
    // failures), the open breaker cancelled orders instead of sending them, and a probe after
    // the outage closed it again (the outage ends at 900 ms, orders keep coming until at
    // least 1.5 s, and no open period is longer than 1 s).
    let shown = stats.completed + stats.failed + stats.cancelled == 100
        && stats.failed >= 5
        && breaker.times_opened() >= 1
        && stats.cancelled >= 1
        && breaker.state() == CircuitState::Closed;
    if !shown {
        return Err(format!(
            "the breaker did not open, cancel and close again: {} charged, {} failed, {} \
             cancelled, opened {} time(s), now {}",
            stats.completed,
            stats.failed,
            stats.cancelled,
            breaker.times_opened(),
            breaker.state()
        )
        .into());
    }
    Ok(())
}
