//! Circuit breaker steering a coordinator: cancel on `circuit.open`, bounded half-open
//! probes through the admission hook, closing on a probe's success.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ephemeral::{
    CancelReason, EphemeralOptions, EphemeralWorkCoordinator, OperationContext, OperationState,
    SignalSink,
};
use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions, CircuitState};
use tokio::sync::Semaphore;
use tokio::time::{advance, sleep};

#[derive(Debug, Clone, Copy)]
enum Job {
    /// Signals `failure` and fails.
    Fail,
    /// Waits for a gate permit, then succeeds.
    Gated,
}

/// Yields until `cond` holds, without moving the clock; fails the test if it never does.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}

/// Lets the coordinator pick up an item just enqueued. The tests enqueue items one after
/// another rather than in one burst: the coordinator on the `coord` branch (at the time of
/// writing) gives a burst that arrives while one worker is idle to that single worker, so a
/// burst would run one at a time whatever the breaker admits.
async fn arrive() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

struct Setup {
    sink: SignalSink,
    breaker: CircuitBreaker,
    coordinator: EphemeralWorkCoordinator<Job>,
    gate: Arc<Semaphore>,
    gated_started: Arc<AtomicUsize>,
}

fn setup(options: CircuitBreakerOptions) -> Setup {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(&sink, options).unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let gated_started = Arc::new(AtomicUsize::new(0));
    let (g, s) = (gate.clone(), gated_started.clone());
    let coordinator = EphemeralWorkCoordinator::with_admission(
        move |job: Job, ctx: OperationContext| {
            let (gate, started) = (g.clone(), s.clone());
            async move {
                match job {
                    Job::Fail => {
                        ctx.signal("failure").map_err(|e| e.to_string())?;
                        Err("downstream refused".to_owned())
                    }
                    Job::Gated => {
                        started.fetch_add(1, Ordering::SeqCst);
                        tokio::select! {
                            permit = gate.acquire() => {
                                permit.map_err(|e| e.to_string())?.forget();
                                Ok(())
                            }
                            () = ctx.token().cancelled() => Err("cancelled".to_owned()),
                        }
                    }
                }
            }
        },
        EphemeralOptions::default()
            .max_concurrency(8)
            .signals(sink.clone())
            .cancel_on("circuit.open")
            .on_finalized(breaker.observer()),
        vec![breaker.admission()],
    )
    .unwrap();
    Setup {
        sink,
        breaker,
        coordinator,
        gate,
        gated_started,
    }
}

