//! Model test: random mixes of operations; every accepted item ends in exactly one terminal
//! state, stats add up, bounds hold, per-key order holds, running never exceeds the limit.

mod coordinator_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordinator_support::{Gauge, assert_adds_up, settle};
use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralOptions, OperationContext, SignalSink};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Ok(u8),
    Err,
    Panic,
    IgnoreToken,
}

#[derive(Debug, Clone)]
enum Op {
    Enqueue(u8, Behaviour),
    CancelSignal(bool),
    CancelOne(usize),
    Pause,
    Resume,
    SetMax(usize),
    Advance(u16),
    Complete,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        6 => (0u8..20).prop_map(Behaviour::Ok),
        1 => Just(Behaviour::Err),
        1 => Just(Behaviour::Panic),
        1 => Just(Behaviour::IgnoreToken),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u8..4, behaviour()).prop_map(|(k, b)| Op::Enqueue(k, b)),
        1 => any::<bool>().prop_map(Op::CancelSignal),
        1 => (0usize..64).prop_map(Op::CancelOne),
        1 => Just(Op::Pause),
        1 => Just(Op::Resume),
        1 => (1usize..6).prop_map(Op::SetMax),
        3 => (0u16..30).prop_map(Op::Advance),
        1 => Just(Op::Complete),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Drain,
    Cancel,
    Drop,
}

fn run(ops: Vec<Op>, end: End) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let sink = SignalSink::default();
        let gauge = Gauge::default();
        let finals: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
        let starts: Arc<Mutex<Vec<(u8, u64)>>> = Arc::default();
        let (f, s, g) = (finals.clone(), starts.clone(), gauge.clone());
        let max_tracked = 8;
        let c = EphemeralKeyedWorkCoordinator::new(
            move |(key, b): (u8, Behaviour), ctx: OperationContext| {
                let (s, g) = (s.clone(), g.clone());
                async move {
                    let _in = g.enter();
                    s.lock().unwrap().push((key, ctx.id().as_u64()));
                    match b {
                        Behaviour::Ok(ms) => {
                            tokio::select! {
                                () = tokio::time::sleep(Duration::from_millis(u64::from(ms))) => Ok(()),
                                () = ctx.token().cancelled() => Err("cancelled"),
                            }
                        }
                        Behaviour::Err => Err("failed"),
                        Behaviour::Panic => panic!("model panic"),
                        Behaviour::IgnoreToken => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(())
                        }
                    }
                }
            },
            EphemeralOptions::default()
                .max_concurrency(3)
                .max_pending(16)
                .max_tracked(max_tracked)
                .signals(sink.clone())
                .cancel_on("model.cancel")
                .abort_grace(Duration::from_millis(10))
                .on_finalized(move |snap| {
                    *f.lock().unwrap().entry(snap.id.as_u64()).or_default() += 1;
                }),
        )
        .unwrap();
        let mut accepted = Vec::new();
        let mut hold = None;
        let mut max_limit = 3;
        for op in ops {
            match op {
                Op::Enqueue(k, b) => {
                    if let Ok(id) = c.try_enqueue(k, (k, b)) {
                        accepted.push(id);
                    }
                }
                Op::CancelSignal(on) => {
                    hold = if on { sink.hold("model.cancel").ok() } else { None };
                }
                Op::CancelOne(i) => {
                    if let Some(id) = accepted.get(i) {
                        c.cancel_operation(*id);
                    }
                }
                Op::Pause => c.pause(),
                Op::Resume => c.resume(),
                Op::SetMax(n) => {
                    c.set_max_concurrency(n).unwrap();
                    max_limit = max_limit.max(n);
                }
                Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(u64::from(ms))).await,
                Op::Complete => c.complete(),
            }
            settle().await;
            let stats = c.stats();
            assert_adds_up(&stats);
            assert_eq!(stats.accepted, accepted.len() as u64);
            // Every accepted operation is in the window or was evicted from it.
            assert_eq!(stats.tracked + stats.evicted, stats.accepted, "{stats:?}");
            assert!(gauge.peak() <= max_limit, "peak {} > {max_limit}", gauge.peak());
            assert!(stats.running <= max_limit as u64);
            let finished = c.snapshot().iter().filter(|s| s.state.is_finished()).count();
            assert!(finished <= max_tracked, "window holds {finished} finished");
        }
        drop(hold);
        c.resume();
        match end {
            End::Drain => c.drain().await.unwrap(),
            End::Cancel => {
                c.cancel();
                c.drain().await.unwrap();
            }
            End::Drop => {
                let sink2 = c.sink().clone();
                drop(c);
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(sink2);
                let finals = finals.lock().unwrap();
                for id in &accepted {
                    assert_eq!(finals.get(&id.as_u64()), Some(&1), "{id} ended once");
                }
                return;
            }
        }
        let stats = c.stats();
        assert_adds_up(&stats);
        assert_eq!(stats.tracked + stats.evicted, stats.accepted, "{stats:?}");
        assert_eq!(stats.pending + stats.running, 0);
        let finals = finals.lock().unwrap();
        assert_eq!(finals.len(), accepted.len());
        for id in &accepted {
            assert_eq!(finals.get(&id.as_u64()), Some(&1), "{id} ended exactly once");
        }
        // Per-key order: within a key, starts follow acceptance (ids increase).
        let starts = starts.lock().unwrap();
        for key in 0..4u8 {
            let ids: Vec<u64> = starts.iter().filter(|(k, _)| *k == key).map(|(_, i)| *i).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "key {key} order {ids:?}");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_item_ends_once_and_bounds_hold(
        ops in proptest::collection::vec(op(), 1..60),
        end in prop_oneof![Just(End::Drain), Just(End::Cancel), Just(End::Drop)],
    ) {
        run(ops, end);
    }
}
