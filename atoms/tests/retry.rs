//! Retry: attempts, delays, predicate, adjust hook, budget, cancellation and signals.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_atoms::retry::{Backoff, Jitter, Retry, RetryBudget, RetryError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Records when (relative to `start`) each attempt began.
fn recorder() -> (Instant, Arc<Mutex<Vec<Duration>>>) {
    (Instant::now(), Arc::new(Mutex::new(Vec::new())))
}

#[tokio::test(start_paused = true)]
async fn three_attempts_with_configured_delays_then_exhausted() {
    let sink = SignalSink::default();
    let retry = Retry::new(Backoff::exponential(ms(100)))
        .max_attempts(3)
        .unwrap()
        .signals(sink.clone())
        .name("payments");
    let (start, times) = recorder();
    let result: Result<(), _> = retry
        .run(|attempt| {
            let times = times.clone();
            async move {
                times.lock().unwrap().push(start.elapsed());
                Err(format!("failure {attempt}"))
            }
        })
        .await;
    assert_eq!(*times.lock().unwrap(), [ms(0), ms(100), ms(300)]);
    assert_eq!(
        result,
        Err(RetryError::Exhausted {
            attempts: 3,
            last: "failure 3".to_owned()
        })
    );
    assert_eq!(sink.count("retry.attempt"), 2);
    assert_eq!(sink.count("retry.exhausted"), 1);
    let exhausted = sink.latest("retry.exhausted").unwrap();
    assert_eq!(exhausted.key(), Some("payments"));
    assert_eq!(exhausted.header("attempts").unwrap().to_string(), "3");
    let attempt = sink.latest("retry.attempt").unwrap();
    assert_eq!(attempt.header("attempt").unwrap().to_string(), "3");
    assert_eq!(attempt.header("delay_ms").unwrap().to_string(), "200");
}

#[tokio::test(start_paused = true)]
async fn success_stops_retrying_and_raises_no_exhausted() {
    let sink = SignalSink::default();
    let retry = Retry::new(Backoff::constant(ms(50)))
        .max_attempts(5)
        .unwrap()
        .signals(sink.clone());
    let start = Instant::now();
    let result = retry
        .run(|attempt| async move { if attempt == 2 { Ok(attempt) } else { Err(()) } })
        .await;
    assert_eq!(result, Ok(2));
    assert_eq!(start.elapsed(), ms(50));
    assert_eq!(sink.count("retry.attempt"), 1);
    assert!(!sink.has_signal("retry.exhausted"));
}

#[tokio::test(start_paused = true)]
async fn when_predicate_stops_on_non_retryable_error() {
    let retry = Retry::new(Backoff::constant(ms(10)))
        .max_attempts(10)
        .unwrap()
        .when(|e: &u16| *e >= 500);
    let codes = Arc::new(Mutex::new(vec![404u16, 503, 503]));
    let result: Result<(), _> = retry
        .run(|_| {
            let codes = codes.clone();
            async move { Err(codes.lock().unwrap().pop().unwrap()) }
        })
        .await;
    assert_eq!(
        result,
        Err(RetryError::NotRetryable {
            attempts: 3,
            error: 404
        })
    );
}

#[tokio::test(start_paused = true)]
async fn adjust_hook_uses_retry_after() {
    // The error carries the server's Retry-After in seconds.
    let retry = Retry::new(Backoff::constant(ms(10)))
        .max_attempts(2)
        .unwrap()
        .adjust(|retry_after: &u64, _planned| Duration::from_secs(*retry_after));
    let start = Instant::now();
    let (_, times) = recorder();
    let _: Result<(), _> = retry
        .run(|_| {
            let times = times.clone();
            async move {
                times.lock().unwrap().push(start.elapsed());
                Err(7u64)
            }
        })
        .await;
    assert_eq!(*times.lock().unwrap(), [ms(0), Duration::from_secs(7)]);
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_the_wait_at_once() {
    let retry = Retry::new(Backoff::constant(Duration::from_secs(3600)))
        .max_attempts(5)
        .unwrap();
    let token = CancellationToken::new();
    let canceller = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(250)).await;
        canceller.cancel();
    });
    let start = Instant::now();
    let result: Result<(), _> = retry.run_with_cancel(&token, |_| async { Err("x") }).await;
    assert_eq!(start.elapsed(), ms(250));
    assert_eq!(
        result,
        Err(RetryError::Cancelled {
            attempts: 1,
            last: Some("x")
        })
    );
}

