//! Signal steering: cancel, defer/resume, drain, clear, cancel-running, admission hooks.

mod coordinator_support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coordinator_support::{assert_adds_up, settle};
use ephemeral::{
    Admission, AdmissionRequest, CancelReason, Decision, DeferPolicy, DrainSignals, EnqueueError,
    EphemeralOptions, EphemeralWorkCoordinator, OperationContext, OperationState, Signal,
    SignalSink,
};
use futures::future::BoxFuture;

#[allow(clippy::type_complexity)]
fn counter() -> (
    Arc<AtomicUsize>,
    impl Fn(u32, OperationContext) -> BoxFuture<'static, Result<(), Infallible>> + Send + Sync + 'static,
) {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    (started, move |_: u32, _ctx| {
        s.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    })
}

#[tokio::test(start_paused = true)]
async fn items_reaching_admission_under_a_cancel_signal_end_cancelled() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .cancel_on("circuit.open"),
    )
    .unwrap();
    let hold = sink.hold("circuit.open").unwrap();
    let id = c.enqueue(1).await.unwrap(); // still accepted, so it is visible
    settle().await;
    assert_eq!(
        c.operation(id).unwrap().state,
        OperationState::Cancelled(CancelReason::Signal("circuit.open".parse().unwrap()))
    );
    drop(hold);
    c.enqueue(2).await.unwrap();
    c.drain().await.unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_adds_up(&c.stats());
}

#[tokio::test(start_paused = true)]
async fn a_thousand_deferred_items_start_on_a_resume_signal_without_clock_advance() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .max_concurrency(16)
            .max_pending(1000)
            .signals(sink.clone())
            .defer_on("backpressure.*")
            .resume_on("backpressure.cleared"),
    )
    .unwrap();
    let _hold = sink.hold("backpressure.db").unwrap();
    for i in 0..1000 {
        c.enqueue(i).await.unwrap();
    }
    settle().await;
    assert_eq!(started.load(Ordering::SeqCst), 0);
    assert_eq!(c.active_count(), 0, "deferred items hold no slot");
    let before = tokio::time::Instant::now();
    sink.raise("backpressure.cleared").unwrap();
    c.drain().await.unwrap();
    assert_eq!(
        tokio::time::Instant::now(),
        before,
        "no clock advance was needed"
    );
    assert_eq!(started.load(Ordering::SeqCst), 1000);
}

#[tokio::test(start_paused = true)]
async fn releasing_the_hold_alone_starts_deferred_items() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("backpressure.*"),
    )
    .unwrap();
    let hold = sink.hold("backpressure.db").unwrap();
    for i in 0..100 {
        c.enqueue(i).await.unwrap();
    }
    settle().await;
    assert_eq!(started.load(Ordering::SeqCst), 0);
    hold.release();
    c.drain().await.unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 100);
}

