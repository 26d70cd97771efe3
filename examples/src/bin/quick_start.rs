//! Quick start: a work coordinator charging orders, a body that reports failures as signals,
//! and the rest of the program asking the sink what happened.
//!
//! `cargo run -p ephemeral-examples --bin quick_start` (finishes in well under a second);
//! add `RUST_LOG=ephemeral=debug` to see the library's log events, each in its operation's span.

use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};

#[derive(Debug)]
struct Order {
    id: u32,
    cents: u64,
}

/// A pretend payment call: large amounts are declined.
async fn charge(order: &Order) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    if order.cents > 10_000 {
        Err(format!(
            "order {}: card declined for {} cents",
            order.id, order.cents
        ))
    } else {
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // With RUST_LOG set (say RUST_LOG=ephemeral=debug), the library's spans and events go to
    // stderr; without it, nothing is installed and the output stays as it is.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            // Each span as it closes, with its fields and its busy and idle times: the
            // operation and bus spans hold no events of their own when all goes well.
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let sink = SignalSink::default();
    let coordinator = EphemeralWorkCoordinator::new(
        |order: Order, ctx: OperationContext| async move {
            if let Err(e) = charge(&order).await {
                // The signal carries this operation's id; anyone reading the sink sees it.
                ctx.signal("error.payment").map_err(|e| e.to_string())?;
                return Err(e);
            }
            Ok(())
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone()),
    )?;

    for (id, cents) in [
        (1, 2_500),
        (2, 900),
        (3, 15_000),
        (4, 4_200),
        (5, 30_000),
        (6, 120),
    ] {
        coordinator.enqueue(Order { id, cents }).await?;
    }
    println!("enqueued 6 orders (enqueue returns once accepted; at most 4 run at a time)");

    // Waits until every accepted order has ended.
    coordinator.drain().await?;

    let stats = coordinator.stats();
    println!(
        "accepted {}, completed {}, failed {}, cancelled {}",
        stats.accepted, stats.completed, stats.failed, stats.cancelled
    );
    if sink.has_signal("error.*") {
        println!(
            "the sink saw {} error signal(s) in its window:",
            sink.count("error.*")
        );
    }
    for failed in coordinator.failed() {
        println!(
            "  operation {} failed: {}",
            failed.id,
            failed.error.as_deref().unwrap_or("?")
        );
    }
    // What this example shows, checked (CI runs it with its output discarded): the two large
    // orders (3 and 5) failed, the four others were charged, and each failure left its
    // `error.payment` signal in the sink.
    let failed: Vec<String> = coordinator
        .failed()
        .iter()
        .filter_map(|op| op.error.as_deref().map(str::to_owned))
        .collect();
    let declined = |order: u32| {
        failed
            .iter()
            .any(|e| e.starts_with(&format!("order {order}:")))
    };
    if stats.completed != 4
        || stats.failed != 2
        || !declined(3)
        || !declined(5)
        || sink.count("error.payment") != 2
    {
        return Err(format!(
            "expected orders 3 and 5 to fail with an `error.payment` signal each and the 4 others \
             to complete; saw {} completed, {} failed ({failed:?}), {} `error.payment` signal(s)",
            stats.completed,
            stats.failed,
            sink.count("error.payment")
        )
        .into());
    }
    Ok(())
}
