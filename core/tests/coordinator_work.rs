//! The work coordinator: intake, limits, window, lifecycle.

mod coordinator_support;

use std::convert::Infallible;
use std::time::Duration;

use coordinator_support::{Gauge, assert_adds_up, settle};
use ephemeral::{
    CancelReason, CoordinatorError, EnqueueError, EphemeralOptions, EphemeralWorkCoordinator,
    OperationContext, OperationState, PinError, SignalSink,
};

fn sleeper(
    gauge: Gauge,
) -> impl Fn(u64, OperationContext) -> futures::future::BoxFuture<'static, Result<(), Infallible>>
+ Send
+ Sync
+ 'static {
    move |ms: u64, _ctx| {
        let gauge = gauge.clone();
        Box::pin(async move {
            let _in = gauge.enter();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })
    }
}

/// A coordinator whose bodies each wait for one permit of the returned gate: items run
/// only as the test lets them.
fn gated<T: Send + 'static>(
    options: EphemeralOptions,
) -> (
    EphemeralWorkCoordinator<T>,
    std::sync::Arc<tokio::sync::Semaphore>,
) {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let body_gate = gate.clone();
    let c = EphemeralWorkCoordinator::new(
        move |_item: T, _ctx| {
            let gate = body_gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(())
            }
        },
        options,
    )
    .unwrap();
    (c, gate)
}

#[tokio::test(start_paused = true)]
async fn every_item_completes_and_stats_add_up() {
    let gauge = Gauge::default();
    let c = EphemeralWorkCoordinator::new(
        sleeper(gauge.clone()),
        EphemeralOptions::default().max_concurrency(4),
    )
    .unwrap();
    for i in 0..100 {
        c.enqueue(i % 7).await.unwrap();
    }
    c.drain().await.unwrap();
    let stats = c.stats();
    assert_eq!(stats.accepted, 100);
    assert_eq!(stats.completed, 100);
    assert_adds_up(&stats);
    assert!(gauge.peak() <= 4, "peak {}", gauge.peak());
    assert_eq!(gauge.peak(), 4);
    assert!(c.is_done());
}

#[tokio::test(start_paused = true)]
async fn peak_never_exceeds_limit_even_right_after_lowering() {
    let gauge = Gauge::default();
    let c = EphemeralWorkCoordinator::new(
        sleeper(gauge.clone()),
        EphemeralOptions::default()
            .max_concurrency(8)
            .max_pending(1000),
    )
    .unwrap();
    for _ in 0..200 {
        c.enqueue(10).await.unwrap();
    }
    settle().await;
    assert_eq!(gauge.now(), 8);
    c.set_max_concurrency(2).unwrap();
    // The 8 running bodies finish; from then on at most 2 run.
    tokio::time::sleep(Duration::from_millis(11)).await;
    settle().await;
    gauge.reset_peak();
    assert!(gauge.now() <= 2, "running {} after lowering", gauge.now());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(gauge.peak() <= 2, "peak {} after lowering", gauge.peak());
    c.set_max_concurrency(5).unwrap();
    settle().await;
    assert_eq!(gauge.now(), 5);
    c.drain().await.unwrap();
    assert!(gauge.peak() <= 5);
    assert_eq!(c.stats().completed, 200);
}

#[tokio::test(start_paused = true)]
async fn try_enqueue_gives_the_item_back() {
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_pending(2),
    )
    .unwrap();
    c.pause();
    c.try_enqueue(1).unwrap();
    c.try_enqueue(2).unwrap();
    match c.try_enqueue(3) {
        Err(EnqueueError::Full(item)) => assert_eq!(item, 3),
        other => panic!("expected Full, got {other:?}"),
    }
    c.complete();
    match c.try_enqueue(4) {
        Err(EnqueueError::Closed(item)) => assert_eq!(item, 4),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(matches!(c.enqueue(5).await, Err(EnqueueError::Closed(5))));
    c.resume();
    c.drain().await.unwrap();
    assert_eq!(c.stats().completed, 2);
}

#[tokio::test(start_paused = true)]
async fn enqueue_many_after_complete_gives_every_item_back() {
    let c = EphemeralWorkCoordinator::new(sleeper(Gauge::default()), EphemeralOptions::default())
        .unwrap();
    c.enqueue_many([1]).await.unwrap();
    c.complete();
    let err = c.enqueue_many([2, 3]).await.unwrap_err();
    assert!(err.accepted.is_empty());
    assert!(matches!(err.refused, EnqueueError::Closed(ref items) if *items == [2, 3]));
    assert_eq!(err.into_inner(), [2, 3]);
    c.drain().await.unwrap();
    assert_eq!(c.stats().accepted, 1);
}

/// After `complete()` every enqueue fails at once, also while an intake stream (which may
/// still feed) keeps the room open and the room is full: `enqueue`, `enqueue_many` and
/// `reserve` used to wait for room (for good, here: the coordinator is paused), and so did
/// the calls already waiting when `complete()` came.
#[tokio::test(start_paused = true)]
async fn enqueue_after_complete_fails_at_once_while_an_intake_runs() {
    use futures::{FutureExt, StreamExt};
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default().max_pending(1),
    )
    .unwrap();
    c.pause();
    c.intake(futures::stream::iter([1u64]).chain(futures::stream::pending()));
    settle().await;
    assert_eq!(c.pending_count(), 1, "the room is full");
    let (c2, c3) = (c.clone(), c.clone());
    let waiting_enqueue = tokio::spawn(async move { c2.enqueue(2).await });
    let waiting_reserve = tokio::spawn(async move { c3.reserve().await.map(drop) });
    settle().await;
    assert!(!waiting_enqueue.is_finished() && !waiting_reserve.is_finished());
    c.complete();
    settle().await;
    assert!(matches!(
        waiting_enqueue.now_or_never().map(Result::unwrap),
        Some(Err(EnqueueError::Closed(2)))
    ));
    assert!(matches!(
        waiting_reserve.now_or_never().map(Result::unwrap),
        Some(Err(EnqueueError::Closed(())))
    ));
    assert!(matches!(
        c.enqueue(3).now_or_never(),
        Some(Err(EnqueueError::Closed(3)))
    ));
    let refused = c.enqueue_many([4, 5]).now_or_never().unwrap().unwrap_err();
    assert_eq!(refused.into_inner(), [4, 5]);
    assert!(matches!(
        c.reserve().now_or_never(),
        Some(Err(EnqueueError::Closed(())))
    ));
    assert_eq!(c.stats().accepted, 1);
}

#[tokio::test(start_paused = true)]
async fn enqueue_waits_for_room() {
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_pending(1),
    )
    .unwrap();
    c.enqueue(100).await.unwrap(); // taken by the worker once it runs
    settle().await;
    c.enqueue(100).await.unwrap(); // pending
    let c2 = c.clone();
    let waiter = tokio::spawn(async move { c2.enqueue(100).await });
    settle().await;
    assert!(!waiter.is_finished(), "enqueue should wait for room");
    tokio::time::sleep(Duration::from_millis(101)).await;
    assert!(waiter.await.unwrap().is_ok());
    c.drain().await.unwrap();
    assert_eq!(c.stats().completed, 3);
}

