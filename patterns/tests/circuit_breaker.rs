//! Circuit breaker: tripping, the open period, half-open probes, signals and holds.

mod support;
use support::alive_tasks;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_patterns::circuit_breaker::{
    BreakerConfigError, CircuitBreaker, CircuitBreakerOptions, CircuitState, ProbeDecision,
};
use tokio::time::{advance, sleep};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Lets the breaker's open timer, due at this same instant, run (see `CircuitBreaker::state`).
async fn settle() {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
}

fn raise_n(sink: &SignalSink, name: &str, n: usize) {
    for _ in 0..n {
        sink.raise(name).unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn five_failures_within_thirty_seconds_open_and_hold_circuit_open() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(&sink, CircuitBreakerOptions::default()).unwrap();
    for _ in 0..4 {
        sink.raise("failure").unwrap();
        advance(secs(5)).await;
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert!(!sink.has_signal("circuit.open"));
    sink.raise("failure").unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(sink.has_signal("circuit.open"));
    assert_eq!(breaker.times_opened(), 1);
    // The hold outlives the sink's max age (60 s by default): it is a condition, not an event.
    advance(secs(25)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(sink.has_signal("circuit.open"));
}

#[tokio::test(start_paused = true)]
async fn failures_spread_beyond_the_window_do_not_open() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(&sink, CircuitBreakerOptions::default()).unwrap();
    for _ in 0..20 {
        sink.raise("failure").unwrap();
        advance(Duration::from_millis(7_600)).await;
    }
    // 7.6 s apart, at most 4 fall within any 30 s window.
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.times_opened(), 0);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_are_reset_by_a_success() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(3)
            .success_on("success"),
    )
    .unwrap();
    raise_n(&sink, "failure", 2);
    sink.raise("success").unwrap();
    raise_n(&sink, "failure", 2);
    assert_eq!(breaker.state(), CircuitState::Closed);
    sink.raise("failure").unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn custom_failure_pattern_and_own_signals_never_count() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .failure_on("*")
            .consecutive_failures(2)
            .open_for(secs(1)),
    )
    .unwrap();
    sink.raise("error.db").unwrap();
    sink.raise("timeout").unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    // Half-open raises circuit.half_open, which matches `*` but must not reopen the breaker.
    sleep(secs(1)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    settle().await;
    assert!(sink.has_signal("circuit.half_open"));
    assert_eq!(breaker.times_opened(), 1);
}

#[tokio::test(start_paused = true)]
async fn state_reads_have_no_side_effects_and_the_timer_moves_to_half_open() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(secs(10)),
    )
    .unwrap();
    sink.raise("failure").unwrap();
    assert_eq!(breaker.time_until_close(), Some(secs(10)));
    advance(secs(4)).await;
    for _ in 0..100 {
        assert_eq!(breaker.state(), CircuitState::Open);
    }
    assert_eq!(breaker.time_until_close(), Some(secs(6)));
    assert_eq!(sink.count("circuit.half_open"), 0);
    sleep(secs(6)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.time_until_close(), None);
    settle().await;
    assert!(!sink.has_signal("circuit.open"), "the hold is released");
    assert_eq!(sink.count("circuit.half_open"), 1);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_configured_probes_then_closes_on_success() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(secs(5))
            .probes(3, 1),
    )
    .unwrap();
    assert_eq!(breaker.try_probe(), ProbeDecision::Admit);
    sink.raise("failure").unwrap();
    assert_eq!(breaker.try_probe(), ProbeDecision::Refuse);
    sleep(secs(5)).await;
    let decisions: Vec<_> = (0..5).map(|_| breaker.try_probe()).collect();
    assert_eq!(
        decisions,
        [
            ProbeDecision::Admit,
            ProbeDecision::Admit,
            ProbeDecision::Admit,
            ProbeDecision::Wait,
            ProbeDecision::Wait
        ]
    );
    assert_eq!(breaker.probes_admitted(), 3);
    breaker.release_probe();
    assert_eq!(breaker.try_probe(), ProbeDecision::Admit);
    assert_eq!(breaker.try_probe(), ProbeDecision::Wait);

    let mut states = breaker.watch_state();
    breaker.record_success();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert!(states.has_changed().unwrap());
    assert_eq!(*states.borrow_and_update(), CircuitState::Closed);
    assert_eq!(sink.count("circuit.closed"), 1);
    assert_eq!(breaker.try_probe(), ProbeDecision::Admit);
}

