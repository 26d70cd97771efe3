//! The signal sink against a `Mutex<VecDeque>` window, a wildcard scan and `broadcast`: all
//! wired to the real [`SignalSink`].

use std::hint::black_box;
use std::time::{Duration, Instant};

use ephemeral::{Buffer, SignalSink, SinkOptions};

use super::{Config, measured, runtime};
use crate::baselines::fanout::{self, FanoutReceiver, Received};
use crate::baselines::window::MutexWindow;
use crate::report::Measurement;
use crate::stats::{nanos_per_op, per_second};
use crate::turns::{alternate, alternate_both};

/// Distinct names the raise and query workloads cycle through.
const NAMES: usize = 100;
const MAX_AGE: Duration = Duration::from_secs(60);

/// `metric.n0` .. `metric.n99`: the names raised; none matches `error.*`.
fn names() -> Vec<String> {
    (0..NAMES).map(|i| format!("metric.n{i}")).collect()
}

fn sink(capacity: usize) -> SignalSink {
    SignalSink::new(SinkOptions::default().capacity(capacity).max_age(MAX_AGE))
        .expect("capacity and age are valid")
}

/// `raise` on one thread, no subscribers, default capacity (1000), versus the same names
/// pushed into `Mutex<VecDeque<(String, Instant)>>` of capacity 1000.
pub fn raise_1t(cfg: &Config) -> Measurement {
    let n = cfg.pick(1_000_000, 200_000);
    let names = names();
    let turns = alternate(
        cfg.turns(),
        || {
            let sink = sink(1000);
            let start = Instant::now();
            for i in 0..n {
                let _ = black_box(sink.raise(&names[i % NAMES]));
            }
            Some(per_second(n, start.elapsed()))
        },
        || {
            let window = MutexWindow::new(1000, MAX_AGE);
            let start = Instant::now();
            for i in 0..n {
                window.raise(&names[i % NAMES]);
            }
            black_box(&window);
            per_second(n, start.elapsed())
        },
    );
    measured(
        "raise_1t_vs_mutex_vecdeque",
        "ops/s",
        "Mutex<VecDeque<(String, Instant)>>, capacity 1000, one thread",
        &turns,
        true,
        1.0,
    )
}

/// Raises `n` times over 100 names on a default-capacity sink and prints the rate: ours
/// alone, for a profiler.
pub fn raise_loop(n: usize) {
    let names = names();
    let sink = sink(1000);
    let start = Instant::now();
    for i in 0..n {
        let _ = black_box(sink.raise(&names[i % NAMES]));
    }
    println!("raise-loop {:.0} ops/s", per_second(n, start.elapsed()));
}

/// The baseline of [`raise_loop`]: the same names pushed `n` times into the
/// `Mutex<VecDeque<(String, Instant)>>` of `raise_1t_vs_mutex_vecdeque`, alone, for a
/// profiler to count against ours.
pub fn window_loop(n: usize) {
    let names = names();
    let window = MutexWindow::new(1000, MAX_AGE);
    let start = Instant::now();
    for i in 0..n {
        window.raise(&names[i % NAMES]);
    }
    black_box(&window);
    println!("window-loop {:.0} ops/s", per_second(n, start.elapsed()));
}

/// `raise` from two OS threads on one sink versus the same baseline from two threads; total
/// operations per second.
pub fn raise_2t(cfg: &Config) -> Measurement {
    let n = cfg.pick(1_000_000, 200_000);
    let names = names();
    let two_threads = |raise: &(dyn Fn(&str) + Sync)| {
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..2 {
                let names = &names;
                s.spawn(move || {
                    for i in (t..n).step_by(2) {
                        raise(&names[i % NAMES]);
                    }
                });
            }
        });
        per_second(n, start.elapsed())
    };
    let turns = alternate(
        cfg.turns(),
        || {
            let sink = sink(1000);
            Some(two_threads(&|name| {
                let _ = black_box(sink.raise(name));
            }))
        },
        || {
            let window = MutexWindow::new(1000, MAX_AGE);
            two_threads(&|name| window.raise(name))
        },
    );
    measured(
        "raise_2t_vs_mutex_vecdeque",
        "ops/s",
        "Mutex<VecDeque<(String, Instant)>>, capacity 1000, two threads",
        &turns,
        true,
        1.0,
    )
}

/// A sink of `live` signals over 100 names, all live.
fn filled_sink(live: usize) -> SignalSink {
    let sink = sink(live);
    let names = names();
    for i in 0..live {
        let _ = sink.raise(&names[i % NAMES]);
    }
    sink
}

/// Nanoseconds per `has_signal("error.*")` over `queries` queries (asserting no match).
fn query_ns(sink: &SignalSink, queries: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..queries {
        assert!(!black_box(sink.has_signal(black_box("error.*"))));
    }
    nanos_per_op(queries, start.elapsed())
}

