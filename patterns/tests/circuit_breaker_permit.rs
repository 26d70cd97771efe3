//! Circuit breaker permits: calls outside a coordinator asking first and reporting after.

use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions, CircuitState};
use tokio::time::sleep;

fn breaker(sink: &SignalSink) -> CircuitBreaker {
    CircuitBreaker::new(
        sink,
        CircuitBreakerOptions::default()
            .failure_on("http.error.5*,http.timeout")
            .consecutive_failures(2)
            .open_for(Duration::from_secs(4)),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn closed_grants_plain_permits_and_failures_open_it() {
    let sink = SignalSink::default();
    let breaker = breaker(&sink);
    let permit = breaker.try_acquire().unwrap();
    assert!(!permit.is_probe());
    permit.failure();
    assert_eq!(breaker.state(), CircuitState::Closed);
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(sink.has_signal("circuit.open"));

    sleep(Duration::from_secs(1)).await;
    let refused = breaker.try_acquire().unwrap_err();
    assert_eq!(refused.state(), CircuitState::Open);
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(
        refused.to_string(),
        "the circuit is open: calls are refused for another 3s; retry later"
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_count() {
    let sink = SignalSink::default();
    let breaker = breaker(&sink);
    breaker.try_acquire().unwrap().failure();
    breaker.try_acquire().unwrap().success();
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_grants_one_probe_and_a_dropped_probe_frees_its_slot() {
    let sink = SignalSink::default();
    let breaker = breaker(&sink);
    breaker.trip();
    sleep(Duration::from_secs(4)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);

    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    let busy = breaker.try_acquire().unwrap_err();
    assert_eq!(busy.state(), CircuitState::HalfOpen);
    assert_eq!(busy.retry_after(), None);

    // Ended without a verdict (the caller gave up): the slot is free again.
    drop(probe);
    assert_eq!(breaker.probes_admitted(), 0);
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    probe.success();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert!(!sink.has_signal("circuit.open"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens() {
    let sink = SignalSink::default();
    let breaker = breaker(&sink);
    breaker.trip();
    sleep(Duration::from_secs(4)).await;
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.times_opened(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_verdict_from_an_earlier_phase_is_ignored() {
    let sink = SignalSink::default();
    let breaker = breaker(&sink);
    // Granted while closed; the breaker opens and goes half-open while the call runs.
    let slow_call = breaker.try_acquire().unwrap();
    sink.raise("http.error.503").unwrap();
    sink.raise("http.timeout").unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    sleep(Duration::from_secs(4)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    // Not a probe: its success must not close the breaker.
    slow_call.success();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);

    // Likewise a probe that finishes after its phase ended does not touch the next one.
    let probe = breaker.try_acquire().unwrap();
    breaker.trip();
    sleep(Duration::from_secs(4)).await;
    let fresh = breaker.try_acquire().unwrap();
    drop(probe);
    assert_eq!(breaker.probes_admitted(), 1);
    fresh.success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn counts_as_failure_follows_the_pattern_and_skips_own_signals() {
    let sink = SignalSink::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default().failure_on("http.error.5*,circuit.*"),
    )
    .unwrap();
    assert!(breaker.counts_as_failure("http.error.503"));
    assert!(!breaker.counts_as_failure("http.error.404"));
    assert!(!breaker.counts_as_failure("circuit.open"));
    assert!(breaker.counts_as_failure("circuit.other"));
}
