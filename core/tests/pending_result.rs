//! `enqueue_for_result`: the result reaches its caller even when the window keeps nothing.

use ephemeral::{
    EnqueueError, EphemeralOptions, EphemeralResultCoordinator, OperationContext, PendingResult,
    ResultError,
};

fn halves(options: EphemeralOptions) -> EphemeralResultCoordinator<u32, u32> {
    EphemeralResultCoordinator::new(
        |n: u32, _ctx: OperationContext| async move {
            if n.is_multiple_of(2) {
                Ok(n / 2)
            } else {
                Err(format!("{n} is odd"))
            }
        },
        options,
    )
    .expect("coordinator")
}

#[tokio::test(start_paused = true)]
async fn results_arrive_although_the_window_keeps_none() {
    let coordinator = halves(EphemeralOptions::default().max_tracked(1));
    let mut pending = Vec::new();
    for n in [2, 4, 5, 8] {
        pending.push(coordinator.enqueue_for_result(n).await.expect("accepted"));
    }
    coordinator.drain().await.expect("drained");
    // All finished; the window kept one. `wait_for_result` cannot answer for the others...
    let first = pending[0].id();
    assert!(matches!(
        coordinator.wait_for_result(first).await,
        Err(ResultError::Unknown(id)) if id == first
    ));
    // ...their pending results can.
    let mut got = Vec::new();
    for result in pending {
        got.push(result.await.map_err(|e| e.to_string()));
    }
    assert_eq!(got[0], Ok(1));
    assert_eq!(got[1], Ok(2));
    assert!(
        got[2].as_ref().is_err_and(|e| e.contains("5 is odd")),
        "{got:?}"
    );
    assert_eq!(got[3], Ok(4));
}

