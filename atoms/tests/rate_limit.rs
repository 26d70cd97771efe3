//! Rate limiting: exact GCRA grant times, token bucket parity, keyed reclaim, live control.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_atoms::rate_limit::{
    GcraLimiter, KeyedRateLimiter, LimitReason, RateConfigError, RateLimited, RateLimiter,
    TokenBucket, Tunable, Waiters, control,
};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Grant times (from start) of `n` sequential `acquire`s.
async fn grant_times(limiter: &impl RateLimiter, n: usize) -> Vec<Duration> {
    let start = Instant::now();
    let mut times = Vec::new();
    for _ in 0..n {
        limiter.acquire().await;
        times.push(start.elapsed());
    }
    times
}

const EXPECTED: [u64; 9] = [0, 0, 0, 0, 0, 100, 200, 300, 400];

#[tokio::test(start_paused = true)]
async fn gcra_ten_per_second_burst_five_exact_grant_times() {
    let limiter = GcraLimiter::new(10.0, 5).unwrap();
    let times = grant_times(&limiter, 9).await;
    assert_eq!(times, EXPECTED.map(ms));
}

#[tokio::test(start_paused = true)]
async fn token_bucket_grants_at_the_same_times() {
    let bucket = TokenBucket::new(10.0, 5).unwrap();
    let times = grant_times(&bucket, 9).await;
    assert_eq!(times, EXPECTED.map(ms));
}

/// `check` says what `try_acquire` would, and takes nothing.
#[tokio::test(start_paused = true)]
async fn gcra_check_looks_without_taking() {
    let limiter = GcraLimiter::new(10.0, 2).unwrap();
    for _ in 0..5 {
        assert!(limiter.check().is_ok());
    }
    limiter.try_acquire().unwrap();
    assert!(limiter.check().is_ok(), "one of the burst of 2 is left");
    limiter.try_acquire().unwrap();
    assert_eq!(limiter.check().unwrap_err().retry_after, ms(100));
    assert_eq!(limiter.try_acquire().unwrap_err().retry_after, ms(100));
    tokio::time::advance(ms(40)).await;
    assert_eq!(limiter.check().unwrap_err().retry_after, ms(60));
    tokio::time::advance(ms(60)).await;
    assert!(limiter.check().is_ok());
    limiter.try_acquire().unwrap();
    assert!(limiter.check().is_err());
}

/// The bucket's `check` says what `try_acquire` would, and takes nothing.
#[tokio::test(start_paused = true)]
async fn token_bucket_check_looks_without_taking() {
    let bucket = TokenBucket::new(10.0, 2).unwrap();
    for _ in 0..5 {
        assert!(bucket.check().is_ok());
    }
    assert_eq!(bucket.available(), 2.0);
    bucket.try_acquire().unwrap();
    assert!(bucket.check().is_ok(), "one of the burst of 2 is left");
    bucket.try_acquire().unwrap();
    assert_eq!(bucket.check().unwrap_err().retry_after, ms(100));
    assert_eq!(bucket.try_acquire().unwrap_err().retry_after, ms(100));
    tokio::time::advance(ms(40)).await;
    assert_eq!(bucket.check().unwrap_err().retry_after, ms(60));
    tokio::time::advance(ms(60)).await;
    assert!(bucket.check().is_ok());
    bucket.try_acquire().unwrap();
    assert!(bucket.check().is_err());
}

/// A limiter wrapped to count how often it is asked (`try_acquire` and `check`); it
/// forwards its queue of waiters to the limiter it wraps.
struct Counted<L> {
    limiter: L,
    asked: AtomicU64,
}

impl<L: RateLimiter> Tunable for Counted<L> {
    fn rate(&self) -> f64 {
        self.limiter.rate()
    }
    fn burst(&self) -> u32 {
        self.limiter.burst()
    }
    fn set_rate(&self, per_second: f64) -> Result<(), RateConfigError> {
        self.limiter.set_rate(per_second)
    }
    fn set_burst(&self, burst: u32) -> Result<(), RateConfigError> {
        self.limiter.set_burst(burst)
    }
}

