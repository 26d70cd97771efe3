//! The sliding cache: single-flight loads, exact expiry, bounded size.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use ephemeral::Signal;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

use super::{CacheConfigError, CacheError, CacheOptions, CacheStats, EvictionReason};

type Factory<K, V, E> = Arc<dyn Fn(K) -> BoxFuture<'static, Result<V, E>> + Send + Sync>;
type Load<V, E> = Shared<BoxFuture<'static, Result<V, CacheError<E>>>>;
type OnEvict<K, V> = Arc<dyn Fn(&K, &V, EvictionReason) + Send + Sync>;

enum Slot<V, E> {
    Ready {
        value: V,
        created: Instant,
        last_read: Instant,
    },
    Loading {
        generation: u64,
        load: Load<V, E>,
    },
}

struct State<K, V, E> {
    slots: HashMap<K, Slot<V, E>>,
    generation: u64,
    stats: CacheStats,
}

struct Inner<K, V, E> {
    factory: Factory<K, V, E>,
    options: CacheOptions,
    on_evict: Option<OnEvict<K, V>>,
    state: Mutex<State<K, V, E>>,
}

/// Values computed on demand by an async factory, kept until they expire or the cache is
/// full.
///
/// * **One computation per key at a time**: concurrent [`get`](SlidingCache::get)s for a
///   missing key share one factory call. The call runs inside the requests that await it
///   (if every one of them is dropped, the next request for the key drives it on).
/// * **An expired value is never returned** (the .NET original can return one): every read
///   checks the entry's sliding and absolute expiry against tokio's clock, and an expired
///   entry is evicted and computed again.
/// * **Bounded**: at most `max_size` entries; a full cache first drops expired entries,
///   then the least recently read one (an O(entries) scan per eviction, so keep `max_size`
///   in the thousands, not millions).
/// * **Evictions are reported** with their [`EvictionReason`] to the
///   [`on_evict`](SlidingCache::on_evict) callback and as `cache.evict` signals; reads raise
///   `cache.hit` / `cache.miss`; [`stats`](SlidingCache::stats) counts everything.
///
/// Expired entries are found when read, when the cache is full, or by
/// [`purge_expired`](SlidingCache::purge_expired) (call it from a timer if you want prompt
/// eviction callbacks). Factory errors are not cached. Values are cloned out, so wrap large
/// ones in an `Arc`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_atoms::cache::{CacheOptions, SlidingCache};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let prices = SlidingCache::new(
///     CacheOptions::default().sliding(Duration::from_secs(30)).max_size(10_000),
///     |sku: String| async move { Ok::<u32, std::io::Error>(sku.len() as u32 * 100) },
/// )?;
/// assert_eq!(prices.get("apple".to_owned()).await?, 500); // computed
/// assert_eq!(prices.get("apple".to_owned()).await?, 500); // cached
/// assert_eq!(prices.stats().hits, 1);
///
/// tokio::time::advance(Duration::from_secs(31)).await;
/// assert_eq!(prices.get_if_present(&"apple".to_owned()), None); // expired, never returned
/// # Ok(())
/// # }
/// ```
pub struct SlidingCache<K, V, E> {
    inner: Arc<Inner<K, V, E>>,
}

impl<K, V, E> Clone for SlidingCache<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, E> fmt::Debug for SlidingCache<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state();
        f.debug_struct("SlidingCache")
            .field("options", &self.inner.options)
            .field("stats", &state.stats)
            .finish()
    }
}

/// An eviction to report once the lock is released.
type Evicted<K, V> = (K, V, EvictionReason);

/// What a read found.
enum Step<K, V, E> {
    Hit(V),
    Join(Load<V, E>),
    Miss(Load<V, E>, Vec<Evicted<K, V>>),
}

impl<K, V, E> Inner<K, V, E> {
    fn state(&self) -> MutexGuard<'_, State<K, V, E>> {
        // Every update leaves the table consistent before any call that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, created: Instant, last_read: Instant, now: Instant) -> bool {
        let past = |from: Instant, ttl| now.saturating_duration_since(from) >= ttl;
        self.options.sliding.is_some_and(|ttl| past(last_read, ttl))
            || self.options.absolute.is_some_and(|ttl| past(created, ttl))
    }

    fn raise(&self, name: &str, reason: Option<EvictionReason>) {
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
    fn report(&self, evicted: Vec<Evicted<K, V>>) {
        for (key, value, reason) in evicted {
            if let Some(on_evict) = &self.on_evict {
                // A panicking callback must not poison a read; it is logged and skipped.
                let called =
                    std::panic::catch_unwind(AssertUnwindSafe(|| on_evict(&key, &value, reason)));
                if called.is_err() {
                    tracing::warn!(%reason, "cache eviction callback panicked");
                }
            }
            self.raise("cache.evict", Some(reason));
        }
    }
}

