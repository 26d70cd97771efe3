//! The sink's window: capacity, age, queries, removal, bounds of the internal tables.

use std::sync::Arc;
use std::time::Duration;

use ephemeral::{
    NameError, OperationId, Pattern, RaiseError, Signal, SignalSink, SinkConfigError, SinkOptions,
};
use tokio::time::{Instant, advance};

fn sink(capacity: usize, max_age_secs: u64) -> SignalSink {
    SignalSink::new(
        SinkOptions::default()
            .capacity(capacity)
            .max_age(Duration::from_secs(max_age_secs)),
    )
    .expect("valid options")
}

#[tokio::test(start_paused = true)]
async fn capacity_keeps_exactly_the_newest() {
    let sink = sink(10, 60);
    for i in 0..100 {
        sink.raise(&format!("job.{i}")).unwrap();
    }
    let live = sink.sense("job.*");
    let names: Vec<String> = live.iter().map(|s| s.name().to_string()).collect();
    let expected: Vec<String> = (90..100).map(|i| format!("job.{i}")).collect();
    assert_eq!(names, expected);
    assert_eq!(sink.count("*"), 10);
    let stats = sink.stats();
    assert_eq!(stats.evicted, 90);
    assert_eq!(stats.live, 10);
}

#[tokio::test(start_paused = true)]
async fn a_signal_is_invisible_the_instant_it_expires() {
    let sink = sink(100, 10);
    let start = Instant::now();
    sink.raise("error.db").unwrap();
    sink.raise_with(
        Signal::build("error.short")
            .unwrap()
            .expires_in(Duration::from_secs(2)),
    )
    .unwrap();

    advance(Duration::from_millis(1999)).await;
    assert!(sink.has_signal("error.short"));
    advance(Duration::from_millis(1)).await;
    assert!(!sink.has_signal("error.short"));
    assert_eq!(sink.count("error.*"), 1);
    assert_eq!(sink.sense("error.*").len(), 1);
    assert_eq!(sink.latest("error.*").unwrap().name(), "error.db");

    advance(Duration::from_millis(7999)).await;
    assert!(sink.has_signal("error.db"));
    assert_eq!(sink.count_since("error.*", start), 1);
    advance(Duration::from_millis(1)).await;
    assert!(!sink.has_signal("error.db"));
    assert!(!sink.has_signal("error.*"));
    assert_eq!(sink.count("*"), 0);
    assert!(sink.latest("*").is_none());
    assert!(sink.sense("*").is_empty());
    assert_eq!(sink.count_since("*", start), 0);
    let stats = sink.stats();
    assert_eq!(stats.expired, 2);
}

#[tokio::test(start_paused = true)]
async fn an_expiry_longer_than_the_max_age_is_clamped() {
    let sink = sink(100, 5);
    let s = sink
        .raise_with(
            Signal::build("a")
                .unwrap()
                .expires_in(Duration::from_secs(3600)),
        )
        .unwrap();
    assert_eq!(s.expires_at(), None);
    advance(Duration::from_secs(5)).await;
    assert!(!sink.has_signal("a"));
}

#[tokio::test(start_paused = true)]
async fn queries_answer_exact_names_and_patterns() {
    let sink = SignalSink::default();
    let a = sink.raise("error.db.timeout").unwrap();
    advance(Duration::from_secs(1)).await;
    let since = Instant::now();
    let b = sink.raise("error.http").unwrap();
    let c = sink.raise("news.sports.eu").unwrap();
    assert!(a.sequence() < b.sequence() && b.sequence() < c.sequence());
    assert_eq!(sink.sequence(), c.sequence());

    assert!(sink.has_signal("error.db.timeout"));
    assert!(!sink.has_signal("error.db"));
    assert_eq!(sink.count("error.*"), 2);
    assert_eq!(sink.count("error.*,news.*"), 3);
    assert_eq!(sink.count("news.+"), 0);
    assert_eq!(sink.count("news.+.eu"), 1);
    assert_eq!(sink.count("error.?ttp"), 1);
    assert_eq!(sink.count_since("error.*", since), 1);
    assert_eq!(
        sink.latest("error.*").map(|s| s.sequence()),
        Some(b.sequence())
    );
    let sensed: Vec<u64> = sink.sense("*").iter().map(Signal::sequence).collect();
    assert_eq!(sensed, vec![a.sequence(), b.sequence(), c.sequence()]);
    // Bad names are simply never live: every string is a valid pattern.
    assert!(!sink.has_signal("has space"));
    assert!(!sink.has_signal(""));
}

