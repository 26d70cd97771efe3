//! Presets: fixed work, keyed sequential and signal-aware intake, on the paused clock.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{
    CoordinatorError, EnqueueError, EphemeralOptions, OperationContext, Signal, SignalSink,
};
use ephemeral_atoms::presets::{FixedWork, KeyedSequential, SignalAware, SignalAwareError};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Lets workers run for `d` of paused time.
async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
}

fn noop()
-> impl Fn(u32, OperationContext) -> std::future::Ready<Result<(), Infallible>> + Send + Sync + 'static
{
    |_, _| std::future::ready(Ok(()))
}

// ---- FixedWork ----

#[tokio::test(start_paused = true)]
async fn fixed_work_stats_add_up_with_failures_and_panics() {
    let pool = FixedWork::new(3, |n: u32, _ctx: OperationContext| async move {
        tokio::time::sleep(secs(1)).await;
        match n % 7 {
            0 => Err(format!("{n} is a multiple of 7")),
            6 => panic!("boom on {n}"),
            _ => Ok(()),
        }
    })
    .unwrap();
    for n in 0..20 {
        pool.enqueue(n).await.unwrap();
    }
    pool.drain().await.unwrap();

    let stats = pool.stats();
    // 0, 7, 14 fail with an error; 6, 13 panic; the other 15 complete.
    assert_eq!(stats.accepted, 20);
    assert_eq!(stats.completed, 15);
    assert_eq!(stats.failed, 5);
    assert_eq!(stats.panicked, 2);
    assert_eq!(stats.cancelled, 0);
    assert_eq!(
        stats.accepted,
        stats.pending + stats.running + stats.completed + stats.failed + stats.cancelled
    );
    assert_eq!(stats.peak_running, 3, "the worker count is fixed at 3");
    assert!(pool.inner().is_done());
}

#[tokio::test(start_paused = true)]
async fn fixed_work_runs_exactly_concurrency_at_once() {
    let pool = FixedWork::new(4, |_n: u32, _ctx: OperationContext| async move {
        tokio::time::sleep(secs(10)).await;
        Ok::<_, Infallible>(())
    })
    .unwrap();
    for n in 0..10 {
        pool.enqueue(n).await.unwrap();
    }
    settle(secs(1)).await;
    let stats = pool.stats();
    assert_eq!((stats.running, stats.pending), (4, 6));
    pool.drain().await.unwrap();
    assert_eq!(pool.stats().completed, 10);
}

#[tokio::test(start_paused = true)]
async fn fixed_work_concurrency_overrides_options_and_zero_is_an_error() {
    let pool = FixedWork::with_options(
        2,
        noop(),
        EphemeralOptions::default().max_concurrency(16).name("pool"),
    )
    .unwrap();
    assert_eq!(pool.inner().max_concurrency(), 2);

    let err = FixedWork::new(0, noop()).unwrap_err();
    assert!(matches!(err, CoordinatorError::Options(_)), "{err:?}");
    assert!(err.to_string().contains("max_concurrency"), "{err}");
}