/// Room is exact through many rounds: `max_pending` items wait besides the running ones
/// (never more, never fewer), `try_enqueue` is refused only when they do, and a waiting
/// `enqueue` gets in as soon as one of them starts.
#[tokio::test(start_paused = true)]
async fn room_is_exact_through_many_rounds() {
    let (c, gate) = gated::<u32>(
        EphemeralOptions::default()
            .max_concurrency(2)
            .max_pending(3)
            .max_tracked(10_000),
    );
    for round in 0..40u32 {
        // Fill: exactly 3 wait besides the 2 running.
        while c.try_enqueue(round).is_ok() {}
        settle().await;
        while c.try_enqueue(round).is_ok() {}
        assert_eq!(c.pending_count(), 3, "round {round}");
        assert_eq!(c.running().len(), 2, "round {round}");
        assert!(matches!(c.try_enqueue(round), Err(EnqueueError::Full(_))));
        // A waiting enqueue gets in when one item finishes and the next starts.
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { c2.enqueue(round).await });
        settle().await;
        assert!(!waiter.is_finished(), "round {round}: no room yet");
        gate.add_permits(1);
        settle().await;
        let got_in = tokio::time::timeout(Duration::from_secs(60), waiter).await;
        assert!(
            matches!(got_in, Ok(Ok(Ok(_)))),
            "round {round}: the waiting enqueue got in"
        );
        assert_eq!(c.pending_count(), 3, "round {round}");
        // Let a few more finish, so room comes back in varying amounts.
        gate.add_permits((round % 4) as usize);
        settle().await;
    }
    gate.add_permits(10_000);
    c.drain().await.unwrap();
    let stats = c.stats();
    assert_eq!(stats.completed, stats.accepted);
    assert_adds_up(&stats);
}

#[tokio::test(start_paused = true)]
async fn reserve_in_select_loses_nothing() {
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_pending(1),
    )
    .unwrap();
    c.pause();
    let mut lost = 0;
    for round in 0..10u64 {
        let item = 0; // a body that finishes at once, so the room comes back while paused
        tokio::select! {
            biased;
            () = std::future::ready(()), if round % 2 == 0 => { lost += 1; }
            permit = c.reserve() => { permit.unwrap().send(item).unwrap(); c.resume(); settle().await; c.pause(); }
        }
    }
    c.resume();
    c.drain().await.unwrap();
    // Every round where the reserve branch won, its item was accepted; none vanished.
    assert_eq!(c.stats().accepted + lost, 10);
    assert_eq!(c.stats().completed, 5);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_permit_gives_room_back() {
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default().max_pending(1),
    )
    .unwrap();
    c.pause();
    let permit = c.reserve().await.unwrap();
    assert!(matches!(c.try_enqueue(1), Err(EnqueueError::Full(1))));
    drop(permit);
    assert!(c.try_enqueue(2).is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_body_is_recorded_failed_and_the_worker_carries_on() {
    let c = EphemeralWorkCoordinator::new(
        |n: u32, _ctx: OperationContext| async move {
            if n == 2 {
                panic!("boom on {n}");
            }
            if n == 3 {
                return Err("plain error");
            }
            Ok(())
        },
        EphemeralOptions::default().max_concurrency(1),
    )
    .unwrap();
    c.enqueue_many([1, 2, 3, 4]).await.unwrap();
    c.drain().await.unwrap();
    let stats = c.stats();
    assert_eq!((stats.completed, stats.failed, stats.panicked), (2, 2, 1));
    let failed = c.failed();
    assert_eq!(failed[0].error.as_deref(), Some("boom on 2"));
    assert!(failed[0].panicked);
    assert_eq!(failed[1].error.as_deref(), Some("plain error"));
    assert!(!failed[1].panicked);
}

#[test]
fn creating_outside_a_runtime_is_a_typed_error() {
    let r = EphemeralWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default(),
    );
    assert!(matches!(r, Err(CoordinatorError::NoRuntime)));
}

/// An empty or blank `name` or `id` is refused: a span or a `coordinator.drain.id` signal
/// could not tell it from nothing (both were accepted).
#[tokio::test(start_paused = true)]
async fn a_blank_name_or_id_is_a_typed_error() {
    for (options, option) in [
        (EphemeralOptions::default().name(""), "`name`"),
        (EphemeralOptions::default().name(" \t"), "`name`"),
        (EphemeralOptions::default().id(""), "`id`"),
        (EphemeralOptions::default().id("  "), "`id`"),
    ] {
        let body = |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) };
        let err = EphemeralWorkCoordinator::new(body, options).unwrap_err();
        assert!(err.to_string().contains(option), "{err}");
        assert!(
            err.to_string().contains("empty or only whitespace"),
            "{err}"
        );
    }
    let body = |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) };
    let named = EphemeralOptions::default().name("orders").id("orders-1");
    assert!(EphemeralWorkCoordinator::new(body, named).is_ok());
}

#[tokio::test(start_paused = true)]
async fn bad_options_are_typed_errors() {
    let r = EphemeralWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default().max_tracked(0),
    );
    let err = r.unwrap_err();
    assert!(err.to_string().contains("max_tracked"), "{err}");
    // A count past what the room's semaphore holds is refused, not a panic; the largest
    // one allowed works.
    let body = |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) };
    let err =
        EphemeralWorkCoordinator::new(body, EphemeralOptions::default().max_pending(usize::MAX))
            .unwrap_err();
    assert!(err.to_string().contains("max_pending"), "{err}");
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default().max_pending(ephemeral::MAX_PENDING),
    )
    .unwrap();
    c.enqueue(1).await.unwrap();
    c.drain().await.unwrap();
    assert_eq!(c.stats().completed, 1);
}

