//! Keyed priority fan-out: lane priority, per-key order across lanes, one item per key at a
//! time, failures and panics recorded without stalling the key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{
    CancelReason, DeferPolicy, EnqueueError, EphemeralOptions, OperationContext, OperationState,
};
use ephemeral_patterns::keyed_priority_fanout::{
    FanoutConfigError, FanoutLane, KeyedPriorityFanout,
};

type Log = Arc<Mutex<Vec<(u32, u32)>>>;
/// (most items of one key running at once, most items running at once)
type Overlap = Arc<Mutex<(usize, usize)>>;

fn recording(concurrency: usize, work: Duration) -> (KeyedPriorityFanout<u32, u32>, Log, Overlap) {
    recording_with(
        EphemeralOptions::default().max_concurrency(concurrency),
        work,
    )
}

/// As [`recording`], with `options`.
fn recording_with(
    options: EphemeralOptions,
    work: Duration,
) -> (KeyedPriorityFanout<u32, u32>, Log, Overlap) {
    try_recording_with(options, work).unwrap()
}

/// As [`recording_with`], with the construction error's text if the fan-out refused
/// `options`.
fn try_recording_with(
    options: EphemeralOptions,
    work: Duration,
) -> Result<(KeyedPriorityFanout<u32, u32>, Log, Overlap), String> {
    let log: Log = Arc::default();
    let overlap: Overlap = Arc::default();
    let running: Arc<Mutex<Vec<u32>>> = Arc::default();
    let (l, o, r) = (log.clone(), overlap.clone(), running.clone());
    let fanout = KeyedPriorityFanout::new(
        move |key: u32, item: u32, _ctx: OperationContext| {
            let (log, overlap, running) = (l.clone(), o.clone(), r.clone());
            async move {
                {
                    let mut running = running.lock().unwrap();
                    running.push(key);
                    let same = running.iter().filter(|k| **k == key).count();
                    let mut o = overlap.lock().unwrap();
                    o.0 = o.0.max(same);
                    o.1 = o.1.max(running.len());
                }
                log.lock().unwrap().push((key, item));
                tokio::time::sleep(work).await;
                let mut running = running.lock().unwrap();
                let at = running.iter().position(|k| *k == key).unwrap();
                running.remove(at);
                Ok::<_, String>(())
            }
        },
        options,
    )
    .map_err(|e| e.to_string())?;
    Ok((fanout, log, overlap))
}