/// Queries trim padding exactly as `Pattern` does: any Unicode whitespace, not only ASCII.
#[tokio::test(start_paused = true)]
async fn queries_trim_unicode_whitespace_like_patterns() {
    let sink = SignalSink::default();
    let raised = sink.raise("error.db").unwrap();
    for query in [
        "error.db\u{A0}",
        "error.db\u{0B}",
        "\u{3000}error.db",
        "\u{2003}error.db\u{85}",
    ] {
        assert!(Pattern::new(query).matches("error.db"), "{query:?}");
        assert!(sink.has_signal(query), "has_signal({query:?})");
        assert_eq!(sink.count(query), 1, "count({query:?})");
        assert_eq!(
            sink.latest(query).map(|s| s.sequence()),
            Some(raised.sequence()),
            "latest({query:?})"
        );
        assert_eq!(sink.sense(query).len(), 1, "sense({query:?})");
    }

    let mut watch = sink.watch("error.x\u{A0}");
    assert!(!watch.has_match());
    sink.raise("error.x").unwrap();
    assert!(watch.has_match());
    tokio::time::timeout(Duration::from_secs(1), watch.wait_for_match())
        .await
        .expect("the match is live, so waiting for it returns at once");
}

#[tokio::test(start_paused = true)]
async fn a_new_name_shows_up_in_memoised_patterns() {
    let sink = SignalSink::default();
    sink.raise("error.a").unwrap();
    assert_eq!(sink.count("error.*"), 1);
    sink.raise("error.b").unwrap();
    assert_eq!(sink.count("error.*"), 2);
    sink.raise("error.b").unwrap();
    assert_eq!(sink.count("error.*"), 3);
}

#[tokio::test(start_paused = true)]
async fn signals_of_an_operation_and_retract() {
    let sink = SignalSink::default();
    let op = OperationId::from_raw(7);
    sink.raise_with(Signal::build("step.one").unwrap().operation(op))
        .unwrap();
    sink.raise_with(Signal::build("step.two").unwrap().operation(op).key("k"))
        .unwrap();
    sink.raise("step.one").unwrap();
    let mine: Vec<String> = sink
        .signals_of(op)
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    assert_eq!(mine, ["step.one", "step.two"]);

    assert_eq!(sink.retract_key("step.two", "other"), 0);
    assert_eq!(sink.retract_key("step.two", "k"), 1);
    assert_eq!(sink.retract_operation(op), 1);
    assert!(sink.signals_of(op).is_empty());
    assert_eq!(sink.count("step.one"), 1);
    assert_eq!(sink.retract("step.one"), 1);
    assert!(sink.is_empty());
    // Retracting raises nothing.
    assert!(!sink.has_signal("sink.cleared"));

    // A name, not a pattern: `retract` never clears by pattern (that is `clear_matching`,
    // which says so with `sink.cleared`), as an operation's `retract` never did.
    for name in ["error.db", "error.net", "a", "b"] {
        sink.raise_with(Signal::build(name).unwrap().key("k"))
            .unwrap();
    }
    for pattern in ["error.*", "*", "a,b", "error.+", "?"] {
        assert_eq!(sink.retract(pattern), 0, "{pattern}");
        assert_eq!(sink.retract_key(pattern, "k"), 0, "{pattern}");
    }
    assert_eq!(sink.len(), 4);
    assert!(!sink.has_signal("sink.cleared"));
    assert_eq!(sink.retract_key("error.db", "k"), 1);
    assert_eq!(sink.retract("a"), 1);
    assert_eq!(sink.count("*"), 2);
    assert_eq!(sink.stats().retracted, 5);
}

#[tokio::test(start_paused = true)]
async fn clear_reports_its_count_with_a_leaf_signal() {
    let sink = SignalSink::default();
    assert_eq!(sink.clear(), 0);
    assert!(!sink.has_signal("sink.cleared"));
    for name in ["a.1", "a.2", "b.1"] {
        sink.raise(name).unwrap();
    }
    let _held = sink.hold("a.held").unwrap();
    assert_eq!(sink.clear_matching("a.*"), 2);
    let cleared = sink.latest("sink.cleared").expect("cleared signal");
    assert!(cleared.is_leaf());
    assert_eq!(
        cleared.header("count").map(ToString::to_string),
        Some("2".into())
    );
    assert_eq!(sink.count("a.*"), 1, "holds survive clear");
    assert_eq!(sink.clear(), 2, "b.1 and the first sink.cleared");
    assert_eq!(sink.count("sink.cleared"), 1);
}

