//! The cache's table: entries in recency order, expiry checks, eviction and the shared
//! computations.
//!
//! Every operation on one key costs O(1) (hash lookups and linked-list moves), and eviction
//! never scans the table: the least recently read entry is the front of a linked map, entries
//! past their sliding expiry form a prefix of that same order, and entries past their
//! absolute expiry are found from the front of a creation-order queue. Finding expired
//! entries therefore costs O(1) per entry evicted.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use ephemeral::Signal;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use hashlink::LinkedHashMap;
use tokio::time::Instant;

use super::{CacheError, CacheOptions, CacheStats, EvictionCallbackFailure, EvictionReason};

pub(super) type Factory<K, V, E> = Arc<dyn Fn(K) -> BoxFuture<'static, Result<V, E>> + Send + Sync>;
pub(super) type Load<V, E> = Shared<BoxFuture<'static, Result<V, CacheError<E>>>>;
pub(super) type OnEvict<K, V> = Arc<dyn Fn(&K, &V, EvictionReason) + Send + Sync>;

/// A computed value.
pub(super) struct Entry<V> {
    pub(super) value: V,
    pub(super) created: Instant,
    pub(super) last_read: Instant,
    /// Tells this entry apart from an earlier or later one for the same key in `created`.
    stamp: u64,
}

/// A computation in flight.
pub(super) struct Loading<V, E> {
    generation: u64,
    load: Load<V, E>,
}

pub(super) struct State<K, V, E> {
    /// Computed values, least recently read first: a read or a store moves its entry to the
    /// back. Reads and stores happen at non-decreasing instants of tokio's clock, so this is
    /// also `last_read` order: the front is the size-eviction victim, and the entries past
    /// their sliding expiry are a prefix.
    ready: LinkedHashMap<K, Entry<V>>,
    /// Computations in flight: at most one per key, never in `ready` at the same time.
    loading: HashMap<K, Loading<V, E>>,
    /// With an absolute expiry: `(created, stamp, key)` for every stored value, in creation
    /// (hence `created`) order. Records of values since replaced or removed are skipped when
    /// met, and the queue is compacted when it outgrows twice the live entries, so it stays
    /// O(entries) and compaction is amortised O(1) per store.
    created: VecDeque<(Instant, u64, K)>,
    /// Source of load generations and entry stamps.
    generation: u64,
    pub(super) stats: CacheStats,
}

pub(super) struct Inner<K, V, E> {
    pub(super) factory: Factory<K, V, E>,
    pub(super) options: CacheOptions,
    pub(super) on_evict: Option<OnEvict<K, V>>,
    /// Panics of `on_evict`; outside `state`, since callbacks run after the lock is released.
    pub(super) callback_failures: AtomicU64,
    pub(super) state: Mutex<State<K, V, E>>,
}

/// An eviction to report once the lock is released.
pub(super) type Evicted<K, V> = (K, V, EvictionReason);

/// What a read found.
pub(super) enum Step<K, V, E> {
    Hit(V),
    Join(Load<V, E>),
    Miss(Load<V, E>, Vec<Evicted<K, V>>),
}