/// Every option at the top of its range (`usize::MAX` counts, `Duration::MAX` times) is
/// accepted and works: no overflow in deadline arithmetic, no allocation sized by a count,
/// and each item still ends in one terminal state.
#[tokio::test(start_paused = true)]
async fn options_at_the_top_of_their_range_work() {
    let sink = SignalSink::default();
    let options = EphemeralOptions::default()
        .signals(sink.clone())
        .max_concurrency(usize::MAX)
        .max_tracked(usize::MAX)
        .max_lifetime(Duration::MAX)
        .fairness_threshold(usize::MAX)
        .per_key_concurrency(usize::MAX)
        .abort_grace(Duration::MAX)
        .echo(true, Duration::MAX, usize::MAX)
        .defer_on("maintenance")
        .max_defer(Duration::MAX, ephemeral::DeferPolicy::Cancel)
        .sample(Duration::MAX, |_| {})
        .on_evicted(|_| {});
    let (c, gate) = gated::<u32>(options);
    let hold = sink.hold("maintenance").unwrap();
    let held = c.enqueue(0).await.unwrap();
    tokio::time::sleep(Duration::from_secs(86_400 * 365)).await;
    let state = |id| c.operation(id).map(|op| op.state);
    assert_eq!(state(held), Some(OperationState::Deferred));
    drop(hold);
    let ids = c.enqueue_many(1..=50).await.unwrap();
    settle().await;
    assert_eq!(c.stats().running, 51, "no limit short of usize::MAX");
    gate.add_permits(51);
    settle().await;
    assert_eq!(c.stats().completed, 51);
    assert!(c.evict(ids[0]));
    assert_eq!(c.echoes().len(), 1);
    c.set_max_concurrency(usize::MAX).unwrap();
    // A body ignoring its token with a grace of `Duration::MAX` is never aborted: it runs
    // until the coordinator's handle goes, and `drain_timeout` says so.
    let stuck = c.enqueue(99).await.unwrap();
    settle().await;
    c.cancel();
    let still = c
        .drain_timeout(Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert_eq!(still.iter().map(|op| op.id).collect::<Vec<_>>(), [stuck]);
    assert_adds_up(&c.stats());
}

#[tokio::test(start_paused = true)]
async fn the_window_bound_holds_and_pins_survive() {
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default()
            .max_concurrency(2)
            .max_tracked(10),
    )
    .unwrap();
    let first = c.enqueue(0).await.unwrap();
    c.pin(first).unwrap(); // pinned before it started
    for _ in 0..50 {
        c.enqueue(1).await.unwrap();
    }
    c.drain().await.unwrap();
    let snap = c.snapshot();
    assert_eq!(
        snap.len(),
        10,
        "window holds max_tracked finished operations"
    );
    assert!(snap.iter().any(|s| s.id == first && s.pinned));
    let stats = c.stats();
    assert_eq!(stats.evicted, 41);
    assert_eq!(stats.tracked, 10);
    assert_adds_up(&stats);
}

#[tokio::test(start_paused = true)]
async fn pins_count_against_the_bound() {
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default().max_tracked(2),
    )
    .unwrap();
    c.pause();
    let a = c.enqueue(1).await.unwrap();
    let b = c.enqueue(1).await.unwrap();
    let d = c.enqueue(1).await.unwrap();
    c.pin(a).unwrap();
    c.pin(b).unwrap();
    let err = c.pin(d).unwrap_err();
    assert!(matches!(err, PinError::TooMany { max: 2 }));
    assert!(err.to_string().contains("unpin some first"), "{err}");
    let unknown = c
        .pin(ephemeral::OperationId::from_raw(u64::MAX))
        .unwrap_err();
    assert!(
        unknown.to_string().contains("right after enqueue"),
        "{unknown}"
    );
    assert!(c.unpin(a));
    c.pin(d).unwrap();
}

/// Everything below finishes in one tick of the paused clock: only the finish order can say
/// which operation is oldest.
#[tokio::test(start_paused = true)]
async fn unpin_puts_an_operation_back_in_finish_order() {
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_tracked(3),
    )
    .unwrap();
    let a = c.enqueue(0).await.unwrap();
    c.pin(a).unwrap();
    let b = c.enqueue(0).await.unwrap();
    let d = c.enqueue(0).await.unwrap();
    settle().await;
    assert!(c.unpin(a));
    // `a` finished first, so it is the oldest: the next finish evicts it, not `b`.
    let e = c.enqueue(0).await.unwrap();
    c.drain().await.unwrap();
    let ids: Vec<_> = c.snapshot().iter().map(|s| s.id).collect();
    assert_eq!(ids, [b, d, e]);
}

#[tokio::test(start_paused = true)]
async fn finished_operations_age_out_from_their_finish() {
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default().max_lifetime(Duration::from_secs(10)),
    )
    .unwrap();
    c.enqueue(5_000).await.unwrap();
    c.drain().await.unwrap();
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(
        c.completed().len(),
        1,
        "age counts from the finish, not the enqueue"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(c.completed().is_empty());
    assert_eq!(c.stats().evicted, 1);
}

#[tokio::test(start_paused = true)]
async fn evicted_operations_leave_an_echo_of_their_signals() {
    let sink = SignalSink::default();
    let c = EphemeralWorkCoordinator::new(
        |n: u32, ctx: OperationContext| async move {
            if n == 0 {
                ctx.signal("error.first").unwrap();
            }
            Ok::<_, Infallible>(())
        },
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_tracked(1)
            .signals(sink.clone())
            .echo(true, Duration::from_secs(30), 16),
    )
    .unwrap();
    let first = c.enqueue(0).await.unwrap();
    c.enqueue(1).await.unwrap();
    c.drain().await.unwrap();
    assert!(c.operation(first).is_none(), "evicted");
    let echoes = c.echoes();
    assert_eq!(echoes.len(), 1);
    assert_eq!(echoes[0].id, first);
    assert_eq!(echoes[0].signals[0].name().as_str(), "error.first");
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(c.echoes().len(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(c.echoes().is_empty());
}

/// Operations that raised nothing leave an echo too, with their outcome; echoes keep their
/// own count and age bounds.
#[tokio::test(start_paused = true)]
async fn every_evicted_operation_leaves_an_echo_with_its_outcome() {
    let c = EphemeralWorkCoordinator::new(
        |n: u32, _ctx: OperationContext| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if n == 1 { Err("bad input") } else { Ok(()) }
        },
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_tracked(1)
            .echo(true, Duration::from_secs(30), 2),
    )
    .unwrap();
    let start = tokio::time::Instant::now();
    let ids = c.enqueue_many([0, 1, 2, 3]).await.unwrap();
    c.drain().await.unwrap();
    // Three were evicted; the echo capacity of 2 keeps the last two.
    assert_eq!(c.stats().evicted, 3);
    let echoes = c.echoes();
    assert_eq!(echoes.iter().map(|e| e.id).collect::<Vec<_>>(), ids[1..3]);
    assert_eq!(echoes[0].state, OperationState::Failed);
    assert_eq!(echoes[0].error.as_deref(), Some("bad input"));
    assert_eq!(echoes[0].finished, start + Duration::from_millis(20));
    assert!(echoes[0].signals.is_empty());
    assert_eq!(echoes[1].state, OperationState::Completed);
    assert_eq!(echoes[1].error, None);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(c.echoes().is_empty(), "echoes age out");
}

/// `on_evicted` fires once for each operation that leaves the window, by count, by age or
/// by `evict`, and never for a pinned or running one.
#[tokio::test(start_paused = true)]
async fn on_evicted_fires_once_per_operation_leaving_the_window() {
    let evicted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = evicted.clone();
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default()
            .max_concurrency(2)
            .max_tracked(2)
            .max_lifetime(Duration::from_secs(10))
            .on_evicted(move |op| {
                assert!(op.state.is_finished());
                seen.lock().unwrap().push(op.id);
            }),
    )
    .unwrap();
    let evicted_ids = || evicted.lock().unwrap().clone();
    let long = c.enqueue(60_000).await.unwrap();
    let a = c.enqueue(0).await.unwrap();
    c.pin(a).unwrap();
    let b = c.enqueue(0).await.unwrap();
    let d = c.enqueue(0).await.unwrap();
    let e = c.enqueue(0).await.unwrap();
    settle().await;
    // Pins count against the bound of 2: one unpinned finished operation stays.
    assert_eq!(evicted_ids(), [b, d], "by count, oldest finish first");
    assert!(!c.evict(a), "a pinned operation is not evicted");
    assert!(!c.evict(long), "a running operation is not evicted");
    assert!(c.evict(e));
    assert_eq!(evicted_ids(), [b, d, e], "by evict");
    assert!(c.unpin(a));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(c.stats().evicted, 4);
    assert_eq!(evicted_ids(), [b, d, e, a], "by age");
    c.cancel();
    c.drain().await.unwrap();
    // `long` finished (cancelled) and stays in the window: not reported.
    assert_eq!(evicted_ids(), [b, d, e, a]);
    assert!(c.operation(long).is_some());
}

