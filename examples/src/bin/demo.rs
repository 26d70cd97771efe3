//! The demo: a flaky downstream reports failures as signals, and the rest of the program reads
//! them from the sink — counting them, subscribing to them, and holding a condition while the
//! downstream is considered down.
//!
//! Run it with `cargo run --release -p ephemeral-examples --bin demo`. It finishes by itself.

use std::time::Duration;

use ephemeral::{SignalSink, SinkOptions};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::new(
        SinkOptions::default()
            .capacity(1000)
            .max_age(Duration::from_secs(2)),
    )?;

    // Someone watching every error as it happens.
    let mut errors = sink.subscribe("error.*");
    let feed = tokio::spawn(async move {
        let mut seen = 0usize;
        while let Some(item) = errors.next().await {
            match item {
                Ok(signal) => {
                    seen += 1;
                    println!(
                        "  feed: {} (key {})",
                        signal.name(),
                        signal.key().unwrap_or("-")
                    );
                }
                Err(lagged) => println!("  feed: missed {} signals", lagged.0),
            }
        }
        seen
    });

    // A downstream call that fails every third time, and times out every fifth.
    let mut down = None;
    for request in 1..=20u32 {
        let key = format!("order-{request}");
        if request % 5 == 0 {
            sink.raise_with(ephemeral::Signal::build("error.db.timeout")?.key(key.as_str()))?;
        } else if request % 3 == 0 {
            sink.raise_with(ephemeral::Signal::build("error.http.503")?.key(key.as_str()))?;
        } else {
            sink.raise_with(ephemeral::Signal::build("ok.order")?.key(key.as_str()))?;
        }
        // Three timeouts in the window: hold a condition until things recover.
        if down.is_none() && sink.count("error.db.timeout") >= 3 {
            println!("request {request}: 3 timeouts in the window, holding downstream.down");
            down = Some(sink.hold("downstream.down")?);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!(
        "errors live: {}, timeouts: {}, ok: {}, has_signal(\"error.*\"): {}",
        sink.count("error.*"),
        sink.count("error.db.timeout"),
        sink.count("ok.*"),
        sink.has_signal("error.*")
    );

    // The window forgets: after max_age nothing is live except the held condition.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    println!(
        "after 2 s: errors live: {}, downstream.down held: {}",
        sink.count("error.*"),
        sink.has_signal("downstream.down")
    );
    drop(down);
    println!(
        "released: downstream.down held: {}",
        sink.has_signal("downstream.down")
    );

    let stats = sink.stats();
    drop(sink);
    let seen = feed.await?;
    println!(
        "the feed saw {seen} errors; the sink raised {} signals in all",
        stats.raised
    );
    Ok(())
}