impl<K, V, E> Inner<K, V, E> {
    pub(super) fn state(&self) -> MutexGuard<'_, State<K, V, E>> {
        // Every update leaves the table consistent before any call that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, entry: &Entry<V>, now: Instant) -> bool {
        self.options
            .sliding
            .is_some_and(|ttl| past(entry.last_read, ttl, now))
            || self
                .options
                .absolute
                .is_some_and(|ttl| past(entry.created, ttl, now))
    }

    pub(super) fn raise(&self, name: &str, reason: Option<EvictionReason>) {
        let Some(sink) = &self.options.sink else {
            return;
        };
        let Ok(mut builder) = Signal::build(name) else {
            return;
        };
        if let Some(key) = &self.options.name {
            builder = builder.key(key.clone());
        }
        if let Some(reason) = reason {
            builder = builder.header("reason", reason.as_str());
        }
        // Reporting must never fail a read.
        let _ = sink.raise_with(builder);
    }

    /// Runs the callback and raises the signals, outside the lock.
    pub(super) fn report(&self, evicted: Vec<Evicted<K, V>>) {
        for (key, value, reason) in evicted {
            if let Some(on_evict) = &self.on_evict {
                // A panicking callback must not poison a read: it is counted, logged and
                // handed to the error callback, and the next eviction is reported as usual.
                let called =
                    std::panic::catch_unwind(AssertUnwindSafe(|| on_evict(&key, &value, reason)));
                if let Err(panic) = called {
                    self.callback_failed(reason, panic_message(panic.as_ref()));
                }
            }
            self.raise("cache.evict", Some(reason));
        }
    }

    fn callback_failed(&self, reason: EvictionReason, message: String) {
        // Relaxed: a statistic; it orders nothing.
        self.callback_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%reason, panic = %message, "cache eviction callback panicked");
        if let Some(on_error) = &self.options.on_error {
            let failure = EvictionCallbackFailure { reason, message };
            // The error callback is user code too: its panic goes no further.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| on_error(&failure)));
        }
    }
}

fn past(from: Instant, ttl: Duration, now: Instant) -> bool {
    now.saturating_duration_since(from) >= ttl
}

impl<K, V, E> State<K, V, E>
where
    K: Hash + Eq + Clone,
{
    pub(super) fn new() -> Self {
        Self {
            ready: LinkedHashMap::new(),
            loading: HashMap::new(),
            created: VecDeque::new(),
            generation: 0,
            stats: CacheStats::default(),
        }
    }

    /// Entries now: values and computations in flight.
    pub(super) fn len(&self) -> usize {
        self.ready.len() + self.loading.len()
    }

    fn count(&mut self, reason: EvictionReason) {
        match reason {
            EvictionReason::Expired => self.stats.expired += 1,
            EvictionReason::Size => self.stats.evicted_size += 1,
            EvictionReason::Explicit => self.stats.evicted_explicit += 1,
        }
    }

    fn evicted(
        &mut self,
        key: K,
        entry: Entry<V>,
        reason: EvictionReason,
        out: &mut Vec<Evicted<K, V>>,
    ) {
        self.count(reason);
        out.push((key, entry.value, reason));
    }

    /// Removes `key`'s computed value, if any.
    pub(super) fn remove(&mut self, key: &K, reason: EvictionReason, out: &mut Vec<Evicted<K, V>>) {
        if let Some((key, entry)) = self.ready.remove_entry(key) {
            self.evicted(key, entry, reason, out);
        }
    }

    /// Stores a value for `key` at the back of the recency order. The caller made room and
    /// removed any earlier value or computation for the key.
    fn store(&mut self, key: K, value: V, now: Instant, absolute: bool) {
        self.generation += 1;
        let stamp = self.generation;
        if absolute {
            self.created.push_back((now, stamp, key.clone()));
        }
        self.ready.insert(
            key,
            Entry {
                value,
                created: now,
                last_read: now,
                stamp,
            },
        );
        // Compacted only once the new value is in `ready`: its own record must survive,
        // or it would never be found expired by `purge` (nor dropped first when full).
        if absolute && self.created.len() > 2 * self.ready.len() + 64 {
            let ready = &self.ready;
            self.created
                .retain(|(_, stamp, key)| ready.get(key).is_some_and(|e| e.stamp == *stamp));
        }
    }

    /// Starts tracking a computation for `key`; returns its generation.
    pub(super) fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    pub(super) fn start_loading(&mut self, key: K, generation: u64, load: Load<V, E>) {
        self.loading.insert(key, Loading { generation, load });
    }

    /// The computation in flight for `key`, if any.
    pub(super) fn loading(&self, key: &K) -> Option<Load<V, E>> {
        self.loading.get(key).map(|l| l.load.clone())
    }
}

