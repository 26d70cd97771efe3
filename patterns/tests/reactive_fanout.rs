//! Reactive fan-out: stage 2's backlog throttles stage 1 through `backpressure.<name>`, and
//! stage 1 resumes the moment the backlog recovers, with nothing lost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ephemeral::{CancelReason, EphemeralOptions, OperationContext, OperationState, SignalSink};
use ephemeral_patterns::reactive_fanout::{
    ReactiveFanout, ReactiveFanoutError, ReactiveFanoutOptions,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

async fn settle() {
    for _ in 0..500 {
        tokio::task::yield_now().await;
    }
}

/// Stage 1 turns each input into 4 outputs; stage 2 runs one output per gate permit.
fn gated(
    sink: &SignalSink,
    high: usize,
    low: usize,
) -> (ReactiveFanout<u32, u32>, Arc<Semaphore>, Arc<AtomicUsize>) {
    let gate = Arc::new(Semaphore::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (g, d) = (gate.clone(), done.clone());
    let pipeline = ReactiveFanout::new(
        sink,
        |input: u32, _ctx: OperationContext| async move {
            Ok::<_, String>((0..4).map(|i| input * 10 + i).collect::<Vec<_>>())
        },
        move |_output: u32, _ctx: OperationContext| {
            let (gate, done) = (g.clone(), d.clone());
            async move {
                gate.acquire().await.map_err(|e| e.to_string())?.forget();
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(())
            }
        },
        ReactiveFanoutOptions::new("stage2", high, low)
            .first(EphemeralOptions::default().max_concurrency(1))
            .second(EphemeralOptions::default().max_concurrency(2)),
    )
    .unwrap();
    (pipeline, gate, done)
}

#[tokio::test(start_paused = true)]
async fn stage_two_backlog_throttles_stage_one_and_recovery_restores_it_at_once() {
    let sink = SignalSink::default();
    let (pipeline, gate, done) = gated(&sink, 8, 3);
    for input in 0..10 {
        pipeline.enqueue(input).await.unwrap();
    }
    settle().await;
    // 2 outputs running, the rest waiting; stage 1 stopped once more than 8 waited.
    assert!(pipeline.is_throttled());
    assert!(sink.has_signal("backpressure.stage2"));
    let backlog = pipeline.second().pending_count();
    assert!(backlog > 8, "backlog {backlog}");
    assert!(
        backlog <= 8 + 4,
        "backlog {backlog} overshot by more than one input's outputs"
    );
    let inputs_left = pipeline.first().pending_count();
    assert!(inputs_left > 0, "stage 1 should be holding inputs back");
    settle().await;
    assert_eq!(
        pipeline.first().pending_count(),
        inputs_left,
        "stage 1 kept starting"
    );

    // Let stage 2 work its backlog below the low watermark; stage 1 resumes with no clock advance.
    let before = Instant::now();
    let started = pipeline.first().stats().completed;
    while pipeline.second().pending_count() >= 3 {
        gate.add_permits(1);
        settle().await;
    }
    settle().await;
    assert!(
        pipeline.first().stats().completed > started,
        "stage 1 did not resume"
    );
    assert_eq!(Instant::now(), before, "resuming took clock time");

    gate.add_permits(1_000);
    pipeline.drain().await.unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 40, "every output ran once");
    assert_eq!(pipeline.first().stats().completed, 10);
    assert_eq!(pipeline.second().stats().completed, 40);
    assert!(pipeline.times_throttled() >= 1);
    assert!(!pipeline.is_throttled());
    assert!(!sink.has_signal("backpressure.stage2"));
}

#[tokio::test(start_paused = true)]
async fn below_the_high_watermark_stage_one_is_never_throttled() {
    let sink = SignalSink::default();
    let (pipeline, gate, done) = gated(&sink, 100, 10);
    gate.add_permits(1_000);
    for input in 0..10 {
        pipeline.enqueue(input).await.unwrap();
    }
    pipeline.drain().await.unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 40);
    assert_eq!(pipeline.times_throttled(), 0);
}

