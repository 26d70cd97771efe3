//! The sliding cache: single-flight loads, exact expiry, bounded size.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::time::Instant;

use super::table::{Factory, Inner, State, Step, load};
use super::{CacheConfigError, CacheError, CacheOptions, CacheStats, EvictionReason};

/// Values computed on demand by an async factory, kept until they expire or the cache is
/// full.
///
/// * **One computation per key at a time**: concurrent [`get`](SlidingCache::get)s for a
///   missing key share one factory call. The call runs inside the requests that await it
///   (if every one of them is dropped, the next request for the key drives it on).
/// * **An expired value is never returned** (the .NET original can return one): every read
///   checks the entry's sliding and absolute expiry against tokio's clock, and an expired
///   entry is evicted and computed again.
/// * **Bounded**: at most `max_size` values are stored at every moment; storing into a full
///   cache (a miss, an [`insert`](SlidingCache::insert), or a computation completing) first
///   drops expired values, then the least recently read one. A computation in flight takes
///   a place too (a miss makes room for it), but is never evicted, since its requests wait
///   on it: so [`len`](SlidingCache::len), which counts values and computations, can exceed
///   `max_size` only after more than `max_size` distinct keys were computing at once, and
///   never by more than the computations still in flight; once they finish, `len() <=
///   max_size` again. Every read, store and eviction costs O(1) whatever the size (entries
///   live in a linked map in recency order; finding expired ones costs O(1) per entry
///   evicted, never a scan), so a cache of millions of entries is fine.
/// * **Evictions are reported** with their [`EvictionReason`] to the
///   [`on_evict`](SlidingCache::on_evict) callback and as `cache.evict` signals;
///   [`stats`](SlidingCache::stats) counts everything. A read answered from the cache raises
///   `cache.hit`, a read that starts a computation `cache.miss`; a read that joins a
///   computation already running raises neither and is counted in
///   [`CacheStats::coalesced`](super::CacheStats::coalesced), so the signals count what
///   `hits` and `misses` count. A panicking eviction callback is caught, counted in
///   `callback_failures` and handed to [`CacheOptions::on_error`], as the signal sink does
///   for its handlers.
///
/// Expired entries are found when read, when the cache is full, or by
/// [`purge_expired`](SlidingCache::purge_expired) (call it from a timer if you want prompt
/// eviction callbacks). Factory errors are not cached. Values are cloned out, so wrap large
/// ones in an `Arc`. A factory must not await [`get`](SlidingCache::get) of its own key
/// (directly or through another key's factory): that request joins the computation it is
/// part of and waits for itself for ever.
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
                callback_failures: AtomicU64::new(0),
                state: Mutex::new(State::new()),
            }),
        })
    }

    /// Calls `callback(key, value, reason)` for every eviction (outside the cache's lock; a
    /// panic in it is caught, counted in [`CacheStats::callback_failures`], logged and given
    /// to [`CacheOptions::on_error`]). Set it before sharing the cache: it applies to
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

    /// The value for `key`: the cached one if live (raises `cache.hit`), else computed once by
    /// the factory for all concurrent requests (the one that starts it raises `cache.miss`,
    /// the ones that join it raise nothing).
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
        if let Some(value) = self.inner.read(&mut state, &key, now, &mut evicted) {
            return Step::Hit(value);
        }
        // A key is never both computed and computing, so if `read` evicted an expired
        // value there is no computation to join and `evicted` reaches `Miss`.
        if let Some(load) = state.loading(&key) {
            state.stats.coalesced += 1;
            return Step::Join(load);
        }
        state.stats.misses += 1;
        self.inner.make_room(&mut state, now, &mut evicted);
        let generation = state.next_generation();
        let load = load(&self.inner, key.clone(), generation);
        state.start_loading(key, generation, load.clone());
        Step::Miss(load, evicted)
    }

    /// The live cached value for `key`, without computing anything (an expired entry is
    /// evicted and `None` returned). Counts as a hit when found, not as a miss otherwise.
    pub fn get_if_present(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let mut evicted = Vec::new();
        let found = {
            let mut state = self.inner.state();
            self.inner.read(&mut state, key, now, &mut evicted)
        };
        self.inner.report(evicted);
        if found.is_some() {
            self.inner.raise("cache.hit", None);
        }
        found
    }

    /// Stores `value` for `key` now (replacing a cached value, reported as explicit, or as
    /// expired if it was past its expiry already, or overriding a computation in flight,
    /// whose result is then discarded).
    pub fn insert(&self, key: K, value: V) {
        let now = Instant::now();
        let mut evicted = Vec::new();
        {
            let mut state = self.inner.state();
            self.inner.insert(&mut state, key, value, now, &mut evicted);
        }
        self.inner.report(evicted);
    }

    /// Removes `key`'s cached value; `true` if there was one that a read could have found.
    /// A computation in flight is left alone. The eviction is reported as explicit, or as
    /// expired if the value was past its expiry already (no read had found it yet): it was no
    /// longer a value anyone could read, so `on_evict` should not take it for a live one, and
    /// `invalidate` answers `false` for it, as `get` would have found nothing.
    pub fn invalidate(&self, key: &K) -> bool {
        let now = Instant::now();
        let mut evicted = Vec::new();
        {
            let mut state = self.inner.state();
            self.inner
                .remove(&mut state, key, EvictionReason::Explicit, now, &mut evicted);
        }
        let removed = evicted
            .iter()
            .any(|(_, _, reason)| *reason == EvictionReason::Explicit);
        self.inner.report(evicted);
        removed
    }

    /// Removes every cached value (computations in flight carry on); returns how many a read
    /// could have found. Each is reported as explicit, or as expired (and not counted in the
    /// answer) if it was past its expiry already.
    pub fn clear(&self) -> usize {
        let now = Instant::now();
        let mut evicted = Vec::new();
        {
            let mut state = self.inner.state();
            self.inner.clear(&mut state, now, &mut evicted);
        }
        let n = evicted
            .iter()
            .filter(|(_, _, reason)| *reason == EvictionReason::Explicit)
            .count();
        self.inner.report(evicted);
        n
    }

    /// Evicts every expired entry now; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = Instant::now();
        let mut evicted = Vec::new();
        {
            let mut state = self.inner.state();
            self.inner.purge(&mut state, now, &mut evicted);
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
            len: state.len(),
            // Relaxed: a statistic, read on its own.
            callback_failures: self.inner.callback_failures.load(Ordering::Relaxed),
            ..state.stats
        }
    }

    /// Entries now (values and computations in flight, expired ones not yet found included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.state().len()
    }

    /// Whether the cache holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
