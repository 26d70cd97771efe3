//! Priority lanes: a single worker, three lanes. Items queued while the coordinator is
//! paused start highest lane first, and a full lane refuses more work with a reason.
//!
//! `cargo run -p ephemeral-examples --bin priority_lanes` (finishes in well under a second).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{EnqueueError, EphemeralOptions, Lane, OperationContext, PriorityWorkCoordinator};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Arc::new(Mutex::new(Vec::new()));
    let coordinator = {
        let started = started.clone();
        PriorityWorkCoordinator::new(
            move |job: String, ctx: OperationContext| {
                let started = started.clone();
                async move {
                    let lane = ctx.key().unwrap_or("?").to_owned();
                    started
                        .lock()
                        .map_err(|_| "lock poisoned")?
                        .push(format!("{lane:<9} {job}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok::<_, &str>(())
                }
            },
            vec![
                Lane::new("payments", 10),
                Lane::new("emails", 5),
                Lane::new("reports", 0).max_depth(3),
            ],
            EphemeralOptions::default().max_concurrency(1),
        )?
    };

    // Queue a backlog while paused, lowest priority first, so the order of starts shows the
    // lanes at work rather than the order of arrival.
    coordinator.pause();
    for n in 1..=4 {
        match coordinator
            .enqueue("reports", format!("monthly report #{n}"))
            .await
        {
            Ok(_) => {}
            Err(EnqueueError::Refused { lane, reason, .. }) => {
                println!("refused: report #{n} ({lane} lane: {reason})");
            }
            Err(other) => return Err(other.to_string().into()),
        }
    }
    for n in 1..=2 {
        coordinator
            .enqueue("emails", format!("welcome email #{n}"))
            .await?;
    }
    for n in 1..=2 {
        coordinator
            .enqueue("payments", format!("charge #{n}"))
            .await?;
    }
    println!(
        "queued while paused: {} waiting",
        coordinator.pending_count()
    );
    coordinator.resume();
    coordinator.drain().await?;

    println!("started in this order:");
    for line in started.lock().map_err(|_| "lock poisoned")?.iter() {
        println!("  {line}");
    }
    Ok(())
}