/// `retry.attempt` is raised when the retry starts, after its wait: a call cancelled during
/// the wait announces no attempt (it used to raise one before the wait, for an attempt that
/// never ran), and a retry that does start finds its signal already raised.
#[tokio::test(start_paused = true)]
async fn retry_attempt_is_raised_when_the_retry_starts_not_before_its_wait() {
    let sink = SignalSink::default();
    let retry = Retry::new(Backoff::constant(Duration::from_secs(10)))
        .max_attempts(3)
        .unwrap()
        .signals(sink.clone());
    let token = CancellationToken::new();
    let canceller = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(15)).await;
        canceller.cancel();
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let result: Result<(), _> = retry
        .run_with_cancel(&token, |attempt| {
            seen.lock()
                .unwrap()
                .push((attempt, sink.count("retry.attempt")));
            async { Err("down") }
        })
        .await;
    assert!(matches!(
        result,
        Err(RetryError::Cancelled { attempts: 2, .. })
    ));
    // Attempt 2 started with its signal raised; the wait for attempt 3 was cancelled.
    assert_eq!(*seen.lock().unwrap(), [(1, 0), (2, 1)]);
    assert_eq!(sink.count("retry.attempt"), 1, "no signal for attempt 3");
}

/// A token cancelled during an attempt that then fails ends the call at the wait, with that
/// attempt's error: with a zero delay the wait and the cancellation are ready together, and
/// the cancellation must win every time (an unbiased choice lost the error about half the time).
#[tokio::test(start_paused = true)]
async fn cancelled_during_an_attempt_keeps_its_error() {
    for run in 0..200 {
        let retry = Retry::new(Backoff::constant(Duration::ZERO))
            .max_attempts(5)
            .unwrap();
        let token = CancellationToken::new();
        let result: Result<(), _> = retry
            .run_with_cancel(&token, |attempt| {
                let token = token.clone();
                async move {
                    token.cancel();
                    Err(attempt)
                }
            })
            .await;
        assert_eq!(
            result,
            Err(RetryError::Cancelled {
                attempts: 1,
                last: Some(1)
            }),
            "run {run}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn cancelled_before_first_attempt_runs_nothing() {
    let retry = Retry::<()>::new(Backoff::constant(ms(1)));
    let token = CancellationToken::new();
    token.cancel();
    let mut calls = 0;
    let result: Result<(), _> = retry
        .run_with_cancel(&token, |_| {
            calls += 1;
            async { Ok(()) }
        })
        .await;
    assert_eq!(calls, 0);
    assert_eq!(
        result,
        Err(RetryError::Cancelled {
            attempts: 0,
            last: None
        })
    );
}

/// A call cancelled before its first attempt makes no call to the downstream, so it earns
/// no retries for the others. It deposited all the same: four such calls at a ratio of 0.5
/// left a balance of 2 retries.
#[tokio::test(start_paused = true)]
async fn a_call_cancelled_before_its_first_attempt_deposits_nothing() {
    let budget = RetryBudget::new(0.5, 0.0, 10.0);
    let retry = Retry::<()>::new(Backoff::constant(ms(1))).budget(budget.clone());
    let token = CancellationToken::new();
    token.cancel();
    for _ in 0..4 {
        let result: Result<(), _> = retry.run_with_cancel(&token, |_| async { Ok(()) }).await;
        assert_eq!(result.unwrap_err().attempts(), 0);
    }
    assert_eq!(budget.balance(), 0.0);
    // A call that makes its attempt deposits as before.
    retry.run(|_| async { Ok(()) }).await.unwrap();
    assert_eq!(budget.balance(), 0.5);
}

#[tokio::test(start_paused = true)]
async fn budget_limits_retries_across_calls() {
    // Each call deposits half a retry, no steady allowance.
    let budget = RetryBudget::new(0.5, 0.0, 10.0);
    let sink = SignalSink::default();
    let retry = Retry::new(Backoff::constant(ms(1)))
        .max_attempts(10)
        .unwrap()
        .budget(budget.clone())
        .signals(sink.clone());
    let mut attempts = Vec::new();
    for _ in 0..4 {
        let result: Result<(), RetryError<()>> = retry.run(|_| async { Err(()) }).await;
        let err = result.unwrap_err();
        assert!(matches!(err, RetryError::BudgetExhausted { .. }), "{err:?}");
        attempts.push(err.attempts());
    }
    // Deposits 0.5, 1.0 (one retry), 0.5, 1.0 (one retry).
    assert_eq!(attempts, [1, 2, 1, 2]);
    assert_eq!(sink.count("retry.exhausted"), 4);
    assert!(budget.balance() < 1.0);
}

/// A retry whose wait is cancelled, or whose call is dropped during the wait, is never made,
/// so it gives its budget token back; a retry actually made keeps it spent.
#[tokio::test(start_paused = true)]
async fn a_retry_cut_off_in_its_wait_gives_its_budget_token_back() {
    // Each call deposits one retry; no steady allowance, so the balance starts at 0.
    let budget = RetryBudget::new(1.0, 0.0, 10.0);
    let retry = Retry::new(Backoff::constant(Duration::from_secs(10)))
        .max_attempts(5)
        .unwrap()
        .budget(budget.clone());

    // Cancelled 1 s into the 10 s wait.
    let token = CancellationToken::new();
    let canceller = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        canceller.cancel();
    });
    let result: Result<(), _> = retry.run_with_cancel(&token, |_| async { Err("x") }).await;
    assert_eq!(
        result,
        Err(RetryError::Cancelled {
            attempts: 1,
            last: Some("x")
        })
    );
    assert_eq!(
        budget.balance(),
        1.0,
        "the cancelled retry gave its token back"
    );

    // The call dropped 1 s into the wait (deposits another: 2).
    let dropped = tokio::time::timeout(
        Duration::from_secs(1),
        retry.run(|_| async { Err::<(), _>("x") }),
    )
    .await;
    assert!(dropped.is_err(), "the call is still waiting");
    assert_eq!(
        budget.balance(),
        2.0,
        "the dropped retry gave its token back"
    );

    // Retries made keep their tokens: 2 + 1 deposited, 3 retries made, the 4th refused.
    let result: Result<(), _> = retry.run(|_| async { Err("x") }).await;
    assert_eq!(
        result,
        Err(RetryError::BudgetExhausted {
            attempts: 4,
            last: "x"
        })
    );
    assert_eq!(budget.balance(), 0.0);
}

