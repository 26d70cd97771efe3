//! Publishing coordinator and sink state on a bus, and watching it.
//!
//! Timing behaviour runs on tokio's paused clock: the bus carries the frames between two
//! handles of one process, in memory, so only the publisher's own timer is involved.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use ephemeral::{
    EphemeralKeyedWorkCoordinator, EphemeralOptions, EphemeralResultCoordinator,
    EphemeralWorkCoordinator, OperationContext, PriorityWorkCoordinator, SignalSink,
};
use ephemeral_bus::Bus;
use ephemeral_bus::inspect::{
    InspectError, PublishOptions, PublishState, State, StateFrame, StateWatcher,
};
use support::open;
use tokio::sync::Semaphore;

const LONG: Duration = Duration::from_secs(10);

/// The next frame, within `LONG`.
async fn next(watcher: &mut StateWatcher<Bus>) -> StateFrame {
    tokio::time::timeout(LONG, watcher.next())
        .await
        .expect("a frame within the bound")
        .expect("watcher open")
        .expect("a readable frame")
}

/// Lets spawned tasks run without moving the paused clock.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn noop_work() -> EphemeralWorkCoordinator<u32> {
    EphemeralWorkCoordinator::new(
        |_: u32, _: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default(),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn nothing_is_sampled_or_sent_until_a_watcher_polls() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = open(tmp.path(), "t").await;
    let coordinator = noop_work();
    let publisher = coordinator.publish_state(&bus, "orders").await.unwrap();
    let mut watcher = StateWatcher::new(&bus).await.unwrap();

    // A listening watcher that does not poll gets nothing, however long it waits.
    let quiet = tokio::time::timeout(Duration::from_secs(60), watcher.next()).await;
    assert!(quiet.is_err(), "a frame came without a poll: {quiet:?}");
    assert_eq!(
        (publisher.polls_received(), publisher.frames_sent()),
        (0, 0)
    );

    assert_eq!(
        watcher.poll().await.unwrap(),
        Some(1),
        "one publisher listens"
    );
    let frame = next(&mut watcher).await;
    assert_eq!(frame.publisher.name, "orders");
    assert_eq!(frame.publisher.id, publisher.id());
    assert_eq!(frame.publisher.process.pid, std::process::id());
    assert_eq!(frame.interval_ms, 250);
    assert_eq!(frame.sequence, 0);
    assert_eq!(frame.coordinator().unwrap().coordinator_type, "work");
    assert_eq!(publisher.frames_sent(), 1);
}