/// With tracking off, finished operations leave the window at once and leave no echo (the
/// decision `tracking`'s doc states), yet `on_finalized` and `on_evicted` still fire once per
/// operation and the counters add up.
#[tokio::test(start_paused = true)]
async fn with_tracking_off_no_echoes_are_kept_but_the_callbacks_fire() {
    let finalized = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let evicted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (f, e) = (finalized.clone(), evicted.clone());
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default()
            .tracking(false)
            .on_finalized(move |op| f.lock().unwrap().push(op.id))
            .on_evicted(move |op| e.lock().unwrap().push(op.id)),
    )
    .unwrap();
    let ids = c.enqueue_many([0, 5, 10]).await.unwrap();
    c.drain().await.unwrap();
    assert!(c.echoes().is_empty(), "no echoes with tracking off");
    assert!(ids.iter().all(|id| c.operation(*id).is_none()));
    let mut seen = finalized.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ids, "on_finalized once per operation");
    let mut gone = evicted.lock().unwrap().clone();
    gone.sort();
    assert_eq!(gone, ids, "on_evicted once per operation");
    let stats = c.stats();
    assert_eq!((stats.completed, stats.evicted, stats.echoes), (3, 3, 0));
    assert_adds_up(&stats);
}

/// The ids `on_evicted` was called with, in order.
type Evicted = std::sync::Arc<std::sync::Mutex<Vec<ephemeral::OperationId>>>;

/// A sleeper coordinator with `options` and a 10 s `max_lifetime`, whose `on_evicted` records
/// into `evicted`.
fn evicting_after_10s(
    options: EphemeralOptions,
    evicted: &Evicted,
) -> EphemeralWorkCoordinator<u64> {
    let seen = evicted.clone();
    EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        options
            .max_lifetime(Duration::from_secs(10))
            .on_evicted(move |op| seen.lock().unwrap().push(op.id)),
    )
    .unwrap()
}

/// With `on_evicted` set, an operation leaves by age at its due time whether or not anything
/// touches the coordinator: while it is idle, and once it is done.
#[tokio::test(start_paused = true)]
async fn with_on_evicted_set_operations_leave_by_age_on_time_untouched() {
    let evicted = Evicted::default();
    let c = evicting_after_10s(EphemeralOptions::default().drain_signals(false), &evicted);
    let evicted_ids = || evicted.lock().unwrap().clone();
    let a = c.enqueue(0).await.unwrap();
    settle().await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let b = c.enqueue(0).await.unwrap();
    settle().await;
    // From here on nothing calls the coordinator until it is done.
    tokio::time::advance(Duration::from_millis(4_900)).await;
    settle().await;
    assert!(evicted_ids().is_empty(), "nothing is due before 10 s");
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    assert_eq!(evicted_ids(), [a], "`a` is due at 10 s");
    c.drain().await.unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(
        evicted_ids(),
        [a, b],
        "`b` is due at 15 s, the coordinator done"
    );
    assert!(c.operation(b).is_none());
    assert_eq!(c.stats().evicted, 2);
}

/// After `cancel` the window is still swept on time while a handle lives; once the last
/// handle is gone nothing more is reported.
#[tokio::test(start_paused = true)]
async fn age_sweeps_go_on_after_cancel_and_stop_with_the_last_handle() {
    let evicted = Evicted::default();
    let c = evicting_after_10s(EphemeralOptions::default(), &evicted);
    let a = c.enqueue(0).await.unwrap();
    settle().await;
    c.cancel();
    c.drain().await.unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    settle().await;
    assert_eq!(*evicted.lock().unwrap(), [a]);
    let b = c.enqueue(0).await;
    assert!(b.is_err(), "cancelled: no more items");
    let d = evicting_after_10s(EphemeralOptions::default(), &evicted);
    d.enqueue(0).await.unwrap();
    settle().await;
    drop(d);
    tokio::time::advance(Duration::from_secs(11)).await;
    settle().await;
    assert_eq!(
        *evicted.lock().unwrap(),
        [a],
        "not reported once every handle is gone"
    );
}

/// A panicking `on_finalized` or `on_evicted` callback is logged; the worker carries on.
#[tokio::test(start_paused = true)]
async fn a_panicking_callback_does_not_take_down_the_worker() {
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_tracked(1)
            .on_finalized(|_| panic!("finalized callback bug"))
            .on_evicted(|_| panic!("evicted callback bug")),
    )
    .unwrap();
    c.enqueue_many(0..5).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), c.drain())
        .await
        .expect("every item finished")
        .unwrap();
    assert_eq!(c.stats().completed, 5);
}

#[tokio::test(start_paused = true)]
async fn explicit_evict_leaves_an_echo() {
    let c = EphemeralWorkCoordinator::new(
        |_: u32, ctx: OperationContext| async move {
            ctx.signal("done.here").unwrap();
            Ok::<_, Infallible>(())
        },
        EphemeralOptions::default(),
    )
    .unwrap();
    let id = c.enqueue(0).await.unwrap();
    c.drain().await.unwrap();
    assert!(c.evict(id));
    assert!(c.operation(id).is_none());
    assert_eq!(c.echoes()[0].id, id);
}

#[tokio::test(start_paused = true)]
async fn a_body_ignoring_its_token_is_aborted_after_the_grace_period() {
    let c = EphemeralWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Infallible>(())
        },
        EphemeralOptions::default().abort_grace(Duration::from_secs(2)),
    )
    .unwrap();
    let id = c.enqueue(0).await.unwrap();
    settle().await;
    assert_eq!(c.active_count(), 1);
    c.cancel();
    tokio::time::sleep(Duration::from_millis(1999)).await;
    assert_eq!(c.active_count(), 1, "still within the grace period");
    c.drain().await.unwrap();
    let op = c.operation(id).unwrap();
    assert_eq!(op.state, OperationState::Cancelled(CancelReason::Aborted));
}

