//! Keyed, result and priority coordinators, and the one-shot helper.

mod coordinator_support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordinator_support::{Gauge, assert_adds_up, settle};
use ephemeral::{
    CoordinatorError, DeferPolicy, EnqueueError, EphemeralKeyedWorkCoordinator, EphemeralOptions,
    EphemeralResultCoordinator, Lane, LaneError, OperationContext, OperationId, OperationState,
    PriorityWorkCoordinator, ResultError, SignalSink, process_all,
};

type Log = Arc<Mutex<Vec<(String, u32)>>>;

fn keyed_body(
    log: Log,
    gauge: Gauge,
) -> impl Fn(
    (String, u32, u64),
    OperationContext,
) -> futures::future::BoxFuture<'static, Result<(), Infallible>>
+ Send
+ Sync
+ 'static {
    move |(key, n, ms), _ctx| {
        let log = log.clone();
        let gauge = gauge.clone();
        Box::pin(async move {
            let _in = gauge.enter();
            log.lock().unwrap().push((key, n));
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn per_key_order_is_strict_and_limit_holds() {
    let log = Log::default();
    let gauge = Gauge::default();
    let c = EphemeralKeyedWorkCoordinator::new(
        keyed_body(log.clone(), gauge.clone()),
        EphemeralOptions::default().max_concurrency(4),
    )
    .unwrap();
    for n in 0..50u32 {
        let key = format!("k{}", n % 5);
        c.enqueue(key.clone(), (key, n, u64::from(n % 3)))
            .await
            .unwrap();
    }
    c.drain().await.unwrap();
    assert!(gauge.peak() <= 4);
    let log = log.lock().unwrap();
    for k in 0..5 {
        let key = format!("k{k}");
        let seq: Vec<u32> = log
            .iter()
            .filter(|(kk, _)| *kk == key)
            .map(|(_, n)| *n)
            .collect();
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        assert_eq!(seq, sorted, "order of {key}");
        assert_eq!(seq.len(), 10);
    }
    assert_eq!(c.key_count(), 0, "idle keys are reclaimed");
    assert_adds_up(&c.stats());
}

/// A key whose last pending item is cancelled is forgotten at once, also while nothing
/// starts (paused): cancelling what waits never leaves keys behind.
#[tokio::test(start_paused = true)]
async fn a_key_whose_last_pending_item_is_cancelled_is_forgotten_at_once() {
    let c = EphemeralKeyedWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default(),
    )
    .unwrap();
    c.pause();
    let mut ids = Vec::new();
    for n in 0..500u32 {
        ids.push(c.enqueue(format!("k{n}"), n).await.unwrap());
    }
    assert_eq!(c.key_count(), 500);
    for id in ids {
        assert!(c.cancel_operation(id));
    }
    assert_eq!(c.key_count(), 0, "{:?}", c.stats());
    c.resume();
    c.enqueue("again".to_owned(), 1).await.unwrap();
    c.drain().await.unwrap();
    assert_eq!(c.key_count(), 0);
    assert_eq!(c.stats().completed, 1);
}

/// Keys whose items a deferral outlived (`max_defer` with `DeferPolicy::Cancel`) are
/// forgotten with them, although nothing starts while the deferral holds: every key seen
/// under a long deferral used to stay (10,000 keys after 10,000 cancelled items).
#[tokio::test(start_paused = true)]
async fn keys_whose_items_a_deferral_cancelled_are_forgotten() {
    let sink = SignalSink::default();
    let c = EphemeralKeyedWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default()
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(1), DeferPolicy::Cancel),
    )
    .unwrap();
    let hold = sink.hold("maintenance").unwrap();
    for round in 0..5u32 {
        for n in 0..100u32 {
            c.enqueue(format!("k{round}-{n}"), n).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(c.stats().cancelled, u64::from(round + 1) * 100);
        assert_eq!(c.key_count(), 0, "round {round}: {:?}", c.stats());
    }
    drop(hold);
    // A key seen before starts as any new key does: nothing of it was left behind.
    c.enqueue("k0-0".to_owned(), 1).await.unwrap();
    c.drain().await.unwrap();
    assert_eq!(c.stats().completed, 1);
    assert_eq!(c.key_count(), 0);
    assert_adds_up(&c.stats());
}

/// Per-key order stays strict when the head of a key is held back: by a coordinator-wide
/// deferral (all keys start in order once it is lifted, with several workers), and by an
/// admission hook putting the head of one key aside (the next item of that key waits for
/// it; other keys go on).
#[tokio::test(start_paused = true)]
async fn per_key_order_holds_through_deferrals() {
    /// Puts the first item it sees aside until the gate opens; admits every other one.
    #[derive(Debug)]
    struct HoldFirst {
        open: tokio::sync::watch::Receiver<bool>,
        first: Mutex<Option<OperationId>>,
    }
    impl ephemeral::Admission for HoldFirst {
        fn admit<'a>(
            &'a self,
            request: &'a ephemeral::AdmissionRequest,
        ) -> futures::future::BoxFuture<'a, ephemeral::Decision> {
            let first = *self.first.lock().unwrap().get_or_insert(request.id) == request.id;
            let mut open = self.open.clone();
            Box::pin(async move {
                if first && !*open.borrow() {
                    ephemeral::Decision::defer(async move {
                        let _ = open.wait_for(|o| *o).await;
                    })
                } else {
                    ephemeral::Decision::Admit
                }
            })
        }
    }

    let sink = SignalSink::default();
    let log = Log::default();
    let c = EphemeralKeyedWorkCoordinator::new(
        keyed_body(log.clone(), Gauge::default()),
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone())
            .defer_on("backpressure")
            .resume_on("backpressure.cleared"),
    )
    .unwrap();
    let hold = sink.hold("backpressure").unwrap();
    for n in 0..30u32 {
        let key = format!("k{}", n % 3);
        c.enqueue(key.clone(), (key, n, u64::from(7 - n % 7)))
            .await
            .unwrap();
    }
    settle().await;
    assert!(log.lock().unwrap().is_empty());
    sink.raise("backpressure.cleared").unwrap();
    drop(hold);
    c.drain().await.unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 30);
    for k in 0..3 {
        let key = format!("k{k}");
        let order: Vec<u32> = log
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(
            order,
            (0..30).filter(|n| n % 3 == k).collect::<Vec<_>>(),
            "{key}"
        );
    }

    let (open, gate) = tokio::sync::watch::channel(false);
    let log = Log::default();
    let c = EphemeralKeyedWorkCoordinator::with_admission(
        keyed_body(log.clone(), Gauge::default()),
        EphemeralOptions::default().max_concurrency(2),
        vec![Arc::new(HoldFirst {
            open: gate,
            first: Mutex::new(None),
        })],
    )
    .unwrap();
    for (key, n) in [("a", 1), ("a", 2), ("b", 1)] {
        c.enqueue(key.to_string(), (key.to_string(), n, 0))
            .await
            .unwrap();
    }
    settle().await;
    assert_eq!(*log.lock().unwrap(), [("b".to_string(), 1)]);
    open.send(true).unwrap();
    c.drain().await.unwrap();
    let expected: Vec<(String, u32)> = [("b", 1), ("a", 1), ("a", 2)]
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    assert_eq!(*log.lock().unwrap(), expected);
}