#[tokio::test(start_paused = true)]
async fn several_successes_may_be_required_to_close() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(secs(1))
            .probes(2, 2),
    )
    .unwrap();
    breaker.record_failure();
    sleep(secs(1)).await;
    breaker.record_success();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    breaker.record_success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_half_open_failure_reopens_with_backoff_up_to_the_cap() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(secs(10))
            .backoff(2.0, secs(35)),
    )
    .unwrap();
    sink.raise("failure").unwrap();
    let mut periods = vec![breaker.time_until_close().unwrap()];
    for _ in 0..3 {
        sleep(breaker.time_until_close().unwrap()).await;
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        sink.raise("failure").unwrap();
        assert_eq!(breaker.state(), CircuitState::Open);
        assert!(sink.has_signal("circuit.open"));
        periods.push(breaker.time_until_close().unwrap());
    }
    assert_eq!(periods, [secs(10), secs(20), secs(35), secs(35)]);
    assert_eq!(breaker.times_opened(), 4);

    // Closing resets the period.
    sleep(secs(35)).await;
    breaker.record_success();
    assert_eq!(breaker.open_period(), secs(10));
}

/// Any finite factor is valid: a huge one reaches the cap on the first reopening rather
/// than overflowing (which panicked in `record_failure`, and left the breaker half-open when
/// the failure came as a signal).
#[tokio::test(start_paused = true)]
async fn a_huge_backoff_factor_reopens_for_the_cap() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(secs(1))
            .backoff(1e300, Duration::MAX),
    )
    .unwrap();
    breaker.record_failure();
    sleep(secs(1)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    breaker.record_failure();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.open_period(), Duration::MAX);
    assert_eq!(
        breaker.time_until_close(),
        None,
        "past tokio's clock: until reset"
    );
    // The same through a failure signal.
    breaker.reset();
    sink.raise("failure").unwrap();
    sleep(secs(1)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    sink.raise("failure").unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn failures_while_open_change_nothing() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(secs(10)),
    )
    .unwrap();
    sink.raise("failure").unwrap();
    advance(secs(3)).await;
    raise_n(&sink, "failure", 10);
    assert_eq!(breaker.time_until_close(), Some(secs(7)));
    assert_eq!(breaker.times_opened(), 1);
}

#[tokio::test(start_paused = true)]
async fn trip_and_reset_force_the_state() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(&sink, CircuitBreakerOptions::default()).unwrap();
    breaker.trip();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(sink.has_signal("circuit.open"));
    breaker.reset();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert!(!sink.has_signal("circuit.open"));
    assert_eq!(sink.count("circuit.closed"), 1);
    // The stale open timer of the first opening must not move the closed breaker.
    sleep(secs(31)).await;
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(sink.count("circuit.half_open"), 0);
}

#[tokio::test(start_paused = true)]
async fn signal_prefix_names_the_transitions() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(secs(1))
            .signal_prefix("circuit.db"),
    )
    .unwrap();
    breaker.record_failure();
    assert!(sink.has_signal("circuit.db.open"));
    sleep(secs(1)).await;
    settle().await;
    assert!(sink.has_signal("circuit.db.half_open"));
    breaker.record_success();
    assert!(sink.has_signal("circuit.db.closed"));
}

#[tokio::test(start_paused = true)]
async fn listeners_of_transitions_may_call_back_into_the_breaker() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(secs(1)),
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (b, s) = (breaker.clone(), seen.clone());
    let _listener = sink.on_signal("circuit.*", move |signal| {
        s.lock()
            .unwrap()
            .push((signal.name().to_string(), b.state()));
    });
    sink.raise("failure").unwrap();
    sleep(secs(1)).await;
    breaker.record_success();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("circuit.open".to_owned(), CircuitState::Open),
            ("circuit.half_open".to_owned(), CircuitState::HalfOpen),
            ("circuit.closed".to_owned(), CircuitState::Closed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_breaker_detaches_it_and_releases_the_hold() {
    let sink = SignalSink::default();
    let listeners_before = sink.stats().listeners;
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .success_on("ok"),
    )
    .unwrap();
    assert_eq!(sink.stats().listeners, listeners_before + 2);
    sink.raise("failure").unwrap();
    assert!(sink.has_signal("circuit.open"));
    drop(breaker);
    assert_eq!(sink.stats().listeners, listeners_before);
    assert!(!sink.has_signal("circuit.open"));
    // The open timer finds nothing to do.
    sleep(secs(31)).await;
    assert_eq!(sink.count("circuit.half_open"), 0);
}