impl<L: RateLimiter> RateLimiter for Counted<L> {
    fn try_acquire(&self) -> Result<(), RateLimited> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        self.limiter.try_acquire()
    }
    fn try_acquire_waited(&self, waited: Duration) -> Result<(), RateLimited> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        self.limiter.try_acquire_waited(waited)
    }
    fn check(&self) -> Result<(), RateLimited> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        self.limiter.check()
    }
    fn waiters(&self) -> &Waiters {
        self.limiter.waiters()
    }
}

/// Has 200 tasks `acquire` from `limiter`, each beginning to wait before the next is
/// spawned; returns the order they were served in and how often the limiter was asked.
async fn two_hundred_acquirers<L: RateLimiter + 'static>(limiter: L) -> (Vec<u32>, u64) {
    let limiter = Arc::new(Counted {
        limiter,
        asked: AtomicU64::new(0),
    });
    let origin = Instant::now();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 0..200 {
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
    // The first at once, then one every 10 ms.
    assert_eq!(origin.elapsed(), ms(1_990));
    let order = order.lock().unwrap().clone();
    (order, limiter.asked.load(Ordering::Relaxed))
}

/// `acquire` callers are served in the order they began waiting, and only the first waits
/// on the clock: 200 waiters at 100/s ask the limiter about twice each. Each used to sleep
/// until its own computed retry time, the same for all, and all woke to compete for each
/// permit: 20,100 asks (n²/2).
#[tokio::test(start_paused = true)]
async fn acquire_serves_waiters_in_order_with_one_on_the_clock() {
    for (name, (order, asked)) in [
        (
            "gcra",
            two_hundred_acquirers(GcraLimiter::new(100.0, 1).unwrap()).await,
        ),
        (
            "bucket",
            two_hundred_acquirers(TokenBucket::new(100.0, 1).unwrap()).await,
        ),
    ] {
        assert_eq!(order, (0..200).collect::<Vec<_>>(), "{name}");
        assert!(
            asked <= 2 * 200,
            "{name}: asked {asked} times for 200 waiters"
        );
    }
}