#[tokio::test(start_paused = true)]
async fn a_raised_defer_signal_defers_until_it_expires() {
    let sink =
        SignalSink::new(ephemeral::SinkOptions::default().max_age(Duration::from_secs(5))).unwrap();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("slow.down"),
    )
    .unwrap();
    sink.raise("slow.down").unwrap();
    c.enqueue(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(4_999)).await;
    assert_eq!(started.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(2)).await;
    settle().await;
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn max_defer_then_cancel_policy() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(10), DeferPolicy::Cancel),
    )
    .unwrap();
    let _hold = sink.hold("maintenance").unwrap();
    let id = c.enqueue(1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        c.operation(id).unwrap().state,
        OperationState::Cancelled(CancelReason::DeferTimeout)
    );
    assert_eq!(started.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn max_defer_then_run_policy() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(10), DeferPolicy::Run),
    )
    .unwrap();
    let _hold = sink.hold("maintenance").unwrap();
    c.enqueue(1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(started.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_idle_coordinator_completes_on_a_drain_signal() {
    let sink = SignalSink::default();
    let (_, body) = counter();
    let c = EphemeralWorkCoordinator::new(body, EphemeralOptions::default().signals(sink.clone()))
        .unwrap();
    settle().await;
    assert!(!c.is_done());
    sink.raise("coordinator.drain.all").unwrap();
    settle().await;
    assert!(c.is_done());
    // The refusal names the drain signal among its causes: it used to say "complete, drain
    // or cancel was called" when none of them was.
    let err = c.try_enqueue(1).unwrap_err();
    assert!(matches!(err, EnqueueError::Closed(1)));
    assert!(err.to_string().contains("a drain signal"), "{err}");
}

/// The event rules act on every raise, not only on what is still live when the steering
/// task looks: a drain signal retracted at once, a `cancel_running_on` signal gone before
/// the task ran (evicted by a burst of others), and a drain by id pushed out by capacity,
/// all still act. (The task looked at `latest` only: each was missed.)
#[tokio::test(start_paused = true)]
async fn a_rule_signal_gone_before_the_steering_task_looked_still_acts() {
    let sink = SignalSink::new(ephemeral::SinkOptions::default().capacity(4)).unwrap();
    let (_, body) = counter();
    let drained =
        EphemeralWorkCoordinator::new(body, EphemeralOptions::default().signals(sink.clone()))
            .unwrap();
    settle().await;
    sink.raise("coordinator.drain.all").unwrap();
    assert_eq!(sink.retract("coordinator.drain.all"), 1);
    settle().await;
    assert!(drained.is_done(), "the retracted drain signal was missed");

    let running = EphemeralWorkCoordinator::new(
        |_: u32, ctx: OperationContext| async move {
            ctx.token().cancelled().await;
            Err("stopped")
        },
        EphemeralOptions::default()
            .signals(sink.clone())
            .cancel_running_on("stop.now"),
    )
    .unwrap();
    let id = running.enqueue(1).await.unwrap();
    settle().await;
    sink.raise("stop.now").unwrap();
    for i in 0..8 {
        sink.raise(&format!("noise.n{i}")).unwrap();
    }
    assert!(
        !sink.has_signal("stop.now"),
        "evicted by capacity before the task looked"
    );
    settle().await;
    assert_eq!(
        running.operation(id).unwrap().state,
        OperationState::Cancelled(CancelReason::Signal("stop.now".parse().unwrap()))
    );

    let (_, body) = counter();
    let by_id = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .id("orders-9"),
    )
    .unwrap();
    settle().await;
    sink.raise_with(
        Signal::build("coordinator.drain.id")
            .unwrap()
            .key("orders-9"),
    )
    .unwrap();
    for i in 0..8 {
        sink.raise(&format!("noise.m{i}")).unwrap();
    }
    settle().await;
    assert!(by_id.is_done(), "the evicted drain-by-id signal was missed");
}

/// A rule signal raised right after the coordinator was created, and gone before its
/// steering task first ran, still acts: the task's subscriptions are made at creation. (They
/// were made when the task first ran, so a drain signal retracted at once was missed and the
/// coordinator never drained; a `clear_on` signal likewise cleared nothing.)
#[tokio::test(start_paused = true)]
async fn a_rule_signal_gone_before_the_steering_task_first_ran_still_acts() {
    let sink = SignalSink::default();
    let (_, body) = counter();
    let drained =
        EphemeralWorkCoordinator::new(body, EphemeralOptions::default().signals(sink.clone()))
            .unwrap();
    sink.raise("coordinator.drain.all").unwrap();
    assert_eq!(sink.retract("coordinator.drain.all"), 1);
    settle().await;
    assert!(drained.is_done(), "the retracted drain signal was missed");

    let (_, body) = counter();
    let _clearing = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .clear_on("reset"),
    )
    .unwrap();
    sink.raise("stale").unwrap();
    sink.raise("reset").unwrap();
    assert_eq!(sink.retract("reset"), 1);
    settle().await;
    assert!(
        !sink.has_signal("stale"),
        "the retracted clear signal was missed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_signal_raised_before_creation_is_ignored() {
    let sink = SignalSink::default();
    sink.raise("coordinator.drain.all").unwrap();
    let (_, body) = counter();
    let c = EphemeralWorkCoordinator::new(body, EphemeralOptions::default().signals(sink.clone()))
        .unwrap();
    settle().await;
    assert!(!c.is_done());
    assert!(c.try_enqueue(1).is_ok());
}

#[tokio::test(start_paused = true)]
async fn drain_by_id_and_by_pattern() {
    let sink = SignalSink::default();
    let make = |id: &str| {
        let (_, body) = counter();
        EphemeralWorkCoordinator::new(
            body,
            EphemeralOptions::default().signals(sink.clone()).id(id),
        )
        .unwrap()
    };
    let a = make("orders-1");
    let b = make("orders-2");
    let other = make("billing");
    sink.raise_with(
        Signal::build("coordinator.drain.id")
            .unwrap()
            .key("orders-1"),
    )
    .unwrap();
    settle().await;
    assert!(a.is_done() && !b.is_done() && !other.is_done());
    sink.raise_with(
        Signal::build("coordinator.drain.pattern")
            .unwrap()
            .key("orders-*"),
    )
    .unwrap();
    settle().await;
    assert!(b.is_done() && !other.is_done());
}

/// Each drain signal is chosen on its own.
#[tokio::test(start_paused = true)]
async fn drain_signals_are_chosen_one_by_one() {
    let sink = SignalSink::default();
    let make = |id: &str, which: DrainSignals| {
        let (_, body) = counter();
        EphemeralWorkCoordinator::new(
            body,
            EphemeralOptions::default()
                .signals(sink.clone())
                .id(id)
                .drain_signals(which),
        )
        .unwrap()
    };
    let only_id = make("only-id", DrainSignals::OFF.id(true));
    let not_all = make("not-all", DrainSignals::ON.all(false));
    let only_all = make("only-all", DrainSignals::OFF.all(true));
    let none = make("none", false.into());
    sink.raise("coordinator.drain.all").unwrap();
    settle().await;
    assert!(only_all.is_done());
    assert!(!only_id.is_done() && !not_all.is_done() && !none.is_done());
    sink.raise_with(Signal::build("coordinator.drain.pattern").unwrap().key("*"))
        .unwrap();
    settle().await;
    assert!(not_all.is_done());
    assert!(!only_id.is_done() && !none.is_done());
    for id in ["only-id", "none"] {
        sink.raise_with(Signal::build("coordinator.drain.id").unwrap().key(id))
            .unwrap();
    }
    settle().await;
    assert!(only_id.is_done());
    assert!(!none.is_done(), "drain signals off");
}

#[tokio::test(start_paused = true)]
async fn cancel_running_on_cancels_running_bodies_only_when_set() {
    let sink = SignalSink::default();
    let body = |_: u32, ctx: OperationContext| async move {
        ctx.token().cancelled().await;
        Err("stopped")
    };
    let with = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .cancel_running_on("shutdown.now"),
    )
    .unwrap();
    let without =
        EphemeralWorkCoordinator::new(body, EphemeralOptions::default().signals(sink.clone()))
            .unwrap();
    let a = with.enqueue(1).await.unwrap();
    let b = without.enqueue(1).await.unwrap();
    settle().await;
    sink.raise("shutdown.now").unwrap();
    settle().await;
    assert_eq!(
        with.operation(a).unwrap().state,
        OperationState::Cancelled(CancelReason::Signal("shutdown.now".parse().unwrap()))
    );
    assert_eq!(without.operation(b).unwrap().state, OperationState::Running);
    without.cancel();
}

