//! A rate limiter as a coordinator admission hook: exact start times, no slot held while
//! waiting.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator};
use ephemeral_atoms::rate_limit::{GcraLimiter, RateLimitAdmission, TokenBucket};
use tokio::time::Instant;

async fn start_times<L>(limiter: Arc<L>) -> Vec<u128>
where
    L: ephemeral_atoms::rate_limit::RateLimiter + Send + Sync + 'static,
{
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let body = {
        let starts = starts.clone();
        move |_: u32, _ctx| {
            starts.lock().unwrap().push(origin.elapsed().as_millis());
            async { Ok::<_, Infallible>(()) }
        }
    };
    let c = EphemeralWorkCoordinator::with_admission(
        body,
        EphemeralOptions::default().max_concurrency(2),
        vec![Arc::new(RateLimitAdmission::new(limiter))],
    )
    .unwrap();
    for i in 0..9 {
        c.enqueue(i).await.unwrap();
    }
    c.drain().await.unwrap();
    assert_eq!(c.stats().completed, 9);
    let mut v = starts.lock().unwrap().clone();
    v.sort_unstable();
    v
}

#[tokio::test(start_paused = true)]
async fn gcra_admission_starts_items_at_the_exact_grant_times() {
    let limiter = Arc::new(GcraLimiter::new(10.0, 5).unwrap());
    assert_eq!(
        start_times(limiter).await,
        [0, 0, 0, 0, 0, 100, 200, 300, 400]
    );
}

#[tokio::test(start_paused = true)]
async fn token_bucket_admission_behaves_the_same() {
    let limiter = Arc::new(TokenBucket::new(10.0, 5).unwrap());
    assert_eq!(
        start_times(limiter).await,
        [0, 0, 0, 0, 0, 100, 200, 300, 400]
    );
}

#[tokio::test(start_paused = true)]
async fn deferred_items_hold_no_slot() {
    // One permit per second and a single worker: while items wait for permits, the worker
    // is free, so running never exceeds zero between grants.
    let limiter = Arc::new(GcraLimiter::new(1.0, 1).unwrap());
    let c = EphemeralWorkCoordinator::with_admission(
        |_: u32, _ctx| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default().max_concurrency(1),
        vec![Arc::new(RateLimitAdmission::new(limiter))],
    )
    .unwrap();
    for i in 0..3 {
        c.enqueue(i).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let stats = c.stats();
    assert_eq!(stats.completed, 1);
    assert_eq!(stats.running, 0);
    c.drain().await.unwrap();
    assert_eq!(c.stats().completed, 3);
}