impl<K, V, E> State<K, V, E>
where
    K: Hash + Eq + Clone,
{
    fn count(&mut self, reason: EvictionReason) {
        match reason {
            EvictionReason::Expired => self.stats.expired += 1,
            EvictionReason::Size => self.stats.evicted_size += 1,
            EvictionReason::Explicit => self.stats.evicted_explicit += 1,
        }
    }

    fn remove(&mut self, key: &K, reason: EvictionReason, out: &mut Vec<Evicted<K, V>>) {
        if let Some(Slot::Ready { value, .. }) = self.slots.remove(key) {
            self.count(reason);
            out.push((key.clone(), value, reason));
        }
    }
}

impl<K, V, E> SlidingCache<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// A cache computing missing values with `factory`.
    ///
    /// # Errors
    ///
    /// [`CacheConfigError`] for a `max_size` of 0 or a zero expiry.
    pub fn new<F, Fut>(options: CacheOptions, factory: F) -> Result<Self, CacheConfigError>
    where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        options.validate()?;
        let factory: Factory<K, V, E> = Arc::new(move |key| factory(key).boxed());
        Ok(Self {
            inner: Arc::new(Inner {
                factory,
                options,
                on_evict: None,
                state: Mutex::new(State {
                    slots: HashMap::new(),
                    generation: 0,
                    stats: CacheStats::default(),
                }),
            }),
        })
    }

    /// Calls `callback(key, value, reason)` for every eviction (outside the cache's lock; a
    /// panic in it is caught and logged). Set it before sharing the cache: it applies to
    /// this handle's cache only if no clone exists yet, else it is ignored and `false` is
    /// returned.
    #[must_use = "false means the callback was not installed"]
    pub fn on_evict(
        &mut self,
        callback: impl Fn(&K, &V, EvictionReason) + Send + Sync + 'static,
    ) -> bool {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                inner.on_evict = Some(Arc::new(callback));
                true
            }
            None => false,
        }
    }

    /// The value for `key`: the cached one if live, else computed once by the factory for
    /// all concurrent requests.
    ///
    /// # Errors
    ///
    /// [`CacheError`] when the factory failed or panicked (nothing is cached then).
    pub async fn get(&self, key: K) -> Result<V, CacheError<E>> {
        // The lock lives only in `lookup`, never across an await.
        match self.lookup(key) {
            Step::Hit(value) => {
                self.inner.raise("cache.hit", None);
                Ok(value)
            }
            Step::Join(load) => load.await,
            Step::Miss(load, evicted) => {
                self.inner.report(evicted);
                self.inner.raise("cache.miss", None);
                load.await
            }
        }
    }

    fn lookup(&self, key: K) -> Step<K, V, E> {
        let now = Instant::now();
        let mut evicted = Vec::new();
        let mut state = self.inner.state();
        let mut stale = false;
        match state.slots.get_mut(&key) {
            Some(Slot::Ready {
                value,
                created,
                last_read,
            }) => {
                if self.inner.expired(*created, *last_read, now) {
                    stale = true;
                } else {
                    *last_read = now;
                    let value = value.clone();
                    state.stats.hits += 1;
                    return Step::Hit(value);
                }
            }
            Some(Slot::Loading { load, .. }) => {
                let load = load.clone();
                state.stats.coalesced += 1;
                return Step::Join(load);
            }
            None => {}
        }
        if stale {
            state.remove(&key, EvictionReason::Expired, &mut evicted);
        }
        state.stats.misses += 1;
        self.make_room(&mut state, now, &mut evicted);
        state.generation += 1;
        let generation = state.generation;
        let load = self.load(key.clone(), generation);
        state.slots.insert(
            key,
            Slot::Loading {
                generation,
                load: load.clone(),
            },
        );
        Step::Miss(load, evicted)
    }

    /// The live cached value for `key`, without computing anything (an expired entry is
    /// evicted and `None` returned). Counts as a hit when found, not as a miss otherwise.
    pub fn get_if_present(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let mut evicted = Vec::new();
        let found = {
            let mut state = self.inner.state();
            match state.slots.get_mut(key) {
                Some(Slot::Ready {
                    value,
                    created,
                    last_read,
                }) => {
                    if self.inner.expired(*created, *last_read, now) {
                        state.remove(key, EvictionReason::Expired, &mut evicted);
                        None
                    } else {
                        *last_read = now;
                        let value = value.clone();
                        state.stats.hits += 1;
                        Some(value)
                    }
                }
                _ => None,
            }
        };
        self.inner.report(evicted);
        if found.is_some() {
            self.inner.raise("cache.hit", None);
        }
        found
    }

    /// Stores `value` for `key` now (replacing a cached value, reported as explicit, or
    /// overriding a computation in flight, whose result is then discarded).
    pub fn insert(&self, key: K, value: V) {
        let now = Instant::now();
        let mut evicted = Vec::new();
        {
            let mut state = self.inner.state();
            state.remove(&key, EvictionReason::Explicit, &mut evicted);
            if !state.slots.contains_key(&key) {
                self.make_room(&mut state, now, &mut evicted);
            }
            state.slots.insert(
                key,
                Slot::Ready {
                    value,
                    created: now,
                    last_read: now,
                },
            );
        }
        self.inner.report(evicted);
    }

    /// Removes `key`'s cached value; `true` if there was one. A computation in flight is
    /// left alone.
    pub fn invalidate(&self, key: &K) -> bool {
        let mut evicted = Vec::new();
        self.inner
            .state()
            .remove(key, EvictionReason::Explicit, &mut evicted);
        let removed = !evicted.is_empty();
        self.inner.report(evicted);
        removed
    }

    /// Removes every cached value (computations in flight carry on); returns how many.
    pub fn clear(&self) -> usize {
        let mut evicted = Vec::new();
        {
            let mut state = self.inner.state();
            let keys: Vec<K> = state
                .slots
                .iter()
                .filter(|(_, slot)| matches!(slot, Slot::Ready { .. }))
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                state.remove(&key, EvictionReason::Explicit, &mut evicted);
            }
        }
        let n = evicted.len();
        self.inner.report(evicted);
        n
    }

    /// Evicts every expired entry now; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = Instant::now();
        let mut evicted = Vec::new();
        {
            let mut state = self.inner.state();
            self.purge(&mut state, now, &mut evicted);
        }
        let n = evicted.len();
        self.inner.report(evicted);
        n
    }

    /// The counters now, with the number of entries.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let state = self.inner.state();
        CacheStats {
            len: state.slots.len(),
            ..state.stats
        }
    }

    /// Entries now (values and computations in flight, expired ones not yet found included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.state().slots.len()
    }

    /// Whether the cache holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn purge(&self, state: &mut State<K, V, E>, now: Instant, out: &mut Vec<Evicted<K, V>>) {
        let expired: Vec<K> = state
            .slots
            .iter()
            .filter(|(_, slot)| match slot {
                Slot::Ready {
                    created, last_read, ..
                } => self.inner.expired(*created, *last_read, now),
                Slot::Loading { .. } => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            state.remove(&key, EvictionReason::Expired, out);
        }
    }

    /// Frees one place if the cache is full: expired entries first, then abandoned
    /// computations (no request is waiting on them), then the least recently read value.
    fn make_room(&self, state: &mut State<K, V, E>, now: Instant, out: &mut Vec<Evicted<K, V>>) {
        if state.slots.len() < self.inner.options.max_size {
            return;
        }
        self.purge(state, now, out);
        // Only the table holds an abandoned load's future: nobody awaits its result.
        state.slots.retain(|_, slot| match slot {
            Slot::Loading { load, .. } => load.strong_count().is_some_and(|n| n > 1),
            Slot::Ready { .. } => true,
        });
        while state.slots.len() >= self.inner.options.max_size {
            let oldest = state
                .slots
                .iter()
                .filter_map(|(k, slot)| match slot {
                    Slot::Ready { last_read, .. } => Some((*last_read, k)),
                    Slot::Loading { .. } => None,
                })
                .min_by_key(|(t, _)| *t)
                .map(|(_, k)| k.clone());
            // Only computations in flight left: they finish and are bounded by the number
            // of concurrent distinct requests.
            let Some(key) = oldest else { break };
            state.remove(&key, EvictionReason::Size, out);
        }
    }

    /// The shared computation for `key`: calls the factory, catches a panic, and stores the
    /// value if the slot still waits for this generation.
    fn load(&self, key: K, generation: u64) -> Load<V, E> {
        let factory = self.inner.factory.clone();
        let weak: Weak<Inner<K, V, E>> = Arc::downgrade(&self.inner);
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
}

fn complete<K: Hash + Eq, V: Clone, E>(
    inner: &Inner<K, V, E>,
    key: K,
    generation: u64,
    result: &Result<V, CacheError<E>>,
) {
    let now = Instant::now();
    let mut state = inner.state();
    let ours = matches!(
        state.slots.get(&key),
        Some(Slot::Loading { generation: g, .. }) if *g == generation
    );
    if !ours {
        // Replaced by an insert or removed while computing: the newer state wins.
        return;
    }
    match result {
        Ok(value) => {
            state.slots.insert(
                key,
                Slot::Ready {
                    value: value.clone(),
                    created: now,
                    last_read: now,
                },
            );
        }
        Err(_) => {
            state.slots.remove(&key);
            state.stats.load_failures += 1;
        }
    }
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
