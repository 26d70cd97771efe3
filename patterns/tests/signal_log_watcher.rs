//! Signal log watcher: exactly once, in order, lag reported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ephemeral::{Buffer, SignalSink};
use ephemeral_patterns::signal_log_watcher::{SignalLogWatcher, WatcherError};

#[tokio::test(start_paused = true)]
async fn sees_each_of_10000_signals_exactly_once_in_order() {
    let sink = SignalSink::new(ephemeral::SinkOptions::default().capacity(100)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::with_capacity(10_000)));
    let log = seen.clone();
    let watcher = SignalLogWatcher::start(
        &sink,
        "job.*",
        Buffer::bounded(64).unwrap(),
        move |signal| {
            log.lock().unwrap().push(signal.sequence());
            async {}
        },
        |lost| panic!("no lag expected, lost {lost}"),
    )
    .unwrap();
    let mut raised = Vec::with_capacity(10_000);
    for i in 0..10_000u32 {
        raised.push(sink.raise(&format!("job.{}", i % 7)).unwrap().sequence());
        sink.raise("other").unwrap(); // not matching: never handled
        if i % 32 == 31 {
            tokio::task::yield_now().await;
        }
    }
    while watcher.stats().handled < 10_000 {
        tokio::task::yield_now().await;
    }
    let stats = watcher.stats();
    assert_eq!(
        (stats.handled, stats.lagged, stats.panicked),
        (10_000, 0, 0)
    );
    assert_eq!(*seen.lock().unwrap(), raised);
}

#[tokio::test(start_paused = true)]
async fn overflow_is_reported_as_lag_and_nothing_is_hidden() {
    let sink = SignalSink::default();
    let lag_reports = Arc::new(AtomicU64::new(0));
    let lagged = lag_reports.clone();
    let watcher = SignalLogWatcher::start(
        &sink,
        "*",
        Buffer::bounded(10).unwrap(),
        |_| async {},
        move |lost| {
            lagged.fetch_add(lost, Ordering::Relaxed);
        },
    )
    .unwrap();
    for i in 0..100 {
        sink.raise(&format!("burst.{i}")).unwrap();
    }
    while watcher.stats().handled + watcher.stats().lagged < 100 {
        tokio::task::yield_now().await;
    }
    let stats = watcher.stats();
    assert_eq!(stats.handled, 10, "the newest 10 are delivered");
    assert_eq!(stats.lagged, 90);
    assert_eq!(lag_reports.load(Ordering::Relaxed), 90);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_counted_and_the_watcher_carries_on() {
    let sink = SignalSink::default();
    let watcher = SignalLogWatcher::start(
        &sink,
        "*",
        Buffer::bounded(16).unwrap(),
        |signal| async move {
            if signal.name().as_str() == "bad" {
                panic!("handler bug");
            }
        },
        |_| {},
    )
    .unwrap();
    for name in ["a", "bad", "b"] {
        sink.raise(name).unwrap();
    }
    while watcher.stats().handled < 3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(watcher.stats().panicked, 1);
}

/// A handler that panics while being called, before it returns its future, is caught too.
#[tokio::test(start_paused = true)]
async fn a_handler_panicking_before_its_future_is_counted_and_the_watcher_carries_on() {
    let sink = SignalSink::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let watcher = SignalLogWatcher::start(
        &sink,
        "x.*",
        Buffer::bounded(16).unwrap(),
        move |signal| {
            let name = signal.name().as_str().to_owned();
            if name == "x.boom" {
                panic!("handler bug before the future");
            }
            log.lock().unwrap().push(name);
            async {}
        },
        |_| {},
    )
    .unwrap();
    for name in ["x.a", "x.boom", "x.b", "x.c"] {
        sink.raise(name).unwrap();
    }
    // Bounded: with the watcher task dead the count would never reach 4.
    for _ in 0..1_000 {
        if watcher.stats().handled == 4 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let stats = watcher.stats();
    assert_eq!((stats.handled, stats.panicked), (4, 1));
    assert_eq!(*seen.lock().unwrap(), ["x.a", "x.b", "x.c"]);
}

#[tokio::test(start_paused = true)]
async fn stopping_unsubscribes() {
    let sink = SignalSink::default();
    let watcher = SignalLogWatcher::start(
        &sink,
        "*",
        Buffer::bounded(4).unwrap(),
        |_| async {},
        |_| {},
    )
    .unwrap();
    assert_eq!(sink.stats().subscriptions, 1);
    watcher.stop();
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(sink.stats().subscriptions, 0);
}

#[test]
fn outside_a_runtime_is_a_typed_error() {
    let sink = SignalSink::default();
    let err =
        SignalLogWatcher::start(&sink, "*", Buffer::Unbounded, |_| async {}, |_| {}).unwrap_err();
    assert_eq!(err, WatcherError::NoRuntime);
}

/// A pattern that can match no signal name would give a watcher that never calls its
/// handler: refused with the pattern, nothing subscribed.
#[tokio::test(start_paused = true)]
async fn a_pattern_matching_no_name_is_refused() {
    let sink = SignalSink::default();
    for pattern in ["", " ", " , ", "error db"] {
        let err = SignalLogWatcher::start(&sink, pattern, Buffer::Unbounded, |_| async {}, |_| {})
            .unwrap_err();
        assert_eq!(
            err,
            WatcherError::EmptyPattern {
                pattern: pattern.to_owned()
            }
        );
        assert!(err.to_string().contains("matches no signal name"), "{err}");
    }
    assert_eq!(sink.stats().subscriptions, 0);
    // One alternative that can match is enough.
    let watcher =
        SignalLogWatcher::start(&sink, " ,error.*", Buffer::Unbounded, |_| async {}, |_| {});
    assert!(watcher.is_ok());
}