#[tokio::test(start_paused = true)]
async fn a_closed_coordinator_gives_the_item_back() {
    let coordinator = halves(EphemeralOptions::default());
    coordinator.complete();
    match coordinator.enqueue_for_result(6).await {
        Err(EnqueueError::Closed(item)) => assert_eq!(item, 6),
        other => panic!("expected Closed with the item, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_coordinator_answers_cancelled() {
    let coordinator = halves(EphemeralOptions::default().max_concurrency(1));
    let gate = coordinator.enqueue_for_result(2).await.expect("accepted");
    let waiting = coordinator.enqueue_for_result(4).await.expect("accepted");
    coordinator.cancel();
    for pending in [gate, waiting] {
        match pending.await {
            Ok(_) | Err(ResultError::Cancelled { .. }) => {}
            other => panic!("expected a value or a cancellation, got {other:?}"),
        }
    }
}

/// A pending result is fused: a `select!` loop that keeps polling it after it answered (as
/// `&mut pending` lets it) sees it stay pending, and `is_terminated` says it is done; it
/// does not panic.
#[tokio::test(start_paused = true)]
async fn a_pending_result_polled_after_it_answered_stays_pending() {
    use futures::future::FusedFuture;
    use std::time::Duration;

    let coordinator = halves(EphemeralOptions::default());
    let mut pending = coordinator.enqueue_for_result(10).await.expect("accepted");
    assert!(!pending.is_terminated());
    let mut answers = Vec::new();
    let mut ticks = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while ticks < 3 {
        tokio::select! {
            answer = &mut pending => answers.push(answer.map_err(|e| e.to_string())),
            _ = tick.tick() => ticks += 1,
        }
    }
    assert_eq!(answers, vec![Ok(5)], "answered once, then pending");
    assert!(pending.is_terminated());
}

/// On a current-thread runtime: makes a coordinator, enqueues `0..items` for their results
/// and yields until `ready` holds; then drops the runtime (every task on it with it) and
/// returns the coordinator and the pending results.
fn run_then_drop_the_runtime(
    make: impl FnOnce() -> EphemeralResultCoordinator<u32, u32>,
    items: u32,
    ready: impl Fn(&EphemeralResultCoordinator<u32, u32>) -> bool,
) -> (
    EphemeralResultCoordinator<u32, u32>,
    Vec<PendingResult<u32>>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cut_off = runtime.block_on(async {
        let coordinator = make();
        let mut pending = Vec::new();
        for n in 0..items {
            pending.push(coordinator.enqueue_for_result(n).await.expect("accepted"));
        }
        while !ready(&coordinator) {
            tokio::task::yield_now().await;
        }
        (coordinator, pending)
    });
    drop(runtime);
    cut_off
}

/// Awaits each result on another runtime (one without a timer): each must say cancelled by
/// shutdown.
fn assert_cancelled_by_shutdown(pending: Vec<PendingResult<u32>>) {
    let other = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for result in pending {
        match other.block_on(result) {
            Err(ResultError::Cancelled { reason, .. }) => {
                assert!(
                    matches!(reason, ephemeral::CancelReason::Shutdown),
                    "{reason:?}"
                );
            }
            other => panic!("expected a cancelled result, got {other:?}"),
        }
    }
}

/// A result coordinator with a no-op body, concurrency 2 and `hook`.
fn with_hook(
    hook: std::sync::Arc<dyn ephemeral::Admission>,
) -> EphemeralResultCoordinator<u32, u32> {
    EphemeralResultCoordinator::with_admission(
        |n: u32, _ctx: OperationContext| async move { Ok::<_, std::convert::Infallible>(n) },
        EphemeralOptions::default().max_concurrency(2),
        vec![hook],
    )
    .expect("coordinator")
}

/// A runtime shut down under running bodies (their workers' tasks dropped mid-body) leaves
/// no operation `Running` for good: each is filed as cancelled by shutdown, and its pending
/// result says so. The item still queued ends so at once too (it used to wait for a
/// `cancel()`): a coordinator whose workers' runtime is gone can run nothing, so it is shut
/// down.
#[test]
fn bodies_cut_off_by_their_runtime_end_cancelled_and_answer() {
    let (coordinator, pending) = run_then_drop_the_runtime(
        || {
            EphemeralResultCoordinator::new(
                |n: u32, _ctx: OperationContext| async move {
                    std::future::pending::<()>().await;
                    Ok::<_, std::convert::Infallible>(n)
                },
                EphemeralOptions::default().max_concurrency(2),
            )
            .expect("coordinator")
        },
        3,
        |c| c.stats().running == 2,
    );
    let stats = coordinator.stats();
    assert_eq!(
        (stats.running, stats.cancelled, stats.pending),
        (0, 3, 0),
        "{stats:?}"
    );
    assert!(coordinator.is_closed() && coordinator.is_done());
    coordinator.cancel(); // idempotent
    let stats = coordinator.stats();
    assert_eq!((stats.cancelled, stats.pending), (3, 0), "{stats:?}");
    for op in coordinator.cancelled() {
        assert!(
            matches!(
                op.state,
                ephemeral::OperationState::Cancelled(ephemeral::CancelReason::Shutdown)
            ),
            "{op:?}"
        );
    }
    assert_cancelled_by_shutdown(pending);
}

/// An admission hook that never decides: its item waits on the worker, counted running.
#[derive(Debug)]
struct Undecided;

impl ephemeral::Admission for Undecided {
    fn admit<'a>(
        &'a self,
        _request: &'a ephemeral::AdmissionRequest,
    ) -> futures::future::BoxFuture<'a, ephemeral::Decision> {
        Box::pin(std::future::pending())
    }
}

/// As above for items whose admission hook was still deciding when the runtime went: they
/// were counted running, and end cancelled by shutdown, their results answered.
#[test]
fn items_cut_off_in_their_admission_by_their_runtime_end_cancelled_and_answer() {
    let (coordinator, pending) = run_then_drop_the_runtime(
        || with_hook(std::sync::Arc::new(Undecided)),
        2,
        |c| c.stats().running == 2,
    );
    let stats = coordinator.stats();
    assert_eq!(
        (stats.running, stats.cancelled, stats.completed),
        (0, 2, 0),
        "{stats:?}"
    );
    assert_cancelled_by_shutdown(pending);
}

/// Defers every item until a future that never completes.
#[derive(Debug)]
struct DeferForever;

impl ephemeral::Admission for DeferForever {
    fn admit<'a>(
        &'a self,
        _request: &'a ephemeral::AdmissionRequest,
    ) -> futures::future::BoxFuture<'a, ephemeral::Decision> {
        Box::pin(async { ephemeral::Decision::Defer(Box::pin(std::future::pending())) })
    }
}

