//! `CoordinatorService` and `CoordinatorLayer` against `tower-test` mocks.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ephemeral::{
    CancelReason, CoordinatorLayer, CoordinatorService, EphemeralOptions,
    EphemeralResultCoordinator, OperationContext, OperationState, ResultError, ServiceError,
};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock::{self, Spawn};

type Inner = mock::Mock<u32, u32>;

/// One running operation at a time and one pending slot, the inner service a mock.
fn layered() -> (CoordinatorService<u32, u32>, mock::Handle<u32, u32>) {
    let (inner, handle): (Inner, _) = mock::pair();
    let options = EphemeralOptions::default()
        .max_concurrency(1)
        .max_pending(1);
    (CoordinatorLayer::new(options).layer(inner), handle)
}

#[tokio::test]
async fn results_come_back_through_the_layer() {
    let (mut service, mut handle) = layered();
    let call = service.ready().await.expect("ready").call(20);
    let (request, respond) = handle
        .next_request()
        .await
        .expect("the body calls the inner service");
    assert_eq!(request, 20);
    respond.send_response(21);
    assert_eq!(call.await.expect("the operation's result"), 21);
    let coordinator = service.coordinator().expect("built");
    assert_eq!(coordinator.completed().len(), 1);
}

#[tokio::test]
async fn readiness_holds_a_slot_and_back_pressure_waits() {
    let (mut first, mut handle) = layered();
    // The first item runs (and stays running: the mock has not answered).
    let running = first.ready().await.expect("ready").call(1);
    let (_, respond) = handle.next_request().await.expect("first request");
    // Ready again: the one pending slot is now held by `first`.
    first.ready().await.expect("ready with a free pending slot");

    let mut second = Spawn::new(first.clone());
    assert!(second.poll_ready().is_pending(), "the only slot is held");

    // A ready service dropped gives its slot back.
    drop(first);
    match second.poll_ready() {
        Poll::Ready(Ok(())) => {}
        other => panic!("expected ready after the slot came back, got {other:?}"),
    }
    let mut second = second.into_inner();
    let queued = second.call(2);
    let mut third = Spawn::new(second.clone());
    assert!(
        third.poll_ready().is_pending(),
        "one running, one pending: no room"
    );

    respond.send_response(10);
    assert_eq!(running.await.expect("first result"), 10);
    let (request, respond) = handle.next_request().await.expect("second request");
    assert_eq!(request, 2);
    respond.send_response(20);
    assert_eq!(queued.await.expect("second result"), 20);
    assert!(matches!(third.poll_ready(), Poll::Ready(Ok(()))));
}

#[tokio::test]
async fn inner_failure_is_the_operation_failure() {
    let (mut service, mut handle) = layered();
    let call = service.ready().await.expect("ready").call(1);
    let (_, respond) = handle.next_request().await.expect("request");
    respond.send_error(std::io::Error::other("backend down"));
    match call.await {
        Err(ServiceError::Operation(ResultError::Failed { message, .. })) => {
            assert!(message.contains("backend down"), "{message}");
            // The inner service's own error, kept as its type.
            let inner = message
                .downcast_ref::<tower::BoxError>()
                .expect("the mock's error type");
            assert!(inner.is::<std::io::Error>(), "{inner:?}");
        }
        other => panic!("expected a failed operation, got {other:?}"),
    }
}

#[tokio::test]
async fn cancel_ends_calls_and_closes_readiness() {
    let (mut service, mut handle) = layered();
    let call = service.ready().await.expect("ready").call(1);
    let _request = handle.next_request().await.expect("request");
    service.coordinator().expect("built").cancel();
    match call.await {
        Err(ServiceError::Operation(ResultError::Cancelled { reason, .. })) => {
            assert!(matches!(reason, CancelReason::Shutdown), "{reason:?}");
        }
        other => panic!("expected a cancelled operation, got {other:?}"),
    }
    let closed = service.ready().await.err();
    assert!(matches!(closed, Some(ServiceError::Closed)), "{closed:?}");
}

#[tokio::test]
async fn call_without_ready_gives_the_item_back() {
    let (mut service, _handle) = layered();
    let refused = service.call(7).await.expect_err("not ready");
    assert_eq!(refused.into_item(), Some(7));
}

