//! Adaptive rate as a coordinator's admission hook: starts follow the rate, a signal slows
//! them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{
    Admission, AdmissionRequest, Decision, EphemeralOptions, EphemeralWorkCoordinator, SignalSink,
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