/// An open period that ends early (`reset`, `trip` again) or a breaker dropped while open
/// leaves no timer task behind: each used to sleep out its whole open period (1,000
/// `trip`/`reset` pairs left 1,000 tasks for 30 s).
#[tokio::test(start_paused = true)]
async fn open_periods_ended_early_or_dropped_leave_no_timer_task() {
    let before = alive_tasks();
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(&sink, CircuitBreakerOptions::default()).unwrap();
    for _ in 0..100 {
        breaker.trip();
        breaker.reset();
    }
    breaker.trip();
    breaker.trip();
    settle().await;
    assert_eq!(alive_tasks(), before + 1, "one timer for the open period");
    // The timer still ends the open period.
    sleep(secs(30)).await;
    settle().await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(alive_tasks(), before);
    breaker.trip();
    drop(breaker);
    settle().await;
    assert_eq!(alive_tasks(), before);
    assert!(!sink.has_signal("circuit.open"));
}

#[tokio::test(start_paused = true)]
async fn a_full_hold_table_is_reported_not_hidden() {
    let sink = SignalSink::new(ephemeral::SinkOptions::default().max_holds(1)).unwrap();
    let _other = sink.hold("maintenance").unwrap();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default().consecutive_failures(1),
    )
    .unwrap();
    sink.raise("failure").unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(matches!(
        breaker.last_sink_error(),
        Some(ephemeral::RaiseError::TooManyHolds { max: 1 })
    ));
}

#[test]
fn invalid_options_are_typed_errors() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let sink = SignalSink::default();
    let cases = [
        (
            CircuitBreakerOptions::default().consecutive_failures(0),
            BreakerConfigError::ZeroFailures,
        ),
        (
            CircuitBreakerOptions::default().failures_within(3, Duration::ZERO),
            BreakerConfigError::ZeroWindow,
        ),
        (
            CircuitBreakerOptions::default().open_for(Duration::ZERO),
            BreakerConfigError::ZeroOpenPeriod,
        ),
        (
            CircuitBreakerOptions::default().backoff(0.5, secs(600)),
            BreakerConfigError::Backoff(0.5),
        ),
        (
            CircuitBreakerOptions::default().backoff(2.0, secs(1)),
            BreakerConfigError::MaxOpenTooShort {
                open_for: secs(30),
                max_open: secs(1),
            },
        ),
        (
            CircuitBreakerOptions::default().probes(0, 0),
            BreakerConfigError::ZeroProbes,
        ),
        (
            CircuitBreakerOptions::default().probes(2, 3),
            BreakerConfigError::Successes {
                successes: 3,
                probes: 2,
            },
        ),
    ];
    for (options, expected) in cases {
        let err = CircuitBreaker::new(&sink, options).unwrap_err();
        assert!(!err.to_string().is_empty());
        assert_eq!(err, expected);
    }
    let err = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default().signal_prefix("bad name"),
    )
    .unwrap_err();
    assert!(matches!(err, BreakerConfigError::Prefix(_)), "{err}");
}

/// `circuit.open` is held with the open period in `open_for_ms`, as the rustdoc says; the
/// other transitions are raised events.
#[tokio::test(start_paused = true)]
async fn the_open_hold_carries_its_period_and_the_transitions_are_events() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(Duration::from_millis(2_500)),
    )
    .unwrap();
    sink.raise("failure").unwrap();
    let open = sink.latest("circuit.open").unwrap();
    assert!(open.is_held());
    assert_eq!(
        open.header("open_for_ms"),
        Some(&ephemeral::HeaderValue::Int(2_500))
    );
    advance(Duration::from_millis(2_500)).await;
    settle().await;
    assert!(!sink.has_signal("circuit.open"));
    assert!(!sink.latest("circuit.half_open").unwrap().is_held());
    breaker.record_success();
    assert!(!sink.latest("circuit.closed").unwrap().is_held());
}

