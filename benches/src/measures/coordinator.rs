//! Work coordinators against a 16-task pool, a semaphore with a spawn per item, and tower.
//!
//! Our side is the two `ours_*` functions just below; each returns `None` (printed as
//! `"ours": null`) only if the coordinator refused to start or lost an item.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralOptions, EphemeralWorkCoordinator};

use tokio::runtime::Runtime;

use super::{Config, measured, runtime};
use crate::baselines::pool;
use crate::report::Measurement;
use crate::stats::per_second;
use crate::turns::alternate;

/// Concurrency of every side.
const CONCURRENCY: usize = 16;
/// The baselines' intake bound (the coordinator's default `max_pending` is 1024 as well).
const BOUND: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Ours.
// ---------------------------------------------------------------------------------------------

/// Our side of the `coord_noop_*` measurements: `items` no-op items through an
/// `EphemeralWorkCoordinator` with `max_concurrency(16)` and tracking on (the default window),
/// enqueued from `rt.block_on`, then `drain().await`. Returns the time from the first enqueue
/// to the end of the drain; `None` if the coordinator refused to start or lost an item.
pub fn ours_noop(rt: &Runtime, items: usize) -> Option<Duration> {
    ours_noop_tracking(rt, items, true)
}

/// [`ours_noop`] with the window's tracking on or off (off: finished operations are not kept,
/// stats still are).
pub fn ours_noop_tracking(rt: &Runtime, items: usize, tracking: bool) -> Option<Duration> {
    rt.block_on(async {
        let c = EphemeralWorkCoordinator::new(
            |item: usize, _ctx| async move {
                pool::noop(item).await;
                Ok::<_, Infallible>(())
            },
            EphemeralOptions::default()
                .max_concurrency(CONCURRENCY)
                .tracking(tracking),
        )
        .ok()?;
        let start = Instant::now();
        for i in 0..items {
            c.enqueue(i).await.ok()?;
        }
        c.drain().await.ok()?;
        let elapsed = start.elapsed();
        (c.stats().completed == items as u64).then_some(elapsed)
    })
}

/// Our side of `keyed_1000_vs_pool16`: `keys × per_key` no-op items through an
/// `EphemeralKeyedWorkCoordinator` with concurrency 16 and one at a time per key, enqueued
/// interleaved (item `i` has key `i % keys`), then drained.
pub fn ours_keyed(rt: &Runtime, keys: usize, per_key: usize) -> Option<Duration> {
    ours_keyed_by(rt, keys, per_key, |k| k)
}

/// As [`ours_keyed`] with `String` keys (`"user-<n>"`, each enqueue handing over a clone of a
/// rendered key, as a caller keeping its keys would): what a key that allocates costs.
pub fn ours_keyed_text(rt: &Runtime, keys: usize, per_key: usize) -> Option<Duration> {
    let names: Vec<String> = (0..keys).map(|k| format!("user-{k}")).collect();
    ours_keyed_by(rt, keys, per_key, |k| names[k].clone())
}

/// [`ours_keyed`] with item `i`'s key made by `key(i % keys)`.
fn ours_keyed_by<K>(
    rt: &Runtime,
    keys: usize,
    per_key: usize,
    key: impl Fn(usize) -> K,
) -> Option<Duration>
where
    K: std::hash::Hash + Eq + Clone + std::fmt::Display + Send + Sync + 'static,
{
    rt.block_on(async {
        let c = EphemeralKeyedWorkCoordinator::new(
            |item: usize, _ctx| async move {
                pool::noop(item).await;
                Ok::<_, Infallible>(())
            },
            EphemeralOptions::default().max_concurrency(CONCURRENCY),
        )
        .ok()?;
        let items = keys * per_key;
        let start = Instant::now();
        for i in 0..items {
            c.enqueue(key(i % keys), i).await.ok()?;
        }
        c.drain().await.ok()?;
        let elapsed = start.elapsed();
        (c.stats().completed == items as u64).then_some(elapsed)
    })
}

/// Our side of `coord_service_vs_tower`: `CoordinatorLayer` (concurrency 16, 1,024 pending)
/// over a no-op `service_fn`, driven by `clients` tasks that each call it in turn, as
/// [`pool::tower_buffer_limit`] drives tower's `Buffer` + `ConcurrencyLimit`.
pub fn ours_service(rt: &Runtime, items: usize, clients: usize) -> Option<Duration> {
    use tower::{Layer, Service, ServiceExt};
    rt.block_on(async {
        let inner = tower::service_fn(|item: usize| async move {
            pool::noop(item).await;
            Ok::<_, Infallible>(())
        });
        let service = ephemeral::CoordinatorLayer::new(
            EphemeralOptions::default()
                .max_concurrency(CONCURRENCY)
                .max_pending(BOUND),
        )
        .layer(inner);
        let start = Instant::now();
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let mut svc = service.clone();
                let share = (c..items).step_by(clients);
                tokio::spawn(async move {
                    let mut ran = 0;
                    for item in share {
                        svc.ready().await.ok()?.call(item).await.ok()?;
                        ran += 1;
                    }
                    Some(ran)
                })
            })
            .collect();
        let mut ran = 0;
        for h in handles {
            ran += h.await.ok()??;
        }
        let elapsed = start.elapsed();
        (ran == items).then_some(elapsed)
    })
}