/// A `cancel_running_on` signal cancels what started before it was raised, not an item
/// that started after it, before the coordinator looked at it (that one used to be
/// cancelled too: `late` ended `Cancelled(Signal("kill"))`).
#[tokio::test(start_paused = true)]
async fn cancel_running_on_spares_a_body_that_started_after_the_signal() {
    let sink = SignalSink::default();
    let c = EphemeralWorkCoordinator::new(
        |_: u32, ctx: OperationContext| async move {
            tokio::select! {
                () = ctx.cancelled() => Err("stopped"),
                () = tokio::time::sleep(Duration::from_secs(1)) => Ok(()),
            }
        },
        EphemeralOptions::default()
            .max_concurrency(2)
            .signals(sink.clone())
            .cancel_running_on("kill"),
    )
    .unwrap();
    let early = c.enqueue(1).await.unwrap();
    let warm = c.enqueue(2).await.unwrap();
    settle().await;
    c.cancel_operation(warm); // its worker now waits, idle
    settle().await;
    sink.raise("kill").unwrap();
    let late = c.enqueue(3).await.unwrap(); // handed to the idle worker at once
    assert_eq!(c.operation(late).unwrap().state, OperationState::Running);
    c.drain().await.unwrap();
    let kill = OperationState::Cancelled(CancelReason::Signal("kill".parse().unwrap()));
    assert_eq!(c.operation(early).unwrap().state, kill);
    assert_eq!(c.operation(late).unwrap().state, OperationState::Completed);
}

#[tokio::test(start_paused = true)]
async fn clear_on_clears_once_per_matching_signal() {
    let sink = SignalSink::default();
    let (_, body) = counter();
    let _c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .clear_on("reset.all"),
    )
    .unwrap();
    settle().await;
    sink.raise("error.a").unwrap();
    sink.raise("reset.all").unwrap();
    settle().await;
    assert!(!sink.has_signal("error.*"));
    assert_eq!(sink.count("sink.cleared"), 1);
    sink.raise("error.b").unwrap();
    settle().await;
    assert!(
        sink.has_signal("error.b"),
        "not cleared again without a new reset"
    );
}

/// A pattern that matches the `sink.cleared` a clear raises (`*`, `sink.*`) clears once per
/// new signal all the same: the clear's own signal never clears again (it used to, for ever,
/// a busy loop that starved a current-thread runtime). Real time on two threads, so the old
/// behaviour fails the test instead of hanging it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_on_a_pattern_matching_sink_cleared_clears_once() {
    for pattern in ["*", "sink.*,error.*"] {
        let sink = SignalSink::default();
        let (_, body) = counter();
        let _c = EphemeralWorkCoordinator::new(
            body,
            EphemeralOptions::default()
                .signals(sink.clone())
                .clear_on(pattern),
        )
        .unwrap();
        sink.raise("error.a").unwrap();
        for _ in 0..200 {
            if !sink.has_signal("error.a") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!sink.has_signal("error.a"), "{pattern}: cleared");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = sink.stats();
        assert_eq!(
            (stats.raised, stats.cleared),
            (2, 1),
            "{pattern}: one raise, one clear and its sink.cleared, nothing more"
        );
        assert!(sink.has_signal("sink.cleared"));
    }
}

#[tokio::test(start_paused = true)]
async fn signals_raised_by_bodies_carry_the_operation_id_and_can_be_retracted() {
    let sink = SignalSink::default();
    let c = EphemeralWorkCoordinator::new(
        |n: u32, ctx: OperationContext| async move {
            ctx.signal("step.one").unwrap();
            ctx.signal("step.two").unwrap();
            if n == 1 {
                assert_eq!(ctx.retract("step.one"), 1);
            }
            assert!(ctx.has_signal("step.two"));
            Ok::<_, Infallible>(())
        },
        EphemeralOptions::default().signals(sink.clone()),
    )
    .unwrap();
    let id = c.enqueue(1).await.unwrap();
    c.drain().await.unwrap();
    let mine = sink.signals_of(id);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].name().as_str(), "step.two");
    assert_eq!(c.operation(id).unwrap().signals.len(), 1);
}

#[derive(Debug)]
struct Gate {
    open: tokio::sync::watch::Receiver<bool>,
    asked: AtomicUsize,
}

impl Admission for Gate {
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.clone();
        let _ = request;
        Box::pin(async move {
            if *open.borrow() {
                Decision::Admit
            } else {
                Decision::defer(async move {
                    let _ = open.wait_for(|o| *o).await;
                })
            }
        })
    }
}

/// A closed [`Gate`] and the sender that opens it.
fn closed_gate() -> (tokio::sync::watch::Sender<bool>, Arc<Gate>) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let gate = Arc::new(Gate {
        open: rx,
        asked: AtomicUsize::new(0),
    });
    (tx, gate)
}

#[derive(Debug)]
struct RefuseOdd;