#[tokio::test(start_paused = true)]
async fn budget_refills_over_time() {
    let budget = RetryBudget::new(0.0, 2.0, 3.0);
    // Starts with one second's allowance.
    assert!(budget.try_withdraw() && budget.try_withdraw());
    assert!(!budget.try_withdraw());
    assert_eq!(budget.time_to_next(), Some(ms(500)));
    tokio::time::advance(Duration::from_secs(60)).await;
    // Capped at the max balance of 3.
    assert!(budget.try_withdraw() && budget.try_withdraw() && budget.try_withdraw());
    assert!(!budget.try_withdraw());
}

/// A positive steady allowance too small for the wait to fit in a Duration still grants a
/// retry some day: the wait saturates at Duration::MAX; only a zero allowance gives None.
#[tokio::test(start_paused = true)]
async fn a_tiny_steady_allowance_saturates_the_time_to_next_retry() {
    // 1e-30 per second, starting with 1e-30 tokens: about 1e30 s to go.
    let tiny = RetryBudget::new(0.0, 1e-30, 1.0);
    assert!(!tiny.try_withdraw());
    assert_eq!(tiny.time_to_next(), Some(Duration::MAX));
    // 1e-320 per second (subnormal): (1 - balance) / rate is +∞.
    let subnormal = RetryBudget::new(0.0, 1e-320, 1.0);
    assert_eq!(subnormal.time_to_next(), Some(Duration::MAX));
    let never = RetryBudget::new(0.0, 0.0, 1.0);
    assert_eq!(never.time_to_next(), None);
}

#[test]
fn backoff_shapes_and_cap() {
    let exp: Vec<_> = Backoff::exponential(ms(10))
        .factor(3.0)
        .max_delay(ms(500))
        .iter()
        .take(6)
        .collect();
    assert_eq!(exp, [ms(10), ms(30), ms(90), ms(270), ms(500), ms(500)]);
    let fib: Vec<_> = Backoff::fibonacci(ms(1)).iter().take(8).collect();
    assert_eq!(
        fib,
        [ms(1), ms(1), ms(2), ms(3), ms(5), ms(8), ms(13), ms(21)]
    );
    // Far past any overflow: saturates at the cap instead of panicking.
    let last = Backoff::exponential(Duration::from_secs(1))
        .iter()
        .nth(5000)
        .unwrap();
    assert_eq!(last, Duration::from_secs(30));
}

