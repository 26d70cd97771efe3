//! The sliding cache against a reference model: the same evictions, with the same reasons,
//! the same values and the same size after every step of a random workload.
//!
//! The model is the plain definition, written as scans over a list: on a miss into a full
//! cache, every expired entry goes first, then the least recently read one (ties, which the
//! paused clock makes common, go to the entry read or stored earliest). The cache must match
//! it while doing no scan at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral_atoms::cache::{CacheOptions, EvictionReason, SlidingCache};
use proptest::prelude::*;
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum Op {
    Get(u32),
    Peek(u32),
    Insert(u32, u32),
    Invalidate(u32),
    Purge,
    Clear,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..8).prop_map(Op::Get),
        2 => (0u32..8).prop_map(Op::Peek),
        1 => (0u32..8, 0u32..1000).prop_map(|(k, v)| Op::Insert(k, v)),
        1 => (0u32..8).prop_map(Op::Invalidate),
        1 => Just(Op::Purge),
        1 => Just(Op::Clear),
        // Zero often: many operations share one instant under the paused clock.
        4 => prop_oneof![Just(0u64), 1u64..40].prop_map(Op::Advance),
    ]
}

struct Entry {
    key: u32,
    value: u32,
    created: Instant,
    last_read: Instant,
    /// Order of the last read or store: the tie-break among equal `last_read`s.
    touched: u64,
}

struct Model {
    max_size: usize,
    sliding: Option<Duration>,
    absolute: Option<Duration>,
    entries: Vec<Entry>,
    touches: u64,
    evicted: Vec<(u32, EvictionReason)>,
}

impl Model {
    fn expired(&self, e: &Entry, now: Instant) -> bool {
        self.sliding.is_some_and(|t| now - e.last_read >= t)
            || self.absolute.is_some_and(|t| now - e.created >= t)
    }

    fn touch(&mut self) -> u64 {
        self.touches += 1;
        self.touches
    }

    fn remove_at(&mut self, at: usize, reason: EvictionReason) {
        let e = self.entries.remove(at);
        self.evicted.push((e.key, reason));
    }

    /// Removed by `invalidate`, `insert` or `clear`: explicit, unless it had expired already.
    fn remove_explicitly(&mut self, at: usize, now: Instant) {
        let reason = if self.expired(&self.entries[at], now) {
            EvictionReason::Expired
        } else {
            EvictionReason::Explicit
        };
        self.remove_at(at, reason);
    }

    fn position(&self, key: u32) -> Option<usize> {
        self.entries.iter().position(|e| e.key == key)
    }

