//! Adaptive rate: GCRA pacing, throttling on signals, gradual recovery.

use std::time::Duration;

use ephemeral::{Signal, SignalSink};
use ephemeral_atoms::rate_limit::{LimitReason, RateConfigError, RateLimiter, Tunable, control};
use ephemeral_patterns::adaptive_rate::{AdaptiveRate, AdaptiveRateError, AdaptiveRateOptions};
use tokio::time::{Instant, advance};

fn limiter(sink: &SignalSink, rate: f64) -> AdaptiveRate {
    AdaptiveRate::new(sink, AdaptiveRateOptions::default().rate_per_second(rate)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn paces_starts_at_the_base_rate() {
    let sink = SignalSink::default();
    let limiter = limiter(&sink, 10.0);
    let start = Instant::now();
    for _ in 0..21 {
        limiter.acquire().await;
    }
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(limiter.try_acquire(), Err(Duration::from_millis(100)));
}

#[tokio::test(start_paused = true)]
async fn burst_lets_several_go_at_once() {
    let sink = SignalSink::default();
    let limiter = AdaptiveRate::new(
        &sink,
        AdaptiveRateOptions::default().rate_per_second(1.0).burst(3),
    )
    .unwrap();
    let allowed = (0..5).filter(|_| limiter.try_acquire().is_ok()).count();
    assert_eq!(allowed, 3);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_signal_pauses_then_slows_then_recovers() {
    let sink = SignalSink::default();
    let limiter = limiter(&sink, 8.0);
    limiter.acquire().await;
    sink.raise("payments.rate-limit:3s").unwrap();
    assert_eq!(limiter.throttles(), 1);
    assert_eq!(limiter.paused_for(), Some(Duration::from_secs(3)));
    assert_eq!(limiter.current_rate(), 4.0);
    assert_eq!(limiter.try_acquire(), Err(Duration::from_secs(3)));

    let start = Instant::now();
    limiter.acquire().await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    // At the halved rate, the next start is 250 ms later.
    assert_eq!(limiter.try_acquire(), Err(Duration::from_millis(250)));

    // Recovery: ×1.5 per second after the pause, capped at the base.
    advance(Duration::from_secs(1)).await;
    assert_eq!(limiter.current_rate(), 6.0);
    advance(Duration::from_secs(1)).await;
    assert_eq!(limiter.current_rate(), 8.0);
    advance(Duration::from_secs(5)).await;
    assert_eq!(limiter.current_rate(), 8.0);
}

/// A waiter asleep at a slow rate sees the rate recover: it looks again at each recovery
/// step instead of sleeping until the start the slow rate promised.
#[tokio::test(start_paused = true)]
async fn a_waiter_sees_the_rate_recover() {
    let sink = SignalSink::default();
    let limiter = AdaptiveRate::new(
        &sink,
        AdaptiveRateOptions::default()
            .rate_per_second(8.0)
            .decrease(0.01, 0.1),
    )
    .unwrap();
    sink.raise("rate-limit:1ms").unwrap();
    assert_eq!(limiter.current_rate(), 0.1);
    advance(Duration::from_millis(1)).await;
    limiter.acquire().await;
    // At 0.1 per second the next start is 10 s away; the rate grows ×1.5 a second from the
    // end of the pause, and the GCRA re-expresses what is owed at each new rate: 9 s owed
    // at 0.1/s is 6 s at 0.15/s, then 3.33 s at 0.225/s, 1.56 s at 0.3375/s, and 0.37 s at
    // 0.506/s, due about 4.37 s after the first start.
    let start = Instant::now();
    limiter.acquire().await;
    let waited = start.elapsed();
    assert!(
        waited > Duration::from_secs(4) && waited < Duration::from_secs(5),
        "waited {waited:?} (the slow rate's promise was 10 s)"
    );
}

/// A waiter sees a raised base rate (`Tunable::set_rate`, as `control` applies it) and a
/// raised burst at once, not after the start the old settings promised.
#[tokio::test(start_paused = true)]
async fn a_waiter_sees_a_raised_rate_or_burst_at_once() {
    let sink = SignalSink::default();
    for raise in [
        (|l: &AdaptiveRate| Tunable::set_rate(l, 100.0)) as fn(&AdaptiveRate) -> _,
        |l: &AdaptiveRate| Tunable::set_burst(l, 5),
    ] {
        let limiter = limiter(&sink, 0.1);
        limiter.acquire().await;
        let start = Instant::now();
        let waiter = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await }
        });
        advance(Duration::from_secs(1)).await;
        raise(&limiter).unwrap();
        waiter.await.unwrap();
        let waited = start.elapsed();
        assert!(
            waited < Duration::from_millis(1_100),
            "waited {waited:?} (the old rate's promise was 10 s)"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn repeated_throttles_compound_down_to_the_minimum() {
    let sink = SignalSink::default();
    let limiter = AdaptiveRate::new(
        &sink,
        AdaptiveRateOptions::default()
            .rate_per_second(100.0)
            .decrease(0.1, 2.0),
    )
    .unwrap();
    sink.raise("rate-limit:1s").unwrap();
    assert_eq!(limiter.current_rate(), 10.0);
    sink.raise("rate-limit:500ms").unwrap();
    assert_eq!(limiter.current_rate(), 2.0);
    // A shorter pause never shortens a longer one already in force.
    assert_eq!(limiter.paused_for(), Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn retry_after_headers_in_every_form_throttle() {
    let sink = SignalSink::default();
    let limiter = limiter(&sink, 10.0);
    let raise = |header: ephemeral::HeaderValue| {
        sink.raise_with(
            Signal::build("http.429")
                .unwrap()
                .header("retry-after", header),
        )
        .unwrap();
    };
    raise(2.into());
    assert_eq!(limiter.paused_for(), Some(Duration::from_secs(2)));
    raise(4.5.into());
    assert_eq!(limiter.paused_for(), Some(Duration::from_millis(4_500)));
    raise("1m".into());
    assert_eq!(limiter.paused_for(), Some(Duration::from_secs(60)));
    assert_eq!(limiter.throttles(), 3);

    raise((-3).into());
    raise("soon".into());
    let (bad, last) = limiter.bad_signals();
    assert_eq!(bad, 2);
    assert!(last.unwrap().starts_with("http.429:"));
    assert_eq!(
        limiter.throttles(),
        3,
        "unreadable headers are not guessed at"
    );

    sink.raise("rate-limit:never").unwrap();
    assert_eq!(limiter.bad_signals().0, 3);
    // A bare `rate-limit` says to slow down but not for how long: counted, not guessed at.
    sink.raise("api.rate-limit").unwrap();
    let (bad, last) = limiter.bad_signals();
    assert_eq!(bad, 4);
    assert!(last.unwrap().contains("rate-limit:<duration>"));
    // Other signals are not throttles.
    sink.raise("job.done").unwrap();
    sink.raise("xrate-limit:5s").unwrap();
    assert_eq!(limiter.throttles(), 3);
}

/// A pause too long for the clock (`Duration::MAX`, a `retry-after` of 1e19 s, or of 1e20 s
/// and `inf`, past what a `Duration` holds) pauses for the longest pause, 30 years, instead
/// of not at all.
#[tokio::test(start_paused = true)]
async fn a_pause_past_the_clock_pauses_for_the_longest_pause() {
    const LONGEST: Duration = Duration::from_secs(86_400 * 365 * 30);
    let sink = SignalSink::default();
    let paused = limiter(&sink, 10.0);
    paused.throttle(Duration::MAX);
    assert_eq!(paused.paused_for(), Some(LONGEST));
    assert_eq!(paused.try_acquire(), Err(LONGEST));
    advance(Duration::from_secs(86_400 * 365 * 10)).await;
    assert!(paused.try_acquire().is_err(), "still paused 10 years on");

    let by_header = limiter(&sink, 10.0);
    sink.raise_with(
        Signal::build("http.429")
            .unwrap()
            .header("retry-after", 1e19),
    )
    .unwrap();
    assert_eq!(by_header.throttles(), 1);
    assert_eq!(by_header.paused_for(), Some(LONGEST));
    assert!(by_header.try_acquire().is_err());

    // Past what a `Duration` holds at all (about 1.8e19 s), as a number or as text, or
    // infinite: still the longest pause, not a signal ignored (which paused nothing).
    let header = |value: ephemeral::HeaderValue| {
        Signal::build("http.429")
            .unwrap()
            .header("retry-after", value)
    };
    let past_the_clock = [
        header(1e20.into()),
        header(f64::INFINITY.into()),
        header("1e20".into()),
        header("99999999999999999999".into()),
        Signal::build("api.rate-limit:1e20").unwrap(),
    ];
    for signal in past_the_clock {
        let past = limiter(&sink, 10.0);
        let what = format!("{signal:?}");
        sink.raise_with(signal).unwrap();
        assert_eq!(past.bad_signals(), (0, None), "{what}");
        assert_eq!(past.throttles(), 1, "{what}");
        assert_eq!(past.paused_for(), Some(LONGEST), "{what}");
    }
    // Negative numbers and NaN say nothing readable: counted, not guessed at.
    let unreadable = limiter(&sink, 10.0);
    sink.raise_with(header(f64::NAN.into())).unwrap();
    sink.raise_with(header((-1.5).into())).unwrap();
    sink.raise_with(header("-2".into())).unwrap();
    sink.raise("api.rate-limit:-2").unwrap();
    assert_eq!(unreadable.throttles(), 0);
    assert_eq!(unreadable.bad_signals().0, 4);
    assert!(unreadable.bad_signals().1.unwrap().contains("negative"));
}

/// As atoms' `RateLimiter` (what its admission hook and `acquire` are built on): `check`
/// looks without taking, a pause refuses with what is left of it, the clones share one queue
/// of waiters, and a pause asked for while an `acquire` waits holds it.
#[tokio::test(start_paused = true)]
async fn as_an_atoms_rate_limiter_it_checks_without_taking_and_honours_pauses() {
    let sink = SignalSink::default();
    let limiter = limiter(&sink, 10.0);
    assert!(RateLimiter::check(&limiter).is_ok());
    assert!(RateLimiter::check(&limiter).is_ok(), "check took the start");
    RateLimiter::try_acquire(&limiter).unwrap();
    let refused = RateLimiter::check(&limiter).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_millis(100));
    assert_eq!(refused.reason, LimitReason::Rate);
    assert!(std::ptr::eq(limiter.waiters(), limiter.clone().waiters()));

    let origin = Instant::now();
    let waiting = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire().await }
    });
    tokio::task::yield_now().await; // it waits for the start at 100 ms
    sink.raise("api.rate-limit:2s").unwrap();
    let refused = RateLimiter::try_acquire(&limiter).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_secs(2));
    waiting.await.unwrap();
    assert_eq!(origin.elapsed(), Duration::from_secs(2));
}