impl Admission for RefuseOdd {
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        let odd = request.id.as_u64() % 2 == 1;
        Box::pin(async move {
            if odd {
                Decision::cancel("odd ids are refused")
            } else {
                Decision::Admit
            }
        })
    }
}

/// Panics for every even id: in its call for ids divisible by four, in its future for the
/// other even ones.
#[derive(Debug)]
struct PanicOnEven;

impl Admission for PanicOnEven {
    fn admit<'a>(&'a self, req: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        let id = req.id.as_u64();
        assert!(!id.is_multiple_of(4), "a hook that panics in its call");
        Box::pin(async move {
            assert!(!id.is_multiple_of(2), "a hook that panics in its future");
            Decision::Admit
        })
    }
}

/// A panicking admission hook is caught like a panicking body: the item ends panicked with
/// the hook's message, its body never run, and the workers go on with the rest.
#[tokio::test(start_paused = true)]
async fn a_panicking_admission_hook_fails_its_item_and_the_workers_go_on() {
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::with_admission(
        body,
        EphemeralOptions::default().max_concurrency(2),
        vec![Arc::new(PanicOnEven)],
    )
    .unwrap();
    let ids = c.enqueue_many(0..20).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), c.drain())
        .await
        .expect("drained: the workers survived the hook's panics")
        .unwrap();
    let even = ids.iter().filter(|id| id.as_u64() % 2 == 0).count();
    assert_eq!(started.load(Ordering::SeqCst), 20 - even);
    let stats = c.stats();
    assert_eq!((stats.panicked, stats.failed), (even as u64, even as u64));
    assert_adds_up(&stats);
    for snap in c.failed() {
        let id = snap.id.as_u64();
        assert_eq!(id % 2, 0, "{snap:?}");
        let error = snap
            .error
            .as_ref()
            .expect("a panicked operation has its message")
            .to_string();
        let expected = if id % 4 == 0 {
            "a hook that panics in its call"
        } else {
            "a hook that panics in its future"
        };
        assert_eq!(error, format!("admission hook panicked: {expected}"));
        assert!(snap.panicked && snap.started.is_some(), "{snap:?}");
    }
}

/// Defers every item once, with a wait that panics when polled.
#[derive(Debug, Default)]
struct DeferIntoAPanic {
    asked: AtomicUsize,
}

impl Admission for DeferIntoAPanic {
    fn admit<'a>(&'a self, _req: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Decision::Defer(Box::pin(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                panic!("a deferral that panics");
            }))
        })
    }
}

/// A hook's `Defer` future that panics ends its item panicked with the message, never
/// run: the item is not left deferred for good, and `drain` returns.
#[tokio::test(start_paused = true)]
async fn a_panicking_defer_future_fails_its_item() {
    let hook = Arc::new(DeferIntoAPanic::default());
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::with_admission(
        body,
        EphemeralOptions::default().max_concurrency(2),
        vec![hook.clone()],
    )
    .unwrap();
    c.enqueue_many(0..4).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), c.drain())
        .await
        .expect("drained: no item stays deferred")
        .unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 0);
    assert_eq!(hook.asked.load(Ordering::SeqCst), 4, "asked once each");
    let stats = c.stats();
    assert_eq!((stats.failed, stats.panicked), (4, 4), "{stats:?}");
    assert_adds_up(&stats);
    for snap in c.failed() {
        assert!(snap.panicked, "{snap:?}");
        let error = snap.error.as_ref().expect("its message").to_string();
        assert_eq!(
            error,
            "admission hook's deferral panicked: a deferral that panics"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn admission_defer_holds_no_slot_and_cancel_records_the_reason() {
    let (tx, gate) = closed_gate();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::with_admission(
        body,
        EphemeralOptions::default().max_concurrency(2),
        vec![gate.clone()],
    )
    .unwrap();
    for i in 0..10 {
        c.enqueue(i).await.unwrap();
    }
    settle().await;
    assert_eq!(started.load(Ordering::SeqCst), 0);
    assert_eq!(c.active_count(), 0, "deferred by a hook, holding no slot");
    assert_eq!(c.pending_count(), 10);
    assert_eq!(gate.asked.load(Ordering::SeqCst), 10);
    tx.send(true).unwrap();
    c.drain().await.unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 10);

    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::with_admission(
        body,
        EphemeralOptions::default(),
        vec![Arc::new(RefuseOdd)],
    )
    .unwrap();
    let ids = c.enqueue_many(0..10).await.unwrap();
    c.drain().await.unwrap();
    let odd = ids.iter().filter(|id| id.as_u64() % 2 == 1).count();
    assert_eq!(started.load(Ordering::SeqCst), 10 - odd);
    for snap in c.cancelled() {
        assert_eq!(
            snap.state,
            OperationState::Cancelled(CancelReason::Admission(Arc::from("odd ids are refused")))
        );
    }
    assert_adds_up(&c.stats());
}

/// Items a hook's `Defer` puts aside are pending (accepted, not started), so they count
/// against `max_pending` as queued items do: `try_enqueue` is refused once that many wait,
/// and the window's pending operations stay bounded by `max_pending + max_concurrency`.
/// (They used to give their room back when a worker took them, so a hook deferring every
/// item let 50 of 50 in with `max_pending(2)`.) Their room comes back when they end.
#[tokio::test(start_paused = true)]
async fn items_put_aside_by_a_hook_count_against_max_pending() {
    let (tx, gate) = closed_gate();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::with_admission(
        body,
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_pending(2),
        vec![gate],
    )
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..50 {
        if let Ok(id) = c.try_enqueue(i) {
            ids.push(id);
        }
        settle().await;
    }
    assert_eq!(ids.len(), 2, "only max_pending items may wait to start");
    let stats = c.stats();
    assert_eq!((stats.pending, stats.running), (2, 0));
    assert_adds_up(&stats);
    // Cancelling one put aside gives its room back.
    assert!(c.cancel_operation(ids[0]));
    settle().await;
    assert!(c.try_enqueue(50).is_ok());
    assert!(matches!(c.try_enqueue(51), Err(EnqueueError::Full(51))));
    tx.send(true).unwrap();
    c.drain().await.unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 2);
    let stats = c.stats();
    assert_eq!((stats.completed, stats.cancelled), (2, 1));
    assert_adds_up(&stats);
}

