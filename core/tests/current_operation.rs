//! `current_operation()`: what a body (and code deep inside it) sees, and what it does not.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use ephemeral::{
    EphemeralOptions, EphemeralResultCoordinator, OperationContext, OperationId, SignalSink,
    current_operation, with_operation,
};

/// What one body saw: while its closure built the future, at its first poll, after an
/// await that let other operations run, in a task it spawned plainly and in one it spawned
/// with `with_operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    building: Option<OperationId>,
    first_poll: Option<OperationId>,
    after_await: Option<OperationId>,
    spawned: Option<OperationId>,
    spawned_with: Option<OperationId>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_body_sees_its_own_operation_across_awaits() {
    let coordinator = EphemeralResultCoordinator::new(
        |turns: u64, ctx: OperationContext| {
            let building = current_operation();
            async move {
                let first_poll = current_operation();
                // Interleaves the eight bodies on both worker threads.
                for _ in 0..turns {
                    tokio::task::yield_now().await;
                }
                let after_await = current_operation();
                let spawned = tokio::spawn(async { current_operation() })
                    .await
                    .ok()
                    .flatten();
                let spawned_with =
                    tokio::spawn(with_operation(ctx.id(), async { current_operation() }))
                        .await
                        .ok()
                        .flatten();
                Ok::<_, Infallible>(Seen {
                    building,
                    first_poll,
                    after_await,
                    spawned,
                    spawned_with,
                })
            }
        },
        EphemeralOptions::default().max_concurrency(8),
    )
    .unwrap();
    let mut ids = Vec::new();
    for turns in [5, 1, 4, 2, 8, 3, 7, 6] {
        ids.push(coordinator.enqueue(turns).await.unwrap());
    }
    coordinator.drain().await.unwrap();
    for id in ids {
        let seen = coordinator.result(id).unwrap().unwrap();
        assert_eq!(
            seen,
            Seen {
                building: Some(id),
                first_poll: Some(id),
                after_await: Some(id),
                spawned: None,
                spawned_with: Some(id),
            }
        );
    }
    assert_eq!(current_operation(), None);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_body_leaves_no_operation_behind() {
    let coordinator = EphemeralResultCoordinator::new(
        |fail: bool, _ctx: OperationContext| async move {
            tokio::task::yield_now().await;
            if fail {
                panic!("boom");
            }
            Ok::<_, Infallible>(current_operation())
        },
        EphemeralOptions::default().max_concurrency(1),
    )
    .unwrap();
    coordinator.enqueue(true).await.unwrap();
    let id = coordinator.enqueue(false).await.unwrap();
    coordinator.drain().await.unwrap();
    assert_eq!(coordinator.result(id).unwrap().unwrap(), Some(id));
    assert_eq!(coordinator.stats().failed, 1);
    assert_eq!(current_operation(), None);
}

/// A listener runs synchronously inside the raise of a body, but outside its operation: what
/// it does (a log line, a reaction) is not attributed to the operation that happened to
/// raise the triggering signal. The body sees its operation again right after the raise.
#[tokio::test(start_paused = true)]
async fn listeners_run_outside_the_raising_operation() {
    let sink = SignalSink::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener_seen = seen.clone();
    let reacting = sink.clone();
    let _listener = sink.on_signal("error.*", move |_| {
        listener_seen.lock().unwrap().push(current_operation());
        reacting.raise("reaction").unwrap();
    });
    let coordinator = EphemeralResultCoordinator::new(
        |_: (), ctx: OperationContext| async move {
            ctx.signal("error.x").unwrap();
            Ok::<_, Infallible>(current_operation())
        },
        EphemeralOptions::default().signals(sink.clone()),
    )
    .unwrap();
    let id = coordinator.enqueue(()).await.unwrap();
    coordinator.drain().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [None]);
    assert_eq!(coordinator.result(id).unwrap().unwrap(), Some(id));
    assert_eq!(sink.latest("error.x").and_then(|s| s.operation()), Some(id));
    assert_eq!(sink.latest("reaction").and_then(|s| s.operation()), None);
}
