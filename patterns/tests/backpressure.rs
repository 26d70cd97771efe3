//! Backpressure: the watermark hold with hysteresis.

use ephemeral::SignalSink;
use ephemeral_patterns::backpressure::{Backpressure, BackpressureError};

#[test]
fn holds_above_high_and_releases_only_below_low() {
    let sink = SignalSink::default();
    let pressure = Backpressure::new(&sink, "db", 10, 3).unwrap();
    assert_eq!(pressure.signal_name().as_str(), "backpressure.db");
    let steps = [
        (5, false),
        (10, false), // at the high watermark: not above it
        (11, true),
        (20, true),
        (4, true), // between: hysteresis keeps it
        (3, true), // at the low watermark: not below it
        (2, false),
        (9, false),
        (11, true),
    ];
    for (pending, held) in steps {
        assert_eq!(pressure.update(pending), held, "pending {pending}");
        assert_eq!(
            sink.has_signal("backpressure.db"),
            held,
            "pending {pending}"
        );
        assert_eq!(pressure.is_held(), held);
    }
    assert_eq!(pressure.times_held(), 2);
    assert_eq!(pressure.last_pending(), 11);
    assert_eq!(sink.stats().held, 1);
}

#[test]
fn dropping_the_last_clone_releases_the_hold() {
    let sink = SignalSink::default();
    let pressure = Backpressure::new(&sink, "db", 1, 1).unwrap();
    let clone = pressure.clone();
    clone.update(2);
    drop(clone);
    assert!(sink.has_signal("backpressure.db"));
    drop(pressure);
    assert!(!sink.has_signal("backpressure.db"));
}

#[tokio::test(start_paused = true)]
async fn a_watcher_sees_the_hold_and_its_release() {
    let sink = SignalSink::default();
    let pressure = Backpressure::new(&sink, "db", 2, 1).unwrap();
    let mut watch = sink.watch("backpressure.db");
    let waiter = tokio::spawn(async move {
        watch.wait_for_match().await;
        watch.wait_until_clear().await;
    });
    pressure.update(3);
    tokio::task::yield_now().await;
    pressure.update(0);
    waiter.await.unwrap();
    assert!(!sink.has_signal("backpressure.db"));
}

#[test]
fn listeners_on_the_condition_may_report_again() {
    let sink = SignalSink::default();
    let pressure = Backpressure::new(&sink, "db", 2, 1).unwrap();
    let reporter = pressure.clone();
    let _listener = sink.on_signal("backpressure.*", move |_| {
        // Re-entrant report while the hold is being taken: must not deadlock.
        reporter.update(5);
    });
    assert!(pressure.update(3));
    assert!(sink.has_signal("backpressure.db"));
}

#[test]
fn invalid_settings_are_typed_errors() {
    let sink = SignalSink::default();
    assert_eq!(
        Backpressure::new(&sink, "db", 5, 0).unwrap_err(),
        BackpressureError::Watermarks { high: 5, low: 0 }
    );
    assert_eq!(
        Backpressure::new(&sink, "db", 5, 6).unwrap_err(),
        BackpressureError::Watermarks { high: 5, low: 6 }
    );
    let err = Backpressure::new(&sink, "bad name", 5, 1).unwrap_err();
    assert!(matches!(err, BackpressureError::Name(_)), "{err}");
    assert!(err.to_string().contains("backpressure name"));
    // An empty name would hold `backpressure.`, which names nothing.
    let err = Backpressure::new(&sink, "", 5, 1).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    assert_eq!(err, BackpressureError::EmptyName);
}

/// A name that starts or ends with a dot used to be accepted and held `backpressure.db.` or
/// `backpressure..db`, which an upstream's `defer_on("backpressure.db")` never matches:
/// refused, saying what to give.
#[test]
fn a_name_starting_or_ending_with_a_dot_is_refused() {
    let sink = SignalSink::default();
    for name in ["db.", ".db", "."] {
        let err = Backpressure::new(&sink, name, 5, 1).unwrap_err();
        assert_eq!(err, BackpressureError::NameDot(name.to_owned()));
        assert!(err.to_string().contains("give the segments alone"), "{err}");
    }
    let pressure = Backpressure::new(&sink, "db.orders", 5, 1).unwrap();
    pressure.update(6);
    assert!(sink.has_signal("backpressure.db.orders"));
}

/// A sink that refuses the hold (its `max_holds` reached) does not change the throttled
/// state; the refusal is reported, and the next report while throttled asks again.
#[test]
fn a_refused_hold_still_throttles_and_is_asked_for_again() {
    let sink = SignalSink::new(ephemeral::SinkOptions::default().max_holds(1)).unwrap();
    let other = sink.hold("maintenance").unwrap();
    let pressure = Backpressure::new(&sink, "db", 10, 3).unwrap();
    assert!(pressure.update(11));
    assert!(pressure.is_held());
    assert!(!sink.has_signal("backpressure.db"));
    assert!(!pressure.is_signal_held());
    assert!(matches!(
        pressure.last_sink_error(),
        Some(ephemeral::RaiseError::TooManyHolds { .. })
    ));

    drop(other);
    assert!(pressure.update(8)); // between the watermarks: still throttled
    assert!(sink.has_signal("backpressure.db"));
    assert!(pressure.is_signal_held());
    assert_eq!(pressure.times_held(), 1);

    assert!(!pressure.update(2));
    assert!(!sink.has_signal("backpressure.db"));
    assert!(!pressure.is_signal_held());
}