/// An item put aside by a hook's `Defer` can be cancelled by id while it waits: it ends
/// `Cancelled(Explicit)` without its body running, and the rest are untouched.
#[tokio::test(start_paused = true)]
async fn an_item_put_aside_by_a_hook_can_be_cancelled_while_it_waits() {
    let (tx, gate) = closed_gate();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::with_admission(
        body,
        EphemeralOptions::default().max_concurrency(2),
        vec![gate],
    )
    .unwrap();
    let ids = c.enqueue_many(0..3).await.unwrap();
    settle().await;
    assert_eq!(c.operation(ids[1]).unwrap().state, OperationState::Deferred);
    assert!(c.cancel_operation(ids[1]));
    assert!(
        c.cancel_operation(ids[1]),
        "still waiting to end: asked again, still true"
    );
    settle().await;
    assert_eq!(
        c.operation(ids[1]).unwrap().state,
        OperationState::Cancelled(CancelReason::Explicit)
    );
    assert!(!c.cancel_operation(ids[1]), "ended: nothing left to cancel");
    tx.send(true).unwrap();
    c.drain().await.unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 2);
    let stats = c.stats();
    assert_eq!((stats.completed, stats.cancelled), (2, 1));
    assert_adds_up(&stats);
}

/// A hook that takes `slow` to admit (`None`: never answers).
#[derive(Debug)]
struct SlowHook {
    slow: Option<Duration>,
}

impl Admission for SlowHook {
    fn admit<'a>(&'a self, _request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        let slow = self.slow;
        Box::pin(async move {
            match slow {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
            Decision::Admit
        })
    }
}

/// An item whose admission hook is still deciding counts as running and can be cancelled
/// like one: it ends cancelled at once, for the cancel's reason, and its body never runs —
/// also when the hook would never answer.
#[tokio::test(start_paused = true)]
async fn an_item_cancelled_while_its_hook_decides_never_starts() {
    for (slow, how) in [
        (Some(Duration::from_secs(10)), "by id"),
        (Some(Duration::from_secs(10)), "shutdown"),
        (Some(Duration::from_secs(10)), "signal"),
        (None, "shutdown"),
    ] {
        let sink = SignalSink::default();
        let (started, body) = counter();
        let c = EphemeralWorkCoordinator::with_admission(
            body,
            EphemeralOptions::default()
                .signals(sink.clone())
                .cancel_running_on("stop.now")
                .abort_grace(Duration::from_secs(1)),
            vec![Arc::new(SlowHook { slow }) as Arc<dyn Admission>],
        )
        .unwrap();
        let id = c.enqueue(1).await.unwrap();
        settle().await;
        assert_eq!(c.operation(id).unwrap().state, OperationState::Running);
        let reason = match how {
            "by id" => {
                assert!(c.cancel_operation(id));
                CancelReason::Explicit
            }
            "shutdown" => {
                c.cancel();
                CancelReason::Shutdown
            }
            _ => {
                sink.raise("stop.now").unwrap();
                CancelReason::Signal(ephemeral::Name::new("stop.now").unwrap())
            }
        };
        settle().await;
        assert_eq!(
            c.operation(id).unwrap().state,
            OperationState::Cancelled(reason),
            "{how}, hook {slow:?}"
        );
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            0,
            "{how}: the body never ran"
        );
        let stats = c.stats();
        assert_eq!((stats.cancelled, stats.completed, stats.running), (1, 0, 0));
        assert_adds_up(&stats);
    }
}

/// Depth counts like the original: an operation's own signal is depth 1, a signal it causes
/// depth 2, and `max_depth(2)` refuses the third link.
#[tokio::test(start_paused = true)]
async fn an_operations_signal_has_depth_one_and_max_depth_refuses_the_next_link_past_it() {
    let sink = SignalSink::new(ephemeral::SinkOptions::default().max_depth(2)).unwrap();
    let c = EphemeralWorkCoordinator::new(
        |_: u32, ctx: OperationContext| async move {
            let first = ctx.signal("order.failed").unwrap();
            assert_eq!(first.depth(), 1);
            let second = ctx
                .sink()
                .raise_caused(Signal::build("alert.order").unwrap(), &first)
                .unwrap();
            assert_eq!(second.depth(), 2);
            let third = ctx
                .sink()
                .raise_caused(Signal::build("page.oncall").unwrap(), &second);
            assert!(
                matches!(
                    third,
                    Err(ephemeral::RaiseError::Propagation(
                        ephemeral::PropagationError::TooDeep {
                            depth: 3,
                            max: 2,
                            ..
                        }
                    ))
                ),
                "{third:?}"
            );
            Ok::<_, Infallible>(())
        },
        EphemeralOptions::default().signals(sink.clone()),
    )
    .unwrap();
    let id = c.enqueue(1).await.unwrap();
    c.drain().await.unwrap();
    assert!(
        c.operation(id).unwrap().error.is_none(),
        "{:?}",
        c.operation(id)
    );
    assert_eq!(c.completed().len(), 1);
    assert!(!sink.has_signal("page.oncall"));
}

