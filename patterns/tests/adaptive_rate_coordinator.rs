//! Adaptive rate as a coordinator's admission hook: starts follow the rate, a signal slows
//! them.
//!
//! The hook is atoms' `RateLimitAdmission` over the limiter, and `acquire` is atoms'
//! `RateLimiter::acquire`: how waiters are served (in order, asked about twice at most, the
//! rate kept when workers free together, the grace for an item gone before taking its
//! permit) is tested once, in atoms' `rate_limit_admission` and `rate_limit` tests. What is
//! the adaptive limiter's own is tested here and in `adaptive_rate`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, SignalSink};
use ephemeral_patterns::adaptive_rate::{AdaptiveRate, AdaptiveRateOptions};
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
