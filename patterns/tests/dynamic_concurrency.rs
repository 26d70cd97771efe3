//! Dynamic concurrency: scaling on load signals, bounded, with a cooldown, stopping when the
//! signal is gone.

use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, SignalSink, SinkOptions};
use ephemeral_patterns::dynamic_concurrency::{
    DynamicConcurrency, DynamicConcurrencyError, DynamicConcurrencyOptions, Step,
};
use tokio::time::sleep;

fn coordinator(sink: &SignalSink, start: usize) -> EphemeralWorkCoordinator<u32> {
    EphemeralWorkCoordinator::new(
        |_: u32, _ctx| async { Ok::<_, String>(()) },
        EphemeralOptions::default()
            .max_concurrency(start)
            .signals(sink.clone()),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_held_load_high_reaches_max_and_stops() {
    let sink = SignalSink::default();
    let c = coordinator(&sink, 2);
    let scaler = DynamicConcurrency::start(
        &c,
        DynamicConcurrencyOptions::new(1, 16).cooldown(Duration::from_secs(1)),
    )
    .unwrap();
    let _load = sink.hold("load.high").unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        tokio::task::yield_now().await;
        seen.push(c.max_concurrency());
        sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(seen, [4, 8, 16, 16, 16]);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(c.max_concurrency(), 16);
    assert_eq!(scaler.changes(), 3);
}

#[tokio::test(start_paused = true)]
async fn scaling_stops_when_the_signal_expires() {
    let sink =
        SignalSink::new(SinkOptions::default().max_age(Duration::from_millis(2_500))).unwrap();
    let c = coordinator(&sink, 1);
    let scaler = DynamicConcurrency::start(
        &c,
        DynamicConcurrencyOptions::new(1, 1_000).cooldown(Duration::from_secs(1)),
    )
    .unwrap();
    sink.raise("load.high").unwrap();
    // Live for 2.5 s: changes at 0, 1 and 2 s; at 3 s it is gone.
    sleep(Duration::from_secs(30)).await;
    assert_eq!(c.max_concurrency(), 8);
    assert_eq!(scaler.changes(), 3);
}

#[tokio::test(start_paused = true)]
async fn load_low_scales_down_to_min_by_steps() {
    let sink = SignalSink::default();
    let c = coordinator(&sink, 10);
    let scaler = DynamicConcurrency::start(
        &c,
        DynamicConcurrencyOptions::new(3, 10)
            .step(Step::Add(2))
            .cooldown(Duration::from_secs(2)),
    )
    .unwrap();
    let load = sink.hold("load.low").unwrap();
    sleep(Duration::from_secs(60)).await;
    assert_eq!(c.max_concurrency(), 3);
    assert_eq!(scaler.changes(), 4); // 8, 6, 4, 3
    drop(load);

    // Both at once contradict each other: nothing moves.
    let _high = sink.hold("load.high").unwrap();
    let _low = sink.hold("load.low").unwrap();
    sleep(Duration::from_secs(60)).await;
    assert_eq!(c.max_concurrency(), 3);
    assert_eq!(scaler.changes(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_scaler_changes_nothing() {
    let sink = SignalSink::default();
    let c = coordinator(&sink, 2);
    let scaler = DynamicConcurrency::start(&c, DynamicConcurrencyOptions::new(1, 64)).unwrap();
    scaler.stop();
    let _load = sink.hold("load.high").unwrap();
    sleep(Duration::from_secs(60)).await;
    assert_eq!(c.max_concurrency(), 2);
}

#[tokio::test(start_paused = true)]
async fn invalid_settings_are_typed_errors() {
    let sink = SignalSink::default();
    let c = coordinator(&sink, 2);
    assert_eq!(
        DynamicConcurrency::start(&c, DynamicConcurrencyOptions::new(0, 4)).unwrap_err(),
        DynamicConcurrencyError::Bounds { min: 0, max: 4 }
    );
    assert_eq!(
        DynamicConcurrency::start(&c, DynamicConcurrencyOptions::new(5, 4)).unwrap_err(),
        DynamicConcurrencyError::Bounds { min: 5, max: 4 }
    );
    assert_eq!(
        DynamicConcurrency::start(&c, DynamicConcurrencyOptions::new(1, 4).step(Step::Add(0)))
            .unwrap_err(),
        DynamicConcurrencyError::ZeroStep
    );
}

/// Patterns that could never move the limit used to be accepted, and the scaler sat still
/// whatever was raised: one that matches no name, or the same one both ways (both match at
/// once, which holds still). Refused, naming the pattern.
#[tokio::test(start_paused = true)]
async fn patterns_that_could_never_move_the_limit_are_refused() {
    let sink = SignalSink::default();
    let c = coordinator(&sink, 2);
    for pattern in ["", " , ", "a b"] {
        let err = DynamicConcurrency::start(
            &c,
            DynamicConcurrencyOptions::new(1, 4).signals(pattern, "load.low"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            DynamicConcurrencyError::EmptyPattern {
                direction: "up",
                pattern: pattern.to_owned()
            }
        );
        assert!(err.to_string().contains("never move up"), "{err}");
        let err = DynamicConcurrency::start(
            &c,
            DynamicConcurrencyOptions::new(1, 4).signals("load.high", pattern),
        )
        .unwrap_err();
        assert_eq!(
            err,
            DynamicConcurrencyError::EmptyPattern {
                direction: "down",
                pattern: pattern.to_owned()
            }
        );
    }
    let err = DynamicConcurrency::start(
        &c,
        DynamicConcurrencyOptions::new(1, 4).signals("load", "load"),
    )
    .unwrap_err();
    assert_eq!(err, DynamicConcurrencyError::SamePattern("load".to_owned()));
    assert!(err.to_string().contains("give two patterns"), "{err}");
    assert_eq!(c.max_concurrency(), 2);
}

/// A coordinator that starts above `max` is never moved further out, nor up: load.high
/// leaves it, load.low steps it down towards the bounds and then within them.
#[tokio::test(start_paused = true)]
async fn a_limit_starting_outside_the_bounds_only_moves_towards_them() {
    let sink = SignalSink::default();
    let c = coordinator(&sink, 64);
    let scaler = DynamicConcurrency::start(
        &c,
        DynamicConcurrencyOptions::new(1, 16).cooldown(Duration::from_secs(1)),
    )
    .unwrap();
    {
        let _high = sink.hold("load.high").unwrap();
        sleep(Duration::from_secs(10)).await;
        assert_eq!(c.max_concurrency(), 64, "up never lowers");
        assert_eq!(scaler.changes(), 0);
    }
    let _low = sink.hold("load.low").unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        tokio::task::yield_now().await;
        seen.push(c.max_concurrency());
        sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(seen, [32, 16, 8, 4, 2, 1]);
}

/// Scaling ends as soon as the coordinator is done, not at the next load signal (which may
/// never come while the scaler holds a handle of the coordinator): it ran on after `drain`.
#[tokio::test(start_paused = true)]
async fn scaling_ends_when_the_coordinator_is_done() {
    let sink = SignalSink::default();
    let c = coordinator(&sink, 2);
    let scaler = DynamicConcurrency::start(&c, DynamicConcurrencyOptions::new(1, 16)).unwrap();
    tokio::task::yield_now().await;
    assert!(scaler.is_running());
    c.enqueue(1).await.unwrap();
    c.drain().await.unwrap();
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    assert!(!scaler.is_running(), "{scaler:?}");
    // Also while it waits out a cooldown after a change.
    let c = coordinator(&sink, 2);
    let scaler = DynamicConcurrency::start(
        &c,
        DynamicConcurrencyOptions::new(1, 16).cooldown(Duration::from_secs(3600)),
    )
    .unwrap();
    let load = sink.hold("load.high").unwrap();
    tokio::task::yield_now().await;
    assert_eq!(c.max_concurrency(), 4);
    c.drain().await.unwrap();
    sleep(Duration::from_millis(1)).await;
    assert!(!scaler.is_running(), "{scaler:?}");
    drop(load);
}