/// Snapshots show which pending items a defer rule or an admission hook holds back.
#[tokio::test(start_paused = true)]
async fn snapshots_show_deferred_items() {
    let sink = SignalSink::default();
    let (_, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("maintenance"),
    )
    .unwrap();
    let hold = sink.hold("maintenance").unwrap();
    let ids = c.enqueue_many([1, 2]).await.unwrap();
    settle().await;
    let states: Vec<_> = c.snapshot().into_iter().map(|s| s.state).collect();
    assert_eq!(states, [OperationState::Deferred, OperationState::Deferred]);
    assert_eq!(c.operation(ids[0]).unwrap().state, OperationState::Deferred);
    assert_eq!(c.stats().pending, 2, "deferred items count as pending");
    drop(hold);
    c.drain().await.unwrap();
    assert_eq!(c.completed().len(), 2);

    // Put aside by an admission hook.
    let (tx, gate) = closed_gate();
    let (_, body) = counter();
    let c = EphemeralWorkCoordinator::with_admission(body, EphemeralOptions::default(), vec![gate])
        .unwrap();
    let id = c.enqueue(1).await.unwrap();
    settle().await;
    assert_eq!(c.operation(id).unwrap().state, OperationState::Deferred);
    tx.send(true).unwrap();
    c.drain().await.unwrap();
    assert_eq!(c.operation(id).unwrap().state, OperationState::Completed);
}

/// A deferred lane's items show as deferred; the other lanes' as pending.
#[tokio::test(start_paused = true)]
async fn snapshots_show_a_deferred_lanes_items() {
    let sink = SignalSink::default();
    let (_, body) = counter();
    let c = ephemeral::PriorityWorkCoordinator::new(
        body,
        vec![
            ephemeral::Lane::new("ui", 10),
            ephemeral::Lane::new("batch", 0).defer_on("db.busy"),
        ],
        EphemeralOptions::default().signals(sink.clone()),
    )
    .unwrap();
    c.pause();
    let hold = sink.hold("db.busy").unwrap();
    settle().await;
    let batch = c.enqueue("batch", 1).await.unwrap();
    let ui = c.enqueue("ui", 2).await.unwrap();
    settle().await;
    assert_eq!(c.operation(batch).unwrap().state, OperationState::Deferred);
    assert_eq!(c.operation(ui).unwrap().state, OperationState::Pending);
    drop(hold);
    settle().await;
    assert_eq!(c.operation(batch).unwrap().state, OperationState::Pending);
    c.resume();
    c.drain().await.unwrap();
}

/// `max_defer` counts each item's own wait: one enqueued late in a long deferral gets its
/// full `max_defer`.
#[tokio::test(start_paused = true)]
async fn max_defer_counts_from_when_each_item_was_held() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(10), DeferPolicy::Cancel),
    )
    .unwrap();
    let _hold = sink.hold("maintenance").unwrap();
    let early = c.enqueue(1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let late = c.enqueue(2).await.unwrap();
    let state = |id| c.operation(id).unwrap().state;
    tokio::time::sleep(Duration::from_millis(4_500)).await; // t = 10.5 s
    assert_eq!(
        state(early),
        OperationState::Cancelled(CancelReason::DeferTimeout)
    );
    assert_eq!(state(late), OperationState::Deferred, "held for 4.5 s only");
    tokio::time::sleep(Duration::from_secs(6)).await; // t = 16.5 s
    assert_eq!(
        state(late),
        OperationState::Cancelled(CancelReason::DeferTimeout)
    );
    assert_eq!(started.load(Ordering::SeqCst), 0);
}

/// `max_defer` bounds the sum of an item's deferrals: a second deferral does not restart the
/// clock, and time not held back does not count.
#[tokio::test(start_paused = true)]
async fn max_defer_sums_an_items_deferrals() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(10), DeferPolicy::Cancel),
    )
    .unwrap();
    let first = sink.hold("maintenance").unwrap();
    let id = c.enqueue(1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.pause(); // so that the item does not start between the two deferrals
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(first); // t = 6 s: held for 6 s
    settle().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _second = sink.hold("maintenance").unwrap(); // t = 8 s: 4 s left
    c.resume();
    let state = || c.operation(id).unwrap().state;
    tokio::time::sleep(Duration::from_millis(3_900)).await; // t = 11.9 s
    assert_eq!(state(), OperationState::Deferred);
    tokio::time::sleep(Duration::from_millis(200)).await; // t = 12.1 s
    assert_eq!(
        state(),
        OperationState::Cancelled(CancelReason::DeferTimeout)
    );
    assert_eq!(started.load(Ordering::SeqCst), 0);
}