/// Runs `items` no-op items through [`ours_noop`] and prints the rate: ours alone, for a
/// profiler. Returns the exit code (1 if the coordinator lost items).
pub fn coord_loop(items: usize) -> i32 {
    report_loop("coord-loop", items, ours_noop(&runtime(), items))
}

/// [`coord_loop`] with tracking off, for a profiler. Returns the exit code (1 if the
/// coordinator lost items).
pub fn coord_untracked_loop(items: usize) -> i32 {
    report_loop(
        "coord-untracked-loop",
        items,
        ours_noop_tracking(&runtime(), items, false),
    )
}

/// The baseline of [`coord_loop`]: `items` no-op items through the 16-task pool of
/// `coord_noop_vs_pool16`, alone, for a profiler to count against ours. Returns the exit code
/// (1 if the pool lost items).
pub fn pool_loop(items: usize) -> i32 {
    let rt = runtime();
    let start = Instant::now();
    let ran = rt.block_on(pool::channel_pool(0..items, CONCURRENCY, BOUND));
    report_loop("pool-loop", items, (ran == items).then(|| start.elapsed()))
}

/// Runs 1,000 keys × `per_key` items through [`ours_keyed`] and prints the rate: ours alone,
/// for a profiler. Returns the exit code (1 if the coordinator lost items).
pub fn keyed_loop(per_key: usize) -> i32 {
    report_loop(
        "keyed-loop",
        1000 * per_key,
        ours_keyed(&runtime(), 1000, per_key),
    )
}

/// Runs 100 `String` keys × `per_key` items through [`ours_keyed_text`] and prints the rate:
/// ours alone, for a profiler. With 100 keys and 1,024 items pending, most pushes find their
/// key already there (waiting or running), the case a key's clone costs most. Returns the
/// exit code (1 if the coordinator lost items).
pub fn keyed_text_loop(per_key: usize) -> i32 {
    report_loop(
        "keyed-text-loop",
        100 * per_key,
        ours_keyed_text(&runtime(), 100, per_key),
    )
}

/// Runs `items` calls through [`ours_service`] (16 clients) and prints the rate: ours alone,
/// for a profiler. Returns the exit code (1 if a call failed).
pub fn service_loop(items: usize) -> i32 {
    report_loop(
        "service-loop",
        items,
        ours_service(&runtime(), items, CONCURRENCY),
    )
}

/// Runs `items` calls through tower's `Buffer(1024)` + `ConcurrencyLimit(16)` (16 clients,
/// the baseline of `coord_service_vs_tower` and `coord_noop_vs_tower`) and prints the rate:
/// the baseline alone, for a profiler to count against [`service_loop`] and [`coord_loop`].
/// Returns the exit code (1 if a call failed).
pub fn tower_loop(items: usize) -> i32 {
    let rt = runtime();
    let start = Instant::now();
    let took = (tower_baseline(&rt, items) == items).then(|| start.elapsed());
    report_loop("tower-loop", items, took)
}