#[tokio::test(start_paused = true)]
async fn priority_items_of_idle_keys_start_first() {
    let (fanout, log, _) = recording(1, Duration::from_millis(10));
    fanout.pause();
    for item in 0..3 {
        fanout
            .enqueue(FanoutLane::Normal, item, item)
            .await
            .unwrap();
    }
    for item in 10..13 {
        fanout
            .enqueue(FanoutLane::Priority, item, item)
            .await
            .unwrap();
    }
    fanout.resume();
    fanout.drain().await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [(10, 10), (11, 11), (12, 12), (0, 0), (1, 1), (2, 2)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_keys_items_keep_acceptance_order_across_lanes() {
    let (fanout, log, overlap) = recording(4, Duration::from_millis(10));
    fanout.pause();
    // Key 1: normal, priority, normal, priority; key 2: priority only; key 3: normal only.
    let plan = [
        (FanoutLane::Normal, 1, 0),
        (FanoutLane::Priority, 1, 1),
        (FanoutLane::Priority, 2, 0),
        (FanoutLane::Normal, 1, 2),
        (FanoutLane::Normal, 3, 0),
        (FanoutLane::Priority, 1, 3),
        (FanoutLane::Priority, 2, 1),
        (FanoutLane::Normal, 3, 1),
    ];
    for (lane, key, item) in plan {
        fanout.enqueue(lane, key, item).await.unwrap();
    }
    assert_eq!(fanout.key_depth(&1), 4);
    fanout.resume();
    fanout.drain().await.unwrap();
    let log = log.lock().unwrap();
    for key in 1..=3 {
        let items: Vec<u32> = log.iter().filter(|(k, _)| *k == key).map(|e| e.1).collect();
        let expected: Vec<u32> = (0..items.len() as u32).collect();
        assert_eq!(items, expected, "key {key} out of order");
    }
    assert_eq!(log.len(), 8);
    let (same_key, overall) = *overlap.lock().unwrap();
    assert_eq!(same_key, 1, "two items of one key ran at once");
    assert!(overall >= 2, "different keys should run in parallel");
    assert_eq!(fanout.stats().completed, 8);
}

#[tokio::test(start_paused = true)]
async fn a_priority_item_behind_a_running_key_does_not_overtake_it() {
    let (fanout, log, _) = recording(2, Duration::from_millis(100));
    fanout.enqueue(FanoutLane::Normal, 5, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(fanout.key_running(&5));
    fanout.enqueue(FanoutLane::Priority, 5, 1).await.unwrap();
    fanout.enqueue(FanoutLane::Normal, 6, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Key 6 started in the free slot; key 5's priority item waits for its first item.
    assert!(fanout.key_running(&6));
    assert_eq!(fanout.key_depth(&5), 1);
    fanout.drain().await.unwrap();
    assert_eq!(*log.lock().unwrap(), [(5, 0), (6, 0), (5, 1)]);
}

#[tokio::test(start_paused = true)]
async fn failures_and_panics_are_recorded_and_the_key_goes_on() {
    let log: Log = Arc::default();
    let l = log.clone();
    let fanout = KeyedPriorityFanout::new(
        move |key: u32, item: u32, _ctx: OperationContext| {
            let log = l.clone();
            async move {
                log.lock().unwrap().push((key, item));
                match item {
                    1 => Err(format!("item {item} failed")),
                    2 => panic!("item 2 panicked"),
                    _ => Ok(()),
                }
            }
        },
        EphemeralOptions::default().max_concurrency(2),
    )
    .unwrap();
    for item in 0..5 {
        fanout.enqueue(FanoutLane::Normal, 9, item).await.unwrap();
    }
    fanout.drain().await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [(9, 0), (9, 1), (9, 2), (9, 3), (9, 4)]
    );
    let stats = fanout.stats();
    assert_eq!(stats.completed, 3);
    assert_eq!(stats.failed, 2);
    assert!(!fanout.key_running(&9));
    assert_eq!(fanout.key_depth(&9), 0);
}

#[tokio::test(start_paused = true)]
async fn a_refused_item_comes_back() {
    let (fanout, log, _) = recording(1, Duration::from_millis(1));
    fanout.drain().await.unwrap();
    match fanout.enqueue(FanoutLane::Priority, 1, 42).await {
        Err(EnqueueError::Closed(item)) => assert_eq!(item, 42),
        other => panic!("expected Closed(42), got {other:?}"),
    }
    assert_eq!(fanout.key_depth(&1), 0);
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn many_keys_many_items_all_run_once_in_order() {
    let (fanout, log, overlap) = recording(8, Duration::from_millis(3));
    for i in 0..400u32 {
        let lane = if i % 3 == 0 {
            FanoutLane::Priority
        } else {
            FanoutLane::Normal
        };
        fanout.enqueue(lane, i % 17, i).await.unwrap();
    }
    fanout.drain().await.unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 400);
    for key in 0..17 {
        let items: Vec<u32> = log.iter().filter(|(k, _)| *k == key).map(|e| e.1).collect();
        assert!(
            items.windows(2).all(|w| w[0] < w[1]),
            "key {key}: {items:?}"
        );
    }
    assert_eq!(overlap.lock().unwrap().0, 1);
}

/// Each item is its own operation: the id `enqueue` returns is the item's, in snapshots and
/// for `cancel_operation`, whichever order items start in.
#[tokio::test(start_paused = true)]
async fn each_id_is_its_items_operation() {
    let fanout = KeyedPriorityFanout::new(
        |_key: u32, change: &'static str, _ctx: OperationContext| async move {
            if change == "fail-freeze" {
                Err(format!("{change} failed"))
            } else {
                Ok(())
            }
        },
        EphemeralOptions::default().max_concurrency(1),
    )
    .unwrap();
    fanout.pause();
    let rename = fanout
        .enqueue(FanoutLane::Normal, 7, "rename")
        .await
        .unwrap();
    let freeze = fanout
        .enqueue(FanoutLane::Priority, 7, "fail-freeze")
        .await
        .unwrap();
    let other = fanout
        .enqueue(FanoutLane::Priority, 9, "freeze")
        .await
        .unwrap();
    fanout.resume();
    fanout.drain().await.unwrap();
    let state = |id| fanout.coordinator().operation(id).unwrap().state;
    assert_eq!(state(rename), OperationState::Completed);
    assert_eq!(state(freeze), OperationState::Failed);
    assert_eq!(state(other), OperationState::Completed);
}

/// Cancelling one pending item (first in its key, or waiting behind another) ends that
/// item cancelled; every other item runs, and nothing is left in the keys' queues.
#[tokio::test(start_paused = true)]
async fn cancelling_an_item_cancels_that_item_and_the_rest_run() {
    let (fanout, log, _) = recording(1, Duration::from_millis(10));
    fanout.pause();
    let a1 = fanout.enqueue(FanoutLane::Normal, 1, 1).await.unwrap();
    let _b1 = fanout.enqueue(FanoutLane::Normal, 2, 1).await.unwrap();
    let b2 = fanout.enqueue(FanoutLane::Priority, 2, 2).await.unwrap();
    let _b3 = fanout.enqueue(FanoutLane::Normal, 2, 3).await.unwrap();
    assert!(fanout.coordinator().cancel_operation(a1));
    fanout.resume();
    tokio::time::sleep(Duration::from_millis(1)).await;
    // b2 waits for b1 (its key's first item, running); cancelled while it waits.
    assert!(fanout.key_running(&2));
    let waiting = fanout.coordinator().operation(b2).unwrap().state;
    assert_eq!(waiting, OperationState::Deferred);
    assert!(fanout.coordinator().cancel_operation(b2));
    fanout.drain().await.unwrap();
    assert_eq!(*log.lock().unwrap(), [(2, 1), (2, 3)]);
    let stats = fanout.stats();
    assert_eq!((stats.completed, stats.cancelled), (2, 2));
    for key in [1, 2] {
        assert_eq!(fanout.key_depth(&key), 0);
        assert!(!fanout.key_running(&key));
    }
}

/// An item refused by a `cancel_on` rule ends cancelled and never runs; the key's later
/// items run.
#[tokio::test(start_paused = true)]
async fn an_item_refused_by_cancel_on_never_runs_and_its_key_goes_on() {
    let sink = ephemeral::SignalSink::default();
    let (fanout, log, _) = recording_with(
        EphemeralOptions::default()
            .max_concurrency(1)
            .signals(sink.clone())
            .cancel_on("halt"),
        Duration::ZERO,
    );
    let halt = sink.hold("halt").unwrap();
    let x = fanout.enqueue(FanoutLane::Normal, 4, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    drop(halt);
    let y = fanout.enqueue(FanoutLane::Normal, 4, 2).await.unwrap();
    fanout.drain().await.unwrap();
    assert_eq!(*log.lock().unwrap(), [(4, 2)]);
    let state = |id| fanout.coordinator().operation(id).unwrap().state;
    assert!(
        matches!(state(x), OperationState::Cancelled(_)),
        "{:?}",
        state(x)
    );
    assert_eq!(state(y), OperationState::Completed);
    assert_eq!(fanout.key_depth(&4), 0);
}

/// Cancelling the fan-out with items queued ends each of them cancelled and leaves nothing
/// in the keys' queues.
#[tokio::test(start_paused = true)]
async fn a_cancel_with_items_queued_leaves_nothing_behind() {
    let (fanout, _, _) = recording(1, Duration::from_millis(10));
    for key in 0..10 {
        fanout.enqueue(FanoutLane::Normal, key, key).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    fanout.coordinator().cancel();
    fanout.drain().await.unwrap();
    let stats = fanout.stats();
    assert_eq!(stats.completed + stats.cancelled, 10);
    assert_eq!(stats.cancelled, 9);
    for key in 0..10 {
        assert_eq!(fanout.key_depth(&key), 0, "key {key}");
        assert!(!fanout.key_running(&key), "key {key}");
    }
}

/// `max_defer` never lets two items of one key run at once: under `DeferPolicy::Cancel` the
/// waiting item ends `Cancelled(DeferTimeout)` once it has waited that long; `DeferPolicy::Run`,
/// which would start it beside its key's running item, is refused when the fan-out is built.
#[tokio::test(start_paused = true)]
async fn max_defer_never_lets_two_items_of_a_key_run_at_once() {
    for policy in [DeferPolicy::Run, DeferPolicy::Cancel] {
        let options = EphemeralOptions::default()
            .max_concurrency(2)
            .max_defer(Duration::from_secs(1), policy);
        let (fanout, log, overlap) = match try_recording_with(options, Duration::from_secs(10)) {
            Ok(built) => built,
            Err(refused) => {
                assert_eq!(policy, DeferPolicy::Run, "{refused}");
                assert!(refused.contains("DeferPolicy::Cancel"), "{refused}");
                continue;
            }
        };
        fanout.enqueue(FanoutLane::Normal, 7, 0).await.unwrap();
        let second = fanout.enqueue(FanoutLane::Normal, 7, 1).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            overlap.lock().unwrap().0,
            1,
            "{policy:?}: two items of key 7 ran at once"
        );
        assert_eq!(*log.lock().unwrap(), [(7, 0)], "{policy:?}");
        let state = fanout.coordinator().operation(second).unwrap().state;
        assert_eq!(
            state,
            OperationState::Cancelled(CancelReason::DeferTimeout),
            "{policy:?}"
        );
        assert_eq!(fanout.key_depth(&7), 0, "{policy:?}");
        fanout.drain().await.unwrap();
    }
}

/// The refusal is typed; without `max_defer`, the default `DeferPolicy::Run` is accepted.
#[tokio::test]
async fn run_past_max_defer_is_refused_with_a_typed_error() {
    let body = |_key: u32, _item: u32, _ctx: OperationContext| async { Ok::<_, String>(()) };
    let refused = KeyedPriorityFanout::new(
        body,
        EphemeralOptions::default().max_defer(Duration::from_secs(1), DeferPolicy::Run),
    );
    assert_eq!(refused.err(), Some(FanoutConfigError::RunPastMaxDefer));
    let cancelling = KeyedPriorityFanout::new(
        body,
        EphemeralOptions::default().max_defer(Duration::from_secs(1), DeferPolicy::Cancel),
    );
    assert!(cancelling.is_ok());
    assert!(KeyedPriorityFanout::new(body, EphemeralOptions::default()).is_ok());
}

/// When a key frees, its next item competes by its lane and age: a priority item that
/// waited for its key starts before a normal item of another key, and a normal one before
/// younger normal items.
#[tokio::test(start_paused = true)]
async fn an_item_that_waited_for_its_key_keeps_its_lanes_precedence() {
    let (fanout, log, _) = recording(1, Duration::from_millis(10));
    fanout.pause();
    let plan = [
        (FanoutLane::Normal, 1, 0),
        (FanoutLane::Priority, 1, 1), // behind key 1's normal item
        (FanoutLane::Normal, 2, 0),
        (FanoutLane::Normal, 3, 0),
        (FanoutLane::Priority, 4, 0),
    ];
    for (lane, key, item) in plan {
        fanout.enqueue(lane, key, item).await.unwrap();
    }
    fanout.resume();
    fanout.drain().await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [(4, 0), (1, 0), (1, 1), (2, 0), (3, 0)]
    );

    // Two slots: key 1's second item is put aside while its first runs; when both slots
    // free, it starts before the younger normal items of keys 3 and 4.
    let (fanout, log, _) = recording(2, Duration::from_millis(10));
    fanout.pause();
    let plan = [
        (FanoutLane::Normal, 1, 0),
        (FanoutLane::Normal, 1, 1),
        (FanoutLane::Normal, 2, 0),
        (FanoutLane::Normal, 3, 0),
        (FanoutLane::Normal, 4, 0),
    ];
    for (lane, key, item) in plan {
        fanout.enqueue(lane, key, item).await.unwrap();
    }
    fanout.resume();
    fanout.drain().await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [(1, 0), (2, 0), (1, 1), (3, 0), (4, 0)]
    );
}