#[test]
fn a_layer_outside_a_runtime_reports_the_build_error() {
    let (service, _handle) = layered();
    let mut service = Spawn::new(service);
    match service.poll_ready() {
        Poll::Ready(Err(ServiceError::Build(_))) => {}
        other => panic!("expected the build error, got {other:?}"),
    }
}

/// A window that keeps one finished operation: responses must not depend on it.
#[tokio::test(start_paused = true)]
async fn responses_survive_a_window_too_small_to_keep_them() {
    let inner =
        tower::service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 10) });
    let options = EphemeralOptions::default()
        .max_concurrency(4)
        .max_tracked(1);
    let mut service = CoordinatorLayer::new(options).layer(inner);
    let mut calls = Vec::new();
    for n in 0..8 {
        calls.push(service.ready().await.expect("ready").call(n));
    }
    // Every operation finishes (and all but one are evicted) before any response is read.
    service
        .coordinator()
        .expect("built")
        .drain()
        .await
        .expect("drained");
    for (n, call) in (0..8).zip(calls) {
        assert_eq!(call.await.expect("answered although evicted"), n * 10);
    }
}

/// Sixteen clients, twenty thousand calls, the default window: every call answered with its
/// own value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_get_every_result() {
    let inner = tower::service_fn(|n: usize| async move { Ok::<_, std::convert::Infallible>(n) });
    let service = CoordinatorLayer::new(
        EphemeralOptions::default()
            .max_concurrency(16)
            .max_pending(1024),
    )
    .layer(inner);
    let mut tasks = Vec::new();
    for c in 0..16usize {
        let mut svc = service.clone();
        tasks.push(tokio::spawn(async move {
            for n in (c..20_000).step_by(16) {
                let got = svc.ready().await?.call(n).await?;
                assert_eq!(got, n);
            }
            Ok::<_, ServiceError<usize>>(())
        }));
    }
    for t in tasks {
        t.await.expect("client task").expect("every call answered");
    }
}

/// The work coordinator as a service: `()` for a completed operation, the failure otherwise,
/// and the call outlives the service handle it was made on.
#[tokio::test(start_paused = true)]
async fn work_coordinator_service_answers_unit_or_the_failure() {
    let coordinator = ephemeral::EphemeralWorkCoordinator::new(
        |n: u32, _ctx: ephemeral::OperationContext| async move {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            if n.is_multiple_of(2) {
                Ok(())
            } else {
                Err(format!("{n} is odd"))
            }
        },
        EphemeralOptions::default().tracking(false),
    )
    .expect("coordinator");
    let even = coordinator.service().oneshot(2);
    let odd = coordinator.service().oneshot(3);
    drop(coordinator);
    even.await.expect("completed");
    match odd.await {
        Err(ServiceError::Operation(ResultError::Failed { message, .. })) => {
            assert_eq!(&*message, "3 is odd");
        }
        other => panic!("expected the body's failure, got {other:?}"),
    }
}

/// The response future has a name (code generic over services can bound on it), and polled
/// again after it answered it says `Closed` instead of panicking, whether its answer came
/// from the operation or was known at the call.
#[tokio::test]
async fn the_response_future_is_named_and_safe_to_poll_after_it_answered() {
    use std::future::Future;
    use std::pin::Pin;

    let (mut service, mut handle) = layered();
    let mut call: ephemeral::ResponseFuture<u32, u32> =
        service.ready().await.expect("ready").call(4);
    let (request, respond) = handle.next_request().await.expect("called");
    respond.send_response(request + 1);
    assert_eq!((&mut call).await.expect("the operation's result"), 5);
    let again = std::future::poll_fn(|cx| Pin::new(&mut call).poll(cx)).await;
    assert!(matches!(again, Err(ServiceError::Closed)), "{again:?}");

    let mut refused = service.call(9);
    let first = (&mut refused).await;
    assert_eq!(first.expect_err("not ready").into_item(), Some(9));
    let again = std::future::poll_fn(|cx| Pin::new(&mut refused).poll(cx)).await;
    assert!(matches!(again, Err(ServiceError::Closed)), "{again:?}");
}