/// As above for items an admission hook put aside (deferred, holding no slot) when the
/// runtime went: their waits are dropped with it, and they end cancelled by shutdown, their
/// results answered, instead of staying deferred for good.
#[test]
fn items_put_aside_by_a_hook_when_their_runtime_ends_cancelled_and_answer() {
    let (coordinator, pending) = run_then_drop_the_runtime(
        || with_hook(std::sync::Arc::new(DeferForever)),
        3,
        |c| {
            c.snapshot()
                .iter()
                .filter(|op| op.state == ephemeral::OperationState::Deferred)
                .count()
                == 3
        },
    );
    let stats = coordinator.stats();
    assert_eq!(
        (stats.pending, stats.running, stats.cancelled),
        (0, 0, 3),
        "{stats:?}"
    );
    assert_cancelled_by_shutdown(pending);
}

/// A `wait_for_result` begun before its operation finished gets the outcome even when the
/// window evicts the operation at once (two finishing in one tick with `max_tracked(1)`), and
/// however many wait for it.
#[tokio::test(start_paused = true)]
async fn a_wait_begun_before_the_finish_gets_the_outcome_even_if_evicted_at_once() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let slow = {
        let gate = gate.clone();
        EphemeralResultCoordinator::new(
            move |n: u32, _ctx: OperationContext| {
                let gate = gate.clone();
                async move {
                    let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                    if n.is_multiple_of(2) {
                        Ok(n / 2)
                    } else {
                        Err(format!("{n} is odd"))
                    }
                }
            },
            EphemeralOptions::default()
                .max_tracked(1)
                .max_concurrency(4),
        )
        .expect("coordinator")
    };
    let mut ids = Vec::new();
    for n in [2, 4, 7, 8] {
        ids.push(slow.enqueue(n).await.expect("accepted"));
    }
    // Three waiters per operation, all waiting before anything finishes.
    let mut waiters = Vec::new();
    for &id in &ids {
        for _ in 0..3 {
            let slow = slow.clone();
            waiters.push(tokio::spawn(async move {
                slow.wait_for_result(id).await.map_err(|e| e.to_string())
            }));
        }
    }
    tokio::task::yield_now().await;
    // Everything finishes at once: the window keeps only the last.
    gate.add_permits(4);
    slow.drain().await.expect("drained");
    let mut got = Vec::new();
    for waiter in waiters {
        got.push(waiter.await.expect("waiter"));
    }
    for (i, expected) in [Ok(1), Ok(2), Err("7 is odd"), Ok(4)]
        .into_iter()
        .enumerate()
    {
        for result in &got[3 * i..3 * i + 3] {
            match (&expected, result) {
                (Ok(want), Ok(value)) => assert_eq!(value, want, "{got:?}"),
                (Err(want), Err(message)) => assert!(message.contains(want), "{got:?}"),
                _ => panic!("operation {i}: expected {expected:?}, got {got:?}"),
            }
        }
    }
}

/// An idle coordinator whose runtime went away has no task there to notice: its next
/// enqueue is accepted and ends cancelled by shutdown, visibly (as the README says), and
/// the refusals after it name the runtime's shutdown among the causes (they used to say
/// "complete, drain or cancel was called", though none was).
#[test]
fn an_idle_coordinator_learns_at_its_next_enqueue_that_its_runtime_is_gone() {
    let (coordinator, pending) =
        run_then_drop_the_runtime(|| halves(EphemeralOptions::default()), 0, |_| true);
    assert!(pending.is_empty());
    let other = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let first = other
        .block_on(coordinator.enqueue_for_result(2))
        .expect("accepted");
    assert_cancelled_by_shutdown(vec![first]);
    let refused = coordinator.try_enqueue(4).unwrap_err();
    assert!(matches!(refused, EnqueueError::Closed(4)));
    assert!(
        refused.to_string().contains("the shutdown of its runtime"),
        "{refused}"
    );
    let stats = coordinator.stats();
    assert_eq!((stats.accepted, stats.cancelled), (1, 1));
}
