//! Adaptive rate as a coordinator's admission hook: starts follow the rate, a signal slows
//! them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{
    Admission, AdmissionRequest, Decision, EphemeralOptions, EphemeralWorkCoordinator, OperationId,
    SignalSink,
};
use ephemeral_patterns::adaptive_rate::{AdaptiveRate, AdaptiveRateOptions};
use futures::future::BoxFuture;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn starts_follow_the_rate_and_pause_on_a_rate_limit_signal() {
    let sink = SignalSink::default();
    let limiter =
        AdaptiveRate::new(&sink, AdaptiveRateOptions::default().rate_per_second(10.0)).unwrap();
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let log = starts.clone();
    let coordinator = EphemeralWorkCoordinator::with_admission(
        move |_: u32, ctx: ephemeral::OperationContext| {
            let log = log.clone();
            async move {
                let nth = {
                    let mut log = log.lock().unwrap();
                    log.push(origin.elapsed());
                    log.len()
                };
                if nth == 3 {
                    // The downstream answers "slow down for a second".
                    ctx.signal("rate-limit:1s").map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone()),
        vec![limiter.admission()],
    )
    .unwrap();
    for n in 0..8 {
        coordinator.enqueue(n).await.unwrap();
    }
    coordinator.drain().await.unwrap();
    assert_eq!(coordinator.stats().completed, 8);
    let mut starts = starts.lock().unwrap().clone();
    starts.sort();
    let ms: Vec<u128> = starts.iter().map(Duration::as_millis).collect();
    // 100 ms apart at 10/s; the third start's signal pauses intake for 1 s and halves the
    // rate (200 ms apart until it recovers ×1.5 a second after the pause).
    assert_eq!(&ms[..3], [0, 100, 200], "{ms:?}");
    assert_eq!(ms[3], 1_200, "{ms:?}");
    assert!(
        ms[4..].iter().zip(&ms[3..]).all(|(b, a)| b - a >= 200),
        "{ms:?}"
    );
    assert_eq!(limiter.throttles(), 1);
}

/// Counts how often the hook it wraps is asked.
#[derive(Debug)]
struct Asked {
    hook: Arc<dyn Admission>,
    times: Arc<AtomicU64>,
}

impl Admission for Asked {
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        self.times.fetch_add(1, Ordering::Relaxed);
        self.hook.admit(request)
    }
}

/// Items waiting for their start queue behind one another, and only the first waits on the
/// clock: each item is asked about at most twice (when it is first taken, and once its
/// deferral ends), and items start in the order they were accepted. Deferred items used to
/// all sleep until the same next start and all be asked again for it: 400 items at 100/s
/// were asked about 80,200 times (n²/2), in no particular order.
#[tokio::test(start_paused = true)]
async fn deferred_items_wait_in_order_and_are_asked_about_twice_at_most() {
    let sink = SignalSink::default();
    let limiter =
        AdaptiveRate::new(&sink, AdaptiveRateOptions::default().rate_per_second(100.0)).unwrap();
    let times = Arc::new(AtomicU64::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let log = order.clone();
    let coordinator = EphemeralWorkCoordinator::with_admission(
        move |n: u32, _ctx: ephemeral::OperationContext| {
            log.lock().unwrap().push(n);
            async { Ok::<_, String>(()) }
        },
        EphemeralOptions::default()
            .max_concurrency(16)
            .signals(sink.clone()),
        vec![Arc::new(Asked {
            hook: limiter.admission(),
            times: times.clone(),
        }) as Arc<dyn Admission>],
    )
    .unwrap();
    let origin = Instant::now();
    for n in 0..400 {
        coordinator.enqueue(n).await.unwrap();
    }
    coordinator.drain().await.unwrap();
    assert_eq!(coordinator.stats().completed, 400);
    // The rate holds: the first at once, then one every 10 ms.
    assert_eq!(origin.elapsed(), Duration::from_millis(3_990));
    let asked = times.load(Ordering::Relaxed);
    assert!(asked <= 2 * 400, "asked {asked} times for 400 items");
    assert_eq!(*order.lock().unwrap(), (0..400).collect::<Vec<_>>());
}

/// `acquire` callers are served in the order they began waiting, with one timer among them.
#[tokio::test(start_paused = true)]
async fn acquire_serves_waiters_in_order() {
    let sink = SignalSink::default();
    let limiter =
        AdaptiveRate::new(&sink, AdaptiveRateOptions::default().rate_per_second(10.0)).unwrap();
    limiter.acquire().await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 0..20 {
        let (limiter, order) = (limiter.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            limiter.acquire().await;
            order.lock().unwrap().push(n);
        }));
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

/// Starts keep the rate and the burst when the workers, not the rate, held items back:
/// bodies that all end at the same instant free four workers at once, and the items waiting
/// for a start still go one interval apart. (A deferred item takes its start when it is asked
/// again on a worker, not while it waits for one.)
#[tokio::test(start_paused = true)]
async fn items_freed_together_by_the_workers_still_start_at_the_rate() {
    let sink = SignalSink::default();
    let limiter =
        AdaptiveRate::new(&sink, AdaptiveRateOptions::default().rate_per_second(100.0)).unwrap();
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let log = starts.clone();
    let coordinator = EphemeralWorkCoordinator::with_admission(
        move |_: u32, _ctx: ephemeral::OperationContext| {
            let started = origin.elapsed();
            log.lock().unwrap().push(started);
            // Every body ends at the next whole second, together with the others.
            let end = origin + Duration::from_secs(started.as_secs() + 1);
            async move {
                tokio::time::sleep_until(end).await;
                Ok::<_, String>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone()),
        vec![limiter.admission()],
    )
    .unwrap();
    for n in 0..20 {
        coordinator.enqueue(n).await.unwrap();
    }
    coordinator.drain().await.unwrap();
    let mut starts = starts.lock().unwrap().clone();
    starts.sort();
    let ms: Vec<u128> = starts.iter().map(Duration::as_millis).collect();
    assert_eq!(
        &ms[..8],
        [0, 10, 20, 30, 1_000, 1_010, 1_020, 1_030],
        "{ms:?}"
    );
    assert!(
        starts
            .windows(2)
            .all(|w| w[1] - w[0] >= Duration::from_millis(10)),
        "{ms:?}"
    );
}

/// Cancels one item when it is asked about again, before the hooks after it see it.
#[derive(Debug)]
struct CancelOnSecondAsk {
    victim: Mutex<Option<OperationId>>,
    asked: AtomicU64,
}

impl Admission for CancelOnSecondAsk {
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        let victim = *self.victim.lock().unwrap() == Some(request.id);
        let second = victim && self.asked.fetch_add(1, Ordering::Relaxed) == 1;
        Box::pin(async move {
            if second {
                Decision::cancel("changed its mind")
            } else {
                Decision::Admit
            }
        })
    }
}

/// An item whose start came, but that ended without being asked again (cancelled by another
/// hook as it was asked), does not hold the others up for long: the next waiter gives up on
/// it after a grace (100 ms at this rate) and the rest run.
#[tokio::test(start_paused = true)]
async fn an_item_gone_before_taking_its_start_holds_the_others_up_only_briefly() {
    let sink = SignalSink::default();
    let limiter =
        AdaptiveRate::new(&sink, AdaptiveRateOptions::default().rate_per_second(100.0)).unwrap();
    let canceller = Arc::new(CancelOnSecondAsk {
        victim: Mutex::new(None),
        asked: AtomicU64::new(0),
    });
    let coordinator = EphemeralWorkCoordinator::with_admission(
        |_: u32, _ctx: ephemeral::OperationContext| async { Ok::<_, String>(()) },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone()),
        vec![canceller.clone() as Arc<dyn Admission>, limiter.admission()],
    )
    .unwrap();
    coordinator.pause();
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(coordinator.enqueue(n).await.unwrap());
    }
    *canceller.victim.lock().unwrap() = Some(ids[3]);
    let origin = Instant::now();
    coordinator.resume();
    let drained = tokio::time::timeout(Duration::from_secs(3600), coordinator.drain()).await;
    assert!(
        drained.is_ok(),
        "the waiters behind the gone item never ran"
    );
    let stats = coordinator.stats();
    assert_eq!((stats.completed, stats.cancelled), (9, 1));
    // Nine starts 10 ms apart, plus the grace given to the gone item.
    assert_eq!(
        origin.elapsed(),
        Duration::from_millis(80 + 100),
        "{stats:?}"
    );
}