#[tokio::test(start_paused = true)]
async fn a_busy_key_does_not_block_other_keys() {
    let log = Log::default();
    let c = EphemeralKeyedWorkCoordinator::new(
        keyed_body(log.clone(), Gauge::default()),
        EphemeralOptions::default().max_concurrency(4),
    )
    .unwrap();
    c.enqueue("A", ("A".into(), 1, 1_000)).await.unwrap();
    c.enqueue("A", ("A".into(), 2, 0)).await.unwrap();
    c.enqueue("B", ("B".into(), 1, 0)).await.unwrap();
    settle().await;
    // A1 runs (for 1 s), A2 waits behind it, and B1 has already started and finished.
    assert_eq!(
        *log.lock().unwrap(),
        [("A".to_string(), 1), ("B".to_string(), 1)]
    );
    assert_eq!(c.key_stats(&"A").pending, 1);
    assert_eq!(c.key_stats(&"A").running, 1);
    c.drain().await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn fairness_lets_a_cold_key_through_ahead_of_a_hot_backlog() {
    let log = Log::default();
    let c = EphemeralKeyedWorkCoordinator::new(
        keyed_body(log.clone(), Gauge::default()),
        EphemeralOptions::default()
            .max_concurrency(2)
            .per_key_concurrency(2)
            .fairness_threshold(4),
    )
    .unwrap();
    for n in 0..40 {
        c.enqueue("hot", ("hot".into(), n, 10)).await.unwrap();
    }
    settle().await;
    c.enqueue("cold", ("cold".into(), 0, 10)).await.unwrap();
    c.drain().await.unwrap();
    let log = log.lock().unwrap();
    let cold_at = log.iter().position(|(k, _)| k == "cold").unwrap();
    // Two hot items were running when the cold one arrived; it starts in the next free slot.
    assert!(cold_at <= 3, "cold key started at position {cold_at}");
}

#[tokio::test(start_paused = true)]
async fn keys_are_rendered_in_snapshots() {
    let c = EphemeralKeyedWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default(),
    )
    .unwrap();
    let id = c.enqueue(42u64, 1).await.unwrap();
    c.drain().await.unwrap();
    assert_eq!(c.operation(id).unwrap().key.as_deref(), Some("42"));
}

/// A key type whose `Display` fails: by returning an error, or by panicking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Unshowable {
    Errs(u32),
    Panics(u32),
}

impl std::fmt::Display for Unshowable {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Errs(_) => Err(std::fmt::Error),
            Self::Panics(n) => panic!("no rendering for key {n}"),
        }
    }
}

/// A key is used by its `Hash` and `Eq`; its `Display` only labels it. A `Display` that
/// fails (an error or a panic) neither refuses nor loses the item, nor takes down the
/// caller: the item runs in its key's order, labelled `<unrenderable key>`.
#[tokio::test(start_paused = true)]
async fn a_key_whose_display_fails_is_labelled_not_fatal() {
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let log = seen.clone();
    let c = EphemeralKeyedWorkCoordinator::new(
        move |n: u32, _ctx: OperationContext| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(n);
                Ok::<_, Infallible>(())
            }
        },
        EphemeralOptions::default(),
    )
    .unwrap();
    let errs = c.enqueue(Unshowable::Errs(1), 1).await.unwrap();
    let panics = c.enqueue(Unshowable::Panics(2), 2).await.unwrap();
    let again = c.try_enqueue(Unshowable::Panics(2), 3).unwrap();
    c.drain().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    for id in [errs, panics, again] {
        let op = c.operation(id).unwrap();
        assert_eq!(op.state, OperationState::Completed);
        assert_eq!(op.key.as_deref(), Some("<unrenderable key>"));
    }
    assert_eq!(c.snapshot_key(&Unshowable::Panics(2)).len(), 3);
}

