//! Held conditions and watches.

use std::time::Duration;

use ephemeral::{RaiseError, Signal, SignalSink, SinkOptions};
use futures::FutureExt;
use tokio::time::advance;

#[tokio::test(start_paused = true)]
async fn a_hold_survives_eviction_and_age_until_its_guard_drops() {
    let sink = SignalSink::new(
        SinkOptions::default()
            .capacity(100)
            .max_age(Duration::from_secs(10)),
    )
    .unwrap();
    let mut watch = sink.watch("circuit.*");
    let hold = sink.hold("circuit.open").unwrap();
    assert!(hold.signal().is_held());
    watch
        .changed()
        .now_or_never()
        .expect("the hold is a change");

    for i in 0..5000 {
        sink.raise(&format!("noise.{}", i % 10)).unwrap();
    }
    advance(Duration::from_secs(60)).await;
    assert!(sink.has_signal("circuit.open"));
    assert_eq!(sink.count("circuit.*"), 1);
    assert_eq!(
        sink.latest("circuit.*").unwrap().sequence(),
        hold.signal().sequence()
    );
    assert!(
        watch.changed().now_or_never().is_none(),
        "noise does not touch circuit.*"
    );

    drop(hold);
    watch
        .changed()
        .now_or_never()
        .expect("the release is a change");
    assert!(!sink.has_signal("circuit.*"));
    let stats = sink.stats();
    assert_eq!(stats.holds_acquired, 1);
    assert_eq!(stats.holds_released, 1);
    assert_eq!(stats.held, 0);
}