#[tokio::test(start_paused = true)]
async fn stage_one_failures_and_panics_are_recorded_and_the_rest_flows() {
    let sink = SignalSink::default();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let pipeline = ReactiveFanout::new(
        &sink,
        |input: u32, _ctx: OperationContext| async move {
            match input {
                3 => Err(format!("input {input} is bad")),
                5 => panic!("input 5 panicked"),
                _ => Ok(vec![input, input]),
            }
        },
        move |_: u32, _ctx: OperationContext| {
            let done = d.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(())
            }
        },
        ReactiveFanoutOptions::new("s", 3, 1),
    )
    .unwrap();
    for input in 0..8 {
        pipeline.enqueue(input).await.unwrap();
    }
    pipeline.drain().await.unwrap();
    assert_eq!(pipeline.first().stats().failed, 2);
    assert_eq!(pipeline.first().stats().completed, 6);
    assert_eq!(done.load(Ordering::SeqCst), 12);
}

#[tokio::test(start_paused = true)]
async fn bad_watermarks_or_name_are_a_typed_error() {
    let sink = SignalSink::default();
    let built = ReactiveFanout::new(
        &sink,
        |_: u32, _ctx: OperationContext| async { Ok::<_, String>(vec![1u32]) },
        |_: u32, _ctx: OperationContext| async { Ok::<_, String>(()) },
        ReactiveFanoutOptions::new("x", 2, 5),
    );
    match built {
        Err(ReactiveFanoutError::Backpressure(e)) => {
            assert!(e.to_string().contains('5'), "{e}");
        }
        other => panic!("expected a watermark error, got {other:?}"),
    }
    // An empty name would hold `backpressure.`, which names nothing.
    let built = ReactiveFanout::new(
        &sink,
        |_: u32, _ctx: OperationContext| async { Ok::<_, String>(vec![1u32]) },
        |_: u32, _ctx: OperationContext| async { Ok::<_, String>(()) },
        ReactiveFanoutOptions::new("", 5, 2),
    );
    match built {
        Err(ReactiveFanoutError::Backpressure(e)) => {
            assert!(e.to_string().contains("empty"), "{e}");
        }
        other => panic!("expected an empty-name error, got {other:?}"),
    }
}

/// A high watermark at or above stage 2's `max_pending` could never be passed (no more than
/// `max_pending` outputs ever wait there): stage 1 would never be throttled, so it is refused.
#[tokio::test(start_paused = true)]
async fn a_high_watermark_stage_two_can_never_reach_is_refused() {
    let sink = SignalSink::default();
    let build = |high: usize, second: EphemeralOptions| {
        ReactiveFanout::new(
            &sink,
            |_: u32, _ctx: OperationContext| async { Ok::<_, String>(vec![1u32]) },
            |_: u32, _ctx: OperationContext| async { Ok::<_, String>(()) },
            ReactiveFanoutOptions::new("x", high, 1).second(second),
        )
        .map(|_| ())
    };
    for (high, max_pending) in [(50, 20), (20, 20), (1024, 1024)] {
        let second = EphemeralOptions::default().max_pending(max_pending);
        let err = build(high, second).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("{high}")) && text.contains("max_pending"),
            "{text}"
        );
    }
    // The default max_pending is 1024.
    assert!(build(1024, EphemeralOptions::default()).is_err());
    assert!(build(1023, EphemeralOptions::default()).is_ok());
    assert!(build(19, EphemeralOptions::default().max_pending(20)).is_ok());
}

