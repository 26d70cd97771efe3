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
    let mut refused = Vec::new();
    for n in 1..=4 {
        match coordinator
            .enqueue("reports", format!("monthly report #{n}"))
            .await
        {
            Ok(_) => {}
            Err(EnqueueError::Refused { lane, reason, .. }) => {
                println!("refused: report #{n} ({lane} lane: {reason})");
                refused.push(n);
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
    let started = started.lock().map_err(|_| "lock poisoned")?;
    for line in started.iter() {
        println!("  {line}");
    }
    // What this example shows, checked (CI runs it with its output discarded): the reports
    // lane, full at 3, refused the 4th report, and the single worker started the backlog
    // highest lane first: both payments, then both emails, then the three reports.
    let lanes: Vec<&str> = started
        .iter()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    let expected = [
        "payments", "payments", "emails", "emails", "reports", "reports", "reports",
    ];
    if refused != [4] || lanes != expected {
        return Err(format!(
            "expected report #4 refused and starts in lane order {expected:?}; \
             saw refused {refused:?} and starts {lanes:?}"
        )
        .into());
    }
    Ok(())
}