/// How long `n` permits take at `rate` and `burst`: taken by one caller in a loop, and by
/// `n` tasks waiting at once.
async fn time_for<L: RateLimiter + 'static>(limiter: impl Fn() -> L, n: usize) -> [Duration; 2] {
    let looped = grant_times(&limiter(), n).await[n - 1];
    let shared = Arc::new(limiter());
    let origin = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let shared = shared.clone();
            tokio::spawn(async move { shared.acquire().await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    [looped, origin.elapsed()]
}

/// Waiters get the rate asked for past 1,000 per second. The timer wakes the waiter on the
/// clock on whole milliseconds, after its permit came free; it and the waiters after it take
/// the permits that came free meanwhile in that wake. They used to be charged from the wake,
/// so what came free meanwhile beyond the burst was lost: 1,000 permits at 2,000 per second,
/// burst 1, took 999 ms (1,000 per second); at 10,000 per second, burst 3, 333 ms.
#[tokio::test(start_paused = true)]
async fn waiters_keep_rates_past_a_thousand_per_second() {
    // The last of 1,000 permits comes free at 999 intervals, its wake on the next whole ms.
    for (rate, burst, last) in [(2_000.0, 1, 500), (10_000.0, 3, 100), (3_000.0, 2, 333)] {
        let gcra = time_for(|| GcraLimiter::new(rate, burst).unwrap(), 1_000).await;
        let bucket = time_for(|| TokenBucket::new(rate, burst).unwrap(), 1_000).await;
        for (name, took) in [("gcra", gcra), ("bucket", bucket)] {
            assert_eq!(took, [ms(last); 2], "{name} at {rate}/s, burst {burst}");
        }
    }
}

/// `try_acquire_waited` charges a permit from when it came free, at most `waited` back: the
/// permits that came free meanwhile stay free, and none comes from before.
#[tokio::test(start_paused = true)]
async fn try_acquire_waited_charges_from_when_the_permit_came_free() {
    for limiter in [
        Box::new(GcraLimiter::new(1_000.0, 2).unwrap()) as Box<dyn RateLimiter>,
        Box::new(TokenBucket::new(1_000.0, 2).unwrap()),
    ] {
        limiter.try_acquire().unwrap();
        limiter.try_acquire().unwrap();
        // Free again at 1 ms, 2 ms, 3 ms...; callers waiting since 1 ms come at 5 ms.
        tokio::time::advance(ms(5)).await;
        // Charged from 1 ms: those of 1, 2, 3, 4 and 5 ms are free (the burst alone kept 2).
        for _ in 0..5 {
            limiter.try_acquire_waited(ms(4)).unwrap();
        }
        assert_eq!(limiter.try_acquire().unwrap_err().retry_after, ms(1));
        // A quiet spell: a claim reaches back `waited` at most, so after 1 s idle, claims of
        // 2 ms give the burst and 2 permits more, not 1,000.
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..4 {
            limiter.try_acquire_waited(ms(2)).unwrap();
        }
        assert!(limiter.try_acquire_waited(ms(2)).is_err());
        // Refused like `try_acquire` when nothing is free.
        assert_eq!(
            limiter.try_acquire_waited(ms(100)).unwrap_err().retry_after,
            ms(1)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn try_acquire_says_exactly_when_to_retry() {
    for limiter in [
        Box::new(GcraLimiter::new(10.0, 5).unwrap()) as Box<dyn RateLimiter>,
        Box::new(TokenBucket::new(10.0, 5).unwrap()),
    ] {
        for _ in 0..5 {
            limiter.try_acquire().unwrap();
        }
        let refused = limiter.try_acquire().unwrap_err();
        assert_eq!(refused.retry_after, ms(100));
        assert_eq!(refused.reason, LimitReason::Rate);
        tokio::time::advance(ms(30)).await;
        assert_eq!(limiter.try_acquire().unwrap_err().retry_after, ms(70));
        tokio::time::advance(ms(70)).await;
        limiter.try_acquire().unwrap();
        assert!(limiter.try_acquire().is_err());
        // A long quiet period restores the burst, not more.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..5 {
            limiter.try_acquire().unwrap();
        }
        assert!(limiter.try_acquire().is_err());
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_acquirers_never_exceed_the_rate() {
    let limiter = GcraLimiter::new(10.0, 5).unwrap();
    let times = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (limiter, times) = (limiter.clone(), times.clone());
        tasks.push(tokio::spawn(async move {
            limiter.admit().await;
            times.lock().unwrap().push(start.elapsed());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut times = times.lock().unwrap().clone();
    times.sort();
    // 5 at once, then one per 100 ms: the 20th at 1.5 s.
    let expected: Vec<_> = (0..20u64).map(|i| ms(i.saturating_sub(4) * 100)).collect();
    assert_eq!(times, expected);
}

#[tokio::test(start_paused = true)]
async fn keyed_limits_each_key_apart() {
    let limiter = KeyedRateLimiter::new(10.0, 2, 100).unwrap();
    limiter.try_acquire(&"a").unwrap();
    limiter.try_acquire(&"a").unwrap();
    assert_eq!(limiter.try_acquire(&"a").unwrap_err().retry_after, ms(100));
    limiter.try_acquire(&"b").unwrap();
    let start = Instant::now();
    // The keyed futures are Send, so they can run in spawned tasks.
    let spawned = limiter.clone();
    tokio::spawn(async move { spawned.admit(&"a").await })
        .await
        .unwrap();
    assert_eq!(start.elapsed(), ms(100));
}

/// Counts how often the future it wraps is polled: once per wake-up.
struct Polled<F> {
    future: Pin<Box<F>>,
    polls: Arc<AtomicU64>,
}

impl<F: Future> Future for Polled<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.future.as_mut().poll(cx)
    }
}

/// Callers waiting on one key take turns, as unkeyed `acquire` callers do: served in the
/// order they began waiting, with only the first on the clock, so 200 callers are woken
/// about twice each. Each used to sleep until its own computed retry time, the same for
/// all, and all woke for every permit: about 20,000 wake-ups (n²/2), in no set order.
#[tokio::test(start_paused = true)]
async fn keyed_acquire_serves_a_keys_waiters_in_order_with_one_on_the_clock() {
    let limiter = KeyedRateLimiter::new(100.0, 1, 10).unwrap();
    let polls = Arc::new(AtomicU64::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let origin = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let (limiter, order) = (limiter.clone(), order.clone());
        let acquire = async move {
            limiter.acquire(&"busy").await;
            order.lock().unwrap().push(n);
        };
        tasks.push(tokio::spawn(Polled {
            future: Box::pin(acquire),
            polls: polls.clone(),
        }));
        tokio::task::yield_now().await;
    }
    // Another key is not held up by them.
    limiter.acquire(&"quiet").await;
    assert_eq!(origin.elapsed(), Duration::ZERO);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(origin.elapsed(), ms(1_990));
    assert_eq!(*order.lock().unwrap(), (0..200).collect::<Vec<_>>());
    let polls = polls.load(Ordering::Relaxed);
    assert!(polls <= 3 * 200, "polled {polls} times for 200 waiters");
    // A key's queue lasts while callers wait on it, no longer.
    assert!(
        format!("{limiter:?}").contains("keys_waited_on: 0"),
        "{limiter:?}"
    );
}

/// A keyed waiter dropped while waiting gives its place up, and leaves no queue behind.
#[tokio::test(start_paused = true)]
async fn a_dropped_keyed_waiter_gives_its_place_up() {
    let limiter = KeyedRateLimiter::new(1.0, 1, 10).unwrap();
    limiter.try_acquire(&"k").unwrap();
    let first = tokio::time::timeout(ms(500), limiter.acquire(&"k")).await;
    assert!(first.is_err(), "no permit for 1 s");
    assert!(
        format!("{limiter:?}").contains("keys_waited_on: 0"),
        "{limiter:?}"
    );
    let start = Instant::now();
    limiter.acquire(&"k").await;
    assert_eq!(start.elapsed(), ms(500));
}

#[tokio::test(start_paused = true)]
async fn hundred_thousand_idle_keys_are_reclaimed_to_the_bound() {
    // Each key is busy for 100 ms after its one permit; keys arrive every 0.5 ms, so about
    // 200 are busy at a time while 100,000 pass through a table of at most 1,000.
    let limiter = KeyedRateLimiter::new(10.0, 1, 1_000).unwrap();
    let mut peak = 0;
    for key in 0..100_000u32 {
        limiter.try_acquire(&key).unwrap();
        peak = peak.max(limiter.len());
        if key % 2 == 1 {
            tokio::time::advance(ms(1)).await;
        }
    }
    assert!(peak <= limiter.max_keys(), "peak {peak}");
    assert!(limiter.len() <= 1_000);
    tokio::time::advance(ms(100)).await;
    let removed = limiter.reclaim();
    assert!(removed > 0);
    assert_eq!(limiter.len(), 0, "every key is idle now");
}

#[tokio::test(start_paused = true)]
async fn a_table_full_of_busy_keys_refuses_new_keys_only() {
    let limiter = KeyedRateLimiter::new(1.0, 1, 3).unwrap();
    for key in 0..3 {
        limiter.try_acquire(&key).unwrap();
    }
    tokio::time::advance(ms(400)).await;
    let refused = limiter.try_acquire(&99).unwrap_err();
    assert_eq!(refused.reason, LimitReason::KeysFull);
    assert_eq!(refused.retry_after, ms(600));
    assert!(refused.to_string().contains("max_keys"), "{refused}");
    assert_eq!(limiter.len(), 3);
    // Known keys are still answered by their own rate.
    assert_eq!(
        limiter.try_acquire(&0).unwrap_err().reason,
        LimitReason::Rate
    );
    tokio::time::advance(ms(600)).await;
    limiter.try_acquire(&99).unwrap();
    assert_eq!(limiter.len(), 1, "the idle keys were swept to make room");
}

#[tokio::test(start_paused = true)]
async fn command_signals_steer_the_rate_and_are_confirmed() {
    let sink = SignalSink::default();
    let limiter = GcraLimiter::new(10.0, 5).unwrap();
    let _control = control(&sink, "rate.limit", limiter.clone()).unwrap();

    sink.raise("rate.limit.set:20").unwrap();
    assert_eq!(limiter.rate(), 20.0);
    sink.raise("rate.limit.increase:5").unwrap();
    assert_eq!(limiter.rate(), 25.0);
    sink.raise("rate.limit.decrease:15").unwrap();
    assert_eq!(limiter.rate(), 10.0);
    sink.raise("rate.limit.burst:2").unwrap();
    assert_eq!(limiter.burst(), 2);
    assert_eq!(sink.count("rate.limit.applied"), 4);
    let applied = sink.latest("rate.limit.applied").unwrap();
    assert!(applied.is_leaf());
    assert_eq!(applied.header("burst").unwrap().to_string(), "2");
    assert_eq!(
        applied.header("command").unwrap().to_string(),
        "rate.limit.burst:2"
    );

    // The new burst and rate apply to the next permits: 2 at once, then one per 100 ms.
    let times = grant_times(&limiter, 4).await;
    assert_eq!(times, [0, 0, 100, 200].map(ms));

    // Bad commands change nothing and say why.
    for bad in [
        "rate.limit.set:fast",
        "rate.limit.decrease:10",
        "rate.limit.burst:0",
        "rate.limit.set:-3",
    ] {
        sink.raise(bad).unwrap();
    }
    assert_eq!((limiter.rate(), limiter.burst()), (10.0, 2));
    assert_eq!(sink.count("rate.limit.rejected"), 4);
    let reason = sink.latest("rate.limit.rejected").unwrap();
    assert!(
        reason.header("reason").unwrap().to_string().contains("-3"),
        "{reason:?}"
    );
    // Other names, and the same words under another prefix, are ignored.
    sink.raise("api.rate.limit.set:1").unwrap();
    sink.raise("rate.limit.setx:1").unwrap();
    assert_eq!(limiter.rate(), 10.0);
}

/// A command raised without a payload is answered, as every command is: rejected, saying
/// it has no payload, and changing nothing.
#[tokio::test(start_paused = true)]
async fn a_command_without_a_payload_is_rejected() {
    let sink = SignalSink::default();
    let limiter = GcraLimiter::new(10.0, 5).unwrap();
    let _control = control(&sink, "rate.limit", limiter.clone()).unwrap();
    for command in [
        "rate.limit.set",
        "rate.limit.increase",
        "rate.limit.decrease",
        "rate.limit.burst",
    ] {
        let before = sink.count("rate.limit.rejected");
        sink.raise(command).unwrap();
        assert_eq!(sink.count("rate.limit.rejected"), before + 1, "{command}");
        let rejected = sink.latest("rate.limit.rejected").unwrap();
        assert_eq!(rejected.header("command").unwrap().to_string(), command);
        let reason = rejected.header("reason").unwrap().to_string();
        assert!(reason.contains("has no payload"), "{command}: {reason}");
    }
    assert_eq!((limiter.rate(), limiter.burst()), (10.0, 5));
    assert!(!sink.has_signal("rate.limit.applied"));
}

#[tokio::test(start_paused = true)]
async fn control_steers_every_kind_of_limiter() {
    let sink = SignalSink::default();
    let bucket = TokenBucket::new(10.0, 5).unwrap();
    let keyed = KeyedRateLimiter::<u32>::new(10.0, 5, 10).unwrap();
    let _a = control(&sink, "bucket", bucket.clone()).unwrap();
    let _b = control(&sink, "keyed", keyed.clone()).unwrap();
    sink.raise("bucket.set:2").unwrap();
    sink.raise("keyed.burst:1").unwrap();
    assert_eq!((bucket.rate(), bucket.burst()), (2.0, 5));
    assert_eq!((keyed.rate(), keyed.burst()), (10.0, 1));
    // The bucket keeps its tokens through a rate change.
    assert_eq!(bucket.available(), 5.0);
    assert!(control(&sink, "bad name", bucket).is_err());
}

#[test]
fn bad_configuration_is_a_typed_error() {
    assert_eq!(
        GcraLimiter::new(0.0, 1).unwrap_err(),
        RateConfigError::BadRate(0.0)
    );
    assert!(GcraLimiter::new(f64::NAN, 1).is_err());
    assert!(TokenBucket::new(f64::INFINITY, 1).is_err());
    assert_eq!(
        TokenBucket::new(1.0, 0).unwrap_err(),
        RateConfigError::ZeroBurst
    );
    assert_eq!(
        KeyedRateLimiter::<u8>::new(1.0, 1, 0).unwrap_err(),
        RateConfigError::ZeroMaxKeys
    );
    let err = GcraLimiter::new(-1.0, 1).unwrap_err();
    assert!(err.to_string().contains("positive"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_rate_change_applies_to_the_next_permit() {
    let gcra = GcraLimiter::new(10.0, 5).unwrap();
    let bucket = TokenBucket::new(10.0, 5).unwrap();
    let keyed = KeyedRateLimiter::new(10.0, 5, 10).unwrap();
    // Use the burst and three more permits: 300 ms in, the backlog reaches 800 ms.
    for i in 0..8 {
        if i >= 5 {
            tokio::time::advance(ms(100)).await;
        }
        gcra.try_acquire().unwrap();
        bucket.try_acquire().unwrap();
        keyed.try_acquire(&1).unwrap();
    }
    for limiter in [&gcra as &dyn Tunable, &bucket, &keyed] {
        limiter.set_rate(50.0).unwrap();
        limiter.set_burst(1).unwrap();
    }
    assert_eq!(gcra.try_acquire().unwrap_err().retry_after, ms(20));
    assert_eq!(bucket.try_acquire().unwrap_err().retry_after, ms(20));
    assert_eq!(keyed.try_acquire(&1).unwrap_err().retry_after, ms(20));

    // Lowering the rate stretches the backlog: burst used at 10/s, now 1/s burst 5.
    let slow = GcraLimiter::new(10.0, 5).unwrap();
    for _ in 0..5 {
        slow.try_acquire().unwrap();
    }
    slow.set_rate(1.0).unwrap();
    assert_eq!(
        slow.try_acquire().unwrap_err().retry_after,
        Duration::from_secs(1)
    );
}

/// GCRA, the token bucket and the keyed limiter agree on a burst change: what was used of
/// the old burst stays used, so raising it from 1 to 5 with its permit taken grants 4 more
/// at once, and lowering it back takes what is left away.
#[tokio::test(start_paused = true)]
async fn every_limiter_moves_its_free_permits_by_a_burst_change() {
    let gcra = GcraLimiter::new(10.0, 1).unwrap();
    let bucket = TokenBucket::new(10.0, 1).unwrap();
    let keyed = KeyedRateLimiter::new(10.0, 1, 10).unwrap();
    let limiters: [&dyn Tunable; 3] = [&gcra, &bucket, &keyed];
    let grants = || {
        let mut n = [0; 3];
        while gcra.try_acquire().is_ok() {
            n[0] += 1;
        }
        while bucket.try_acquire().is_ok() {
            n[1] += 1;
        }
        while keyed.try_acquire(&1).is_ok() {
            n[2] += 1;
        }
        n
    };
    assert_eq!(grants(), [1, 1, 1]);
    for limiter in limiters {
        limiter.set_burst(5).unwrap();
    }
    assert_eq!(grants(), [4, 4, 4]);
    // Refilled for 250 ms: 2.5 permits' worth, 2 of them whole.
    tokio::time::advance(ms(250)).await;
    for limiter in limiters {
        limiter.set_burst(2).unwrap();
    }
    assert_eq!(grants(), [0, 0, 0], "2.5 of 5 used: none left of 2");
    tokio::time::advance(ms(250)).await;
    assert_eq!(
        grants(),
        [2, 2, 2],
        "refilled to the new burst of 2, no further"
    );
    assert_eq!(bucket.try_acquire().unwrap_err().retry_after, ms(100));
    assert_eq!(gcra.try_acquire().unwrap_err().retry_after, ms(100));
}

/// GCRA, the token bucket and the keyed limiter rescale a backlog with the same integer
/// arithmetic, so they agree to the nanosecond after rate changes whose emission intervals do
/// not divide each other (the bucket once went through f64 and drifted by a few ns).
#[tokio::test(start_paused = true)]
async fn every_limiter_agrees_to_the_nanosecond_after_a_rate_change() {
    // (rate, burst, permits taken, time passed, rates set in turn, first retry_after)
    type Case = (f64, u32, u32, Duration, &'static [f64], Duration);
    let (us, nanos) = (Duration::from_micros, Duration::from_nanos);
    let cases: [Case; 4] = [
        // 49 ms left at 10/s; at 30/s (33,333,333 ns each) it is ⌊16,333,333.17⌋ ns, and back
        // at 10/s ⌊48,999,999.49⌋ ns.
        (10.0, 1, 1, ms(51), &[30.0, 10.0], nanos(48_999_999)),
        (7.0, 3, 3, ms(13), &[33.3, 0.7, 3.0], nanos(302_999_996)),
        (1e3, 2, 2, us(300), &[3.0, 7.0, 1e3], nanos(699_999)),
        (3.0, 2, 2, ms(1), &[7.0, 33.3], nanos(29_939_939)),
    ];
    for (rate, burst, taken, passed, rates, first_wait) in cases {
        let gcra = GcraLimiter::new(rate, burst).unwrap();
        let bucket = TokenBucket::new(rate, burst).unwrap();
        let keyed = KeyedRateLimiter::new(rate, burst, 4).unwrap();
        for _ in 0..taken {
            gcra.try_acquire().unwrap();
            bucket.try_acquire().unwrap();
            keyed.try_acquire(&0).unwrap();
        }
        tokio::time::advance(passed).await;
        for &r in rates {
            for limiter in [&gcra as &dyn Tunable, &bucket, &keyed] {
                limiter.set_rate(r).unwrap();
            }
        }
        let wait = gcra.try_acquire().unwrap_err().retry_after;
        assert_eq!(wait, first_wait, "case {rate}/{burst} then {rates:?}");
        assert_eq!(bucket.try_acquire().unwrap_err().retry_after, wait);
        assert_eq!(keyed.try_acquire(&0).unwrap_err().retry_after, wait);
        // One nanosecond early all refuse; on time all grant.
        tokio::time::advance(wait - Duration::from_nanos(1)).await;
        assert!(gcra.try_acquire().is_err());
        assert!(bucket.try_acquire().is_err());
        assert!(keyed.try_acquire(&0).is_err());
        tokio::time::advance(Duration::from_nanos(1)).await;
        gcra.try_acquire().unwrap();
        bucket.try_acquire().unwrap();
        keyed.try_acquire(&0).unwrap();
    }
}

/// A refusal's message gives the wait as people read it (it printed `free in 98.57093ms`,
/// a `Duration`'s debug form); `retry_after` keeps it exact.
#[test]
fn a_refusal_says_the_wait_in_readable_units() {
    let refused = |retry_after: Duration, reason| RateLimited {
        retry_after,
        reason,
    };
    for (wait, text) in [
        (Duration::from_nanos(98_570_930), "99 ms"),
        (Duration::ZERO, "0 ms"),
        (Duration::from_micros(400), "1 ms"),
        (Duration::from_millis(1_500), "1.5 s"),
        (Duration::from_secs(125), "2 min 5 s"),
    ] {
        assert_eq!(
            refused(wait, LimitReason::Rate).to_string(),
            format!("rate limited: the next permit is free in {text}")
        );
    }
    assert_eq!(
        refused(Duration::from_millis(250), LimitReason::KeysFull).to_string(),
        "rate limiter key table is full of busy keys: retry in 250 ms or raise max_keys"
    );
}

/// A rate or burst raised while callers wait reaches them at once: the waiter on the clock
/// looks again instead of sleeping until the permit the old settings promised. They slept
/// on: at 0.1 per second, a waiter got its permit 10 s after the last one although the rate
/// was 100 per second from 1 s on.
#[tokio::test(start_paused = true)]
async fn a_waiter_sees_a_raised_rate_or_burst_at_once() {
    async fn waits_for(
        limiter: impl RateLimiter + Clone + 'static,
        raise: impl FnOnce(),
    ) -> Duration {
        limiter.try_acquire().unwrap();
        let start = Instant::now();
        let waiter = tokio::spawn({
            let limiter = limiter.clone();
            async move {
                limiter.acquire().await;
                start.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        raise();
        waiter.await.unwrap()
    }

    // 0.1 per second, burst 1: the next permit was 10 s away; 9 s of it left at 1 s,
    // re-expressed at 100 per second, are 9 ms.
    let gcra = GcraLimiter::new(0.1, 1).unwrap();
    let at = waits_for(gcra.clone(), || gcra.set_rate(100.0).unwrap()).await;
    assert_eq!(at, ms(1009));
    let bucket = TokenBucket::new(0.1, 1).unwrap();
    let at = waits_for(bucket.clone(), || bucket.set_rate(100.0).unwrap()).await;
    assert_eq!(at, ms(1009));
    // A raised burst frees a permit at once.
    let bucket = TokenBucket::new(0.1, 1).unwrap();
    let at = waits_for(bucket.clone(), || bucket.set_burst(3).unwrap()).await;
    assert_eq!(at, ms(1000));

    // Through command signals, on a keyed limiter.
    let sink = SignalSink::default();
    let keyed = KeyedRateLimiter::new(0.1, 1, 10).unwrap();
    let _control = control(&sink, "rate.limit", keyed.clone()).unwrap();
    keyed.try_acquire(&"k").unwrap();
    let start = Instant::now();
    let waiter = tokio::spawn({
        let keyed = keyed.clone();
        async move {
            keyed.acquire(&"k").await;
            start.elapsed()
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    sink.raise("rate.limit.set:100").unwrap();
    assert_eq!(waiter.await.unwrap(), ms(1009));
}

/// A prefix no command could ever match is refused, saying why, instead of steering
/// nothing: a `:` starts a command's payload (`rate:limit.set:20` is the command `rate`),
/// and past 244 bytes `<prefix>.increase:<n>` no longer fits in a name. Both were accepted,
/// and the limiter then ignored every command silently.
#[tokio::test(start_paused = true)]
async fn a_prefix_no_command_could_match_is_refused() {
    let sink = SignalSink::default();
    let limiter = GcraLimiter::new(10.0, 5).unwrap();

    let err = control(&sink, "rate:limit", limiter.clone()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("`rate:limit`") && message.contains("payload"),
        "{message}"
    );

    let long = "r".repeat(245);
    let err = control(&sink, &long, limiter.clone()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("245 bytes") && message.contains("244"),
        "{message}"
    );

    // The longest prefix that fits takes every command (with a one-byte payload).
    let longest = "r".repeat(244);
    let steered = GcraLimiter::new(5.0, 5).unwrap();
    let _control = control(&sink, &longest, steered.clone()).unwrap();
    sink.raise(&format!("{longest}.increase:5")).unwrap();
    assert_eq!(steered.rate(), 10.0);

    let err = control(&sink, "bad name", limiter).unwrap_err();
    assert!(err.to_string().contains("whitespace"), "{err}");
}