#[tokio::test(start_paused = true)]
async fn a_body_honouring_its_token_is_cancelled_with_the_reason() {
    let c = EphemeralWorkCoordinator::new(
        |_: u32, ctx: OperationContext| async move {
            ctx.token().cancelled().await;
            Err("stopped")
        },
        EphemeralOptions::default().max_concurrency(1),
    )
    .unwrap();
    let running = c.enqueue(0).await.unwrap();
    let pending = c.enqueue(1).await.unwrap();
    settle().await;
    assert!(c.cancel_operation(pending));
    assert!(c.cancel_operation(running));
    settle().await;
    let st = |id| c.operation(id).unwrap().state;
    assert_eq!(
        st(running),
        OperationState::Cancelled(CancelReason::Explicit)
    );
    assert_eq!(
        st(pending),
        OperationState::Cancelled(CancelReason::Explicit)
    );
    c.enqueue(2).await.unwrap();
    c.cancel();
    c.drain().await.unwrap();
    let stats = c.stats();
    assert_eq!(stats.cancelled, 3);
    assert_adds_up(&stats);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_cancels() {
    let sink = SignalSink::default();
    let c = EphemeralWorkCoordinator::new(
        |_: u32, ctx: OperationContext| async move {
            ctx.token().cancelled().await;
            ctx.signal("body.saw.cancel").unwrap();
            Ok::<_, Infallible>(())
        },
        EphemeralOptions::default().signals(sink.clone()),
    )
    .unwrap();
    c.enqueue(0).await.unwrap();
    settle().await;
    drop(c);
    settle().await;
    assert!(sink.has_signal("body.saw.cancel"));
}

#[tokio::test(start_paused = true)]
async fn stream_intake_completes_and_errors_surface_from_drain() {
    let c = EphemeralWorkCoordinator::new(sleeper(Gauge::default()), EphemeralOptions::default())
        .unwrap();
    c.intake(futures::stream::iter(0..20u64));
    c.drain().await.unwrap();
    assert_eq!(c.stats().completed, 20);

    let c = EphemeralWorkCoordinator::new(sleeper(Gauge::default()), EphemeralOptions::default())
        .unwrap();
    c.intake_results(futures::stream::iter(vec![
        Ok(1u64),
        Ok(2),
        Err("bad row 3"),
        Ok(4),
    ]));
    let err = c.drain().await.unwrap_err();
    assert!(err.to_string().contains("bad row 3"));
    assert_eq!(c.stats().completed, 2);
}

/// A stream that panics while the intake polls it ends the intake as a stream error does:
/// `drain` returns the panic's message (instead of waiting for good for an intake whose task
/// died), and the items taken before it run.
#[tokio::test(start_paused = true)]
async fn a_panicking_intake_stream_surfaces_from_drain() {
    let c = EphemeralWorkCoordinator::new(sleeper(Gauge::default()), EphemeralOptions::default())
        .unwrap();
    c.intake(futures::StreamExt::map(
        futures::stream::iter(0..6u64),
        |n| {
            assert!(n < 3, "row {n} is corrupt");
            n
        },
    ));
    let err = tokio::time::timeout(Duration::from_secs(600), c.drain())
        .await
        .expect("drain returned")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "intake stream failed: the intake stream panicked: row 3 is corrupt"
    );
    assert_eq!(c.stats().completed, 3);
}

#[tokio::test(start_paused = true)]
async fn is_closed_and_is_paused_report_the_lifecycle() {
    let c = EphemeralWorkCoordinator::new(sleeper(Gauge::default()), EphemeralOptions::default())
        .unwrap();
    assert!(!c.is_closed() && !c.is_paused());
    c.pause();
    assert!(c.is_paused());
    c.enqueue(10).await.unwrap();
    c.complete();
    assert!(c.is_closed(), "closed at once");
    assert!(!c.is_done(), "an item still waits");
    c.resume();
    assert!(!c.is_paused());
    c.drain().await.unwrap();
    assert!(c.is_closed() && c.is_done());

    let cancelled =
        EphemeralWorkCoordinator::new(sleeper(Gauge::default()), EphemeralOptions::default())
            .unwrap();
    cancelled.cancel();
    assert!(cancelled.is_closed());
}

#[tokio::test(start_paused = true)]
async fn drain_is_idempotent_and_awaited_by_many() {
    let c = EphemeralWorkCoordinator::new(sleeper(Gauge::default()), EphemeralOptions::default())
        .unwrap();
    c.enqueue(50).await.unwrap();
    let (a, b) = tokio::join!(c.drain(), c.drain());
    a.unwrap();
    b.unwrap();
    c.drain().await.unwrap();
    let timed = c.drain_timeout(Duration::from_secs(1)).await;
    assert!(timed.is_ok());
}

#[tokio::test(start_paused = true)]
async fn drain_timeout_returns_what_still_runs() {
    let c = EphemeralWorkCoordinator::new(sleeper(Gauge::default()), EphemeralOptions::default())
        .unwrap();
    let id = c.enqueue(10_000).await.unwrap();
    let running = c.drain_timeout(Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, id);
    // What has not started is not finished either: it is listed too.
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default().max_concurrency(1),
    )
    .unwrap();
    let id = c.enqueue(10_000).await.unwrap();
    let waiting = c.enqueue(1).await.unwrap();
    let left = c.drain_timeout(Duration::from_secs(1)).await.unwrap_err();
    let mut states: Vec<_> = left.iter().map(|s| (s.id, s.state.clone())).collect();
    states.sort_by_key(|(id, _)| *id);
    assert_eq!(
        states,
        [
            (id, OperationState::Running),
            (waiting, OperationState::Pending)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn finalized_callback_sees_every_operation() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default().on_finalized(move |snap| {
            s2.lock().unwrap().push(snap.state.clone());
        }),
    )
    .unwrap();
    c.enqueue_many([1, 2, 3]).await.unwrap();
    c.drain().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
}

/// `drain` returns only once the `on_finalized` and `on_evicted` calls of what ended have
/// returned, also when they run on another worker thread: code after `drain` (such as the
/// one-shot helpers' `Summary`, whose `cancellations` are collected by `on_finalized`) sees
/// every one. (`done` used to be published before the callbacks ran: on a multi-threaded
/// runtime `drain` returned while the last item's `on_finalized` still ran, and
/// `process_all_with_cancel` listed 99 of 100 cancellations in 3 runs of 20.) The slow
/// callbacks only widen that window; nothing here depends on how long they take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_the_callbacks_of_what_ended() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let finalized = Arc::new(AtomicUsize::new(0));
    let evicted = Arc::new(AtomicUsize::new(0));
    let (f, e) = (finalized.clone(), evicted.clone());
    let c = EphemeralWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default()
            .max_concurrency(2)
            .max_tracked(1)
            .on_finalized(move |_| {
                std::thread::sleep(Duration::from_millis(20));
                f.fetch_add(1, Ordering::SeqCst);
            })
            .on_evicted(move |_| {
                std::thread::sleep(Duration::from_millis(20));
                e.fetch_add(1, Ordering::SeqCst);
            }),
    )
    .unwrap();
    c.enqueue_many(0..4).await.unwrap();
    c.drain().await.unwrap();
    assert_eq!(finalized.load(Ordering::SeqCst), 4);
    assert_eq!(evicted.load(Ordering::SeqCst), 3);
    assert_eq!(c.stats().evicted, 3);
}