/// An open period longer than the default growth cap (5 minutes), with no growth asked for,
/// used to be refused with `MaxOpenTooShort { open_for: 600s, max_open: 300s }`, a cap the
/// user never set. It is valid, holds for its whole period, and reopens for it (no growth).
#[tokio::test(start_paused = true)]
async fn an_open_period_past_the_default_cap_is_valid_on_its_own() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .consecutive_failures(1)
            .open_for(secs(600)),
    )
    .unwrap();
    sink.raise("failure").unwrap();
    advance(secs(599)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    advance(secs(1)).await;
    settle().await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    sink.raise("failure").unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.open_period(), secs(600));
    // A cap given with a growth factor must still not be shorter.
    let err = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .open_for(secs(600))
            .backoff(2.0, secs(300)),
    )
    .unwrap_err();
    assert_eq!(
        err,
        BreakerConfigError::MaxOpenTooShort {
            open_for: secs(600),
            max_open: secs(300)
        }
    );
}

/// A prefix that is empty, or starts or ends with a dot, used to be accepted and named the
/// signals `.open` or `circuit..open` (an empty segment): refused, saying what to give.
#[test]
fn an_empty_or_dotted_signal_prefix_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let sink = SignalSink::default();
    let err =
        CircuitBreaker::new(&sink, CircuitBreakerOptions::default().signal_prefix("")).unwrap_err();
    assert_eq!(err, BreakerConfigError::EmptyPrefix);
    for prefix in ["circuit.", ".circuit", "."] {
        let err = CircuitBreaker::new(
            &sink,
            CircuitBreakerOptions::default().signal_prefix(prefix),
        )
        .unwrap_err();
        assert_eq!(err, BreakerConfigError::PrefixDot(prefix.to_owned()));
        assert!(err.to_string().contains("give the segments alone"), "{err}");
    }
    // Inner dots are segments of their own.
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .signal_prefix("db.circuit")
            .consecutive_failures(1),
    )
    .unwrap();
    breaker.trip();
    assert!(sink.has_signal("db.circuit.open"));
}

/// A failure or success pattern that can match no signal name would leave the breaker deaf
/// (it used to be accepted, and the breaker then never opened): refused by name.
#[test]
fn a_pattern_matching_no_name_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let sink = SignalSink::default();
    for pattern in ["", " , ", "a b"] {
        let err = CircuitBreaker::new(&sink, CircuitBreakerOptions::default().failure_on(pattern))
            .unwrap_err();
        assert_eq!(
            err,
            BreakerConfigError::EmptyFailurePattern {
                pattern: pattern.to_owned()
            }
        );
        assert!(err.to_string().contains("failure pattern"), "{err}");
        let err = CircuitBreaker::new(&sink, CircuitBreakerOptions::default().success_on(pattern))
            .unwrap_err();
        assert_eq!(
            err,
            BreakerConfigError::EmptySuccessPattern {
                pattern: pattern.to_owned()
            }
        );
        assert!(err.to_string().contains("record_success"), "{err}");
    }
    // A pattern with one usable alternative is fine.
    let _breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .failure_on("a b,error.*")
            .success_on("ok"),
    )
    .unwrap();
}

#[test]
fn outside_a_runtime_is_a_typed_error() {
    let sink = SignalSink::default();
    let err = CircuitBreaker::new(&sink, CircuitBreakerOptions::default()).unwrap_err();
    assert_eq!(err, BreakerConfigError::NoRuntime);
}

/// `trip` on a breaker already open restarts its open period and nothing else: no second
/// opening counted, the `open` hold kept (its watchers hear nothing), and the breaker
/// half-opens when the restarted period ends, not when the first would have.
#[tokio::test(start_paused = true)]
async fn tripping_an_open_breaker_restarts_its_period_without_reopening() {
    use futures::FutureExt;
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(&sink, CircuitBreakerOptions::default()).unwrap();
    breaker.trip();
    settle().await;
    let held = |sink: &SignalSink| -> Vec<u64> {
        sink.holds("circuit.open")
            .iter()
            .map(|s| s.sequence())
            .collect()
    };
    let first = held(&sink);
    assert_eq!(first.len(), 1);
    let mut changes = sink.watch("circuit.open");
    sleep(secs(20)).await;
    breaker.trip();
    settle().await;
    assert_eq!(breaker.times_opened(), 1);
    assert_eq!(held(&sink), first, "the same hold, not a new one");
    assert!(
        changes.changed().now_or_never().is_none(),
        "watchers hear nothing"
    );
    assert_eq!(breaker.time_until_close(), Some(secs(30)));
    // The first period would have ended at 30 s: still open then.
    sleep(secs(15)).await;
    settle().await;
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(sink.count("circuit.half_open"), 0);
    // The restarted one ends at 50 s.
    sleep(secs(15)).await;
    settle().await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(sink.count("circuit.half_open"), 1);
    assert!(held(&sink).is_empty());
}
