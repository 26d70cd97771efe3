//! Backpressure between two coordinators: the downstream's pending count holds
//! `backpressure.db`, the upstream defers on it and resumes the moment it is released.

mod support;
use support::alive_tasks;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, SignalSink};
use ephemeral_patterns::backpressure::Backpressure;
use tokio::sync::Semaphore;
use tokio::time::Instant;

async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}

async fn settle() {
    for _ in 0..500 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn upstream_defers_above_the_high_watermark_and_resumes_at_once_below_the_low() {
    let sink = SignalSink::default();
    let pressure = Backpressure::new(&sink, "db", 5, 2).unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let downstream = EphemeralWorkCoordinator::with_admission(
        move |_: u32, _ctx| {
            let gate = g.clone();
            async move {
                gate.acquire().await.map_err(|e| e.to_string())?.forget();
                Ok::<_, String>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(1)
            .signals(sink.clone()),
        vec![pressure.admission()],
    )
    .unwrap();
    let _monitor = pressure.monitor(&downstream).unwrap();

    let started = Arc::new(AtomicUsize::new(0));
    let (d, p, s) = (downstream.clone(), pressure.clone(), started.clone());
    let upstream = EphemeralWorkCoordinator::new(
        move |n: u32, _ctx| {
            let (downstream, pressure, started) = (d.clone(), p.clone(), s.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                downstream.enqueue(n).await.map_err(|e| e.to_string())?;
                pressure.report(&downstream);
                Ok::<_, String>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(1)
            .signals(sink.clone())
            .defer_on("backpressure.db"),
    )
    .unwrap();

    for n in 0..30 {
        upstream.enqueue(n).await.unwrap();
    }
    until("the hold is taken", || pressure.is_held()).await;
    settle().await;
    assert!(sink.has_signal("backpressure.db"));
    // Taken when the count passed 5; held until it falls below 2.
    assert!(downstream.pending_count() >= 2, "{:?}", downstream.stats());
    let stalled_at = started.load(Ordering::SeqCst);
    assert!(
        stalled_at < 30,
        "the upstream stopped starting: {stalled_at}"
    );
    settle().await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        stalled_at,
        "deferred, not running"
    );
    assert!(upstream.pending_count() > 0);

    // Let the downstream drain: once its pending count falls below 2 the hold goes and the
    // upstream resumes, without any clock advance (no polling interval to wait out).
    let before = Instant::now();
    gate.add_permits(1_000);
    until("the upstream resumes", || {
        started.load(Ordering::SeqCst) > stalled_at
    })
    .await;
    assert_eq!(Instant::now(), before);
    assert!(pressure.times_held() >= 1);

    upstream.drain().await.unwrap();
    downstream.drain().await.unwrap();
    assert_eq!(downstream.stats().completed, 30);
    until("released at the end", || !pressure.is_held()).await;
    assert!(!sink.has_signal("backpressure.db"));
}

/// Pending items that leave without starting (cancelled while they wait, or the downstream
/// cancelled) pass no admission hook; the hold is released all the same, on the monitor's
/// re-read while held.
#[tokio::test(start_paused = true)]
async fn the_hold_is_released_when_pending_items_leave_without_starting() {
    use ephemeral_patterns::backpressure::RECHECK_WHILE_HELD;
    for cancel_all in [false, true] {
        let sink = SignalSink::default();
        let pressure = Backpressure::new(&sink, "db", 5, 2).unwrap();
        let gate = Arc::new(Semaphore::new(0));
        let g = gate.clone();
        let downstream = EphemeralWorkCoordinator::with_admission(
            move |_: u32, ctx: ephemeral::OperationContext| {
                let gate = g.clone();
                async move {
                    tokio::select! {
                        permit = gate.acquire() => {
                            permit.map_err(|e| e.to_string())?.forget();
                        }
                        () = ctx.token().cancelled() => {}
                    }
                    Ok::<_, String>(())
                }
            },
            EphemeralOptions::default()
                .max_concurrency(1)
                .signals(sink.clone()),
            vec![pressure.admission()],
        )
        .unwrap();
        let _monitor = pressure.monitor(&downstream).unwrap();
        let mut ids = Vec::new();
        for n in 0..10 {
            ids.push(downstream.enqueue(n).await.unwrap());
        }
        pressure.report(&downstream);
        settle().await;
        assert!(pressure.is_held() && sink.has_signal("backpressure.db"));
        if cancel_all {
            downstream.cancel();
        } else {
            // Every item is cancelled by id: the running one and the pending ones.
            for id in &ids {
                downstream.cancel_operation(*id);
            }
        }
        settle().await;
        tokio::time::sleep(RECHECK_WHILE_HELD * 2).await;
        settle().await;
        assert!(
            !pressure.is_held() && !sink.has_signal("backpressure.db"),
            "released (cancel_all {cancel_all}): {:?}",
            downstream.stats()
        );
    }
}

/// The monitor stops once the downstream is done, also while the hold is released: it used
/// to wait for the next start, which never came, and kept running (and the coordinator
/// alive) until it was dropped.
#[tokio::test(start_paused = true)]
async fn the_monitor_stops_when_the_downstream_is_done() {
    let before = alive_tasks();
    let sink = SignalSink::default();
    let pressure = Backpressure::new(&sink, "db", 100, 20).unwrap();
    let downstream = EphemeralWorkCoordinator::with_admission(
        |_: u32, _ctx: ephemeral::OperationContext| async {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            Ok::<_, String>(())
        },
        EphemeralOptions::default().signals(sink.clone()),
        vec![pressure.admission()],
    )
    .unwrap();
    let _monitor = pressure.monitor(&downstream).unwrap();
    for n in 0..5 {
        downstream.enqueue(n).await.unwrap();
    }
    downstream.drain().await.unwrap();
    settle().await;
    assert!(!pressure.is_held());
    drop(downstream);
    settle().await;
    assert_eq!(alive_tasks(), before, "the monitor's task ended");
}
