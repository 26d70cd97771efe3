//! A GCRA limiter per key, with a bounded key table.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Waiters;
use super::gcra::{Cell, since};
use super::limiter::{LimitReason, Params, RateConfigError, RateLimited, Tunable, nanos};

/// One GCRA limiter per key (per customer, per IP, per tenant), all with the same rate and
/// burst, in a table of at most `max_keys` entries.
///
/// **Memory is bounded and idle keys are reclaimed.** A key whose burst has fully recovered
/// is *idle*: forgetting it changes no decision, because a new key starts with a full burst
/// too. Idle keys are swept when the table grows (amortised, at most one sweep per doubling)
/// and by [`reclaim`](KeyedRateLimiter::reclaim). When the table holds `max_keys` *busy* keys,
/// a new key is refused with [`LimitReason::KeysFull`] and the time until the first busy key
/// goes idle; existing keys carry on. That refusal sweeps the table (O(keys)), so size
/// `max_keys` for the number of keys active within one burst period.
///
/// # Examples
///
/// ```
/// use ephemeral_atoms::rate_limit::KeyedRateLimiter;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let per_user = KeyedRateLimiter::new(1.0, 2, 10_000)?;
/// per_user.try_acquire(&"alice")?;
/// per_user.try_acquire(&"alice")?;
/// assert!(per_user.try_acquire(&"alice").is_err()); // alice used her burst
/// per_user.try_acquire(&"bob")?; // bob is not affected
/// # Ok(())
/// # }
/// ```
pub struct KeyedRateLimiter<K> {
    inner: Arc<Mutex<State<K>>>,
    /// The queue of each key that has [`acquire`](KeyedRateLimiter::acquire) callers
    /// waiting, and only those: an entry goes when its last waiter does, so this holds at
    /// most one entry per waiting caller.
    queues: Arc<Mutex<HashMap<K, Arc<Waiters>>>>,
}

impl<K> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            queues: self.queues.clone(),
        }
    }
}

/// A waiter on a key: removes the key's queue when the last waiter goes (served, or its
/// future dropped). Dropped after the waiter's `Arc` of the queue, so the last of them to
/// lock the map sees every other waiter's `Arc` gone (each dropped before its own guard
/// locks), and only the map's own left.
struct Queued<'a, K: Hash + Eq> {
    queues: &'a Mutex<HashMap<K, Arc<Waiters>>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Queued<'_, K> {
    /// The key's queue, created if nobody waits on it yet.
    fn join(&self) -> Arc<Waiters> {
        lock(self.queues)
            .entry(self.key.clone())
            .or_insert_with(|| Arc::new(Waiters::new()))
            .clone()
    }
}