impl<K, V, E> Inner<K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// A live value for `key`, marked as read now; an expired one is evicted into `out`.
    pub(super) fn read(
        &self,
        state: &mut State<K, V, E>,
        key: &K,
        now: Instant,
        out: &mut Vec<Evicted<K, V>>,
    ) -> Option<V> {
        // Moved to the back first: read or expired, that is where it belongs (and an expired
        // entry is then removed from the back in O(1)).
        let entry = state.ready.to_back(key)?;
        if self.expired(entry, now) {
            if let Some((key, entry)) = state.ready.pop_back() {
                state.evicted(key, entry, EvictionReason::Expired, out);
            }
            return None;
        }
        entry.last_read = now;
        let value = entry.value.clone();
        state.stats.hits += 1;
        Some(value)
    }

    /// Removes `key`'s value, if any, reported as `reason`, or as expired if it was past its
    /// expiry already (not yet found by a read, it was no longer a value anyone could read).
    pub(super) fn remove(
        &self,
        state: &mut State<K, V, E>,
        key: &K,
        reason: EvictionReason,
        now: Instant,
        out: &mut Vec<Evicted<K, V>>,
    ) {
        if let Some((key, entry)) = state.ready.remove_entry(key) {
            let reason = self.removal_reason(&entry, now, reason);
            state.evicted(key, entry, reason, out);
        }
    }

    /// `reason`, or expired for a value past its expiry already.
    fn removal_reason(
        &self,
        entry: &Entry<V>,
        now: Instant,
        reason: EvictionReason,
    ) -> EvictionReason {
        if self.expired(entry, now) {
            EvictionReason::Expired
        } else {
            reason
        }
    }

    /// Removes every computed value, least recently read first: explicit, or expired for a
    /// value past its expiry already.
    pub(super) fn clear(
        &self,
        state: &mut State<K, V, E>,
        now: Instant,
        out: &mut Vec<Evicted<K, V>>,
    ) {
        while let Some((key, entry)) = state.ready.pop_front() {
            let reason = self.removal_reason(&entry, now, EvictionReason::Explicit);
            state.evicted(key, entry, reason, out);
        }
        state.created.clear();
    }

    /// Stores `value` for `key` now: replaces a value (reported as explicit, or as expired if
    /// it was past its expiry) or overrides a computation in flight (whose result is then
    /// discarded), else makes room first.
    pub(super) fn insert(
        &self,
        state: &mut State<K, V, E>,
        key: K,
        value: V,
        now: Instant,
        out: &mut Vec<Evicted<K, V>>,
    ) {
        self.remove(state, &key, EvictionReason::Explicit, now, out);
        if state.loading.remove(&key).is_none() {
            self.make_room(state, now, out);
        } else {
            self.make_room_for_value(state, now, out);
        }
        state.store(key, value, now, self.options.absolute.is_some());
    }

    /// Evicts every expired value, in O(1) per value evicted.
    pub(super) fn purge(
        &self,
        state: &mut State<K, V, E>,
        now: Instant,
        out: &mut Vec<Evicted<K, V>>,
    ) {
        if let Some(ttl) = self.options.sliding {
            while state
                .ready
                .front()
                .is_some_and(|(_, e)| past(e.last_read, ttl, now))
            {
                if let Some((key, entry)) = state.ready.pop_front() {
                    state.evicted(key, entry, EvictionReason::Expired, out);
                }
            }
        }
        if let Some(ttl) = self.options.absolute {
            while state
                .created
                .front()
                .is_some_and(|(created, _, _)| past(*created, ttl, now))
            {
                let Some((_, stamp, key)) = state.created.pop_front() else {
                    break;
                };
                if state.ready.get(&key).is_some_and(|e| e.stamp == stamp) {
                    state.remove(&key, EvictionReason::Expired, out);
                }
            }
        }
    }

    /// Frees one place if the cache is full: expired values first, then abandoned
    /// computations (no request is waiting on them), then the least recently read value.
    pub(super) fn make_room(
        &self,
        state: &mut State<K, V, E>,
        now: Instant,
        out: &mut Vec<Evicted<K, V>>,
    ) {
        if state.len() < self.options.max_size {
            return;
        }
        self.purge(state, now, out);
        if state.len() >= self.options.max_size {
            // Only the table holds an abandoned load's future: nobody awaits its result.
            // O(computations in flight), which is bounded by the concurrent distinct requests.
            state
                .loading
                .retain(|_, l| l.load.strong_count().is_some_and(|n| n > 1));
        }
        // Only computations in flight may be left: they finish and are bounded by the
        // number of concurrent distinct requests.
        self.evict_least_recent(state, out, |s| s.len());
    }

    /// Evicts the least recently read values while `count` is at the bound (or none is left).
    fn evict_least_recent(
        &self,
        state: &mut State<K, V, E>,
        out: &mut Vec<Evicted<K, V>>,
        count: impl Fn(&State<K, V, E>) -> usize,
    ) {
        while count(state) >= self.options.max_size {
            let Some((key, entry)) = state.ready.pop_front() else {
                break;
            };
            state.evicted(key, entry, EvictionReason::Size, out);
        }
    }

    /// Frees one place for a value taking over a computation's place, if values alone fill
    /// the cache: expired values first, then the least recently read one.
    ///
    /// A miss made room for its computation, so this evicts nothing unless more distinct keys
    /// were computing at once than the cache holds. Only values are counted: the other
    /// computations in flight cannot be evicted, and making room for them too would evict
    /// every value as soon as it is stored while they run.
    fn make_room_for_value(
        &self,
        state: &mut State<K, V, E>,
        now: Instant,
        out: &mut Vec<Evicted<K, V>>,
    ) {
        if state.ready.len() < self.options.max_size {
            return;
        }
        self.purge(state, now, out);
        self.evict_least_recent(state, out, |s| s.ready.len());
    }
}