/// A stage-1 operation cancelled while it waits for room in stage 2 stops handing over at
/// once (it is not left to be aborted after the grace period), and the outputs it still held
/// are counted as abandoned.
#[tokio::test(start_paused = true)]
async fn cancelling_stage_one_mid_hand_over_stops_it_and_counts_what_was_left() {
    let sink = SignalSink::default();
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let pipeline = ReactiveFanout::new(
        &sink,
        |_: u32, _ctx: OperationContext| async { Ok::<_, String>((0..10u32).collect::<Vec<_>>()) },
        move |_: u32, _ctx: OperationContext| {
            let gate = g.clone();
            async move {
                gate.acquire().await.map_err(|e| e.to_string())?.forget();
                Ok::<_, String>(())
            }
        },
        // Throttling holds back new inputs only: the one running still waits for room.
        ReactiveFanoutOptions::new("links", 1, 1)
            .first(EphemeralOptions::default().abort_grace(Duration::from_secs(3600)))
            .second(
                EphemeralOptions::default()
                    .max_concurrency(1)
                    .max_pending(2),
            ),
    )
    .unwrap();
    let id = pipeline.enqueue(0).await.unwrap();
    settle().await;
    // One output running, two waiting, and the hand-over waits for room for the fourth.
    assert_eq!(pipeline.second().stats().accepted, 3);
    assert_eq!(
        pipeline.first().operation(id).map(|op| op.state),
        Some(OperationState::Running)
    );

    pipeline.first().cancel_operation(id);
    settle().await;
    assert_eq!(
        pipeline.first().operation(id).map(|op| op.state),
        Some(OperationState::Cancelled(CancelReason::Explicit))
    );
    assert_eq!(pipeline.outputs_abandoned(), 7);

    gate.add_permits(1_000);
    pipeline.drain().await.unwrap();
    assert_eq!(pipeline.second().stats().completed, 3);
    assert_eq!(pipeline.outputs_abandoned(), 7);
}

/// The backlog bound holds when the sink refuses `backpressure.<name>` (its `max_holds` taken
/// by someone else): stage 1 is throttled on the reporter's own state, not on the signal.
#[tokio::test(start_paused = true)]
async fn the_backlog_stays_bounded_when_the_sink_refuses_the_hold() {
    let sink = SignalSink::new(ephemeral::SinkOptions::default().max_holds(1)).unwrap();
    let _someone_else = sink.hold("maintenance").unwrap();
    let second: Arc<OnceLock<ephemeral::EphemeralWorkCoordinator<u32>>> = Arc::default();
    let backlog_at_start = Arc::new(AtomicUsize::new(0));
    let (stage2, seen) = (second.clone(), backlog_at_start.clone());
    let pipeline = ReactiveFanout::new(
        &sink,
        move |page: u32, _ctx: OperationContext| {
            // With one stage-1 body at a time, each starts only once the backlog its
            // predecessor left is at most `high`.
            let backlog = stage2.get().map_or(0, |c| c.pending_count());
            seen.fetch_max(backlog, Ordering::SeqCst);
            async move { Ok::<_, String>((0..5).map(|l| page * 100 + l).collect::<Vec<_>>()) }
        },
        |_: u32, _ctx: OperationContext| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, String>(())
        },
        ReactiveFanoutOptions::new("links", 20, 5)
            .first(EphemeralOptions::default().max_concurrency(1))
            .second(EphemeralOptions::default().max_concurrency(1)),
    )
    .unwrap();
    second.set(pipeline.second().clone()).unwrap();
    for page in 0..100 {
        pipeline.enqueue(page).await.unwrap();
    }
    settle().await;
    assert!(pipeline.is_throttled());
    assert!(!sink.has_signal("backpressure.links"));
    assert!(matches!(
        pipeline.pressure().last_sink_error(),
        Some(ephemeral::RaiseError::TooManyHolds { .. })
    ));
    pipeline.drain().await.unwrap();
    assert_eq!(pipeline.second().stats().completed, 500);
    let worst = backlog_at_start.load(Ordering::SeqCst);
    assert!(
        worst <= 20,
        "a stage-1 body started over a backlog of {worst}"
    );
    assert!(pipeline.times_throttled() >= 1);
}