/// Sees each admission request's key.
#[derive(Debug, Default)]
struct KeysSeen(Mutex<Vec<Option<Arc<str>>>>);

impl ephemeral::Admission for KeysSeen {
    fn admit<'a>(
        &'a self,
        request: &'a ephemeral::AdmissionRequest,
    ) -> futures::future::BoxFuture<'a, ephemeral::Decision> {
        self.0.lock().unwrap().push(request.key.clone());
        Box::pin(async { ephemeral::Decision::Admit })
    }
}

/// Integer keys are kept as numbers and rendered when asked: every place a key shows
/// (context, signals, snapshots, `snapshot_key`, echoes, admission hooks) sees its `Display`.
#[tokio::test(start_paused = true)]
async fn integer_keys_show_as_their_display_everywhere() {
    let sink = SignalSink::default();
    let seen = Arc::new(KeysSeen::default());
    let in_body: Log = Log::default();
    let log = in_body.clone();
    let c = EphemeralKeyedWorkCoordinator::with_admission(
        move |n: u32, ctx: OperationContext| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push((ctx.key().unwrap_or("-").to_owned(), n));
                ctx.signal("seen.key").unwrap();
                Ok::<_, Infallible>(())
            }
        },
        EphemeralOptions::default()
            .signals(sink.clone())
            .max_tracked(2)
            .echo(true, Duration::from_secs(60), 16),
        vec![seen.clone() as Arc<dyn ephemeral::Admission>],
    )
    .unwrap();
    c.enqueue(-7i64, 1).await.unwrap();
    c.enqueue(-1i64, 2).await.unwrap();
    c.enqueue(-7i64, 3).await.unwrap();
    c.enqueue(0i64, 4).await.unwrap();
    c.drain().await.unwrap();

    // Items start in any order across keys (cold keys first), in order within one.
    let mut keys: Vec<_> = in_body.lock().unwrap().clone();
    keys.sort_by_key(|(_, n)| *n);
    let expected = [("-7", 1), ("-1", 2), ("-7", 3), ("0", 4)];
    assert_eq!(keys, expected.map(|(k, n)| (k.to_owned(), n)));
    let mut admitted: Vec<_> = seen.0.lock().unwrap().clone();
    admitted.sort();
    assert_eq!(
        admitted,
        ["-1", "-7", "-7", "0"].map(|k| Some(Arc::from(k)))
    );
    let raised: Vec<_> = sink
        .sense("seen.key")
        .iter()
        .map(|s| s.key().map(str::to_owned))
        .collect();
    assert_eq!(raised.len(), 4);
    assert_eq!(
        raised.iter().filter(|k| k.as_deref() == Some("-7")).count(),
        2
    );
    // The window keeps two; the two evicted left echoes with their keys and signals.
    let echoes = c.echoes();
    assert_eq!(echoes.len(), 2);
    for echo in &echoes {
        assert_eq!(echo.signals[0].key(), echo.key.as_deref());
    }
    let mut shown: Vec<_> = c.snapshot().into_iter().map(|s| s.key).collect();
    shown.extend(echoes.into_iter().map(|e| e.key));
    shown.sort();
    assert_eq!(shown, ["-1", "-7", "-7", "0"].map(|k| Some(Arc::from(k))));
    let tracked = |key: i64| c.snapshot_key(&key).len();
    assert_eq!(tracked(-7) + tracked(-1) + tracked(0), 2);
    assert_eq!(tracked(7), 0);
    if let Some(zero) = c.snapshot_key(&0).first() {
        assert_eq!(zero.key.as_deref(), Some("0"));
    }
}

/// Echoes keep their own keys as older echoes are dropped for room or by age.
#[tokio::test(start_paused = true)]
async fn each_echo_keeps_its_own_key_as_echoes_come_and_go() {
    let c = EphemeralKeyedWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default()
            .max_tracked(1)
            .echo(true, Duration::from_secs(10), 3),
    )
    .unwrap();
    let mut keys = std::collections::HashMap::new();
    for round in 0..3u32 {
        for n in 0..7u32 {
            let key = u64::from(round * 100 + n);
            keys.insert(c.enqueue(key, n).await.unwrap(), key.to_string());
            settle().await;
        }
        let echoes = c.echoes();
        assert_eq!(echoes.len(), 3, "round {round}");
        for echo in &echoes {
            assert_eq!(echo.key.as_deref(), Some(keys[&echo.id].as_str()));
        }
        // Past the retention every echo goes; the next round starts from none.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(c.echoes().is_empty());
    }
}