/// A burst enqueued while one worker sits idle must still fill every slot: the four bodies
/// below only finish once all four run at the same time.
#[tokio::test(start_paused = true)]
async fn a_burst_after_an_idle_spell_uses_every_slot() {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
    let c = EphemeralWorkCoordinator::new(
        move |wait: bool, _ctx| {
            let barrier = barrier.clone();
            async move {
                if wait {
                    barrier.wait().await;
                }
                Ok::<_, Infallible>(())
            }
        },
        EphemeralOptions::default().max_concurrency(4),
    )
    .unwrap();
    // One item first, so its worker finishes and waits idle.
    c.enqueue(false).await.unwrap();
    settle().await;
    for _ in 0..4 {
        c.enqueue(true).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), c.drain())
        .await
        .expect("all four bodies ran together")
        .unwrap();
    let stats = c.stats();
    assert_eq!(stats.completed, 5);
    assert_eq!(stats.peak_running, 4);
}

/// A coordinator whose body counts its runs, with one worker already waiting idle (its
/// first item done).
async fn with_an_idle_worker() -> (
    EphemeralWorkCoordinator<()>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ran = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    let c = EphemeralWorkCoordinator::new(
        move |(), _ctx| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(()) }
        },
        EphemeralOptions::default().max_concurrency(2),
    )
    .unwrap();
    c.enqueue(()).await.unwrap();
    settle().await;
    assert_eq!(c.stats().completed, 1);
    (c, ran)
}

/// An item enqueued while a worker waits is handed to that worker under the enqueue's own
/// lock: it is running when `enqueue` returns, before the worker has even woken.
#[tokio::test(start_paused = true)]
async fn an_item_enqueued_while_a_worker_waits_is_running_when_enqueue_returns() {
    let (c, ran) = with_an_idle_worker().await;
    let id = c.enqueue(()).await.unwrap();
    let op = c.operation(id).unwrap();
    assert_eq!(op.state, OperationState::Running);
    assert_eq!(op.started, Some(op.enqueued));
    assert_eq!(c.pending_count(), 0);
    c.drain().await.unwrap();
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(c.operation(id).unwrap().state, OperationState::Completed);
    assert_adds_up(&c.stats());
}

/// A job handed to a waiting worker that has not woken yet still meets a shutdown that
/// comes first: it ends cancelled, and its body never runs.
#[tokio::test(start_paused = true)]
async fn a_job_handed_to_a_waking_worker_meets_a_cancel_before_its_body() {
    let (c, ran) = with_an_idle_worker().await;
    let id = c.enqueue(()).await.unwrap();
    c.cancel();
    c.drain().await.unwrap();
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        c.operation(id).unwrap().state,
        OperationState::Cancelled(CancelReason::Shutdown)
    );
    assert_adds_up(&c.stats());
}

/// While paused nothing is handed over: an item enqueued to an idle worker stays pending
/// (the worker is not woken for nothing), and starts once resumed.
#[tokio::test(start_paused = true)]
async fn a_paused_coordinator_hands_nothing_to_its_idle_worker_until_resumed() {
    let (c, ran) = with_an_idle_worker().await;
    c.pause();
    let id = c.enqueue(()).await.unwrap();
    settle().await;
    assert_eq!(c.operation(id).unwrap().state, OperationState::Pending);
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 1);
    c.resume();
    c.drain().await.unwrap();
    assert_eq!(c.operation(id).unwrap().state, OperationState::Completed);
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(c.stats().peak_running, 1);
}

/// With every worker busy, items are accepted without the engine's lock (left in its
/// inbox); whatever looks next sees them exactly as if accepted under it: pending, in
/// order, counted, and reachable by a cancel.
#[tokio::test(start_paused = true)]
async fn items_accepted_while_every_worker_is_busy_are_seen_at_once_in_order() {
    let (c, gate) = gated::<()>(
        EphemeralOptions::default()
            .max_concurrency(2)
            .max_tracked(1000),
    );
    c.enqueue(()).await.unwrap();
    c.enqueue(()).await.unwrap();
    settle().await;
    assert_eq!(c.running().len(), 2);
    let mut ids = Vec::new();
    // More than the inbox holds (at most 128): the items past a full inbox are accepted
    // under the lock, after the section took in those left before them.
    for _ in 0..300 {
        ids.push(c.enqueue(()).await.unwrap());
    }
    assert_eq!(c.pending_count(), 300);
    let pending: Vec<_> = c
        .snapshot()
        .into_iter()
        .filter(|op| op.state == OperationState::Pending)
        .map(|op| op.id)
        .collect();
    assert_eq!(pending, ids);
    assert_eq!(c.stats().accepted, 302);
    assert!(c.cancel_operation(ids[3]));
    gate.add_permits(1000);
    c.drain().await.unwrap();
    let stats = c.stats();
    assert_eq!((stats.completed, stats.cancelled), (301, 1));
    assert_adds_up(&stats);
    assert!(matches!(
        c.operation(ids[3]).unwrap().state,
        OperationState::Cancelled(_)
    ));
}

/// The sample callback is a throttle with both edges: the first operation to finish in a
/// quiet spell at once, then the latest to finish in each interval at its end; never two
/// calls within one interval.
#[tokio::test(start_paused = true)]
async fn the_sample_callback_delivers_the_leading_and_trailing_edge() {
    let sampled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let each = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let c = {
        let (sampled, each) = (sampled.clone(), each.clone());
        EphemeralWorkCoordinator::new(
            sleeper(Gauge::default()),
            EphemeralOptions::default()
                .max_concurrency(1)
                .on_finalized(move |_| {
                    each.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                })
                .sample(Duration::from_millis(100), move |op| {
                    let at = tokio::time::Instant::now() - start;
                    sampled.lock().unwrap().push((op.id, at));
                }),
        )
        .unwrap()
    };
    // 100 items of 7 ms one after another: they finish at 7, 14, ..., 700 ms.
    let ids = c.enqueue_many(std::iter::repeat_n(7, 100)).await.unwrap();
    c.drain().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(each.load(std::sync::atomic::Ordering::Relaxed), 100);
    let sampled = sampled.lock().unwrap().clone();
    let ms = |n| Duration::from_millis(n);
    // Leading edge at 7 ms; then at the end of each interval, the latest finished by then:
    // at 107 ms the one that finished at 105 ms (the 15th), ..., at 707 ms the last one.
    let expected: Vec<_> = [
        (0, 7),
        (14, 107),
        (28, 207),
        (42, 307),
        (57, 407),
        (71, 507),
        (85, 607),
        (99, 707),
    ]
    .into_iter()
    .map(|(i, at)| (ids[i], ms(at)))
    .collect();
    assert_eq!(sampled, expected);
}