/// `has_signal("error.*")` with 100,000 live signals over 100 names and no match, versus a
/// `*`/`?` wildcard scan of a 100,000-entry window.
pub fn has_signal_100k_vs_scan(cfg: &Config) -> Measurement {
    let live = 100_000;
    let ours_sink = filled_sink(live);
    assert_eq!(ours_sink.len(), live, "every signal is live");
    let window = MutexWindow::new(live, MAX_AGE);
    let names = names();
    for i in 0..live {
        window.raise(&names[i % NAMES]);
    }
    let (ours_q, scan_q) = (cfg.pick(1_000_000, 100_000), cfg.pick(50, 10));
    let turns = alternate(
        cfg.turns(),
        || Some(query_ns(&ours_sink, ours_q)),
        || {
            let start = Instant::now();
            for _ in 0..scan_q {
                assert!(!black_box(window.has_match(black_box("error.*"))));
            }
            nanos_per_op(scan_q, start.elapsed())
        },
    );
    measured(
        "has_signal_100k_vs_scan",
        "ns/query",
        "*/? wildcard scan of Mutex<VecDeque<(String, Instant)>>, 100,000 entries",
        &turns,
        false,
        1000.0,
    )
}

/// The same query at 100,000 live signals (ours) versus at 1,000 (the baseline, also ours):
/// how little the query cost grows with the window.
pub fn has_signal_1k_vs_100k(cfg: &Config) -> Measurement {
    let big = filled_sink(100_000);
    let small = filled_sink(1_000);
    let q = cfg.pick(1_000_000, 100_000);
    let turns = alternate_both(cfg.turns(), || query_ns(&big, q), || query_ns(&small, q));
    measured(
        "has_signal_1k_vs_100k",
        "ns/query",
        "ours: has_signal(\"error.*\") at 1,000 live signals, 100 names",
        &turns,
        false,
        0.67,
    )
}

/// A sink subscription as a fan-out receiver.
impl FanoutReceiver for ephemeral::Subscription {
    async fn next(&mut self) -> Received {
        match self.recv().await {
            Some(Ok(signal)) => {
                black_box(signal);
                Received::Item
            }
            Some(Err(lagged)) => Received::Lagged(lagged.count()),
            None => Received::Closed,
        }
    }
}

/// Receivers, the per-receiver buffer and the batch of the fan-out measurements.
pub(crate) const FANOUT_RECEIVERS: usize = 4;
pub(crate) const FANOUT_BUFFER: usize = 1024;
pub(crate) const FANOUT_BATCH: u64 = 256;

/// The `broadcast` side of the fan-out measurements: the payload is a real [`ephemeral::Signal`]
/// (what a subscriber receives), cloned per send.
pub(crate) fn broadcast_turn(rt: &tokio::runtime::Runtime, messages: u64) -> (f64, u64) {
    let payload = SignalSink::default()
        .raise("bench.fanout")
        .expect("a valid name");
    let out = rt.block_on(fanout::broadcast(
        payload,
        FANOUT_RECEIVERS,
        FANOUT_BUFFER,
        messages,
        FANOUT_BATCH,
    ));
    let lost = out.lagged + (messages * FANOUT_RECEIVERS as u64 - out.delivered - out.lagged);
    (per_second(messages as usize, out.elapsed), lost)
}

/// One turn of our side of the fan-out: messages per second and how many were lost.
fn sink_fanout_turn(rt: &tokio::runtime::Runtime, messages: u64) -> (f64, u64) {
    let sink = sink(1000);
    let subs: Vec<_> = (0..FANOUT_RECEIVERS)
        .map(|_| sink.subscribe_with("bench.*", Buffer::bounded(FANOUT_BUFFER).expect("not zero")))
        .collect();
    let out = rt.block_on(fanout::run(subs, messages, FANOUT_BATCH, async || {
        let _ = sink.raise("bench.fanout");
    }));
    let lost = out.lagged + (messages * FANOUT_RECEIVERS as u64 - out.delivered - out.lagged);
    (per_second(messages as usize, out.elapsed), lost)
}

/// Runs our fan-out of `messages` messages once and prints the rate: ours alone, for a
/// profiler.
pub fn fanout_loop(messages: u64) {
    let (rate, lost) = sink_fanout_turn(&runtime(), messages);
    println!("fanout-loop {rate:.0} msg/s, {lost} lost");
}

/// The baseline of [`fanout_loop`]: `tokio::sync::broadcast` with the same payload, harness
/// and receivers, alone, for a profiler to count against ours.
pub fn broadcast_loop(messages: u64) {
    let (rate, lost) = broadcast_turn(&runtime(), messages);
    println!("broadcast-loop {rate:.0} msg/s, {lost} lost");
}

/// Sink subscription fan-out to 4 subscribers with zero lag, versus `tokio::sync::broadcast`
/// with the same payload, both lossless by the same batching harness; messages per second.
pub fn fanout4_vs_broadcast(cfg: &Config) -> Measurement {
    let rt = runtime();
    let messages = cfg.pick(500_000, 100_000) as u64;
    let mut lost = (0u64, 0u64);
    let turns = alternate(
        cfg.turns(),
        || {
            let (rate, l) = sink_fanout_turn(&rt, messages);
            lost.0 += l;
            Some(rate)
        },
        || {
            let (rate, l) = broadcast_turn(&rt, messages);
            lost.1 += l;
            rate
        },
    );
    let mut m = measured(
        "fanout4_vs_broadcast",
        "msg/s",
        "tokio::sync::broadcast(1024), 4 receivers, lossless, Signal payload",
        &turns,
        true,
        0.8,
    );
    if lost != (0, 0) {
        m.note = Some(format!(
            "messages lost (ours, baseline): {lost:?}; the comparison is not lossless"
        ));
    }
    m
}
