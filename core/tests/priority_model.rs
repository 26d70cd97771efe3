//! Model test of the priority coordinator: random mixes of enqueues into lanes (some with a
//! max depth, one deferred by a signal now and then), explicit cancels, pauses, concurrency
//! changes and clock advances. Whenever a body starts, no item of a higher lane waits
//! (deferred ones aside), and none of its own priority accepted earlier; lane depths and refusals follow each lane's `max_depth`; every accepted item
//! ends exactly once and the stats add up.

mod coordinator_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use coordinator_support::{assert_adds_up, settle};
use ephemeral::{
    EnqueueError, EphemeralOptions, Lane, OperationContext, OperationState,
    PriorityWorkCoordinator, SignalSink,
};
use proptest::prelude::*;

/// Name, priority, max depth.
const LANES: [(&str, i32, Option<usize>); 4] = [
    ("hi", 10, Some(3)),
    ("mid", 5, None),
    ("mid2", 5, Some(4)),
    ("lo", 0, Some(2)),
];

#[derive(Debug, Clone)]
enum Op {
    Enqueue(usize, u8),
    CancelOne(usize),
    Pause,
    Resume,
    SetMax(usize),
    Advance(u8),
    /// Takes or releases the hold that defers lane `mid2`.
    Defer(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..LANES.len(), 0u8..20).prop_map(|(l, ms)| Op::Enqueue(l, ms)),
        1 => (0usize..40).prop_map(Op::CancelOne),
        1 => Just(Op::Pause),
        2 => Just(Op::Resume),
        1 => (1usize..4).prop_map(Op::SetMax),
        4 => (0u8..30).prop_map(Op::Advance),
        1 => any::<bool>().prop_map(Op::Defer),
    ]
}

fn priority(lane: &str) -> i32 {
    LANES
        .iter()
        .find(|(n, ..)| *n == lane)
        .map(|l| l.1)
        .unwrap()
}

type Coordinator = PriorityWorkCoordinator<(usize, u8)>;

fn run(ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let sink = SignalSink::default();
        let mut hold = None;
        let cell: Arc<OnceLock<Coordinator>> = Arc::default();
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        let finals: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
        let (seen, bad, f) = (cell.clone(), violations.clone(), finals.clone());
        let c = PriorityWorkCoordinator::new(
            move |(lane, ms): (usize, u8), ctx: OperationContext| {
                // A deferred lane starts nothing.
                if LANES[lane].0 == "mid2" && ctx.has_signal("mid2.busy") {
                    bad.lock()
                        .unwrap()
                        .push(format!("{} started in a deferred lane", ctx.id()));
                }
                // At its start, nothing that should start first still waits.
                if let Some(c) = seen.get() {
                    let me = priority(LANES[lane].0);
                    for op in c.snapshot() {
                        if op.state != OperationState::Pending {
                            continue;
                        }
                        let theirs = priority(op.key.as_deref().unwrap());
                        if theirs > me || (theirs == me && op.id < ctx.id()) {
                            bad.lock().unwrap().push(format!(
                                "{} ({}) started while {} ({:?}) waited",
                                ctx.id(),
                                LANES[lane].0,
                                op.id,
                                op.key
                            ));
                        }
                    }
                }
                async move {
                    tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
                    Ok::<_, std::convert::Infallible>(())
                }
            },
            LANES
                .iter()
                .map(|&(name, prio, depth)| {
                    let mut lane = Lane::new(name, prio);
                    if name == "mid2" {
                        lane = lane.defer_on("mid2.busy");
                    }
                    match depth {
                        Some(d) => lane.max_depth(d),
                        None => lane,
                    }
                })
                .collect(),
            EphemeralOptions::default()
                .signals(sink.clone())
                .max_concurrency(1)
                .max_pending(12)
                .on_finalized(move |snap| {
                    *f.lock().unwrap().entry(snap.id.as_u64()).or_default() += 1;
                }),
        )
        .unwrap();
        assert!(cell.set(c.clone()).is_ok());
        let mut accepted = Vec::new();
        for op in ops {
            match op {
                Op::Enqueue(lane, ms) => {
                    let (name, _, depth) = LANES[lane];
                    let before = c.lane_depth(name);
                    match c.try_enqueue(name, (lane, ms)) {
                        Ok(id) => accepted.push(id),
                        Err(EnqueueError::Refused { lane: refused, .. }) => {
                            assert_eq!(&*refused, name);
                            assert_eq!(Some(before), depth, "refused below its max depth");
                        }
                        Err(EnqueueError::Full(_)) => {
                            assert_eq!(c.pending_count(), 12, "full below max_pending");
                        }
                        Err(other) => panic!("unexpected refusal {other:?}"),
                    }
                }
                Op::CancelOne(i) => {
                    if let Some(id) = accepted.get(i) {
                        c.cancel_operation(*id);
                    }
                }
                Op::Pause => c.pause(),
                Op::Resume => c.resume(),
                Op::SetMax(n) => c.set_max_concurrency(n).unwrap(),
                Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(u64::from(ms))).await,
                Op::Defer(on) => {
                    hold = if on {
                        sink.hold("mid2.busy").ok()
                    } else {
                        None
                    }
                }
            }
            settle().await;
            let stats = c.stats();
            assert_adds_up(&stats);
            assert_eq!(stats.accepted, accepted.len() as u64);
            let snapshot = c.snapshot();
            for (name, _, depth) in LANES {
                let waiting = snapshot
                    .iter()
                    .filter(|s| {
                        matches!(s.state, OperationState::Pending | OperationState::Deferred)
                    })
                    .filter(|s| s.key.as_deref() == Some(name))
                    .count();
                assert_eq!(c.lane_depth(name), waiting, "lane_depth({name})");
                assert!(depth.is_none_or(|d| waiting <= d), "{name} past its depth");
            }
        }
        drop(hold);
        c.resume();
        c.set_max_concurrency(1).unwrap();
        c.drain().await.unwrap();
        let stats = c.stats();
        assert_adds_up(&stats);
        assert_eq!(stats.pending + stats.running, 0);
        let finals = finals.lock().unwrap();
        for id in &accepted {
            assert_eq!(
                finals.get(&id.as_u64()),
                Some(&1),
                "{id} ended exactly once"
            );
        }
        let violations = violations.lock().unwrap();
        assert!(violations.is_empty(), "{violations:?}");
    });
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn higher_lanes_start_first_and_every_item_ends_once(
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(ops);
    }
}