/// Once the coordinator stopped taking items, readiness says so at once, even with its room
/// still open (an intake stream still runs, so `complete` leaves the room to it): the fast
/// path that takes free room without waiting must not hand out a slot then.
#[tokio::test]
async fn a_completed_coordinator_is_never_ready_even_with_room() {
    let (service, _handle) = layered();
    let mut fresh = Spawn::new(service.clone());
    let coordinator = service.coordinator().expect("built");
    coordinator.intake(futures::stream::pending::<u32>());
    coordinator.complete();
    match fresh.poll_ready() {
        Poll::Ready(Err(ServiceError::Closed)) => {}
        other => panic!("expected Closed after complete, got {other:?}"),
    }
}

/// A service ready before `complete` is not ready after it: `poll_ready` answers `Closed`
/// and gives its room back; a `call` made before that `poll_ready` gets its item back.
#[tokio::test]
async fn a_service_ready_before_complete_is_closed_after_it() {
    let (service, _handle) = layered();
    let coordinator = service.coordinator().expect("built").clone();
    let mut early = Spawn::new(service.clone());
    let mut late = Spawn::new(service.clone());
    assert!(matches!(early.poll_ready(), Poll::Ready(Ok(()))));
    assert!(
        matches!(late.poll_ready(), Poll::Pending),
        "one pending slot, held"
    );
    coordinator.intake(futures::stream::pending::<u32>());
    coordinator.complete();
    match early.poll_ready() {
        Poll::Ready(Err(ServiceError::Closed)) => {}
        other => panic!("expected Closed after complete, got {other:?}"),
    }
    let refused = early.call(5).await.expect_err("not ready any more");
    assert_eq!(refused.into_item(), Some(5));
    // Made ready, then the coordinator stopped: the call gives the item back.
    let (service, _handle) = layered();
    let coordinator = service.coordinator().expect("built").clone();
    let mut ready = Spawn::new(service);
    assert!(matches!(ready.poll_ready(), Poll::Ready(Ok(()))));
    coordinator.complete();
    match ready.call(6).await {
        Err(error @ ServiceError::Refused(_)) => {
            // The message says what happened and where the item is, not only that it was
            // refused.
            let message = error.to_string();
            assert!(
                message.contains("completed, drained or cancelled"),
                "{message}"
            );
            assert!(message.contains("given back"), "{message}");
            assert_eq!(error.into_item(), Some(6));
        }
        other => panic!("expected Refused(6), got {other:?}"),
    }
    assert_eq!(coordinator.stats().accepted, 0);
}

/// A body that panics is a failed call (the panic's message kept), counted as panicked, and
/// the service answers the next call.
#[tokio::test(start_paused = true)]
async fn a_panicking_body_is_a_failed_call_and_the_service_goes_on() {
    let coordinator = EphemeralResultCoordinator::new(
        |n: u32, _ctx: OperationContext| async move {
            assert!(n != 0, "no zero here");
            Ok::<_, Infallible>(n)
        },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    let mut service = coordinator.service();
    match service.ready().await.expect("ready").call(0).await {
        Err(ServiceError::Operation(ResultError::Failed { message, .. })) => {
            assert!(message.to_string().contains("no zero here"), "{message}");
        }
        other => panic!("expected the panic as a failure, got {other:?}"),
    }
    assert_eq!(
        service
            .ready()
            .await
            .expect("ready")
            .call(7)
            .await
            .expect("goes on"),
        7
    );
    let stats = coordinator.stats();
    assert_eq!((stats.panicked, stats.failed, stats.completed), (1, 1, 1));
}

/// With a `cancel_on` signal live, a call is refused at admission: cancelled with the signal,
/// its body never called.
#[tokio::test(start_paused = true)]
async fn the_cancel_on_rule_refuses_a_call_before_its_body_starts() {
    let sink = ephemeral::SignalSink::default();
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = started.clone();
    let coordinator = EphemeralResultCoordinator::new(
        move |n: u32, _ctx: OperationContext| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, Infallible>(n) }
        },
        EphemeralOptions::default()
            .signals(sink.clone())
            .cancel_on("stop.*"),
    )
    .expect("coordinator");
    sink.raise("stop.now").expect("raised");
    let mut service = coordinator.service();
    match service.ready().await.expect("ready").call(1).await {
        Err(ServiceError::Operation(ResultError::Cancelled { reason, .. })) => {
            assert!(matches!(reason, CancelReason::Signal(_)), "{reason:?}");
        }
        other => panic!("expected a refused call, got {other:?}"),
    }
    assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Called from another runtime, one with no timer, the body still runs in the coordinator's
