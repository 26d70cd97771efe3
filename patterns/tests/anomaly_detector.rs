//! Anomaly detector: detection above a threshold within a window, clearing on time.

mod support;
use support::alive_tasks;

use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_patterns::anomaly_detector::{AnomalyDetector, AnomalyError};
use tokio::time::{advance, sleep};

async fn settle() {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn detects_at_the_threshold_and_clears_when_the_window_passes() {
    let sink = SignalSink::default();
    let detector =
        AnomalyDetector::new(&sink, "error.*", 4, Duration::from_secs(10), "anomaly").unwrap();
    for _ in 0..3 {
        sink.raise("error.db").unwrap();
        advance(Duration::from_secs(1)).await;
    }
    assert!(!detector.is_active(), "3 is below the threshold of 4");
    sink.raise("error.http").unwrap(); // t = 3 s: four within 10 s
    assert!(detector.is_active());
    assert_eq!(sink.count("anomaly.detected"), 1);
    assert!(sink.has_signal("anomaly.active"));

    // More arrivals keep it active and push the clearing instant; no second detection.
    advance(Duration::from_secs(2)).await;
    sink.raise("error.db").unwrap(); // t = 5 s; the last four are at 1, 2, 3, 5 s
    assert_eq!(sink.count("anomaly.detected"), 1);

    // The oldest counted arrival (1 s) leaves the window at 11 s.
    sleep(Duration::from_millis(5_999)).await;
    settle().await;
    assert!(detector.is_active());
    sleep(Duration::from_millis(1)).await;
    settle().await;
    assert!(!detector.is_active());
    assert!(!sink.has_signal("anomaly.active"));
    assert_eq!(sink.count("anomaly.cleared"), 1);
    assert_eq!(detector.detections(), 1);
}

/// The threshold is inclusive, as in the original: `threshold` signals within the window
/// are an anomaly.
#[tokio::test(start_paused = true)]
async fn the_threshold_is_inclusive() {
    let sink = SignalSink::default();
    let detector =
        AnomalyDetector::new(&sink, "error.*", 5, Duration::from_secs(10), "anomaly").unwrap();
    for _ in 0..4 {
        sink.raise("error.db").unwrap();
    }
    assert!(!detector.is_active(), "four is below a threshold of five");
    sink.raise("error.db").unwrap();
    assert!(
        detector.is_active(),
        "five signals in the window are an anomaly"
    );
    assert_eq!(sink.count("anomaly.detected"), 1);
    // The count falls below five when the oldest of the five leaves the window.
    sleep(Duration::from_secs(10)).await;
    settle().await;
    assert!(!detector.is_active());
}

#[tokio::test(start_paused = true)]
async fn spread_out_signals_never_trigger() {
    let sink = SignalSink::default();
    let detector =
        AnomalyDetector::new(&sink, "error.*", 3, Duration::from_secs(10), "anomaly").unwrap();
    // One every 5 s: never three within 10 s (the one from 10 s ago has just left).
    for _ in 0..50 {
        sink.raise("error.db").unwrap();
        advance(Duration::from_secs(5)).await;
    }
    assert_eq!(detector.detections(), 0);
    assert_eq!(sink.count("anomaly.*"), 0);
}

#[tokio::test(start_paused = true)]
async fn own_signals_never_count_and_prefix_names_them() {
    let sink = SignalSink::default();
    let detector =
        AnomalyDetector::new(&sink, "*", 1, Duration::from_secs(1), "anomaly.db").unwrap();
    sink.raise("x").unwrap();
    assert!(detector.is_active());
    sleep(Duration::from_secs(1)).await;
    settle().await;
    assert!(!detector.is_active());
    assert_eq!(detector.detections(), 1);
    assert_eq!(sink.count("anomaly.db.detected"), 1);
    assert_eq!(sink.count("anomaly.db.cleared"), 1);
}

#[tokio::test(start_paused = true)]
async fn detects_again_after_clearing() {
    let sink = SignalSink::default();
    let detector = AnomalyDetector::new(&sink, "e", 1, Duration::from_secs(1), "anomaly").unwrap();
    for round in 1..=3 {
        sink.raise("e").unwrap();
        sink.raise("e").unwrap();
        assert!(detector.is_active());
        sleep(Duration::from_secs(2)).await;
        settle().await;
        assert!(!detector.is_active());
        assert_eq!(detector.detections(), round);
    }
}

/// A window too long for the clock (`Duration::MAX`) never clears: the anomaly is detected
/// and held, as with a window of a thousand years.
#[tokio::test(start_paused = true)]
async fn a_window_past_the_clock_detects_and_never_clears() {
    let sink = SignalSink::default();
    let detector = AnomalyDetector::new(&sink, "error.*", 3, Duration::MAX, "anomaly").unwrap();
    sink.raise("error.db").unwrap();
    sink.raise("error.db").unwrap();
    assert!(!detector.is_active(), "2 is below the threshold of 3");
    for _ in 0..3 {
        sink.raise("error.db").unwrap();
    }
    assert!(detector.is_active());
    assert_eq!(detector.detections(), 1);
    assert_eq!(sink.count("anomaly.detected"), 1);
    assert!(sink.has_signal("anomaly.active"));
    sleep(Duration::from_secs(86_400 * 365 * 10)).await;
    settle().await;
    assert!(detector.is_active());
    assert_eq!(sink.count("anomaly.cleared"), 0);
    assert_eq!(detector.last_sink_error(), None);
}

#[test]
fn invalid_settings_are_typed_errors() {
    let sink = SignalSink::default();
    assert_eq!(
        AnomalyDetector::new(&sink, "e", 1, Duration::from_secs(1), "anomaly").unwrap_err(),
        AnomalyError::NoRuntime
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    assert_eq!(
        AnomalyDetector::new(&sink, "e", 1, Duration::ZERO, "anomaly").unwrap_err(),
        AnomalyError::ZeroWindow
    );
    assert!(matches!(
        AnomalyDetector::new(&sink, "e", 1, Duration::from_secs(1), "bad prefix").unwrap_err(),
        AnomalyError::Prefix(_)
    ));
    assert_eq!(
        AnomalyDetector::new(&sink, "e", 0, Duration::from_secs(1), "anomaly").unwrap_err(),
        AnomalyError::ZeroThreshold
    );
}

/// A pattern that can match no name used to be accepted, and the detector never detected
/// anything: refused, naming the pattern.
#[test]
fn a_pattern_matching_no_name_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let sink = SignalSink::default();
    for pattern in ["", " , ", "a b"] {
        let err =
            AnomalyDetector::new(&sink, pattern, 1, Duration::from_secs(1), "anomaly").unwrap_err();
        assert_eq!(
            err,
            AnomalyError::EmptyPattern {
                pattern: pattern.to_owned()
            }
        );
        assert!(err.to_string().contains("matches no signal name"), "{err}");
    }
}

/// A prefix that is empty, or starts or ends with a dot, used to be accepted and named the
/// signals `.detected` or `anomaly..detected`: refused, saying what to give.
#[test]
fn an_empty_or_dotted_prefix_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let sink = SignalSink::default();
    let window = Duration::from_secs(1);
    assert_eq!(
        AnomalyDetector::new(&sink, "e", 1, window, "").unwrap_err(),
        AnomalyError::EmptyPrefix
    );
    for prefix in ["anomaly.", ".anomaly", "."] {
        let err = AnomalyDetector::new(&sink, "e", 1, window, prefix).unwrap_err();
        assert_eq!(err, AnomalyError::PrefixDot(prefix.to_owned()));
        assert!(err.to_string().contains("give the segments alone"), "{err}");
    }
    let detector = AnomalyDetector::new(&sink, "e", 1, window, "db.anomaly").unwrap();
    sink.raise("e").unwrap();
    assert!(detector.is_active());
    assert!(sink.has_signal("db.anomaly.detected"));
}