/// A burst finishing in one tick is sampled twice: its first operation at once, its last one
/// an interval later.
#[tokio::test(start_paused = true)]
async fn a_sampled_burst_delivers_its_first_and_its_last_operation() {
    let sampled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = sampled.clone();
    let c = EphemeralWorkCoordinator::new(
        sleeper(Gauge::default()),
        EphemeralOptions::default()
            .max_concurrency(1)
            .sample(Duration::from_secs(1), move |op| {
                seen.lock().unwrap().push(op.id)
            }),
    )
    .unwrap();
    let ids = c.enqueue_many([0; 10]).await.unwrap();
    c.drain().await.unwrap();
    assert_eq!(*sampled.lock().unwrap(), [ids[0]]);
    tokio::time::sleep(Duration::from_millis(999)).await;
    assert_eq!(
        *sampled.lock().unwrap(),
        [ids[0]],
        "at most one call per interval"
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(*sampled.lock().unwrap(), [ids[0], ids[9]]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        sampled.lock().unwrap().len(),
        2,
        "nothing more without new finishes"
    );
}

/// A body's token is made when it first asks: a cancel that came before must still reach it,
/// `is_cancelled` must see a cancel without a token, and a context kept past its body must
/// keep its own operation's state, whatever later operations on the same worker do.
#[tokio::test(start_paused = true)]
async fn a_cancel_reaches_a_body_that_asks_for_its_token_only_afterwards() {
    let (kept_tx, kept_rx) = std::sync::mpsc::channel::<OperationContext>();
    let kept_tx = std::sync::Mutex::new(kept_tx);
    let c = EphemeralWorkCoordinator::new(
        move |n: u32, ctx: OperationContext| {
            let kept_tx = kept_tx.lock().unwrap().clone();
            async move {
                if n == 2 {
                    ctx.token().cancelled().await;
                    return Err("stopped");
                }
                // Never asks for the token while it waits: polls the flag instead.
                while !ctx.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if n == 0 {
                    let _ = kept_tx.send(ctx);
                    return Err("stopped");
                }
                // Asked after the cancel: the token is born cancelled.
                if ctx.token().is_cancelled() {
                    Err("stopped")
                } else {
                    Ok(())
                }
            }
        },
        EphemeralOptions::default().max_concurrency(1),
    )
    .unwrap();
    let explicit = OperationState::Cancelled(CancelReason::Explicit);
    for n in 0..3 {
        let id = c.enqueue(n).await.unwrap();
        settle().await;
        assert_eq!(c.operation(id).unwrap().state, OperationState::Running);
        assert!(c.cancel_operation(id));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c.operation(id).unwrap().state, explicit, "item {n}");
    }
    // The first body's context outlived it; two later operations were cancelled since.
    let kept = kept_rx.try_recv().expect("the first body kept its context");
    assert!(kept.is_cancelled());
    assert!(kept.token().is_cancelled());
    c.drain().await.unwrap();
    assert_adds_up(&c.stats());
}

/// `OperationContext::cancelled` wakes its body on a cancel without making a token, completes
/// at once when the cancel came first, and a wait kept past its body (moved into a task of its
/// own) answers for its own operation only, not for the later ones on the same worker.
#[tokio::test(start_paused = true)]
async fn cancelled_wakes_its_own_operation_only_and_at_once_when_already_cancelled() {
    let kept_woke = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let woke = kept_woke.clone();
    let c = EphemeralWorkCoordinator::new(
        move |n: u32, ctx: OperationContext| {
            let stop = ctx.cancelled();
            let woke = woke.clone();
            async move {
                match n {
                    // Finishes at once, leaving its wait behind in a task of its own.
                    0 => {
                        tokio::spawn(async move {
                            stop.await;
                            woke.store(true, std::sync::atomic::Ordering::SeqCst);
                        });
                        Ok(())
                    }
                    // Waits for its cancel.
                    1 => {
                        stop.await;
                        Err("stopped")
                    }
                    // Ignores the cancel for a while, then asks: already cancelled.
                    _ => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        match tokio::time::timeout(Duration::ZERO, stop).await {
                            Ok(()) => Err("stopped"),
                            Err(_) => Ok(()),
                        }
                    }
                }
            }
        },
        EphemeralOptions::default().max_concurrency(1),
    )
    .unwrap();
    let explicit = OperationState::Cancelled(CancelReason::Explicit);
    let first = c.enqueue(0).await.unwrap();
    settle().await;
    assert_eq!(c.operation(first).unwrap().state, OperationState::Completed);
    for n in 1..3 {
        let id = c.enqueue(n).await.unwrap();
        settle().await;
        assert_eq!(c.operation(id).unwrap().state, OperationState::Running);
        assert!(c.cancel_operation(id));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(c.operation(id).unwrap().state, explicit, "item {n}");
    }
    // Two later operations on the same worker were cancelled; the first one never was.
    assert!(!kept_woke.load(std::sync::atomic::Ordering::SeqCst));
    c.drain().await.unwrap();
    assert_adds_up(&c.stats());
}

/// An intake whose task is dropped with its runtime (a stream that never ends, the runtime
/// shut down) is over: the coordinator can still be done, instead of waiting for good for an
/// intake that is gone.
#[test]
fn an_intake_dropped_with_its_runtime_is_over() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let c = runtime.block_on(async {
        let c =
            EphemeralWorkCoordinator::new(sleeper(Gauge::default()), EphemeralOptions::default())
                .unwrap();
        c.intake(futures::stream::pending::<u64>());
        settle().await;
        c
    });
    drop(runtime);
    c.complete();
    assert!(c.is_done(), "{:?}", c.stats());
}

/// `done()` waits for whoever completes the coordinator without completing it itself, and it
/// holds no handle: dropping the last one shuts the coordinator down and resolves it.
/// A coordinator used after its runtime ended (here from another runtime) can run nothing:
/// an item it accepts then ends `Cancelled(Shutdown)`, later enqueues fail, and an intake
/// started then is reported by `drain`. (The item used to stay pending for good, as did the
/// intake, so `drain` never returned.)
#[test]
fn a_coordinator_whose_runtime_is_gone_ends_what_it_accepts() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let first = runtime();
    let (c, fed) = first.block_on(async {
        let options = || EphemeralOptions::default().max_concurrency(2);
        let c = EphemeralWorkCoordinator::new(sleeper(Gauge::default()), options()).unwrap();
        let fed = EphemeralWorkCoordinator::new(sleeper(Gauge::default()), options()).unwrap();
        (c, fed)
    });
    drop(first);
    runtime().block_on(async {
        let id = c.enqueue(1).await.unwrap();
        assert_eq!(
            c.operation(id).unwrap().state,
            OperationState::Cancelled(CancelReason::Shutdown)
        );
        assert!(matches!(c.enqueue(2).await, Err(EnqueueError::Closed(2))));
        c.drain().await.unwrap();
        assert_adds_up(&c.stats());

        fed.intake(futures::stream::iter([1u64, 2]));
        let err = fed.drain().await.unwrap_err();
        assert!(err.to_string().contains("runtime is gone"), "{err}");
        assert_eq!(fed.stats().accepted, 0);
    });
}

#[tokio::test(start_paused = true)]
async fn done_waits_without_completing_or_keeping_the_coordinator() {
    let c = EphemeralWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    let done = tokio::spawn(c.done());
    c.enqueue(1).await.expect("accepted");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!done.is_finished(), "not done while it still takes items");
    assert!(!c.is_closed(), "done() does not complete it");
    c.complete();
    done.await.expect("resolved once done");

    let c = EphemeralWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    let done = tokio::spawn(c.done());
    tokio::task::yield_now().await;
    drop(c);
    done.await.expect("resolved when the last handle went");
}