/// (its timer works), and the answer comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_another_runtime_runs_the_body_in_the_coordinators() {
    let coordinator = EphemeralResultCoordinator::new(
        |n: u32, _ctx: OperationContext| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, Infallible>(n * 3)
        },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    let mut service = coordinator.service();
    let answer = std::thread::spawn(move || {
        let timerless = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        timerless.block_on(async move { service.ready().await?.call(4).await })
    })
    .join()
    .expect("the calling thread");
    assert_eq!(answer.expect("the result"), 12);
}

/// A response that cannot be cloned (a streaming body, a file handle): the layer's answer
/// moves it to its caller, so it fits; the layer's coordinator tracks the call but keeps no
/// value of it.
#[tokio::test]
async fn a_response_that_cannot_be_cloned_goes_through_the_layer() {
    /// Neither `Clone` nor `Copy`: the layer must move it.
    #[derive(Debug, PartialEq)]
    struct Body(Vec<u8>);

    let inner = tower::service_fn(|n: u8| async move { Ok::<_, Infallible>(Body(vec![n; 3])) });
    let service = CoordinatorLayer::new(EphemeralOptions::default()).layer(inner);
    assert_eq!(
        service.clone().oneshot(7).await.expect("the body"),
        Body(vec![7; 3])
    );
    let coordinator = service.coordinator().expect("built");
    assert_eq!(coordinator.completed().len(), 1);
}

/// The layer's coordinator hands each value to its caller and keeps none; a service made
/// from a result coordinator of the caller's clones each value and keeps it there.
#[tokio::test]
async fn the_layer_keeps_no_value_and_a_coordinators_service_keeps_each() {
    let inner = tower::service_fn(|n: u32| async move { Ok::<_, Infallible>(n + 1) });
    let layered = CoordinatorLayer::new(EphemeralOptions::default()).layer(inner);
    assert_eq!(layered.clone().oneshot(1).await.expect("answered"), 2);
    let own = layered.coordinator().expect("built");
    assert_eq!(own.completed().len(), 1, "the call is tracked");
    assert!(own.results().is_empty(), "its value went to the caller");

    let doubler = EphemeralResultCoordinator::new(
        |n: u32, _ctx: OperationContext| async move { Ok::<_, Infallible>(n * 2) },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    assert_eq!(doubler.service().oneshot(21).await.expect("answered"), 42);
    let kept: Vec<u32> = doubler.results().into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        kept,
        [42],
        "the value stays readable in the caller's coordinator"
    );
}