#[tokio::test(start_paused = true)]
async fn five_failures_open_then_exactly_the_probes_run_and_one_success_closes() {
    let s = setup(
        CircuitBreakerOptions::default()
            .failures_within(5, Duration::from_secs(30))
            .open_for(Duration::from_secs(30))
            .probes(2, 1),
    );
    for i in 1..=5u64 {
        s.coordinator.enqueue(Job::Fail).await.unwrap();
        until("the failure is recorded", || {
            s.coordinator.stats().failed == i
        })
        .await;
        advance(Duration::from_secs(5)).await;
    }
    assert_eq!(s.breaker.state(), CircuitState::Open);
    assert!(s.sink.has_signal("circuit.open"));

    // While open, the next items are recorded as cancelled by the signal.
    let mut refused = Vec::new();
    for _ in 0..3 {
        refused.push(s.coordinator.enqueue(Job::Gated).await.unwrap());
    }
    until("three cancellations", || {
        s.coordinator.stats().cancelled == 3
    })
    .await;
    for id in refused {
        let op = s.coordinator.operation(id).unwrap();
        match op.state {
            OperationState::Cancelled(CancelReason::Signal(name)) => {
                assert_eq!(name.as_str(), "circuit.open");
            }
            other => panic!("expected cancelled by circuit.open, got {other:?}"),
        }
    }
    assert_eq!(s.gated_started.load(Ordering::SeqCst), 0);

    // After the open period: half-open admits exactly two probes, the rest wait.
    sleep(Duration::from_secs(30)).await;
    assert_eq!(s.breaker.state(), CircuitState::HalfOpen);
    // Arriving one after another (see `arrive`).
    for _ in 0..5 {
        s.coordinator.enqueue(Job::Gated).await.unwrap();
        arrive().await;
    }
    until("two probes run", || {
        s.gated_started.load(Ordering::SeqCst) == 2
    })
    .await;
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        s.gated_started.load(Ordering::SeqCst),
        2,
        "only the probes run"
    );
    assert_eq!(s.breaker.probes_admitted(), 2);
    assert_eq!(s.coordinator.stats().pending, 3);

    // One probe succeeds: the breaker closes and the waiting items start at once.
    let before = tokio::time::Instant::now();
    s.gate.add_permits(1);
    until("the breaker closes", || {
        s.breaker.state() == CircuitState::Closed
    })
    .await;
    assert_eq!(s.sink.count("circuit.closed"), 1);
    until("the waiting items start", || {
        s.gated_started.load(Ordering::SeqCst) == 5
    })
    .await;
    assert_eq!(
        tokio::time::Instant::now(),
        before,
        "no clock advance was needed"
    );

    s.gate.add_permits(10);
    s.coordinator.drain().await.unwrap();
    let stats = s.coordinator.stats();
    assert_eq!(
        (stats.completed, stats.failed, stats.cancelled),
        (5, 5, 3),
        "{stats:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_probe_reopens_and_the_waiting_items_are_cancelled() {
    let s = setup(
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(10))
            .backoff(2.0, Duration::from_secs(60))
            .probes(1, 1),
    );
    s.coordinator.enqueue(Job::Fail).await.unwrap();
    until("open", || s.breaker.state() == CircuitState::Open).await;
    sleep(Duration::from_secs(10)).await;
    assert_eq!(s.breaker.state(), CircuitState::HalfOpen);

    // The probe fails; the two items waiting behind it are refused once it reopens.
    s.coordinator.enqueue(Job::Fail).await.unwrap();
    until("the probe fails", || s.coordinator.stats().failed == 2).await;
    for _ in 0..2 {
        s.coordinator.enqueue(Job::Gated).await.unwrap();
    }
    until("both refused", || s.coordinator.stats().cancelled == 2).await;
    assert_eq!(s.breaker.state(), CircuitState::Open);
    assert_eq!(s.breaker.time_until_close(), Some(Duration::from_secs(20)));
    assert_eq!(s.gated_started.load(Ordering::SeqCst), 0);
    s.coordinator.drain().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_slot_back() {
    let s = setup(
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(1))
            .probes(1, 1),
    );
    s.breaker.trip();
    sleep(Duration::from_secs(1)).await;
    let probe = s.coordinator.enqueue(Job::Gated).await.unwrap();
    arrive().await;
    let waiting = s.coordinator.enqueue(Job::Gated).await.unwrap();
    until("the probe runs", || {
        s.gated_started.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(s.coordinator.cancel_operation(probe));
    until("the next item takes the probe slot", || {
        s.gated_started.load(Ordering::SeqCst) == 2
    })
    .await;
    s.gate.add_permits(1);
    until("closed by the second probe", || {
        s.breaker.state() == CircuitState::Closed
    })
    .await;
    assert!(matches!(
        s.coordinator.operation(waiting).unwrap().state,
        OperationState::Completed
    ));
    s.coordinator.drain().await.unwrap();
}

/// Puts every item aside once (for a second) before admitting it: a hook after the
/// breaker's in the coordinator's list, as a rate limiter's would be.
#[derive(Debug)]
struct AsideOnce {
    seen: std::sync::Mutex<std::collections::HashSet<ephemeral::OperationId>>,
}

impl ephemeral::Admission for AsideOnce {
    fn admit<'a>(
        &'a self,
        request: &'a ephemeral::AdmissionRequest,
    ) -> futures::future::BoxFuture<'a, ephemeral::Decision> {
        let first = self.seen.lock().unwrap().insert(request.id);
        Box::pin(async move {
            if first {
                ephemeral::Decision::defer(sleep(Duration::from_secs(1)))
            } else {
                ephemeral::Decision::Admit
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_probe_put_aside_by_a_later_hook_keeps_its_slot_and_runs() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .open_for(Duration::from_secs(10))
            .probes(1, 1),
    )
    .unwrap();
    let coordinator = EphemeralWorkCoordinator::with_admission(
        |_: u32, _ctx: OperationContext| async { Ok::<_, String>(()) },
        EphemeralOptions::default()
            .signals(sink.clone())
            .on_finalized(breaker.observer()),
        vec![
            breaker.admission(),
            Arc::new(AsideOnce {
                seen: std::sync::Mutex::new(std::collections::HashSet::new()),
            }),
        ],
    )
    .unwrap();
    breaker.trip();
    advance(Duration::from_secs(11)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    coordinator.enqueue(1).await.unwrap();
    sleep(Duration::from_secs(5)).await;
    assert_eq!(
        coordinator.stats().completed,
        1,
        "the probe ran: {:?}",
        coordinator.stats()
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.probes_admitted(), 0);
}