/// The worker count holds unless it is changed through `inner()`, the documented way out.
#[tokio::test(start_paused = true)]
async fn fixed_work_count_changes_only_through_inner() {
    let pool = FixedWork::new(2, |_n: u32, _ctx: OperationContext| async move {
        tokio::time::sleep(secs(10)).await;
        Ok::<_, Infallible>(())
    })
    .unwrap();
    pool.inner().set_max_concurrency(3).unwrap();
    assert_eq!(pool.inner().max_concurrency(), 3);
    for n in 0..5 {
        pool.enqueue(n).await.unwrap();
    }
    settle(secs(1)).await;
    assert_eq!(pool.stats().running, 3);
    pool.drain().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn fixed_work_gives_the_item_back_when_closed() {
    let pool = FixedWork::new(1, noop()).unwrap();
    pool.drain().await.unwrap();
    match pool.enqueue(42).await {
        Err(EnqueueError::Closed(item)) => assert_eq!(item, 42),
        other => panic!("expected Closed, got {other:?}"),
    }
}

// ---- KeyedSequential ----

#[tokio::test(start_paused = true)]
async fn keyed_sequential_keeps_per_key_order_one_at_a_time() {
    type Log = Arc<Mutex<Vec<(char, u32)>>>;
    let log: Log = Arc::default();
    let running: Arc<Mutex<HashMap<char, usize>>> = Arc::default();
    let max_per_key: Arc<Mutex<usize>> = Arc::default();
    let (l, r, m) = (log.clone(), running.clone(), max_per_key.clone());
    let keyed = KeyedSequential::with_options(
        move |(key, n): (char, u32), _ctx: OperationContext| {
            let (l, r, m) = (l.clone(), r.clone(), m.clone());
            async move {
                {
                    let mut r = r.lock().unwrap();
                    let now = r.entry(key).or_default();
                    *now += 1;
                    let mut m = m.lock().unwrap();
                    *m = (*m).max(*now);
                }
                // Later items of a key finish sooner: a per-key overlap would reorder them.
                tokio::time::sleep(Duration::from_millis(u64::from(100 - n))).await;
                l.lock().unwrap().push((key, n));
                *r.lock().unwrap().get_mut(&key).unwrap() -= 1;
                Ok::<_, Infallible>(())
            }
        },
        // per_key_concurrency(4) is overridden: the preset is always 1 per key.
        EphemeralOptions::default()
            .max_concurrency(8)
            .per_key_concurrency(4),
    )
    .unwrap();
    for n in 0..30 {
        let key = ['a', 'b', 'c'][n as usize % 3];
        keyed.enqueue(key, (key, n)).await.unwrap();
    }
    settle(Duration::from_millis(10)).await;
    assert_eq!(keyed.key_stats(&'a').running, 1);
    assert_eq!(
        keyed.inner().active_count(),
        3,
        "the three keys run in parallel"
    );
    keyed.drain().await.unwrap();

    let log = log.lock().unwrap();
    for key in ['a', 'b', 'c'] {
        let order: Vec<u32> = log
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, n)| *n)
            .collect();
        let expected: Vec<u32> = (0..30)
            .filter(|n| ['a', 'b', 'c'][*n as usize % 3] == key)
            .collect();
        assert_eq!(order, expected, "order of key {key}");
    }
    assert_eq!(*max_per_key.lock().unwrap(), 1);
    let stats = keyed.stats();
    assert_eq!((stats.accepted, stats.completed), (30, 30));
    assert_eq!(stats.peak_running, 3);
    assert_eq!(keyed.inner().key_count(), 0, "idle keys hold no state");
}

#[tokio::test(start_paused = true)]
async fn keyed_sequential_a_failure_does_not_stop_the_key() {
    let keyed = KeyedSequential::new(|n: u32, _ctx: OperationContext| async move {
        if n == 1 { Err("bad item") } else { Ok(()) }
    })
    .unwrap();
    for n in 0..4 {
        keyed.enqueue("k", n).await.unwrap();
    }
    keyed.drain().await.unwrap();
    let stats = keyed.stats();
    assert_eq!((stats.completed, stats.failed), (3, 1));
    assert_eq!(keyed.inner().failed()[0].error.as_deref(), Some("bad item"));
}

// ---- SignalAware: refusal ----

