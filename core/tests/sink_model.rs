//! Model test of the sink: random mixes of raises (with and without a time to live), holds,
//! releases, retracts, clears, capacity and max-age changes and clock advances, checked
//! after every step against a plain list of signals: every query's answer, the stats and
//! their invariants, what a subscription hands out, and when a watch wakes up for an
//! expiry nobody else looks at.

use std::time::Duration;

use ephemeral::{Buffer, Hold, Pattern, Signal, SignalSink, SinkOptions};
use futures::FutureExt;
use proptest::prelude::*;
use tokio::time::Instant;

const NAMES: [&str; 5] = ["a", "a.b", "a.b.c", "b.c", "c"];
const PATTERNS: [&str; 7] = ["*", "a", "a*", "a.+", "b.*,c", "?", "sink.*"];

#[derive(Debug, Clone)]
enum Op {
    Raise(usize, Option<u16>),
    Hold(usize),
    Release(usize),
    Retract(usize),
    Clear(usize),
    SetCapacity(usize),
    SetMaxAge(u16),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..NAMES.len(), proptest::option::of(1u16..400)).prop_map(|(n, t)| Op::Raise(n, t)),
        2 => (0..NAMES.len()).prop_map(Op::Hold),
        2 => (0usize..8).prop_map(Op::Release),
        2 => (0..NAMES.len()).prop_map(Op::Retract),
        1 => (0..PATTERNS.len()).prop_map(Op::Clear),
        1 => (1usize..7).prop_map(Op::SetCapacity),
        1 => (1u16..400).prop_map(Op::SetMaxAge),
        5 => (0u16..250).prop_map(Op::Advance),
    ]
}

/// One signal as the model keeps it.
#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    name: String,
    at: Instant,
    /// Its own expiry (a time to live under the max age in force when raised).
    expires: Option<Instant>,
    /// The max age in force when it was raised: what a subscription's buffer expires it by.
    age_at_raise: Duration,
    held: bool,
}

#[derive(Debug, Default)]
struct Counts {
    raised: u64,
    expired: u64,
    evicted: u64,
    retracted: u64,
    cleared: u64,
}

struct Model {
    capacity: usize,
    max_age: Duration,
    seq: u64,
    /// Live raised signals and held conditions, by sequence.
    live: Vec<Entry>,
    /// Everything a subscription on `*` made at the start was pushed.
    pushed: Vec<Entry>,
    counts: Counts,
}

impl Model {
    fn is_live(&self, e: &Entry, now: Instant) -> bool {
        e.held || (now < e.at + self.max_age && e.expires.is_none_or(|x| now < x))
    }

    fn purge(&mut self, now: Instant) {
        let before = self.live.len();
        let live: Vec<Entry> = self
            .live
            .iter()
            .filter(|e| self.is_live(e, now))
            .cloned()
            .collect();
        self.counts.expired += (before - live.len()) as u64;
        self.live = live;
    }

    fn raised_len(&self) -> usize {
        self.live.iter().filter(|e| !e.held).count()
    }

    fn evict_to_capacity(&mut self) {
        while self.raised_len() > self.capacity {
            let oldest = self
                .live
                .iter()
                .position(|e| !e.held)
                .expect("a raised one");
            self.live.remove(oldest);
            self.counts.evicted += 1;
        }
    }

    fn raise(&mut self, now: Instant, name: &str, ttl: Option<Duration>) -> u64 {
        self.purge(now);
        self.seq += 1;
        let entry = Entry {
            seq: self.seq,
            name: name.to_string(),
            at: now,
            expires: ttl.filter(|t| *t < self.max_age).map(|t| now + t),
            age_at_raise: self.max_age,
            held: false,
        };
        self.live.push(entry.clone());
        self.pushed.push(entry);
        self.counts.raised += 1;
        self.evict_to_capacity();
        self.seq
    }

    fn hold(&mut self, now: Instant, name: &str) -> u64 {
        self.purge(now);
        self.seq += 1;
        let entry = Entry {
            seq: self.seq,
            name: name.to_string(),
            at: now,
            expires: None,
            age_at_raise: self.max_age,
            held: true,
        };
        self.live.push(entry.clone());
        self.pushed.push(entry);
        self.seq
    }

    /// When the first live signal matching `pattern` runs out of time, if one will.
    fn next_expiry(&self, pattern: &str, now: Instant) -> Option<Instant> {
        let p = Pattern::new(pattern);
        self.live
            .iter()
            .filter(|e| !e.held && self.is_live(e, now) && p.matches(&e.name))
            .map(|e| {
                let aged = e.at + self.max_age;
                e.expires.map_or(aged, |x| x.min(aged))
            })
            .min()
    }

    fn matching(&self, pattern: &str, now: Instant) -> Vec<u64> {
        let p = Pattern::new(pattern);
        self.live
            .iter()
            .filter(|e| self.is_live(e, now) && p.matches(&e.name))
            .map(|e| e.seq)
            .collect()
    }
}

fn seqs(signals: &[Signal]) -> Vec<u64> {
    signals.iter().map(Signal::sequence).collect()
}