/// As atoms' `Tunable`, `set_rate` moves the base rate and the current one: signals cut from
/// it and recovery grows back to it; the minimum stays the floor; `control()` steers it.
#[tokio::test(start_paused = true)]
async fn set_rate_moves_the_base_rate_and_control_steers_it() {
    let sink = SignalSink::default();
    let limiter = limiter(&sink, 100.0);
    limiter.throttle(Duration::from_secs(1));
    assert_eq!(limiter.rate(), 50.0);
    limiter.set_rate(40.0).unwrap();
    assert_eq!((limiter.rate(), limiter.base_rate()), (40.0, 40.0));
    assert_eq!(
        limiter.paused_for(),
        Some(Duration::from_secs(1)),
        "the pause stays"
    );
    limiter.throttle(Duration::ZERO);
    assert_eq!(limiter.rate(), 20.0);
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        limiter.rate(),
        40.0,
        "recovers to the rate set, not the options'"
    );

    // Below the minimum: the minimum. Not a usable rate at all: refused, nothing changed.
    limiter.set_rate(0.5).unwrap();
    assert_eq!(limiter.rate(), 1.0, "the default minimum");
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e9] {
        assert!(
            matches!(limiter.set_rate(bad), Err(RateConfigError::BadRate(_))),
            "{bad}"
        );
    }
    assert_eq!((limiter.rate(), limiter.base_rate()), (1.0, 1.0));

    limiter.set_burst(3).unwrap();
    assert_eq!(limiter.burst(), 3);
    assert_eq!(limiter.set_burst(0), Err(RateConfigError::ZeroBurst));
    advance(Duration::from_secs(10)).await;
    assert_eq!((0..5).filter(|_| limiter.try_acquire().is_ok()).count(), 3);

    let _control = control(&sink, "rate.limit", limiter.clone()).unwrap();
    sink.raise("rate.limit.set:20").unwrap();
    assert!(sink.has_signal("rate.limit.applied"));
    assert_eq!((limiter.rate(), limiter.base_rate()), (20.0, 20.0));
    sink.raise("rate.limit.increase:5").unwrap();
    assert_eq!(limiter.base_rate(), 25.0);
}