/// A response future dropped (a `timeout` outside the layer, a caller gone) cancels its
/// operation, as dropping the response of tower's `Buffer` + `ConcurrencyLimit` drops the
/// call: a running one is cancelled and its slot freed at once, a pending one never starts.
/// (It used to run on, holding its slot, so an outer timeout shed no load.)
#[tokio::test]
async fn a_dropped_response_cancels_its_operation_and_frees_its_slot() {
    let (mut service, mut handle) = layered();
    let coordinator = service.coordinator().expect("built").clone();
    let abandoned = service.ready().await.expect("ready").call(1);
    let (request, _never_answered) = handle.next_request().await.expect("first request");
    assert_eq!(request, 1);
    let first = format!("{abandoned:?}");
    drop(abandoned);
    // Cancelled at once; the worker drops the inner call when it next runs.
    tokio::time::timeout(Duration::from_secs(10), async {
        while coordinator.stats().cancelled == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not cancelled: {:?} ({first})", coordinator.stats()));
    let stats = coordinator.stats();
    assert_eq!((stats.running, stats.cancelled), (0, 1), "{stats:?}");
    let cancelled = coordinator.cancelled();
    assert_eq!(
        cancelled[0].state,
        OperationState::Cancelled(CancelReason::Abandoned)
    );

    // The freed slot takes the next call at once; a call dropped while it waits behind it
    // never reaches the inner service.
    let running = service.ready().await.expect("the freed slot").call(2);
    let (request, respond) = handle.next_request().await.expect("second request");
    assert_eq!(request, 2);
    let queued = service.ready().await.expect("a pending slot").call(3);
    assert_eq!(coordinator.pending_count(), 1);
    drop(queued);
    assert_eq!(
        coordinator.pending_count(),
        0,
        "the abandoned pending call is gone"
    );
    respond.send_response(20);
    assert_eq!(running.await.expect("the second call's result"), 20);
    let last = service.ready().await.expect("ready").call(4);
    let (request, respond) = handle.next_request().await.expect("the next request");
    assert_eq!(request, 4, "call 3 never reached the inner service");
    respond.send_response(40);
    assert_eq!(last.await.expect("answered"), 40);
    let stats = coordinator.stats();
    assert_eq!((stats.completed, stats.cancelled), (2, 2), "{stats:?}");
}

/// A response dropped after its operation finished (never polled since) changes nothing.
#[tokio::test]
async fn a_response_dropped_after_the_finish_leaves_the_outcome_alone() {
    let (mut service, mut handle) = layered();
    let coordinator = service.coordinator().expect("built").clone();
    let call = service.ready().await.expect("ready").call(1);
    let (_, respond) = handle.next_request().await.expect("request");
    respond.send_response(10);
    while coordinator.stats().completed == 0 {
        tokio::task::yield_now().await;
    }
    drop(call);
    let stats = coordinator.stats();
    assert_eq!((stats.completed, stats.cancelled), (1, 0), "{stats:?}");
}

/// `Closed` says what helps: a new coordinator. A new service on the same stopped
/// coordinator is closed too (the message used to say "build a new service").
#[tokio::test]
async fn closed_says_that_a_new_coordinator_is_needed() {
    let coordinator = EphemeralResultCoordinator::new(
        |n: u32, _ctx: OperationContext| async move { Ok::<_, Infallible>(n) },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    coordinator.complete();
    let closed = coordinator
        .service()
        .ready()
        .await
        .map(drop)
        .expect_err("closed");
    let again = coordinator
        .service()
        .ready()
        .await
        .map(drop)
        .expect_err("closed");
    assert!(matches!(again, ServiceError::Closed), "{again:?}");
    let message = closed.to_string();
    assert!(message.contains("new coordinator"), "{message}");
    assert!(!message.contains("new service"), "{message}");
}

/// Counts the items it is asked about and lets every odd one through.
#[derive(Debug, Default)]
struct OddOnly(std::sync::atomic::AtomicU64);

impl ephemeral::Admission for OddOnly {
    fn admit<'a>(
        &'a self,
        _req: &'a ephemeral::AdmissionRequest,
    ) -> futures::future::BoxFuture<'a, ephemeral::Decision> {
        // Relaxed: a count read after the calls.
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::pin(async move {
            if n % 2 == 1 {
                ephemeral::Decision::Admit
            } else {
                ephemeral::Decision::cancel("even")
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_layers_admission_hooks_are_asked_for_every_call_of_every_service_it_builds() {
    let hook = Arc::new(OddOnly::default());
    let layer = CoordinatorLayer::with_admission(EphemeralOptions::default(), vec![hook.clone()]);
    let inner = tower::service_fn(|n: u64| async move { Ok::<_, Infallible>(n * 10) });
    let (a, b) = (layer.layer(inner), layer.clone().layer(inner));
    let mut outcomes = Vec::new();
    for (i, service) in [a.clone(), b.clone(), a, b].into_iter().enumerate() {
        outcomes.push(match service.oneshot(i as u64).await {
            Ok(v) => Ok(v),
            Err(ServiceError::Operation(ResultError::Cancelled { reason, .. })) => {
                Err(format!("{reason:?}"))
            }
            Err(other) => panic!("call {i}: {other:?}"),
        });
    }
    // One hook for both services, asked in call order: 0 and 2 refused, 1 and 3 run.
    assert_eq!(hook.0.load(std::sync::atomic::Ordering::Relaxed), 4);
    assert!(
        outcomes[0].as_ref().is_err_and(|r| r.contains("even")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], Ok(10));
    assert!(outcomes[2].is_err(), "{outcomes:?}");
    assert_eq!(outcomes[3], Ok(30));
}
