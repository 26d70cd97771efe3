//! Subscriptions, listeners, handlers, forwarding and propagation guards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{
    Buffer, HandlerFailure, Lagged, PropagationError, RaiseError, Signal, SignalSink, SinkOptions,
};
use futures::StreamExt;

#[tokio::test(start_paused = true)]
async fn a_full_subscription_reports_lag_then_the_newest() {
    let sink = SignalSink::new(SinkOptions::default().capacity(1000)).unwrap();
    let mut sub = sink.subscribe_with("tick", Buffer::bounded(4).unwrap());
    let mut last = Vec::new();
    for _ in 0..100 {
        last.push(sink.raise("tick").unwrap().sequence());
    }
    assert!(matches!(sub.recv().await, Some(Err(Lagged(96)))));
    let mut got = Vec::new();
    while let Some(item) = sub.try_recv() {
        got.push(item.unwrap().sequence());
    }
    assert_eq!(got, last[96..].to_vec());
    assert_eq!(sub.dropped(), 96);
    assert_eq!(sink.stats().subscribers[0].dropped, 96);
}

#[tokio::test(start_paused = true)]
async fn the_sinks_subscriber_drop_total_keeps_what_closed_subscriptions_dropped() {
    let sink = SignalSink::default();
    let first = sink.subscribe_with("tick", Buffer::bounded(1).unwrap());
    let second = sink.subscribe_with("tick", Buffer::bounded(4).unwrap());
    for _ in 0..10 {
        sink.raise("tick").unwrap();
    }
    let stats = sink.stats();
    assert_eq!((first.dropped(), second.dropped()), (9, 6));
    assert_eq!(stats.subscriber_dropped, 15);
    drop(first);
    let stats = sink.stats();
    assert_eq!(stats.subscribers.len(), 1);
    assert_eq!(stats.subscriber_dropped, 15);
    sink.raise("tick").unwrap();
    drop(second);
    let stats = sink.stats();
    assert!(stats.subscribers.is_empty());
    assert_eq!(stats.subscriber_dropped, 16);
}