#[tokio::test(start_paused = true)]
async fn watch_reports_raise_retract_release_and_expiry() {
    let sink = SignalSink::new(SinkOptions::default().max_age(Duration::from_secs(5))).unwrap();
    let mut watch = sink.watch("job.*");
    assert!(watch.changed().now_or_never().is_none(), "nothing yet");

    sink.raise("job.a").unwrap();
    watch.changed().now_or_never().expect("raise");
    sink.retract("job.a");
    watch.changed().now_or_never().expect("retract");
    let held = sink.hold("job.held").unwrap();
    watch.changed().now_or_never().expect("hold");
    held.release();
    watch.changed().now_or_never().expect("release");

    // Expiry: the watch wakes by itself when the only match expires, with no raise at all.
    sink.raise("job.b").unwrap();
    watch.changed().now_or_never().expect("raise");
    let waiter = tokio::spawn(async move {
        watch.changed().await;
        watch
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let watch = waiter.await.unwrap();
    assert!(!watch.has_match());
    assert!(!sink.has_signal("job.*"));
}

/// A watch of holds wakes when a held condition is taken or released, and for nothing else:
/// not a raise, a retract, an eviction or an expiry of a raised signal.
#[tokio::test(start_paused = true)]
async fn a_watch_of_holds_sees_holds_taken_and_released_and_nothing_else() {
    let options = SinkOptions::default()
        .capacity(2)
        .max_age(Duration::from_secs(5));
    let sink = SignalSink::new(options).unwrap();
    let mut holds = sink.watch_holds("job.*");
    assert!(holds.is_holds_only() && !sink.watch("job.*").is_holds_only());
    for name in ["job.a", "job.b", "job.c"] {
        sink.raise(name).unwrap(); // the third evicts the first
    }
    sink.retract("job.b");
    assert!(
        holds.changed().now_or_never().is_none(),
        "raises, eviction, retract"
    );
    assert!(!holds.has_match(), "a raised signal is no hold");
    assert!(sink.holds("job.*").is_empty());

    let held = sink.hold("job.held").unwrap();
    holds.changed().now_or_never().expect("hold taken");
    assert!(holds.has_match());
    let names: Vec<String> = sink
        .holds("*")
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    assert_eq!(names, ["job.held"]);
    assert!(sink.holds("job.held").iter().all(Signal::is_held));

    // job.c expires at 5 s; a plain watch wakes for it, the watch of holds does not.
    let mut all = sink.watch("job.*");
    let plain = tokio::spawn(async move { all.changed().await });
    let of_holds = tokio::spawn(async move {
        holds.changed().await;
        holds
    });
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(plain.is_finished(), "the plain watch saw the expiry");
    assert!(!of_holds.is_finished(), "the watch of holds did not");
    assert!(!sink.has_signal("job.c"));

    held.release();
    let mut holds = of_holds.await.unwrap();
    assert!(!holds.has_match());
    holds.wait_until_clear().await;
}

#[tokio::test(start_paused = true)]
async fn wait_until_clear_returns_when_the_last_condition_is_released() {
    let sink = SignalSink::default();
    let a = sink.hold("backpressure.db").unwrap();
    let b = sink.hold("backpressure.cache").unwrap();
    let mut watch = sink.watch("backpressure.*");
    let waiter = tokio::spawn(async move { watch.wait_until_clear().await });
    tokio::task::yield_now().await;
    drop(a);
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    drop(b);
    waiter.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn holds_are_bounded_separately() {
    let sink = SignalSink::new(SinkOptions::default().capacity(1).max_holds(2)).unwrap();
    let _a = sink.hold("a").unwrap();
    let _b = sink
        .hold_with(Signal::build("b").unwrap().key("k"))
        .unwrap();
    let err = sink.hold("c").unwrap_err();
    assert_eq!(err, RaiseError::TooManyHolds { max: 2 });
    // It reads right for any bound (it said "holds 1 conditions" for a bound of one).
    assert_eq!(
        err.to_string(),
        "this sink already holds as many conditions as its max_holds (2) allows: release some \
         holds or raise the limit"
    );
    sink.raise("x").unwrap();
    sink.raise("y").unwrap();
    assert_eq!(
        sink.count("*"),
        3,
        "capacity 1 evicts raised signals, never holds"
    );
}

#[tokio::test(start_paused = true)]
async fn a_watch_unregisters_when_dropped() {
    let sink = SignalSink::default();
    let watch = sink.watch("*");
    assert_eq!(sink.stats().watches, 1);
    drop(watch);
    assert_eq!(sink.stats().watches, 0);
}

#[tokio::test(start_paused = true)]
async fn receivers_never_keep_the_sink_alive_and_see_it_go() {
    let sink = SignalSink::default();
    let mut sub = sink.subscribe("*");
    let mut watch = sink.watch("*");
    let _listener = sink.on_signal("*", |_| {});
    sink.raise("x").unwrap();
    watch.changed().await;
    assert!(watch.has_match());

    drop(sink);
    // The watch sees the sink's end as one last change, and nothing after it.
    let wait = Duration::from_secs(1);
    assert!(tokio::time::timeout(wait, watch.changed()).await.is_ok());
    assert!(!watch.has_match());
    watch.wait_until_clear().await;
    assert!(tokio::time::timeout(wait, watch.changed()).await.is_err());
    // The subscription drains what it holds, then ends.
    assert_eq!(sub.recv().await.unwrap().unwrap().name(), "x");
    assert!(sub.recv().await.is_none());
}

/// A waiting watch hears an expiry that a shorter max age brings forward, when it comes.
/// It slept until the expiry computed under the old age: with the age cut from 60 s to 10 s
/// at 1 s, `wait_until_clear` returned at 60 s for a signal gone at 10 s.
#[tokio::test(start_paused = true)]
async fn a_watch_hears_the_expiry_a_shorter_max_age_brings_forward() {
    let sink = SignalSink::new(SinkOptions::default().max_age(Duration::from_secs(60))).unwrap();
    let start = tokio::time::Instant::now();
    sink.raise("job.a").unwrap();
    let mut watch = sink.watch("job.*");
    let waiter = tokio::spawn(async move {
        watch.wait_until_clear().await;
        tokio::time::Instant::now()
    });
    tokio::task::yield_now().await;
    advance(Duration::from_secs(1)).await;
    sink.set_max_age(Duration::from_secs(10)).unwrap();
    let cleared_at = waiter.await.unwrap();
    assert_eq!(cleared_at - start, Duration::from_secs(10));

    // A longer age puts the expiry back; a plain `changed` waits for the real change.
    sink.raise("job.b").unwrap();
    let mut watch = sink.watch("job.*");
    let waiter = tokio::spawn(async move {
        watch.changed().await;
        tokio::time::Instant::now()
    });
    tokio::task::yield_now().await;
    sink.set_max_age(Duration::from_secs(30)).unwrap();
    let changed_at = waiter.await.unwrap();
    assert_eq!(changed_at - start, Duration::from_secs(40));
    assert!(!sink.has_signal("job.*"));
}

/// `hold_with` ignores an expiry, as documented: a zero time to live among the builder's
/// parts does not refuse the hold. It was refused with "signal time to live is zero: it
/// would never be live", about a condition that lives until released.
#[tokio::test(start_paused = true)]
async fn a_hold_ignores_any_time_to_live_even_zero() {
    let sink = SignalSink::new(SinkOptions::default().max_age(Duration::from_secs(5))).unwrap();
    let zero = sink
        .hold_with(
            Signal::build("circuit.open")
                .unwrap()
                .expires_in(Duration::ZERO),
        )
        .unwrap();
    let short = sink
        .hold_with(
            Signal::build("backpressure.db")
                .unwrap()
                .expires_in(Duration::from_secs(1)),
        )
        .unwrap();
    assert_eq!(zero.signal().expires_at(), None);
    assert_eq!(short.signal().expires_at(), None);
    advance(Duration::from_secs(60)).await;
    assert_eq!(sink.count("*"), 2);
}

/// The set of live matches also changes when a match is evicted by capacity or removed by
/// `clear`: a watch wakes for both, so a waiter for "no match left" is never stranded.
#[tokio::test(start_paused = true)]
async fn a_watch_hears_capacity_eviction_and_clear() {
    let sink = SignalSink::new(SinkOptions::default().capacity(1)).unwrap();
    sink.raise("job.a").unwrap();
    let mut watch = sink.watch("job.*");
    assert!(watch.has_match());
    sink.raise("other").unwrap(); // evicts `job.a`, the oldest
    watch.changed().now_or_never().expect("capacity eviction");
    assert!(!watch.has_match());
    watch
        .wait_until_clear()
        .now_or_never()
        .expect("no match left");

    sink.raise("job.b").unwrap();
    watch.changed().now_or_never().expect("raise");
    assert_eq!(sink.clear_matching("job.*"), 1);
    watch.changed().now_or_never().expect("clear");
    assert!(!watch.has_match());
}