#[tokio::test(start_paused = true)]
async fn retract_in_the_middle_keeps_the_window_compact() {
    let sink = sink(100, 60);
    sink.raise("keep").unwrap();
    for _ in 0..10_000 {
        sink.raise("churn").unwrap();
        assert_eq!(sink.retract("churn"), 1);
    }
    assert_eq!(sink.count("*"), 1);
    let stats = sink.stats();
    assert_eq!(stats.live, 1);
    assert_eq!(stats.retracted, 10_000);
    assert!(stats.window_slots <= 2 * stats.live + 64, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn the_expiry_queue_stays_bounded_when_short_lived_signals_are_evicted() {
    let sink = sink(10, 60);
    for _ in 0..10_000 {
        sink.raise_with(
            Signal::build("short")
                .unwrap()
                .expires_in(Duration::from_secs(30)),
        )
        .unwrap();
    }
    let stats = sink.stats();
    assert_eq!(stats.live, 10);
    assert!(stats.expiry_entries <= 2 * 10 + 64, "{stats:?}");
    advance(Duration::from_secs(30)).await;
    assert_eq!(sink.count("short"), 0);
}

#[tokio::test(start_paused = true)]
async fn one_off_names_are_reclaimed_and_the_memo_stays_bounded() {
    let sink = SignalSink::new(
        SinkOptions::default()
            .capacity(1000)
            .max_age(Duration::from_secs(1))
            .max_idle_names(256)
            .max_patterns(64),
    )
    .unwrap();
    for i in 0..100_000u32 {
        sink.raise(&format!("one.off.{i}")).unwrap();
        if i % 1000 == 0 {
            advance(Duration::from_secs(1)).await;
            let _ = sink.count(&format!("one.off.{i}*"));
        }
    }
    advance(Duration::from_secs(1)).await;
    let stats = sink.stats();
    assert_eq!(stats.live, 0);
    assert!(
        stats.interned_names <= 256,
        "interner holds {} names",
        stats.interned_names
    );
    assert!(stats.names_reclaimed >= 99_000, "{stats:?}");
    assert!(
        stats.memo_entries <= 64,
        "memo holds {}",
        stats.memo_entries
    );

    for i in 0..1000 {
        let _ = sink.has_signal(&format!("pattern.{i}.*"));
    }
    assert!(sink.stats().memo_entries <= 64);
    assert!(sink.stats().memo_resets > 0);
}

#[tokio::test(start_paused = true)]
async fn capacity_and_age_change_at_run_time() {
    let sink = sink(100, 60);
    for i in 0..50 {
        sink.raise(&format!("x.{i}")).unwrap();
    }
    sink.set_capacity(5).unwrap();
    assert_eq!(sink.count("x.*"), 5);
    assert_eq!(sink.latest("x.*").unwrap().name(), "x.49");
    advance(Duration::from_secs(10)).await;
    sink.set_max_age(Duration::from_secs(5)).unwrap();
    assert_eq!(sink.count("x.*"), 0);
    assert_eq!(
        sink.set_capacity(0),
        Err(SinkConfigError::Zero { option: "capacity" })
    );
    assert_eq!(
        sink.set_max_age(Duration::ZERO),
        Err(SinkConfigError::ZeroAge)
    );
}

/// Expired signals leave the window only when something touches the sink; a longer max age
/// must not bring back what had already expired, whether or not anything looked meanwhile.
#[tokio::test(start_paused = true)]
async fn a_longer_max_age_keeps_expired_signals_expired_and_lengthens_live_ones() {
    let quiet = sink(100, 1);
    let asked = sink(100, 1);
    for s in [&quiet, &asked] {
        s.raise("old").unwrap();
    }
    advance(Duration::from_millis(600)).await;
    for s in [&quiet, &asked] {
        s.raise("young").unwrap();
    }
    // `old` reaches the age of 1 s; only `asked` is looked at.
    advance(Duration::from_millis(900)).await;
    assert!(!asked.has_signal("old"));
    for s in [&quiet, &asked] {
        s.set_max_age(Duration::from_secs(10)).unwrap();
        assert!(!s.has_signal("old"), "expired before the change");
        assert_eq!(s.count("*"), 1);
    }
    // `young` (0.9 s old at the change) follows the new age: live at 9.9 s, gone at 10 s.
    advance(Duration::from_millis(9000)).await;
    for s in [&quiet, &asked] {
        assert!(s.has_signal("young"));
    }
    advance(Duration::from_millis(100)).await;
    for s in [&quiet, &asked] {
        assert!(!s.has_signal("young"));
        assert_eq!(s.stats().expired, 2);
    }
}

#[test]
fn bad_configuration_and_input_are_typed_errors() {
    assert_eq!(
        SignalSink::new(SinkOptions::default().capacity(0)).err(),
        Some(SinkConfigError::Zero { option: "capacity" })
    );
    assert_eq!(
        SignalSink::new(SinkOptions::default().max_age(Duration::ZERO)).err(),
        Some(SinkConfigError::ZeroAge)
    );
    assert!(matches!(
        SignalSink::new(SinkOptions::default().max_age(Duration::MAX)),
        Err(SinkConfigError::AgeTooLong { .. })
    ));
    let sink = SignalSink::new(SinkOptions::default().max_payload(4).max_headers(1)).unwrap();
    assert_eq!(
        sink.raise("error.*").unwrap_err(),
        RaiseError::Name(NameError::Wildcard { ch: '*', at: 6 })
    );
    assert!(matches!(
        sink.raise(""),
        Err(RaiseError::Name(NameError::Empty))
    ));
    let big = Signal::build("a").unwrap().payload(vec![0u8; 5]);
    assert_eq!(
        sink.raise_with(big).unwrap_err(),
        RaiseError::PayloadTooLarge { len: 5, max: 4 }
    );
    let headers = Signal::build("a").unwrap().header("x", 1).header("y", 2);
    let err = sink.raise_with(headers).unwrap_err();
    assert_eq!(err, RaiseError::TooManyHeaders { count: 2, max: 1 });
    // The message says what to do, as every error's does.
    assert!(err.to_string().contains("raise the limit"), "{err}");
    // Works outside any runtime.
    sink.raise("outside.runtime").unwrap();
    assert!(sink.has_signal("outside.*"));
}

/// Header keys are checked at the raise: an empty one, or one past 255 bytes (the bus
/// carries no longer key), is a typed error naming the key, cut for the message. Both used
/// to be raised (a 100,000-byte key too), and the longer one then failed to cross the bus.
#[test]
fn an_empty_or_overlong_header_key_is_refused_by_name() {
    let sink = SignalSink::default();
    let empty = Signal::build("a").unwrap().header("", 1);
    match sink.raise_with(empty).unwrap_err() {
        RaiseError::BadHeaderKey { key, reason } => {
            assert_eq!((key.as_str(), reason.as_str()), ("", "empty"))
        }
        other => panic!("{other:?}"),
    }
    let long = "k".repeat(100_000);
    let err = sink
        .raise_with(Signal::build("a").unwrap().header(&long, 1))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("100000 bytes long") && text.contains("at most 255"),
        "{text}"
    );
    assert!(text.len() < 300, "the key is cut in the message: {text}");
    let longest = "k".repeat(ephemeral::MAX_HEADER_KEY_LEN);
    sink.raise_with(Signal::build("a").unwrap().header(&longest, 1))
        .expect("255 bytes is allowed");
    assert_eq!(sink.count("a"), 1);
}

#[test]
fn two_threads_raising_and_two_querying_leave_stats_that_add_up() {
    let sink = SignalSink::new(SinkOptions::default().capacity(500)).unwrap();
    let _sub = sink.subscribe("t0.*");
    let mut threads = Vec::new();
    for t in 0..2 {
        let sink = sink.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..5000 {
                sink.raise(&format!("t{t}.n{}", i % 50)).unwrap();
                if i % 7 == 0 {
                    sink.retract(&format!("t{t}.n{}", i % 50));
                }
            }
        }));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..2 {
        let sink = sink.clone();
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut iterations = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || iterations < 1000 {
                assert!(sink.count("t*") <= 500);
                let _ = sink.has_signal("t1.*");
                let _ = sink.latest("t0.n1?");
                iterations += 1;
            }
        }));
    }
    for t in threads.drain(..2) {
        t.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let s = sink.stats();
    assert_eq!(s.raised, 10_000);
    assert_eq!(
        s.raised,
        s.live as u64 + s.expired + s.evicted + s.retracted + s.cleared,
        "{s:?}"
    );
    assert!(s.live <= 500);
    assert_eq!(s.live, sink.count("*"));
}