/// A zero base stays zero for every attempt, however far the schedule grows: the unit count
/// saturating at infinity must not turn 0 × ∞ into the max delay.
#[test]
fn zero_base_gives_zero_delays_throughout() {
    let schedules = [
        Backoff::exponential(Duration::ZERO),
        Backoff::exponential(Duration::ZERO).factor(1e308),
        Backoff::fibonacci(Duration::ZERO),
        Backoff::constant(Duration::ZERO),
        Backoff::fibonacci(Duration::ZERO)
            .jitter(Jitter::Proportional(1.0))
            .seed(1),
    ];
    for backoff in schedules {
        let first_nonzero = backoff.iter().take(2000).position(|d| !d.is_zero());
        assert_eq!(first_nonzero, None, "{backoff:?}");
    }
}

#[test]
fn jitter_stays_in_range_and_varies() {
    let base = ms(1000);
    let full: Vec<_> = Backoff::constant(base)
        .jitter(Jitter::Full)
        .seed(7)
        .iter()
        .take(1000)
        .collect();
    assert!(full.iter().all(|d| *d <= base));
    assert!(full.iter().any(|d| *d < ms(100)) && full.iter().any(|d| *d > ms(900)));
    let prop: Vec<_> = Backoff::constant(base)
        .jitter(Jitter::Proportional(0.1))
        .max_delay(Duration::from_secs(5))
        .iter()
        .take(1000)
        .collect();
    assert!(prop.iter().all(|d| *d >= ms(900) && *d <= ms(1100)));
    // The cap holds with jitter that would push above it.
    let capped = Backoff::constant(base)
        .jitter(Jitter::Proportional(1.0))
        .max_delay(base);
    assert!(capped.iter().take(1000).all(|d| d <= base));
    // Same seed, same schedule.
    let a: Vec<_> = Backoff::constant(base)
        .jitter(Jitter::Full)
        .seed(3)
        .iter()
        .take(10)
        .collect();
    let b: Vec<_> = Backoff::constant(base)
        .jitter(Jitter::Full)
        .seed(3)
        .iter()
        .take(10)
        .collect();
    assert_eq!(a, b);
}

#[test]
fn error_messages_say_what_happened() {
    let e = RetryError::Exhausted {
        attempts: 3,
        last: "timeout",
    };
    assert_eq!(
        e.to_string(),
        "gave up after 3 attempts, the most allowed: timeout"
    );
    let e: RetryError<&str> = RetryError::Cancelled {
        attempts: 0,
        last: None,
    };
    assert_eq!(e.to_string(), "cancelled before the first attempt");
    assert_eq!(e.into_last(), None);
    // One attempt is not "1 attempts".
    let e = RetryError::Cancelled {
        attempts: 1,
        last: Some("busy"),
    };
    assert_eq!(e.to_string(), "cancelled after 1 attempt: busy");
    let e = RetryError::Exhausted {
        attempts: 1,
        last: "timeout",
    };
    assert_eq!(
        e.to_string(),
        "gave up after 1 attempt, the most allowed: timeout"
    );
}

#[test]
fn zero_attempts_is_a_typed_configuration_error() {
    let err = Retry::<&str>::new(Backoff::constant(ms(10)))
        .max_attempts(0)
        .unwrap_err();
    assert_eq!(err, ephemeral_atoms::retry::RetryConfigError::ZeroAttempts);
    assert!(err.to_string().contains("at least 1"), "{err}");
}

/// A delay past what the clock holds (an `adjust` returning `Duration::MAX`) waits until the
/// token is cancelled, with no overflow on the way, and the call ends `Cancelled` with the
/// attempt's error.
#[tokio::test(start_paused = true)]
async fn a_delay_past_the_clock_waits_until_cancelled() {
    let retry = Retry::new(Backoff::exponential(ms(1)).max_delay(Duration::MAX))
        .max_attempts(5)
        .unwrap()
        .adjust(|_: &&str, _| Duration::MAX);
    let token = CancellationToken::new();
    let canceller = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(365 * 86_400)).await;
        canceller.cancel();
    });
    let start = Instant::now();
    let result: Result<(), _> = retry
        .run_with_cancel(&token, |_| async { Err("down") })
        .await;
    assert_eq!(
        result,
        Err(RetryError::Cancelled {
            attempts: 1,
            last: Some("down")
        })
    );
    assert_eq!(start.elapsed(), Duration::from_secs(365 * 86_400));
}