/// An item accepted while a deferral is live is held from its acceptance, even when the
/// clock jumps before any worker or the steering task had a turn (`advance` moves the clock
/// first): `max_defer` is reached on time, and a snapshot shows it deferred at once. Its
/// clock used to start only when the coordinator next looked, 10 s late here.
#[tokio::test(start_paused = true)]
async fn an_item_accepted_during_a_deferral_is_held_from_its_acceptance() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(10), DeferPolicy::Cancel),
    )
    .unwrap();
    let _hold = sink.hold("maintenance").unwrap();
    let id = c.enqueue(1).await.unwrap();
    assert_eq!(c.operation(id).unwrap().state, OperationState::Deferred);
    tokio::time::advance(Duration::from_millis(9_999)).await;
    settle().await;
    assert_eq!(c.operation(id).unwrap().state, OperationState::Deferred);
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(
        c.operation(id).unwrap().state,
        OperationState::Cancelled(CancelReason::DeferTimeout)
    );
    assert_eq!(started.load(Ordering::SeqCst), 0);
    assert_adds_up(&c.stats());
}

/// Items already waiting when a defer signal is raised are held from that signal's raise,
/// not from when the coordinator next looks (under `advance`, after the jump): under
/// `DeferPolicy::Run` the item starts `max_defer` after the signal.
#[tokio::test(start_paused = true)]
async fn queued_items_are_held_from_the_raise_of_the_defer_signal() {
    let sink = SignalSink::default();
    let (release, released) = tokio::sync::watch::channel(false);
    let c = EphemeralWorkCoordinator::new(
        move |n: u32, _ctx: OperationContext| {
            let mut released = released.clone();
            async move {
                if n == 0 {
                    let _ = released.wait_for(|r| *r).await;
                }
                Ok::<_, Infallible>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(1)
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(10), DeferPolicy::Run),
    )
    .unwrap();
    let busy = c.enqueue(0).await.unwrap();
    settle().await;
    let waiting = c.enqueue(1).await.unwrap();
    let _hold = sink.hold("maintenance").unwrap(); // t = 0
    tokio::time::advance(Duration::from_secs(4)).await;
    release.send(true).unwrap(); // the slot is free, the deferral holds `waiting`
    settle().await;
    let state = |id| c.operation(id).unwrap().state;
    assert_eq!(state(busy), OperationState::Completed);
    assert_eq!(state(waiting), OperationState::Deferred);
    tokio::time::advance(Duration::from_millis(5_999)).await; // t = 9.999 s
    settle().await;
    assert_eq!(state(waiting), OperationState::Deferred);
    tokio::time::advance(Duration::from_millis(1)).await; // t = 10 s
    settle().await;
    assert_eq!(state(waiting), OperationState::Completed);
    assert_adds_up(&c.stats());
}

/// A deferral noticed late starts no earlier than the rule was last seen lifted: a resume
/// that expired leaves the older defer signal in force again, from the resume's expiry, not
/// from that signal's raise.
#[tokio::test(start_paused = true)]
async fn a_deferral_back_in_force_after_a_resume_expired_counts_from_then() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .max_concurrency(1)
            .signals(sink.clone())
            .defer_on("maintenance")
            .resume_on("maintenance.over")
            .max_defer(Duration::from_secs(10), DeferPolicy::Cancel),
    )
    .unwrap();
    let _hold = sink.hold("maintenance").unwrap(); // t = 0
    sink.raise_with(
        Signal::build("maintenance.over")
            .unwrap()
            .expires_in(Duration::from_secs(5)),
    )
    .unwrap();
    c.pause();
    let id = c.enqueue(1).await.unwrap(); // not held: the resume is newer than the hold
    tokio::time::sleep(Duration::from_secs(5)).await; // t = 5 s: the resume expired
    let state = || c.operation(id).unwrap().state;
    tokio::time::sleep(Duration::from_millis(9_900)).await; // t = 14.9 s: held for 9.9 s
    assert_eq!(state(), OperationState::Deferred);
    tokio::time::sleep(Duration::from_millis(200)).await; // t = 15.1 s
    assert_eq!(
        state(),
        OperationState::Cancelled(CancelReason::DeferTimeout)
    );
    assert_eq!(started.load(Ordering::SeqCst), 0);
}

/// Under `DeferPolicy::Run` only the item whose wait passed `max_defer` starts; items held
/// for less keep waiting.
#[tokio::test(start_paused = true)]
async fn max_defer_run_starts_only_the_overdue_item() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(10), DeferPolicy::Run),
    )
    .unwrap();
    let _hold = sink.hold("maintenance").unwrap();
    let early = c.enqueue(1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let late = c.enqueue(2).await.unwrap();
    let state = |id| c.operation(id).unwrap().state;
    tokio::time::sleep(Duration::from_millis(5_500)).await; // t = 10.5 s
    assert_eq!(state(early), OperationState::Completed);
    assert_eq!(state(late), OperationState::Deferred);
    assert_eq!(started.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(5)).await; // t = 15.5 s
    assert_eq!(state(late), OperationState::Completed);
}

/// An admission hook that keeps deferring is bounded by `max_defer` too, summed over its
/// deferrals.
#[tokio::test(start_paused = true)]
async fn max_defer_bounds_an_admission_hooks_repeated_deferrals() {
    #[derive(Debug)]
    struct AlwaysLater;
    impl Admission for AlwaysLater {
        fn admit<'a>(&'a self, _request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
            Box::pin(async { Decision::defer(tokio::time::sleep(Duration::from_secs(6))) })
        }
    }
    for (policy, expected) in [
        (
            DeferPolicy::Cancel,
            OperationState::Cancelled(CancelReason::DeferTimeout),
        ),
        (DeferPolicy::Run, OperationState::Completed),
    ] {
        let (started, body) = counter();
        let c = EphemeralWorkCoordinator::with_admission(
            body,
            EphemeralOptions::default().max_defer(Duration::from_secs(10), policy),
            vec![Arc::new(AlwaysLater)],
        )
        .unwrap();
        let id = c.enqueue(1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert_eq!(c.operation(id).unwrap().state, OperationState::Deferred);
        tokio::time::sleep(Duration::from_millis(200)).await;
        settle().await;
        assert_eq!(c.operation(id).unwrap().state, expected, "{policy:?}");
        assert_eq!(
            started.load(Ordering::SeqCst),
            usize::from(policy == DeferPolicy::Run)
        );
    }
}