fn refusing(sink: &SignalSink) -> SignalAware<u32> {
    SignalAware::new(noop(), sink.clone())
        .refuse_on("maintenance.*")
        .refuse_on("circuit.open")
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn signal_aware_refuses_while_live_and_accepts_after_expiry() {
    let sink = SignalSink::default();
    let intake = refusing(&sink);
    intake.enqueue(1).await.unwrap();

    sink.raise_with(
        Signal::build("maintenance.db")
            .unwrap()
            .expires_in(secs(10)),
    )
    .unwrap();
    assert!(intake.is_refusing());
    let err = intake.enqueue(2).await.unwrap_err();
    assert_eq!(err.signal(), Some("maintenance.db"));
    let message = err.to_string();
    assert!(
        message.contains("maintenance.db") && message.contains("maintenance.*"),
        "{message}"
    );
    assert_eq!(err.into_inner(), 2);
    assert!(matches!(
        intake.try_enqueue(3),
        Err(SignalAwareError::Refused { item: 3, .. })
    ));

    settle(secs(9)).await;
    assert!(intake.enqueue(4).await.is_err(), "still live at 9 s");
    settle(secs(2)).await;
    assert!(!intake.is_refusing());
    intake.enqueue(5).await.unwrap();
    intake.try_enqueue(6).unwrap();

    intake.drain().await.unwrap();
    let stats = intake.stats();
    // Refused items were never accepted: 1, 5 and 6 were.
    assert_eq!((stats.accepted, stats.completed), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn signal_aware_accepts_again_after_retract_and_names_the_latest_signal() {
    let sink = SignalSink::default();
    let intake = refusing(&sink);
    sink.raise("circuit.open").unwrap();
    match intake.enqueue(1).await {
        Err(SignalAwareError::Refused {
            signal, pattern, ..
        }) => {
            assert_eq!(
                (signal.as_str(), pattern.as_str()),
                ("circuit.open", "circuit.open")
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    sink.raise("maintenance.cache").unwrap();
    sink.raise("maintenance.disk").unwrap();
    assert_eq!(sink.retract("circuit.open"), 1);
    assert_eq!(
        intake.enqueue(2).await.unwrap_err().signal(),
        Some("maintenance.disk")
    );
    // Across patterns too: the latest of all, not the first pattern's.
    sink.raise("circuit.open").unwrap();
    match intake.enqueue(3).await {
        Err(SignalAwareError::Refused {
            signal, pattern, ..
        }) => assert_eq!(
            (signal.as_str(), pattern.as_str()),
            ("circuit.open", "circuit.open")
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    sink.retract("circuit.open");
    sink.retract("maintenance.cache");
    sink.retract("maintenance.disk");
    intake.enqueue(4).await.unwrap();
    intake.drain().await.unwrap();
    assert_eq!(intake.stats().completed, 1);
}

#[tokio::test(start_paused = true)]
async fn signal_aware_ignores_signals_that_do_not_match() {
    let sink = SignalSink::default();
    let intake = refusing(&sink);
    sink.raise("maintenance_window").unwrap();
    sink.raise("circuit.half_open").unwrap();
    assert!(!intake.is_refusing());
    intake.enqueue(1).await.unwrap();
    intake.drain().await.unwrap();
    assert_eq!(intake.stats().completed, 1);
}

#[tokio::test(start_paused = true)]
async fn signal_aware_closed_gives_the_item_back() {
    let sink = SignalSink::default();
    let intake = refusing(&sink);
    intake.drain().await.unwrap();
    match intake.enqueue(9).await {
        Err(SignalAwareError::Enqueue(EnqueueError::Closed(item))) => assert_eq!(item, 9),
        other => panic!("expected Closed, got {other:?}"),
    }
}

// ---- SignalAware: deferral ----

fn deferring(sink: &SignalSink, log: Arc<Mutex<Vec<u32>>>) -> SignalAware<u32> {
    SignalAware::new(
        move |n: u32, _ctx: OperationContext| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(n);
                Ok::<_, Infallible>(())
            }
        },
        sink.clone(),
    )
    .defer_on("backpressure.high")
    // After defer_on on purpose: options() must not drop the defer and resume rules.
    .options(EphemeralOptions::default().max_concurrency(1))
    .resume_on("backpressure.cleared")
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn signal_aware_defers_then_resumes_on_signal() {
    let sink = SignalSink::default();
    let log: Arc<Mutex<Vec<u32>>> = Arc::default();
    let intake = deferring(&sink, log.clone());
    assert_eq!(
        intake.inner().max_concurrency(),
        1,
        "the base options apply"
    );
    sink.raise("backpressure.high").unwrap();
    for n in 0..3 {
        intake.enqueue(n).await.unwrap(); // deferral accepts, it does not refuse
    }
    settle(secs(5)).await;
    let stats = intake.stats();
    assert_eq!((stats.pending, stats.running, stats.completed), (3, 0, 0));
    assert!(log.lock().unwrap().is_empty());

    sink.raise("backpressure.cleared").unwrap();
    intake.drain().await.unwrap();
    assert_eq!(*log.lock().unwrap(), [0, 1, 2]);
    assert_eq!(intake.stats().completed, 3);
}

#[tokio::test(start_paused = true)]
async fn signal_aware_deferral_ends_when_the_defer_signal_is_retracted() {
    let sink = SignalSink::default();
    let log: Arc<Mutex<Vec<u32>>> = Arc::default();
    let intake = deferring(&sink, log.clone());
    sink.raise("backpressure.high").unwrap();
    intake.enqueue(7).await.unwrap();
    settle(secs(5)).await;
    assert!(log.lock().unwrap().is_empty());
    sink.retract("backpressure.high");
    intake.drain().await.unwrap();
    assert_eq!(*log.lock().unwrap(), [7]);
}