/// A zero time to live is refused: such a signal was never live, yet it took a place in the
/// window and evicted a live signal from a full one (capacity 2: `a`, `b`, then `c` with
/// `expires_in(0)` evicted `a`, and `c` was never seen). A forwarded copy whose life ran out
/// on the way is not forwarded.
#[tokio::test(start_paused = true)]
async fn a_zero_time_to_live_is_refused_and_evicts_nothing() {
    let sink = SignalSink::new(SinkOptions::default().capacity(2)).unwrap();
    sink.raise("a").unwrap();
    sink.raise("b").unwrap();
    let refused = sink.raise_with(Signal::build("c").unwrap().expires_in(Duration::ZERO));
    assert!(
        matches!(refused, Err(RaiseError::ZeroTimeToLive)),
        "{refused:?}"
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("positive time to live")
    );
    assert_eq!(sink.count("*"), 2, "a and b are still live");
    assert_eq!(sink.stats().evicted, 0);
    // The smallest positive time to live is taken, and lives until it runs out.
    sink.raise_with(
        Signal::build("d")
            .unwrap()
            .expires_in(Duration::from_nanos(1)),
    )
    .unwrap();
}

/// A capacity of `usize::MAX` (no practical bound) is accepted, and a signal with a time to
/// live raised on such a sink is live until it runs out. It panicked with an arithmetic
/// overflow (`2 * capacity + 64`, the bound of the expiry queue) under the sink's lock.
#[tokio::test(start_paused = true)]
async fn the_largest_capacity_takes_signals_with_a_time_to_live() {
    let sink = SignalSink::new(SinkOptions::default().capacity(usize::MAX)).unwrap();
    sink.raise_with(
        Signal::build("short")
            .unwrap()
            .expires_in(Duration::from_secs(1)),
    )
    .unwrap();
    assert!(sink.has_signal("short"));
    advance(Duration::from_secs(1)).await;
    assert!(!sink.has_signal("short"));

    let resized = SignalSink::default();
    resized.set_capacity(usize::MAX).unwrap();
    resized
        .raise_with(
            Signal::build("short")
                .unwrap()
                .expires_in(Duration::from_secs(1)),
        )
        .unwrap();
    assert_eq!(resized.count("short"), 1);
}