/// A keyed body's signals carry its key, unless the builder set one: that one is kept, so
/// a body can address another coordinator by id (the operation's key used to replace it,
/// `coordinator.drain.id` then carried `alice` and drained nothing).
#[tokio::test(start_paused = true)]
async fn a_key_set_on_the_builder_is_kept_by_a_keyed_body() {
    let sink = SignalSink::default();
    let billing = EphemeralResultCoordinator::new(
        |n: u32, _ctx: OperationContext| async move { Ok::<_, Infallible>(n) },
        EphemeralOptions::default()
            .signals(sink.clone())
            .id("billing"),
    )
    .unwrap();
    let c = EphemeralKeyedWorkCoordinator::new(
        |_: u32, ctx: OperationContext| async move {
            ctx.signal("seen")?;
            let drain = ephemeral::Signal::build("coordinator.drain.id")?.key("billing");
            ctx.signal_with(drain)?;
            Ok::<_, ephemeral::RaiseError>(())
        },
        EphemeralOptions::default().signals(sink.clone()),
    )
    .unwrap();
    let id = c.enqueue("alice", 1).await.unwrap();
    c.drain().await.unwrap();
    assert_eq!(c.operation(id).unwrap().error, None);
    let seen = sink.latest("seen").unwrap();
    assert_eq!((seen.key(), seen.operation()), (Some("alice"), Some(id)));
    let drain = sink.latest("coordinator.drain.id").unwrap();
    assert_eq!(
        (drain.key(), drain.operation()),
        (Some("billing"), Some(id))
    );
    settle().await;
    assert!(billing.is_done(), "drained by id");
}

#[tokio::test(start_paused = true)]
async fn snapshot_key_shows_one_keys_operations() {
    let c = EphemeralKeyedWorkCoordinator::new(
        keyed_body(Log::default(), Gauge::default()),
        EphemeralOptions::default().max_concurrency(2),
    )
    .unwrap();
    let key = |k: &str| k.to_string();
    let a1 = c.enqueue(key("a"), (key("a"), 1, 10)).await.unwrap();
    let b1 = c.enqueue(key("b"), (key("b"), 1, 10)).await.unwrap();
    let a2 = c.enqueue(key("a"), (key("a"), 2, 10)).await.unwrap();
    settle().await;
    let a = c.snapshot_key(&key("a"));
    assert_eq!(a.iter().map(|s| s.id).collect::<Vec<_>>(), [a1, a2]);
    assert_eq!(a[0].state, ephemeral::OperationState::Running);
    assert_eq!(a[1].state, ephemeral::OperationState::Pending);
    c.drain().await.unwrap();
    let b = c.snapshot_key(&key("b"));
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].id, b[0].key.as_deref()), (b1, Some("b")));
    assert!(c.snapshot_key(&key("nobody")).is_empty());
}

#[tokio::test(start_paused = true)]
async fn results_are_kept_and_awaited() {
    let c = EphemeralResultCoordinator::new(
        |n: u64, _ctx: OperationContext| async move {
            tokio::time::sleep(Duration::from_millis(n)).await;
            if n == 7 { Err("seven") } else { Ok(n * 2) }
        },
        EphemeralOptions::default().max_tracked(3),
    )
    .unwrap();
    let a = c.enqueue(10).await.unwrap();
    assert!(c.result(a).is_none(), "not finished yet");
    assert_eq!(c.wait_for_result(a).await.unwrap(), 20);
    assert_eq!(c.result(a).unwrap().unwrap(), 20);
    let bad = c.enqueue(7).await.unwrap();
    assert!(matches!(
        c.wait_for_result(bad).await,
        Err(ResultError::Failed { .. })
    ));
    assert!(matches!(
        c.wait_for_result(OperationId::from_raw(u64::MAX)).await,
        Err(ResultError::Unknown(_))
    ));
    for n in 0..5 {
        c.enqueue(n).await.unwrap();
    }
    c.drain().await.unwrap();
    assert!(
        matches!(c.wait_for_result(a).await, Err(ResultError::Unknown(_))),
        "evicted"
    );
    assert_eq!(c.results().len(), 3);
    assert_eq!(c.successful().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn priority_lanes_start_highest_first_and_full_lanes_refuse() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let c = PriorityWorkCoordinator::new(
        move |job: u32, _ctx: OperationContext| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(job);
                Ok::<_, Infallible>(())
            }
        },
        vec![
            Lane::new("low", 0),
            Lane::new("high", 10).max_depth(2),
            Lane::new("mid", 5),
        ],
        EphemeralOptions::default().max_concurrency(1),
    )
    .unwrap();
    c.pause();
    c.enqueue("low", 1).await.unwrap();
    c.enqueue("mid", 2).await.unwrap();
    c.enqueue("high", 3).await.unwrap();
    c.enqueue("high", 4).await.unwrap();
    match c.enqueue("high", 5).await {
        Err(EnqueueError::Refused { item, lane, reason }) => {
            assert_eq!((item, &*lane), (5, "high"));
            assert!(reason.contains("max depth"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // An unknown lane's refusal names the lanes there are, highest priority first, so a
    // typo is plain to see (it used to say only "no lane has this name").
    let err = c.enqueue("nope", 6).await.unwrap_err();
    assert!(matches!(err, EnqueueError::Refused { .. }));
    assert!(
        err.to_string()
            .ends_with("no lane has this name: enqueue into one of `high`, `mid`, `low`"),
        "{err}"
    );
    assert_eq!(c.lane_depth("high"), 2);
    c.resume();
    c.drain().await.unwrap();
    assert_eq!(*order.lock().unwrap(), [3, 4, 2, 1]);
}

/// Lanes of equal priority share it by arrival: the item accepted first starts first,
/// whichever lane holds it (the lane listed first used to take every tie: `a` before all of
/// `b`, though `b`'s items came first).
#[tokio::test(start_paused = true)]
async fn lanes_of_equal_priority_start_by_arrival() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let c = PriorityWorkCoordinator::new(
        move |job: &'static str, _ctx: OperationContext| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(job);
                Ok::<_, Infallible>(())
            }
        },
        vec![
            Lane::new("a", 5),
            Lane::new("b", 5),
            Lane::new("low", 0),
            Lane::new("top", 9),
        ],
        EphemeralOptions::default().max_concurrency(1),
    )
    .unwrap();
    c.pause();
    for (lane, job) in [
        ("b", "b1"),
        ("a", "a1"),
        ("b", "b2"),
        ("low", "low"),
        ("a", "a2"),
        ("top", "top"),
    ] {
        c.enqueue(lane, job).await.unwrap();
    }
    c.resume();
    c.drain().await.unwrap();
    assert_eq!(
        *order.lock().unwrap(),
        ["top", "b1", "a1", "b2", "a2", "low"]
    );
}

