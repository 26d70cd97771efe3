//! Coordinators under real threads: several producers enqueue while workers go from busy to
//! waiting and back, so items are accepted both under the engine's lock and through its
//! inbox (without the lock, while every worker is busy), and the two meet `complete`,
//! `cancel` and workers that start to wait. Nothing may be lost or counted twice. Real time,
//! no timing asserted.

mod coordinator_support;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coordinator_support::{Gauge, assert_adds_up};
use ephemeral::{
    EnqueueError, EphemeralKeyedWorkCoordinator, EphemeralOptions, EphemeralWorkCoordinator,
    OperationId, OperationState,
};

/// Producers per coordinator.
const PRODUCERS: usize = 4;

/// A body that mostly returns at once and now and then yields, so workers keep running out
/// of work and waiting, then being handed more.
async fn sometimes_yield(item: usize, ran: &AtomicUsize, gauge: &Gauge) {
    let _in = gauge.enter();
    if item.is_multiple_of(7) {
        tokio::task::yield_now().await;
    }
    ran.fetch_add(1, Ordering::SeqCst);
}

/// A work coordinator running [`sometimes_yield`] with `options` (and room to track every
/// item), with the count of bodies run and their concurrency gauge.
fn counting(
    options: EphemeralOptions,
) -> (EphemeralWorkCoordinator<usize>, Arc<AtomicUsize>, Gauge) {
    let ran = Arc::new(AtomicUsize::new(0));
    let gauge = Gauge::default();
    let (body_ran, body_gauge) = (ran.clone(), gauge.clone());
    let c = EphemeralWorkCoordinator::new(
        move |item: usize, _ctx| {
            let (ran, gauge) = (body_ran.clone(), body_gauge.clone());
            async move {
                sometimes_yield(item, &ran, &gauge).await;
                Ok::<_, Infallible>(())
            }
        },
        options.max_tracked(100_000),
    )
    .unwrap();
    (c, ran, gauge)
}

/// [`PRODUCERS`] tasks enqueueing until the coordinator refuses as closed; once `started`
/// items were accepted, `close` is called under their feet. Returns every accepted id.
async fn produce_until(
    c: &EphemeralWorkCoordinator<usize>,
    started: u64,
    close: impl FnOnce(),
) -> Vec<OperationId> {
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0.. {
                    match c.enqueue(p * 1_000_000 + i).await {
                        Ok(id) => ids.push(id),
                        Err(EnqueueError::Closed(_)) => break,
                        Err(e) => panic!("unexpected refusal: {e}"),
                    }
                }
                ids
            })
        })
        .collect();
    // Let the producers get going (and the inbox open), then close under their feet.
    while c.stats().accepted < started {
        tokio::task::yield_now().await;
    }
    close();
    let mut ids = Vec::new();
    for p in producers {
        ids.extend(p.await.unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_from_racing_producers_runs_exactly_once() {
    for round in 0..20 {
        let limit = 1 + round % 4;
        let (c, ran, gauge) = counting(
            EphemeralOptions::default()
                .max_concurrency(limit)
                .max_pending(64),
        );
        let per_producer = 2_000;
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let c = c.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::with_capacity(per_producer);
                    for i in 0..per_producer {
                        ids.push(c.enqueue(p * per_producer + i).await.unwrap());
                        if i.is_multiple_of(97) {
                            // Let the workers drain and wait now and then.
                            tokio::task::yield_now().await;
                        }
                    }
                    ids
                })
            })
            .collect();
        let mut ids = HashSet::new();
        for p in producers {
            for id in p.await.unwrap() {
                assert!(ids.insert(id), "one id handed out twice");
            }
        }
        c.drain().await.unwrap();
        let total = PRODUCERS * per_producer;
        assert_eq!(ran.load(Ordering::SeqCst), total, "round {round}");
        let stats = c.stats();
        assert_eq!(stats.accepted, total as u64, "round {round}: {stats:?}");
        assert_eq!(stats.completed, total as u64, "round {round}: {stats:?}");
        assert_adds_up(&stats);
        assert!(gauge.peak() <= limit, "peak {} over {limit}", gauge.peak());
        for id in ids {
            let state = c.operation(id).map(|op| op.state);
            assert_eq!(state, Some(OperationState::Completed), "round {round}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_racing_complete_run_or_are_refused_never_lost() {
    for round in 0..20 {
        let (c, ran, _gauge) = counting(EphemeralOptions::default().max_concurrency(2));
        let accepted = produce_until(&c, 500 * (1 + round % 5) as u64, || c.complete())
            .await
            .len();
        c.drain().await.unwrap();
        let stats = c.stats();
        assert_eq!(stats.accepted, accepted as u64, "round {round}: {stats:?}");
        assert_eq!(stats.completed, accepted as u64, "round {round}: {stats:?}");
        assert_eq!(ran.load(Ordering::SeqCst), accepted, "round {round}");
        assert_adds_up(&stats);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_racing_cancel_end_in_exactly_one_terminal_state() {
    for round in 0..20 {
        let (c, ran, _gauge) = counting(EphemeralOptions::default().max_concurrency(3));
        let ids = produce_until(&c, 300 * (1 + round % 5) as u64, || c.cancel()).await;
        c.drain().await.unwrap();
        let stats = c.stats();
        assert_eq!(stats.accepted, ids.len() as u64, "round {round}: {stats:?}");
        assert_eq!(stats.pending + stats.running, 0, "round {round}: {stats:?}");
        assert_eq!(
            stats.completed + stats.cancelled,
            ids.len() as u64,
            "round {round}: {stats:?}"
        );
        assert_eq!(ran.load(Ordering::SeqCst) as u64, stats.completed);
        assert_adds_up(&stats);
        for id in ids {
            let state = c.operation(id).map(|op| op.state);
            assert!(
                matches!(
                    state,
                    Some(OperationState::Completed | OperationState::Cancelled(_))
                ),
                "round {round}: {id} is {state:?}"
            );
        }
    }
}

/// The keyed queue takes items through the inbox too: per-key order holds across both
/// ways in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_items_from_racing_producers_keep_their_order_per_key() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(usize, usize)>::new()));
    let body_seen = seen.clone();
    let c = EphemeralKeyedWorkCoordinator::new(
        move |(key, n): (usize, usize), _ctx| {
            let seen = body_seen.clone();
            async move {
                if n.is_multiple_of(5) {
                    tokio::task::yield_now().await;
                }
                seen.lock().unwrap().push((key, n));
                Ok::<_, Infallible>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .max_tracked(100_000),
    )
    .unwrap();
    // Each producer owns its keys, so each key's items are enqueued in one known order.
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let c = c.clone();
            tokio::spawn(async move {
                for n in 0..1_000 {
                    let key = p * 10 + n % 10;
                    c.enqueue(key, (key, n)).await.unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    c.drain().await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), PRODUCERS * 1_000);
    let mut last = std::collections::HashMap::new();
    for &(key, n) in seen.iter() {
        if let Some(prev) = last.insert(key, n) {
            assert!(prev < n, "key {key}: {n} ran after {prev}");
        }
    }
    assert_eq!(c.stats().completed, (PRODUCERS * 1_000) as u64);
}