/// A signal matching several alternatives of a pattern is one signal: counted, sensed and
/// reported once. `+` matches one whole segment, `*` any run including dots.
#[tokio::test(start_paused = true)]
async fn a_signal_matching_several_alternatives_counts_once() {
    let sink = SignalSink::default();
    let db = sink.raise("error.db").unwrap();
    sink.raise("news.sports").unwrap();
    sink.raise("news.sports.eu").unwrap();
    assert_eq!(sink.count("error.*,error.db,*.db"), 1);
    assert_eq!(sink.count("error.db,error.db"), 1);
    let sensed: Vec<u64> = sink
        .sense("error.*,*.db")
        .iter()
        .map(Signal::sequence)
        .collect();
    assert_eq!(sensed, [db.sequence()]);
    assert_eq!(sink.count("news.+"), 1);
    assert_eq!(sink.count("news.+,news.*"), 2);
    assert_eq!(sink.count("news.+.+"), 1);
    assert_eq!(sink.count("*"), 3);
}

/// "Latest" and the order of `sense` are by sequence number across raised signals and
/// holds, all in one tick of the paused clock; removing the newest exposes the one before.
#[tokio::test(start_paused = true)]
async fn latest_and_sense_follow_the_sequence_across_events_and_holds() {
    let sink = SignalSink::default();
    sink.raise("a.x").unwrap();
    let held = sink.hold("a.h").unwrap();
    sink.raise("a.y").unwrap();
    let names = |signals: Vec<Signal>| -> Vec<String> {
        signals.iter().map(|s| s.name().to_string()).collect()
    };
    assert_eq!(names(sink.sense("a.*")), ["a.x", "a.h", "a.y"]);
    assert_eq!(sink.latest("a.*").unwrap().name(), "a.y");
    assert_eq!(sink.retract("a.y"), 1);
    assert_eq!(sink.latest("a.*").unwrap().name(), "a.h");
    drop(held);
    assert_eq!(sink.latest("a.*").unwrap().name(), "a.x");
}

/// An expired signal is gone from every answer, not only from pattern queries: the
/// window's length, the live count in the stats, and the signals of its operation.
#[tokio::test(start_paused = true)]
async fn an_expired_signal_is_gone_from_len_stats_and_its_operation() {
    let sink = sink(100, 2);
    let op = OperationId::from_raw(3);
    sink.raise_with(
        Signal::build("short")
            .unwrap()
            .operation(op)
            .expires_in(Duration::from_secs(1)),
    )
    .unwrap();
    sink.raise_with(Signal::build("long").unwrap().operation(op))
        .unwrap();
    assert_eq!(sink.len(), 2);
    advance(Duration::from_secs(1)).await;
    assert_eq!(sink.len(), 1);
    assert_eq!(sink.stats().live, 1);
    let names: Vec<String> = sink
        .signals_of(op)
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    assert_eq!(names, ["long"]);
    advance(Duration::from_secs(1)).await;
    assert!(sink.is_empty());
    assert_eq!(sink.stats().live, 0);
    assert!(sink.signals_of(op).is_empty());
}