/// A storm of arrivals while active moves the clearing instant of one timer; it does not
/// start a timer task per arrival (it used to: 10,000 signals left 10,000 sleeping tasks for
/// the whole window).
#[tokio::test(start_paused = true)]
async fn a_storm_of_arrivals_keeps_one_clearing_timer() {
    let sink = SignalSink::default();
    let detector =
        AnomalyDetector::new(&sink, "error.*", 3, Duration::from_secs(60), "anomaly").unwrap();
    let before = alive_tasks();
    for _ in 0..10_000 {
        sink.raise("error.db").unwrap();
    }
    assert!(detector.is_active());
    assert!(
        alive_tasks() <= before + 1,
        "{} tasks for one detector",
        alive_tasks() - before
    );

    // Three more at 30 s move the clearing instant to 90 s; the timer follows.
    advance(Duration::from_secs(30)).await;
    for _ in 0..3 {
        sink.raise("error.db").unwrap();
    }
    assert!(alive_tasks() <= before + 1);
    sleep(Duration::from_millis(59_999)).await;
    settle().await;
    assert!(detector.is_active(), "the last three arrived at 30 s");
    sleep(Duration::from_millis(1)).await;
    settle().await;
    assert!(!detector.is_active());
    assert_eq!(sink.count("anomaly.cleared"), 1);
    assert_eq!(detector.detections(), 1);
    assert_eq!(alive_tasks(), before, "the timer ends with the anomaly");

    // It starts again for the next anomaly.
    for _ in 0..3 {
        sink.raise("error.db").unwrap();
    }
    assert!(detector.is_active());
    sleep(Duration::from_secs(60)).await;
    settle().await;
    assert!(!detector.is_active());
    assert_eq!(detector.detections(), 2);
}