/// A lane's `max_depth` counts an item an admission hook put aside: it still waits in the
/// lane and comes back to its front. (It used to be forgotten while aside, so a second item
/// got in and the lane held 2 with a depth of 1.)
#[tokio::test(start_paused = true)]
async fn a_lanes_max_depth_counts_an_item_a_hook_put_aside() {
    /// Defers its first item for a second; admits every later one.
    #[derive(Debug, Default)]
    struct LaterOnce(std::sync::atomic::AtomicBool);
    impl ephemeral::Admission for LaterOnce {
        fn admit<'a>(
            &'a self,
            _request: &'a ephemeral::AdmissionRequest,
        ) -> futures::future::BoxFuture<'a, ephemeral::Decision> {
            let first = !self.0.swap(true, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if first {
                    ephemeral::Decision::defer(tokio::time::sleep(Duration::from_secs(1)))
                } else {
                    ephemeral::Decision::Admit
                }
            })
        }
    }
    let c = PriorityWorkCoordinator::with_admission(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        vec![Lane::new("narrow", 0).max_depth(1)],
        EphemeralOptions::default().max_concurrency(1),
        vec![Arc::new(LaterOnce::default())],
    )
    .unwrap();
    let aside = c.enqueue("narrow", 1).await.unwrap();
    settle().await;
    assert_eq!(
        c.operation(aside).unwrap().state,
        OperationState::Deferred,
        "put aside by the hook"
    );
    assert_eq!(c.lane_depth("narrow"), 1);
    assert!(matches!(
        c.try_enqueue("narrow", 2),
        Err(EnqueueError::Refused { item: 2, .. })
    ));
    c.pause();
    tokio::time::sleep(Duration::from_secs(2)).await; // back in the lane
    assert_eq!(c.lane_depth("narrow"), 1);
    assert!(matches!(
        c.try_enqueue("narrow", 3),
        Err(EnqueueError::Refused { item: 3, .. })
    ));
    c.resume();
    c.drain().await.unwrap();
    assert_eq!(c.operation(aside).unwrap().state, OperationState::Completed);
    assert_eq!(c.lane_depth("narrow"), 0);
    assert_eq!(c.stats().accepted, 1);
}

#[tokio::test(start_paused = true)]
async fn bad_lanes_are_typed_errors() {
    let make = |lanes: Vec<Lane>| {
        PriorityWorkCoordinator::new(
            |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
            lanes,
            EphemeralOptions::default(),
        )
        .map(|_| ())
    };
    assert_eq!(
        make(vec![Lane::new("high", 1), Lane::new("", 0)]),
        Err(CoordinatorError::Lanes(LaneError::EmptyName))
    );
    assert_eq!(
        make(vec![]),
        Err(CoordinatorError::Lanes(LaneError::NoLanes))
    );
    assert_eq!(
        make(vec![Lane::new("a", 1), Lane::new("a", 0)]),
        Err(CoordinatorError::Lanes(LaneError::DuplicateName(
            Arc::from("a")
        )))
    );
    let err = make(vec![Lane::new("", 0)]).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    // A blank name is as invisible as an empty one, and refused the same way (as a blank
    // coordinator name or id is).
    for blank in [" ", "\n", "\t ", "\u{3000}"] {
        assert_eq!(
            make(vec![Lane::new("high", 1), Lane::new(blank, 0)]),
            Err(CoordinatorError::Lanes(LaneError::EmptyName)),
            "{blank:?}"
        );
    }
    let err = make(vec![Lane::new(" ", 0)]).unwrap_err().to_string();
    assert!(err.contains("whitespace"), "{err}");
    // A lane that could hold no item would refuse every one.
    assert_eq!(
        make(vec![Lane::new("a", 1), Lane::new("lo", 0).max_depth(0)]),
        Err(CoordinatorError::Lanes(LaneError::ZeroDepth(Arc::from(
            "lo"
        ))))
    );
    assert_eq!(make(vec![Lane::new("lo", 0).max_depth(1)]), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_deferred_lane_never_stalls_the_others() {
    let sink = SignalSink::default();
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let c = PriorityWorkCoordinator::new(
        move |job: u32, _ctx: OperationContext| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(job);
                Ok::<_, Infallible>(())
            }
        },
        vec![
            Lane::new("high", 10).defer_on("db.busy"),
            Lane::new("low", 0).cancel_on("low.off"),
        ],
        EphemeralOptions::default()
            .max_concurrency(1)
            .signals(sink.clone()),
    )
    .unwrap();
    let hold = sink.hold("db.busy").unwrap();
    c.enqueue("high", 1).await.unwrap();
    c.enqueue("low", 2).await.unwrap();
    settle().await;
    assert_eq!(
        *order.lock().unwrap(),
        [2],
        "low ran while high is deferred"
    );
    drop(hold);
    c.drain().await.unwrap();
    assert_eq!(*order.lock().unwrap(), [2, 1]);
}