#[tokio::test(start_paused = true)]
async fn polls_faster_than_the_interval_get_one_frame_per_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = open(tmp.path(), "t").await;
    let coordinator = noop_work();
    let publisher = coordinator
        .publish_state_with(
            &bus,
            "orders",
            PublishOptions::default().interval(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    let watcher = StateWatcher::new(&bus).await.unwrap();

    // Three watchers' worth of polls every 10 ms for one second.
    let start = tokio::time::Instant::now();
    for _ in 0..100 {
        for _ in 0..3 {
            watcher.poll().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    settle().await;
    let elapsed = start.elapsed();
    let frames = publisher.frames_sent();
    let bound = elapsed.as_millis() as u64 / 100 + 1;
    assert!(
        frames <= bound && frames + 1 >= bound,
        "{frames} frames in {elapsed:?} at one per 100 ms"
    );
    assert!(publisher.polls_received() >= frames);

    // Once the polls stop, so do the frames.
    let before = publisher.frames_sent();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(publisher.frames_sent() <= before + 1);
}

#[tokio::test(start_paused = true)]
async fn a_coordinator_frame_holds_its_counts_latencies_operations_and_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = open(tmp.path(), "t").await;
    let sink = SignalSink::default();
    let gate = Arc::new(Semaphore::new(0));
    // Keys 0..=9 sleep (k+1) × 10 ms and complete; keys 10 and 11 fail; 20.. wait on the gate.
    let coordinator = {
        let gate = Arc::clone(&gate);
        EphemeralKeyedWorkCoordinator::new(
            move |k: u32, _ctx: OperationContext| {
                let gate = Arc::clone(&gate);
                async move {
                    if k >= 20 {
                        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                    } else if k >= 10 {
                        return Err(format!("card declined for {k}"));
                    } else {
                        tokio::time::sleep(Duration::from_millis(10 * (u64::from(k) + 1))).await;
                    }
                    Ok(())
                }
            },
            EphemeralOptions::default()
                .max_concurrency(3)
                .signals(sink.clone())
                .defer_on("backpressure.*"),
        )
        .unwrap()
    };
    let publisher = coordinator
        .publish_state_with(
            &bus,
            "payments",
            PublishOptions::default().deferred_by("backpressure.*"),
        )
        .await
        .unwrap();
    for k in 0..12 {
        coordinator.enqueue(k, k).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for k in 20..25 {
        coordinator.enqueue(k, k).await.unwrap();
    }
    settle().await;
    let _hold = sink.hold("backpressure.db").unwrap();

    let mut watcher = StateWatcher::new(&bus).await.unwrap();
    let frames = watcher.collect(LONG).await.unwrap();
    assert_eq!(frames.len(), 1);
    let state = frames[0].coordinator().unwrap();
    let stats = coordinator.stats();
    assert_eq!(state.coordinator_type, "keyed");
    assert_eq!(state.id, coordinator.id());
    assert_eq!(
        (
            state.counts.accepted,
            state.counts.completed,
            state.counts.failed,
            state.counts.running,
            state.counts.pending
        ),
        (17, 10, 2, 3, 2)
    );
    assert_eq!(state.counts.accepted, stats.accepted);
    assert_eq!(state.max_concurrency, 3);
    assert_eq!(state.deferred_by, ["backpressure.db"]);
    assert!(!state.done);

    // Run times: 0 ms twice (the failures), then 10, 20, … 100 ms.
    let latency = state.latency.unwrap();
    assert_eq!(latency.samples, 12);
    assert_eq!(latency.p50_us, 40_000);
    assert_eq!(latency.p99_us, 100_000);
    assert_eq!(latency.max_us, 100_000);

    // Running first, then pending, then finished, most recent first.
    let states: Vec<&str> = state.operations.iter().map(|o| o.state.as_str()).collect();
    assert_eq!(
        &states[..5],
        ["running", "running", "running", "pending", "pending"]
    );
    assert!(
        states[5..]
            .iter()
            .all(|s| *s == "completed" || *s == "failed")
    );
    assert_eq!(state.operations.len(), 17);
    assert_eq!(state.operations_omitted, 0);
    let pending_keys: Vec<&str> = state.operations[3..5]
        .iter()
        .map(|o| o.key.as_deref().unwrap())
        .collect();
    assert_eq!(pending_keys, ["23", "24"]);

    let errors: Vec<&str> = state
        .recent_failures
        .iter()
        .map(|o| o.error.as_deref().unwrap())
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(errors.contains(&"card declined for 10"));
    assert!(errors.contains(&"card declined for 11"));

    // Nothing finished during the interval the publisher measured before answering.
    assert_eq!(state.rates.window_ms, 250);
    assert_eq!(state.rates.completed_per_s, 0.0);

    // A smaller sample bound leaves the rest out, and says how many.
    drop(publisher);
    let _small = coordinator
        .publish_state_with(
            &bus,
            "payments",
            PublishOptions::default().max_operations(4),
        )
        .await
        .unwrap();
    let frames = watcher.collect(LONG).await.unwrap();
    let state = frames
        .iter()
        .find_map(StateFrame::coordinator)
        .expect("the new publisher answered");
    assert_eq!(state.operations.len(), 4);
    assert_eq!(state.operations_omitted, 13);
    gate.add_permits(5);
}

#[tokio::test(start_paused = true)]
async fn rates_cover_the_last_interval_not_the_time_since_the_last_watcher() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = open(tmp.path(), "t").await;
    // One worker, 10 ms per item: 100 completions per second while it has work.
    let coordinator = EphemeralWorkCoordinator::new(
        |_: u32, _: OperationContext| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, Infallible>(())
        },
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_pending(2000),
    )
    .unwrap();
    let _publisher = coordinator.publish_state(&bus, "steady").await.unwrap();
    for i in 0..1000 {
        coordinator.enqueue(i).await.unwrap();
    }
    let mut watcher = StateWatcher::new(&bus).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let frames = watcher.collect(LONG).await.unwrap();
    let rates = frames[0].coordinator().unwrap().rates;
    assert_eq!(rates.window_ms, 250);
    assert!(
        (90.0..=110.0).contains(&rates.completed_per_s),
        "{rates:?}: about 100 per second, not an average since the start"
    );
    assert_eq!(
        rates.accepted_per_s, 0.0,
        "everything was accepted before the window"
    );

    // Watched without a break, each frame's window is the time since the previous one.
    for _ in 0..3 {
        watcher.poll().await.unwrap();
        let frame = next(&mut watcher).await;
        let rates = frame.coordinator().unwrap().rates;
        assert_eq!(rates.window_ms, 250, "{rates:?}");
        assert!((90.0..=110.0).contains(&rates.completed_per_s), "{rates:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_sink_frame_lists_holds_first_then_the_newest_signals() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = open(tmp.path(), "t").await;
    let sink = SignalSink::default();
    let _publisher = sink.publish_state(&bus, "shop").await.unwrap();
    sink.raise_with(
        ephemeral::Signal::build("error.payment")
            .unwrap()
            .key("order-7")
            .payload_str("card declined"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _hold = sink.hold("circuit.open").unwrap();
    sink.raise("cache.flush").unwrap();

    let mut watcher = StateWatcher::new(&bus).await.unwrap();
    let frames = watcher.collect(LONG).await.unwrap();
    let state = frames[0].sink().unwrap();
    assert_eq!((state.live, state.held, state.raised), (2, 1, 2));
    assert_eq!(state.sink_id, sink.id());
    let names: Vec<&str> = state.signals.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["circuit.open", "cache.flush", "error.payment"]);
    assert!(state.signals[0].held && state.signals[0].ttl_ms.is_none());
    let payment = &state.signals[2];
    assert_eq!(payment.key.as_deref(), Some("order-7"));
    assert_eq!(payment.payload.as_deref(), Some("card declined"));
    // Sampled one interval (250 ms) after the poll: the window of `raised_per_s`.
    assert_eq!(payment.age_ms, 2250);
    let max_age = sink.max_age().as_millis() as u64;
    assert_eq!(payment.ttl_ms, Some(max_age - 2250));
    assert_eq!((state.window_ms, state.raised_per_s), (250, 0.0));
}

#[tokio::test(start_paused = true)]
async fn every_coordinator_type_publishes_and_a_dropped_publisher_says_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = open(tmp.path(), "t").await;
    let work = noop_work();
    let result = EphemeralResultCoordinator::new(
        |x: u32, _: OperationContext| async move { Ok::<_, Infallible>(x * 2) },
        EphemeralOptions::default(),
    )
    .unwrap();
    let priority = PriorityWorkCoordinator::new(
        |_: u32, _: OperationContext| async { Ok::<_, Infallible>(()) },
        vec![
            ephemeral::Lane::new("high", 2),
            ephemeral::Lane::new("low", 1),
        ],
        EphemeralOptions::default(),
    )
    .unwrap();
    let publishers = vec![
        work.publish_state(&bus, "a-work").await.unwrap(),
        result.publish_state(&bus, "b-result").await.unwrap(),
        priority.publish_state(&bus, "c-priority").await.unwrap(),
    ];
    priority.enqueue("low", 1).await.unwrap();
    priority.drain().await.unwrap();

    let mut watcher = StateWatcher::new(&bus).await.unwrap();
    let frames = watcher.collect(LONG).await.unwrap();
    let seen: Vec<(&str, &str)> = frames
        .iter()
        .map(|f| {
            (
                f.publisher.name.as_str(),
                f.coordinator().unwrap().coordinator_type.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a-work", "work"),
            ("b-result", "result"),
            ("c-priority", "priority")
        ]
    );
    let c = frames[2].coordinator().unwrap();
    assert!(c.done);
    assert_eq!(c.operations[0].key.as_deref(), Some("low"));

    let mut publishers = publishers.into_iter();
    let first = publishers.next().unwrap();
    let id = first.id().to_owned();
    first.stop().await;
    let frame = next(&mut watcher).await;
    assert_eq!(
        (frame.publisher.id.as_str(), &frame.state),
        (id.as_str(), &State::Stopped)
    );
    assert_eq!(
        watcher.poll().await.unwrap(),
        Some(2),
        "the stopped one no longer listens"
    );
}

/// A frame larger than the bus carries (`BusOptions::max_payload`) has its samples cut
/// until it fits. It used to be refused by the bus and counted only in `send_errors`: the
/// publisher vanished from every view (probe: 20,000 pending operations with
/// `max_operations(20000)` on the default 1 MiB bus; `top --once` waited its whole `--wait`
/// and showed the other publishers only).
#[tokio::test(start_paused = true)]
async fn a_frame_too_large_for_the_bus_is_cut_to_fit_not_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let max = 8 * 1024;
    let bus = Bus::open_with("t", support::options(tmp.path()).max_payload(max))
        .await
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let coordinator = {
        let gate = Arc::clone(&gate);
        EphemeralWorkCoordinator::new(
            move |_: u32, _: OperationContext| {
                let gate = Arc::clone(&gate);
                async move { gate.acquire().await.map(drop) }
            },
            EphemeralOptions::default().max_concurrency(1),
        )
        .unwrap()
    };
    for n in 0..200 {
        coordinator.enqueue(n).await.unwrap();
    }
    let sink = SignalSink::default();
    for n in 0..200 {
        sink.raise_with(
            ephemeral::Signal::build(&format!("error.{n}"))
                .unwrap()
                .payload_str(&"x".repeat(100)),
        )
        .unwrap();
    }
    let wide = PublishOptions::default()
        .max_operations(1000)
        .max_signals(1000);
    let publishers = [
        coordinator
            .publish_state_with(&bus, "orders", wide.clone())
            .await
            .unwrap(),
        sink.publish_state_with(&bus, "signals", wide)
            .await
            .unwrap(),
    ];
    let mut watcher = StateWatcher::new(&bus).await.unwrap();
    let frames = watcher.collect(LONG).await.unwrap();
    assert_eq!(frames.len(), 2, "both publishers answered");
    for frame in &frames {
        assert!(frame.encode().len() <= max, "{} fits", frame.publisher.name);
    }
    let orders = frames[0].coordinator().expect("the coordinator's frame");
    assert!(!orders.operations.is_empty());
    assert_eq!(
        orders.operations.len() as u64 + orders.operations_omitted,
        200
    );
    let signals = frames[1].sink().expect("the sink's frame");
    assert!(!signals.signals.is_empty());
    assert_eq!(signals.signals.len() as u64 + signals.signals_omitted, 200);
    assert!(publishers.iter().all(|p| p.send_errors() == 0));
    gate.add_permits(1000);
}

#[tokio::test]
async fn bad_names_and_intervals_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = open(tmp.path(), "t").await;
    let coordinator = noop_work();
    let err = coordinator
        .publish_state(&bus, "two words")
        .await
        .unwrap_err();
    assert!(matches!(err, InspectError::Name(_)), "{err:?}");
    let err = coordinator
        .publish_state_with(
            &bus,
            "ok",
            PublishOptions::default().interval(Duration::ZERO),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, InspectError::ZeroInterval), "{err:?}");
    assert!(err.to_string().contains("250ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_another_peer_sees_the_publisher() {
    let tmp = tempfile::tempdir().unwrap();
    let service = open(tmp.path(), "t").await;
    let tool = open(tmp.path(), "t").await;
    let coordinator = noop_work();
    for i in 0..5 {
        coordinator.enqueue(i).await.unwrap();
    }
    coordinator.drain().await.unwrap();
    let _publisher = coordinator.publish_state(&service, "orders").await.unwrap();

    let mut watcher = StateWatcher::new(&tool).await.unwrap();
    let frames = watcher.collect(LONG).await.unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].coordinator().unwrap().counts.completed, 5);
}

/// The exchange travels as the bus's own traffic: a `*` subscriber (in the publisher's
/// process or another) sees none of it, a user publishing on the exchange's topic names
/// reaches no publisher, and a `*` subscriber is not counted as a watcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_star_subscriber_sees_none_of_the_state_exchange() {
    use ephemeral_bus::inspect::{POLL_TOPIC, STATE_TOPIC};
    use futures::StreamExt;

    let tmp = tempfile::tempdir().unwrap();
    let service = open(tmp.path(), "t").await;
    let tool = open(tmp.path(), "t").await;
    let coordinator = noop_work();
    let publisher = coordinator
        .publish_state_with(
            &service,
            "orders",
            PublishOptions::default().interval(Duration::from_millis(20)),
        )
        .await
        .unwrap();
    let mut everything_here = service.subscribe("*").await.unwrap();
    let mut everything_there = tool.subscribe("*").await.unwrap();
    let mut watcher = StateWatcher::new(&tool).await.unwrap();

    assert_eq!(
        watcher.poll().await.unwrap(),
        Some(1),
        "the publisher alone"
    );
    next(&mut watcher).await;
    // A user's messages on topics spelled like the exchange's are ordinary messages.
    assert_eq!(tool.publish(POLL_TOPIC, b"{}").await.unwrap(), 2);
    assert_eq!(service.publish(STATE_TOPIC, b"{}").await.unwrap(), 2);
    for sub in [&mut everything_here, &mut everything_there] {
        let mut topics = Vec::new();
        while let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_millis(300), sub.next()).await
        {
            topics.push(item.unwrap().topic().to_string());
        }
        topics.sort();
        assert_eq!(topics, [POLL_TOPIC, STATE_TOPIC], "only the user's own two");
    }
    assert_eq!(
        publisher.polls_received(),
        1,
        "the user's message is no poll"
    );
    assert_eq!(
        watcher.poll().await.unwrap(),
        Some(1),
        "subscribers are no watchers"
    );
}