/// The tower baseline of the tower lines: `items` no-op calls through `Buffer(1024)` +
/// `ConcurrencyLimit(16)` from 16 clients; how many ran (0 if a call failed).
fn tower_baseline(rt: &Runtime, items: usize) -> usize {
    rt.block_on(pool::tower_buffer_limit(
        items,
        CONCURRENCY,
        BOUND,
        CONCURRENCY,
    ))
    .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The measurements.
// ---------------------------------------------------------------------------------------------

const NOT_YET: &str = "ours: the coordinator refused to start or lost items";

/// Prints a profiling loop's rate (`took` for `items`), or why it could not run; the exit
/// code (1 if it could not).
fn report_loop(name: &str, items: usize, took: Option<Duration>) -> i32 {
    match took {
        Some(d) => {
            println!("{name} {:.0} items/s", per_second(items, d));
            0
        }
        None => {
            eprintln!("{name}: {NOT_YET}");
            1
        }
    }
}

/// Runs one baseline turn, checking that it ran every item.
fn checked(ran: usize, items: usize, what: &str) {
    assert_eq!(ran, items, "{what} lost items");
}

/// A baseline: runs `items` no-op items and returns how many it ran.
type Baseline = fn(&Runtime, usize) -> usize;

/// Our no-op work coordinator (tracking on or off) against `baseline`, in alternating turns;
/// items per second.
fn noop_measurement(
    cfg: &Config,
    name: &'static str,
    tracking: bool,
    (description, baseline): (&'static str, Baseline),
    target: f64,
) -> Measurement {
    let rt = runtime();
    let items = cfg.pick(1_000_000, 100_000);
    let turns = alternate(
        cfg.turns(),
        || ours_noop_tracking(&rt, items, tracking).map(|d| per_second(items, d)),
        || {
            let start = Instant::now();
            let ran = baseline(&rt, items);
            let rate = per_second(items, start.elapsed());
            checked(ran, items, description);
            rate
        },
    );
    note_missing(measured(name, "items/s", description, &turns, true, target))
}

const POOL16: (&str, Baseline) = ("16 tasks on async_channel::bounded(1024)", |rt, items| {
    rt.block_on(pool::channel_pool(0..items, CONCURRENCY, BOUND))
});

/// Ours versus 16 tasks on `async_channel::bounded(1024)`; items per second.
pub fn noop_vs_pool16(cfg: &Config) -> Measurement {
    noop_measurement(cfg, "coord_noop_vs_pool16", true, POOL16, 0.5)
}

/// Ours with tracking off versus the same pool; items per second. Not in DESIGN's table: it
/// shows what the window costs.
pub fn noop_untracked_vs_pool16(cfg: &Config) -> Measurement {
    noop_measurement(cfg, "coord_noop_untracked_vs_pool16", false, POOL16, 0.5)
}

/// Ours versus `Semaphore(16)` + `tokio::spawn` per item; items per second.
pub fn noop_vs_spawn(cfg: &Config) -> Measurement {
    let spawn: (&str, Baseline) = ("Semaphore(16) + tokio::spawn per item", |rt, items| {
        rt.block_on(pool::semaphore_spawn(items, CONCURRENCY))
    });
    noop_measurement(cfg, "coord_noop_vs_spawn", true, spawn, 2.0)
}

/// Ours versus tower `Buffer(1024)` + `ConcurrencyLimit(16)` with 16 client tasks; items per
/// second.
pub fn noop_vs_tower(cfg: &Config) -> Measurement {
    let tower: (&str, Baseline) = (
        "tower Buffer(1024) + ConcurrencyLimit(16), 16 client tasks",
        tower_baseline,
    );
    noop_measurement(cfg, "coord_noop_vs_tower", true, tower, 1.2)
}

/// `CoordinatorLayer` versus tower `Buffer(1024)` + `ConcurrencyLimit(16)`, both as services
/// called by 16 client tasks; calls per second.
pub fn service_vs_tower(cfg: &Config) -> Measurement {
    let rt = runtime();
    let items = cfg.pick(200_000, 20_000);
    let description = "tower Buffer(1024) + ConcurrencyLimit(16), 16 client tasks";
    let turns = alternate(
        cfg.turns(),
        || ours_service(&rt, items, CONCURRENCY).map(|d| per_second(items, d)),
        || {
            let start = Instant::now();
            let ran = tower_baseline(&rt, items);
            let rate = per_second(items, start.elapsed());
            checked(ran, items, description);
            rate
        },
    );
    note_missing(measured(
        "coord_service_vs_tower",
        "calls/s",
        description,
        &turns,
        true,
        1.0,
    ))
}

/// Keyed, 1,000 keys × 1,000 interleaved items, one at a time per key, versus the same 16-task
/// pool (which keeps no per-key order); items per second.
pub fn keyed_1000_vs_pool16(cfg: &Config) -> Measurement {
    let rt = runtime();
    let keys = 1000;
    let per_key = cfg.pick(1000, 100);
    let items = keys * per_key;
    let turns = alternate(
        cfg.turns(),
        || ours_keyed(&rt, keys, per_key).map(|d| per_second(items, d)),
        || {
            let start = Instant::now();
            let work = (0..items).map(|i| (i % keys, i / keys));
            let ran = rt.block_on(pool::channel_pool(work, CONCURRENCY, BOUND));
            let rate = per_second(items, start.elapsed());
            checked(ran, items, "the keyed pool");
            rate
        },
    );
    note_missing(measured(
        "keyed_1000_vs_pool16",
        "items/s",
        "16 tasks on async_channel::bounded(1024), (key, item) pairs, no per-key order",
        &turns,
        true,
        0.4,
    ))
}

fn note_missing(mut m: Measurement) -> Measurement {
    if m.ours.is_none() {
        m.note = Some(NOT_YET.to_owned());
    }
    m
}