/// Under a coordinator-wide deferral with `DeferPolicy::Run`, only the overdue item starts,
/// even when an item a hook put aside went back in front of it: `first` (held from t = 5 s,
/// due at 15 s) stayed in front of `second` (held from t = 1 s, due at 11 s), and used to
/// start with it at 11 s.
#[tokio::test(start_paused = true)]
async fn max_defer_run_starts_the_overdue_item_not_the_one_in_front_of_it() {
    /// Takes 5 s over its first item, then defers it for 1 s; admits every later one.
    #[derive(Debug, Default)]
    struct SlowThenLater(AtomicUsize);
    impl Admission for SlowThenLater {
        fn admit<'a>(&'a self, _request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
            let first = self.0.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                if !first {
                    return Decision::Admit;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                Decision::defer(tokio::time::sleep(Duration::from_secs(1)))
            })
        }
    }
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::with_admission(
        body,
        EphemeralOptions::default()
            .max_concurrency(2)
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(10), DeferPolicy::Run),
        vec![Arc::new(SlowThenLater::default())],
    )
    .unwrap();
    let first = c.enqueue(1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _hold = sink.hold("maintenance").unwrap();
    let second = c.enqueue(2).await.unwrap();
    let state = |id| c.operation(id).unwrap().state;
    tokio::time::sleep(Duration::from_millis(10_500)).await; // t = 11.5 s
    assert_eq!(state(second), OperationState::Completed);
    assert_eq!(state(first), OperationState::Deferred, "due at 15 s");
    assert_eq!(started.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(4)).await; // t = 15.5 s
    assert_eq!(state(first), OperationState::Completed);
}

/// A resume signal releases a deferral only while it is live and newer than the latest defer
/// match: one raised before the defer signal does nothing, a newer defer signal defers again,
/// and once the resume expires the live defer signal holds again.
#[tokio::test(start_paused = true)]
async fn a_resume_counts_only_while_live_and_newer_than_the_latest_defer_match() {
    let sink = SignalSink::default();
    let (started, body) = counter();
    let c = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("backpressure.*")
            .resume_on("backpressure.cleared"),
    )
    .unwrap();
    let count = || started.load(Ordering::SeqCst);
    sink.raise("backpressure.cleared").unwrap();
    let _db = sink.hold("backpressure.db").unwrap();
    c.enqueue(1).await.unwrap();
    settle().await;
    assert_eq!(count(), 0, "the resume is older than the defer signal");

    sink.raise_with(
        Signal::build("backpressure.cleared")
            .unwrap()
            .expires_in(Duration::from_secs(5)),
    )
    .unwrap();
    settle().await;
    assert_eq!(count(), 1, "a newer resume releases it");
    c.enqueue(2).await.unwrap();
    settle().await;
    assert_eq!(count(), 2, "the resume is still the newest");

    tokio::time::sleep(Duration::from_secs(5)).await; // the resume expired
    c.enqueue(3).await.unwrap();
    settle().await;
    assert_eq!(count(), 2, "the live defer signal holds again");
    sink.raise("backpressure.cleared").unwrap();
    settle().await;
    assert_eq!(count(), 3);

    sink.raise("backpressure.net").unwrap(); // newer than the resume
    c.enqueue(4).await.unwrap();
    settle().await;
    assert_eq!(count(), 3, "a newer defer signal defers again");
    sink.raise("backpressure.cleared").unwrap();
    c.drain().await.unwrap();
    assert_eq!(count(), 4);
    assert_adds_up(&c.stats());
}

/// A cancel signal raised while items wait cancels each of them as it reaches admission,
/// and spares the one already running (no `cancel_running_on`).
#[tokio::test(start_paused = true)]
async fn a_cancel_signal_cancels_the_waiting_items_and_spares_the_running_one() {
    let sink = SignalSink::default();
    let (release, released) = tokio::sync::watch::channel(false);
    let c = EphemeralWorkCoordinator::new(
        move |_: u32, _ctx: OperationContext| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                Ok::<_, Infallible>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(1)
            .signals(sink.clone())
            .cancel_on("circuit.open"),
    )
    .unwrap();
    let running = c.enqueue(0).await.unwrap();
    let mut waiting = Vec::new();
    for i in 1..5 {
        waiting.push(c.enqueue(i).await.unwrap());
    }
    settle().await;
    sink.raise("circuit.open").unwrap();
    release.send(true).unwrap();
    c.drain().await.unwrap();
    assert_eq!(
        c.operation(running).unwrap().state,
        OperationState::Completed
    );
    for id in waiting {
        assert_eq!(
            c.operation(id).unwrap().state,
            OperationState::Cancelled(CancelReason::Signal("circuit.open".parse().unwrap()))
        );
    }
    let stats = c.stats();
    assert_eq!((stats.completed, stats.cancelled), (1, 4));
    assert_adds_up(&stats);
}
