//! Graceful shutdown on Ctrl-C: stop taking work, give running jobs a deadline to finish,
//! then cancel what is left through the jobs' cancellation tokens, and report every job's
//! outcome.
//!
//! `cargo run -p ephemeral-examples --bin graceful_shutdown` simulates the Ctrl-C after
//! 300 ms so that it finishes by itself. To wait for a real Ctrl-C instead, run it with
//! `-- --real`: the shutdown future is then `tokio::signal::ctrl_c()`, exactly as a service
//! would use it.

use std::time::Duration;

use clap::Parser;
use ephemeral::{
    CancelReason, EphemeralOptions, EphemeralWorkCoordinator, OperationContext, OperationState,
};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

/// Graceful shutdown: stop taking work, give running jobs 250 ms to finish, then cancel
/// what is left through their tokens and report every job's outcome.
///
/// Without options the Ctrl-C is simulated after 300 ms, so the example finishes by itself.
#[derive(Debug, Parser)]
#[command(name = "graceful_shutdown")]
struct Args {
    /// Wait for a real Ctrl-C (`tokio::signal::ctrl_c()`) instead of simulating one.
    #[arg(long)]
    real: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let real = Args::parse().real;
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if real {
                println!("running; press Ctrl-C to shut down");
                if let Err(e) = tokio::signal::ctrl_c().await {
                    eprintln!("cannot listen for Ctrl-C ({e}); shutting down now");
                }
            } else {
                // Stands in for the Ctrl-C, so the example ends by itself.
                sleep(Duration::from_millis(300)).await;
                println!("(simulated Ctrl-C)");
            }
            shutdown.cancel();
        });
    }

    let coordinator = EphemeralWorkCoordinator::new(
        |job: u32, ctx: OperationContext| async move {
            // Short jobs finish inside the grace period; long ones (every third, 10 s) are
            // stopped by the token.
            let length = Duration::from_millis(if job.is_multiple_of(3) { 10_000 } else { 120 });
            tokio::select! {
                () = sleep(length) => Ok(()),
                () = ctx.token().cancelled() => Err(format!("job {job} stopped early, state saved")),
            }
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            // A body that ignored its token would be dropped after this long.
            .abort_grace(Duration::from_millis(500)),
    )?;

    // The producer: a job every 40 ms until shutdown.
    let mut job = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = sleep(Duration::from_millis(40)) => {
                job += 1;
                coordinator.enqueue(job).await?;
            }
        }
    }
    println!(
        "shutting down: {} running, {} waiting; no new jobs accepted",
        coordinator.active_count(),
        coordinator.pending_count()
    );

    // Graceful first: accept nothing more and give what was accepted 250 ms to finish.
    coordinator.complete();
    if let Err(unfinished) = coordinator.drain_timeout(Duration::from_millis(250)).await {
        println!(
            "{} job(s) unfinished after 250 ms: cancelling them",
            unfinished.len()
        );
        coordinator.cancel();
        coordinator.drain().await?;
    }

    let stats = coordinator.stats();
    let snapshot = coordinator.snapshot();
    println!(
        "accepted {}: completed {}, failed {}, cancelled {} (they add up: {})",
        stats.accepted,
        stats.completed,
        stats.failed,
        stats.cancelled,
        stats.accepted == stats.completed + stats.failed + stats.cancelled
    );
    for op in &snapshot {
        let outcome = match &op.state {
            OperationState::Completed => "completed".to_owned(),
            OperationState::Failed => format!("failed: {}", op.error.as_deref().unwrap_or("?")),
            OperationState::Cancelled(CancelReason::Shutdown) if op.started.is_some() => {
                "was running: stopped through its token by the shutdown".to_owned()
            }
            OperationState::Cancelled(CancelReason::Shutdown) => {
                "cancelled by the shutdown before it started".to_owned()
            }
            OperationState::Cancelled(reason) => format!("cancelled: {reason}"),
            other => format!("{other:?}"),
        };
        println!("  operation {}: {outcome}", op.id);
    }
    // What this example shows, checked (CI runs it with its output discarded): every job the
    // producer enqueued has exactly one outcome, completed or cancelled by the shutdown (a job
    // that stopped through its token is a cancellation, not a failure, and none had to be
    // aborted), and, with the simulated Ctrl-C, every 10 s job was among the cancelled: none
    // could finish in the 300 ms + 250 ms before the cancel.
    let outcomes_ok = snapshot.iter().all(|op| {
        matches!(
            op.state,
            OperationState::Completed | OperationState::Cancelled(CancelReason::Shutdown)
        )
    });
    let long_jobs = u64::from(job / 3);
    if stats.accepted != u64::from(job)
        || stats.completed + stats.failed + stats.cancelled != stats.accepted
        || snapshot.len() as u64 != stats.accepted
        || stats.failed != 0
        || !outcomes_ok
        || (!real && stats.cancelled < long_jobs)
    {
        return Err(format!(
            "expected each of the {job} jobs completed or cancelled by the shutdown, none \
             failed, at least the {long_jobs} long one(s) cancelled; saw {} accepted, {} \
             completed, {} failed, {} cancelled, {} in the snapshot, states {:?}",
            stats.accepted,
            stats.completed,
            stats.failed,
            stats.cancelled,
            snapshot.len(),
            snapshot.iter().map(|op| &op.state).collect::<Vec<_>>()
        )
        .into());
    }
    Ok(())
}
