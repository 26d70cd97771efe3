//! Work queues in one process: push and dedupe, settle by terminal state, dead letters,
//! the janitor, deferral, a server restart.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{EphemeralOptions, OperationContext, OperationState, SignalSink};
use ephemeral_nats::Nats;
use ephemeral_nats::queue::{IntakeOptions, Job, Outcome, QueueStats, WorkQueue, WorkQueueOptions};
use ephemeral_nats::testing::NatsServer;
use futures::StreamExt;

/// Polls the queue's stats until `done` holds, failing after `within`.
async fn wait_stats(
    queue: &WorkQueue,
    within: Duration,
    done: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stats = queue.stats().await.expect("stats");
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; last stats {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ok_body()
-> impl Fn(Job, OperationContext) -> futures::future::Ready<Result<(), String>> + Send + Sync + 'static
{
    |_job: Job, _ctx: OperationContext| futures::future::ready(Ok(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_pushed_twice_is_one_job() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("dedupe", WorkQueueOptions::default())
        .await
        .unwrap();
    let first = queue.push("order-1", "a").await.unwrap();
    let second = queue.push("order-1", "a").await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.sequence, second.sequence);
    assert_eq!(queue.stats().await.unwrap().messages, 1);

    let ran = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ran);
    let (coordinator, intake) = queue
        .work_coordinator(
            move |job: Job, _ctx: OperationContext| {
                seen.lock().unwrap().push(job.id().to_owned());
                async { Ok::<_, String>(()) }
            },
            EphemeralOptions::default().max_concurrency(2),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    let stats = intake.shutdown().await;
    assert_eq!(*ran.lock().unwrap(), ["order-1"]);
    assert_eq!((stats.pulled, stats.acked), (1, 1));
    assert_eq!(coordinator.stats().completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_jobs_are_acked_and_gone() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("basic", WorkQueueOptions::default())
        .await
        .unwrap();
    for i in 0..200 {
        queue
            .push(&format!("job-{i}"), format!("{i}"))
            .await
            .unwrap();
    }
    let (coordinator, intake) = queue
        .work_coordinator(
            ok_body(),
            EphemeralOptions::default().max_concurrency(4),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    let stats = intake.shutdown().await;
    assert_eq!(
        (stats.pulled, stats.acked, stats.redelivered),
        (200, 200, 0)
    );
    assert_eq!(coordinator.stats().completed, 200);
}