impl<K: Hash + Eq> Drop for Queued<'_, K> {
    fn drop(&mut self) {
        let mut queues = lock(self.queues);
        if queues
            .get(&self.key)
            .is_some_and(|queue| Arc::strong_count(queue) == 1)
        {
            queues.remove(&self.key);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update writes whole values (a key's timestamp, an entry in or out): consistent
    // after any panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct State<K> {
    origin: Instant,
    params: Params,
    cells: HashMap<K, Cell>,
    max_keys: usize,
    /// Table size at which the next insert sweeps idle keys first.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 64;

impl<K> State<K> {
    /// Removes idle keys; returns the time until the earliest busy key goes idle.
    fn sweep(&mut self, now: u128) -> Option<u128> {
        let mut earliest: Option<u128> = None;
        self.cells.retain(|_, cell| {
            if cell.is_idle(now) {
                false
            } else {
                let left = cell.tat_ns - now;
                earliest = Some(earliest.map_or(left, |e| e.min(left)));
                true
            }
        });
        // Sweep again only after the table doubles, so sweeping is amortised O(1) per insert.
        self.sweep_at = (self.cells.len() * 2).max(MIN_SWEEP).min(self.max_keys);
        earliest
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> KeyedRateLimiter<K> {
    /// `rate` permits per second and bursts of `burst` per key, at most `max_keys` keys.
    ///
    /// # Errors
    ///
    /// [`RateConfigError`] for a bad rate, a burst of 0 or a `max_keys` of 0.
    pub fn new(rate: f64, burst: u32, max_keys: usize) -> Result<Self, RateConfigError> {
        let params = Params::new(rate, burst)?;
        if max_keys == 0 {
            return Err(RateConfigError::ZeroMaxKeys);
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(State {
                origin: Instant::now(),
                params,
                cells: HashMap::new(),
                max_keys,
                sweep_at: MIN_SWEEP.min(max_keys),
            })),
            queues: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn state(&self) -> MutexGuard<'_, State<K>> {
        lock(&self.inner)
    }

    /// Takes a permit for `key` now, or says when to retry.
    ///
    /// # Errors
    ///
    /// [`RateLimited`]: [`LimitReason::Rate`] when this key used its rate,
    /// [`LimitReason::KeysFull`] when the table is full of busy keys.
    pub fn try_acquire(&self, key: &K) -> Result<(), RateLimited> {
        self.try_acquire_waited(key, Duration::ZERO)
    }

    /// [`try_acquire`](KeyedRateLimiter::try_acquire), charged from when the permit came
    /// free, at most `waited` back (as [`RateLimiter::try_acquire_waited`]).
    ///
    /// [`RateLimiter::try_acquire_waited`]: super::RateLimiter::try_acquire_waited
    fn try_acquire_waited(&self, key: &K, waited: Duration) -> Result<(), RateLimited> {
        let mut state = self.state();
        let now = since(state.origin);
        let params = state.params;
        if let Some(cell) = state.cells.get_mut(key) {
            let from = now.saturating_sub(waited.as_nanos());
            return cell.try_take_since(now, from, params);
        }
        if state.cells.len() >= state.sweep_at {
            let earliest = state.sweep(now);
            if state.cells.len() >= state.max_keys {
                return Err(RateLimited {
                    retry_after: nanos(earliest.unwrap_or(0)),
                    reason: LimitReason::KeysFull,
                });
            }
        }
        let mut cell = Cell { tat_ns: now };
        // A fresh key has its whole burst, and the burst is at least 1.
        let granted = cell.try_take(now, params);
        state.cells.insert(key.clone(), cell);
        granted
    }

    /// Waits until `key` gets a permit and takes it. Cancel-safe: dropping the future takes
    /// nothing, and gives up its place.
    ///
    /// Callers waiting on one key are served in the order they began waiting, and only the
    /// first waits on the clock, as with [`RateLimiter::acquire`](super::RateLimiter::acquire)
    /// (rates past 1,000 per second included): 200 callers on one key cost about one wake-up
    /// each per permit, not all 200 for every permit (about 20,000 in all). A key's queue
    /// exists only while callers wait on it, apart from the key table, so `max_keys` still
    /// bounds the table and the queues hold one entry per waiting caller at most.
    /// [`try_acquire`](KeyedRateLimiter::try_acquire) does not queue.
    pub async fn acquire(&self, key: &K) {
        // Declared before the queue's `Arc`, so dropped after it (see `Queued`).
        let queued = Queued {
            queues: &self.queues,
            key: key.clone(),
        };
        let waiters = queued.join();
        let _turn = waiters.turn().await;
        waiters
            .take_with(|waited| self.try_acquire_waited(key, waited))
            .await;
    }

    /// The coordinator admission shape for keyed work: the same as
    /// [`acquire`](KeyedRateLimiter::acquire).
    pub async fn admit(&self, key: &K) {
        self.acquire(key).await;
    }

    /// Forgets every idle key now; returns how many were removed.
    pub fn reclaim(&self) -> usize {
        let mut state = self.state();
        let now = since(state.origin);
        let before = state.cells.len();
        state.sweep(now);
        before - state.cells.len()
    }

    /// Keys tracked now (busy ones, plus idle ones not yet swept).
    #[must_use]
    pub fn len(&self) -> usize {
        self.state().cells.len()
    }

    /// Whether no key is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys tracked at once.
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.state().max_keys
    }
}

impl<K: Send> Tunable for KeyedRateLimiter<K> {
    fn rate(&self) -> f64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .params
            .rate()
    }

    fn burst(&self) -> u32 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .params
            .burst
    }

    fn set_rate(&self, per_second: f64) -> Result<(), RateConfigError> {
        let emission_ns = super::limiter::emission_ns(per_second)?;
        self.retune(|p| p.emission_ns = emission_ns);
        Ok(())
    }

    fn set_burst(&self, burst: u32) -> Result<(), RateConfigError> {
        let burst = super::limiter::check_burst(burst)?;
        self.retune(|p| p.burst = burst);
        Ok(())
    }
}

impl<K> KeyedRateLimiter<K> {
    /// Applies a parameter change to every tracked key (O(keys), under the lock).
    fn retune(&self, change: impl FnOnce(&mut Params)) {
        {
            let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let now = since(state.origin);
            let old = state.params;
            change(&mut state.params);
            let new = state.params;
            for cell in state.cells.values_mut() {
                cell.rescale(now, old, new);
            }
        }
        // The waiter on the clock of every key waited on looks again (O(keys waited on));
        // the table's lock is released first, as `acquire` takes the two locks one at a time.
        for queue in lock(&self.queues).values() {
            queue.retuned();
        }
    }
}

impl<K> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("KeyedRateLimiter")
            .field("rate", &state.params.rate())
            .field("burst", &state.params.burst)
            .field("keys", &state.cells.len())
            .field("keys_waited_on", &lock(&self.queues).len())
            .field("max_keys", &state.max_keys)
            .finish()
    }
}