/// A lane's deferral dates an item's `max_defer` clock as the coordinator-wide one does: an
/// item accepted while its lane's defer signal is live is held from its acceptance, even
/// when the clock jumps (`advance`) before the coordinator looks again.
#[tokio::test(start_paused = true)]
async fn an_item_accepted_into_a_deferred_lane_is_held_from_its_acceptance() {
    let sink = SignalSink::default();
    let c = PriorityWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        vec![Lane::new("bulk", 0).defer_on("db.busy")],
        EphemeralOptions::default()
            .signals(sink.clone())
            .max_defer(Duration::from_secs(10), DeferPolicy::Cancel),
    )
    .unwrap();
    let _hold = sink.hold("db.busy").unwrap();
    let id = c.enqueue("bulk", 1).await.unwrap();
    let state = || c.operation(id).unwrap().state;
    assert_eq!(state(), OperationState::Deferred);
    tokio::time::advance(Duration::from_millis(9_999)).await;
    settle().await;
    assert_eq!(state(), OperationState::Deferred);
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(
        state(),
        OperationState::Cancelled(ephemeral::CancelReason::DeferTimeout)
    );
}

/// Items already waiting in a lane when its defer signal is raised are held from that raise.
#[tokio::test(start_paused = true)]
async fn items_waiting_in_a_lane_are_held_from_the_raise_of_its_defer_signal() {
    let sink = SignalSink::default();
    let c = PriorityWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        vec![Lane::new("bulk", 0).defer_on("db.busy")],
        EphemeralOptions::default()
            .signals(sink.clone())
            .max_defer(Duration::from_secs(10), DeferPolicy::Cancel),
    )
    .unwrap();
    c.pause();
    let id = c.enqueue("bulk", 1).await.unwrap();
    let _hold = sink.hold("db.busy").unwrap(); // t = 0
    tokio::time::advance(Duration::from_secs(4)).await;
    c.resume();
    settle().await;
    let state = || c.operation(id).unwrap().state;
    assert_eq!(state(), OperationState::Deferred);
    tokio::time::advance(Duration::from_millis(5_999)).await; // t = 9.999 s
    settle().await;
    assert_eq!(state(), OperationState::Deferred);
    tokio::time::advance(Duration::from_millis(1)).await; // t = 10 s
    settle().await;
    assert_eq!(
        state(),
        OperationState::Cancelled(ephemeral::CancelReason::DeferTimeout)
    );
}

/// Under a coordinator-wide deferral with `DeferPolicy::Run`, the item past `max_defer`
/// starts and no other: a higher lane's item held for less stays deferred (it used to start
/// with it, 30 s early, as the lane pop looked only at lane rules).
#[tokio::test(start_paused = true)]
async fn max_defer_run_starts_only_the_overdue_item_of_a_lower_lane() {
    let sink = SignalSink::default();
    let c = PriorityWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        vec![Lane::new("high", 10), Lane::new("low", 0)],
        EphemeralOptions::default()
            .max_concurrency(1)
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(60), DeferPolicy::Run),
    )
    .unwrap();
    let _hold = sink.hold("maintenance").unwrap();
    let low = c.enqueue("low", 1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let high = c.enqueue("high", 2).await.unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await; // t = 61 s
    let state = |id| c.operation(id).unwrap().state;
    assert_eq!(state(low), OperationState::Completed);
    assert_eq!(state(high), OperationState::Deferred, "held for 31 s only");
    tokio::time::sleep(Duration::from_secs(30)).await; // t = 91 s
    assert_eq!(state(high), OperationState::Completed);
}