fn run(ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let sink = SignalSink::new(
            SinkOptions::default()
                .capacity(4)
                .max_age(Duration::from_millis(200)),
        )
        .unwrap();
        let mut sub = sink.subscribe_with("*", Buffer::Unbounded);
        const WATCHED: &str = "a*";
        let mut watch = sink.watch(WATCHED);
        let mut model = Model {
            capacity: 4,
            max_age: Duration::from_millis(200),
            seq: 0,
            live: Vec::new(),
            pushed: Vec::new(),
            counts: Counts::default(),
        };
        let mut holds: Vec<(u64, Hold)> = Vec::new();
        let mut read: Vec<u64> = Vec::new();
        for op in ops {
            let now = Instant::now();
            match op {
                Op::Raise(n, ttl) => {
                    let ttl = ttl.map(|ms| Duration::from_millis(u64::from(ms)));
                    let mut builder = Signal::build(NAMES[n]).unwrap();
                    if let Some(t) = ttl {
                        builder = builder.expires_in(t);
                    }
                    let got = sink.raise_with(builder).unwrap().sequence();
                    assert_eq!(got, model.raise(now, NAMES[n], ttl), "{op:?}");
                }
                Op::Hold(n) => {
                    let hold = sink.hold(NAMES[n]).unwrap();
                    let seq = model.hold(now, NAMES[n]);
                    assert_eq!(hold.signal().sequence(), seq);
                    holds.push((seq, hold));
                }
                Op::Release(i) => {
                    if i < holds.len() {
                        let (seq, hold) = holds.remove(i);
                        hold.release();
                        model.live.retain(|e| e.seq != seq);
                    }
                }
                Op::Retract(n) => {
                    model.purge(now);
                    let before = model.live.len();
                    model.live.retain(|e| e.held || e.name != NAMES[n]);
                    let removed = before - model.live.len();
                    model.counts.retracted += removed as u64;
                    assert_eq!(sink.retract(NAMES[n]), removed, "{op:?}");
                }
                Op::Clear(p) => {
                    model.purge(now);
                    let pattern = Pattern::new(PATTERNS[p]);
                    let before = model.live.len();
                    model.live.retain(|e| e.held || !pattern.matches(&e.name));
                    let removed = before - model.live.len();
                    model.counts.cleared += removed as u64;
                    if removed > 0 {
                        model.raise(now, "sink.cleared", None);
                    }
                    assert_eq!(sink.clear_matching(PATTERNS[p]), removed, "{op:?}");
                }
                Op::SetCapacity(c) => {
                    sink.set_capacity(c).unwrap();
                    model.purge(now);
                    model.capacity = c;
                    model.evict_to_capacity();
                }
                Op::SetMaxAge(ms) => {
                    let age = Duration::from_millis(u64::from(ms));
                    sink.set_max_age(age).unwrap();
                    model.purge(now);
                    model.max_age = age;
                    model.purge(now);
                }
                Op::Advance(ms) => {
                    let end = now + Duration::from_millis(u64::from(ms));
                    // Changes so far are seen; the next one is the first expiry among the
                    // watched matches, which the watch must wake up for on time by itself
                    // (nothing else touches the sink while it waits).
                    let _ = watch.changed().now_or_never();
                    match model.next_expiry(WATCHED, now).filter(|at| *at <= end) {
                        Some(at) => {
                            let woke = tokio::time::timeout_at(end, watch.changed()).await;
                            assert!(woke.is_ok(), "the watch missed the expiry at {at:?}");
                            assert_eq!(Instant::now(), at, "the watch woke at the wrong time");
                            tokio::time::advance(end - at).await;
                        }
                        None => tokio::time::advance(end - now).await,
                    }
                }
            }
            let now = Instant::now();
            for pattern in PATTERNS {
                let want = model.matching(pattern, now);
                assert_eq!(seqs(&sink.sense(pattern)), want, "sense({pattern})");
                assert_eq!(sink.count(pattern), want.len(), "count({pattern})");
                assert_eq!(sink.has_signal(pattern), !want.is_empty(), "has({pattern})");
                assert_eq!(
                    sink.latest(pattern).map(|s| s.sequence()),
                    want.last().copied(),
                    "latest({pattern})"
                );
            }
            model.purge(now);
            assert_eq!(sink.len(), model.live.len());
            let stats = sink.stats();
            assert_eq!(
                stats.raised,
                stats.live as u64 + stats.expired + stats.evicted + stats.retracted + stats.cleared,
                "{stats:?}"
            );
            assert_eq!(
                stats.holds_acquired,
                stats.held as u64 + stats.holds_released
            );
            assert_eq!(stats.held, holds.len());
            assert_eq!(stats.live, model.raised_len(), "{stats:?}");
            let c = &model.counts;
            assert_eq!(
                (
                    stats.raised,
                    stats.expired,
                    stats.evicted,
                    stats.retracted,
                    stats.cleared
                ),
                (c.raised, c.expired, c.evicted, c.retracted, c.cleared),
                "{stats:?}"
            );
            assert!(stats.window_slots <= 2 * stats.live + 64);
            // The subscription hands out, in order, what was pushed after it was made, less
            // what ran out of time while it waited (its own expiry, or the max age in force
            // when it was raised); holds never run out.
            while let Some(item) = sub.try_recv() {
                read.push(item.expect("an unbounded buffer never lags").sequence());
            }
            let want: Vec<u64> = model
                .pushed
                .iter()
                .filter(|e| {
                    read.contains(&e.seq)
                        || e.held
                        || (now < e.at + e.age_at_raise && e.expires.is_none_or(|x| now < x))
                })
                .map(|e| e.seq)
                .collect();
            assert_eq!(read, want, "subscription");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_sink_agrees_with_a_list_of_signals(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