#[tokio::test(start_paused = true)]
async fn subscriptions_receive_in_order_and_end_with_the_sink() {
    let sink = SignalSink::default();
    let mut sub = sink.subscribe("a.*,b");
    sink.raise("a.1").unwrap();
    sink.raise("c").unwrap();
    sink.raise("b").unwrap();
    let hold = sink.hold("a.held").unwrap();
    // A hold guard keeps the sink alive too; the stream ends when the last handle goes.
    drop(sink);
    assert!(!sub.is_closed());
    assert!(matches!(sub.next().await, Some(Ok(s)) if s.name() == "a.1"));
    drop(hold);
    // Ended, with what it holds still to read: `is_closed` tells that from "empty".
    assert!(sub.is_closed());
    let names: Vec<String> = sub
        .by_ref()
        .map(|item| item.unwrap().name().to_string())
        .collect()
        .await;
    assert_eq!(names, ["b", "a.held"]);
    assert!(sub.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_subscription_unsubscribes() {
    let sink = SignalSink::default();
    let sub = sink.subscribe("*");
    assert_eq!(sink.stats().subscriptions, 1);
    drop(sub);
    assert_eq!(sink.stats().subscriptions, 0);
    sink.raise("after").unwrap();
}

#[test]
fn a_listener_may_raise_again_from_its_callback() {
    let sink = SignalSink::default();
    let inner = sink.clone();
    let _echo = sink.on_signal("ping", move |signal| {
        inner
            .raise_caused(Signal::build("pong").unwrap(), signal)
            .unwrap();
        assert!(inner.has_signal("pong"));
    });
    sink.raise("ping").unwrap();
    let pong = sink.latest("pong").unwrap();
    assert_eq!(pong.causes().len(), 1);
    assert_eq!(pong.causes()[0], "ping");
}

#[test]
fn a_panicking_listener_reaches_the_error_callback_and_others_keep_receiving() {
    let failures: Arc<Mutex<Vec<HandlerFailure>>> = Arc::default();
    let seen = failures.clone();
    let sink = SignalSink::new(
        SinkOptions::default().on_error(move |f| seen.lock().unwrap().push(f.clone())),
    )
    .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let _bad = sink.on_signal("job.*", |_| panic!("listener exploded"));
    let _good = sink.on_signal("job.*", move |_| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    for _ in 0..3 {
        sink.raise("job.done").unwrap();
    }
    assert_eq!(count.load(Ordering::Relaxed), 3);
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 3);
    assert!(failures[0].panicked);
    assert_eq!(failures[0].message, "listener exploded");
    assert_eq!(failures[0].signal, "job.done");
    assert_eq!(sink.stats().handler_failures, 3);
}

#[tokio::test]
async fn a_panicking_async_handler_is_reported_and_the_others_keep_receiving() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<HandlerFailure>();
    let sink = SignalSink::new(SinkOptions::default().on_error(move |f| {
        let _ = tx.send(f.clone());
    }))
    .unwrap();
    let _bad = sink
        .on_signal_async(
            "job.*",
            Buffer::bounded(16).unwrap(),
            2,
            |s: Signal| async move {
                if s.name() == "job.boom" {
                    panic!("handler exploded");
                }
                Err::<(), String>(format!("failed on {}", s.name()))
            },
        )
        .unwrap();
    let (ok_tx, mut ok_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let _good = sink
        .on_signal_async(
            "job.*",
            Buffer::bounded(16).unwrap(),
            1,
            move |s: Signal| {
                let ok_tx = ok_tx.clone();
                async move {
                    ok_tx.send(s.name().to_string()).unwrap();
                    Ok::<(), String>(())
                }
            },
        )
        .unwrap();
    sink.raise("job.boom").unwrap();
    sink.raise("job.fail").unwrap();
    let mut reports = [rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    reports.sort_by(|a, b| a.signal.cmp(&b.signal));
    assert!(reports[0].panicked && reports[0].message == "handler exploded");
    assert!(!reports[1].panicked && reports[1].message == "failed on job.fail");
    assert_eq!(ok_rx.recv().await.unwrap(), "job.boom");
    assert_eq!(ok_rx.recv().await.unwrap(), "job.fail");
}

/// A detached handler goes on handling after its guard is gone, and its task ends with the
/// sink (nothing left running).
#[tokio::test]
async fn a_detached_handler_runs_until_the_sink_goes() {
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = alive();
    let sink = SignalSink::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    sink.on_signal_async("job.*", Buffer::default(), 1, move |s: Signal| {
        let tx = tx.clone();
        async move { tx.send(s.name().to_string()).map_err(|e| e.to_string()) }
    })
    .unwrap()
    .detach();
    sink.raise("job.one").unwrap();
    assert_eq!(rx.recv().await.as_deref(), Some("job.one"));
    assert_eq!(alive(), before + 1);
    drop(sink);
    // The handler's task ends with the sink, dropping its sender.
    assert_eq!(rx.recv().await, None);
    for _ in 0..10 {
        if alive() == before {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(alive(), before);
}

/// Where an async handler shows in the stats, as `SinkStats` documents it: its queue is a
/// subscription (so it counts in `subscriptions`, not `listeners`, which used to say
/// "listeners and handlers"), and what that queue drops is in both `handler_dropped` and
/// `subscriber_dropped`.
#[tokio::test(start_paused = true)]
async fn an_async_handler_counts_as_a_subscription_in_the_stats() {
    let sink = SignalSink::default();
    let _listener = sink.on_signal("a.*", |_| {});
    let _handler = sink
        .on_signal_async("a.*", Buffer::bounded(1).unwrap(), 1, |_s: Signal| async {
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
    let stats = sink.stats();
    assert_eq!((stats.listeners, stats.subscriptions), (1, 1));
    // Raised with no await in between: the queue of one keeps the last, drops four.
    for i in 0..5 {
        sink.raise(&format!("a.{i}")).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    let stats = sink.stats();
    assert_eq!((stats.handler_dropped, stats.subscriber_dropped), (4, 4));
    assert_eq!(stats.subscribers.len(), 1);
}

#[test]
fn async_handlers_need_a_runtime() {
    let sink = SignalSink::default();
    let err = sink
        .on_signal_async("*", Buffer::default(), 1, |_s: Signal| async {
            Ok::<(), String>(())
        })
        .unwrap_err();
    assert_eq!(err, ephemeral::HandlerError::NoRuntime);
}

#[test]
fn forwarding_pairs_and_rings_never_loop() {
    let a = SignalSink::default();
    let b = SignalSink::default();
    let c = SignalSink::default();
    let _ab = a.forward_to(&b, "*");
    let _ba = b.forward_to(&a, "*");
    a.raise("pair").unwrap();
    assert_eq!((a.count("pair"), b.count("pair")), (1, 1));

    let _bc = b.forward_to(&c, "*");
    let _ca = c.forward_to(&a, "*");
    c.raise("ring").unwrap();
    assert_eq!(
        (a.count("ring"), b.count("ring"), c.count("ring")),
        (1, 1, 1)
    );
    // Leaf signals stay where they are raised.
    a.raise_with(Signal::build("local").unwrap().leaf())
        .unwrap();
    assert_eq!((a.count("local"), b.count("local")), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn forwarding_keeps_the_remaining_time_to_live() {
    let a = SignalSink::default();
    let b = SignalSink::default();
    let _ab = a.forward_to(&b, "error.*");
    a.raise_with(
        Signal::build("error.x")
            .unwrap()
            .expires_in(Duration::from_secs(3)),
    )
    .unwrap();
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(!b.has_signal("error.x"));
}

#[test]
fn forwarding_a_sink_into_itself_does_nothing() {
    let a = SignalSink::default();
    let _aa = a.forward_to(&a, "*");
    let _aa2 = a.forward_to(&a.clone(), "*");
    a.raise("x").unwrap();
    assert_eq!(a.count("x"), 1);
    assert_eq!(a.stats().raised, 1);
}

/// A copy of a signal without its own expiry lives only as long as the source's max age
/// allowed, not the target's full max age.
#[tokio::test(start_paused = true)]
async fn forwarding_keeps_what_the_source_max_age_leaves() {
    let a = SignalSink::new(SinkOptions::default().max_age(Duration::from_secs(1))).unwrap();
    let b = SignalSink::new(SinkOptions::default().max_age(Duration::from_secs(60))).unwrap();
    let _ab = a.forward_to(&b, "*");
    a.raise("x").unwrap();
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(b.has_signal("x"));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!a.has_signal("x"));
    assert!(!b.has_signal("x"), "the copy outlived the original");

    // A source age longer than the target's: the target's max age still rules.
    let long = SignalSink::new(SinkOptions::default().max_age(Duration::from_secs(60))).unwrap();
    let short = SignalSink::new(SinkOptions::default().max_age(Duration::from_secs(2))).unwrap();
    let _ls = long.forward_to(&short, "*");
    long.raise("y").unwrap();
    assert_eq!(short.latest("y").and_then(|s| s.expires_at()), None);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(long.has_signal("y") && !short.has_signal("y"));
}

#[tokio::test(start_paused = true)]
async fn a_refused_forward_is_counted_and_reported_on_the_source() {
    let failures = Arc::new(Mutex::new(Vec::<HandlerFailure>::new()));
    let seen = failures.clone();
    let a = SignalSink::new(
        SinkOptions::default().on_error(move |f| seen.lock().unwrap().push(f.clone())),
    )
    .unwrap();
    let small = SignalSink::new(SinkOptions::default().max_payload(1)).unwrap();
    let _f = a.forward_to(&small, "p.*");
    a.raise_with(Signal::build("p.big").unwrap().payload_str("hello"))
        .unwrap();
    assert!(a.has_signal("p.big"));
    assert!(!small.has_signal("p.big"));
    let stats = a.stats();
    assert_eq!(stats.forward_refused, 1);
    assert_eq!(stats.handler_failures, 1);
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].pattern, "p.*");
    assert_eq!(failures[0].signal, "p.big");
    assert!(!failures[0].panicked);
    assert!(
        failures[0].message.contains("refused"),
        "{}",
        failures[0].message
    );
}

#[test]
fn propagation_guards_refuse_loops() {
    let sink = SignalSink::default();
    let mut cause = sink.raise("step.1").unwrap();
    assert_eq!(cause.depth(), 1);
    for depth in 2..=10 {
        cause = sink
            .raise_caused(Signal::build(&format!("step.{depth}")).unwrap(), &cause)
            .unwrap();
    }
    assert_eq!(cause.depth(), 10);
    let err = sink
        .raise_caused(Signal::build("step.11").unwrap(), &cause)
        .unwrap_err();
    assert!(matches!(
        err,
        RaiseError::Propagation(PropagationError::TooDeep {
            depth: 11,
            max: 10,
            ..
        })
    ));
    let err = sink
        .raise_caused(Signal::build("step.3").unwrap(), &cause)
        .unwrap_err();
    assert!(matches!(
        err,
        RaiseError::Propagation(PropagationError::Cycle { .. })
    ));

    let terminal = sink
        .raise_with(Signal::build("done").unwrap().terminal())
        .unwrap();
    assert!(matches!(
        sink.raise_caused(Signal::build("after").unwrap(), &terminal),
        Err(RaiseError::Propagation(
            PropagationError::AfterTerminal { .. }
        ))
    ));
    let leaf = sink
        .raise_with(Signal::build("leaf").unwrap().leaf())
        .unwrap();
    assert!(matches!(
        sink.raise_caused(Signal::build("after").unwrap(), &leaf),
        Err(RaiseError::Propagation(PropagationError::FromLeaf { .. }))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_subscription_never_delivers_a_signal_whose_time_ran_out() {
    let sink = SignalSink::default();
    let mut sub = sink.subscribe("job.*");
    sink.raise_with(
        Signal::build("job.short")
            .unwrap()
            .expires_in(Duration::from_millis(50)),
    )
    .unwrap();
    sink.raise("job.long").unwrap();
    // The reader comes back 70 ms later: 20 ms after the first signal's time ran out.
    tokio::time::advance(Duration::from_millis(70)).await;
    let first = sub.recv().await.unwrap().unwrap();
    assert_eq!(first.name(), "job.long");
    assert!(sub.try_recv().is_none());
    assert_eq!((sub.expired(), sub.dropped()), (1, 0));
    let stats = &sink.stats().subscribers[0];
    assert_eq!(
        (
            stats.delivered,
            stats.dropped,
            stats.expired,
            stats.buffered
        ),
        (2, 0, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_time_to_live_is_capped_at_the_max_age_and_no_signal_is_delivered_past_it() {
    let sink = SignalSink::new(SinkOptions::default().max_age(Duration::from_secs(1))).unwrap();
    let mut sub = sink.subscribe("*");
    sink.raise_with(
        Signal::build("event.ttl")
            .unwrap()
            .expires_in(Duration::from_secs(5)),
    )
    .unwrap();
    sink.raise("event.plain").unwrap();
    let _hold = sink.hold("condition").unwrap();
    tokio::time::advance(Duration::from_nanos(1)).await;
    sink.raise("event.young").unwrap();
    tokio::time::advance(Duration::from_secs(1) - Duration::from_nanos(1)).await;
    // The 5 s time to live was capped at the 1 s max age, and a plain event lives for the
    // max age too: both reached it while they waited (live while younger than it). The one
    // raised a nanosecond later is still live; the hold never expires.
    let names: Vec<String> = std::iter::from_fn(|| sub.try_recv())
        .map(|item| item.unwrap().name().to_string())
        .collect();
    assert_eq!(names, ["condition", "event.young"]);
    assert_eq!(sub.expired(), 2);
}

#[tokio::test(start_paused = true)]
async fn expiry_and_lag_are_counted_apart() {
    let sink = SignalSink::default();
    let mut sub = sink.subscribe_with("tick", Buffer::bounded(2).unwrap());
    for _ in 0..3 {
        sink.raise_with(
            Signal::build("tick")
                .unwrap()
                .expires_in(Duration::from_millis(10)),
        )
        .unwrap();
    }
    tokio::time::advance(Duration::from_millis(10)).await;
    let live = sink.raise("tick").unwrap();
    // The third found the buffer full and dropped the first (lag); the fourth found the other
    // two expired (expiry) and took their room.
    assert!(matches!(sub.recv().await, Some(Err(Lagged(1)))));
    assert_eq!(
        sub.recv().await.unwrap().unwrap().sequence(),
        live.sequence()
    );
    let stats = &sink.stats().subscribers[0];
    assert_eq!(
        (
            stats.delivered,
            stats.dropped,
            stats.expired,
            stats.buffered
        ),
        (4, 1, 2, 0)
    );
}

/// Dropping a listener drops what its callback captured at once, outside the sink's lock. A
/// captured `Hold` of the same sink used to stay alive in the route cached on the name, and
/// be dropped under the sink's lock when that route was recomputed at the next raise: the
/// hold's release took the lock again and the raise deadlocked.
#[test]
fn a_dropped_listener_releases_what_it_captured_without_deadlock() {
    let sink = SignalSink::default();
    // Keeps the registry non-empty, so the next raise of `a` recomputes its route.
    let _other = sink.watch("other");
    let hold = sink.hold("cond").unwrap();
    let listener = sink.on_signal("a", move |_| {
        let _ = &hold;
    });
    sink.raise("a").unwrap();
    drop(listener);
    assert!(
        sink.holds("cond").is_empty(),
        "the captured hold is released"
    );
    sink.raise("a").unwrap();
    assert_eq!(sink.count("a"), 2);
}

/// A listener that reacts with a plain `raise` of what it hears used to recurse until the
/// stack overflowed (aborting the process): the propagation guards only applied to
/// `raise_caused`. Listeners nested `max_depth` deep on one thread are now not called, and
/// each skipped call is reported; the signals themselves are raised.
#[test]
fn a_listener_that_raises_what_it_hears_stops_at_max_depth() {
    let failures = Arc::new(Mutex::new(Vec::<HandlerFailure>::new()));
    let seen = failures.clone();
    let sink = SignalSink::new(
        SinkOptions::default()
            .max_depth(3)
            .on_error(move |f| seen.lock().unwrap().push(f.clone())),
    )
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let again = sink.clone();
    let _echo = sink.on_signal("loop", move |_| {
        // Bounded here so that the old code ends too (at 1000 calls instead of 3).
        if counter.fetch_add(1, Ordering::Relaxed) < 1000 {
            let _ = again.raise("loop");
        }
    });
    sink.raise("loop").unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(sink.count("loop"), 4);
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 1);
    assert!(!failures[0].panicked);
    assert!(
        failures[0].message.contains("nested 3 deep"),
        "{}",
        failures[0].message
    );
    assert_eq!(sink.stats().handler_failures, 1);
    drop(failures);
    // The depth is back to zero afterwards: the next raise runs the same chain again.
    sink.raise("loop").unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 6);
}

/// `Lagged(n)` counts the drops since the previous report only, round after round, and
/// delivery resumes each time with the oldest item still buffered; an unbounded
/// subscription never lags.
#[tokio::test(start_paused = true)]
async fn lag_is_reported_since_the_last_report_round_after_round() {
    let sink = SignalSink::default();
    let mut sub = sink.subscribe_with("a.*", Buffer::bounded(2).unwrap());
    let mut all = sink.subscribe_with("a.*", Buffer::Unbounded);
    let raise = |from: u32, to: u32| {
        for i in from..to {
            sink.raise(&format!("a.{i}")).unwrap();
        }
    };
    let name = |item: Option<Result<Signal, Lagged>>| item.unwrap().unwrap().name().to_string();

    raise(0, 5); // a.0 .. a.2 dropped
    assert!(matches!(sub.try_recv(), Some(Err(Lagged(3)))));
    assert_eq!(name(sub.try_recv()), "a.3");
    raise(5, 6); // room for it: nothing dropped
    assert_eq!(name(sub.try_recv()), "a.4");
    assert_eq!(name(sub.try_recv()), "a.5");
    assert!(sub.try_recv().is_none());
    raise(6, 10); // a.6 and a.7 dropped
    assert!(matches!(sub.try_recv(), Some(Err(Lagged(2)))));
    assert_eq!(name(sub.try_recv()), "a.8");
    assert_eq!(name(sub.try_recv()), "a.9");
    assert!(sub.try_recv().is_none());
    assert_eq!(sub.dropped(), 5);

    let names: Vec<String> = std::iter::from_fn(|| all.try_recv())
        .map(|item| item.unwrap().name().to_string())
        .collect();
    assert_eq!(names, (0..10).map(|i| format!("a.{i}")).collect::<Vec<_>>());
    assert_eq!(all.dropped(), 0);
}