/// `max_tracked` bounds finished operations only: pending and running ones stay in the
/// window however small it is, and cannot be evicted explicitly either.
#[tokio::test(start_paused = true)]
async fn pending_and_running_operations_are_never_evicted() {
    let (c, gate) = gated::<u32>(
        EphemeralOptions::default()
            .max_concurrency(4)
            .max_pending(4)
            .max_tracked(1),
    );
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(c.enqueue(i).await.unwrap());
    }
    settle().await;
    assert_eq!(c.snapshot().len(), 8);
    assert_eq!(c.running().len(), 4);
    assert!(!c.evict(ids[0]), "running");
    assert!(!c.evict(ids[7]), "pending");
    gate.add_permits(8);
    c.drain().await.unwrap();
    assert_eq!(c.snapshot().len(), 1);
    let stats = c.stats();
    assert_eq!((stats.evicted, stats.tracked), (7, 1));
    assert_adds_up(&stats);
}

/// Pins count against `max_tracked`: with the window full of pins, each new finish leaves
/// at once, as an echo.
#[tokio::test(start_paused = true)]
async fn with_the_window_full_of_pins_new_finishes_leave_as_echoes() {
    let (c, gate) = gated::<u32>(EphemeralOptions::default().max_tracked(2));
    let a = c.enqueue(1).await.unwrap();
    let b = c.enqueue(2).await.unwrap();
    c.pin(a).unwrap();
    c.pin(b).unwrap();
    gate.add_permits(100);
    let mut later = Vec::new();
    for i in 0..3 {
        later.push(c.enqueue(i).await.unwrap());
    }
    c.drain().await.unwrap();
    let ids: Vec<_> = c.snapshot().iter().map(|s| s.id).collect();
    assert_eq!(ids, [a, b]);
    let echoed: Vec<_> = c.echoes().iter().map(|e| e.id).collect();
    assert_eq!(echoed, later);
    assert_eq!(c.stats().evicted, 3);
}

/// Raising the limit starts waiting items at once, up to the new limit; lowering it lets
/// running bodies finish and starts nothing until the count is below it.
#[tokio::test(start_paused = true)]
async fn raising_the_limit_starts_waiting_items_at_once() {
    let (c, gate) = gated::<u32>(EphemeralOptions::default().max_concurrency(1));
    for i in 0..8 {
        c.enqueue(i).await.unwrap();
    }
    settle().await;
    assert_eq!(c.active_count(), 1);
    c.set_max_concurrency(4).unwrap();
    settle().await;
    assert_eq!(c.active_count(), 4);
    c.set_max_concurrency(2).unwrap();
    gate.add_permits(3); // three finish: one more starts, back at the new limit of 2
    settle().await;
    assert_eq!(c.active_count(), 2);
    gate.add_permits(100);
    c.drain().await.unwrap();
    let stats = c.stats();
    assert_eq!((stats.completed, stats.peak_running), (8, 4));
}

/// `complete()` also refuses the enqueues and reservations already waiting for room, with
/// their items, even though room comes free afterwards.
#[tokio::test(start_paused = true)]
async fn complete_refuses_the_enqueues_and_reserves_waiting_for_room() {
    let (c, gate) = gated::<u32>(
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_pending(1),
    );
    c.enqueue(0).await.unwrap();
    settle().await;
    c.enqueue(1).await.unwrap(); // the one pending place is taken
    let waiting = tokio::spawn({
        let c = c.clone();
        async move { c.enqueue(2).await }
    });
    let reserving = tokio::spawn({
        let c = c.clone();
        async move { c.reserve().await.map(drop) }
    });
    settle().await;
    assert!(!waiting.is_finished() && !reserving.is_finished());
    c.complete();
    gate.add_permits(10);
    assert!(matches!(
        waiting.await.unwrap(),
        Err(EnqueueError::Closed(2))
    ));
    assert!(matches!(
        reserving.await.unwrap(),
        Err(EnqueueError::Closed(()))
    ));
    c.drain().await.unwrap();
    assert_eq!(c.stats().accepted, 2);
    assert_eq!(c.stats().completed, 2);
}

/// `on_finalized` fires once for every ending (completed, failed, cancelled explicitly, by a
/// signal, by `max_defer`, by shutdown), and `on_evicted` once for each that left the window.
#[tokio::test(start_paused = true)]
async fn the_callbacks_fire_once_for_every_kind_of_ending() {
    use std::sync::{Arc, Mutex};
    type Seen = Arc<Mutex<Vec<(ephemeral::OperationId, OperationState)>>>;
    let finalized = Seen::default();
    let evicted = Seen::default();
    let sink = SignalSink::default();
    let c = EphemeralWorkCoordinator::new(
        |i: u32, ctx: OperationContext| async move {
            match i {
                1 => Err("bad"),
                2 => {
                    ctx.cancelled().await;
                    Err("stopped")
                }
                _ => Ok(()),
            }
        },
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_tracked(1)
            .signals(sink.clone())
            .cancel_on("stop")
            .defer_on("wait")
            .max_defer(Duration::from_secs(1), ephemeral::DeferPolicy::Cancel)
            .on_finalized({
                let seen = finalized.clone();
                move |s| seen.lock().unwrap().push((s.id, s.state.clone()))
            })
            .on_evicted({
                let seen = evicted.clone();
                move |s| seen.lock().unwrap().push((s.id, s.state.clone()))
            }),
    )
    .unwrap();
    c.enqueue(0).await.unwrap();
    c.enqueue(1).await.unwrap();
    settle().await;
    let explicit = c.enqueue(2).await.unwrap();
    settle().await;
    assert!(c.cancel_operation(explicit));
    settle().await;
    let stop = sink.hold("stop").unwrap();
    c.enqueue(3).await.unwrap();
    settle().await;
    drop(stop);
    let _wait = sink.hold("wait").unwrap();
    c.enqueue(4).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.pause();
    c.enqueue(5).await.unwrap();
    c.cancel();
    c.drain().await.unwrap();
    settle().await;

    let states: Vec<OperationState> = finalized
        .lock()
        .unwrap()
        .iter()
        .map(|(_, s)| s.clone())
        .collect();
    let signal = CancelReason::Signal("stop".parse().unwrap());
    assert_eq!(
        states,
        [
            OperationState::Completed,
            OperationState::Failed,
            OperationState::Cancelled(CancelReason::Explicit),
            OperationState::Cancelled(signal),
            OperationState::Cancelled(CancelReason::DeferTimeout),
            OperationState::Cancelled(CancelReason::Shutdown),
        ]
    );
    // The window keeps the last one; every other left it once.
    let finalized = finalized.lock().unwrap();
    assert_eq!(*evicted.lock().unwrap(), finalized[..5]);
    assert_eq!(c.stats().evicted, 5);
    assert_adds_up(&c.stats());
}