/// The shared computation for `key`: calls the factory, catches a panic, and stores the
/// value if the slot still waits for this generation.
pub(super) fn load<K, V, E>(inner: &Arc<Inner<K, V, E>>, key: K, generation: u64) -> Load<V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    let factory = inner.factory.clone();
    let weak: Weak<Inner<K, V, E>> = Arc::downgrade(inner);
    async move {
        let outcome = AssertUnwindSafe(async { factory(key.clone()).await })
            .catch_unwind()
            .await;
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(CacheError::Factory(Arc::new(e))),
            Err(panic) => Err(CacheError::Panicked(panic_message(panic.as_ref()))),
        };
        if let Some(inner) = weak.upgrade() {
            complete(&inner, key, generation, &result);
        }
        result
    }
    .boxed()
    .shared()
}

fn complete<K: Hash + Eq + Clone, V: Clone, E>(
    inner: &Inner<K, V, E>,
    key: K,
    generation: u64,
    result: &Result<V, CacheError<E>>,
) {
    let now = Instant::now();
    let mut evicted = Vec::new();
    {
        let mut state = inner.state();
        let ours = matches!(
            state.loading.get(&key),
            Some(Loading { generation: g, .. }) if *g == generation
        );
        if !ours {
            // Replaced by an insert while computing: the newer value wins. A failure still
            // reached this computation's requests, so it is counted all the same.
            if result.is_err() {
                state.stats.load_failures += 1;
            }
            return;
        }
        state.loading.remove(&key);
        match result {
            Ok(value) => {
                // The computation held a place, but values stored meanwhile by other
                // computations may have filled the cache since.
                inner.make_room_for_value(&mut state, now, &mut evicted);
                state.store(key, value.clone(), now, inner.options.absolute.is_some());
            }
            Err(_) => state.stats.load_failures += 1,
        }
    }
    inner.report(evicted);
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