/// The same for a keyed coordinator: the overdue item of a key that was busy starts, and the
/// keys ready before it, held for less, stay deferred (they used to start with it).
#[tokio::test(start_paused = true)]
async fn max_defer_run_starts_only_the_overdue_item_of_a_keyed_coordinator() {
    let sink = SignalSink::default();
    let (release, released) = tokio::sync::watch::channel(false);
    let c = EphemeralKeyedWorkCoordinator::new(
        move |n: u32, _ctx: OperationContext| {
            let mut released = released.clone();
            async move {
                if n == 1 {
                    let _ = released.wait_for(|r| *r).await;
                }
                Ok::<_, Infallible>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone())
            .defer_on("maintenance")
            .max_defer(Duration::from_secs(60), DeferPolicy::Run),
    )
    .unwrap();
    let first = c.enqueue("a", 1).await.unwrap();
    settle().await;
    assert_eq!(c.operation(first).unwrap().state, OperationState::Running);
    let _hold = sink.hold("maintenance").unwrap();
    let overdue = c.enqueue("a", 2).await.unwrap(); // t = 0: held, its key busy
    tokio::time::sleep(Duration::from_secs(30)).await;
    let others = c.enqueue_many([("b", 3), ("c", 4)]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await; // t = 40 s: key `a` is ready last
    release.send(true).unwrap();
    tokio::time::sleep(Duration::from_secs(21)).await; // t = 61 s
    let state = |id| c.operation(id).unwrap().state;
    assert_eq!(state(first), OperationState::Completed);
    assert_eq!(state(overdue), OperationState::Completed);
    for id in &others {
        assert_eq!(state(*id), OperationState::Deferred, "held for 31 s only");
    }
    tokio::time::sleep(Duration::from_secs(30)).await; // t = 91 s
    for id in &others {
        assert_eq!(state(*id), OperationState::Completed);
    }
    assert_adds_up(&c.stats());
}

#[tokio::test(start_paused = true)]
async fn process_all_returns_a_summary() {
    let gauge = Gauge::default();
    let g = gauge.clone();
    let summary = process_all(0..100u32, 8, move |n, _ctx| {
        let g = g.clone();
        async move {
            let _in = g.enter();
            tokio::time::sleep(Duration::from_millis(5)).await;
            if n % 10 == 0 {
                Err(format!("bad {n}"))
            } else {
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(summary.total, 100);
    assert_eq!(summary.completed, 90);
    assert_eq!(summary.failed, 10);
    assert_eq!(summary.failures.len(), 10);
    assert!(gauge.peak() <= 8);
}

/// `reserve`, `enqueue_many` and stream intake exist on every coordinator type, and a refused
/// `enqueue_many` gives back every item it was given.
#[tokio::test(start_paused = true)]
async fn every_coordinator_type_has_reserve_enqueue_many_and_intake() {
    let ok = |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) };

    let keyed = EphemeralKeyedWorkCoordinator::new(ok, EphemeralOptions::default()).unwrap();
    let id = keyed.reserve().await.unwrap().send("k", 1).unwrap();
    let ids = keyed.enqueue_many([("k", 2), ("j", 3)]).await.unwrap();
    keyed.intake(futures::stream::iter([("k", 4), ("j", 5)]));
    keyed.intake_results(futures::stream::iter([Ok(("k", 6)), Err("bad row")]));
    let err = keyed.drain().await.unwrap_err();
    assert!(err.to_string().contains("bad row"));
    assert_eq!(keyed.stats().completed, 6);
    assert_eq!(keyed.operation(id).unwrap().key.as_deref(), Some("k"));
    assert_eq!(keyed.operation(ids[1]).unwrap().key.as_deref(), Some("j"));
    assert_eq!(keyed.snapshot_key(&"k").len(), 4);
    let refused = keyed.enqueue_many([("a", 7), ("b", 8)]).await.unwrap_err();
    assert!(matches!(refused.refused, EnqueueError::Closed(_)));
    assert_eq!(refused.into_inner(), [("a", 7), ("b", 8)]);
    assert!(keyed.reserve().await.is_err());

    let results = EphemeralResultCoordinator::new(
        |n: u32, _ctx: OperationContext| async move { Ok::<_, Infallible>(n + 1) },
        EphemeralOptions::default(),
    )
    .unwrap();
    let id = results.reserve().await.unwrap().send(1).unwrap();
    let ids = results.enqueue_many([10, 20]).await.unwrap();
    results.intake(futures::stream::iter([30, 40]));
    results.drain().await.unwrap();
    assert_eq!(results.result(id).unwrap().unwrap(), 2);
    assert_eq!(results.result(ids[1]).unwrap().unwrap(), 21);
    assert_eq!(results.results().len(), 5);
    let refused = results.enqueue_many([50, 60]).await.unwrap_err();
    assert_eq!(refused.into_inner(), [50, 60]);

    let lanes = PriorityWorkCoordinator::new(
        ok,
        vec![Lane::new("high", 1).max_depth(1), Lane::new("low", 0)],
        EphemeralOptions::default().max_concurrency(1),
    )
    .unwrap();
    lanes.pause();
    let permit = lanes.reserve().await.unwrap();
    match permit.send("nope", 1) {
        Err(EnqueueError::Refused { item: 1, lane, .. }) => assert_eq!(&*lane, "nope"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    lanes.reserve().await.unwrap().send("low", 1).unwrap();
    let err = lanes
        .enqueue_many([("high", 2), ("high", 3), ("low", 4)])
        .await
        .unwrap_err();
    assert_eq!(err.accepted.len(), 1);
    assert_eq!(err.into_inner(), [("high", 3), ("low", 4)]);
    lanes.resume();
    lanes.intake(futures::stream::iter([
        ("low".to_string(), 5),
        ("high".to_string(), 6),
    ]));
    lanes.drain().await.unwrap();
    assert_eq!(lanes.stats().completed, 4);
}

/// A stream item for a lane that does not exist stops the intake with an error from `drain`.
#[tokio::test(start_paused = true)]
async fn priority_intake_stops_at_an_unknown_lane() {
    let lanes = PriorityWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        vec![Lane::new("only", 0)],
        EphemeralOptions::default(),
    )
    .unwrap();
    lanes.intake(futures::stream::iter([
        ("only", 1),
        ("other", 2),
        ("only", 3),
    ]));
    let err = lanes.drain().await.unwrap_err();
    assert!(err.to_string().contains("other"), "{err}");
    assert!(err.to_string().contains("(the lanes are `only`)"), "{err}");
    assert_eq!(lanes.stats().accepted, 1);
}

/// A closed priority coordinator says `Closed` whatever the lane: an unknown lane after
/// `complete()` used to be `Refused` ("no lane has this name"), as if a retry with the right
/// lane could succeed.
#[tokio::test(start_paused = true)]
async fn a_closed_priority_coordinator_refuses_an_unknown_lane_as_closed() {
    let lanes = PriorityWorkCoordinator::new(
        |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
        vec![Lane::new("only", 0)],
        EphemeralOptions::default(),
    )
    .unwrap();
    let permit = lanes.reserve().await.unwrap();
    lanes.complete();
    assert!(matches!(
        lanes.enqueue("nope", 1).await,
        Err(EnqueueError::Closed(1))
    ));
    assert!(matches!(
        lanes.try_enqueue("nope", 2),
        Err(EnqueueError::Closed(2))
    ));
    let refused = lanes.enqueue_many([("nope", 3)]).await.unwrap_err();
    assert!(matches!(refused.refused, EnqueueError::Closed(_)));
    assert!(matches!(
        permit.send("nope", 4),
        Err(EnqueueError::Closed(4))
    ));
    lanes.drain().await.unwrap();
    assert_eq!(lanes.stats().accepted, 0);
}

#[tokio::test(start_paused = true)]
async fn process_keyed_keeps_per_key_order_within_the_overall_bound() {
    let log = Log::default();
    let gauge = Gauge::default();
    let (l, g) = (log.clone(), gauge.clone());
    let pairs = (0..60u32).map(|n| (format!("k{}", n % 6), n));
    let summary = ephemeral::process_keyed(pairs, 4, move |(key, n): (String, u32), _ctx| {
        let (l, g) = (l.clone(), g.clone());
        async move {
            let _in = g.enter();
            l.lock().unwrap().push((key, n));
            tokio::time::sleep(Duration::from_millis(u64::from(7 - n % 7))).await;
            Ok::<_, Infallible>(())
        }
    })
    .await
    .unwrap();
    assert_eq!((summary.total, summary.completed), (60, 60));
    assert!(!summary.interrupted);
    assert!(gauge.peak() <= 4, "peak {}", gauge.peak());
    let log = log.lock().unwrap();
    for k in 0..6 {
        let key = format!("k{k}");
        let ns: Vec<u32> = log
            .iter()
            .filter(|(kk, _)| *kk == key)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(ns.len(), 10);
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{key}: {ns:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn process_all_with_cancel_reports_what_was_cancelled() {
    let token = tokio_util::sync::CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        stop.cancel();
    });
    let summary = ephemeral::process_all_with_cancel(
        0..5000u32,
        3,
        token,
        |_: u32, ctx: OperationContext| async move {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => Ok(()),
                () = ctx.token().cancelled() => Err("stopped"),
            }
        },
    )
    .await
    .unwrap();
    assert!(summary.interrupted);
    assert_eq!(
        summary.completed, 3,
        "one round of three finished by 150 ms"
    );
    assert!(summary.total < 5000, "the rest of the input was not read");
    assert_eq!(summary.total, summary.completed + summary.cancelled);
    assert_eq!(summary.failed, 0);
    assert_eq!(summary.cancellations.len() as u64, summary.cancelled);
    assert!(
        summary
            .cancellations
            .iter()
            .all(|(_, reason)| *reason == ephemeral::CancelReason::Shutdown)
    );

    let never = tokio_util::sync::CancellationToken::new();
    let summary = ephemeral::process_all_with_cancel(0..10u32, 2, never, |_: u32, _ctx| async {
        Ok::<_, Infallible>(())
    })
    .await
    .unwrap();
    assert!(!summary.interrupted);
    assert_eq!(summary.completed, 10);
}

/// Every coordinator type is a `CoordinatorHandle`, answering through its own methods.
#[tokio::test(start_paused = true)]
async fn every_coordinator_type_is_a_coordinator_handle() {
    use ephemeral::CoordinatorHandle;
    fn halve(c: &impl CoordinatorHandle) -> (usize, u64, String) {
        c.set_max_concurrency(c.max_concurrency() / 2).unwrap();
        (c.max_concurrency(), c.stats().accepted, c.id().to_string())
    }
    let ok = |_: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) };
    let options = || EphemeralOptions::default().max_concurrency(8).id("c");
    let work = ephemeral::EphemeralWorkCoordinator::new(ok, options()).unwrap();
    let keyed: EphemeralKeyedWorkCoordinator<u8, u32> =
        EphemeralKeyedWorkCoordinator::new(ok, options()).unwrap();
    let results = EphemeralResultCoordinator::new(
        |n: u32, _ctx: OperationContext| async move { Ok::<_, Infallible>(n) },
        options(),
    )
    .unwrap();
    let lanes = PriorityWorkCoordinator::new(ok, vec![Lane::new("only", 0)], options()).unwrap();
    keyed.pause();
    keyed.enqueue(1, 1).await.unwrap();
    assert_eq!(CoordinatorHandle::pending_count(&keyed), 1);
    assert_eq!(halve(&keyed), (4, 1, "c".to_string()));
    assert_eq!(halve(&work).0, 4);
    assert_eq!(halve(&results).0, 4);
    assert_eq!(halve(&lanes).0, 4);
    assert!(CoordinatorHandle::set_max_concurrency(&lanes, 0).is_err());
    keyed.resume();
    keyed.drain().await.unwrap();
    assert!(CoordinatorHandle::is_done(&keyed));
    assert!(!CoordinatorHandle::sink(&work).has_signal("*"));
}