    fn purge(&mut self, now: Instant) {
        let mut at = 0;
        while at < self.entries.len() {
            if self.expired(&self.entries[at], now) {
                self.remove_at(at, EvictionReason::Expired);
            } else {
                at += 1;
            }
        }
    }

    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.max_size {
            return;
        }
        self.purge(now);
        while self.entries.len() >= self.max_size {
            let (at, _) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.last_read, e.touched))
                .unwrap();
            self.remove_at(at, EvictionReason::Size);
        }
    }

    fn store(&mut self, key: u32, value: u32, now: Instant) {
        let touched = self.touch();
        self.entries.push(Entry {
            key,
            value,
            created: now,
            last_read: now,
            touched,
        });
    }

    /// A live value, marked read; an expired one is evicted.
    fn read(&mut self, key: u32, now: Instant) -> Option<u32> {
        let at = self.position(key)?;
        if self.expired(&self.entries[at], now) {
            self.remove_at(at, EvictionReason::Expired);
            return None;
        }
        let touched = self.touch();
        let e = &mut self.entries[at];
        e.last_read = now;
        e.touched = touched;
        Some(e.value)
    }

    fn get(&mut self, key: u32, now: Instant) -> u32 {
        if let Some(v) = self.read(key, now) {
            return v;
        }
        self.make_room(now);
        self.store(key, key * 10, now);
        key * 10
    }

    fn insert(&mut self, key: u32, value: u32, now: Instant) {
        if let Some(at) = self.position(key) {
            self.remove_explicitly(at, now);
        }
        self.make_room(now);
        self.store(key, value, now);
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_cache_evicts_exactly_as_the_reference_model(
        max_size in 1usize..6,
        sliding in proptest::option::of(1u64..60),
        absolute in proptest::option::of(1u64..90),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        paused_runtime().block_on(async move {
            let mut options = CacheOptions::default().max_size(max_size);
            if let Some(ms) = sliding {
                options = options.sliding(Duration::from_millis(ms));
            }
            if let Some(ms) = absolute {
                options = options.absolute(Duration::from_millis(ms));
            }
            let mut cache = SlidingCache::new(options, |key: u32| async move {
                Ok::<u32, String>(key * 10)
            })
            .unwrap();
            let seen: Arc<Mutex<Vec<(u32, EvictionReason)>>> = Arc::default();
            let s = seen.clone();
            assert!(cache.on_evict(move |k, _, reason| s.lock().unwrap().push((*k, reason))));
            let mut model = Model {
                max_size,
                sliding: sliding.map(Duration::from_millis),
                absolute: absolute.map(Duration::from_millis),
                entries: Vec::new(),
                touches: 0,
                evicted: Vec::new(),
            };
            for (step, op) in ops.into_iter().enumerate() {
                let now = Instant::now();
                match op {
                    Op::Get(k) => {
                        let got = cache.get(k).await.unwrap();
                        prop_assert_eq!(got, model.get(k, now), "step {} get {}", step, k);
                    }
                    Op::Peek(k) => {
                        let got = cache.get_if_present(&k);
                        prop_assert_eq!(got, model.read(k, now), "step {} peek {}", step, k);
                    }
                    Op::Insert(k, v) => {
                        cache.insert(k, v);
                        model.insert(k, v, now);
                    }
                    Op::Invalidate(k) => {
                        let removed = cache.invalidate(&k);
                        let at = model.position(k);
                        // `true` only for a value a read could have found.
                        let live = at.is_some_and(|at| !model.expired(&model.entries[at], now));
                        prop_assert_eq!(removed, live);
                        if let Some(at) = at {
                            model.remove_explicitly(at, now);
                        }
                    }
                    Op::Purge => {
                        let n = cache.purge_expired();
                        let before = model.evicted.len();
                        model.purge(now);
                        prop_assert_eq!(n, model.evicted.len() - before);
                    }
                    Op::Clear => {
                        let n = cache.clear();
                        let live = model
                            .entries
                            .iter()
                            .filter(|e| !model.expired(e, now))
                            .count();
                        prop_assert_eq!(n, live);
                        while !model.entries.is_empty() {
                            model.remove_explicitly(0, now);
                        }
                    }
                    Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                }
                // Same evictions in this step (expired ones may be found in another order
                // within one purge; size evictions are checked exactly through the contents).
                let mut got = std::mem::take(&mut *seen.lock().unwrap());
                let mut want = std::mem::take(&mut model.evicted);
                got.sort_by_key(|(k, r)| (*k, r.as_str()));
                want.sort_by_key(|(k, r)| (*k, r.as_str()));
                prop_assert_eq!(got, want, "step {}", step);
                prop_assert_eq!(cache.len(), model.entries.len(), "step {}", step);
                prop_assert!(cache.len() <= max_size);
            }
            let stats = cache.stats();
            prop_assert_eq!(stats.len, model.entries.len());
            Ok(())
        })?;
    }
}

/// Size evictions follow read order exactly, even when every read happened in one instant.
#[tokio::test(start_paused = true)]
async fn ties_in_one_instant_evict_in_read_order() {
    let mut cache = SlidingCache::new(CacheOptions::default().max_size(4), |key: u32| async move {
        Ok::<u32, String>(key)
    })
    .unwrap();
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let s = seen.clone();
    assert!(cache.on_evict(move |k, _, _| s.lock().unwrap().push(*k)));
    for key in [1, 2, 3, 4] {
        cache.get(key).await.unwrap();
    }
    for key in [3, 1, 4, 2] {
        cache.get(key).await.unwrap();
    }
    for key in 5..9 {
        cache.get(key).await.unwrap();
    }
    assert_eq!(*seen.lock().unwrap(), [3, 1, 4, 2]);
}