#[tokio::test(start_paused = true)]
async fn listen_on_narrows_the_signals_read() {
    let sink = SignalSink::default();
    let limiter =
        AdaptiveRate::new(&sink, AdaptiveRateOptions::default().listen_on("api.*")).unwrap();
    sink.raise("db.rate-limit:5s").unwrap();
    assert_eq!(limiter.throttles(), 0);
    sink.raise("api.rate-limit:5s").unwrap();
    assert_eq!(limiter.throttles(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_acquire_takes_nothing() {
    let sink = SignalSink::default();
    let limiter = limiter(&sink, 1.0);
    limiter.acquire().await;
    let waiting = tokio::time::timeout(Duration::from_millis(500), limiter.acquire()).await;
    assert!(waiting.is_err());
    advance(Duration::from_millis(500)).await;
    assert_eq!(limiter.try_acquire(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_limiter_detaches_its_listener() {
    let sink = SignalSink::default();
    let before = sink.stats().listeners;
    let limiter = limiter(&sink, 1.0);
    assert_eq!(sink.stats().listeners, before + 1);
    drop(limiter);
    assert_eq!(sink.stats().listeners, before);
}

/// A base rate under one per second, with no minimum given, used to be refused
/// (`Rates { rate: 0.5, min_rate: 1.0 }`, "min <= rate": a default minimum the user never
/// set). It is valid: it paces at its rate, and a throttle pauses without cutting below it;
/// a minimum given with `decrease` still lets the rate be cut.
#[tokio::test(start_paused = true)]
async fn a_base_rate_under_one_per_second_is_valid_on_its_own() {
    let sink = SignalSink::default();
    let slow = limiter(&sink, 0.5);
    slow.acquire().await;
    assert_eq!(slow.try_acquire(), Err(Duration::from_secs(2)));
    sink.raise("rate-limit:1s").unwrap();
    assert_eq!(slow.current_rate(), 0.5);
    assert_eq!(slow.paused_for(), Some(Duration::from_secs(1)));

    let cut = AdaptiveRate::new(
        &sink,
        AdaptiveRateOptions::default()
            .rate_per_second(0.5)
            .decrease(0.5, 0.1),
    )
    .unwrap();
    sink.raise("rate-limit:1s").unwrap();
    assert_eq!(cut.current_rate(), 0.25);
}

#[test]
fn invalid_options_are_typed_errors() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let sink = SignalSink::default();
    let bad = [
        AdaptiveRateOptions::default().rate_per_second(0.0),
        AdaptiveRateOptions::default().rate_per_second(f64::NAN),
        AdaptiveRateOptions::default().decrease(0.5, 1_000.0),
        AdaptiveRateOptions::default().burst(0),
        AdaptiveRateOptions::default().decrease(1.5, 1.0),
        AdaptiveRateOptions::default().recovery(1.0, Duration::from_secs(1)),
        AdaptiveRateOptions::default().recovery(2.0, Duration::ZERO),
        // A listener that could hear no signal.
        AdaptiveRateOptions::default().listen_on(""),
        AdaptiveRateOptions::default().listen_on(" , "),
    ];
    for options in bad {
        let err = AdaptiveRate::new(&sink, options.clone()).unwrap_err();
        assert_ne!(err, AdaptiveRateError::NoRuntime, "{options:?}");
        assert!(!err.to_string().is_empty());
    }
    let deaf = AdaptiveRate::new(&sink, AdaptiveRateOptions::default().listen_on(" , "));
    assert_eq!(
        deaf.unwrap_err(),
        AdaptiveRateError::EmptyPattern {
            pattern: " , ".to_owned()
        }
    );
    drop(_guard);
    assert_eq!(
        AdaptiveRate::new(&sink, AdaptiveRateOptions::default()).unwrap_err(),
        AdaptiveRateError::NoRuntime
    );
}
